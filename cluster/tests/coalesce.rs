//! Coalesced pushes over real loopback RPC (docs/decisions.md#d90-coalesced-pushes-from-web-to-a-comet): a lone push
//! leaves at once as `push_private`; pushes queued behind busy call slots leave as one
//! `push_batch`, and each is answered on its own, failures included.

use cluster::coalesce::PushCoalescer;
use cluster::pool::{RemoteComet, RpcConfig};
use cluster::rpc::{CometError, Push, SharedComet, serve_comet};
use cluster::testing::{CometCall, FakeComet};
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
