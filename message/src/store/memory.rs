//! The in-memory store: the Redis store's semantics in one process, for standalone mode and tests.
//! Keys are spread over mutex-guarded shards so callers rarely contend; no lock is held across an
//! await (every operation is synchronous inside). Expired entries are dropped when read and by a
//! sweep of a shard at most once a minute, piggybacked on writes, so unread keys do not pile up.

use super::rooms::MemoryRooms;
use super::{check_key, check_mid, check_token, prepare};
use crate::clock::Clock;
use crate::token::{TokenRecord, to_evict};
use cluster::rpc::{BoxFuture, MessageApi, Mid, Save, StoreError, StoreHealth, StoredMessage, Subscriber};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;
/// Seconds between sweeps of one shard.
const SWEEP_EVERY: i64 = 60;

/// Offline messages and tokens kept in this process.
pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    store: usize,
    clock: Clock,
    rooms: MemoryRooms,
}

#[derive(Default)]
struct Shard {
    /// Per key, ordered like a Redis sorted set: by mid, then by content.
    messages: HashMap<String, BTreeSet<(Mid, String, i64)>>,
    tokens: HashMap<String, HashMap<String, TokenRecord>>,
    last_sweep: i64,
}

impl Shard {
    fn sweep(&mut self, now: i64) {
        if now - self.last_sweep < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.messages.retain(|_, set| {
            set.retain(|(_, _, expire)| *expire >= now);
            !set.is_empty()
        });
        self.tokens.retain(|_, tokens| {
            tokens.retain(|_, r| r.valid(now));
            !tokens.is_empty()
        });
    }

    fn save(&mut self, key: &str, entry: (Mid, String, i64), store: usize) {
        let set = self.messages.entry(key.to_string()).or_default();
        set.insert(entry);
        while set.len() > store {
            set.pop_first();
        }
    }
}

impl MemoryStore {
    /// A store keeping the newest `store` messages per key.
    pub fn new(store: usize) -> MemoryStore {
        MemoryStore::with_clock(store, Clock::system())
    }

    /// Like [`MemoryStore::new`] with a clock a test can move.
    pub fn with_clock(store: usize, clock: Clock) -> MemoryStore {
        let rooms = MemoryRooms::new(clock.clone());
        MemoryStore { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), store: store.max(1), clock, rooms }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        // A panic while holding the lock cannot leave a shard half-updated in a way that matters
        // more than losing the whole store, so keep serving.
        shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn save_private_now(&self, key: &str, msg: &str, mid: Mid, expire: u32) -> Result<(), StoreError> {
        check_key(key)?;
        let compacted = prepare(msg, mid)?;
        if expire == 0 {
            return Ok(());
        }
        let now = self.clock.now();
        let mut shard = self.shard(key);
        shard.sweep(now);
        shard.save(key, (mid, compacted, now + i64::from(expire)), self.store);
        Ok(())
    }

    fn save_privates_now(&self, keys: &[String], msg: &str, mid: Mid, expire: u32) -> Result<Vec<String>, StoreError> {
        let compacted = prepare(msg, mid)?;
        let now = self.clock.now();
        let mut failed = Vec::new();
        for key in keys {
            if check_key(key).is_err() {
                failed.push(key.clone());
            } else if expire > 0 {
                let mut shard = self.shard(key);
                shard.sweep(now);
                shard.save(key, (mid, compacted.clone(), now + i64::from(expire)), self.store);
            }
        }
        Ok(failed)
    }

    fn get_private_now(&self, key: &str, after: Mid) -> Result<Vec<StoredMessage>, StoreError> {
        check_key(key)?;
        check_mid(after)?;
        let now = self.clock.now();
        let mut shard = self.shard(key);
        let Some(set) = shard.messages.get_mut(key) else { return Ok(Vec::new()) };
        // The rule of `Member::expired`: a message lives through its last second.
        set.retain(|(_, _, expire)| *expire >= now);
        let out = set
            .iter()
            .filter(|(mid, _, _)| *mid > after)
            .map(|(mid, msg, _)| StoredMessage { msg: msg.clone(), mid: *mid, gid: 0 })
            .collect();
        if set.is_empty() {
            shard.messages.remove(key);
        }
        Ok(out)
    }

    fn del_private_now(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.shard(key).messages.remove(key);
        Ok(())
    }

