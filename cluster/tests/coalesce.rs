//! Coalesced calls over real loopback RPC (docs/decisions.md#d90-coalesced-pushes-from-web-to-a-comet,
//! docs/decisions.md#d91-coalesced-saves-from-a-comet-to-the-store): a lone push or save leaves at once
//! as `push_private` or `save_private`; those queued behind busy call slots leave as one
//! `push_batch` or `save_batch`, and each is answered on its own, failures included.

use cluster::coalesce::{PushCoalescer, SaveCoalescer};
use cluster::pool::{MessagePool, RemoteComet, RpcConfig};
use cluster::rpc::{CometError, MessageApi, Push, Save, SharedComet, StoreError, serve_comet, serve_message};
use cluster::testing::{CometCall, FakeComet, FakeStore};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A `FakeComet` served on loopback and a remote client of it.
async fn remote() -> (SharedComet, Arc<FakeComet>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let fake = FakeComet::new("node1");
    let stop = CancellationToken::new();
    tokio::spawn(serve_comet(listener, fake.clone(), RpcConfig::default(), stop.clone()));
    (Arc::new(RemoteComet::new(addr, RpcConfig::default())), fake, stop)
}

fn push(key: &str, n: usize) -> Push {
    Push { key: key.into(), msg: format!("{{\"n\":{n}}}"), expire: 0, id: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_push_leaves_at_once_as_push_private() {
    let (comet, fake, _stop) = remote().await;
    let pushes = PushCoalescer::new(comet, 64, 1);
    assert_eq!(pushes.push(push("k", 1)).await, Ok(1));
    assert_eq!(fake.calls(), [CometCall::Push { key: "k".into(), msg: "{\"n\":1}".into(), expire: 0 }]);
    assert!(fake.batches().is_empty(), "no batch for a push alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_queued_behind_a_busy_slot_leave_together_and_fail_alone() {
    let (comet, fake, _stop) = remote().await;
    fake.slow_ms.store(500, Ordering::SeqCst);
    let pushes = Arc::new(PushCoalescer::new(comet, 64, 1));
    // `slow` holds the only call slot for half a second; the next pushes queue behind it.
    let slow = tokio::spawn({
        let p = pushes.clone();
        async move { p.push(push("slow", 0)).await }
    });
    testkit::eventually("the slow push to reach the comet", Duration::from_secs(5), || async {
        fake.received.load(Ordering::SeqCst) == 1
    })
    .await;
    let keys = ["a", "", "notmine-b", "c"];
    let queued: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let (p, k) = (pushes.clone(), k.to_string());
            tokio::spawn(async move { p.push(push(&k, i + 1)).await })
        })
        .collect();
    let answers: Vec<_> = futures::future::join_all(queued).await.into_iter().map(|r| r.expect("task")).collect();
    assert!(slow.await.expect("task").is_ok());
    assert!(answers[0].is_ok(), "{answers:?}");
    assert_eq!(answers[1], Err(CometError::BadKey), "a bad key fails alone");
    assert_eq!(answers[2], Err(CometError::NotOwner), "a key of another comet fails alone");
    assert!(answers[3].is_ok(), "{answers:?}");
    assert_eq!(fake.batches(), [4], "the four queued pushes went in one call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_comet_fails_every_push_of_the_batch_with_the_transport_error() {
    let (comet, fake, stop) = remote().await;
    assert_eq!(PushCoalescer::new(comet.clone(), 64, 1).push(push("k", 0)).await, Ok(1));
    stop.cancel();
    fake.down.store(true, Ordering::SeqCst);
    let pushes = Arc::new(PushCoalescer::new(comet, 64, 2));
    let all = (0..20).map(|i| {
        let p = pushes.clone();
        tokio::spawn(async move { p.push(push("k", i)).await })
    });
    for r in futures::future::join_all(all).await {
        assert_eq!(r.expect("task"), Err(CometError::Unreachable));
    }
}

/// A `FakeStore` served on loopback as a message node, and a pool that calls it.
async fn remote_store() -> (Arc<MessagePool>, Arc<FakeStore>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let store = FakeStore::new();
    let stop = CancellationToken::new();
    tokio::spawn(serve_message(listener, store.clone(), RpcConfig::default(), stop.clone()));
    let pool = MessagePool::new(RpcConfig::default());
    pool.set(vec![(addr, 1)]);
    (pool, store, stop)
}

fn save(key: &str, mid: i64) -> Save {
    Save { key: key.into(), msg: format!("{{\"n\":{mid}}}"), mid, expire: 600 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_queued_behind_a_busy_slot_leave_as_one_batch_and_fail_alone() {
    let (pool, store, _stop) = remote_store().await;
    store.fail_keys.lock().unwrap().insert("broken".into());
    let saves = Arc::new(SaveCoalescer::saves(pool, 64, 1));
    assert_eq!(saves.save(save("alone", 1)).await, Ok(()));
    assert!(store.save_batches.lock().unwrap().is_empty(), "a save alone goes as save_private");

    // The first save holds the only slot for half a second; the next ones queue behind it.
    store.save_delays.lock().unwrap().push_back(Duration::from_millis(500));
    let slow = tokio::spawn({
        let s = saves.clone();
        async move { s.save(save("slow", 2)).await }
    });
    // The store takes a save's delay as the save starts.
    testkit::eventually("the slow save to reach the store", Duration::from_secs(5), || async {
        store.save_delays.lock().unwrap().is_empty()
    })
    .await;
    let queued: Vec<_> = [("a", 3), ("broken", 4), ("a", 5), ("", 6)]
        .into_iter()
        .map(|(k, mid)| {
            let s = saves.clone();
            tokio::spawn(async move { s.save(save(k, mid)).await })
        })
        .collect();
    let answers: Vec<_> = futures::future::join_all(queued).await.into_iter().map(|r| r.expect("task")).collect();
    assert_eq!(slow.await.expect("task"), Ok(()));
    assert_eq!(answers, [Ok(()), Err(StoreError::Backend), Ok(()), Ok(())], "the failing key fails alone");
    assert_eq!(*store.save_batches.lock().unwrap(), [4], "the four queued saves went in one call");
    let stored: Vec<i64> = store.get_private("a".into(), 0).await.unwrap().iter().map(|m| m.mid).collect();
    assert_eq!(stored, [3, 5], "in the order they were queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_to_a_dead_message_node_all_fail_with_the_transport_error() {
    let (pool, _store, stop) = remote_store().await;
    let saves = Arc::new(SaveCoalescer::saves(pool, 64, 2));
    assert_eq!(saves.save(save("k", 1)).await, Ok(()));
    stop.cancel();
    let all = (0..20).map(|i| {
        let s = saves.clone();
        tokio::spawn(async move { s.save(save("k", i + 2)).await })
    });
    for r in futures::future::join_all(all).await {
        let answer = r.expect("task");
        assert!(
            matches!(answer, Err(StoreError::Unreachable | StoreError::NoNode | StoreError::Timeout)),
            "{answer:?}"
        );
    }
}
