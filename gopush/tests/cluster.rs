//! Whole-cluster tests with real processes: ZooKeeper and Redis from `testkit`, and `gopush message`,
//! `gopush comet` (several) and `gopush web` started from TOML files, driven only through the public
//! protocols a client and a publisher use. The same protocol suite also runs against one
//! `gopush standalone` process. Destructive tests (a comet `kill -9`, Redis and ZooKeeper restarts)
//! own their comets, and the restart test owns its ZooKeeper and Redis servers.

#[allow(dead_code)] // the browser and restart helpers serve browser.rs
mod harness;

use harness::client::{Next, TcpSub, WsSub};
use harness::config::WebPorts;
use harness::http::{get, msg_get, post, push, ret, server_get};
use harness::{Cluster, Standalone, eventually, healthy, keys_owned_by, owner};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deadline for a pushed frame to arrive (a wait, never a speed assertion).
const WAIT: Duration = Duration::from_secs(10);
/// Deadline for the cluster to notice a dead or new comet (pruning takes ~1 s, a ZooKeeper
/// session 4 s; this is the "something is broken" bound).
const NOTICE: Duration = Duration::from_secs(40);

/// The message every suite push carries: `<b>` checks Go's HTML escaping on the wire.
const MSG: &str = r#"{"n":1,"h":"<b>"}"#;

