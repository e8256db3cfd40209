//! Registration and membership against a real ZooKeeper: the active instance is the lowest sequence,
//! a registration survives session expiry and deletion by others, and the membership stream keeps
//! flowing through an ensemble leader failover.

use cluster::membership::{CometMembership, watch_comets, watch_messages};
use cluster::registry::Registration;
use cluster::{NodeInfo, Session, ZkConfig};
use std::sync::Arc;
use std::time::Duration;
use testkit::{ZkEnsemble, ZkServer};
use tokio::sync::watch;

fn config(addr: &str, timeout: Duration) -> ZkConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let root = testkit::unique_name("/gopush-test");
    ZkConfig {
        addr: addr.to_string(),
        timeout,
        comet_path: format!("{root}-comet"),
        message_path: format!("{root}-message"),
        resync: Duration::from_secs(30),
    }
}

fn info(port: u16, weight: u32) -> NodeInfo {
    NodeInfo {
        rpc: vec![format!("127.0.0.1:{port}")],
        tcp: vec![format!("127.0.0.1:{}", port + 1)],
        ws: vec![format!("127.0.0.1:{}", port + 2)],
        weight,
    }
}

/// Waits until the membership satisfies `pred`, failing the test after `limit`.
async fn wait_until<T, F>(rx: &mut watch::Receiver<Arc<T>>, limit: Duration, what: &str, pred: F) -> Arc<T>
where
    F: Fn(&T) -> bool,
    T: std::fmt::Debug,
{
    let waited = tokio::time::timeout(limit, async {
        loop {
            let now = rx.borrow_and_update().clone();
            if pred(&now) {
                return now;
            }
            if rx.changed().await.is_err() {
                panic!("membership watch ended while waiting for {what}");
            }
        }
    })
    .await;
    match waited {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}; last snapshot: {:?}", rx.borrow()),
    }
}

fn active_path(m: &CometMembership, node: &str) -> Option<String> {
    m.active(node).map(|i| i.path.clone())
}

#[tokio::test]
async fn lowest_sequence_is_active_and_a_standby_takes_over() {
    let Some(addr) = testkit::zk_addr() else { return };
    let cfg = config(&addr, Duration::from_secs(5));
    let watcher = Session::start(cfg.clone());
    let mut members = watch_comets(&watcher);

    let first_session = Session::start(cfg.clone());
    let first = Registration::comet(&first_session, "node1", &info(7000, 1));
    let first_path = first.registered().await;
    let second_session = Session::start(cfg.clone());
    let second = Registration::comet(&second_session, "node1", &info(7100, 1));
    let second_path = second.registered().await;
    assert!(cluster::node::sequence_of(&first_path) < cluster::node::sequence_of(&second_path));

    let m = wait_until(&mut members, Duration::from_secs(10), "both instances", |m| {
        m.nodes.get("node1").is_some_and(|n| n.standbys.len() == 1)
    })
    .await;
    let node = &m.nodes["node1"];
    assert_eq!(node.active.path, first_path);
    assert_eq!(node.active.info, info(7000, 1));
    assert_eq!(node.standbys[0].path, second_path);

    // Killing the first process (its client goes away) hands the node to the standby.
    drop(first);
    drop(first_session);
    let m = wait_until(&mut members, Duration::from_secs(10), "the standby to become active", |m| {
        active_path(m, "node1").as_deref() == Some(second_path.as_str())
    })
    .await;
    assert!(m.nodes["node1"].standbys.is_empty());
    assert_eq!(m.ring(ring::HashKind::Sha1).get(b"any"), Some("node1"));

    // A clean deregistration removes the node from the membership altogether.
    second.deregister().await;
    wait_until(&mut members, Duration::from_secs(10), "node1 to disappear", |m| m.nodes.is_empty()).await;
}

#[tokio::test]
async fn message_instances_are_listed_in_sequence_order() {
    let Some(addr) = testkit::zk_addr() else { return };
    let cfg = config(&addr, Duration::from_secs(5));
    let session = Session::start(cfg.clone());
    let mut members = watch_messages(&session);
    let a = Registration::message(
        &session,
        &NodeInfo { rpc: vec!["127.0.0.1:8070".into()], weight: 1, ..Default::default() },
    );
    let b = Registration::message(
        &session,
        &NodeInfo { rpc: vec!["127.0.0.1:8270".into()], weight: 3, ..Default::default() },
    );
    let (pa, pb) = (a.registered().await, b.registered().await);
    let m =
        wait_until(&mut members, Duration::from_secs(10), "two message instances", |m| m.instances.len() == 2).await;
    let mut paths: Vec<_> = m.instances.iter().map(|i| i.path.clone()).collect();
    let mut want = vec![pa, pb];
    want.sort_by_key(|p| cluster::node::sequence_of(p));
    paths.sort_by_key(|p| cluster::node::sequence_of(p));
    assert_eq!(paths, want);
    assert!(m.instances.windows(2).all(|w| w[0].seq < w[1].seq));
    drop(b);
    a.deregister().await;
}

