//! Helpers shared by the message crate's integration tests: Redis stores over the shared test
//! servers under a unique key prefix, and raw Redis connections to look at what was stored.

#![allow(dead_code)]

use message::clock::Clock;
use message::config::{RedisConfig, RedisSource};
use message::store::RedisStore;
use redis::aio::MultiplexedConnection;
use std::time::Duration;

/// A Redis config with one source per (name, address), a fresh key prefix and `store` per key.
pub fn redis_config(sources: &[(&str, u32, &str)], store: usize) -> RedisConfig {
    RedisConfig {
        store,
        key_prefix: format!("{}:", testkit::unique_name("msgtest")),
        timeout: Duration::from_secs(2),
        source: sources
            .iter()
            .map(|(name, weight, addr)| RedisSource {
                name: name.to_string(),
                weight: *weight,
                addr: format!("redis://{addr}"),
                password: String::new(),
                ..RedisSource::default()
            })
            .collect(),
        ..RedisConfig::default()
    }
}

/// A Redis store over the two shared servers (`node1` → first, `node2` → second).
pub fn shared_store(store: usize) -> Option<(RedisStore, RedisConfig, Clock, Vec<String>)> {
    let addrs = testkit::redis_addrs()?;
    let config = redis_config(&[("node1", 1, &addrs[0]), ("node2", 1, &addrs[1])], store);
    let clock = Clock::system();
    let s = RedisStore::with_clock(&config, clock.clone()).expect("store");
    Some((s, config, clock, addrs))
}

/// A raw connection to look at or write what a store would.
pub async fn raw(addr: &str) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{addr}")).expect("client");
    client.get_multiplexed_async_connection().await.expect("raw redis connection")
}
