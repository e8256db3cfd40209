//! The store over replicated Redis (docs/storage.md#kinds-of-storage): a Redis Cluster of three
//! masters and three replicas, and ring shards that are Sentinel-watched pairs. The same calls as
//! over plain shards work, batches and room joins across many slots included, and `wait_replicas` acknowledges a
//! save only once a replica has it. Fail-over under load is tested through whole gopush processes
//! in gopush/tests/storage_ha.rs.

mod common;

use cluster::rpc::{MessageApi, Save, StoreError};
use message::clock::Clock;
use message::config::{RedisClusterConfig, RedisConfig, RedisSource};
use message::store::RedisStore;
use testkit::{RedisCluster, SentinelSet};

fn cluster_config(cluster: &RedisCluster, wait_replicas: u32) -> RedisConfig {
    RedisConfig {
        key_prefix: format!("{}:", testkit::unique_name("ha")),
        wait_replicas,
        cluster: RedisClusterConfig { nodes: cluster.seeds(), password: String::new() },
        ..RedisConfig::default()
    }
}

/// Messages, batches over many slots, deletes and tokens through the cluster, with health naming
/// each master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_store_behaves_like_the_sharded_one() {
    let Some(cluster) = RedisCluster::start() else { return };
    let store = RedisStore::cluster(&cluster_config(&cluster, 1), Clock::system()).unwrap();

    store.save_private("alice".into(), r#"{"a":1}"#.into(), 10, 60).await.unwrap();
    store.save_private("alice".into(), r#"{"a":2}"#.into(), 11, 60).await.unwrap();
    let got = store.get_private("alice".into(), 10).await.unwrap();
    assert_eq!(got.iter().map(|m| (m.msg.as_str(), m.mid)).collect::<Vec<_>>(), [(r#"{"a":2}"#, 11)]);

    // Keys in many slots (so on every master) in one call: all stored, none failed.
    let keys: Vec<String> = (0..50).map(|i| format!("batch-{i}")).collect();
    let failed = store.save_privates(keys.clone(), "7".into(), 20, 60).await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    for k in &keys {
        assert_eq!(store.get_private(k.clone(), 0).await.unwrap().len(), 1, "{k}");
    }
    // A batch of saves over keys in many slots: each answered, each stored.
    let saves = keys.iter().map(|k| Save { key: k.clone(), msg: "8".into(), mid: 21, expire: 60 }).collect();
    let answers = store.save_batch(saves).await.unwrap();
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    for k in &keys {
        assert_eq!(store.get_private(k.clone(), 20).await.unwrap().len(), 1, "{k}");
    }
    store.del_private("alice".into()).await.unwrap();
    assert!(store.get_private("alice".into(), 0).await.unwrap().is_empty());

    store.add_token("alice".into(), "t1".into(), 60).await.unwrap();
    assert_eq!(store.check_token("alice".into(), "t1".into()).await, Ok(true));
    assert_eq!(store.check_token("alice".into(), "t2".into()).await, Ok(false));

    // Room membership: one call over keys in many slots, and the subscriber's rooms with its token
    // (two keys of different slots) in one store call.
    let failed = store.join_rooms(keys.clone(), "lobby".into()).await.unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    store.join_rooms(vec!["alice".into()], "lobby".into()).await.unwrap();
    assert_eq!(store.get_rooms("batch-7".into()).await.unwrap(), ["lobby"]);
    let found = store.subscriber("alice".into(), Some("t1".into())).await.unwrap();
    assert!(found.token_valid);
    assert_eq!(found.rooms, ["lobby"]);
    assert!(store.leave_rooms(keys.clone(), "lobby".into()).await.unwrap().is_empty());
    assert!(store.get_rooms("batch-7".into()).await.unwrap().is_empty());

    let health = store.ping().await.unwrap();
    assert_eq!(health.backend, "redis-cluster");
    assert_eq!(health.shards.len(), 3, "{health:?}");
    assert!(health.healthy(), "{health:?}");
}

/// With `wait_replicas` above what the set has, every save is refused (the promise cannot be
/// kept) while reads still work; the message is nonetheless on the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_are_refused_when_too_few_replicas_confirm() {
    let Some(set) = SentinelSet::start("refuse") else { return };
    let mut config = sentinel_config(&[&set]);
    config.wait_replicas = 2;
    config.timeout = std::time::Duration::from_millis(400);
    let store = RedisStore::new(&config).unwrap();
    assert_eq!(store.save_private("k".into(), "1".into(), 1, 60).await, Err(StoreError::Backend));
    assert_eq!(store.save_privates(vec!["k".into()], "2".into(), 2, 60).await.unwrap(), ["k"]);
    let batch = vec![Save { key: "k".into(), msg: "4".into(), mid: 4, expire: 60 }];
    assert_eq!(store.save_batch(batch).await.unwrap(), [Err(StoreError::Backend)]);
    assert_eq!(store.get_private("k".into(), 0).await.unwrap().len(), 3);
    config.wait_replicas = 1;
    let store = RedisStore::new(&config).unwrap();
    store.save_private("k".into(), "3".into(), 3, 60).await.unwrap();
}

fn sentinel_config(sets: &[&SentinelSet]) -> RedisConfig {
    RedisConfig {
        key_prefix: format!("{}:", testkit::unique_name("ha")),
        source: sets
            .iter()
            .enumerate()
            .map(|(i, set)| RedisSource {
                name: format!("node{}", i + 1),
                sentinels: set.sentinels(),
                master_name: set.name().to_string(),
                ..RedisSource::default()
            })
            .collect(),
        ..RedisConfig::default()
    }
}

/// Sentinel shards keep the ring: a key lands on the shard of the same name as with plain shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_shards_follow_the_ring_and_report_health() {
    let (Some(a), Some(b)) = (SentinelSet::start("shard-a"), SentinelSet::start("shard-b")) else { return };
    let store = RedisStore::new(&sentinel_config(&[&a, &b])).unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("s-{i}")).collect();
    assert!(store.save_privates(keys.clone(), "1".into(), 1, 60).await.unwrap().is_empty());
    let mut per_shard = [0, 0];
    for k in &keys {
        assert_eq!(store.get_private(k.clone(), 0).await.unwrap().len(), 1);
        per_shard[usize::from(store.shard_name(k) == "node2")] += 1;
    }
    assert!(per_shard[0] > 0 && per_shard[1] > 0, "both shards hold keys: {per_shard:?}");
    let health = store.ping().await.unwrap();
    assert_eq!(health.shards, vec![("node1".to_string(), true), ("node2".to_string(), true)]);
}
