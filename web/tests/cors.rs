//! CORS and the client files on the public port, over real HTTP (docs/http-api.md#cors,
//! docs/http-api.md#client-files): off by default with upstream's headers untouched; on, a listed
//! origin may read answers and gets its preflight answered, another origin gets nothing extra.

#[allow(unused_imports)] // the comet-call helpers of the shared module are not used here
mod common;

use common::*;

fn with_origin(addr: &str, method: &str, target: &str, origin: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let w = start_web(loopback_config(), golden_membership(), cluster::testing::FakeStore::new()).await;
    let resp = exchange(&w.public(), &with_origin(&w.public(), "GET", "/1/time/get", "https://app.example")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("access-control-allow-origin"), None);
    assert_eq!(resp.header("vary"), None, "upstream's headers, byte for byte");
    let pre = exchange(&w.public(), &with_origin(&w.public(), "OPTIONS", "/1/time/get", "https://app.example")).await;
    assert_eq!(pre.status(), 405);
}

#[tokio::test]
async fn a_listed_origin_may_fetch_and_others_may_not() {
    let mut config = loopback_config();
    config.base.cors_origins = vec!["https://app.example".into()];
    let w = start_web(config, golden_membership(), cluster::testing::FakeStore::new()).await;
    let public = w.public();
    let ok =
        exchange(&public, &with_origin(&public, "GET", "/1/server/get?k=Terry-Mao&p=1", "https://app.example")).await;
    assert_eq!(ok.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(ok.header("vary"), Some("Origin"));
    let other = exchange(&public, &with_origin(&public, "GET", "/1/time/get", "https://evil.example")).await;
    assert_eq!(other.status(), 200, "the answer itself is the same; the browser withholds it");
    assert_eq!(other.header("access-control-allow-origin"), None);

    let pre = exchange(&public, &with_origin(&public, "OPTIONS", "/1/msg/get?k=a&m=0", "https://app.example")).await;
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET"));
    assert_eq!(pre.header("access-control-allow-origin"), Some("https://app.example"));
    let refused = exchange(&public, &with_origin(&public, "OPTIONS", "/1/msg/get", "https://evil.example")).await;
    assert_eq!(refused.status(), 405);
}

#[tokio::test]
async fn the_client_and_the_demo_are_served() {
    let w = start_web(loopback_config(), golden_membership(), cluster::testing::FakeStore::new()).await;
    let js = get(&w.public(), "/client/gopush.js").await;
    assert_eq!(js.status(), 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(js.body(), include_str!("../../clients/js/gopush.js"));
    assert_eq!(get(&w.public(), "/client/gopush.d.ts").await.status(), 200);
    let demo = get(&w.public(), "/demo?key=Terry-Mao").await;
    assert_eq!(demo.status(), 200);
    assert!(demo.body().contains("import { GoPush } from \"/client/gopush.js\""));
    assert!(demo.body().contains(&format!("const ADMIN = \"{}\";", "127.0.0.1:0")), "the configured admin_bind");
    assert_eq!(get(&w.public(), "/client/other.js").await.status(), 404);
    assert_eq!(get(&w.admin(), "/demo").await.status(), 404, "public port only");
}
