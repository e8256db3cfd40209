//! Failed API calls say why: with `base.error_header` on, an `X-Gopush-Error` header names the
//! reason while the body stays upstream's bytes; off (the default), the response is unchanged.
//! Also the input fixes of docs/decisions.md: empty `mprivate` keys and overlong tokens are
//! parameter errors answered by web.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;

async fn web_with_reasons() -> TestWeb {
    let mut config = loopback_config();
    config.base.error_header = true;
    let store = Arc::new(FakeStore::default());
    store.fail_keys.lock().unwrap().insert("broken".into());
    start_web(config, golden_membership(), store).await
}

#[tokio::test]
async fn failures_carry_a_reason_header_and_upstream_bodies() {
    let w = web_with_reasons().await;
    let (a, p) = (w.admin(), w.public());
    let cases: Vec<(Raw, &str, &str)> = vec![
        (
            post(&a, "/1/admin/push/private?key=Terry-Mao&expire=0", b"hello").await,
            r#"{"ret":65535}"#,
            "message is not JSON",
        ),
        (post(&a, "/1/admin/push/private?key=notmine1&expire=0", b"{}").await, r#"{"ret":65535}"#, "key not owned"),
        (
            post(&a, "/1/admin/push/private?key=store-down&expire=60", b"{}").await,
            r#"{"ret":65535}"#,
            "store: backend unavailable",
        ),
        (
            post(&a, "/1/admin/push/private?key=a", b"{}").await,
            r#"{"ret":65534}"#,
            "expire must be an unsigned 32-bit number of seconds",
        ),
        (get(&p, "/1/msg/get?k=broken&m=0").await, r#"{"ret":65535}"#, "store: backend unavailable"),
        (
            get(&p, "/server/get?key=a").await,
            r#"{"msg":"ok","ret":65534}"#,
            "protocol must be 1 (websocket) or 2 (tcp)",
        ),
        (get(&p, "/1/server/get?k=t2&p=1").await, r#"{"ret":1001}"#, "no comet node for the key"),
    ];
    for (r, body, reason) in &cases {
        assert_eq!(r.status(), 200);
        assert_eq!(r.body(), *body, "{reason}");
        let text = r.text();
        let head = text.split_once("\r\n\r\n").map_or(text.as_str(), |(h, _)| h);
        assert_eq!(r.header("X-Gopush-Error"), Some(*reason), "{head}");
        // Everything but the added header is byte for byte what it was.
        let without: Vec<&str> = head.split("\r\n").filter(|l| !l.starts_with("X-Gopush-Error: ")).collect();
        assert_eq!(format!("{}\r\n\r\n{}", without.join("\r\n"), r.body()), json_200(body));
    }
    w.comet("node1").down.store(true, Ordering::Relaxed);
    let r = post(&a, "/1/admin/push/private?key=Terry-Mao&expire=0", b"{}").await;
    assert_eq!(r.header("X-Gopush-Error"), Some("comet node1 unreachable"));
    assert_eq!(r.body(), r#"{"ret":65535}"#);
    let r = post(&a, "/1/token/add?k=Terry-Mao&t=x", b"").await;
    assert_eq!(r.header("X-Gopush-Error"), Some("comet node1 unreachable"));
    // Successes carry no reason.
    let r = get(&p, "/1/server/get?k=t1&p=2").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"server":"node2:6969"},"ret":0}"#));
    w.web.shutdown().await;
}

#[tokio::test]
async fn by_default_failures_are_answered_exactly_as_upstream() {
    let w = start_web(loopback_config(), golden_membership(), Arc::new(FakeStore::default())).await;
    let r = post(&w.admin(), "/1/admin/push/private?key=Terry-Mao&expire=0", b"hello").await;
    assert_eq!(r.text(), json_200(r#"{"ret":65535}"#));
    assert_eq!(r.header("X-Gopush-Error"), None);
    w.web.shutdown().await;
}

#[tokio::test]
async fn mprivate_skips_empty_keys_and_refuses_a_list_of_none() {
    let w = web_with_reasons().await;
    let a = w.admin();
    for k in [",,,,", ",", ""] {
        let body = format!(r#"{{"m":"{{}}","k":"{k}"}}"#);
        let r = post(&a, "/1/admin/push/mprivate?expire=0", body.as_bytes()).await;
        assert_eq!(r.body(), r#"{"ret":65534}"#, "{k:?}");
        assert_eq!(r.header("X-Gopush-Error"), Some("empty k"));
    }
    assert!(w.comets.values().all(|c| c.calls().is_empty()), "nothing was pushed");
    let r = post(&a, "/1/admin/push/mprivate?expire=0", br#"{"m":"{}","k":",t1,,t3,"}"#).await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    assert_eq!(
        w.comet("node2").calls(),
        [CometCall::Pushes { keys: vec!["t1".into(), "t3".into()], msg: "{}".into(), expire: 0 }]
    );
    assert!(w.comet("node3").calls().is_empty(), "the empty key (node3's by the ring) was not pushed");
    w.web.shutdown().await;
}

#[tokio::test]
async fn overlong_tokens_are_parameter_errors() {
    let w = web_with_reasons().await;
    let a = w.admin();
    let long = "t".repeat(30 * 1024);
    let r = post_with(
        &a,
        "/1/token/add",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        format!("k=Terry-Mao&t={long}").as_bytes(),
    )
    .await;
    assert_eq!(r.text().replace("X-Gopush-Error: token longer than 1024 bytes\r\n", ""), json_200(r#"{"ret":65534}"#));
    let r = post(&a, &format!("/1/token/add?k=Terry-Mao&t={}", "t".repeat(1025)), b"").await;
    assert_eq!(r.body(), r#"{"ret":65534}"#);
    assert!(w.comet("node1").calls().is_empty(), "never reached the comet");
    let r = post(&a, &format!("/1/token/add?k=Terry-Mao&t={}", "t".repeat(1024)), b"").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#), "the longest token the comet takes");
    w.web.shutdown().await;
}
