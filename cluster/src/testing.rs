//! The one set of test doubles for the RPC services, for the tests of every crate (feature
//! `testing`): [`FakeComet`] records what it is asked and answers by simple key rules, and
//! [`FakeStore`] is a small in-memory message store whose failures can be switched on. The real
//! comet and store live in sibling crates that may not depend on each other; these stand in.

use crate::rpc::{
    BoxFuture, CometApi, CometError, CometStatus, KeyPresence, MessageApi, Mid, OnlineCount, Push, PushPrivatesReply,
    RoomCount, Save, StoreError, StoreHealth, StoredMessage, Subscriber,
};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One call a [`FakeComet`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CometCall {
    /// `push_private`.
    Push {
        /// The key.
        key: String,
        /// The message.
        msg: String,
        /// Its expire.
        expire: u32,
    },
    /// `push_privates`.
    Pushes {
        /// The keys.
        keys: Vec<String>,
        /// The message.
        msg: String,
        /// Its expire.
        expire: u32,
    },
    /// `add_token`.
    Token {
        /// The key.
        key: String,
        /// The token.
        token: String,
        /// Its lifetime.
        expire_secs: u64,
    },
    /// `close_key`.
    Close {
        /// The key.
        key: String,
    },
    /// `join_rooms` (`join` true) or `leave_rooms`.
    Rooms {
        /// The keys.
        keys: Vec<String>,
        /// The room.
        room: String,
        /// Joined rather than left.
        join: bool,
    },
    /// `push_room` (`room` set) or `push_all`.
    Group {
        /// The room; `None` for a broadcast.
        room: Option<String>,
        /// The message.
        msg: String,
        /// The mid web gave it.
        mid: Mid,
    },
}

/// A comet double. It records every call and answers by key: an empty key is
/// [`CometError::BadKey`], keys starting with `notmine` are not owned, `store-down` fails as a
/// store backend error, `slow` answers after 5 s (or `slow_ms`), and keys starting with `fk` fail inside
/// multi-pushes; `online` finds keys starting with `on` online with one TCP connection. A message
/// that is not JSON is [`CometError::BadMessage`] and an empty token
/// [`CometError::BadToken`]. Every room has `connections` live keys, named `<name>-0000` on.
/// While `down` is set every call fails as unreachable. Mids count up from 1.
#[derive(Default)]
pub struct FakeComet {
    /// The node name its ping reports.
    pub name: String,
    /// Every call, in order.
    pub calls: Mutex<Vec<CometCall>>,
    /// Makes every call fail as unreachable.
    pub down: AtomicBool,
    /// Connections its ping reports.
    pub connections: u64,
    /// The last mid given.
    pub mids: AtomicU32,
    /// How long key `slow` takes, in milliseconds; 0 means 5 s.
    pub slow_ms: AtomicU64,
    /// The size of every `push_batch` call, in order.
    pub batches: Mutex<Vec<usize>>,
    /// Pushes received so far, counted on arrival (before `slow` waits).
    pub received: AtomicU32,
    /// Keeps no call log, for benchmarks that make millions of calls.
    pub forget: AtomicBool,
}

impl FakeComet {
    /// A double named `name`.
    pub fn new(name: &str) -> Arc<FakeComet> {
        Arc::new(FakeComet { name: name.into(), ..Default::default() })
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<CometCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The sizes of the `push_batch` calls so far.
    pub fn batches(&self) -> Vec<usize> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }

    fn check(&self) -> Result<(), CometError> {
        if self.down.load(Ordering::SeqCst) { Err(CometError::Unreachable) } else { Ok(()) }
    }

    fn record(&self, call: CometCall) -> Result<Mid, CometError> {
        self.check()?;
        if !self.forget.load(Ordering::Relaxed) {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(call);
            }
        }
        Ok(Mid::from(self.mids.fetch_add(1, Ordering::SeqCst)) + 1)
    }
}

