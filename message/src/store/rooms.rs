//! Room membership kept in this process, for the memory store: one set of rooms per key, living
//! [`ROOMS_LIFE`] seconds after its last join, at most [`MAX_ROOMS_PER_KEY`] rooms a key
//! (docs/decisions.md#d51-rooms-are-names-membership-lives-in-the-store). The Redis store keeps the
//! same sets as one Redis set per key (docs/storage.md#redis-layout).

use super::{MAX_ROOMS_PER_KEY, ROOMS_LIFE, check_key, check_room};
use crate::clock::Clock;
use cluster::rpc::StoreError;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// Every key's rooms, sharded by key.
pub(crate) struct MemoryRooms {
    shards: Vec<Mutex<HashMap<String, Rooms>>>,
    clock: Clock,
}

struct Rooms {
    names: BTreeSet<String>,
    /// Unix seconds after which the set is gone.
    expire: i64,
}

impl MemoryRooms {
    /// No memberships; times come from `clock`.
    pub(crate) fn new(clock: Clock) -> MemoryRooms {
        MemoryRooms { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), clock }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Rooms>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `room` to each key; returns the bad keys and those already in too many rooms.
    pub(crate) fn join(&self, keys: &[String], room: &str) -> Result<Vec<String>, StoreError> {
        check_room(room)?;
        let now = self.clock.now();
        let mut failed = Vec::new();
        for key in keys {
            if check_key(key).is_err() {
                failed.push(key.clone());
                continue;
            }
            let mut shard = self.shard(key);
            let rooms = shard.entry(key.clone()).or_insert(Rooms { names: BTreeSet::new(), expire: now });
            if rooms.expire < now {
                rooms.names.clear();
            }
            if rooms.names.len() >= MAX_ROOMS_PER_KEY && !rooms.names.contains(room) {
                failed.push(key.clone());
                if rooms.names.is_empty() {
                    shard.remove(key);
                }
                continue;
            }
            rooms.names.insert(room.to_string());
            rooms.expire = now + ROOMS_LIFE;
        }
        Ok(failed)
    }

    /// Removes `room` from each key; returns the bad keys.
    pub(crate) fn leave(&self, keys: &[String], room: &str) -> Result<Vec<String>, StoreError> {
        check_room(room)?;
        let mut failed = Vec::new();
        for key in keys {
            if check_key(key).is_err() {
                failed.push(key.clone());
                continue;
            }
            let mut shard = self.shard(key);
            if let Some(rooms) = shard.get_mut(key) {
                rooms.names.remove(room);
                if rooms.names.is_empty() {
                    shard.remove(key);
                }
            }
        }
        Ok(failed)
    }

    /// The rooms of `key`, sorted; an expired set is dropped.
    pub(crate) fn get(&self, key: &str) -> Result<Vec<String>, StoreError> {
        check_key(key)?;
        let now = self.clock.now();
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(rooms) if rooms.expire >= now => Ok(rooms.names.iter().cloned().collect()),
            Some(_) => {
                shard.remove(key);
                Ok(Vec::new())
            }
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_is_per_key_capped_and_expires() {
        let clock = Clock::system();
        let rooms = MemoryRooms::new(clock.clone());
        let keys = vec!["a".to_string(), "b".to_string(), String::new()];
        assert_eq!(rooms.join(&keys, "r1").unwrap(), vec![String::new()], "the empty key fails alone");
        rooms.join(&keys[..1], "r0").unwrap();
        assert_eq!(rooms.get("a").unwrap(), ["r0", "r1"]);
        assert_eq!(rooms.join(&keys, ""), Err(StoreError::BadKey), "a bad room fails the call");
        rooms.leave(&keys[..1], "r1").unwrap();
        assert_eq!(rooms.get("a").unwrap(), ["r0"]);
        for i in 0..MAX_ROOMS_PER_KEY {
            rooms.join(&keys[1..2], &format!("many{i}")).unwrap();
        }
        assert_eq!(rooms.join(&keys[1..2], "one-too-many").unwrap(), ["b"]);
        assert_eq!(rooms.join(&keys[1..2], "r1").unwrap(), Vec::<String>::new(), "already in: fine");
        clock.advance(ROOMS_LIFE + 1);
        assert_eq!(rooms.get("a").unwrap(), Vec::<String>::new(), "expired");
    }
}