#[tokio::test]
async fn registration_survives_session_expiry() {
    let Some(mut zk) = ZkServer::start() else { return };
    let timeout = Duration::from_secs(2);
    let cfg = config(&zk.addr(), timeout);
    let watcher = Session::start(cfg.clone());
    let mut members = watch_comets(&watcher);
    let session = Session::start(cfg.clone());
    let reg = Registration::comet(&session, "node1", &info(7200, 1));
    let before = reg.registered().await;
    wait_until(&mut members, Duration::from_secs(10), "the registration", |m| {
        active_path(m, "node1").as_deref() == Some(before.as_str())
    })
    .await;

    // Longer than 1.4 × the session timeout: both clients declare their sessions expired.
    zk.stop();
    tokio::time::sleep(timeout.mul_f64(1.4) + Duration::from_secs(2)).await;
    assert!(reg.path().is_none() || session.current().is_none(), "the session must have been given up");
    zk.start_again();

    let m = wait_until(&mut members, Duration::from_secs(30), "re-registration under a new session", |m| {
        m.nodes.get("node1").is_some_and(|n| n.active.path != before && n.standbys.is_empty())
    })
    .await;
    let after = reg.registered().await;
    assert_eq!(active_path(&m, "node1"), Some(after.clone()), "the watcher sees the new znode");
    assert_ne!(after, before);
    assert_eq!(m.nodes["node1"].active.info, info(7200, 1));
}

#[tokio::test]
async fn a_deleted_znode_disappears_and_comes_back_after_the_backoff() {
    let Some(addr) = testkit::zk_addr() else { return };
    let cfg = config(&addr, Duration::from_secs(5));
    let watcher = Session::start(cfg.clone());
    let mut members = watch_comets(&watcher);
    let session = Session::start(cfg.clone());
    let backoff = Duration::from_millis(1500);
    let parent = format!("{}/node1", cfg.comet_path);
    let reg = Registration::start(session.clone(), parent, &info(7300, 2), backoff);
    let first = reg.registered().await;
    wait_until(&mut members, Duration::from_secs(10), "the registration", |m| m.active("node1").is_some()).await;

    // Someone else (a web pruning this instance) deletes the znode.
    let other = Session::start(cfg.clone());
    other.live().await.client.delete(&first, None).await.expect("delete the comet's znode");
    let gone = std::time::Instant::now();
    wait_until(&mut members, Duration::from_secs(10), "node1 to leave", |m| m.nodes.is_empty()).await;

    let m = wait_until(&mut members, Duration::from_secs(15), "node1 to come back", |m| {
        m.active("node1").is_some_and(|i| i.path != first)
    })
    .await;
    assert!(gone.elapsed() >= backoff - Duration::from_millis(100), "re-registered only after the backoff");
    assert_eq!(m.active("node1").map(|i| i.info.weight), Some(2));
    assert_eq!(reg.path(), active_path(&m, "node1"));
}

#[tokio::test]
async fn membership_keeps_flowing_through_a_leader_kill() {
    let Some(mut ensemble) = ZkEnsemble::start(3) else { return };
    let cfg = config(&ensemble.addr(), Duration::from_secs(6));
    let watcher = Session::start(cfg.clone());
    let mut members = watch_comets(&watcher);
    let session = Session::start(cfg.clone());
    let a = Registration::comet(&session, "node1", &info(7400, 1));
    a.registered().await;
    wait_until(&mut members, Duration::from_secs(15), "node1", |m| m.nodes.contains_key("node1")).await;

    let leader = ensemble.leader().expect("an ensemble has a leader");
    ensemble.kill(leader);
    assert!(ensemble.wait_for_quorum(Duration::from_secs(30)), "a new leader is elected");

    // Changes made after the failover still reach the watcher, and nothing registered is lost.
    let other = Session::start(cfg.clone());
    let b = Registration::comet(&other, "node2", &info(7500, 1));
    b.registered().await;
    let m = wait_until(&mut members, Duration::from_secs(30), "node2 after the failover", |m| {
        m.nodes.contains_key("node2")
    })
    .await;
    assert!(m.nodes.contains_key("node1"), "node1 survived the failover: {m:?}");

    // The registration's own watch also survived: a deletion by someone else is noticed and undone.
    let first = a.registered().await;
    other.live().await.client.delete(&first, None).await.expect("delete node1's znode");
    wait_until(&mut members, Duration::from_secs(30), "node1 to re-register after the failover", |m| {
        m.active("node1").is_some_and(|i| i.path != first)
    })
    .await;
    drop(b);
    drop(other);
    wait_until(&mut members, Duration::from_secs(30), "node2 to leave", |m| !m.nodes.contains_key("node2")).await;
}