impl CometApi for FakeComet {
    fn push_private(
        &self,
        key: String,
        msg: String,
        expire: u32,
        _id: Option<String>,
    ) -> BoxFuture<'_, Result<Mid, CometError>> {
        Box::pin(async move {
            self.received.fetch_add(1, Ordering::SeqCst);
            match key.as_str() {
                "" => return Err(CometError::BadKey),
                k if k.starts_with("notmine") => return Err(CometError::NotOwner),
                "store-down" => return Err(CometError::Store(StoreError::Backend)),
                "slow" => {
                    let ms = self.slow_ms.load(Ordering::SeqCst);
                    tokio::time::sleep(if ms == 0 { Duration::from_secs(5) } else { Duration::from_millis(ms) }).await
                }
                _ => {}
            }
            if crate::gojson::compact(&msg).is_none() {
                return Err(CometError::BadMessage);
            }
            self.record(CometCall::Push { key, msg, expire })
        })
    }
    fn push_privates(
        &self,
        keys: Vec<String>,
        msg: String,
        expire: u32,
        _id: Option<String>,
    ) -> BoxFuture<'_, Result<PushPrivatesReply, CometError>> {
        Box::pin(async move {
            let failed = keys.iter().filter(|k| k.starts_with("fk")).cloned().collect();
            let mid = self.record(CometCall::Pushes { keys, msg, expire })?;
            Ok(PushPrivatesReply { mid, failed })
        })
    }
    fn push_batch(&self, pushes: Vec<Push>) -> BoxFuture<'_, Result<Vec<Result<Mid, CometError>>, CometError>> {
        Box::pin(async move {
            self.check()?;
            if let Ok(mut b) = self.batches.lock() {
                b.push(pushes.len());
            }
            let mut answers = Vec::with_capacity(pushes.len());
            for p in pushes {
                answers.push(self.push_private(p.key, p.msg, p.expire, p.id).await);
            }
            Ok(answers)
        })
    }
    fn add_token(&self, key: String, token: String, expire_secs: u64) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move {
            if token.is_empty() {
                return Err(CometError::BadToken);
            }
            self.record(CometCall::Token { key, token, expire_secs }).map(drop)
        })
    }
    fn close_key(&self, key: String) -> BoxFuture<'_, Result<u32, CometError>> {
        Box::pin(async move { self.record(CometCall::Close { key }).map(|_| 0) })
    }
    fn ping(&self) -> BoxFuture<'_, Result<CometStatus, CometError>> {
        Box::pin(async move {
            self.check()?;
            Ok(CometStatus { node: self.name.clone(), connections: self.connections, channels: 0, serving: true })
        })
    }
    fn join_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move { self.record(CometCall::Rooms { keys, room, join: true }).map(drop) })
    }
    fn leave_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move { self.record(CometCall::Rooms { keys, room, join: false }).map(drop) })
    }
    fn push_room(&self, room: String, msg: String, mid: Mid) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move { self.record(CometCall::Group { room: Some(room), msg, mid }).map(drop) })
    }
    fn push_all(&self, msg: String, mid: Mid, _rate: u32) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move { self.record(CometCall::Group { room: None, msg, mid }).map(drop) })
    }
    fn online(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<KeyPresence>, CometError>> {
        Box::pin(async move {
            self.check()?;
            // Keys starting with `on` have one TCP connection; every other key is offline.
            Ok(keys.iter().map(|k| KeyPresence { tcp: u32::from(k.starts_with("on")), ws: 0 }).collect())
        })
    }
    fn online_count(&self) -> BoxFuture<'_, Result<OnlineCount, CometError>> {
        Box::pin(async move {
            self.check()?;
            Ok(OnlineCount { node: self.name.clone(), keys: self.connections, tcp: self.connections, ws: 0 })
        })
    }
    fn room_online_count(&self, _room: String) -> BoxFuture<'_, Result<RoomCount, CometError>> {
        Box::pin(async move {
            self.check()?;
            Ok(RoomCount { node: self.name.clone(), keys: self.connections, conns: self.connections })
        })
    }
    fn room_online(&self, _room: String, after: String, limit: u32) -> BoxFuture<'_, Result<Vec<String>, CometError>> {
        Box::pin(async move {
            self.check()?;
            // `connections` keys named `<node>-<n>`, in the order the real comet answers.
            let mut keys: Vec<String> = (0..self.connections).map(|i| format!("{}-{i:04}", self.name)).collect();
            keys.sort_unstable();
            Ok(keys.into_iter().filter(|k| *k > after).take(limit as usize).collect())
        })
    }
}

