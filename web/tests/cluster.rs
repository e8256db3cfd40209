//! The web node against real ZooKeeper: routing follows comet registrations by the golden ring
//! (docs/architecture.md#ring-golden-vectors), and a comet instance whose RPC stops answering while
//! its ZooKeeper registration lingers is pruned, so its keys move to the remaining comets. The
//! comets here are small in-test `CometApi` doubles served over the real RPC transport
//! (`serve_comet`); whole-cluster tests with real comet processes live elsewhere.

mod common;

use cluster::membership::watch_comets;
use cluster::node::NodeInfo;
use cluster::pool::RpcConfig;
use cluster::registry::Registration;
use cluster::rpc::serve_comet;
use cluster::zk::{Session, ZkConfig};
use common::*;
use ring::{HashKind, Ring};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use web::{Web, WebDeps, remote_comets};

fn zk_config(zk: &str) -> ZkConfig {
    ZkConfig {
        addr: zk.to_string(),
        timeout: Duration::from_secs(10),
        comet_path: format!("/{}", testkit::unique_name("web-comets")),
        message_path: format!("/{}", testkit::unique_name("web-messages")),
        ..ZkConfig::default()
    }
}

/// Polls `/health` until the web routes to `nodes` comet nodes.
async fn wait_for_nodes(admin: &str, nodes: usize) {
    let want = format!("\"comet_nodes\":{nodes},");
    let want = &want;
    testkit::eventually(&format!("web to see {nodes} comet nodes"), Duration::from_secs(30), || async move {
        get(admin, "/health").await.body().contains(want)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_get_follows_zookeeper_by_the_golden_ring() {
    let Some(zk) = testkit::zk_addr() else { return };
    let zk_config = zk_config(&zk);
    let session = Session::start(zk_config.clone());
    let mut registrations = Vec::new();
    for (name, weight) in ring::golden::MEMBERS {
        let info = comet_info(name, weight, true);
        let r = Registration::comet(&session, name, &info);
        tokio::time::timeout(Duration::from_secs(30), r.registered()).await.expect("registered");
        registrations.push(r);
    }
    let mut config = loopback_config();
    config.zookeeper = zk_config;
    let deps = WebDeps {
        membership: watch_comets(&session),
        messages: Arc::new(FakeStore::default()),
        comets: remote_comets(config.rpc.clone()),
        session: None,
    };
    let web = Web::start(config, deps).await.unwrap();
    let (public, admin) = (web.public_addr().to_string(), web.admin_addr().to_string());
    wait_for_nodes(&admin, 3).await;

    // The empty key is a parameter error at web (65534), so it is the one golden key left out.
    for (key, node) in ring::golden::OWNERS.into_iter().filter(|(k, _)| !k.is_empty()) {
        let r = get(&public, &format!("/1/server/get?k={key}&p=2")).await;
        assert_eq!(r.text(), json_200(&format!(r#"{{"data":{{"server":"{node}:6969"}},"ret":0}}"#)), "{key}");
        let r = get(&public, &format!("/2/server/get?k={key}&p=1")).await;
        assert_eq!(r.text(), json_200(&format!(r#"{{"data":{{"server":["{node}:6968"]}},"ret":0}}"#)), "{key}");
        let r = get(&public, &format!("/server/get?key={key}&proto=2")).await;
        assert_eq!(r.body(), format!(r#"{{"data":{{"server":"{node}:6969"}},"msg":"ok","ret":0}}"#), "{key}");
    }

    // A node whose last instance deregisters leaves the ring; its keys move.
    let node1 = registrations.remove(0);
    node1.deregister().await;
    wait_for_nodes(&admin, 2).await;
    let r = get(&public, "/1/server/get?k=Terry-Mao&p=2").await;
    assert!(!r.body().contains("node1"), "{}", r.body());
    for r in registrations {
        r.deregister().await;
    }
    wait_for_nodes(&admin, 0).await;
    assert_eq!(get(&public, "/1/server/get?k=t1&p=2").await.text(), json_200(r#"{"ret":1001}"#));
    web.shutdown().await;
}

/// A comet double served over the real RPC transport on a loopback port.
struct ServedComet {
    double: Arc<FakeComet>,
    addr: String,
    stop: CancellationToken,
}

async fn serve(name: &str) -> ServedComet {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let double = FakeComet::new(name);
    let stop = CancellationToken::new();
    tokio::spawn(serve_comet(listener, double.clone(), RpcConfig::default(), stop.clone()));
    ServedComet { double, addr, stop }
}

fn served_info(name: &str, rpc: &str, weight: u32) -> NodeInfo {
    NodeInfo { rpc: vec![rpc.to_string()], ..comet_info(name, weight, true) }
}

/// Registers like a comet whose process dies later: if its znode is deleted it does not come back
/// (a stopped or crashed process cannot re-register).
async fn register_for_good(session: &Session, node: &str, info: &NodeInfo) -> (Registration, String) {
    let parent = format!("{}/{node}", session.config().comet_path);
    let r = Registration::start(session.clone(), parent, info, Duration::from_secs(3600));
    let path = tokio::time::timeout(Duration::from_secs(30), r.registered()).await.expect("registered");
    (r, path)
}

async fn znode_exists(session: &Session, path: &str) -> bool {
    let live = session.live().await;
    matches!(live.client.check_stat(path).await, Ok(Some(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comet_that_stops_answering_is_pruned_and_its_keys_move() {
    let Some(zk) = testkit::zk_addr() else { return };
    let zk_config = zk_config(&zk);
    let comet_session = Session::start(zk_config.clone());
    let comets = [serve("node1").await, serve("node2").await, serve("node3").await];
    let mut held = Vec::new();
    let mut node1_path = String::new();
    for (comet, (name, weight)) in comets.iter().zip([("node1", 1), ("node2", 2), ("node3", 1)]) {
        let (r, path) = register_for_good(&comet_session, name, &served_info(name, &comet.addr, weight)).await;
        if name == "node1" {
            node1_path = path;
        }
        held.push(r);
    }
    // A standby of node2 that hangs like a SIGSTOPped process: the kernel accepts its RPC
    // connections but nothing ever answers, so only ping deadlines can find out.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_addr = hung.local_addr().unwrap().to_string();
    let (standby, standby_path) =
        register_for_good(&comet_session, "node2", &served_info("node2", &hung_addr, 2)).await;

    let rpc = RpcConfig {
        ping: Duration::from_millis(300),
        ping_failures: 3,
        timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        ..RpcConfig::default()
    };
    // Two web nodes prune at once, each with its own session: deletes must not conflict.
    let mut webs = Vec::new();
    for _ in 0..2 {
        let mut config = loopback_config();
        config.zookeeper = zk_config.clone();
        config.rpc = rpc.clone();
        let session = Session::start(zk_config.clone());
        let deps = WebDeps {
            membership: watch_comets(&session),
            messages: Arc::new(FakeStore::default()),
            comets: remote_comets(rpc.clone()),
            session: Some(session),
        };
        webs.push(Web::start(config, deps).await.unwrap());
    }
    let (public, admin) = (webs[0].public_addr().to_string(), webs[0].admin_addr().to_string());
    wait_for_nodes(&admin, 3).await;

    // The real RPC path works: a push reaches node1's double.
    let r = post(&admin, "/1/admin/push/private?key=Terry-Mao&expire=0", b"{\"a\":1}").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    assert_eq!(
        comets[0].double.calls(),
        [CometCall::Push { key: "Terry-Mao".into(), msg: "{\"a\":1}".into(), expire: 0 }]
    );
    assert_eq!(
        get(&public, "/1/server/get?k=Terry-Mao&p=2").await.body(),
        r#"{"data":{"server":"node1:6969"},"ret":0}"#
    );

    // The hung standby is pruned while node2's active instance stays.
    let (session_ref, standby_ref) = (&comet_session, &standby_path);
    testkit::eventually("the hung standby to be pruned", Duration::from_secs(10), || async move {
        !znode_exists(session_ref, standby_ref).await
    })
    .await;
    drop(standby);
    drop(hung);

    // node1's RPC stops answering; its registration stays in ZooKeeper.
    comets[0].stop.cancel();
    let stopped = Instant::now();
    let survivors = Ring::new(HashKind::Sha1, [("node2".to_string(), 2), ("node3".to_string(), 1)]);
    let new_owner = survivors.get(b"Terry-Mao").unwrap().to_string();
    let want = format!(r#"{{"data":{{"server":"{new_owner}:6969"}},"ret":0}}"#);
    let (public_ref, want_ref) = (&public, &want);
    testkit::eventually("node1 to leave routing", Duration::from_secs(15), || async move {
        get(public_ref, "/1/server/get?k=Terry-Mao&p=2").await.body() == want_ref
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("node1 left routing {took:?} after its RPC stopped (ping 300 ms x 3)");
    assert!(took <= rpc.ping * rpc.ping_failures + Duration::from_secs(1), "took {took:?}");
    assert!(!znode_exists(&comet_session, &node1_path).await, "the znode was deleted");
    // Both web nodes now route node1's keys to the survivors, and pushes follow.
    wait_for_nodes(&webs[1].admin_addr().to_string(), 2).await;
    let r = post(&webs[1].admin_addr().to_string(), "/1/admin/push/private?key=Terry-Mao&expire=0", b"2").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    let owner = if new_owner == "node2" { &comets[1] } else { &comets[2] };
    assert!(owner.double.calls().contains(&CometCall::Push { key: "Terry-Mao".into(), msg: "2".into(), expire: 0 }));
    let metrics = get(&admin, "/metrics").await;
    assert!(metrics.body().contains("gopush_web_comet_pruned_total"), "{}", metrics.body());

    for web in webs {
        web.shutdown().await;
    }
    for r in held {
        r.deregister().await;
    }
    for c in &comets {
        c.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_deps_wire_zookeeper_and_the_message_pool() {
    let Some(zk) = testkit::zk_addr() else { return };
    let mut config = loopback_config();
    config.zookeeper = zk_config(&zk);
    let session = Session::start(config.zookeeper.clone());
    let comet = serve("node1").await;
    let (registration, _) = register_for_good(&session, "node1", &served_info("node1", &comet.addr, 1)).await;
    let web = Web::start(config.clone(), WebDeps::cluster(&config)).await.unwrap();
    let (public, admin) = (web.public_addr().to_string(), web.admin_addr().to_string());
    wait_for_nodes(&admin, 1).await;
    let r = get(&admin, "/health").await;
    assert!(r.body().contains(r#""zookeeper":"connected""#), "{}", r.body());
    assert_eq!(get(&public, "/1/server/get?k=a&p=2").await.body(), r#"{"data":{"server":"node1:6969"},"ret":0}"#);
    // No message node is registered: reading offline messages is an internal error.
    assert_eq!(get(&public, "/1/msg/get?k=a&m=0").await.text(), json_200(r#"{"ret":65535}"#));
    assert_eq!(get(&public, "/msg/get?key=a&mid=0").await.text(), json_200(r#"{"msg":"ok","ret":65535}"#));
    let r = post(&admin, "/1/token/add?k=a&t=tok", b"").await;
    assert_eq!(r.text(), json_200(r#"{"ret":0}"#));
    assert_eq!(comet.double.calls(), [CometCall::Token { key: "a".into(), token: "tok".into(), expire_secs: 2592000 }]);
    web.shutdown().await;
    registration.deregister().await;
    comet.stop.cancel();
}
