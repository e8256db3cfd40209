//! The offline message stores behind `MessageApi` (docs/decisions.md#d7-offline-store):
//! [`RedisStore`] over ring-sharded Redis servers in upstream's layout (plain or Sentinel-watched
//! shards) or over one Redis Cluster, and [`MemoryStore`] for
//! standalone mode and tests, with the same semantics. This file holds what both share: input
//! checks and the constructor that picks one from the config (always wrapped in metrics).

use crate::clock::Clock;
use crate::config::{MessageConfig, StorageKind};
use crate::error::MessageError;
use crate::metered::metered;
use cluster::gojson;
use cluster::rpc::{Mid, SharedMessages, StoreError};
use std::sync::Arc;

mod connection;
mod memory;
mod redis;
mod redis_cluster;
mod rooms;
mod sentinel;

pub use memory::MemoryStore;
pub use redis::RedisStore;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 1024;

/// The store a validated config asks for, counted in metrics. Must run inside a Tokio runtime
/// (Redis clients connect lazily in the background; nothing here waits for Redis).
pub(crate) fn open(config: &MessageConfig) -> Result<SharedMessages, MessageError> {
    Ok(match config.storage.kind {
        StorageKind::Memory => Arc::new(metered(MemoryStore::new(config.redis.store))),
        StorageKind::Redis => Arc::new(metered(RedisStore::new(&config.redis)?)),
        StorageKind::RedisCluster => Arc::new(metered(RedisStore::cluster(&config.redis, Clock::system())?)),
    })
}

/// Refuses empty and over-long keys.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN { Err(StoreError::BadKey) } else { Ok(()) }
}

/// Refuses empty and over-long tokens.
pub(crate) fn check_token(token: &str) -> Result<(), StoreError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN { Err(StoreError::BadToken) } else { Ok(()) }
}

/// Most rooms one key may be in: a join beyond it fails for that key, so a runaway publisher
/// cannot grow one key's set without bound.
pub const MAX_ROOMS_PER_KEY: usize = 256;

/// Seconds a key's room membership lives after its last join: membership outlives reconnects and
/// restarts, and keys nobody joins any more leave the store by themselves.
pub const ROOMS_LIFE: i64 = 30 * 24 * 3600;

/// Refuses a bad room name (as a bad key: the same rules, shorter).
pub(crate) fn check_room(room: &str) -> Result<(), StoreError> {
    if cluster::room::valid(room) { Ok(()) } else { Err(StoreError::BadKey) }
}

/// Refuses a negative mid.
pub(crate) fn check_mid(mid: Mid) -> Result<(), StoreError> {
    if mid < 0 { Err(StoreError::BadMid) } else { Ok(()) }
}

/// Checks a message to save and returns it compacted the way upstream's Go encoder stored it.
pub(crate) fn prepare(msg: &str, mid: Mid) -> Result<String, StoreError> {
    check_mid(mid)?;
    gojson::compact(msg).ok_or(StoreError::BadMessage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_checks() {
        assert_eq!(check_key(""), Err(StoreError::BadKey));
        assert_eq!(check_key(&"k".repeat(MAX_KEY_LEN + 1)), Err(StoreError::BadKey));
        assert_eq!(check_key("k"), Ok(()));
        assert_eq!(check_token(""), Err(StoreError::BadToken));
        assert_eq!(prepare("{\"a\": <1}", 1), Err(StoreError::BadMessage));
        assert_eq!(prepare("{\"a\": 1}", -1), Err(StoreError::BadMid));
        assert_eq!(prepare("{\"a\": \"<\"}", 0).as_deref(), Ok("{\"a\":\"\\u003c\"}"));
    }
}
