//! The Redis layout against real servers: upstream's member format and sharding
//! (docs/storage.md#redis-layout, docs/architecture.md#ring-golden-vectors), exact mids above 2^53
//! where a naive exclusive score query fails, upstream-written members read back by score, expired
//! and foreign members removed, key TTLs, and the token hashes.

mod common;

use cluster::rpc::{MessageApi, StoredMessage};
use message::clock::Clock;
use message::store::RedisStore;
use redis::AsyncCommands;

#[tokio::test]
async fn members_are_upstreams_json_plus_the_exact_mid() {
    let Some((store, config, clock, addrs)) = common::shared_store(20) else { return };
    // node1 in the golden ring (docs/architecture.md#ring-golden-vectors); here node1 → the first server
    let key = "Terry-Mao";
    let shard = if store.shard_name(key) == "node1" { &addrs[0] } else { &addrs[1] };
    let now = clock.now();
    store
        .save_private(key.into(), "{ \"test\": 1, \"h\": \"<b>&\" }".into(), 17_999_999_999_999_999, 60)
        .await
        .unwrap();
    let mut conn = common::raw(shard).await;
    let zkey = format!("{}{key}", config.key_prefix);
    let rows: Vec<(String, f64)> = conn.zrange_withscores(&zkey, 0, -1).await.unwrap();
    assert_eq!(rows.len(), 1);
    let (member, score) = &rows[0];
    let expire: i64 = member.split("\"expire\":").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!((now + 60..=now + 61).contains(&expire), "absolute expiry {expire} for now {now}");
    assert_eq!(
        member,
        &format!(r#"{{"msg":{{"test":1,"h":"\u003cb\u003e\u0026"}},"expire":{expire},"mid":17999999999999999}}"#)
    );
    assert_eq!(*score, 17_999_999_999_999_999_f64, "score = mid, as a double");
    let ttl: i64 = conn.ttl(&zkey).await.unwrap();
    assert!((55..=61).contains(&ttl), "key TTL follows the expiry, got {ttl}");
}

#[tokio::test]
async fn odd_mids_near_1_8e16_come_back_exactly() {
    let Some((store, config, _, addrs)) = common::shared_store(20) else { return };
    let key = testkit::unique_name("odd");
    // Doubles are 2 apart here: odd mids share their score with an even neighbour.
    let base: i64 = 17_999_999_999_999_999;
    let saved: Vec<i64> = (0..6).map(|i| base + i).collect();
    for &mid in &saved {
        store.save_private(key.clone(), format!("{mid}"), mid, 60).await.unwrap();
    }
    for (i, &after) in saved.iter().enumerate() {
        let got = store.get_private(key.clone(), after).await.unwrap();
        let want: Vec<StoredMessage> =
            saved[i + 1..].iter().map(|&mid| StoredMessage { msg: format!("{mid}"), mid, gid: 0 }).collect();
        assert_eq!(got, want, "after {after}");
    }

    // Upstream's query (exclusive score bound, mid taken from the score) gets this wrong.
    let shard = if store.shard_name(&key) == "node1" { &addrs[0] } else { &addrs[1] };
    let mut conn = common::raw(shard).await;
    let mut naive_wrong = 0;
    for (i, &after) in saved.iter().enumerate() {
        let rows: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(format!("{}{key}", config.key_prefix))
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .unwrap();
        let naive: Vec<i64> = rows.iter().map(|(_, s)| *s as i64).collect();
        if naive != saved[i + 1..] {
            naive_wrong += 1;
        }
    }
    assert!(naive_wrong > 0, "the test data must defeat the naive query");
}

#[tokio::test]
async fn upstream_members_are_read_by_score() {
    let Some((store, config, clock, addrs)) = common::shared_store(20) else { return };
    let key = testkit::unique_name("legacy");
    let shard = if store.shard_name(&key) == "node1" { &addrs[0] } else { &addrs[1] };
    let mut conn = common::raw(shard).await;
    let zkey = format!("{}{key}", config.key_prefix);
    let live = clock.now() + 3600;
    // What upstream wrote: no "mid", no TTL; one odd mid that Redis rounded.
    let _: () = redis::pipe()
        .zadd(&zkey, format!(r#"{{"msg":{{"test":1}},"expire":{live}}}"#), 13_996_474_938_346_192_i64)
        .zadd(&zkey, format!(r#"{{"msg":"second","expire":{live}}}"#), 13_996_474_938_346_197_i64)
        .zadd(&zkey, format!(r#"{{"msg":"old","expire":{}}}"#, clock.now() - 10), 13_996_474_938_346_100_i64)
        .zadd(&zkey, "not a message", 13_996_474_938_346_101_i64)
        .query_async(&mut conn)
        .await
        .unwrap();
    let got = store.get_private(key.clone(), 0).await.unwrap();
    let second = 13_996_474_938_346_197_f64 as i64;
    assert_eq!(
        got,
        vec![
            StoredMessage { msg: r#"{"test":1}"#.into(), mid: 13_996_474_938_346_192, gid: 0 },
            StoredMessage { msg: "\"second\"".into(), mid: second, gid: 0 },
        ]
    );
    assert!(second == 13_996_474_938_346_196 || second == 13_996_474_938_346_198, "as exact as the score allows");
    assert_eq!(store.get_private(key.clone(), 13_996_474_938_346_192).await.unwrap().len(), 1);
    // The expired and the foreign member were removed; upstream's live ones stay untouched.
    let left: usize = conn.zcard(&zkey).await.unwrap();
    assert_eq!(left, 2);
    // A new save gives the key a TTL (it had none) and keeps the old members readable.
    store.save_private(key.clone(), "3".into(), 13_996_474_938_346_300, 60).await.unwrap();
    let ttl: i64 = conn.ttl(&zkey).await.unwrap();
    assert!(ttl > 0 && ttl <= 61, "{ttl}");
    assert_eq!(store.get_private(key.clone(), 0).await.unwrap().len(), 3);
}

#[tokio::test]
async fn key_ttl_is_the_latest_expiry() {
    let Some((store, config, _, addrs)) = common::shared_store(20) else { return };
    let key = testkit::unique_name("ttl");
    let shard = if store.shard_name(&key) == "node1" { &addrs[0] } else { &addrs[1] };
    let mut conn = common::raw(shard).await;
    let zkey = format!("{}{key}", config.key_prefix);
    store.save_private(key.clone(), "1".into(), 1, 1000).await.unwrap();
    store.save_private(key.clone(), "2".into(), 2, 100).await.unwrap();
    let ttl: i64 = conn.ttl(&zkey).await.unwrap();
    assert!((990..=1001).contains(&ttl), "a shorter expiry does not shorten the key: {ttl}");
    store.save_privates(vec![key.clone()], "3".into(), 3, 5000).await.unwrap();
    let ttl: i64 = conn.ttl(&zkey).await.unwrap();
    assert!((4990..=5001).contains(&ttl), "a longer one extends it: {ttl}");
}

#[tokio::test]
async fn tokens_live_in_a_hash_beside_the_messages() {
    let Some((store, config, clock, addrs)) = common::shared_store(20) else { return };
    let key = testkit::unique_name("tok");
    let shard = if store.shard_name(&key) == "node1" { &addrs[0] } else { &addrs[1] };
    let mut conn = common::raw(shard).await;
    let tkey = format!("{}gopush-token:{key}", config.key_prefix);
    let now = clock.now();
    store.add_token(key.clone(), "secret".into(), 3600).await.unwrap();
    let fields: Vec<(String, String)> = conn.hgetall(&tkey).await.unwrap();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].0, "secret");
    let expire = fields[0].1.trim_start_matches("{\"expire\":").split(',').next().unwrap().parse::<i64>().unwrap();
    assert!((now + 3600..=now + 3601).contains(&expire));
    assert_eq!(fields[0].1, format!(r#"{{"expire":{expire},"life":3600}}"#));
    let ttl: i64 = conn.ttl(&tkey).await.unwrap();
    assert!((3590..=3601).contains(&ttl), "{ttl}");
    // A garbled record is treated as expired and dropped.
    let _: () = conn.hset(&tkey, "junk", "??").await.unwrap();
    assert!(!store.check_token(key.clone(), "junk".into()).await.unwrap());
    let n: usize = conn.hlen(&tkey).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn keys_land_on_upstreams_shard_for_real() {
    let Some(addrs) = testkit::redis_addrs() else { return };
    // The golden ring (docs/architecture.md#ring-golden-vectors); node1 and node3 share the first
    // server, node2 has the second.
    let config = common::redis_config(&[("node1", 1, &addrs[0]), ("node2", 2, &addrs[1]), ("node3", 1, &addrs[0])], 20);
    let store = RedisStore::with_clock(&config, Clock::system()).unwrap();
    let golden = [("Terry-Mao", "node1"), ("t1", "node2"), ("t2", "node3"), ("t3", "node2"), ("user_1", "node3")];
    let mut first = common::raw(&addrs[0]).await;
    let mut second = common::raw(&addrs[1]).await;
    for (key, node) in golden {
        assert_eq!(store.shard_name(key), node);
        store.save_private(key.into(), "1".into(), 1, 60).await.unwrap();
        let zkey = format!("{}{key}", config.key_prefix);
        let on_first: usize = first.zcard(&zkey).await.unwrap();
        let on_second: usize = second.zcard(&zkey).await.unwrap();
        assert_eq!((on_first, on_second), if node == "node2" { (0, 1) } else { (1, 0) }, "{key} → {node}");
        assert_eq!(store.get_private(key.into(), 0).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_key_redis_refuses_fails_alone_in_a_multi_save() {
    let Some((store, config, _, addrs)) = common::shared_store(20) else { return };
    let bad = testkit::unique_name("wrongtype");
    let shard = if store.shard_name(&bad) == "node1" { &addrs[0] } else { &addrs[1] };
    let mut conn = common::raw(shard).await;
    // Not a sorted set: Redis answers WRONGTYPE to this key's commands only.
    let _: () = conn.set(format!("{}{bad}", config.key_prefix), "x").await.unwrap();
    let good: Vec<String> = (0..10).map(|i| testkit::unique_name(&format!("good{i}"))).collect();
    let mut keys = good.clone();
    keys.insert(4, bad.clone());
    let failed = store.save_privates(keys, "1".into(), 1, 60).await.unwrap();
    assert_eq!(failed, vec![bad.clone()]);
    for k in &good {
        assert_eq!(store.get_private(k.clone(), 0).await.unwrap().len(), 1);
    }
    assert_eq!(store.get_private(bad, 0).await, Err(cluster::rpc::StoreError::Backend));
}
