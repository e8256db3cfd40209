//! Presence, closing a key and webhooks, through real processes: a cluster of two comets (with
//! ZooKeeper, Redis, a message node and web) and a standalone process, driven only through the
//! admin API, real TCP and WebSocket subscribers and a real HTTP webhook receiver
//! (docs/http-api.md#presence-and-control, docs/http-api.md#webhooks).

#[allow(dead_code)] // only part of the shared harness is used here
mod harness;

use harness::client::{TcpSub, WsSub};
use harness::config::WebPorts;
use harness::http::{get, post, push, ret};
use harness::receiver::Receiver;
use harness::{Cluster, Standalone, eventually, keys_owned_by};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

/// Deadline for something the cluster does at once (a wait, never a speed assertion).
const WAIT: Duration = Duration::from_secs(10);
/// Deadline for webhook events, retries included.
const DELIVERED: Duration = Duration::from_secs(40);

const SECRET: &str = "hook-secret";

async fn admin_get(admin: &str, path: &str) -> Value {
    get(admin, path).await.unwrap_or_else(|e| panic!("GET {path}: {e}")).json()
}

async fn admin_post(admin: &str, path: &str, body: &str) -> Value {
    post(admin, path, "application/json", body).await.unwrap_or_else(|e| panic!("POST {path}: {e}")).json()
}

/// The value of one series in a Prometheus text page (0 when absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn metric(addr: &str, series: &str) -> f64 {
    let page = get(addr, "/metrics").await.unwrap_or_else(|e| panic!("GET {addr}/metrics: {e}"));
    sample(page.body(), series)
}

/// `(event, reason)` of the events the receiver got for `key`, in arrival order.
fn events_of(receiver: &Receiver, key: &str) -> Vec<(String, String)> {
    let name = |v: &Value| v.as_str().unwrap_or_default().to_string();
    receiver.events().iter().filter(|e| e["key"] == key).map(|e| (name(&e["event"]), name(&e["reason"]))).collect()
}

