//! Rooms on the comet (docs/decisions.md#d53-the-owning-comet-indexes-live-connections-by-room):
//! the room → live connections index, a map beside the key → channel map and sharded the same way,
//! and the fan-out worker that delivers room and broadcast pushes. The worker takes pushes in
//! arrival order, so every member sees a room's messages in the order web sent them, and delivers
//! each in chunks that yield (and, for a broadcast with a `rate`, pause), never holding a lock
//! across more than one room or one bucket.

use crate::bucket::Delivery;
use crate::conn::{Conn, Queued};
use crate::frame::Frames;
use crate::state::Shared;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Connections handed their frame between two yields of the fan-out worker.
const CHUNK: usize = 1024;

/// Fan-outs waiting for the worker; a publisher beyond it waits (within its RPC deadline).
const QUEUE: usize = 256;

/// Index shards: as with buckets, pushes to different rooms rarely meet on a lock.
const SHARDS: usize = 64;

/// The members of one room: its connections by identity, for pushes, and its keys in order with
/// their connection counts, for presence queries that page through the room without a scan.
#[derive(Debug, Default)]
struct Members {
    conns: HashMap<usize, Arc<Conn>>,
    keys: BTreeMap<Box<str>, u32>,
}

/// One shard of the index: room name → members.
type Shard = Mutex<HashMap<Box<str>, Members>>;

/// Room name → its live connections on this comet.
#[derive(Debug)]
pub struct RoomIndex {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

fn id(conn: &Arc<Conn>) -> usize {
    Arc::as_ptr(conn) as usize
}

impl Default for RoomIndex {
    fn default() -> RoomIndex {
        RoomIndex { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), hasher: RandomState::new() }
    }
}

impl RoomIndex {
    fn with<R>(&self, room: &str, f: impl FnOnce(&mut HashMap<Box<str>, Members>) -> R) -> Option<R> {
        let i = (self.hasher.hash_one(room) as usize) % self.shards.len();
        let mut shard = self.shards[i].lock().ok()?;
        Some(f(&mut shard))
    }

    /// Makes `conn`, a connection of `key`, a member of `room`.
    pub fn add(&self, room: &str, key: &str, conn: &Arc<Conn>) {
        self.with(room, |map| {
            let members = map.entry(room.into()).or_default();
            if members.conns.insert(id(conn), conn.clone()).is_none() {
                *members.keys.entry(key.into()).or_default() += 1;
            }
        });
    }

    /// Takes `conn`, a connection of `key`, out of `room`; a room left empty is forgotten.
    pub fn remove(&self, room: &str, key: &str, conn: &Arc<Conn>) {
        self.with(room, |map| {
            let Some(members) = map.get_mut(room) else { return };
            if members.conns.remove(&id(conn)).is_some()
                && let Some(n) = members.keys.get_mut(key)
            {
                *n -= 1;
                if *n == 0 {
                    members.keys.remove(key);
                }
            }
            if members.conns.is_empty() {
                map.remove(room);
            }
        });
    }

    /// The live members of `room` right now.
    pub fn members(&self, room: &str) -> Vec<Arc<Conn>> {
        self.with(room, |map| map.get(room).map(|m| m.conns.values().cloned().collect()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Keys with a live connection in `room`, and those connections.
    pub fn count(&self, room: &str) -> (u64, u64) {
        self.with(room, |map| map.get(room).map_or((0, 0), |m| (m.keys.len() as u64, m.conns.len() as u64)))
            .unwrap_or_default()
    }

    /// At most `limit` keys of `room` that sort after `after`, ascending.
    pub fn keys_after(&self, room: &str, after: &str, limit: usize) -> Vec<String> {
        self.with(room, |map| {
            let Some(m) = map.get(room) else { return Vec::new() };
            m.keys
                .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
                .take(limit)
                .map(|(k, _)| k.to_string())
                .collect()
        })
        .unwrap_or_default()
    }

    /// Rooms with at least one live member.
    #[cfg(test)]
    pub fn rooms(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |m| m.len())).sum()
    }
}

/// Who a fan-out goes to.
#[derive(Debug)]
pub(crate) enum Audience {
    /// The members of a room.
    Room(String),
    /// Every connection, at most this many deliveries a second (0: no limit).
    All(u32),
}

/// One room or broadcast push waiting for the worker.
#[derive(Debug)]
pub(crate) struct Fanout {
    /// Its receivers.
    pub audience: Audience,
    /// Its frames, built once for all of them.
    pub frames: Frames,
}

/// The queue into this comet's fan-out worker, started on first use.
#[derive(Debug, Default)]
pub(crate) struct Fanouts {
    queue: OnceLock<mpsc::Sender<Fanout>>,
}

impl Fanouts {
    /// Queues `fanout` behind those before it; false when the worker is gone (shutting down).
    pub async fn send(&self, shared: &Arc<Shared>, fanout: Fanout) -> bool {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            // Weak: the worker ends when the comet's state goes (its queue closes with it).
            tokio::spawn(work(Arc::downgrade(shared), rx));
            tx
        });
        queue.send(fanout).await.is_ok()
    }
}