/// One recorded save: keys, message, mid, expire.
pub type Saved = (Vec<String>, String, Mid, u32);

/// A message-store double that really stores: saves are kept per key (and recorded), reads
/// return those newer than the asked mid, tokens are kept. `fail_save` fails every save as a
/// backend error, keys in `fail_keys` fail alone (reported as failed by `save_privates`, a
/// backend error elsewhere), and `fail_tokens` makes token checks unreachable. A negative mid is
/// [`StoreError::BadMid`]. `calls` counts every call, so fail-over tests can see who served.
#[derive(Default)]
pub struct FakeStore {
    /// Stored messages per key.
    pub messages: Mutex<HashMap<String, Vec<StoredMessage>>>,
    /// Every successful save, in order.
    pub saved: Mutex<Vec<Saved>>,
    /// The size of each `save_batch` call, in order.
    pub save_batches: Mutex<Vec<usize>>,
    /// Keys deleted, in order.
    pub deleted: Mutex<Vec<String>>,
    /// Valid tokens: (key, token) → lifetime in seconds.
    pub tokens: Mutex<HashMap<(String, String), u64>>,
    /// Makes every save fail.
    pub fail_save: AtomicBool,
    /// Keys whose operations fail.
    pub fail_keys: Mutex<HashSet<String>>,
    /// Makes token checks fail as unreachable.
    pub fail_tokens: AtomicBool,
    /// How long each coming save takes, in order (then no delay): saves that finish out of order.
    pub save_delays: Mutex<VecDeque<Duration>>,
    /// Calls served.
    pub calls: AtomicU32,
    /// Each key's rooms.
    pub rooms: Mutex<HashMap<String, BTreeSet<String>>>,
    /// How long each coming `subscriber` call waits after reading the rooms, in order (then no
    /// delay): a subscriber whose answer is overtaken by a room change.
    pub subscriber_delays: Mutex<VecDeque<Duration>>,
}

impl FakeStore {
    /// An empty store.
    pub fn new() -> Arc<FakeStore> {
        Arc::new(FakeStore::default())
    }

    /// A store holding `msgs` (message, mid) for `key`.
    pub fn with(key: &str, msgs: &[(&str, Mid)]) -> Arc<FakeStore> {
        let store = FakeStore::default();
        if let Ok(mut m) = store.messages.lock() {
            m.insert(
                key.into(),
                msgs.iter().map(|(msg, mid)| StoredMessage { msg: msg.to_string(), mid: *mid, gid: 0 }).collect(),
            );
        }
        Arc::new(store)
    }

    /// The saves so far.
    pub fn saves(&self) -> Vec<Saved> {
        self.saved.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Calls served so far.
    pub fn served(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn failing(&self, key: &str) -> bool {
        self.fail_keys.lock().is_ok_and(|k| k.contains(key))
    }

    async fn delay_save(&self) {
        let delay = self.save_delays.lock().ok().and_then(|mut d| d.pop_front());
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }

    fn save(&self, keys: Vec<String>, msg: String, mid: Mid, expire: u32) -> Result<Vec<String>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if mid < 0 {
            return Err(StoreError::BadMid);
        }
        if self.fail_save.load(Ordering::SeqCst) {
            return Err(StoreError::Backend);
        }
        let (failed, ok): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| self.failing(k));
        if let Ok(mut m) = self.messages.lock() {
            for key in &ok {
                m.entry(key.clone()).or_default().push(StoredMessage { msg: msg.clone(), mid, gid: 0 });
            }
        }
        if let Ok(mut s) = self.saved.lock() {
            s.push((ok, msg, mid, expire));
        }
        Ok(failed)
    }
}