fn pair(event: &str, reason: &str) -> (String, String) {
    (event.to_string(), reason.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_close_and_webhooks_across_two_comets() {
    let (Some(zk), Some(redis)) = (testkit::zk_addr(), testkit::redis_addrs()) else { return };
    let mut receiver = Receiver::start().await;
    let hooks = format!(
        "[webhook]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nflush = \"50ms\"\nbackoff = \"100ms\"\nretries = 20\n",
        receiver.url()
    );
    let nodes = ["node1", "node2"];
    let cluster = Cluster::start_with(&zk, &redis, &nodes, WebPorts::free(), &hooks).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let a = keys_owned_by(&nodes, "node1", "a", 2);
    let b = keys_owned_by(&nodes, "node2", "b", 2);

    let mut a_tcp = TcpSub::subscribe(&public, &a[0], Some("1")).await;
    let mut a_ws = WsSub::subscribe(&public, &a[0], Some("1")).await;
    let mut b_tcp = TcpSub::subscribe(&public, &b[0], Some("1")).await;

    // One key: online on either comet, with its protocols and node, in this key order.
    let r = get(&admin, &format!("/1/admin/online?key={}", a[0])).await.expect("online a0");
    assert_eq!(r.body(), r#"{"data":{"online":true,"conns":2,"tcp":1,"ws":1,"node":"node1"},"ret":0}"#);
    let v = admin_get(&admin, &format!("/1/admin/online?key={}", b[0])).await;
    assert_eq!(v, json!({"data": {"online": true, "conns": 1, "tcp": 1, "ws": 0, "node": "node2"}, "ret": 0}));
    let v = admin_post(&admin, &format!("/1/admin/online?key={}", a[1]), "").await;
    assert_eq!(v, json!({"data": {"online": false, "conns": 0, "tcp": 0, "ws": 0, "node": "node1"}, "ret": 0}));

    // A batch: one call per owning comet, seen in each comet's own metrics.
    let series = "gopush_comet_presence_calls_total{op=\"online\"}";
    let stats: Vec<String> = nodes.iter().map(|n| cluster.comet(n).stat()).collect();
    let mut before = Vec::new();
    for stat in &stats {
        before.push(metric(stat, series).await);
    }
    let body = format!(r#"{{"k":"{},{},{},{}"}}"#, a[0], a[1], b[0], b[1]);
    let v = admin_post(&admin, "/1/admin/online", &body).await;
    assert_eq!(v, json!({"data": {"online": [a[0], b[0]], "offline": [a[1], b[1]]}, "ret": 0}));
    for (stat, before) in stats.iter().zip(before) {
        assert_eq!(metric(stat, series).await, before + 1.0, "one online call to the comet at {stat}");
    }

    // Counts: what this test opened, per comet and in total.
    let v = admin_get(&admin, "/1/admin/online/count").await;
    let want = json!({"data": {"conns": 3, "keys": 2, "tcp": 2, "ws": 1, "comets": [
        {"node": "node1", "conns": 2, "keys": 1, "tcp": 1, "ws": 1},
        {"node": "node2", "conns": 1, "keys": 1, "tcp": 1, "ws": 0},
    ]}, "ret": 0});
    assert_eq!(v, want);

    // Close: every connection of a0 ends, WebSocket with the documented close frame; b0 stays.
    let v = admin_post(&admin, &format!("/1/admin/conn/close?key={}", a[0]), "").await;
    assert_eq!(v, json!({"data": {"closed": 2}, "ret": 0}));
    assert!(a_tcp.closed_within(WAIT).await, "the TCP connection of a0 is closed");
    assert_eq!(a_ws.close_frame(WAIT).await, Some((1000, "closed by server".to_string())));
    assert_eq!(push(&admin, &b[0], 0, "{\"still\":1}").await, Some(0));
    assert_eq!(b_tcp.message(WAIT).await["msg"], json!({"still": 1}), "b0 was left alone");
    let offline = format!("/1/admin/online?key={}", a[0]);
    eventually("a0 to be offline", WAIT, || async { admin_get(&admin, &offline).await["data"]["online"] == false })
        .await;
    let _a_again = TcpSub::subscribe(&public, &a[0], Some("1")).await;
    assert_eq!(admin_get(&admin, &offline).await["data"]["conns"], 1, "a0 subscribed again");

    // Bad keys and oversized batches are parameter errors.
    let long = "x".repeat(1025);
    for path in ["/1/admin/online?key=", "/1/admin/online", &format!("/1/admin/online?key={long}")] {
        assert_eq!(ret(&admin_get(&admin, path).await), 65534, "{path}");
    }
    assert_eq!(ret(&admin_post(&admin, "/1/admin/conn/close", "").await), 65534);
    assert_eq!(ret(&admin_post(&admin, "/1/admin/online", r#"{"k":",,"}"#).await), 65534);
    let too_many: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let v = admin_post(&admin, "/1/admin/online", &format!(r#"{{"k":"{}"}}"#, too_many.join(","))).await;
    assert_eq!(ret(&v), 65534, "10,001 keys");

    // Webhooks: a0 went online, offline when closed by the server, and online again, signed.
    let want = vec![pair("online", ""), pair("offline", "server_close"), pair("online", "")];
    eventually("a0's webhook events", DELIVERED, || async { events_of(&receiver, &a[0]) == want }).await;
    assert_eq!(events_of(&receiver, &b[0]), vec![pair("online", "")]);
    let deliveries = receiver.deliveries();
    let ids: HashSet<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), deliveries.len(), "every delivery id is unique");
    for d in &deliveries {
        assert_eq!(d.signature, comet::webhook_signature(SECRET, &d.body), "signature of {}", d.id);
    }
    let first = &receiver.events().into_iter().find(|e| e["key"] == a[0].as_str()).expect("an a0 event");
    assert_eq!(
        (first["node"].as_str(), first["proto"].as_str(), first["conns"].as_u64()),
        (Some("node1"), Some("tcp"), Some(1))
    );
    assert!(first["time"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{first}");

    // The receiver down for 5 s: the events wait in the comet and arrive after it is back.
    receiver.stop();
    let c = keys_owned_by(&nodes, "node2", "c", 1).remove(0);
    drop(TcpSub::subscribe(&public, &c, Some("1")).await);
    let gone = format!("/1/admin/online?key={c}");
    eventually("c to be offline", WAIT, || async { admin_get(&admin, &gone).await["data"]["online"] == false }).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(events_of(&receiver, &c).is_empty(), "nothing arrived while the receiver was down");
    receiver.start_again().await;
    let want = vec![pair("online", ""), pair("offline", "client_close")];
    eventually("c's events after the receiver came back", DELIVERED, || async { events_of(&receiver, &c) == want })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_presence_and_a_webhook_queue_overflow() {
    // A receiver that never answers (nothing listens): the sender retries its first batch while
    // the queue of 4 overflows.
    let dead = format!("127.0.0.1:{}", testkit::free_port());
    let hooks = format!(
        "[comet.webhook]\nurl = \"http://{dead}/hooks\"\nqueue = 4\nbatch = 1\nretries = 1000\nbackoff = \"1s\"\n"
    );
    let standalone = Standalone::start_with(WebPorts::free(), &hooks).await;
    let (public, admin) = (standalone.public(), standalone.admin());

    let held = TcpSub::subscribe(&public, "held", Some("1")).await;
    // 30 subscriptions come and go: 60 events into a queue of 4. Each subscribes as usual.
    for i in 0..30 {
        drop(TcpSub::subscribe(&public, &format!("churn-{i}"), Some("1")).await);
    }
    let dropped = "gopush_comet_webhook_dropped_total{reason=\"overflow\"}";
    eventually("overflow drops to be counted", WAIT, || async { metric(&admin, dropped).await >= 30.0 }).await;

    let v = admin_get(&admin, "/1/admin/online?key=held").await;
    assert_eq!(v, json!({"data": {"online": true, "conns": 1, "tcp": 1, "ws": 0, "node": "node1"}, "ret": 0}));
    eventually("only held to be online", WAIT, || async {
        admin_get(&admin, "/1/admin/online/count").await["data"]["keys"] == 1
    })
    .await;
    let v = admin_get(&admin, "/1/admin/online/count").await;
    assert_eq!(v["data"]["comets"], json!([{"node": "node1", "conns": 1, "keys": 1, "tcp": 1, "ws": 0}]));
    let v = admin_post(&admin, "/1/admin/conn/close?key=held", "").await;
    assert_eq!(v, json!({"data": {"closed": 1}, "ret": 0}));
    let mut held = held;
    assert!(held.closed_within(WAIT).await);
}

/// The room presence checks shared by the cluster and standalone: 250 members of room `watch`
/// online (one with a second, WebSocket, connection) and one member offline are counted, paged
/// through 100 at a time with every key once, and drop out when they disconnect. Answers the
/// count reply, whose per-comet figures the caller checks, and the 240 subscribers still open.
async fn room_presence_suite(public: &str, admin: &str, prefix: &str) -> (Value, Vec<TcpSub>) {
    let keys: Vec<String> = (0..250).map(|i| format!("{prefix}-{i:03}")).collect();
    let offline = format!("{prefix}-offline");
    let members = format!("{},{offline}", keys.join(","));
    let v = admin_post(admin, "/1/admin/room/join", &json!({"k": members, "r": "watch"}).to_string()).await;
    assert_eq!(v, json!({"ret": 0}));
    let mut subs = Vec::new();
    for key in &keys {
        subs.push(TcpSub::subscribe(public, key, Some("1")).await);
    }
    let ws = WsSub::subscribe(public, &keys[0], Some("1")).await;

    let v = admin_get(admin, "/1/admin/online/count?room=watch").await;
    assert_eq!((ret(&v), &v["data"]["room"]), (0, &json!("watch")), "{v}");
    assert_eq!((&v["data"]["keys"], &v["data"]["conns"]), (&json!(250), &json!(251)), "{v}");
    let per_comet: u64 =
        v["data"]["comets"].as_array().expect("comets").iter().map(|c| c["keys"].as_u64().unwrap_or(0)).sum();
    assert_eq!(per_comet, 250, "{v}");
    let empty = admin_get(admin, "/1/admin/online/count?room=nobody-here").await;
    assert_eq!((&empty["data"]["keys"], &empty["data"]["conns"]), (&json!(0), &json!(0)), "{empty}");

    // Paging: 100, 100, 50, each key once, in order, and the last page says it is the last.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        pages += 1;
        assert!(pages <= 4, "paging ends");
        let v = admin_get(admin, &format!("/1/admin/room/online?room=watch&limit=100&cursor={cursor}")).await;
        assert_eq!((ret(&v), &v["data"]["failed"]), (0, &json!([])), "{v}");
        let page: Vec<String> =
            v["data"]["keys"].as_array().expect("keys").iter().map(|k| k.as_str().unwrap_or_default().into()).collect();
        assert!(page.len() <= 100, "{v}");
        seen.extend(page);
        cursor = v["data"]["next"].as_str().expect("next").to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen, keys, "every online key once, sorted, and no offline member");
    let v = admin_get(admin, "/1/admin/room/online?room=watch&limit=1000").await;
    assert_eq!((v["data"]["keys"].as_array().map(Vec::len), &v["data"]["next"]), (Some(250), &json!("")), "{v}");
    let v = admin_post(admin, "/1/admin/room/online?room=watch", "").await;
    assert_eq!(v["data"]["keys"].as_array().map(Vec::len), Some(100), "100 by default, POST as well: {v}");

    // Members that disconnect drop out of both the count and the list.
    drop(ws);
    let gone: Vec<String> = keys[..10].to_vec();
    subs.drain(..10);
    eventually("ten members to drop out", WAIT, || async {
        let v = admin_get(admin, "/1/admin/online/count?room=watch").await;
        v["data"]["keys"] == 240 && v["data"]["conns"] == 240
    })
    .await;
    let v = admin_get(admin, "/1/admin/room/online?room=watch&limit=1000").await;
    let listed: Vec<&str> = v["data"]["keys"].as_array().expect("keys").iter().filter_map(Value::as_str).collect();
    assert_eq!(listed.len(), 240);
    assert!(gone.iter().all(|k| !listed.contains(&k.as_str())), "{v}");

    // Bad input is 65534.
    let long = "r".repeat(65);
    for path in [
        "/1/admin/online/count?room=".to_string(),
        format!("/1/admin/online/count?room={long}"),
        "/1/admin/room/online".to_string(),
        format!("/1/admin/room/online?room={long}"),
        "/1/admin/room/online?room=watch&limit=0".to_string(),
        "/1/admin/room/online?room=watch&limit=1001".to_string(),
        "/1/admin/room/online?room=watch&limit=ten".to_string(),
        "/1/admin/room/online?room=watch&limit=".to_string(),
        format!("/1/admin/room/online?room=watch&cursor={}", "c".repeat(1025)),
    ] {
        assert_eq!(ret(&admin_get(admin, &path).await), 65534, "{path}");
    }
    (admin_get(admin, "/1/admin/online/count?room=watch").await, subs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_presence_across_two_comets() {
    let (Some(zk), Some(redis)) = (testkit::zk_addr(), testkit::redis_addrs()) else { return };
    let nodes = ["node1", "node2"];
    let mut cluster = Cluster::start_with(&zk, &redis, &nodes, WebPorts::free(), "").await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let (v, _subs) = room_presence_suite(&public, &admin, "rp").await;
    let comets = v["data"]["comets"].as_array().expect("comets");
    assert_eq!(comets.iter().map(|c| c["node"].clone()).collect::<Vec<_>>(), [json!("node1"), json!("node2")]);
    assert!(comets.iter().all(|c| c["keys"].as_u64().unwrap_or(0) > 0), "members on both comets: {v}");

    // A comet that cannot answer: its keys are left out and it is named.
    cluster.comet_mut("node2").proc.kill9();
    let v = admin_get(&admin, "/1/admin/room/online?room=watch&limit=1000").await;
    assert_eq!((ret(&v), &v["data"]["failed"]), (0, &json!(["node2"])), "{v}");
    let listed = v["data"]["keys"].as_array().expect("keys").len() as u64;
    assert_eq!(listed, comets[0]["keys"].as_u64().unwrap_or(0), "node1's keys only: {v}");
    let v = admin_get(&admin, "/1/admin/online/count?room=watch").await;
    assert!(v["data"]["comets"][1]["error"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_room_presence() {
    let standalone = Standalone::start_with(WebPorts::free(), "").await;
    let (v, _subs) = room_presence_suite(&standalone.public(), &standalone.admin(), "solo").await;
    assert_eq!(v["data"]["comets"], json!([{"node": "node1", "conns": 240, "keys": 240}]));
}
