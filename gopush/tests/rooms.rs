//! Rooms and broadcast end to end (docs/http-api.md#rooms-and-broadcast): real `gopush` processes
//! (ZooKeeper and Redis from `testkit`, two comets, message, web) and one `gopush standalone`,
//! driven through the admin API and real TCP and WebSocket subscribers in both message formats.

#[allow(dead_code)] // the room tests use part of the shared harness
mod harness;

use harness::client::{Next, TcpSub, WsSub};
use harness::config::WebPorts;
use harness::http::{post, push, ret};
use harness::{Cluster, Standalone, eventually, keys_owned_by};
use serde_json::{Value, json};
use std::time::Duration;

/// Deadline for a pushed frame to arrive (a wait, never a speed assertion).
const WAIT: Duration = Duration::from_secs(10);
/// Deadline for the cluster to move a dead comet's keys.
const NOTICE: Duration = Duration::from_secs(40);

/// `POST path` with `body` on the admin port: the reply as JSON.
async fn admin(addr: &str, path: &str, body: &str) -> Value {
    let r = post(addr, path, "application/json", body).await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    serde_json::from_slice(r.body_bytes()).unwrap_or_else(|e| panic!("POST {path}: {e}: {}", r.body()))
}

async fn join(addr: &str, keys: &[&str], room: &str) -> Value {
    admin(addr, "/1/admin/room/join", &json!({"k": keys.join(","), "r": room}).to_string()).await
}

async fn rooms_of(addr: &str, key: &str) -> Value {
    admin(addr, &format!("/1/admin/room/get?key={key}"), "").await
}

/// A frame as a TCP or WebSocket subscriber reads it.
enum Sub {
    Tcp(TcpSub),
    Ws(Box<WsSub>),
}

impl Sub {
    async fn frame(&mut self) -> String {
        let next = match self {
            Sub::Tcp(s) => s.next(WAIT).await,
            Sub::Ws(s) => s.next(WAIT).await,
        };
        match next {
            Next::Frame(f) => String::from_utf8(f).expect("UTF-8 frame"),
            other => panic!("expected a pushed frame, got {other:?}"),
        }
    }

    async fn json(&mut self) -> Value {
        let f = self.frame().await;
        serde_json::from_str(&f).unwrap_or_else(|e| panic!("{e}: {f}"))
    }
}

/// The pushed message of a frame in either format (the old one carries it as a JSON string).
fn body_of(v: &Value) -> Value {
    match &v["msg"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}")),
        other => other.clone(),
    }
}

fn mid_of(v: &Value) -> u64 {
    v["mid"].as_u64().unwrap_or_else(|| panic!("no mid in {v}"))
}

