//! The RPC contracts over real loopback TCP: typed errors cross the wire intact, deadlines hold,
//! a dead address fails fast, a restarted server is redialled, and the message pool fails over.

use cluster::pool::{Endpoint, MessagePool, RemoteComet, RpcConfig};
use cluster::rpc::server::{serve_comet, serve_message};
use cluster::rpc::{
    BoxFuture, CometApi, CometError, CometRpcClient, CometStatus, MessageApi, Mid, PushPrivatesReply, StoreError,
    StoreHealth, StoredMessage,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A comet that answers from fixed rules, so the transport is what is under test.
struct RuleComet;

impl CometApi for RuleComet {
    fn push_private(&self, key: String, msg: String, expire: u32) -> BoxFuture<'_, Result<Mid, CometError>> {
        Box::pin(async move {
            match key.as_str() {
                "" => Err(CometError::BadKey),
                "elsewhere" => Err(CometError::NotOwner),
                "store-down" => Err(CometError::Store(StoreError::Backend)),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(0)
                }
                _ => Ok((msg.len() as i64) * 1000 + i64::from(expire)),
            }
        })
    }
    fn push_privates(
        &self,
        keys: Vec<String>,
        _: String,
        _: u32,
    ) -> BoxFuture<'_, Result<PushPrivatesReply, CometError>> {
        Box::pin(async move {
            Ok(PushPrivatesReply { mid: 7, failed: keys.into_iter().filter(|k| k.starts_with('x')).collect() })
        })
    }
    fn add_token(&self, _: String, token: String, _: u64) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move { if token.is_empty() { Err(CometError::BadToken) } else { Ok(()) } })
    }
    fn close_key(&self, _: String) -> BoxFuture<'_, Result<u32, CometError>> {
        Box::pin(async { Ok(2) })
    }
    fn ping(&self) -> BoxFuture<'_, Result<CometStatus, CometError>> {
        Box::pin(async { Ok(CometStatus { node: "node1".into(), connections: 3, channels: 2, serving: true }) })
    }
}

/// A message node that records which instance served the call.
struct NamedStore {
    name: &'static str,
    calls: AtomicU32,
}

impl MessageApi for NamedStore {
    fn save_private(&self, _: String, msg: String, mid: Mid, _: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if mid < 0 {
                return Err(StoreError::BadMid);
            }
            if msg == "backend" { Err(StoreError::Backend) } else { Ok(()) }
        })
    }
    fn save_privates(
        &self,
        keys: Vec<String>,
        _: String,
        _: Mid,
        _: u32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(keys.into_iter().take(1).collect()) })
    }
    fn get_private(&self, _: String, after: Mid) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let name = self.name;
        Box::pin(async move { Ok(vec![StoredMessage { msg: format!("\"{name}\""), mid: after + 1, gid: 0 }]) })
    }
    fn del_private(&self, _: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn add_token(&self, _: String, _: String, _: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn check_token(&self, _: String, token: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(token == "good") })
    }
    fn ping(&self) -> BoxFuture<'_, Result<StoreHealth, StoreError>> {
        Box::pin(async { Ok(StoreHealth { backend: "test".into(), shards: vec![("a".into(), true)] }) })
    }
}

fn fast() -> RpcConfig {
    RpcConfig {
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..RpcConfig::default()
    }
}

async fn start_comet(listener: TcpListener) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(serve_comet(listener, Arc::new(RuleComet), stop.clone()));
    stop
}

async fn start_store(name: &'static str) -> (String, Arc<NamedStore>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let store = Arc::new(NamedStore { name, calls: AtomicU32::new(0) });
    let stop = CancellationToken::new();
    tokio::spawn(serve_message(listener, store.clone(), stop.clone()));
    (addr, store, stop)
}

#[tokio::test]
async fn comet_calls_carry_results_and_typed_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let _stop = start_comet(listener).await;
    let comet = RemoteComet::new(addr, fast());

    assert_eq!(comet.push_private("k".into(), "{}".into(), 9).await, Ok(2009));
    assert_eq!(comet.push_private("".into(), "{}".into(), 0).await, Err(CometError::BadKey));
    assert_eq!(comet.push_private("elsewhere".into(), "{}".into(), 0).await, Err(CometError::NotOwner));
    assert_eq!(
        comet.push_private("store-down".into(), "{}".into(), 0).await,
        Err(CometError::Store(StoreError::Backend))
    );
    let reply = comet.push_privates(vec!["a".into(), "xb".into()], "{}".into(), 0).await.expect("push_privates");
    assert_eq!(reply, PushPrivatesReply { mid: 7, failed: vec!["xb".into()] });
    assert_eq!(comet.add_token("k".into(), "".into(), 1).await, Err(CometError::BadToken));
    assert_eq!(comet.close_key("k".into()).await, Ok(2));
    assert_eq!(comet.ping().await.map(|s| s.connections), Ok(3));
    assert_eq!(comet.endpoint().consecutive_failures(), 0);
}

#[tokio::test]
async fn deadlines_hold_and_dead_addresses_fail_fast() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let _stop = start_comet(listener).await;
    let comet = RemoteComet::new(addr, fast());
    let started = std::time::Instant::now();
    assert_eq!(comet.push_private("slow".into(), "{}".into(), 0).await, Err(CometError::Timeout));
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
    let stop = start_comet(listener).await;
    let endpoint: Arc<Endpoint<CometRpcClient>> = Endpoint::new(addr.to_string(), fast());
    let ping = |e: Arc<Endpoint<CometRpcClient>>| async move {
        e.call(|c, ctx| async move { c.ping(ctx).await.map(Ok::<_, CometError>) }).await
    };
    assert!(ping(endpoint.clone()).await.is_ok());

    stop.cancel();
    // Give the server's connection tasks a moment to see the cancellation and close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ping(endpoint.clone()).await.is_err(), "the old connection is gone");

    let listener = TcpListener::bind(addr).await.expect("rebind the same port");
    let _stop = start_comet(listener).await;
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
    assert_eq!(b.calls.load(Ordering::SeqCst), 0);

    pool.set(vec![(a_addr.clone(), 1), (b_addr.clone(), 1)]);
    for _ in 0..40 {
        pool.get_private("k".into(), 0).await.expect("get");
    }
    assert!(a.calls.load(Ordering::SeqCst) > 20 && b.calls.load(Ordering::SeqCst) > 0, "both take calls");

    // Typed store errors are answers, not reasons to try another node.
    let before = a.calls.load(Ordering::SeqCst) + b.calls.load(Ordering::SeqCst);
    assert_eq!(pool.save_private("k".into(), "backend".into(), 1, 1).await, Err(StoreError::Backend));
    assert_eq!(pool.save_private("k".into(), "{}".into(), -1, 1).await, Err(StoreError::BadMid));
    assert_eq!(a.calls.load(Ordering::SeqCst) + b.calls.load(Ordering::SeqCst), before + 2);

    // With `a` gone every call still succeeds through `b`.
    a_stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        let got = pool.get_private("k".into(), 0).await.expect("fail-over to b");
        assert_eq!(got[0].msg, "\"b\"");
    }
    assert_eq!(pool.check_token("k".into(), "good".into()).await, Ok(true));
    assert_eq!(pool.save_privates(vec!["x".into(), "y".into()], "{}".into(), 1, 1).await, Ok(vec!["x".to_string()]));
}
