//! Golden byte tests of every endpoint and error path of docs/http-api.md over real HTTP: a real web node on
//! loopback in front of recording comet and message-store doubles, compared byte for byte (only
//! the `Date` header, which changes, is left out), plus bad input that must never yield a 500.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const MSG: &str = r#"{"test":1, "h":"<b>&"}"#;

async fn golden_web() -> TestWeb {
    let store = FakeStore::with("Terry-Mao", &[(MSG, 13996474938346192), (r#"{"n":2}"#, 13996474938346193)]);
    store.fail_keys.lock().unwrap().insert("broken".into());
    start_web(loopback_config(), golden_membership(), store).await
}

async fn empty_web() -> TestWeb {
    start_web(loopback_config(), Default::default(), Arc::new(FakeStore::default())).await
}

#[tokio::test]
async fn server_get_follows_the_golden_ring() {
    let w = golden_web().await;
    let a = w.public();
    for (key, node) in [("Terry-Mao", "node1"), ("t1", "node2"), ("t2", "node3"), ("t3", "node2"), ("user_1", "node3")]
    {
        let r = get(&a, &format!("/1/server/get?k={key}&p=2")).await;
        assert_eq!(r.text(), json_200(&format!(r#"{{"data":{{"server":"{node}:6969"}},"ret":0}}"#)), "{key}");
        assert!(r.date().is_some(), "Date header like Go");
    }
    let r = get(&a, "/1/server/get?k=Terry-Mao&p=1").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"server":"node1:6968"},"ret":0}"#));
    let r = get(&a, "/2/server/get?k=t1&p=2").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"server":["node2:6969","node2:7069"]},"ret":0}"#));
    let r = get(&a, "/2/server/get?k=t1&p=1").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"server":["node2:6968"]},"ret":0}"#));
    // Legacy form used by the Java and JavaScript SDKs.
    let r = get(&a, "/server/get?key=Terry-Mao&proto=2").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"server":"node1:6969"},"msg":"ok","ret":0}"#));
    // An empty key is a valid ring key (docs/architecture.md#ring-golden-vectors: it maps to node3)
    // but upstream refuses it: 65534.
    let r = get(&a, "/1/server/get?k=&p=2").await;
    assert_eq!(r.text(), json_200(r#"{"ret":65534}"#));
    w.web.shutdown().await;
}

#[tokio::test]
async fn server_get_errors() {
    let w = golden_web().await;
    let a = w.public();
    for target in [
        "/1/server/get",
        "/1/server/get?p=2",
        "/1/server/get?k=a",
        "/1/server/get?k=a&p=3",
        "/1/server/get?k=a&p=",
        "/1/server/get?k=a&p=tcp",
        "/1/server/get?k=%zz&p=2",
        "/1/server/get?k=a;b&p=2",
        "/2/server/get?k=a&p=0",
    ] {
        assert_eq!(get(&a, target).await.text(), json_200(r#"{"ret":65534}"#), "{target}");
    }
    assert_eq!(get(&a, "/server/get?key=a").await.text(), json_200(r#"{"msg":"ok","ret":65534}"#));
    // The short names are not the legacy names.
    assert_eq!(get(&a, "/server/get?k=a&p=2").await.text(), json_200(r#"{"msg":"ok","ret":65534}"#));
    // node3 (owner of t2) advertises no WebSocket address: 1001.
    assert_eq!(get(&a, "/1/server/get?k=t2&p=1").await.text(), json_200(r#"{"ret":1001}"#));
    assert_eq!(get(&a, "/2/server/get?k=t2&p=1").await.text(), json_200(r#"{"ret":1001}"#));
    assert_eq!(get(&a, "/server/get?key=t2&proto=1").await.text(), json_200(r#"{"msg":"ok","ret":1001}"#));
    w.web.shutdown().await;

    let empty = empty_web().await;
    let a = empty.public();
    assert_eq!(get(&a, "/1/server/get?k=a&p=2").await.text(), json_200(r#"{"ret":1001}"#));
    assert_eq!(get(&a, "/2/server/get?k=a&p=2").await.text(), json_200(r#"{"ret":1001}"#));
    assert_eq!(get(&a, "/server/get?key=a&proto=2").await.text(), json_200(r#"{"msg":"ok","ret":1001}"#));
    empty.web.shutdown().await;
}

#[tokio::test]
async fn jsonp_wraps_answers_and_refuses_bad_callbacks() {
    let w = golden_web().await;
    let a = w.public();
    let r = get(&a, "/1/server/get?k=Terry-Mao&p=2&cb=GoPushCli.callback_1").await;
    assert_eq!(r.text(), jsonp_200(r#"GoPushCli.callback_1({"data":{"server":"node1:6969"},"ret":0})"#));
    let r = get(&a, "/server/get?key=Terry-Mao&proto=2&callback=jQuery_$1").await;
    assert_eq!(r.text(), jsonp_200(r#"jQuery_$1({"data":{"server":"node1:6969"},"msg":"ok","ret":0})"#));
    // Errors are wrapped too, so a JSONP client sees them.
    let r = get(&a, "/1/msg/get?k=a&cb=f").await;
    assert_eq!(r.text(), jsonp_200(r#"f({"ret":65534})"#));
    // Versioned routes read `cb`, legacy routes `callback`; the other name is ignored.
    let r = get(&a, "/1/server/get?k=Terry-Mao&p=2&callback=f").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"server":"node1:6969"},"ret":0}"#));
    let r = get(&a, "/server/get?key=Terry-Mao&proto=2&cb=f").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"server":"node1:6969"},"msg":"ok","ret":0}"#));
    // An empty callback means plain JSON, as upstream.
    let r = get(&a, "/1/server/get?k=Terry-Mao&p=2&cb=").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"server":"node1:6969"},"ret":0}"#));
    // Invalid names are refused with plain JSON (docs/decisions.md#d9-hostile-input).
    for cb in ["alert(1)%2F%2F", "1a", "a-b", "%3Cscript%3E", &"a".repeat(65)] {
        let r = get(&a, &format!("/1/server/get?k=Terry-Mao&p=2&cb={cb}")).await;
        assert_eq!(r.text(), json_200(r#"{"ret":65534}"#), "{cb}");
        let r = get(&a, &format!("/server/get?key=Terry-Mao&proto=2&callback={cb}")).await;
        assert_eq!(r.text(), json_200(r#"{"msg":"ok","ret":65534}"#), "{cb}");
    }
    w.web.shutdown().await;
}

#[tokio::test]
async fn msg_get_in_both_forms() {
    let w = golden_web().await;
    let a = w.public();
    let r = get(&a, "/1/msg/get?k=Terry-Mao&m=0").await;
    assert_eq!(
        r.text(),
        json_200(
            r#"{"data":{"msgs":[{"msg":{"test":1,"h":"\u003cb\u003e\u0026"},"mid":13996474938346192,"gid":0},{"msg":{"n":2},"mid":13996474938346193,"gid":0}]},"ret":0}"#
        )
    );
    let r = get(&a, "/1/msg/get?k=Terry-Mao&m=13996474938346192").await;
    assert_eq!(r.text(), json_200(r#"{"data":{"msgs":[{"msg":{"n":2},"mid":13996474938346193,"gid":0}]},"ret":0}"#));
    let r = get(&a, "/1/msg/get?k=Terry-Mao&m=13996474938346193").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#), "no messages: no data");
    let r = get(&a, "/1/msg/get?k=nobody&m=0&cb=cb").await;
    assert_eq!(r.text(), jsonp_200(r#"cb({"ret":0})"#));
    // Legacy: old-format messages, each a JSON string, plus an empty pmsgs (the Java SDK needs it).
    let r = get(&a, "/msg/get?key=Terry-Mao&mid=13996474938346192&pmid=0").await;
    assert_eq!(
        r.text(),
        json_200(
            r#"{"data":{"msgs":["{\"msg\":\"{\\\"n\\\":2}\",\"mid\":13996474938346193,\"gid\":0}"],"pmsgs":[]},"msg":"ok","ret":0}"#
        )
    );
    let r = get(&a, "/msg/get?key=Terry-Mao&mid=0").await;
    assert_eq!(
        r.text(),
        json_200(
            r#"{"data":{"msgs":["{\"msg\":\"{\\\"test\\\":1,\\\"h\\\":\\\"\\\\u003cb\\\\u003e\\\\u0026\\\"}\",\"mid\":13996474938346192,\"gid\":0}","{\"msg\":\"{\\\"n\\\":2}\",\"mid\":13996474938346193,\"gid\":0}"],"pmsgs":[]},"msg":"ok","ret":0}"#
        )
    );
    let r = get(&a, "/msg/get?key=nobody&mid=0&callback=GoPushCli.cb").await;
    assert_eq!(r.text(), jsonp_200(r#"GoPushCli.cb({"msg":"ok","ret":0})"#));
    w.web.shutdown().await;
}

#[tokio::test]
async fn msg_get_errors() {
    let w = golden_web().await;
    let a = w.public();
    for target in [
        "/1/msg/get",
        "/1/msg/get?k=a",
        "/1/msg/get?m=0",
        "/1/msg/get?k=&m=0",
        "/1/msg/get?k=a&m=",
        "/1/msg/get?k=a&m=abc",
        "/1/msg/get?k=a&m=1.5",
        "/1/msg/get?k=a&m=99999999999999999999",
        "/1/msg/get?k=a&m=%zz",
    ] {
        assert_eq!(get(&a, target).await.text(), json_200(r#"{"ret":65534}"#), "{target}");
    }
    assert_eq!(get(&a, "/msg/get?key=a&mid=x").await.text(), json_200(r#"{"msg":"ok","ret":65534}"#));
    // A negative mid is refused by the store upstream: 65535. So is a storage failure.
    assert_eq!(get(&a, "/1/msg/get?k=a&m=-1").await.text(), json_200(r#"{"ret":65535}"#));
    assert_eq!(get(&a, "/1/msg/get?k=broken&m=0").await.text(), json_200(r#"{"ret":65535}"#));
    assert_eq!(get(&a, "/msg/get?key=broken&mid=0").await.text(), json_200(r#"{"msg":"ok","ret":65535}"#));
    w.web.shutdown().await;
}

#[tokio::test]
async fn time_get_answers_the_clock_in_100ns_units() {
    let w = golden_web().await;
    let a = w.public();
    let before = now_mid();
    let r = get(&a, "/1/time/get").await;
    let after = now_mid();
    let body = r.body().to_string();
    let t: i64 = body
        .strip_prefix(r#"{"data":{"timeid":"#)
        .and_then(|s| s.strip_suffix(r#"},"ret":0}"#))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    assert_eq!(r.text(), json_200(&body));
    let r = get(&a, "/time/get?callback=cb").await;
    assert!(r.body().starts_with(r#"cb({"data":{"timeid":"#) && r.body().ends_with(r#"},"msg":"ok","ret":0})"#));
    assert_eq!(r.header("Content-Type"), Some("application/javascript;charset=utf-8"));
    let r = get(&a, "/1/time/get?cb=GoPushCli.t").await;
    assert!(r.body().starts_with(r#"GoPushCli.t({"data":{"timeid":"#), "{}", r.body());
    w.web.shutdown().await;
}

fn now_mid() -> i64 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() / 100) as i64
}

const NOT_ALLOWED: &str = "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: 19\r\n\r\nMethod Not Allowed\n";
const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: 19\r\n\r\n404 page not found\n";

#[tokio::test]
async fn wrong_methods_and_paths() {
    let w = golden_web().await;
    let (p, a) = (w.public(), w.admin());
    for target in
        ["/1/server/get?k=a&p=2", "/2/server/get", "/1/msg/get", "/1/time/get", "/server/get", "/msg/get", "/time/get"]
    {
        assert_eq!(post(&p, target, b"").await.text(), NOT_ALLOWED, "POST {target}");
    }
    let r = exchange(&p, b"PUT /1/time/get HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(r.text(), NOT_ALLOWED);
    for target in [
        "/1/admin/push/private",
        "/1/admin/push/mprivate",
        "/1/admin/msg/del",
        "/admin/push",
        "/admin/msg/clean",
        "/1/token/add",
    ] {
        assert_eq!(get(&a, target).await.text(), NOT_ALLOWED, "GET {target}");
    }
    assert_eq!(post(&a, "/metrics", b"").await.text(), NOT_ALLOWED);
    for target in ["/", "/1/msgs/get", "/1/server/get/", "/3/server/get", "/1/admin/push/private"] {
        assert_eq!(get(&p, target).await.text(), NOT_FOUND, "public {target}");
    }
    for target in ["/", "/1/server/get", "/1/admin/push/public", "/admin/node/add"] {
        assert_eq!(post(&a, target, b"").await.text(), NOT_FOUND, "admin {target}");
    }
    w.web.shutdown().await;
}

#[tokio::test]
async fn push_private_routes_to_the_owner() {
    let w = golden_web().await;
    let a = w.admin();
    let r = post(&a, "/1/admin/push/private?key=Terry-Mao&expire=30", MSG.as_bytes()).await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    assert_eq!(w.comet("node1").calls(), [CometCall::Push { key: "Terry-Mao".into(), msg: MSG.into(), expire: 30 }]);
    let r = post(&a, "/admin/push?key=t1&expire=0&gid=1", b"[1,2]").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#), "legacy alias, gid ignored");
    assert_eq!(w.comet("node2").calls(), [CometCall::Push { key: "t1".into(), msg: "[1,2]".into(), expire: 0 }]);
    let r = post(&a, "/1/admin/push/private?key=t2&expire=4294967295", b"1").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#), "the largest u32 expire");
    let r = post(&a, "/1/admin/push/private?key=k%20x&expire=1", b"\"s\"").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    assert!(w.comets.values().any(|c| c.calls().contains(&CometCall::Push {
        key: "k x".into(),
        msg: "\"s\"".into(),
        expire: 1
    })));
    w.web.shutdown().await;
}

#[tokio::test]
async fn push_private_errors() {
    let w = golden_web().await;
    let a = w.admin();
    for q in [
        "key=a",
        "key=a&expire=",
        "key=a&expire=x",
        "key=a&expire=-1",
        "key=a&expire=4294967296",
        "key=a&expire=99999999999999999999999",
        "key=a&expire=%zz",
    ] {
        let r = post(&a, &format!("/1/admin/push/private?{q}"), b"{}").await;
        assert_eq!(r.text(), json_200(r#"{"ret":65534}"#), "{q}");
    }
    // The body must be JSON, even for an online-only push (expire=0): 65535, nothing sent.
    for body in [&b"hello"[..], b"", b"{\"a\":", b"\xff\xfe", b"{} {}"] {
        let r = post(&a, "/1/admin/push/private?key=Terry-Mao&expire=0", body).await;
        assert_eq!(r.text(), json_200(r#"{"ret":65535}"#), "{body:?}");
    }
    assert!(w.comet("node1").calls().is_empty());
    // Comet errors: not the owner, an empty key (refused by the comet), unreachable.
    let r = post(&a, "/1/admin/push/private?key=notmine1&expire=0", b"{}").await;
    assert_eq!(r.text(), json_200(r#"{"ret":65535}"#));
    let r = post(&a, "/1/admin/push/private?expire=0", b"{}").await;
    assert_eq!(r.text(), json_200(r#"{"ret":65535}"#), "missing key reaches the comet as empty");
    w.comet("node1").down.store(true, Ordering::Relaxed);
    let r = post(&a, "/1/admin/push/private?key=Terry-Mao&expire=0", b"{}").await;
    assert_eq!(r.text(), json_200(r#"{"ret":65535}"#));
    w.web.shutdown().await;

    let empty = empty_web().await;
    let r = post(&empty.admin(), "/1/admin/push/private?key=a&expire=0", b"{}").await;
    assert_eq!(r.text(), json_200(r#"{"ret":1001}"#));
    let r = post(&empty.admin(), "/admin/push?key=a&expire=0", b"{}").await;
    assert_eq!(r.text(), json_200(r#"{"ret":1001}"#));
    empty.web.shutdown().await;
}

#[tokio::test]
async fn mprivate_groups_per_comet_and_merges_failed_keys() {
    let w = golden_web().await;
    let a = w.admin();
    let body = br#"{"m":"{\"test\":1}","k":"Terry-Mao,t1,t2,t3"}"#;
    let r = post(&a, "/1/admin/push/mprivate?expire=60", body).await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    let pushes = |node: &str| w.comet(node).calls();
    let m = r#"{"test":1}"#.to_string();
    assert_eq!(pushes("node1"), [CometCall::Pushes { keys: vec!["Terry-Mao".into()], msg: m.clone(), expire: 60 }]);
    assert_eq!(
        pushes("node2"),
        [CometCall::Pushes { keys: vec!["t1".into(), "t3".into()], msg: m.clone(), expire: 60 }]
    );
    assert_eq!(pushes("node3"), [CometCall::Pushes { keys: vec!["t2".into()], msg: m.clone(), expire: 60 }]);

    // Keys the comets report as failed come back in fk, in request order.
    let fks = ["fk1", "fk2", "fk3", "fk4", "fk5", "fk6"];
    let body = format!(r#"{{"m":"[1]","k":"Terry-Mao,{}"}}"#, fks.join(","));
    let r = post(&a, "/1/admin/push/mprivate?expire=0", body.as_bytes()).await;
    let fk: Vec<String> = fks.iter().map(|k| format!("\"{k}\"")).collect();
    assert_eq!(r.text(), json_200(&format!(r#"{{"data":{{"fk":[{}]}},"ret":0}}"#, fk.join(","))));

    // A comet that cannot be reached fails all of its keys; the others still get theirs.
    w.comet("node2").down.store(true, Ordering::Relaxed);
    let r = post(&a, "/1/admin/push/mprivate?expire=0", br#"{"m":"{}","k":"t1,Terry-Mao,t3"}"#).await;
    assert_eq!(r.text(), json_200(r#"{"data":{"fk":["t1","t3"]},"ret":0}"#));
    assert_eq!(pushes("node1").len(), 3);
    w.web.shutdown().await;
}

#[tokio::test]
async fn mprivate_errors() {
    let w = golden_web().await;
    let a = w.admin();
    for body in [
        &br#"{"m":"{}","k":""}"#[..],
        br#"{"m":"","k":"a"}"#,
        br#"{"k":"a"}"#,
        br#"{"m":"{}"}"#,
        br#"{"m":{},"k":"a"}"#,
        br#"{"m":"{}","k":["a"]}"#,
        br#"{"m":null,"k":"a"}"#,
        b"not json",
        b"",
        br#"{"m":"{}","k":"a"} trailing"#,
    ] {
        let r = post(&a, "/1/admin/push/mprivate?expire=0", body).await;
        assert_eq!(r.text(), json_200(r#"{"ret":65534}"#), "{}", String::from_utf8_lossy(body));
    }
    for q in ["", "?expire=", "?expire=x", "?expire=-5", "?expire=4294967296"] {
        let r = post(&a, &format!("/1/admin/push/mprivate{q}"), br#"{"m":"{}","k":"a"}"#).await;
        assert_eq!(r.text(), json_200(r#"{"ret":65534}"#), "{q}");
    }
    // A message that is not JSON: 65535, as for push/private.
    let r = post(&a, "/1/admin/push/mprivate?expire=0", br#"{"m":"hello","k":"a"}"#).await;
    assert_eq!(r.text(), json_200(r#"{"ret":65535}"#));
    assert!(w.comets.values().all(|c| c.calls().is_empty()));
    w.web.shutdown().await;

    let empty = empty_web().await;
    let r = post(&empty.admin(), "/1/admin/push/mprivate?expire=0", br#"{"m":"{}","k":"a,b"}"#).await;
    assert_eq!(r.text(), json_200(r#"{"ret":1001}"#));
    empty.web.shutdown().await;
}

#[tokio::test]
async fn msg_del_takes_a_form_body() {
    let w = golden_web().await;
    let a = w.admin();
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let r = post_with(&a, "/1/admin/msg/del", form, b"key=Terry-Mao").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    let r = post_with(&a, "/admin/msg/clean", form, b"key=a%20b&x=1").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    assert_eq!(*w.store.deleted.lock().unwrap(), ["Terry-Mao", "a b"]);
    for body in [&b""[..], b"key=", b"k=a", b"key=%zz"] {
        let r = post_with(&a, "/1/admin/msg/del", form, body).await;
        assert_eq!(r.text(), json_200(r#"{"ret":65534}"#), "{body:?}");
    }
    // Upstream reads the key from the body only, not the query.
    let r = post_with(&a, "/1/admin/msg/del?key=a", form, b"").await;
    assert_eq!(r.text(), json_200(r#"{"ret":65534}"#));
    let r = post_with(&a, "/1/admin/msg/del", form, b"key=broken").await;
    assert_eq!(r.text(), json_200(r#"{"ret":65535}"#));
    w.web.shutdown().await;
}

#[tokio::test]
async fn token_add_goes_to_the_owning_comet() {
    let w = golden_web().await;
    let a = w.admin();
    let r = post(&a, "/1/token/add?k=Terry-Mao&t=tok1", b"").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    let r =
        post_with(&a, "/1/token/add", "Content-Type: application/x-www-form-urlencoded\r\n", b"k=t1&t=tok2&e=60").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    assert_eq!(
        w.comet("node1").calls(),
        [CometCall::Token { key: "Terry-Mao".into(), token: "tok1".into(), expire_secs: web::DEFAULT_TOKEN_SECS }]
    );
    assert_eq!(
        w.comet("node2").calls(),
        [CometCall::Token { key: "t1".into(), token: "tok2".into(), expire_secs: 60 }]
    );
    for q in [
        "t=x",
        "k=a",
        "k=a&t=",
        "k=&t=x",
        "k=a&t=x&e=abc",
        "k=a&t=x&e=0",
        "k=a&t=x&e=-1",
        "k=a&t=x&e=99999999999999999999999",
    ] {
        let r = post(&a, &format!("/1/token/add?{q}"), b"").await;
        assert_eq!(r.text(), json_200(r#"{"ret":65534}"#), "{q}");
    }
    w.comet("node1").down.store(true, Ordering::Relaxed);
    let r = post(&a, "/1/token/add?k=Terry-Mao&t=tok1", b"").await;
    assert_eq!(r.text(), json_200(r#"{"ret":65535}"#));
    w.web.shutdown().await;

    let empty = empty_web().await;
    let r = post(&empty.admin(), "/1/token/add?k=a&t=b", b"").await;
    assert_eq!(r.text(), json_200(r#"{"ret":1001}"#));
    empty.web.shutdown().await;
}

#[tokio::test]
async fn admin_token_guards_the_admin_api() {
    let mut config = loopback_config();
    config.base.admin_token = "s3cret".into();
    let w = start_web(config, golden_membership(), Arc::new(FakeStore::default())).await;
    let a = w.admin();
    let unauthorized = "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nWww-Authenticate: Bearer\r\nContent-Length: 13\r\n\r\nUnauthorized\n";
    for headers in
        ["", "Authorization: Bearer wrong\r\n", "Authorization: s3cret\r\n", "Authorization: Basic czNjcmV0\r\n"]
    {
        let r = post_with(&a, "/1/admin/push/private?key=a&expire=0", headers, b"{}").await;
        assert_eq!(r.text(), unauthorized, "{headers:?}");
        let r = post_with(&a, "/1/token/add?k=a&t=b", headers, b"").await;
        assert_eq!(r.status(), 401);
    }
    assert!(w.comets.values().all(|c| c.calls().is_empty()));
    let auth = "Authorization: Bearer s3cret\r\n";
    let r = post_with(&a, "/1/admin/push/private?key=Terry-Mao&expire=0", auth, b"{}").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    let r = post_with(&a, "/1/admin/push/mprivate?expire=0", auth, br#"{"m":"{}","k":"a"}"#).await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    // Monitoring stays open; the public port never needs the token.
    assert_eq!(get(&a, "/health").await.status(), 200);
    assert_eq!(get(&a, "/metrics").await.status(), 200);
    assert_eq!(get(&w.public(), "/1/server/get?k=a&p=2").await.status(), 200);
    w.web.shutdown().await;
}

#[tokio::test]
async fn metrics_and_health_on_the_admin_port() {
    let w = golden_web().await;
    let a = w.admin();
    get(&w.public(), "/1/server/get?k=a&p=2").await;
    let r = get(&a, "/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.body().contains("gopush_web_requests_total"), "{}", r.body());
    let r = get(&a, "/health").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("Content-Type"), Some("application/json;charset=utf-8"));
    assert_eq!(r.body(), r#"{"detail":{"comet_instances":3,"comet_nodes":3,"zookeeper":"none"},"ok":true}"#);
    w.web.shutdown().await;

    let empty = empty_web().await;
    let r = get(&empty.admin(), "/health").await;
    assert_eq!(r.status(), 503, "no comet to route to");
    empty.web.shutdown().await;
}

#[tokio::test]
async fn keep_alive_serves_many_requests_per_connection() {
    let w = golden_web().await;
    let mut s = Conn::open(&w.public()).await;
    for i in 0..5 {
        s.send(format!("GET /1/server/get?k=Terry-Mao&p=2&n={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).await;
        let r = s.response().await;
        assert_eq!(r.text(), json_200(r#"{"data":{"server":"node1:6969"},"ret":0}"#));
    }
    // Pipelined requests are answered in order.
    s.send(b"GET /1/time/get HTTP/1.1\r\nHost: t\r\n\r\nGET /1/server/get?k=t1&p=2 HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(s.response().await.body().contains("timeid"));
    assert_eq!(s.response().await.body(), r#"{"data":{"server":"node2:6969"},"ret":0}"#);
    // HTTP/1.0 without keep-alive is closed after the answer.
    let mut s = Conn::open(&w.admin()).await;
    s.send(b"POST /1/admin/push/private?key=a&expire=0 HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}").await;
    assert_eq!(s.response().await.body(), r#"{"ret":0}"#);
    assert!(s.until_closed().await.is_empty());
    w.web.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let mut config = loopback_config();
    config.base.max_body = 1024;
    let w = start_web(config, golden_membership(), Arc::new(FakeStore::default())).await;
    let a = w.admin();
    let exact = format!("[{}]", "1,".repeat(510) + "1");
    assert_eq!(exact.len(), 1023);
    let r = post(&a, "/1/admin/push/private?key=Terry-Mao&expire=0", exact.as_bytes()).await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#), "within the limit");
    let big = format!("[{}]", "1,".repeat(5000) + "1");
    for target in [
        "/1/admin/push/private?key=Terry-Mao&expire=0",
        "/1/admin/push/mprivate?expire=0",
        "/1/admin/msg/del",
        "/1/token/add?k=a&t=b",
    ] {
        let r = post(&a, target, big.as_bytes()).await;
        assert_eq!(r.text(), json_200(r#"{"ret":65534}"#), "{target}");
    }
    // Chunked without a length, and a declared length far too large (the body is never sent).
    let mut s = Conn::open(&a).await;
    let chunk = "x".repeat(2000);
    s.send(
        format!(
            "POST /1/admin/push/private?key=a&expire=0 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(s.response().await.body(), r#"{"ret":65534}"#);
    let r = exchange(
        &a,
        b"POST /1/admin/push/private?key=a&expire=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n",
    )
    .await;
    assert_eq!(r.text(), json_200(r#"{"ret":65534}"#));
    assert_eq!(w.comet("node1").calls().len(), 1);
    w.web.shutdown().await;
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let mut config = loopback_config();
    config.base.http_timeout = Duration::from_millis(300);
    let w = start_web(config, golden_membership(), Arc::new(FakeStore::default())).await;
    // An idle connection, and one that never finishes its head, are closed after the timeout.
    for first in [&b""[..], b"GET /1/time/get HTTP/1.1\r\nHo"] {
        let mut s = Conn::open(&w.public()).await;
        s.send(first).await;
        let rest = s.until_closed().await;
        assert!(!String::from_utf8_lossy(&rest).contains(" 500 "));
    }
    // A body that stops arriving gets 65534 once the deadline passes.
    let mut s = Conn::open(&w.admin()).await;
    s.send(b"POST /1/admin/push/private?key=a&expire=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{\"a\"").await;
    assert_eq!(s.response().await.body(), r#"{"ret":65534}"#);
    w.web.shutdown().await;
}

#[tokio::test]
async fn junk_never_gets_a_500() {
    let w = golden_web().await;
    let requests: Vec<Vec<u8>> = vec![
        b"GET /1/server/get?k=%&p=2 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /1/server/get?k=%E4%BD&p=2 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /1/server/get?&&&=&k HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        format!("GET /1/server/get?k={}&p=2 HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(8000)).into_bytes(),
        b"GET /1/msg/get?k=a&m=9223372036854775807 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /1/msg/get?k=a&m=-9223372036854775808 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /1/time/get?cb=%00 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
    ];
    for req in &requests {
        let r = exchange(&w.public(), req).await;
        assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(&req[..60.min(req.len())]));
    }
    // A head hyper cannot parse gets a 4xx from hyper, never a 500 or a hang.
    for junk in
        [&b"\x00\x01\x02\r\n\r\n"[..], b"GET / HTTP/9.9\r\n\r\n", b"GET /1/time/get HTTP/1.1\r\nBad Header\r\n\r\n"]
    {
        let mut s = Conn::open(&w.public()).await;
        s.send(junk).await;
        let rest = s.until_closed().await;
        assert!(!String::from_utf8_lossy(&rest).contains(" 500 "), "{junk:?}");
    }
    // The server still answers.
    assert_eq!(get(&w.public(), "/1/server/get?k=t1&p=2").await.status(), 200);
    w.web.shutdown().await;
}
