//! The message node over real sockets: `MessageRpc` end to end through `MessagePool` against the
//! Redis store, registration in a real ZooKeeper (seen by `watch_messages`, gone after shutdown),
//! and the stat port's `/health` (following the shards) and `/metrics`.

mod common;

use cluster::membership::watch_messages;
use cluster::pool::{MessagePool, RpcConfig};
use cluster::rpc::serve_message;
use cluster::rpc::{MessageApi, SharedMessages, StoreError, StoredMessage};
use cluster::zk::Session;
use message::config::{MessageConfig, StorageKind};
use message::metered::metered;
use message::server::MessageNode;
use message::store::RedisStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// GET `path` on `addr`; returns (status, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = testkit::http::get(&addr.to_string(), path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status(), r.body().to_string())
}

fn node_config() -> MessageConfig {
    let mut c = MessageConfig::default();
    c.base.rpc_bind = vec!["127.0.0.1:0".into()];
    c.base.stat_bind = "127.0.0.1:0".into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rpc_end_to_end_over_redis() {
    let Some((store, _, _, _)) = common::shared_store(20) else { return };
    let store: SharedMessages = Arc::new(metered(store));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(serve_message(listener, store, RpcConfig::default(), shutdown.clone()));

    let pool = MessagePool::new(RpcConfig::default());
    pool.set(vec![(addr, 1)]);
    let key = testkit::unique_name("rpc");
    let odd: i64 = 17_999_999_999_999_999;
    pool.save_private(key.clone(), "{\"a\": \"<\"}".into(), odd, 60).await.unwrap();
    pool.save_private(key.clone(), "2".into(), odd + 1, 60).await.unwrap();
    assert_eq!(
        pool.get_private(key.clone(), 0).await.unwrap(),
        vec![
            StoredMessage { msg: r#"{"a":"\u003c"}"#.into(), mid: odd, gid: 0 },
            StoredMessage { msg: "2".into(), mid: odd + 1, gid: 0 },
        ]
    );
    assert_eq!(pool.get_private(key.clone(), odd).await.unwrap().len(), 1);
    let other = testkit::unique_name("rpc");
    let failed = pool.save_privates(vec![key.clone(), String::new(), other.clone()], "3".into(), odd + 2, 60).await;
    assert_eq!(failed, Ok(vec![String::new()]));
    assert_eq!(pool.get_private(other.clone(), 0).await.unwrap().len(), 1);
    assert_eq!(pool.save_private(key.clone(), "nope".into(), 1, 60).await, Err(StoreError::BadMessage));
    assert_eq!(pool.get_private(key.clone(), -1).await, Err(StoreError::BadMid));
    pool.del_private(key.clone()).await.unwrap();
    assert!(pool.get_private(key.clone(), 0).await.unwrap().is_empty());
    pool.add_token(key.clone(), "tok".into(), 60).await.unwrap();
    assert_eq!(pool.check_token(key.clone(), "tok".into()).await, Ok(true));
    assert_eq!(pool.check_token(key.clone(), "nope".into()).await, Ok(false));
    let health = pool.ping().await.unwrap();
    assert_eq!(health.backend, "redis");
    assert!(health.healthy(), "{health:?}");

    shutdown.cancel();
    serving.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_registers_in_zookeeper_and_leaves_on_shutdown() {
    let Some(zk) = testkit::zk_addr() else { return };
    let mut config = node_config();
    config.storage.kind = StorageKind::Memory;
    config.base.weight = 3;
    config.zookeeper.addr = zk;
    config.zookeeper.timeout = Duration::from_secs(5);
    config.zookeeper.message_path = format!("/{}", testkit::unique_name("message-node"));

    let watcher = Session::start(config.zookeeper.clone());
    let mut members = watch_messages(&watcher);

    let shutdown = CancellationToken::new();
    let server = MessageNode::start(config, shutdown.clone()).await.unwrap();
    let rpc = server.rpc_addrs()[0].to_string();
    assert_eq!(server.node_info().rpc, vec![rpc.clone()], "advertises the bound address");
    let path = tokio::time::timeout(Duration::from_secs(30), server.registered()).await.unwrap().unwrap();

    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        members.wait_for(|m| m.instances.iter().any(|i| i.info.rpc == [rpc.clone()] && i.info.weight == 3)),
    )
    .await
    .map(|r| r.is_ok());
    assert_eq!(seen, Ok(true), "watch_messages never saw the node");
    let instance = members.borrow().instances.iter().find(|i| i.path == path).cloned();
    assert!(instance.is_some(), "registered at {path}");

    // What a web or comet node does with it: call it through the pool.
    let pool = MessagePool::new(RpcConfig::default());
    pool.follow(members.clone());
    testkit::eventually("the pool to reach the registered node", Duration::from_secs(10), || async {
        pool.save_private("zk-key".into(), "1".into(), 5, 60).await.is_ok()
    })
    .await;
    assert_eq!(pool.get_private("zk-key".into(), 0).await.unwrap().len(), 1);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server.wait()).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(30), members.wait_for(|m| m.instances.is_empty()))
        .await
        .map(|r| r.is_ok());
    assert_eq!(gone, Ok(true), "the node is still registered after shutdown");
    assert!(TcpStream::connect(&rpc).await.is_err(), "the RPC port is closed after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_shards_and_metrics_count_calls() {
    let Some(addrs) = testkit::redis_addrs() else { return };
    let Some(mut private) = testkit::RedisServer::start() else { return };
    let mut config = node_config();
    config.redis = common::redis_config(&[("node1", 1, &addrs[0]), ("node2", 1, &private.addr())], 20);
    config.redis.timeout = Duration::from_millis(500);
    // No ZooKeeper here: registration keeps retrying in the background, serving does not wait.
    config.zookeeper.addr = "127.0.0.1:1".into();

    let shutdown = CancellationToken::new();
    let server = MessageNode::start(config, shutdown.clone()).await.unwrap();
    let stat = server.stat_addr();
    let (status, body) = http_get(stat, "/health").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["detail"]["backend"], "redis");
    assert_eq!(json["detail"]["shards"]["node2"], true);

    let pool = MessagePool::new(RpcConfig::default());
    pool.set(vec![(server.rpc_addrs()[0].to_string(), 1)]);
    let keys: Vec<String> = (0..10).map(|i| testkit::unique_name(&format!("m{i}"))).collect();
    pool.save_privates(keys.clone(), "1".into(), 1, 60).await.unwrap();
    pool.get_private(keys[0].clone(), 0).await.unwrap();
    let (status, metrics) = http_get(stat, "/metrics").await;
    assert_eq!(status, 200);
    for name in ["gopush_message_saves_total", "gopush_message_gets_total", "gopush_message_store_seconds"] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }

    tokio::task::block_in_place(|| private.stop());
    let (status, body) = http_get(stat, "/health").await;
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["detail"]["shards"]["node2"], false);
    assert_eq!(json["detail"]["shards"]["node1"], true);
    let failed = pool.save_privates(keys.clone(), "2".into(), 2, 60).await.unwrap();
    let store =
        RedisStore::new(&common::redis_config(&[("node1", 1, &addrs[0]), ("node2", 1, &private.addr())], 20)).unwrap();
    let expected: Vec<String> = keys.iter().filter(|k| store.shard_name(k) == "node2").cloned().collect();
    assert_eq!(failed, expected);

    tokio::task::block_in_place(|| private.start_again());
    let (status, _) = http_get(stat, "/health").await;
    assert_eq!(status, 200, "healthy again without a restart");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server.wait()).await.unwrap();
}

#[tokio::test]
async fn a_port_in_use_names_its_config_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut config = node_config();
    config.storage.kind = StorageKind::Memory;
    config.base.stat_bind = addr.clone();
    config.zookeeper.addr = "127.0.0.1:1".into();
    let err = match MessageNode::start(config, CancellationToken::new()).await {
        Ok(_) => panic!("started on a port that is in use"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("base.stat_bind") && err.contains(&addr), "{err}");
}