/// What a versioned subscriber must receive for [`MSG`], byte for byte (docs/protocol.md#message-json, new format).
fn new_format(mid: u64) -> Vec<u8> {
    format!(r#"{{"msg":{{"n":1,"h":"\u003cb\u003e"}},"mid":{mid},"gid":0}}"#).into_bytes()
}

/// What a subscriber without a version must receive for [`MSG`] (docs/protocol.md#message-json, old format: msg as a
/// string).
fn old_format(mid: u64) -> Vec<u8> {
    format!(r#"{{"msg":"{{\"n\":1,\"h\":\"\u003cb\u003e\"}}","mid":{mid},"gid":0}}"#).into_bytes()
}

fn mid_of(frame: &[u8]) -> u64 {
    let v: Value = serde_json::from_slice(frame).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(frame)));
    v["mid"].as_u64().unwrap_or_else(|| panic!("no integer mid in {v}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The client-facing protocol checks, run against a cluster and against standalone:
/// docs/http-api.md routes
/// (versioned, legacy, JSONP, errors), docs/protocol.md TCP and WebSocket subscribe in both message formats,
/// online and offline delivery with the same mid, multi-key push, deletion.
async fn protocol_suite(public: &str, admin: &str, tag: &str) {
    let key = format!("{tag}-alice");
    let off = format!("{tag}-bob");

    // Routing: /1 and /2 server/get, legacy, JSONP, parameter errors.
    let tcp = server_get(public, &key, 2).await.expect("/1/server/get p=2 answers ret 0");
    let ws = server_get(public, &key, 1).await.expect("/1/server/get p=1 answers ret 0");
    let all = get(public, &format!("/2/server/get?k={key}&p=2")).await.expect("/2/server/get").json();
    assert_eq!(ret(&all), 0, "{all}");
    assert!(all["data"]["server"].as_array().is_some_and(|a| a.contains(&json!(tcp))), "{all}");
    let legacy = get(public, &format!("/server/get?key={key}&proto=2")).await.expect("/server/get");
    assert_eq!(legacy.json(), json!({"data": {"server": tcp}, "msg": "ok", "ret": 0}), "{}", legacy.body());
    assert_eq!(legacy.header("content-type"), Some("application/json;charset=utf-8"));
    let jsonp = get(public, &format!("/1/server/get?k={key}&p=2&cb=GoPushCli.cb_1")).await.expect("JSONP");
    assert_eq!(jsonp.body(), format!(r#"GoPushCli.cb_1({{"data":{{"server":"{tcp}"}},"ret":0}})"#));
    assert_eq!(jsonp.header("content-type"), Some("application/javascript;charset=utf-8"));
    let missing = get(public, "/1/server/get?p=2").await.expect("missing k").json();
    assert_eq!(ret(&missing), 65534);
    assert_eq!(get(public, "/1/msgs/get?k=x&m=0").await.expect("unknown path").status(), 404);
    let wrong_method = get(admin, &format!("/1/admin/push/private?key={key}&expire=0")).await.expect("GET on admin");
    assert_eq!(wrong_method.status(), 405);

    // Subscribe: TCP new format, TCP old format (3-argument sub), WebSocket new format.
    let mut t = TcpSub::connect(&tcp, &key, Some("1.0")).await.expect("TCP subscribe, version 1.0");
    let mut old = TcpSub::connect(&tcp, &key, None).await.expect("TCP subscribe, no version");
    let mut w = WsSub::connect(&ws, &key, Some("1")).await.expect("WebSocket subscribe, ver=1");
    t.heartbeat().await;
    w.heartbeat().await;

    // Online push with expire > 0: every connection gets it, the same mid is stored.
    assert_eq!(push(admin, &key, 600, MSG).await, Some(0));
    let frame = t.raw(WAIT).await;
    let mid = mid_of(&frame);
    assert_eq!(text(&frame), text(&new_format(mid)), "TCP new-format frame");
    assert_eq!(text(&old.raw(WAIT).await), text(&old_format(mid)), "TCP old-format frame");
    match w.next(WAIT).await {
        Next::Frame(f) => assert_eq!(text(&f), text(&new_format(mid)), "WebSocket frame"),
        other => panic!("WebSocket: expected the push, got {other:?}"),
    }
    let stored = msg_get(public, &key, 0).await;
    assert!(
        stored.iter().any(|(m, got)| *got == mid && *m == json!({"n": 1, "h": "<b>"})),
        "/1/msg/get must return the pushed message with the online mid {mid}: {stored:?}"
    );
    let after = get(public, &format!("/1/msg/get?k={key}&m={mid}")).await.expect("msg/get after mid");
    assert_eq!(after.body(), r#"{"ret":0}"#, "nothing is newer than the last mid");

    // expire = 0: delivered online, not stored; mids keep increasing.
    assert_eq!(push(admin, &key, 0, r#"{"live":1}"#).await, Some(0));
    let live = t.message(WAIT).await;
    assert_eq!(live["msg"], json!({"live": 1}));
    assert!(live["mid"].as_u64().is_some_and(|m| m > mid), "mids increase: {live} after {mid}");
    old.raw(WAIT).await;
    w.message(WAIT).await;
    assert_eq!(msg_get(public, &key, mid).await, Vec::new(), "expire=0 is not stored");

    // Offline: nobody subscribed to `off`.
    assert_eq!(push(admin, &off, 600, r#"{"offline":1}"#).await, Some(0));
    assert_eq!(push(admin, &off, 0, r#"{"dropped":1}"#).await, Some(0), "expire=0 to nobody is still ret 0");
    assert_eq!(push(admin, &off, 600, r#"{"offline":2}"#).await, Some(0));
    let msgs = msg_get(public, &off, 0).await;
    let bodies: Vec<&Value> = msgs.iter().map(|(m, _)| m).collect();
    assert_eq!(bodies, [&json!({"offline": 1}), &json!({"offline": 2})], "{msgs:?}");
    assert!(msgs[0].1 < msgs[1].1, "ascending mids: {msgs:?}");
    assert_eq!(msg_get(public, &off, msgs[0].1).await.len(), 1, "m = first mid returns only the second");

    // Legacy offline read: old-format strings and an empty pmsgs.
    let legacy = get(public, &format!("/msg/get?key={off}&mid=0&callback=cb")).await.expect("/msg/get");
    let inner =
        legacy.body().strip_prefix("cb(").and_then(|b| b.strip_suffix(')')).expect("legacy JSONP uses callback");
    let v: Value = serde_json::from_str(inner).expect("legacy body is JSON");
    assert_eq!((v["msg"].as_str(), ret(&v), &v["data"]["pmsgs"]), (Some("ok"), 0, &json!([])), "{v}");
    let first: Value = serde_json::from_str(v["data"]["msgs"][0].as_str().expect("msgs are strings")).expect("JSON");
    assert_eq!(first, json!({"msg": "{\"offline\":1}", "mid": msgs[0].1, "gid": 0}));

    // Legacy push route, multi-key push, time.
    let r = post(admin, &format!("/admin/push?key={off}&expire=600"), "application/json", r#"{"legacy":1}"#).await;
    assert_eq!(r.expect("/admin/push").json(), json!({"ret": 0}));
    let body = json!({"m": "{\"multi\":1}", "k": format!("{key},{off}")}).to_string();
    let r = post(admin, "/1/admin/push/mprivate?expire=600", "application/json", &body).await;
    assert_eq!(r.expect("mprivate").json(), json!({"ret": 0}));
    assert_eq!(t.message(WAIT).await["msg"], json!({"multi": 1}));
    assert_eq!(w.message(WAIT).await["msg"], json!({"multi": 1}));
    assert_eq!(old.message(WAIT).await["msg"], json!("{\"multi\":1}"));
    let last: Vec<Value> = msg_get(public, &off, 0).await.into_iter().map(|(m, _)| m).collect();
    assert_eq!(last[2..], [json!({"legacy": 1}), json!({"multi": 1})]);
    let time = get(public, "/1/time/get").await.expect("/1/time/get").json();
    assert!(time["data"]["timeid"].as_u64().is_some_and(|t| t > mid), "{time}");
    let time = get(public, "/time/get").await.expect("/time/get").json();
    assert_eq!(time["msg"], "ok");

    // Deleting a key's messages, versioned and legacy route.
    let form = "application/x-www-form-urlencoded";
    let r = post(admin, "/1/admin/msg/del", form, &format!("key={off}")).await.expect("msg/del");
    assert_eq!(r.json(), json!({"ret": 0}));
    assert!(msg_get(public, &off, 0).await.is_empty());
    let r = post(admin, "/admin/msg/clean", form, &format!("key={key}")).await.expect("msg/clean");
    assert_eq!(r.json(), json!({"ret": 0}));
    assert!(msg_get(public, &key, 0).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_serves_the_client_protocols() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    let cluster = Cluster::start(&zk, &redis, &["node1", "node2"]).await;
    protocol_suite(&cluster.public(), &cluster.admin(), "suite").await;

    // The suite's key lives on one comet; run the push path through the other one too.
    let other = keys_owned_by(&cluster.nodes(), "node2", "n2", 1).remove(0);
    let mut sub = TcpSub::subscribe(&cluster.public(), &other, Some("1.0")).await;
    assert_eq!(sub.server, cluster.comet("node2").tcp());
    assert_eq!(push(&cluster.admin(), &other, 600, MSG).await, Some(0));
    let mid = mid_of(&sub.raw(WAIT).await);
    assert_eq!(msg_get(&cluster.public(), &other, 0).await.last().map(|m| m.1), Some(mid));

    // Health and metrics endpoints of every role.
    for addr in [cluster.comet("node1").stat(), format!("127.0.0.1:{}", cluster.message_stat)] {
        assert!(healthy(&addr).await, "{addr}/health");
        let m = get(&addr, "/metrics").await.expect("/metrics");
        assert_eq!(m.status(), 200, "{addr}/metrics");
    }
    let m = get(&cluster.admin(), "/metrics").await.expect("web /metrics");
    assert!(m.status() == 200 && m.body().contains("gopush_web_requests_total"), "{}", m.body());
    assert!(healthy(&cluster.admin()).await, "web /health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_the_client_protocols() {
    let mut server = Standalone::start().await;
    protocol_suite(&server.public(), &server.admin(), "solo").await;
    let stat = format!("127.0.0.1:{}", server.comet.stat);
    assert!(healthy(&stat).await, "standalone comet /health");

    // Graceful stop: SIGTERM closes subscribers and exits 0.
    let key = "solo-last";
    let mut sub = TcpSub::subscribe(&server.public(), key, Some("1.0")).await;
    let status = server.proc.terminate(Duration::from_secs(30)).expect("standalone exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(sub.closed_within(WAIT).await, "SIGTERM closes client connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_comet_is_pruned_and_its_clients_move() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    let mut cluster = Cluster::start(&zk, &redis, &["node1", "node2"]).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let nodes = cluster.nodes();
    let victims = keys_owned_by(&nodes, "node1", "fo", 3);
    let stayers = keys_owned_by(&nodes, "node2", "fo", 2);
    let mut victim_subs = Vec::new();
    for k in &victims {
        let s = TcpSub::subscribe(&public, k, Some("1.0")).await;
        assert_eq!(s.server, cluster.comet("node1").tcp(), "{k} starts on node1");
        victim_subs.push(s);
    }
    let mut stayer_subs = Vec::new();
    for k in &stayers {
        let s = TcpSub::subscribe(&public, k, Some("1.0")).await;
        assert_eq!(s.server, cluster.comet("node2").tcp(), "{k} starts on node2");
        stayer_subs.push(s);
    }
    let node2 = cluster.comet("node2").tcp();

    let killed = Instant::now();
    cluster.comet_mut("node1").proc.kill9();
    for s in &mut victim_subs {
        assert!(s.closed_within(WAIT).await, "a killed comet's connections end");
    }

    // A publisher keeps pushing to the moved keys; what it got ret 0 for must be stored.
    let mut acked: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut refused = 0;
    for round in 0..3u64 {
        for k in &victims {
            let body = json!({"key": k, "n": round}).to_string();
            let mut tries = 0;
            eventually(&format!("a push to {k} to be acknowledged after the kill"), NOTICE, || {
                tries += 1;
                let (admin, body) = (&admin, &body);
                async move { push(admin, k, 600, body).await == Some(0) }
            })
            .await;
            refused += tries - 1;
            acked.entry(k.clone()).or_default().push(round);
        }
    }
    for k in &victims {
        eventually(&format!("/1/server/get to send {k} to node2"), NOTICE, || async {
            server_get(&public, k, 2).await.as_deref() == Some(node2.as_str())
        })
        .await;
    }
    eprintln!(
        "failover: keys routed to node2 {:?} after the kill; {refused} pushes refused meanwhile",
        killed.elapsed()
    );

    // The clients come back on node2 and fetch everything stored while they were away.
    for (k, s) in victims.iter().zip(victim_subs.iter_mut()) {
        *s = TcpSub::subscribe(&public, k, Some("1.0")).await;
        assert_eq!(s.server, node2, "{k} reconnects to the surviving comet");
        let got: BTreeSet<u64> = msg_get(&public, k, 0)
            .await
            .iter()
            .filter(|(m, _)| m["key"] == json!(k))
            .filter_map(|(m, _)| m["n"].as_u64())
            .collect();
        for n in &acked[k] {
            assert!(got.contains(n), "{k}: message {n} was acknowledged with ret 0 but /1/msg/get lacks it: {got:?}");
        }
        assert_eq!(push(&admin, k, 0, r#"{"back":1}"#).await, Some(0));
        assert_eq!(s.message(WAIT).await["msg"], json!({"back": 1}));
    }
    // node2's own clients never noticed.
    for (k, s) in stayers.iter().zip(stayer_subs.iter_mut()) {
        assert_eq!(push(&admin, k, 0, r#"{"still":1}"#).await, Some(0));
        assert_eq!(s.message(WAIT).await["msg"], json!({"still": 1}), "{k} kept its connection");
    }
    cluster.web.assert_alive();
    cluster.comet_mut("node2").proc.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_comet_takes_only_the_keys_that_move_to_it() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    let mut cluster = Cluster::start(&zk, &redis, &["node1", "node2"]).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let before = ["node1", "node2"];
    let after = ["node1", "node2", "node3"];
    let moving = keys_owned_by(&after, "node3", "mv", 4);
    let staying: Vec<String> =
        (0..).map(|i| format!("st-{i}")).filter(|k| owner(&after, k) == owner(&before, k)).take(4).collect();

    let mut moving_tcp = Vec::new();
    for k in &moving {
        let s = TcpSub::subscribe(&public, k, Some("1.0")).await;
        assert_eq!(s.server, cluster.comet(&owner(&before, k)).tcp());
        moving_tcp.push(s);
    }
    let mut moving_ws = WsSub::subscribe(&public, &moving[0], Some("1")).await;
    assert_eq!(moving_ws.server, cluster.comet(&owner(&before, &moving[0])).ws());
    let mut staying_tcp = Vec::new();
    for k in &staying {
        staying_tcp.push(TcpSub::subscribe(&public, k, Some("1.0")).await);
    }
    let mut staying_ws = WsSub::subscribe(&public, &staying[0], Some("1")).await;

    cluster.add_comet("node3").await;
    let node3 = cluster.comet("node3").tcp();
    for (k, s) in moving.iter().zip(moving_tcp.iter_mut()) {
        assert!(s.closed_within(NOTICE).await, "{k} moved to node3: its old owner closes it");
    }
    assert!(moving_ws.closed_within(NOTICE).await, "the moved WebSocket client is closed too");

    // The old owner now refuses a moved key; unmoved keys still get pushes on their old connections.
    let old_owner = cluster.comet(&owner(&before, &moving[0])).tcp();
    let refusal = TcpSub::connect(&old_owner, &moving[0], Some("1.0")).await.err();
    assert_eq!(refusal.as_deref(), Some(r#"subscribe answered Status("-n")"#));
    for (k, s) in staying.iter().zip(staying_tcp.iter_mut()) {
        assert_eq!(push(&admin, k, 0, r#"{"stay":1}"#).await, Some(0));
        assert_eq!(s.message(WAIT).await["msg"], json!({"stay": 1}), "{k} did not move: same connection");
    }
    assert_eq!(staying_ws.message(WAIT).await["msg"], json!({"stay": 1}));

    // Moved clients ask web again and land on node3.
    for (k, s) in moving.iter().zip(moving_tcp.iter_mut()) {
        *s = TcpSub::subscribe(&public, k, Some("1.0")).await;
        assert_eq!(s.server, node3, "{k} reconnects to its new owner");
        assert_eq!(push(&admin, k, 0, r#"{"moved":1}"#).await, Some(0));
        assert_eq!(s.message(WAIT).await["msg"], json!({"moved": 1}));
    }

    // A graceful stop of node3 (SIGTERM): it exits 0, its clients are closed, the keys go back.
    let status = cluster.comet_mut("node3").proc.terminate(Duration::from_secs(30)).expect("node3 exits on SIGTERM");
    assert!(status.success(), "exit status {status}");
    for s in &mut moving_tcp {
        assert!(s.closed_within(WAIT).await, "a stopping comet closes its connections");
    }
    let k = &moving[0];
    let back = cluster.comet(&owner(&before, k)).tcp();
    eventually(&format!("{k} routed back to {back}"), NOTICE, || async {
        server_get(&public, k, 2).await.as_deref() == Some(back.as_str())
    })
    .await;
    let mut s = TcpSub::subscribe(&public, k, Some("1.0")).await;
    assert_eq!(push(&admin, k, 0, r#"{"home":1}"#).await, Some(0));
    assert_eq!(s.message(WAIT).await["msg"], json!({"home": 1}));
}

/// Redis `SHUTDOWN SAVE`: the restart of a Redis that persists (the operator's setup); testkit's
/// servers run without automatic snapshots, and this makes the one snapshot the restart loads.
fn redis_shutdown_save(addr: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s.write_all(b"SHUTDOWN SAVE\r\n").unwrap_or_else(|e| panic!("SHUTDOWN SAVE to {addr}: {e}"));
    let mut buf = Vec::new();
    // Success closes the connection without a reply; an error reply would name why.
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "SHUTDOWN SAVE on {addr} answered {:?}", String::from_utf8_lossy(&buf));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_zookeeper_restarts_lose_no_acknowledged_message() {
    let Some(mut zk) = testkit::ZkServer::start() else { return };
    let Some(mut redis_a) = testkit::RedisServer::start() else { return };
    let Some(mut redis_b) = testkit::RedisServer::start() else { return };
    let mut cluster = Cluster::start(&zk.addr(), &[redis_a.addr(), redis_b.addr()], &["node1", "node2"]).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let keys: Vec<String> = (0..6).map(|i| format!("rs-{i}")).collect();

    // A publisher: numbered messages round-robin over the keys, each retried until ret 0 (as a real
    // publisher does); only ret-0 ones count as acknowledged.
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (acked, refused, stop, keys, admin) =
            (acked.clone(), refused.clone(), stop.clone(), keys.clone(), admin.clone());
        tokio::spawn(async move {
            for n in 0..5_000u64 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let key = &keys[n as usize % keys.len()];
                let body = json!({"n": n}).to_string();
                let what = format!("message {n} to be acknowledged (the cluster to recover)");
                eventually(&what, Duration::from_secs(90), || {
                    let (admin, body, refused) = (&admin, &body, &refused);
                    async move {
                        let acked = push(admin, key, 600, body).await == Some(0);
                        if !acked {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        acked
                    }
                })
                .await;
                acked.lock().unwrap_or_else(|e| e.into_inner()).push((key.clone(), n));
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let count = |acked: &Arc<Mutex<Vec<(String, u64)>>>| acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    let grows = |by: usize| {
        let acked = acked.clone();
        let target = count(&acked) + by;
        async move {
            eventually(&format!("{by} more acknowledged pushes"), Duration::from_secs(90), || {
                let acked = acked.clone();
                async move { count(&acked) >= target }
            })
            .await
        }
    };
    grows(10).await;

    // Redis: both shards restart (persisted by SHUTDOWN SAVE), with pushes refused meanwhile.
    for r in [&mut redis_a, &mut redis_b] {
        redis_shutdown_save(&r.addr());
        r.stop();
        tokio::time::sleep(Duration::from_millis(500)).await;
        r.start_again();
    }
    grows(10).await;
    let after_redis = refused.load(Ordering::Relaxed);

    // ZooKeeper: down for longer than 1.4 x the 4 s session, so every process's session expires
    // and each must re-register with a new one.
    zk.stop();
    tokio::time::sleep(Duration::from_secs(7)).await;
    grows(5).await;
    zk.start_again();
    grows(10).await;
    // Every process has a new session: comets and the message node re-registered (the server also
    // expired their old sessions, whose znodes it had restored), and web follows ZooKeeper again.
    cluster.wait_registered(1, Duration::from_secs(60)).await;
    eventually("web to open a new ZooKeeper session", Duration::from_secs(60), || {
        let log = cluster.web.log();
        let renewed = log.lines().any(|l| l.contains("zookeeper session established") && l.contains("generation=2"));
        async move { renewed }
    })
    .await;

    // Recovered: every comet is routed to and delivers, no process was restarted.
    for c in ["node1", "node2"] {
        let key = keys_owned_by(&cluster.nodes(), c, "rz", 1).remove(0);
        let mut s = TcpSub::subscribe(&public, &key, Some("1.0")).await;
        assert_eq!(s.server, cluster.comet(c).tcp());
        eventually(&format!("pushes to {c} to succeed after the restarts"), NOTICE, || {
            let (admin, key) = (&admin, &key);
            async move { push(admin, key, 60, r#"{"after":1}"#).await == Some(0) }
        })
        .await;
        assert_eq!(s.message(WAIT).await["msg"], json!({"after": 1}));
    }
    // Informational: how many times each process registered (more than once means a new session).
    let registrations: Vec<(String, usize)> = std::iter::once(&cluster.message)
        .chain(cluster.comets.iter().map(|c| &c.proc))
        .map(|p| (p.name().to_string(), p.log().matches("registered in zookeeper").count()))
        .collect();
    cluster.assert_alive();

    stop.store(true, Ordering::Relaxed);
    publisher.await.expect("the publisher task");
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for key in &keys {
        let got: BTreeSet<u64> = msg_get(&public, key, 0).await.iter().filter_map(|(m, _)| m["n"].as_u64()).collect();
        let want: Vec<u64> = acked.iter().filter(|(k, _)| k == key).map(|(_, n)| *n).collect();
        assert!(want.len() < 200, "the store keeps 200 per key; the test pushed {} to {key}", want.len());
        let lost: Vec<&u64> = want.iter().filter(|n| !got.contains(n)).collect();
        assert!(lost.is_empty(), "{key}: acknowledged (ret 0) but lost: {lost:?}");
    }
    eprintln!(
        "restarts: {} acknowledged, {} refused and retried ({after_redis} around the Redis restart), \
         registrations per process {registrations:?}",
        acked.len(),
        refused.load(Ordering::Relaxed)
    );
}

/// Concurrent stored pushes to the same keys through two comets reach every subscriber in mid
/// order (docs/decisions.md#d20-ordering-and-resume), and a push repeated with the same `id=` is
/// stored and delivered once (docs/decisions.md#d21-safe-retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stored_pushes_arrive_in_mid_order_and_a_repeated_id_applies_once() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    let cluster = Cluster::start(&zk, &redis, &["node1", "node2"]).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let tag = testkit::unique_name("ord");
    let keys: Vec<String> = (0..10).map(|i| format!("{tag}-{i}")).collect();
    let mut subs = Vec::new();
    for k in &keys {
        subs.push(TcpSub::subscribe(&public, k, Some("1.0")).await);
    }
    assert!(subs.iter().any(|s| s.server == cluster.comet("node1").tcp()), "some keys on node1");
    assert!(subs.iter().any(|s| s.server == cluster.comet("node2").tcp()), "some keys on node2");

    // Three publishers, 900 stored pushes each, interleaved over the ten keys: before pushes took
    // their place in the key's line, this gave tens of inversions per 900 pushes.
    const PER_PUBLISHER: usize = 900;
    let publishers = (0..3).map(|p| {
        let (admin, keys) = (admin.clone(), keys.clone());
        tokio::spawn(async move {
            let mut sent = vec![0usize; keys.len()];
            for i in 0..PER_PUBLISHER {
                let k = (i * 7 + p) % keys.len();
                let ret = push(&admin, &keys[k], 600, &format!("{{\"p\":{p},\"i\":{i}}}")).await;
                assert_eq!(ret, Some(0), "push {i} of publisher {p}");
                sent[k] += 1;
            }
            sent
        })
    });
    let mut per_key = vec![0usize; keys.len()];
    for sent in futures::future::join_all(publishers).await {
        for (total, n) in per_key.iter_mut().zip(sent.expect("publisher")) {
            *total += n;
        }
    }
    let mut inversions = 0;
    for (sub, n) in subs.iter_mut().zip(&per_key) {
        let mut last = 0;
        for _ in 0..*n {
            let mid = mid_of(&sub.raw(WAIT).await);
            inversions += usize::from(mid <= last);
            last = last.max(mid);
        }
    }
    assert_eq!(inversions, 0, "frames out of mid order over {} pushes", 3 * PER_PUBLISHER);

    // The same id twice: both acknowledged, one delivery, one stored copy.
    let key = &keys[0];
    let path = format!("/1/admin/push/private?key={key}&expire=600&id={tag}-once");
    for _ in 0..2 {
        let r = post(&admin, &path, "application/json", "{\"once\":true}").await.expect("push with id");
        assert_eq!(r.body(), r#"{"ret":0}"#);
    }
    let once = mid_of(&subs[0].raw(WAIT).await);
    let more = subs[0].next(Duration::from_millis(500)).await;
    assert!(matches!(more, Next::Timeout), "no second delivery: {more:?}");
    let stored: Vec<u64> = msg_get(&public, key, 0).await.into_iter().map(|(_, mid)| mid).collect();
    assert_eq!(stored.iter().filter(|m| **m == once).count(), 1, "one stored copy");
    assert_eq!(stored.last(), Some(&once), "and nothing after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_stored_push_is_in_the_store_when_saves_are_coalesced() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    // One save call out per comet at a time: every save that meets a busy slot joins a batch.
    let extra = "save_batch = 16\nsave_batch_in_flight = 1\n";
    let cluster = Cluster::start_with(&zk, &redis, &["node1", "node2"], WebPorts::free(), extra).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let tag = testkit::unique_name("co");

    // 16 publishers, each pushing in turn to its own 4 keys, 20 pushes a key, every push waited
    // for: per key the publish order is the mid order, and a batch never holds two of one key.
    const PUBLISHERS: usize = 16;
    const KEYS_EACH: usize = 4;
    const PER_KEY: usize = 20;
    let publishers = (0..PUBLISHERS).map(|p| {
        let (admin, tag) = (admin.clone(), tag.clone());
        tokio::spawn(async move {
            for i in 0..KEYS_EACH * PER_KEY {
                let key = format!("{tag}-{p}-{}", i % KEYS_EACH);
                let ret = push(&admin, &key, 600, &format!("{{\"i\":{i}}}")).await;
                assert_eq!(ret, Some(0), "push {i} of publisher {p}");
            }
        })
    });
    for p in futures::future::join_all(publishers).await {
        p.expect("publisher");
    }
    for p in 0..PUBLISHERS {
        for k in 0..KEYS_EACH {
            let key = format!("{tag}-{p}-{k}");
            let stored: Vec<u64> =
                msg_get(&public, &key, 0).await.iter().map(|(m, _)| m["i"].as_u64().unwrap()).collect();
            let sent: Vec<u64> = (0..PER_KEY).map(|n| (n * KEYS_EACH + k) as u64).collect();
            assert_eq!(stored, sent, "{key}: every acknowledged push stored, in publish order");
        }
    }
    let metrics = get(&format!("127.0.0.1:{}", cluster.message_stat), "/metrics").await.expect("/metrics");
    let batches = metrics
        .body()
        .lines()
        .find(|l| l.starts_with("gopush_message_store_seconds_count{op=\"save_batch\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(batches > 0.0, "saves went to the store in batches:\n{}", metrics.body());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comet_cut_off_from_zookeeper_hands_its_clients_to_the_new_owner() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    let mut cluster = Cluster::start(&zk, &redis, &["node2"]).await;
    // Only node1's path to ZooKeeper runs through the proxy: web, message and node2 keep seeing it,
    // and web can still call node1. Its clients can reach it too, the case where a comet that kept
    // them would hold subscribers no push reaches once web has moved their keys.
    let proxy = testkit::TcpProxy::start(&zk);
    cluster.add_comet_via(&proxy.addr(), "node1").await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let (node1, node2) = (cluster.comet("node1").tcp(), cluster.comet("node2").tcp());
    let keys = keys_owned_by(&["node1", "node2"], "node1", "cut", 3);
    let mut subs = Vec::new();
    for k in &keys {
        let s = TcpSub::subscribe(&public, k, Some("1.0")).await;
        assert_eq!(s.server, node1, "{k} starts on node1");
        subs.push(s);
    }
    let mut ws = WsSub::subscribe(&public, &keys[0], Some("1")).await;
    assert_eq!(ws.server, cluster.comet("node1").ws());

    let cut = Instant::now();
    proxy.cut();
    for (k, s) in keys.iter().zip(subs.iter_mut()) {
        assert!(s.closed_within(NOTICE).await, "node1 lets {k} go once ZooKeeper is unseen past the session timeout");
    }
    assert!(ws.closed_within(NOTICE).await, "node1 lets its WebSocket client go too");
    let let_go = cut.elapsed();
    for k in &keys {
        eventually(&format!("web to route {k} to node2"), NOTICE, || async {
            server_get(&public, k, 2).await.as_deref() == Some(node2.as_str())
        })
        .await;
    }
    let moved = cut.elapsed();
    for (k, s) in keys.iter().zip(subs.iter_mut()) {
        *s = TcpSub::subscribe(&public, k, Some("1.0")).await;
        assert_eq!(s.server, node2, "{k} reconnects to the new owner");
        assert_eq!(push(&admin, k, 0, r#"{"after":"cut"}"#).await, Some(0));
        assert_eq!(s.message(WAIT).await["msg"], json!({"after": "cut"}), "a later push reaches {k} on node2");
    }

    // Healed, node1 registers in a new session and takes its keys back.
    proxy.heal();
    let healed = Instant::now();
    eventually("web to route the keys to node1 again", NOTICE, || async {
        server_get(&public, &keys[0], 2).await.as_deref() == Some(node1.as_str())
    })
    .await;
    let back = healed.elapsed();
    let mut again = TcpSub::subscribe(&public, &keys[0], Some("1.0")).await;
    assert_eq!(again.server, node1);
    assert_eq!(push(&admin, &keys[0], 0, r#"{"after":"heal"}"#).await, Some(0));
    assert_eq!(again.message(WAIT).await["msg"], json!({"after": "heal"}));
    eprintln!(
        "path cut: clients let go after {let_go:?}, keys routed to node2 after {moved:?}; \
         healed: routed to node1 again after {back:?}"
    );
    cluster.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_retried_with_its_id_after_the_comet_hung_applies_once() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    // Web prunes a comet only after 20 missed pings (6 s), longer than the hang: the retry must
    // reach the comet that remembers the id (a key that moved meanwhile is another comet's).
    let web = WebPorts { ping_failures: 20, ..WebPorts::free() };
    let cluster = Cluster::start_with(&zk, &redis, &["node1"], web, "").await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let key = testkit::unique_name("hung");
    let mut sub = TcpSub::subscribe(&public, &key, Some("1.0")).await;
    let comet = &cluster.comet("node1").proc;
    let path = format!("/1/admin/push/private?key={key}&expire=600&id={key}-1");

    comet.signal("STOP");
    let first = post(&admin, &path, "application/json", r#"{"hung":1}"#).await;
    comet.signal("CONT");
    let first = first.expect("web answers while the comet hangs");
    // Web gave up at its RPC deadline, so the publisher cannot know whether the push was applied:
    // the comet runs it once it wakes up.
    let answer: Value = serde_json::from_slice(first.body_bytes())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", first.status(), first.body()));
    assert_eq!(ret(&answer), 65535, "{}", first.body());
    let second = post(&admin, &path, "application/json", r#"{"hung":1}"#).await.expect("the retry");
    assert_eq!(second.body(), r#"{"ret":0}"#, "the retry is acknowledged");

    let delivered = sub.message(WAIT).await;
    assert_eq!(delivered["msg"], json!({"hung": 1}));
    let more = sub.next(Duration::from_millis(500)).await;
    assert!(matches!(more, Next::Timeout), "one delivery, not two: {more:?}");
    let stored = msg_get(&public, &key, 0).await;
    assert_eq!(stored.len(), 1, "one stored copy: {stored:?}");
    assert_eq!(stored[0].0, json!({"hung": 1}));
}