impl MessageApi for FakeStore {
    fn save_private(&self, key: String, msg: String, mid: Mid, expire: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.delay_save().await;
            let failed = self.save(vec![key], msg, mid, expire)?;
            if failed.is_empty() { Ok(()) } else { Err(StoreError::Backend) }
        })
    }
    fn save_privates(
        &self,
        keys: Vec<String>,
        msg: String,
        mid: Mid,
        expire: u32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            self.delay_save().await;
            self.save(keys, msg, mid, expire)
        })
    }
    fn save_batch(&self, saves: Vec<Save>) -> BoxFuture<'_, Result<Vec<Result<(), StoreError>>, StoreError>> {
        Box::pin(async move {
            if let Ok(mut b) = self.save_batches.lock() {
                b.push(saves.len());
            }
            self.delay_save().await;
            let answers = saves.into_iter().map(|s| match self.save(vec![s.key], s.msg, s.mid, s.expire) {
                Ok(failed) if failed.is_empty() => Ok(()),
                Ok(_) => Err(StoreError::Backend),
                Err(e) => Err(e),
            });
            Ok(answers.collect())
        })
    }
    fn get_private(&self, key: String, after: Mid) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failing(&key) {
                return Err(StoreError::Backend);
            }
            let all = self.messages.lock().ok().and_then(|m| m.get(&key).cloned()).unwrap_or_default();
            Ok(all.into_iter().filter(|m| m.mid > after).collect())
        })
    }
    fn del_private(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failing(&key) {
                return Err(StoreError::Backend);
            }
            if let Ok(mut m) = self.messages.lock() {
                m.remove(&key);
            }
            if let Ok(mut d) = self.deleted.lock() {
                d.push(key);
            }
            Ok(())
        })
    }
    fn add_token(&self, key: String, token: String, expire_secs: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut t) = self.tokens.lock() {
                t.insert((key, token), expire_secs);
            }
            Ok(())
        })
    }
    fn check_token(&self, key: String, token: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail_tokens.load(Ordering::SeqCst) {
                return Err(StoreError::Unreachable);
            }
            Ok(self.tokens.lock().is_ok_and(|t| t.contains_key(&(key, token))))
        })
    }
    fn ping(&self) -> BoxFuture<'_, Result<StoreHealth, StoreError>> {
        Box::pin(async { Ok(StoreHealth { backend: "memory".into(), shards: vec![("fake".into(), true)] }) })
    }
    fn join_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move { Ok(self.change_rooms(keys, |set| set.insert(room.clone()))) })
    }
    fn leave_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move { Ok(self.change_rooms(keys, |set| set.remove(&room))) })
    }
    fn get_rooms(&self, key: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move { Ok(self.rooms_of(&key)) })
    }
    fn subscriber(&self, key: String, token: Option<String>) -> BoxFuture<'_, Result<Subscriber, StoreError>> {
        Box::pin(async move {
            let token_valid = match token {
                Some(token) => self.check_token(key.clone(), token).await?,
                None => false,
            };
            let rooms = self.rooms_of(&key);
            let delay = self.subscriber_delays.lock().ok().and_then(|mut d| d.pop_front());
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            Ok(Subscriber { token_valid, rooms })
        })
    }
}

impl FakeStore {
    fn change_rooms(&self, keys: Vec<String>, mut change: impl FnMut(&mut BTreeSet<String>) -> bool) -> Vec<String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (failed, ok): (Vec<String>, Vec<String>) = keys.into_iter().partition(|k| self.failing(k));
        if let Ok(mut rooms) = self.rooms.lock() {
            for key in ok {
                change(rooms.entry(key).or_default());
            }
        }
        failed
    }

    fn rooms_of(&self, key: &str) -> Vec<String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.rooms.lock().ok().and_then(|r| r.get(key).map(|s| s.iter().cloned().collect())).unwrap_or_default()
    }
}
