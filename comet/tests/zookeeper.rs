//! Comets in a real ZooKeeper (testkit): registration before accepting clients, and a ring change
//! when a third comet node joins: connections of keys that moved are closed on their old owner,
//! the others stay open. Shutdown deregisters.

mod common;

use cluster::membership::watch_comets;
use cluster::rpc::{CometApi, CometError};
use cluster::{NodeInfo, Registration, Session, ZkConfig};
use comet::{Comet, CometDeps};
use common::*;
use ring::{HashKind, Ring};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn zk_config(addr: &str) -> ZkConfig {
    let root = format!("/{}", testkit::unique_name("comet-zk"));
    ZkConfig {
        addr: addr.to_string(),
        timeout: Duration::from_secs(10),
        comet_path: format!("{root}/comet"),
        message_path: format!("{root}/message"),
        ..ZkConfig::default()
    }
}

async fn start_node(zk: &ZkConfig, node: &str) -> (Comet, std::sync::Arc<FakeStore>) {
    let session = Session::start(zk.clone());
    let mut config = test_config();
    config.node.name = node.to_string();
    config.zookeeper = zk.clone();
    config.base.register_timeout = Duration::from_secs(30);
    let store = FakeStore::new();
    let deps = CometDeps { membership: watch_comets(&session), messages: store.clone(), session: Some(session) };
    (Comet::start(config, deps).await.expect("comet registers and starts"), store)
}

/// Keys that `before` gives to `from` and `after` gives to `to`.
fn keys(before: &Ring, after: &Ring, from: &str, to: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("zk{i}"))
        .filter(|k| before.get(k.as_bytes()) == Some(from) && after.get(k.as_bytes()) == Some(to))
        .take(n)
        .collect()
}

async fn owns(api: &dyn CometApi, key: &str) -> bool {
    api.push_private(key.to_string(), "0".into(), 0, None).await != Err(CometError::NotOwner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_comet_moves_some_keys() {
    let Some(addr) = testkit::zk_addr() else { return };
    let zk = zk_config(&addr);
    let (one, _) = start_node(&zk, "node1").await;
    let (two, _) = start_node(&zk, "node2").await;
    assert!(one.registration_path().unwrap().starts_with(&format!("{}/node1/", zk.comet_path)));

    let two_nodes = Ring::new(HashKind::Sha1, [("node1", 1), ("node2", 1)]);
    let three_nodes = Ring::new(HashKind::Sha1, [("node1", 1), ("node2", 1), ("node3", 1)]);
    let stay1 = keys(&two_nodes, &three_nodes, "node1", "node1", 3);
    let move1 = keys(&two_nodes, &three_nodes, "node1", "node3", 3);
    let stay2 = keys(&two_nodes, &three_nodes, "node2", "node2", 3);
    let move2 = keys(&two_nodes, &three_nodes, "node2", "node3", 3);

    // Both comets see both nodes before clients arrive.
    let (api1, api2) = (one.api(), two.api());
    let mut seen = false;
    for _ in 0..500 {
        if !owns(&*api1, &stay2[0]).await && !owns(&*api2, &stay1[0]).await {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "both comets learned the two-node ring");

    let connect = |addr, keys: Vec<String>| async move {
        let mut out = Vec::new();
        for k in keys {
            out.push(tcp_sub(addr, &["sub", &k, "30"]).await);
        }
        out
    };
    let (tcp1, tcp2) = (one.tcp_addrs()[0], two.tcp_addrs()[0]);
    let mut kept: Vec<TcpStream> = connect(tcp1, stay1.clone()).await;
    kept.extend(connect(tcp2, stay2.clone()).await);
    let mut moved: Vec<TcpStream> = connect(tcp1, move1.clone()).await;
    moved.extend(connect(tcp2, move2.clone()).await);
    let mut ws = ws_open(one.ws_addrs()[0], &format!("/sub?key={}&heartbeat=30&ver=1", move1[0]), None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    // Keys of the other comet are refused.
    let mut s = tcp_send(tcp1, &cmd(&["sub", &stay2[0], "30"])).await;
    assert_eq!(until_closed(&mut s).await, b"-n\r\n");

    // A third node registers (its NodeInfo directly; no comet process needed).
    let session3 = Session::start(zk.clone());
    let info = NodeInfo {
        rpc: vec!["127.0.0.1:1".into()],
        tcp: vec!["127.0.0.1:2".into()],
        ws: vec!["127.0.0.1:3".into()],
        weight: 1,
    };
    let reg3 = Registration::comet(&session3, "node3", &info);
    tokio::time::timeout(Duration::from_secs(30), reg3.registered()).await.expect("node3 registered");

    for s in &mut moved {
        assert_eq!(until_closed(s).await, b"", "moved key closed");
    }
    assert_eq!(ws_closed(&mut ws).await, Some(1000));
    for s in &mut kept {
        s.write_all(b"h").await.unwrap();
        expect(s, b"+h\r\n").await;
    }
    assert!(!owns(&*api1, &move1[1]).await && !owns(&*api2, &move2[1]).await);
    // The closed connections' tasks finish a moment after their clients see the close.
    testkit::eventually("3 connections on each comet", WAIT, || {
        std::future::ready((one.connections(), two.connections()) == (3, 3))
    })
    .await;

    // node3 leaving gives the keys back; shutdown deregisters node2.
    reg3.deregister().await;
    testkit::eventually("node1 to own its keys again", WAIT, || owns(&*api1, &move1[0])).await;
    let observer = Session::start(zk.clone());
    let mut membership = watch_comets(&observer);
    two.shutdown().await;
    let gone = tokio::time::timeout(WAIT * 2, async {
        loop {
            if membership.borrow_and_update().nodes.keys().eq(["node1"]) {
                return;
            }
            let _ = membership.changed().await;
        }
    })
    .await;
    assert!(gone.is_ok(), "node2 deregistered on shutdown: {:?}", membership.borrow().nodes.keys());
    for s in &mut kept[3..] {
        assert_eq!(until_closed(s).await, b"");
    }
    one.shutdown().await;
}
