//! One behaviour suite, written once against `MessageApi`, run against the memory store and the
//! Redis store (two real servers = two shards): order, `m` filtering, the per-key cap, expiry,
//! delete, multi-key saves with failures, batches of saves, tokens with sliding expiry, and refused input.

mod common;

use cluster::rpc::{MessageApi, Save, SharedMessages, StoreError, StoredMessage};
use message::clock::Clock;
use message::metered::metered;
use message::store::MemoryStore;
use std::sync::Arc;

/// The per-key cap both stores get.
const STORE: usize = 5;

fn mids(msgs: &[StoredMessage]) -> Vec<i64> {
    msgs.iter().map(|m| m.mid).collect()
}

/// Runs every behaviour against `store`, whose clock is `clock`; `ns` keeps keys apart.
async fn suite(store: SharedMessages, clock: Clock, ns: &str) {
    let k = |name: &str| format!("{ns}-{name}");

    // Order and `m` filtering: saved out of order, read ascending, strictly after `m`.
    let key = k("order");
    for mid in [30, 10, 20] {
        store.save_private(key.clone(), format!("{{\"n\": {mid}, \"h\": \"<b>\"}}"), mid, 600).await.unwrap();
    }
    let all = store.get_private(key.clone(), 0).await.unwrap();
    assert_eq!(mids(&all), [10, 20, 30]);
    assert_eq!(all[0].msg, r#"{"n":10,"h":"\u003cb\u003e"}"#, "stored compact, Go-escaped");
    assert_eq!(all[0].gid, 0);
    assert_eq!(mids(&store.get_private(key.clone(), 10).await.unwrap()), [20, 30]);
    assert_eq!(mids(&store.get_private(key.clone(), 29).await.unwrap()), [30]);
    assert!(store.get_private(key.clone(), 30).await.unwrap().is_empty());
    assert!(store.get_private(k("never-saved"), 0).await.unwrap().is_empty());

    // The same message saved twice with the same mid is stored once.
    let key = k("dup");
    store.save_private(key.clone(), "1".into(), 7, 600).await.unwrap();
    store.save_private(key.clone(), "1".into(), 7, 600).await.unwrap();
    assert_eq!(mids(&store.get_private(key.clone(), 0).await.unwrap()), [7]);

    // The newest `STORE` messages are kept.
    let key = k("cap");
    for mid in 1..=8 {
        store.save_private(key.clone(), format!("{mid}"), mid, 600).await.unwrap();
    }
    assert_eq!(mids(&store.get_private(key.clone(), 0).await.unwrap()), [4, 5, 6, 7, 8]);

    // A batch of saves is answered save by save: bad ones fail alone, the others are stored as
    // `save_private` stores them, and expire 0 stores nothing.
    let (a, b) = (k("batch-a"), k("batch-b"));
    let save = |key: &str, msg: &str, mid: i64, expire: u32| Save { key: key.into(), msg: msg.into(), mid, expire };
    let answers = store
        .save_batch(vec![
            save(&a, "{\"n\": 1}", 1, 600),
            save("", "1", 2, 600),
            save(&b, "not json", 3, 600),
            save(&b, "2", 4, 600),
            save(&a, "3", 5, 600),
            save(&b, "4", 6, 0),
            save(&a, "5", -1, 600),
        ])
        .await
        .unwrap();
    assert_eq!(
        answers,
        [Ok(()), Err(StoreError::BadKey), Err(StoreError::BadMessage), Ok(()), Ok(()), Ok(()), Err(StoreError::BadMid)]
    );
    let stored = store.get_private(a.clone(), 0).await.unwrap();
    assert_eq!((mids(&stored), stored[0].msg.as_str()), (vec![1, 5], r#"{"n":1}"#));
    assert_eq!(mids(&store.get_private(b.clone(), 0).await.unwrap()), [4]);
    assert!(store.save_batch(Vec::new()).await.unwrap().is_empty());

    // expire 0 stores nothing.
    let key = k("online-only");
    store.save_private(key.clone(), "{}".into(), 1, 0).await.unwrap();
    assert!(store.get_private(key.clone(), 0).await.unwrap().is_empty());

    // Expiry is absolute per message; an expired message is skipped (and gone for good).
    let key = k("expiry");
    store.save_private(key.clone(), "\"short\"".into(), 1, 10).await.unwrap();
    store.save_private(key.clone(), "\"long\"".into(), 2, 100).await.unwrap();
    clock.advance(10);
    assert_eq!(mids(&store.get_private(key.clone(), 0).await.unwrap()), [1, 2], "alive through its last second");
    clock.advance(1);
    assert_eq!(mids(&store.get_private(key.clone(), 0).await.unwrap()), [2]);
    clock.advance(90);
    assert!(store.get_private(key.clone(), 0).await.unwrap().is_empty());

    // Delete.
    let key = k("del");
    store.save_private(key.clone(), "1".into(), 1, 600).await.unwrap();
    store.del_private(key.clone()).await.unwrap();
    assert!(store.get_private(key.clone(), 0).await.unwrap().is_empty());
    store.del_private(key.clone()).await.unwrap();

    // Multi-key save: one mid for all, bad keys reported, the rest stored.
    let keys: Vec<String> = (0..20).map(|i| k(&format!("multi{i}"))).collect();
    let mut with_bad = keys.clone();
    with_bad.insert(3, String::new());
    let failed = store.save_privates(with_bad, "{\"m\":1}".into(), 99, 600).await.unwrap();
    assert_eq!(failed, vec![String::new()]);
    for key in &keys {
        let got = store.get_private(key.clone(), 0).await.unwrap();
        assert_eq!(got, vec![StoredMessage { msg: "{\"m\":1}".into(), mid: 99, gid: 0 }], "{key}");
    }
    assert!(store.save_privates(keys.clone(), "{}".into(), 100, 0).await.unwrap().is_empty());
    assert_eq!(mids(&store.get_private(keys[0].clone(), 0).await.unwrap()), [99], "expire 0 stored nothing");
    assert!(store.save_privates(Vec::new(), "{}".into(), 1, 60).await.unwrap().is_empty());

    // Refused input, typed.
    assert_eq!(store.save_private(k("bad"), "not json".into(), 1, 60).await, Err(StoreError::BadMessage));
    assert_eq!(store.save_private(k("bad"), "{} {}".into(), 1, 60).await, Err(StoreError::BadMessage));
    assert_eq!(store.save_private(k("bad"), "{}".into(), -1, 60).await, Err(StoreError::BadMid));
    assert_eq!(store.save_private(String::new(), "{}".into(), 1, 60).await, Err(StoreError::BadKey));
    assert_eq!(store.save_private("k".repeat(2000), "{}".into(), 1, 60).await, Err(StoreError::BadKey));
    assert_eq!(
        store.save_private(k("bad"), "nope".into(), 1, 0).await,
        Err(StoreError::BadMessage),
        "even online-only"
    );
    assert_eq!(store.save_privates(vec![k("bad")], "nope".into(), 1, 60).await, Err(StoreError::BadMessage));
    assert_eq!(store.save_privates(vec![k("bad")], "{}".into(), -5, 60).await, Err(StoreError::BadMid));
    assert_eq!(store.get_private(k("bad"), -1).await, Err(StoreError::BadMid));
    assert_eq!(store.get_private(String::new(), 0).await, Err(StoreError::BadKey));
    assert_eq!(store.del_private(String::new()).await, Err(StoreError::BadKey));
    assert!(store.get_private(k("bad"), 0).await.unwrap().is_empty(), "nothing refused was stored");

    // Tokens: add, check, slide, expire, refresh, revoke.
    let key = k("tokens");
    assert!(!store.check_token(key.clone(), "t1".into()).await.unwrap(), "unknown key");
    store.add_token(key.clone(), "t1".into(), 100).await.unwrap();
    store.add_token(key.clone(), "t2".into(), 10).await.unwrap();
    assert!(store.check_token(key.clone(), "t1".into()).await.unwrap());
    assert!(!store.check_token(key.clone(), "t3".into()).await.unwrap(), "unknown token");
    assert!(!store.check_token(k("other"), "t1".into()).await.unwrap(), "tokens are per key");
    clock.advance(8);
    assert!(store.check_token(key.clone(), "t2".into()).await.unwrap(), "valid, and slides to now + 10");
    clock.advance(8);
    assert!(store.check_token(key.clone(), "t2".into()).await.unwrap(), "alive only because it slid");
    clock.advance(11);
    assert!(!store.check_token(key.clone(), "t2".into()).await.unwrap(), "expired");
    assert!(!store.check_token(key.clone(), "t2".into()).await.unwrap(), "and stays so");
    store.add_token(key.clone(), "t2".into(), 10).await.unwrap();
    assert!(store.check_token(key.clone(), "t2".into()).await.unwrap(), "added again");
    store.add_token(key.clone(), "t1".into(), 0).await.unwrap();
    assert!(!store.check_token(key.clone(), "t1".into()).await.unwrap(), "lifetime 0 revokes");
    assert_eq!(store.add_token(key.clone(), String::new(), 10).await, Err(StoreError::BadToken));
    assert_eq!(store.check_token(key.clone(), String::new()).await, Err(StoreError::BadToken));
    assert_eq!(store.add_token(String::new(), "t".into(), 10).await, Err(StoreError::BadKey));
    store.del_private(key.clone()).await.unwrap();
    assert!(store.check_token(key.clone(), "t2".into()).await.unwrap(), "deleting messages keeps tokens");

    let health = store.ping().await.unwrap();
    assert!(health.healthy(), "{health:?}");
}

#[tokio::test]
async fn memory_store_behaves() {
    let clock = Clock::system();
    let store = Arc::new(metered(MemoryStore::with_clock(STORE, clock.clone())));
    suite(store, clock, &testkit::unique_name("mem")).await;
}

#[tokio::test]
async fn redis_store_behaves() {
    let Some((store, _, clock, _)) = common::shared_store(STORE) else { return };
    let store: SharedMessages = Arc::new(metered(store));
    suite(store, clock, &testkit::unique_name("redis")).await;
}

#[tokio::test]
async fn redis_store_spreads_keys_over_both_shards() {
    let Some((store, config, _, addrs)) = common::shared_store(STORE) else { return };
    let keys: Vec<String> = (0..40).map(|i| format!("spread{i}")).collect();
    assert!(store.save_privates(keys.clone(), "1".into(), 1, 60).await.unwrap().is_empty());
    for (name, addr) in [("node1", &addrs[0]), ("node2", &addrs[1])] {
        let mut conn = common::raw(addr).await;
        let mine: Vec<&String> = keys.iter().filter(|k| store.shard_name(k) == name).collect();
        assert!(!mine.is_empty() && mine.len() < keys.len(), "40 keys use both shards");
        for k in &keys {
            let n: usize =
                redis::cmd("ZCARD").arg(format!("{}{k}", config.key_prefix)).query_async(&mut conn).await.unwrap();
            assert_eq!(n == 1, store.shard_name(k) == name, "{k} on {name}");
        }
    }
}