/// Proves the connections of `key` got nothing since their last frame: a private push to the key
/// must be the next frame of each.
async fn nothing_pending<'a>(addr: &str, key: &str, subs: impl IntoIterator<Item = &'a mut Sub>) {
    assert_eq!(push(addr, key, 0, r#"{"marker":1}"#).await, Some(0));
    for sub in subs {
        assert_eq!(body_of(&sub.json().await), json!({"marker": 1}), "{key} got something it should not have");
    }
}

/// The room checks shared by the cluster and standalone: `m1` and `m2` become members (on two
/// comets in a cluster), `out` stays out. Leaves `m1` and `m2` in room `lobby`.
async fn room_suite(public: &str, addr: &str, m1: &str, m2: &str, out: &str) -> Vec<(String, Sub)> {
    // m1: TCP new format and WebSocket old format; m2: TCP old format and WebSocket new format.
    let mut subs = vec![
        (m1.to_string(), Sub::Tcp(TcpSub::subscribe(public, m1, Some("1.0")).await)),
        (m1.to_string(), Sub::Ws(Box::new(WsSub::subscribe(public, m1, None).await))),
        (m2.to_string(), Sub::Tcp(TcpSub::subscribe(public, m2, None).await)),
        (m2.to_string(), Sub::Ws(Box::new(WsSub::subscribe(public, m2, Some("1")).await))),
    ];
    let new_format = [true, false, false, true];
    let mut outsider = Sub::Tcp(TcpSub::subscribe(public, out, Some("1.0")).await);

    // Join while connected: the live connections take the room at once.
    assert_eq!(join(addr, &[m1, m2], "lobby").await, json!({"ret": 0}));
    let single = admin(addr, &format!("/1/admin/room/join?key={m1}&room=other"), "").await;
    assert_eq!(single, json!({"ret": 0}));
    assert_eq!(rooms_of(addr, m1).await, json!({"data": {"rooms": ["lobby", "other"]}, "ret": 0}));
    assert_eq!(rooms_of(addr, out).await, json!({"data": {"rooms": []}, "ret": 0}));

    let reply = admin(addr, "/1/admin/push/room?room=lobby", r#"{"n":1,"h":"<b>"}"#).await;
    assert_eq!(ret(&reply), 0, "{reply}");
    assert_eq!(reply["data"]["failed"], json!([]), "{reply}");
    let mut mid = None;
    for ((key, sub), new) in subs.iter_mut().zip(new_format) {
        let frame = sub.frame().await;
        let m = mid_of(&serde_json::from_str(&frame).expect("JSON"));
        assert_eq!(*mid.get_or_insert(m), m, "one mid for every member");
        let want = if new {
            format!(r#"{{"msg":{{"n":1,"h":"\u003cb\u003e"}},"mid":{m},"gid":1,"room":"lobby"}}"#)
        } else {
            format!(r#"{{"msg":"{{\"n\":1,\"h\":\"\u003cb\u003e\"}}","mid":{m},"gid":1}}"#)
        };
        assert_eq!(frame, want, "{key}");
    }
    nothing_pending(addr, out, [&mut outsider]).await;

    // Leave stops delivery to m2 only.
    let left = admin(addr, &format!("/1/admin/room/leave?key={m2}&room=lobby"), "").await;
    assert_eq!(left, json!({"ret": 0}));
    assert_eq!(ret(&admin(addr, "/1/admin/push/room?room=lobby", r#"{"n":2}"#).await), 0);
    for (_, sub) in subs.iter_mut().filter(|(k, _)| k == m1) {
        assert_eq!(body_of(&sub.json().await), json!({"n": 2}));
    }
    nothing_pending(addr, m2, subs.iter_mut().filter(|(k, _)| k == m2).map(|(_, s)| s)).await;
    assert_eq!(join(addr, &[m2], "lobby").await, json!({"ret": 0}));

    // Broadcast: every connection, members or not, gid 2 and no room.
    let all = admin(addr, "/1/admin/push/all", r#"{"all":1}"#).await;
    assert_eq!(ret(&all), 0, "{all}");
    for sub in subs.iter_mut().map(|(_, s)| s).chain(std::iter::once(&mut outsider)) {
        let v = sub.json().await;
        assert_eq!((v["gid"].clone(), body_of(&v)), (json!(2), json!({"all": 1})), "{v}");
        assert!(v.get("room").is_none(), "{v}");
    }
    let rated = admin(addr, "/1/admin/push/all?rate=1000", r#"{"all":2}"#).await;
    assert_eq!(ret(&rated), 0, "{rated}");
    for sub in subs.iter_mut().map(|(_, s)| s).chain(std::iter::once(&mut outsider)) {
        assert_eq!(body_of(&sub.json().await), json!({"all": 2}));
    }

    // Reconnecting keeps the membership: the store holds it.
    subs.truncate(2);
    let mut again = Sub::Tcp(TcpSub::subscribe(public, m2, Some("1.0")).await);
    assert_eq!(ret(&admin(addr, "/1/admin/push/room?room=lobby", r#"{"n":3}"#).await), 0);
    assert_eq!(again.json().await["msg"], json!({"n": 3}));
    for (_, sub) in subs.iter_mut() {
        assert_eq!(body_of(&sub.json().await), json!({"n": 3}));
    }
    subs.push((m2.to_string(), again));

    // Bad input: 65534 with a reason.
    let long = "r".repeat(65);
    for path in [
        format!("/1/admin/push/room?room={long}"),
        "/1/admin/push/room".to_string(),
        "/1/admin/push/room?room=lobby&expire=60".to_string(),
        "/1/admin/push/all?expire=1".to_string(),
        "/1/admin/push/all?rate=-5".to_string(),
        format!("/1/admin/room/join?key={m1}&room={long}"),
        "/1/admin/room/get".to_string(),
    ] {
        let r = post(addr, &path, "application/json", "{}").await.expect("POST");
        let v: Value = serde_json::from_slice(r.body_bytes()).expect("JSON");
        assert_eq!(ret(&v), 65534, "{path}: {v}");
    }
    let expired = post(addr, "/1/admin/push/room?room=lobby&expire=60", "application/json", "{}").await.expect("POST");
    let reason = expired.header("x-gopush-error");
    assert!(reason.is_none_or(|e| e.contains("online only")), "{reason:?}");
    let too_many: Vec<String> = (0..10_001).map(|i| format!("big-{i}")).collect();
    let body = json!({"k": too_many.join(","), "r": "big"}).to_string();
    assert_eq!(ret(&admin(addr, "/1/admin/room/join", &body).await), 65534, "10,001 keys");
    assert_eq!(ret(&admin(addr, "/1/admin/push/room?room=lobby", "not json").await), 65535);

    // A 10,000-member room: one batch, and the connected member among them still gets its push.
    let mut big: Vec<String> = too_many[..9_999].to_vec();
    big.push(m1.to_string());
    let body = json!({"k": big.join(","), "r": "big"}).to_string();
    assert_eq!(admin(addr, "/1/admin/room/join", &body).await, json!({"ret": 0}));
    assert_eq!(rooms_of(addr, "big-9998").await["data"]["rooms"], json!(["big"]));
    assert_eq!(ret(&admin(addr, "/1/admin/push/room?room=big", r#"{"big":1}"#).await), 0);
    for (key, sub) in subs.iter_mut().filter(|(k, _)| k == m1) {
        let v = sub.json().await;
        assert_eq!((v["gid"].clone(), body_of(&v)), (json!(1), json!({"big": 1})), "{key}: {v}");
    }
    subs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_rooms_and_broadcast() {
    let server = Standalone::start().await;
    room_suite(&server.public(), &server.admin(), "solo-m1", "solo-m2", "solo-out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_rooms_span_comets_and_survive_a_comet_loss() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    let mut cluster = Cluster::start(&zk, &redis, &["node1", "node2"]).await;
    let (public, addr) = (cluster.public(), cluster.admin());
    let nodes = cluster.nodes();
    let m1 = keys_owned_by(&nodes, "node1", "room", 1).remove(0);
    let m2 = keys_owned_by(&nodes, "node2", "room", 1).remove(0);
    let out = keys_owned_by(&nodes, "node2", "out", 1).remove(0);
    let mut subs = room_suite(&public, &addr, &m1, &m2, &out).await;

    // node1 dies: a room push names it as failed, and node2's members still get the message.
    cluster.comet_mut("node1").proc.kill9();
    let reply = admin(&addr, "/1/admin/push/room?room=lobby", r#"{"n":4}"#).await;
    assert_eq!(reply, json!({"data": {"comets": 1, "failed": ["node1"]}, "ret": 0}), "pushed right after the kill");
    for (_, sub) in subs.iter_mut().filter(|(k, _)| *k == m2) {
        assert_eq!(body_of(&sub.json().await), json!({"n": 4}));
    }

    // m1's key moves to node2, which loads its rooms from the store at subscribe.
    let node2 = cluster.comet("node2").tcp();
    eventually(&format!("web to send {m1} to node2"), NOTICE, || async {
        harness::http::server_get(&public, &m1, 2).await.as_deref() == Some(node2.as_str())
    })
    .await;
    let mut moved = Sub::Tcp(TcpSub::subscribe(&public, &m1, Some("1.0")).await);
    assert_eq!(ret(&admin(&addr, "/1/admin/push/room?room=lobby", r#"{"n":5}"#).await), 0);
    let v = moved.json().await;
    assert_eq!((&v["msg"], &v["gid"], &v["room"]), (&json!({"n": 5}), &json!(1), &json!("lobby")), "{v}");
}

/// The comet web gives `key` for `proto` (2: TCP, 1: WebSocket).
async fn comet_for(public: &str, key: &str, proto: u8) -> String {
    harness::http::server_get(public, key, proto).await.unwrap_or_else(|| panic!("no comet for {key}"))
}

/// Rooms joined at subscribe (docs/protocol.md#rooms-at-subscribe), with `client_rooms` on: `a`
/// joins `live` and `news` over TCP, `b` joins `live` over WebSocket; both get the room's pushes,
/// the store's membership is untouched, and the rooms end with the connection.
async fn client_rooms_suite(public: &str, addr: &str, a: &str, b: &str) {
    let (tcp, ws) = (comet_for(public, a, 2).await, comet_for(public, b, 1).await);
    let ta = TcpSub::connect_args(&tcp, &[a, "30", "", "1", "", "live,news"]).await.expect("TCP with rooms");
    let mut ta = Sub::Tcp(ta);
    let wb = WsSub::connect_query(&ws, &format!("key={b}&heartbeat=30&ver=1&room=live")).await.expect("WS with rooms");
    let mut wb = Sub::Ws(Box::new(wb));

    assert_eq!(ret(&admin(addr, "/1/admin/push/room?room=live", r#"{"n":1}"#).await), 0);
    for sub in [&mut ta, &mut wb] {
        let v = sub.json().await;
        assert_eq!((&v["msg"], &v["gid"], &v["room"]), (&json!({"n": 1}), &json!(1), &json!("live")), "{v}");
    }
    assert_eq!(ret(&admin(addr, "/1/admin/push/room?room=news", r#"{"n":2}"#).await), 0);
    assert_eq!(ta.json().await["msg"], json!({"n": 2}));
    nothing_pending(addr, b, [&mut wb]).await;

    // Connection-scoped: nothing stored, and the key's own joins and leaves leave it alone.
    assert_eq!(rooms_of(addr, a).await, json!({"data": {"rooms": []}, "ret": 0}));
    let count = admin(addr, "/1/admin/online/count?room=live", "").await;
    assert_eq!((&count["data"]["keys"], &count["data"]["conns"]), (&json!(2), &json!(2)), "{count}");
    assert_eq!(join(addr, &[a], "live").await, json!({"ret": 0}));
    assert_eq!(admin(addr, &format!("/1/admin/room/leave?key={a}&room=live"), "").await, json!({"ret": 0}));
    assert_eq!(ret(&admin(addr, "/1/admin/push/room?room=live", r#"{"n":3}"#).await), 0);
    assert_eq!(ta.json().await["msg"], json!({"n": 3}), "the key's leave does not undo the connection's join");
    assert_eq!(wb.json().await["msg"], json!({"n": 3}));

    // Another connection of a, without rooms, gets no room pushes.
    let mut plain = Sub::Tcp(TcpSub::connect(&tcp, a, Some("1")).await.expect("plain TCP"));
    assert_eq!(ret(&admin(addr, "/1/admin/push/room?room=news", r#"{"n":4}"#).await), 0);
    assert_eq!(ta.json().await["msg"], json!({"n": 4}));
    nothing_pending(addr, a, [&mut plain, &mut ta]).await;

    // The rooms end with the connection.
    drop(ta);
    eventually("a's connection to leave live", WAIT, || async {
        admin(addr, "/1/admin/online/count?room=live", "").await["data"]["keys"] == 1
    })
    .await;
    let news = admin(addr, "/1/admin/online/count?room=news", "").await;
    assert_eq!(news["data"]["conns"], json!(0), "{news}");

    // 17 rooms, or a room over 64 bytes, is a parameter error.
    let seventeen = (0..17).map(|i| format!("r{i}")).collect::<Vec<_>>().join(",");
    for rooms in [seventeen, "r".repeat(65)] {
        let err = TcpSub::connect_args(&tcp, &[a, "30", "", "1", "", &rooms]).await.err().expect("refused");
        assert!(err.contains("-p"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_client_rooms() {
    let server = Standalone::start_with(WebPorts::free(), "[comet.channel]\nclient_rooms = true\n").await;
    client_rooms_suite(&server.public(), &server.admin(), "cr-a", "cr-b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_client_rooms_across_comets() {
    let (Some(zk), Some(redis)) = (testkit::zk_addr(), testkit::redis_addrs()) else { return };
    let nodes = ["node1", "node2"];
    let cluster = Cluster::start_with(&zk, &redis, &nodes, WebPorts::free(), "[channel]\nclient_rooms = true\n").await;
    let a = keys_owned_by(&nodes, "node1", "cr", 1).remove(0);
    let b = keys_owned_by(&nodes, "node2", "cr", 1).remove(0);
    client_rooms_suite(&cluster.public(), &cluster.admin(), &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_rooms_are_refused_when_off() {
    let server = Standalone::start().await;
    let public = server.public();
    let tcp = comet_for(&public, "off", 2).await;
    let err = TcpSub::connect_args(&tcp, &["off", "30", "", "1", "", "live"]).await.err().expect("TCP refused");
    assert!(err.contains("-j"), "{err}");
    let ws = comet_for(&public, "off", 1).await;
    let err = WsSub::connect_query(&ws, "key=off&heartbeat=30&ver=1&room=live").await.err().expect("WS refused");
    assert!(err.contains("-j"), "{err}");
    // An empty 7th argument asks for nothing and is accepted, as is an empty 6th (no resume).
    TcpSub::connect_args(&tcp, &["off", "30", "", "1", "", ""]).await.expect("no rooms asked");
}