async fn work(shared: Weak<Shared>, mut queue: mpsc::Receiver<Fanout>) {
    while let Some(fanout) = queue.recv().await {
        let Some(shared) = shared.upgrade() else { return };
        let mut pace = Pace::new(match fanout.audience {
            Audience::All(rate) => rate,
            Audience::Room(_) => 0,
        });
        match &fanout.audience {
            Audience::Room(room) => {
                let members = shared.buckets.rooms.members(room);
                deliver(&members, &fanout.frames, &mut pace).await;
            }
            Audience::All(_) => {
                for bucket in 0..shared.buckets.len() {
                    let conns = shared.buckets.conns_of(bucket);
                    deliver(&conns, &fanout.frames, &mut pace).await;
                }
            }
        }
    }
}

/// Hands `frames` to `conns` a chunk at a time, yielding (or pausing for the rate) in between.
async fn deliver(conns: &[Arc<Conn>], frames: &Frames, pace: &mut Pace) {
    for chunk in conns.chunks(CHUNK) {
        let mut d = Delivery::default();
        for conn in chunk {
            match conn.push(frames.get(conn.proto, conn.new_format)) {
                Queued::Yes => d.delivered += 1,
                Queued::Full => d.dropped += 1,
                Queued::Closed => {}
            }
        }
        crate::service::record(d);
        pace.done(chunk.len()).await;
    }
}

/// Spreads deliveries to at most `rate` a second: after each chunk, waits until the deliveries
/// so far are due.
struct Pace {
    rate: u32,
    started: Instant,
    sent: u64,
}

impl Pace {
    fn new(rate: u32) -> Pace {
        Pace { rate, started: Instant::now(), sent: 0 }
    }

    async fn done(&mut self, n: usize) {
        self.sent += n as u64;
        if self.rate == 0 {
            tokio::task::yield_now().await;
            return;
        }
        let due = self.started + Duration::from_secs_f64(self.sent as f64 / f64::from(self.rate));
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::Proto;
    use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

    fn conn() -> Arc<Conn> {
        let limit = crate::conn::Limit { frames: 8, bytes: 0 };
        Arc::new(Conn::new(Proto::Tcp, true, limit, Utf8Bytes::from_static("+h\r\n")))
    }

    #[test]
    fn the_index_holds_each_member_once_and_forgets_empty_rooms() {
        let index = RoomIndex::default();
        let (a, b) = (conn(), conn());
        index.add("r", "k", &a);
        index.add("r", "k", &a);
        index.add("r", "k", &b);
        assert_eq!(index.members("r").len(), 2);
        assert_eq!(index.count("r"), (1, 2), "one key, two connections");
        index.remove("r", "k", &a);
        assert_eq!(index.count("r"), (1, 1));
        index.remove("r", "k", &b);
        index.remove("r", "k", &b);
        assert!(index.members("r").is_empty());
        assert_eq!(index.count("r"), (0, 0));
        assert_eq!(index.rooms(), 0);
    }

    #[test]
    fn keys_come_in_pages_after_a_cursor() {
        let index = RoomIndex::default();
        let conns: Vec<_> = (0..5).map(|_| conn()).collect();
        for (i, c) in conns.iter().enumerate() {
            index.add("r", &format!("k{i}"), c);
        }
        assert_eq!(index.keys_after("r", "", 2), ["k0", "k1"]);
        assert_eq!(index.keys_after("r", "k1", 2), ["k2", "k3"]);
        assert_eq!(index.keys_after("r", "k3", 2), ["k4"]);
        assert!(index.keys_after("r", "k4", 2).is_empty());
        assert_eq!(index.keys_after("r", "k10", 10), ["k2", "k3", "k4"], "a cursor need not be a member");
        assert!(index.keys_after("nowhere", "", 10).is_empty());
    }
}
