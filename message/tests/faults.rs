//! Faults against real, private Redis servers: a stopped server fails calls fast with a typed error
//! and the store recovers by itself when it returns; a down shard fails exactly its own keys; a
//! server that accepts but never answers is cut off at the deadline instead of hanging the call;
//! an outage is logged once when it starts and once when it ends, never per call.

mod common;

use cluster::rpc::{MessageApi, StoreError};
use message::clock::Clock;
use message::store::RedisStore;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::RedisServer;
use tracing::instrument::WithSubscriber;

/// Generous bound for "fails fast": the 2 s deadline plus scheduling slack on a busy machine.
const FAIL_FAST: Duration = Duration::from_secs(5);

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_used_again_without_restarting_the_store() {
    let Some(mut server) = RedisServer::start() else { return };
    let config = common::redis_config(&[("node1", 1, &server.addr())], 20);
    let store = RedisStore::with_clock(&config, Clock::system()).unwrap();
    store.save_private("k".into(), "1".into(), 1, 60).await.unwrap();

    block(|| server.stop());
    for _ in 0..3 {
        let start = Instant::now();
        assert_eq!(store.save_private("k".into(), "2".into(), 2, 60).await, Err(StoreError::Backend));
        assert_eq!(store.get_private("k".into(), 0).await, Err(StoreError::Backend));
        assert!(start.elapsed() < FAIL_FAST, "took {:?}", start.elapsed());
    }
    let health = store.ping().await.unwrap();
    assert_eq!(health.shards, vec![("node1".to_string(), false)]);

    block(|| server.start_again());
    // The restarted server is empty (no persistence). The very next call works: the store
    // notices the dead connection and resends on a fresh one.
    store.save_private("k".into(), "3".into(), 3, 60).await.expect("the first call after the restart");
    let got = store.get_private("k".into(), 0).await.unwrap();
    assert_eq!(got.iter().map(|m| m.mid).collect::<Vec<_>>(), [3]);
    assert!(store.ping().await.unwrap().healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_shard_fails_exactly_its_keys() {
    let (Some(a), Some(mut b)) = (RedisServer::start(), RedisServer::start()) else { return };
    let config = common::redis_config(&[("node1", 1, &a.addr()), ("node2", 1, &b.addr())], 20);
    let store = RedisStore::with_clock(&config, Clock::system()).unwrap();
    let keys: Vec<String> = (0..60).map(|i| format!("key{i}")).collect();
    assert!(store.save_privates(keys.clone(), "1".into(), 1, 60).await.unwrap().is_empty());

    block(|| b.stop());
    let on_b: Vec<String> = keys.iter().filter(|k| store.shard_name(k) == "node2").cloned().collect();
    assert!(!on_b.is_empty() && on_b.len() < keys.len());
    let start = Instant::now();
    let failed = store.save_privates(keys.clone(), "2".into(), 2, 60).await.unwrap();
    assert!(start.elapsed() < FAIL_FAST);
    assert_eq!(failed, on_b, "exactly the down shard's keys, in the caller's order");
    for k in &keys {
        let got = store.get_private(k.clone(), 0).await;
        if store.shard_name(k) == "node2" {
            assert_eq!(got, Err(StoreError::Backend));
        } else {
            assert_eq!(got.unwrap().len(), 2, "{k}");
        }
    }
    let health = store.ping().await.unwrap();
    assert_eq!(health.shards, vec![("node1".to_string(), true), ("node2".to_string(), false)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_cut_off_at_the_deadline() {
    // Accepts connections and never answers, like a hung or black-holed Redis.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(8) {
            held.push(conn);
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let mut config = common::redis_config(&[("node1", 1, &addr)], 20);
    config.timeout = Duration::from_millis(300);
    let store = RedisStore::with_clock(&config, Clock::system()).unwrap();
    for _ in 0..2 {
        let start = Instant::now();
        assert_eq!(store.get_private("k".into(), 0).await, Err(StoreError::Backend));
        assert_eq!(store.save_privates(vec!["k".into()], "1".into(), 1, 60).await, Ok(vec!["k".to_string()]));
        assert!(start.elapsed() < FAIL_FAST, "took {:?}", start.elapsed());
    }
    drop(holder);
}

/// Log lines written by a test's own subscriber, to count what an operator would see.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let Some(mut server) = RedisServer::start() else { return };
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    async {
        let config = common::redis_config(&[("node1", 1, &server.addr())], 20);
        let store = RedisStore::with_clock(&config, Clock::system()).unwrap();
        for mid in 1..=3 {
            store.save_private("k".into(), "1".into(), mid, 60).await.unwrap();
            assert!(store.ping().await.unwrap().healthy());
        }
        block(|| server.stop());
        for mid in 4..=8 {
            assert_eq!(store.save_private("k".into(), "1".into(), mid, 60).await, Err(StoreError::Backend));
            assert_eq!(store.save_privates(vec!["k".into()], "1".into(), mid, 60).await, Ok(vec!["k".to_string()]));
            assert!(!store.ping().await.unwrap().healthy());
        }
        block(|| server.start_again());
        for mid in 9..=13 {
            store.save_private("k".into(), "1".into(), mid, 60).await.unwrap();
            assert!(store.ping().await.unwrap().healthy());
        }
    }
    .with_subscriber(subscriber)
    .await;
    let text = logs.text();
    assert_eq!(text.matches("redis shard unreachable").count(), 1, "one line when it went away:\n{text}");
    assert_eq!(text.matches("redis shard reachable again").count(), 1, "one line when it came back:\n{text}");
    assert!(text.contains("WARN") && text.contains("shard=node1"), "{text}");
}
