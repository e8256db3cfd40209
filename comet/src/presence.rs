//! Who is online on this comet (docs/decisions.md#d60-a-presence-index-beside-the-channels): each
//! key's subscribed connections by protocol, in sharded maps of their own, changed only when a
//! subscription is admitted or ends. Channels can vanish at once (`close_key`, a ring change) while
//! their connections are still closing; this index counts a connection until its task ends, so
//! each key goes online and offline exactly once per stretch of presence, which is what webhooks
//! report. Events are queued under the key's shard lock, so they leave in the order they happened.
//! Room queries read the room index instead (docs/decisions.md#d56-room-presence-asks-every-comet).

use crate::conn::CloseReason;
use crate::webhook::{Event, Kind, Queue, now_ms};
use cluster::Proto;
use cluster::rpc::{KeyPresence, OnlineCount};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One shard of the index: key → its connections.
type Shard = Mutex<HashMap<Box<str>, KeyPresence>>;

/// The presence index of one comet.
pub(crate) struct Presence {
    shards: Box<[Shard]>,
    hasher: RandomState,
    keys: AtomicU64,
    tcp: AtomicU64,
    ws: AtomicU64,
    node: String,
    events: Option<Arc<Queue>>,
}

impl Presence {
    /// An empty index of `shards` shards for comet node `node`, queueing events in `events`.
    pub fn new(shards: usize, node: &str, events: Option<Arc<Queue>>) -> Presence {
        Presence {
            shards: (0..shards.max(1)).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            keys: AtomicU64::new(0),
            tcp: AtomicU64::new(0),
            ws: AtomicU64::new(0),
            node: node.to_string(),
            events,
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(key) as usize) % self.shards.len()]
    }

    fn total(&self, proto: Proto) -> &AtomicU64 {
        match proto {
            Proto::Tcp => &self.tcp,
            Proto::WebSocket => &self.ws,
        }
    }

    /// Counts a subscribed connection of `key`.
    pub fn join(&self, key: &str, proto: Proto) {
        let Ok(mut map) = self.shard(key).lock() else { return };
        let entry = map.entry(key.into()).or_default();
        match proto {
            Proto::Tcp => entry.tcp += 1,
            Proto::WebSocket => entry.ws += 1,
        }
        let after = entry.conns();
        self.total(proto).fetch_add(1, Ordering::Relaxed);
        if after == 1 {
            self.keys.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(q) = &self.events {
            let event = |kind| Event { kind, key: key.into(), proto, time: now_ms(), conns: after, reason: None };
            if q.connections {
                q.push(event(Kind::Connect));
            }
            if after == 1 {
                q.push(event(Kind::Online));
            }
        }
    }

    /// Uncounts a connection of `key` that ended for `why`.
    pub fn leave(&self, key: &str, proto: Proto, why: CloseReason) {
        let Ok(mut map) = self.shard(key).lock() else { return };
        let Some(entry) = map.get_mut(key) else { return };
        let count = match proto {
            Proto::Tcp => &mut entry.tcp,
            Proto::WebSocket => &mut entry.ws,
        };
        if *count == 0 {
            return;
        }
        *count -= 1;
        let after = entry.conns();
        self.total(proto).fetch_sub(1, Ordering::Relaxed);
        if after == 0 {
            map.remove(key);
            self.keys.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(q) = &self.events {
            let event = |kind| Event { kind, key: key.into(), proto, time: now_ms(), conns: after, reason: Some(why) };
            if q.connections {
                q.push(event(Kind::Disconnect));
            }
            if after == 0 {
                q.push(event(Kind::Offline));
            }
        }
    }

    /// The subscribed connections of `key` (zero when offline).
    pub fn get(&self, key: &str) -> KeyPresence {
        self.shard(key).lock().ok().and_then(|m| m.get(key).copied()).unwrap_or_default()
    }

    /// This comet's totals.
    pub fn count(&self) -> OnlineCount {
        OnlineCount {
            node: self.node.clone(),
            keys: self.keys.load(Ordering::Relaxed),
            tcp: self.tcp.load(Ordering::Relaxed),
            ws: self.ws.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::WebhookConfig;

    #[test]
    fn counts_follow_joins_and_leaves() {
        let p = Presence::new(4, "node1", None);
        p.join("a", Proto::Tcp);
        p.join("a", Proto::WebSocket);
        p.join("b", Proto::Tcp);
        assert_eq!(p.get("a"), KeyPresence { tcp: 1, ws: 1 });
        assert_eq!(p.count(), OnlineCount { node: "node1".into(), keys: 2, tcp: 2, ws: 1 });
        p.leave("a", Proto::Tcp, CloseReason::Client);
        p.leave("a", Proto::Tcp, CloseReason::Client);
        assert_eq!(p.get("a"), KeyPresence { tcp: 0, ws: 1 }, "a second leave of one protocol is ignored");
        p.leave("a", Proto::WebSocket, CloseReason::Client);
        p.leave("nobody", Proto::Tcp, CloseReason::Client);
        assert_eq!(p.get("a"), KeyPresence::default());
        assert_eq!(p.count(), OnlineCount { node: "node1".into(), keys: 1, tcp: 1, ws: 0 });
    }

    #[test]
    fn online_and_offline_once_per_stretch_connect_and_disconnect_each_time() {
        let config = WebhookConfig { connections: true, ..WebhookConfig::default() };
        let q = Arc::new(Queue::new(&config));
        let p = Presence::new(1, "node1", Some(q.clone()));
        p.join("k", Proto::Tcp);
        p.join("k", Proto::WebSocket);
        p.leave("k", Proto::Tcp, CloseReason::Heartbeat);
        p.leave("k", Proto::WebSocket, CloseReason::Server);
        let got: Vec<_> = q.take().into_iter().map(|e| (e.kind, e.conns, e.reason)).collect();
        assert_eq!(
            got,
            vec![
                (Kind::Connect, 1, None),
                (Kind::Online, 1, None),
                (Kind::Connect, 2, None),
                (Kind::Disconnect, 1, Some(CloseReason::Heartbeat)),
                (Kind::Disconnect, 0, Some(CloseReason::Server)),
                (Kind::Offline, 0, Some(CloseReason::Server)),
            ]
        );
    }
}
