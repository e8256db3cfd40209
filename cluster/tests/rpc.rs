//! The RPC contracts over real loopback TCP: typed errors cross the wire intact, deadlines hold,
//! a dead address fails fast, a restarted server is redialled, and the message pool fails over.

use cluster::pool::{Endpoint, MessagePool, RemoteComet, RpcConfig};
use cluster::rpc::{CometApi, CometError, CometRpcClient, MessageApi, PushPrivatesReply, StoreError};
use cluster::rpc::{serve_comet, serve_message};
use cluster::testing::{CometCall, FakeComet, FakeStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn fast() -> RpcConfig {
    RpcConfig {
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..RpcConfig::default()
    }
}

async fn start_comet(listener: TcpListener) -> (CancellationToken, Arc<FakeComet>) {
    let stop = CancellationToken::new();
    let comet = Arc::new(FakeComet { name: "node1".into(), connections: 3, ..Default::default() });
    tokio::spawn(serve_comet(listener, comet.clone(), RpcConfig::default(), stop.clone()));
    (stop, comet)
}

/// A message node serving a store that holds one message, named after the node, for key `k`.
async fn start_store(name: &'static str) -> (String, Arc<FakeStore>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let store = FakeStore::with("k", &[(&format!("\"{name}\""), 6)]);
    store.fail_keys.lock().unwrap().insert("x".into());
    let stop = CancellationToken::new();
    tokio::spawn(serve_message(listener, store.clone(), RpcConfig::default(), stop.clone()));
    (addr, store, stop)
}

#[tokio::test]
async fn comet_calls_carry_results_and_typed_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (_stop, served) = start_comet(listener).await;
    let comet = RemoteComet::new(addr, fast());

    assert_eq!(comet.push_private("k".into(), "{}".into(), 9, None).await, Ok(1));
    assert_eq!(
        served.calls(),
        [CometCall::Push { key: "k".into(), msg: "{}".into(), expire: 9 }],
        "arguments cross intact"
    );
    assert_eq!(comet.push_private("".into(), "{}".into(), 0, None).await, Err(CometError::BadKey));
    assert_eq!(comet.push_private("notmine".into(), "{}".into(), 0, None).await, Err(CometError::NotOwner));
    assert_eq!(
        comet.push_private("store-down".into(), "{}".into(), 0, None).await,
        Err(CometError::Store(StoreError::Backend))
    );
    assert_eq!(comet.push_private("k".into(), "{".into(), 0, None).await, Err(CometError::BadMessage));
    let reply = comet.push_privates(vec!["a".into(), "fkb".into()], "{}".into(), 0, None).await.expect("push_privates");
    assert_eq!(reply, PushPrivatesReply { mid: 2, failed: vec!["fkb".into()] });
    assert_eq!(comet.add_token("k".into(), "".into(), 1).await, Err(CometError::BadToken));
    assert_eq!(comet.close_key("k".into()).await, Ok(0));
    assert_eq!(comet.ping().await.map(|s| s.connections), Ok(3));
    assert_eq!(comet.endpoint().consecutive_failures(), 0);
}

#[tokio::test]
async fn deadlines_hold_and_dead_addresses_fail_fast() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (_stop, _) = start_comet(listener).await;
    let comet = RemoteComet::new(addr, fast());
    let started = std::time::Instant::now();
    assert_eq!(comet.push_private("slow".into(), "{}".into(), 0, None).await, Err(CometError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(3), "the 500 ms deadline was not applied");
    assert_eq!(comet.endpoint().consecutive_failures(), 1);
    assert!(comet.ping().await.is_ok(), "a timed-out call leaves the connection usable");

    // Nothing listens on a port we bound and released.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").to_string();
    let comet = RemoteComet::new(dead, fast());
    assert_eq!(comet.ping().await, Err(CometError::Unreachable));
    assert_eq!(comet.ping().await, Err(CometError::Unreachable));
    assert_eq!(comet.endpoint().consecutive_failures(), 2);
    assert!(comet.endpoint().healthy(), "two failures are below the default three");
    assert!(comet.ping().await.is_err());
    assert!(!comet.endpoint().healthy());
}

#[tokio::test]
async fn a_restarted_server_is_redialled() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, _) = start_comet(listener).await;
    let endpoint: Arc<Endpoint<CometRpcClient>> = Endpoint::new(addr.to_string(), fast());
    let ping = |e: Arc<Endpoint<CometRpcClient>>| async move {
        e.call((), |c, ctx, ()| async move { c.ping(ctx).await }).await
    };
    assert!(ping(endpoint.clone()).await.is_ok());

    stop.cancel();
    // Give the server's connection tasks a moment to see the cancellation and close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ping(endpoint.clone()).await.is_err(), "the old connection is gone");

    let listener = TcpListener::bind(addr).await.expect("rebind the same port");
    let (_stop, _) = start_comet(listener).await;
    assert!(ping(endpoint.clone()).await.is_ok(), "the endpoint dialled the new server");
    assert_eq!(endpoint.consecutive_failures(), 0);
}

#[tokio::test]
async fn the_message_pool_fails_over_and_respects_weights() {
    let pool = MessagePool::new(fast());
    assert_eq!(pool.get_private("k".into(), 0).await, Err(StoreError::NoNode), "an empty pool says so");

    let (a_addr, a, a_stop) = start_store("a").await;
    let (b_addr, b, _b_stop) = start_store("b").await;
    pool.set(vec![(a_addr.clone(), 1), (b_addr.clone(), 0)]);
    for _ in 0..20 {
        let got = pool.get_private("k".into(), 5).await.expect("get");
        assert_eq!(got[0].msg, "\"a\"", "weight 0 takes no calls");
        assert_eq!(got[0].mid, 6);
    }
    assert_eq!(b.served(), 0);

    pool.set(vec![(a_addr.clone(), 1), (b_addr.clone(), 1)]);
    for _ in 0..40 {
        pool.get_private("k".into(), 0).await.expect("get");
    }
    assert!(a.served() > 20 && b.served() > 0, "both take calls");

    // Typed store errors are answers, not reasons to try another node.
    let before = a.served() + b.served();
    assert_eq!(pool.save_private("x".into(), "{}".into(), 1, 1).await, Err(StoreError::Backend));
    assert_eq!(pool.save_private("k".into(), "{}".into(), -1, 1).await, Err(StoreError::BadMid));
    assert_eq!(a.served() + b.served(), before + 2);

    // With `a` gone every call still succeeds through `b`.
    a_stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        let got = pool.get_private("k".into(), 0).await.expect("fail-over to b");
        assert_eq!(got[0].msg, "\"b\"");
    }
    b.tokens.lock().unwrap().insert(("k".into(), "good".into()), 60);
    assert_eq!(pool.check_token("k".into(), "good".into()).await, Ok(true));
    assert_eq!(pool.check_token("k".into(), "bad".into()).await, Ok(false));
    assert_eq!(pool.save_privates(vec!["x".into(), "y".into()], "{}".into(), 1, 1).await, Ok(vec!["x".to_string()]));
}
