//! The key → channel map, split into buckets (shards) so that pushes and (un)subscribes of
//! different keys rarely meet on a lock. Every method holds one bucket's lock briefly and never
//! across an await; closing connections happens after the lock is released. Beside it sits the
//! room index, updated under the bucket's lock whenever a channel's connections or rooms change
//! (always bucket first, then room shard, so the two never deadlock).

use crate::channel::Channel;
use crate::conn::{Conn, Queued};
use crate::frame::Frames;
use crate::rooms::RoomIndex;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A subscriber reading its key's rooms from the store (see [`Buckets::begin`]); it joins with
/// [`Loading::join`], and dropping it unjoined gives up its place.
pub struct Loading<'a> {
    buckets: &'a Buckets,
    key: String,
    /// The channel knew its rooms when loading began: the store need not be asked for them.
    pub known: bool,
    done: bool,
}

impl Loading<'_> {
    /// Adds `conn` as [`Buckets::join`] does, applying the room changes that arrived while the
    /// store was read.
    pub fn join(mut self, conn: &Arc<Conn>, max: usize, loaded: Option<Vec<String>>) -> bool {
        self.done = true;
        self.buckets.join_with(&self.key, conn, max, loaded, true)
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.buckets.abandon(&self.key);
        }
    }
}

/// One bucket: a shard of the key → channel map.
type Bucket = Mutex<HashMap<Box<str>, Channel>>;

/// The sharded map of channels.
#[derive(Debug)]
pub struct Buckets {
    shards: Box<[Bucket]>,
    hasher: RandomState,
    channels: AtomicUsize,
    /// Room → the live connections of the keys in it.
    pub rooms: RoomIndex,
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
            rooms: RoomIndex::default(),
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

    /// Adds `conn` to the key's channel (creating it) unless it already has `max` connections,
    /// and to the channel's rooms. `loaded` are the key's rooms as the store just gave them, used
    /// when the channel does not know its rooms yet.
    #[cfg(test)]
    pub fn join(&self, key: &str, conn: &Arc<Conn>, max: usize, loaded: Option<Vec<String>>) -> bool {
        self.join_with(key, conn, max, loaded, false)
    }