    fn add_token_now(&self, key: &str, token: &str, life: u64) -> Result<(), StoreError> {
        check_key(key)?;
        check_token(token)?;
        let now = self.clock.now();
        let mut shard = self.shard(key);
        shard.sweep(now);
        if life == 0 {
            // A zero lifetime revokes the token.
            if let Some(tokens) = shard.tokens.get_mut(key) {
                tokens.remove(token);
                if tokens.is_empty() {
                    shard.tokens.remove(key);
                }
            }
            return Ok(());
        }
        let tokens = shard.tokens.entry(key.to_string()).or_default();
        let records: Vec<(String, TokenRecord)> = tokens.iter().map(|(t, r)| (t.clone(), *r)).collect();
        for t in to_evict(&records, token, now) {
            tokens.remove(t);
        }
        tokens.insert(token.to_string(), TokenRecord::new(now, life));
        Ok(())
    }

    fn check_token_now(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        check_token(token)?;
        let now = self.clock.now();
        let mut shard = self.shard(key);
        let Some(tokens) = shard.tokens.get_mut(key) else { return Ok(false) };
        let valid = match tokens.get_mut(token) {
            Some(r) if r.valid(now) => {
                *r = r.slid(now);
                true
            }
            Some(_) => {
                tokens.remove(token);
                false
            }
            None => false,
        };
        if tokens.is_empty() {
            shard.tokens.remove(key);
        }
        Ok(valid)
    }
}

impl MessageApi for MemoryStore {
    fn save_private(&self, key: String, msg: String, mid: Mid, expire: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.save_private_now(&key, &msg, mid, expire)))
    }

    fn save_privates(
        &self,
        keys: Vec<String>,
        msg: String,
        mid: Mid,
        expire: u32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(std::future::ready(self.save_privates_now(&keys, &msg, mid, expire)))
    }

    fn save_batch(&self, saves: Vec<Save>) -> BoxFuture<'_, Result<Vec<Result<(), StoreError>>, StoreError>> {
        let answers = saves.iter().map(|s| self.save_private_now(&s.key, &s.msg, s.mid, s.expire)).collect();
        Box::pin(std::future::ready(Ok(answers)))
    }

    fn get_private(&self, key: String, after: Mid) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(std::future::ready(self.get_private_now(&key, after)))
    }

    fn del_private(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.del_private_now(&key)))
    }

    fn add_token(&self, key: String, token: String, expire_secs: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.add_token_now(&key, &token, expire_secs)))
    }

    fn check_token(&self, key: String, token: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(std::future::ready(self.check_token_now(&key, &token)))
    }

    fn ping(&self) -> BoxFuture<'_, Result<StoreHealth, StoreError>> {
        let health = StoreHealth { backend: "memory".into(), shards: vec![("memory".into(), true)] };
        Box::pin(std::future::ready(Ok(health)))
    }

    fn join_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(std::future::ready(self.rooms.join(&keys, &room)))
    }

    fn leave_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(std::future::ready(self.rooms.leave(&keys, &room)))
    }

    fn get_rooms(&self, key: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(std::future::ready(self.rooms.get(&key)))
    }

    fn subscriber(&self, key: String, token: Option<String>) -> BoxFuture<'_, Result<Subscriber, StoreError>> {
        let answer = (|| {
            let token_valid = match token {
                Some(token) => self.check_token_now(&key, &token)?,
                None => false,
            };
            Ok(Subscriber { token_valid, rooms: self.rooms.get(&key)? })
        })();
        Box::pin(std::future::ready(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_drop_unread_expired_keys() {
        let clock = Clock::system();
        let s = MemoryStore::with_clock(20, clock.clone());
        s.save_private_now("a", "1", 1, 5).unwrap();
        s.add_token_now("a", "t", 5).unwrap();
        clock.advance(SWEEP_EVERY + 10);
        // A write to another key of the same shard sweeps it; try keys until one shares it.
        for i in 0..200 {
            s.save_private_now(&format!("b{i}"), "1", 1, 1000).unwrap();
        }
        let total: usize =
            s.shards.iter().map(|m| m.lock().unwrap().messages.keys().filter(|k| *k == "a").count()).sum();
        assert_eq!(total, 0);
        let tokens: usize = s.shards.iter().map(|m| m.lock().unwrap().tokens.len()).sum();
        assert_eq!(tokens, 0);
    }
}
