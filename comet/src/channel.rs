//! A channel: the live connections of one key (at most `max_subscriber`) and the tokens recently
//! confirmed for it. A channel exists only while it holds either (docs/decisions.md#d8-channels),
//! so the map never grows with keys that were merely pushed to.

use crate::conn::Conn;
use std::sync::Arc;
use std::time::Instant;

/// Room changes kept for subscribers still reading the store: the store's cap on a key's rooms.
pub const MAX_PENDING: usize = 256;

/// The connections and cached tokens of one key.
#[derive(Debug, Default)]
pub struct Channel {
    /// Live connections, oldest first.
    pub conns: Vec<Arc<Conn>>,
    /// Tokens the store confirmed for this key, each trusted until its instant.
    tokens: Vec<(Box<str>, Instant)>,
    /// The key's rooms, once loaded from the store; kept current by joins and leaves while the
    /// channel lives (docs/decisions.md#d53-the-owning-comet-indexes-live-connections-by-room).
    pub rooms: Option<Vec<Box<str>>>,
    /// Subscribers reading the key's rooms from the store right now; while any are, the channel
    /// stays and room changes that arrive before it knows its rooms are kept in `pending`.
    pub loading: u32,
    /// Room changes (room, joined) that arrived while a subscriber read the store and the channel
    /// did not know its rooms yet: the store's answer may predate them
    /// (docs/decisions.md#d53-the-owning-comet-indexes-live-connections-by-room).
    pub pending: Vec<(Box<str>, bool)>,
}

impl Channel {
    /// Adds a connection unless the key already has `max` of them.
    pub fn join(&mut self, conn: &Arc<Conn>, max: usize) -> bool {
        if self.conns.len() >= max {
            return false;
        }
        self.conns.push(conn.clone());
        true
    }

    /// Removes this very connection (by identity), if present.
    pub fn leave(&mut self, conn: &Arc<Conn>) {
        if let Some(i) = self.conns.iter().position(|c| Arc::ptr_eq(c, conn)) {
            self.conns.swap_remove(i);
        }
    }

    /// True when `token` was confirmed and is still trusted at `now`.
    pub fn token_cached(&self, token: &str, now: Instant) -> bool {
        self.tokens.iter().any(|(t, until)| &**t == token && *until > now)
    }

    /// Trusts `token` until `until`.
    pub fn cache_token(&mut self, token: &str, until: Instant) {
        match self.tokens.iter_mut().find(|(t, _)| &**t == token) {
            Some(slot) => slot.1 = until,
            None => self.tokens.push((token.into(), until)),
        }
    }

    /// Forgets tokens no longer trusted at `now`.
    pub fn expire_tokens(&mut self, now: Instant) {
        self.tokens.retain(|(_, until)| *until > now);
    }

    /// Records a room change for the subscribers still reading the store; the last change of a
    /// room wins, and at most [`MAX_PENDING`] rooms are kept.
    pub fn note_pending(&mut self, room: &str, joined: bool) {
        if self.loading == 0 {
            return;
        }
        if let Some(slot) = self.pending.iter_mut().find(|(r, _)| &**r == room) {
            slot.1 = joined;
        } else if self.pending.len() < MAX_PENDING {
            self.pending.push((room.into(), joined));
        } else {
            tracing::warn!(room, "too many room changes while a subscriber read the store; this one is not replayed");
        }
    }

    /// The key's rooms as the store gave them, with the changes that arrived since applied.
    pub fn settle(&mut self, loaded: Vec<String>) -> Vec<Box<str>> {
        let mut rooms: Vec<Box<str>> = loaded.into_iter().map(Into::into).collect();
        for (room, joined) in self.pending.drain(..) {
            rooms.retain(|r| *r != room);
            if joined {
                rooms.push(room);
            }
        }
        rooms
    }

    /// True when the channel holds nothing and should be removed.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty() && self.tokens.is_empty() && self.loading == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::Proto;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

    fn conn() -> Arc<Conn> {
        let limit = crate::conn::Limit { frames: 4, bytes: 0 };
        Arc::new(Conn::new(Proto::Tcp, false, limit, Utf8Bytes::from_static("+h\r\n")))
    }

    #[test]
    fn join_is_capped_and_leave_is_by_identity() {
        let mut ch = Channel::default();
        let (a, b, c) = (conn(), conn(), conn());
        assert!(ch.join(&a, 2));
        assert!(ch.join(&b, 2));
        assert!(!ch.join(&c, 2));
        ch.leave(&c);
        assert_eq!(ch.conns.len(), 2);
        ch.leave(&a);
        ch.leave(&b);
        assert!(ch.is_empty());
    }

    #[test]
    fn pending_changes_apply_over_the_stores_answer() {
        let mut ch = Channel::default();
        ch.note_pending("ignored", true);
        assert!(ch.pending.is_empty(), "nobody is reading the store");
        ch.loading = 1;
        ch.note_pending("a", true);
        ch.note_pending("b", true);
        ch.note_pending("old", false);
        ch.note_pending("b", false);
        let rooms = ch.settle(vec!["old".into(), "kept".into()]);
        assert_eq!(rooms, ["kept".into(), "a".into()] as [Box<str>; 2]);
        assert!(ch.pending.is_empty());
        assert!(!ch.is_empty(), "a loading subscriber keeps the channel");
    }

    #[test]
    fn tokens_expire() {
        let mut ch = Channel::default();
        let now = Instant::now();
        ch.cache_token("t", now + Duration::from_secs(1));
        assert!(ch.token_cached("t", now));
        assert!(!ch.token_cached("u", now));
        assert!(!ch.token_cached("t", now + Duration::from_secs(2)));
        assert!(!ch.is_empty());
        ch.expire_tokens(now + Duration::from_secs(2));
        assert!(ch.is_empty());
    }
}
