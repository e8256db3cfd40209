//! The key → channel map, split into buckets (shards) so that pushes and (un)subscribes of
//! different keys rarely meet on a lock. Every method holds one bucket's lock briefly and never
//! across an await; closing connections happens after the lock is released.

use crate::channel::Channel;
use crate::conn::{Conn, Queued};
use crate::frame::Frames;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One bucket: a shard of the key → channel map.
type Bucket = Mutex<HashMap<Box<str>, Channel>>;

/// The sharded map of channels.
#[derive(Debug)]
pub struct Buckets {
    shards: Box<[Bucket]>,
    hasher: RandomState,
    channels: AtomicUsize,
}

/// What one delivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Connections the message was queued for.
    pub delivered: usize,
    /// Connections closed because their outbox was full.
    pub dropped: usize,
}

impl Buckets {
    /// `n` empty buckets (at least one).
    pub fn new(n: usize) -> Buckets {
        Buckets {
            shards: (0..n.max(1)).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            channels: AtomicUsize::new(0),
        }
    }

    fn with<R>(&self, key: &str, f: impl FnOnce(&mut HashMap<Box<str>, Channel>) -> R) -> Option<R> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        let mut shard = self.shards[i].lock().ok()?;
        let before = shard.len();
        let r = f(&mut shard);
        let after = shard.len();
        drop(shard);
        if after > before {
            self.channels.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.channels.fetch_sub(before - after, Ordering::Relaxed);
        }
        Some(r)
    }

    /// Adds `conn` to the key's channel (creating it) unless it already has `max` connections.
    pub fn join(&self, key: &str, conn: &Arc<Conn>, max: usize) -> bool {
        self.with(key, |map| match map.get_mut(key) {
            Some(ch) => ch.join(conn, max),
            None => {
                let mut ch = Channel::default();
                let ok = ch.join(conn, max);
                map.insert(key.into(), ch);
                ok
            }
        })
        .unwrap_or(false)
    }

    /// Removes `conn` from the key's channel, and the channel once it holds nothing.
    pub fn leave(&self, key: &str, conn: &Arc<Conn>) {
        self.with(key, |map| {
            if let Some(ch) = map.get_mut(key) {
                ch.leave(conn);
                if ch.is_empty() {
                    map.remove(key);
                }
            }
        });
    }

    /// Queues the message for every connection of the key; full outboxes close their connection.
    pub fn deliver(&self, key: &str, frames: &Frames) -> Delivery {
        self.with(key, |map| {
            let mut d = Delivery::default();
            if let Some(ch) = map.get(key) {
                for conn in &ch.conns {
                    match conn.deliver(frames.mid(), frames.get(conn.proto, conn.new_format)) {
                        Queued::Yes => d.delivered += 1,
                        Queued::Full => d.dropped += 1,
                        Queued::Closed => {}
                    }
                }
            }
            d
        })
        .unwrap_or_default()
    }

    /// Removes the key's channel; returns its connections for the caller to close.
    pub fn remove(&self, key: &str) -> Vec<Arc<Conn>> {
        self.with(key, |map| map.remove(key).map(|ch| ch.conns).unwrap_or_default()).unwrap_or_default()
    }

    /// Removes every channel whose key satisfies `gone`; returns their connections.
    pub fn remove_where(&self, mut gone: impl FnMut(&str) -> bool) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let Ok(mut map) = shard.lock() else { continue };
            let before = map.len();
            map.retain(|key, ch| {
                if gone(key) {
                    out.append(&mut ch.conns);
                    false
                } else {
                    true
                }
            });
            self.channels.fetch_sub(before - map.len(), Ordering::Relaxed);
        }
        out
    }

    /// True when `token` was recently confirmed for the key.
    pub fn token_cached(&self, key: &str, token: &str, now: Instant) -> bool {
        self.with(key, |map| map.get(key).is_some_and(|ch| ch.token_cached(token, now))).unwrap_or(false)
    }

    /// Remembers that the store confirmed `token` for the key, until `until`.
    pub fn cache_token(&self, key: &str, token: &str, until: Instant) {
        self.with(key, |map| map.entry(key.into()).or_default().cache_token(token, until));
    }

    /// Forgets expired tokens and removes channels left empty.
    pub fn sweep(&self, now: Instant) {
        for shard in self.shards.iter() {
            let Ok(mut map) = shard.lock() else { continue };
            let before = map.len();
            map.retain(|_, ch| {
                ch.expire_tokens(now);
                !ch.is_empty()
            });
            self.channels.fetch_sub(before - map.len(), Ordering::Relaxed);
        }
    }

    /// Channels held right now.
    pub fn channels(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::Proto;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

    fn conn(limit: usize) -> Arc<Conn> {
        let limit = crate::conn::Limit { frames: limit, bytes: 0 };
        Arc::new(Conn::new(Proto::Tcp, true, limit, Utf8Bytes::from_static("+h\r\n")))
    }

    #[test]
    fn channels_exist_only_while_used() {
        let b = Buckets::new(4);
        let (c1, c2) = (conn(8), conn(8));
        assert!(b.join("k", &c1, 2));
        assert!(b.join("k", &c2, 2));
        assert!(!b.join("k", &conn(8), 2), "max_subscriber");
        assert!(b.join("j", &conn(8), 2));
        assert_eq!(b.channels(), 2);
        let frames = Frames::new("{}".into(), "{}".into(), 1);
        assert_eq!(b.deliver("k", &frames).delivered, 2);
        assert_eq!(b.deliver("nobody", &frames), Delivery::default());
        assert_eq!(b.channels(), 2, "pushing to an unknown key creates nothing");
        b.leave("k", &c1);
        b.leave("k", &c2);
        assert_eq!(b.channels(), 1);
        assert_eq!(b.remove_where(|k| k == "j").len(), 1);
        assert_eq!(b.channels(), 0);
    }

    #[test]
    fn full_outbox_is_dropped_and_others_still_receive() {
        let b = Buckets::new(1);
        let (slow, fast) = (conn(2), conn(100));
        b.join("k", &slow, 8);
        b.join("k", &fast, 8);
        let frames = Frames::new("1".into(), "1".into(), 1);
        assert_eq!(b.deliver("k", &frames), Delivery { delivered: 2, dropped: 0 });
        assert_eq!(b.deliver("k", &frames), Delivery { delivered: 1, dropped: 1 });
        assert!(slow.is_closed());
        assert_eq!(b.deliver("k", &frames), Delivery { delivered: 1, dropped: 0 });
    }

    #[test]
    fn token_only_channels_are_swept() {
        let b = Buckets::new(2);
        let now = Instant::now();
        b.cache_token("k", "t", now + Duration::from_secs(1));
        assert!(b.token_cached("k", "t", now));
        assert_eq!(b.channels(), 1);
        b.sweep(now + Duration::from_secs(2));
        assert_eq!(b.channels(), 0);
    }
}