    /// Marks a subscriber of `key` as about to read the key's rooms from the store: from now until
    /// it joins (or gives up), the channel stays and keeps the room changes that arrive, so the
    /// join can apply those the store's answer missed.
    pub fn begin(&self, key: &str) -> Loading<'_> {
        let known = self
            .with(key, |map| {
                let ch = map.entry(key.into()).or_default();
                ch.loading += 1;
                ch.rooms.is_some()
            })
            .unwrap_or(false);
        Loading { buckets: self, key: key.to_string(), known, done: false }
    }

    fn join_with(&self, key: &str, conn: &Arc<Conn>, max: usize, loaded: Option<Vec<String>>, loading: bool) -> bool {
        self.with(key, |map| {
            let ch = map.entry(key.into()).or_default();
            if loading {
                ch.loading = ch.loading.saturating_sub(1);
            }
            let joined = ch.join(conn, max);
            if joined {
                match (&ch.rooms, loaded) {
                    (Some(rooms), _) => rooms.iter().for_each(|r| self.rooms.add(r, key, conn)),
                    (None, Some(loaded)) => {
                        let rooms = ch.settle(loaded);
                        // Connections that joined while the store could not say get the rooms too.
                        for room in &rooms {
                            ch.conns.iter().for_each(|c| self.rooms.add(room, key, c));
                        }
                        ch.rooms = Some(rooms);
                    }
                    (None, None) => {}
                }
                conn.own_rooms().iter().for_each(|r| self.rooms.add(r, key, conn));
            }
            if ch.loading == 0 {
                ch.pending.clear();
            }
            if ch.is_empty() {
                map.remove(key);
            }
            joined
        })
        .unwrap_or(false)
    }

    /// A subscriber that began loading and will not join after all.
    fn abandon(&self, key: &str) {
        self.with(key, |map| {
            if let Some(ch) = map.get_mut(key) {
                ch.loading = ch.loading.saturating_sub(1);
                if ch.loading == 0 {
                    ch.pending.clear();
                }
                if ch.is_empty() {
                    map.remove(key);
                }
            }
        });
    }

    /// True when the key's channel knows its rooms, so a subscriber need not load them.
    #[cfg(test)]
    pub fn rooms_known(&self, key: &str) -> bool {
        self.with(key, |map| map.get(key).is_some_and(|ch| ch.rooms.is_some())).unwrap_or(false)
    }

    /// Adds `room` to the key's channel and its connections, if the key has a channel here. A
    /// channel that does not know its rooms yet keeps the change for the subscribers reading them.
    pub fn join_room(&self, key: &str, room: &str) {
        self.with(key, |map| {
            if let Some(ch) = map.get_mut(key) {
                match ch.rooms.as_mut() {
                    Some(rooms) if !rooms.iter().any(|r| &**r == room) => rooms.push(room.into()),
                    Some(_) => {}
                    None => ch.note_pending(room, true),
                }
                ch.conns.iter().for_each(|c| self.rooms.add(room, key, c));
            }
        });
    }

    /// Takes `room` away from the key's channel and its connections.
    pub fn leave_room(&self, key: &str, room: &str) {
        self.with(key, |map| {
            if let Some(ch) = map.get_mut(key) {
                match ch.rooms.as_mut() {
                    Some(rooms) => rooms.retain(|r| &**r != room),
                    None => ch.note_pending(room, false),
                }
                // A connection that joined the room for itself stays in it.
                ch.conns.iter().filter(|c| !c.owns_room(room)).for_each(|c| self.rooms.remove(room, key, c));
            }
        });
    }

    /// Removes `conn` from the key's channel and its rooms, and the channel once it holds nothing.
    pub fn leave(&self, key: &str, conn: &Arc<Conn>) {
        // Its own rooms whether or not its channel is still there (`remove` may have taken it).
        conn.own_rooms().iter().for_each(|r| self.rooms.remove(r, key, conn));
        self.with(key, |map| {
            if let Some(ch) = map.get_mut(key) {
                ch.leave(conn);
                ch.rooms.iter().flatten().for_each(|r| self.rooms.remove(r, key, conn));
                if ch.is_empty() {
                    map.remove(key);
                }
            }
        });
    }

    /// Takes a removed channel's connections out of its rooms.
    fn unindex(&self, key: &str, ch: &Channel) {
        for room in ch.rooms.iter().flatten() {
            ch.conns.iter().for_each(|c| self.rooms.remove(room, key, c));
        }
        for c in &ch.conns {
            c.own_rooms().iter().for_each(|r| self.rooms.remove(r, key, c));
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// The connections of every channel in bucket `i`, for a broadcast.
    pub fn conns_of(&self, i: usize) -> Vec<Arc<Conn>> {
        let Some(Ok(map)) = self.shards.get(i).map(|s| s.lock()) else { return Vec::new() };
        map.values().flat_map(|ch| ch.conns.iter().cloned()).collect()
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
        self.with(key, |map| {
            map.remove(key)
                .map(|ch| {
                    self.unindex(key, &ch);
                    ch.conns
                })
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }

    /// Removes every channel whose key satisfies `gone`; returns their connections.
    pub fn remove_where(&self, mut gone: impl FnMut(&str) -> bool) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let Ok(mut map) = shard.lock() else { continue };
            let before = map.len();
            map.retain(|key, ch| {
                if gone(key) {
                    self.unindex(key, ch);
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
        assert!(b.join("k", &c1, 2, None));
        assert!(b.join("k", &c2, 2, None));
        assert!(!b.join("k", &conn(8), 2, None), "max_subscriber");
        assert!(b.join("j", &conn(8), 2, None));
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
        b.join("k", &slow, 8, None);
        b.join("k", &fast, 8, None);
        let frames = Frames::new("1".into(), "1".into(), 1);
        assert_eq!(b.deliver("k", &frames), Delivery { delivered: 2, dropped: 0 });
        assert_eq!(b.deliver("k", &frames), Delivery { delivered: 1, dropped: 1 });
        assert!(slow.is_closed());
        assert_eq!(b.deliver("k", &frames), Delivery { delivered: 1, dropped: 0 });
    }

    #[test]
    fn rooms_follow_channels_and_their_connections() {
        let b = Buckets::new(2);
        let (c1, c2) = (conn(8), conn(8));
        assert!(!b.rooms_known("k"));
        b.join("k", &c1, 8, Some(vec!["r".into()]));
        assert!(b.rooms_known("k"));
        b.join("k", &c2, 8, None);
        assert_eq!(b.rooms.members("r").len(), 2, "the second connection takes the channel's rooms");
        b.join_room("k", "s");
        b.join_room("nobody", "s");
        assert_eq!(b.rooms.members("s").len(), 2);
        b.leave_room("k", "r");
        assert!(b.rooms.members("r").is_empty());
        b.leave("k", &c1);
        assert_eq!(b.rooms.members("s").len(), 1);
        assert_eq!(b.remove("k").len(), 1);
        assert_eq!(b.rooms.rooms(), 0, "a removed channel leaves its rooms");
    }

    #[test]
    fn own_rooms_belong_to_the_connection() {
        let b = Buckets::new(2);
        let limit = crate::conn::Limit { frames: 8, bytes: 0 };
        let own = Conn::new(Proto::Tcp, true, limit, Utf8Bytes::from_static("+h\r\n")).with_rooms(&["r".into()]);
        let (own, plain) = (Arc::new(own), conn(8));
        b.join("k", &own, 8, Some(Vec::new()));
        b.join("k", &plain, 8, None);
        assert_eq!(b.rooms.count("r"), (1, 1), "only the connection that asked");
        b.join_room("k", "r");
        assert_eq!(b.rooms.count("r"), (1, 2));
        b.leave_room("k", "r");
        assert_eq!(b.rooms.members("r").len(), 1, "the key's leave keeps the connection's own join");
        b.leave("k", &own);
        assert_eq!(b.rooms.rooms(), 0);
        let again =
            Arc::new(Conn::new(Proto::Tcp, true, limit, Utf8Bytes::from_static("+h\r\n")).with_rooms(&["s".into()]));
        b.join("k", &again, 8, None);
        assert_eq!(b.remove("k").len(), 2);
        assert_eq!(b.rooms.rooms(), 0, "a removed channel takes its connections' own rooms too");
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
