//! The push service, this comet's `CometApi` (docs/decisions.md#d2-internal-rpc): pushes get a mid
//! (docs/decisions.md#d6-message-ids), are stored first when `expire > 0` and a failed save
//! delivers nothing (docs/decisions.md#d32-store-before-deliver), then are encoded once and queued
//! for every connection of the key. `cluster::rpc::serve_comet` puts it on the wire; standalone
//! mode calls it in-process. No lock is held across a store call.

use crate::bucket::Delivery;
use crate::conn::CloseReason;
use crate::frame::Frames;
use crate::metrics as m;
use crate::replay::{Claim, Replays};
use crate::rooms::{Audience, Fanout};
use crate::state::Shared;
use cluster::gojson;
use cluster::rpc::{
    BoxFuture, CometApi, CometError, CometStatus, KeyPresence, Mid, OnlineCount, Push, PushPrivatesReply, RoomCount,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest token accepted by `add_token`, in bytes (the TCP argument limit).
const MAX_TOKEN: usize = crate::handshake::MAX_ARG;

/// Keys one `online` call may ask about: web's batch limit.
const MAX_ONLINE_KEYS: usize = 10_000;

/// This comet's `CometApi`.
#[derive(Clone)]
pub(crate) struct CometService {
    shared: Arc<Shared>,
}

impl CometService {
    /// The service over a comet's shared state.
    pub fn new(shared: Arc<Shared>) -> CometService {
        CometService { shared }
    }

    fn check_key(&self, key: &str) -> Result<(), CometError> {
        if key.is_empty() || key.len() > self.shared.config.channel.max_key {
            return Err(CometError::BadKey);
        }
        Ok(())
    }

    /// Hands `frames` to the connections of `key`, counting the outcome.
    fn deliver(&self, key: &str, frames: &Frames) {
        record(self.shared.buckets.deliver(key, frames));
    }

    async fn push_one(&self, key: String, msg: String, expire: u32, id: Option<String>) -> Result<Mid, CometError> {
        self.check_key(&key)?;
        let compacted = gojson::compact(&msg).ok_or(CometError::BadMessage)?;
        if !self.shared.ownership.owns(&key) {
            return Err(CometError::NotOwner);
        }
        // Ids are scoped by key: publishers need not make them unique across keys.
        let id = id.map(|id| format!("{key}\0{id}"));
        let push = move |this: CometService| async move { this.store_and_deliver(key, compacted, msg, expire).await };
        self.once(&self.shared.replayed_pushes, id, expire > 0, push).await
    }

    /// Runs a push at most once per publisher id (a repeat gets the first answer), and with
    /// `saving` to its end even if the caller stops waiting: a passed RPC deadline drops the
    /// handler, and a save that started must still be followed by its delivery in order, and its
    /// answer be known to a retry. A push that saves nothing has no await to cut, so no task.
    async fn once<T, F, Fut>(
        &self,
        replays: &Replays<T>,
        id: Option<String>,
        saving: bool,
        push: F,
    ) -> Result<T, CometError>
    where
        T: Clone + Send + 'static,
        F: FnOnce(CometService) -> Fut,
        Fut: std::future::Future<Output = Result<T, CometError>> + Send + 'static,
    {
        let running = match id {
            Some(id) => match replays.claim(id).await {
                Claim::Repeat(outcome) => return outcome,
                Claim::First(running) => Some(running),
            },
            None => None,
        };
        let outcome = if saving {
            tokio::spawn(push(self.clone())).await.unwrap_or(Err(CometError::Unreachable))
        } else {
            push(self.clone()).await
        };
        if let Some(running) = running {
            running.finish(outcome.clone());
        }
        outcome
    }

    /// The one ordered step: a mid and the key's place, then the save, then delivery in place.
    async fn store_and_deliver(
        &self,
        key: String,
        compacted: String,
        msg: String,
        expire: u32,
    ) -> Result<Mid, CometError> {
        let keys = [key];
        let (original, to_save) = if expire > 0 { (msg.clone(), Some(msg)) } else { (msg, None) };
        let deliver = |k: &str, f: &Frames| self.deliver(k, f);
        let (mid, frames) = self.shared.order.begin(
            &keys,
            &self.shared.mids,
            to_save.is_some(),
            |mid| Frames::new(compacted, original, mid),
            &deliver,
        );
        let Some(msg) = to_save else { return Ok(mid) };
        let saved = self.shared.save_private(keys[0].clone(), msg, mid, expire).await;
        match saved {
            Ok(()) => {
                self.shared.order.finish(&keys, &[], mid, &frames, &deliver);
                Ok(mid)
            }
            Err(e) => {
                self.shared.order.finish(&[], &keys, mid, &frames, &deliver);
                Err(CometError::Store(e))
            }
        }
    }

    async fn push_many(
        &self,
        keys: Vec<String>,
        msg: String,
        expire: u32,
        id: Option<String>,
    ) -> Result<PushPrivatesReply, CometError> {
        let compacted = gojson::compact(&msg).ok_or(CometError::BadMessage)?;
        let push =
            move |this: CometService| async move { this.store_and_deliver_many(keys, compacted, msg, expire).await };
        self.once(&self.shared.replayed_multi_pushes, id, expire > 0, push).await
    }

    async fn store_and_deliver_many(
        &self,
        keys: Vec<String>,
        compacted: String,
        msg: String,
        expire: u32,
    ) -> Result<PushPrivatesReply, CometError> {
        let mut seen = HashSet::with_capacity(keys.len());
        let (mut owned, mut failed) = (Vec::with_capacity(keys.len()), Vec::new());
        for key in keys {
            if !seen.insert(key.clone()) {
                continue;
            }
            if self.check_key(&key).is_ok() && self.shared.ownership.owns(&key) {
                owned.push(key);
            } else {
                failed.push(key);
            }
        }
        let saving = expire > 0 && !owned.is_empty();
        let (original, to_save) = if saving { (msg.clone(), Some(msg)) } else { (msg, None) };
        let deliver = |k: &str, f: &Frames| self.deliver(k, f);
        let (mid, frames) = self.shared.order.begin(
            &owned,
            &self.shared.mids,
            saving,
            |mid| Frames::new(compacted, original, mid),
            &deliver,
        );
        if let Some(msg) = to_save {
            let (saved, lost) = match self.shared.messages.save_privates(owned.clone(), msg, mid, expire).await {
                Ok(unsaved) if !unsaved.is_empty() => {
                    let unsaved: HashSet<String> = unsaved.into_iter().collect();
                    owned.into_iter().partition(|k| !unsaved.contains(k))
                }
                Ok(_) => (owned, Vec::new()),
                Err(_) => (Vec::new(), owned),
            };
            self.shared.order.finish(&saved, &lost, mid, &frames, &deliver);
            failed.extend(lost);
        }
        if !failed.is_empty() {
            metrics::counter!(m::FAILURES, "reason" => "keys").increment(failed.len() as u64);
        }
        Ok(PushPrivatesReply { mid, failed })
    }

    async fn add(&self, key: String, token: String, expire_secs: u64) -> Result<(), CometError> {
        self.check_key(&key)?;
        if token.is_empty() || token.len() > MAX_TOKEN {
            return Err(CometError::BadToken);
        }
        if !self.shared.ownership.owns(&key) {
            return Err(CometError::NotOwner);
        }
        self.shared.messages.add_token(key.clone(), token.clone(), expire_secs).await.map_err(CometError::Store)?;
        let trust = self.shared.config.channel.token_cache.min(Duration::from_secs(expire_secs));
        if !trust.is_zero() {
            self.shared.buckets.cache_token(&key, &token, Instant::now() + trust);
        }
        Ok(())
    }

    fn close(&self, key: &str) -> Result<u32, CometError> {
        self.check_key(key)?;
        let conns = self.shared.buckets.remove(key);
        conns.iter().for_each(|c| c.close_for(CloseReason::Server));
        Ok(u32::try_from(conns.len()).unwrap_or(u32::MAX))
    }

    /// Applies a room join or leave to the live connections of `keys` held here.
    fn change_rooms(&self, keys: &[String], room: &str, join: bool) -> Result<(), CometError> {
        if !cluster::room::valid(room) {
            return Err(CometError::BadKey);
        }
        for key in keys {
            if join {
                self.shared.buckets.join_room(key, room);
            } else {
                self.shared.buckets.leave_room(key, room);
            }
        }
        Ok(())
    }

    /// Queues a room push (`room` set) or a broadcast for the fan-out worker.
    async fn fan_out(&self, room: Option<String>, msg: String, mid: Mid, rate: u32) -> Result<(), CometError> {
        if room.as_deref().is_some_and(|r| !cluster::room::valid(r)) {
            return Err(CometError::BadKey);
        }
        let compacted = gojson::compact(&msg).ok_or(CometError::BadMessage)?;
        let frames = Frames::group(compacted, msg, mid, room.as_deref());
        let audience = match room {
            Some(room) => Audience::Room(room),
            None => Audience::All(rate),
        };
        // The queue is gone only while the comet shuts down.
        if self.shared.fanouts.send(&self.shared, Fanout { audience, frames }).await {
            Ok(())
        } else {
            Err(CometError::Unreachable)
        }
    }

    /// The presence of each key; one bad key fails the call, as web checks keys before asking.
    fn online_of(&self, keys: &[String]) -> Result<Vec<KeyPresence>, CometError> {
        metrics::counter!(m::PRESENCE_CALLS, "op" => "online").increment(1);
        if keys.len() > MAX_ONLINE_KEYS {
            return Err(CometError::BadKey);
        }
        keys.iter().map(|k| self.check_key(k).map(|()| self.shared.presence.get(k))).collect()
    }

    /// A room's live keys and connections here, from the room index.
    fn room_count(&self, room: &str) -> Result<RoomCount, CometError> {
        metrics::counter!(m::PRESENCE_CALLS, "op" => "room_count").increment(1);
        if !cluster::room::valid(room) {
            return Err(CometError::BadKey);
        }
        let (keys, conns) = self.shared.buckets.rooms.count(room);
        Ok(RoomCount { node: self.shared.config.node.name.clone(), keys, conns })
    }

    /// One page of a room's live keys here, from the room index's sorted keys.
    fn room_page(&self, room: &str, after: &str, limit: u32) -> Result<Vec<String>, CometError> {
        metrics::counter!(m::PRESENCE_CALLS, "op" => "room_online").increment(1);
        if !cluster::room::valid(room) || !(1..=cluster::room::MAX_PAGE).contains(&limit) {
            return Err(CometError::BadKey);
        }
        Ok(self.shared.buckets.rooms.keys_after(room, after, limit as usize))
    }

    /// The status reported by `ping`.
    pub fn status(&self) -> CometStatus {
        self.shared.status()
    }
}

/// Counts one delivery's outcome in metrics.
pub(crate) fn record(d: Delivery) {
    if d.delivered > 0 {
        metrics::counter!(m::DELIVERIES).increment(d.delivered as u64);
    }
    if d.dropped > 0 {
        metrics::counter!(m::SLOW_CONSUMERS).increment(d.dropped as u64);
    }
}

fn timed<T>(kind: &'static str, started: Instant, r: Result<T, CometError>) -> Result<T, CometError> {
    metrics::counter!(m::PUSHES, "kind" => kind).increment(1);
    metrics::histogram!(m::PUSH_SECONDS, "kind" => kind).record(started.elapsed().as_secs_f64());
    if let Err(e) = &r {
        let reason = match e {
            CometError::BadKey => "bad_key",
            CometError::BadMessage => "bad_message",
            CometError::NotOwner => "not_owner",
            CometError::Store(_) => "store",
            _ => "other",
        };
        metrics::counter!(m::FAILURES, "reason" => reason).increment(1);
    }
    r
}

impl CometApi for CometService {
    fn push_private(
        &self,
        key: String,
        msg: String,
        expire: u32,
        id: Option<String>,
    ) -> BoxFuture<'_, Result<Mid, CometError>> {
        Box::pin(async move {
            let started = Instant::now();
            timed("private", started, self.push_one(key, msg, expire, id).await)
        })
    }

    fn push_privates(
        &self,
        keys: Vec<String>,
        msg: String,
        expire: u32,
        id: Option<String>,
    ) -> BoxFuture<'_, Result<PushPrivatesReply, CometError>> {
        Box::pin(async move {
            let started = Instant::now();
            timed("privates", started, self.push_many(keys, msg, expire, id).await)
        })
    }

    fn push_batch(&self, pushes: Vec<Push>) -> BoxFuture<'_, Result<Vec<Result<Mid, CometError>>, CometError>> {
        Box::pin(async move {
            // Concurrently, as the same pushes arriving in separate calls would run: a batch holds
            // pushes of concurrent requests, between which no order is promised. Each is counted as
            // a private push.
            let runs = pushes.into_iter().map(|Push { key, msg, expire, id }| async move {
                let started = Instant::now();
                timed("private", started, self.push_one(key, msg, expire, id).await)
            });
            Ok(futures::future::join_all(runs).await)
        })
    }

    fn add_token(&self, key: String, token: String, expire_secs: u64) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(self.add(key, token, expire_secs))
    }

    fn close_key(&self, key: String) -> BoxFuture<'_, Result<u32, CometError>> {
        Box::pin(async move { self.close(&key) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<CometStatus, CometError>> {
        Box::pin(async move { Ok(self.status()) })
    }

    fn join_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move { self.change_rooms(&keys, &room, true) })
    }

    fn leave_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move { self.change_rooms(&keys, &room, false) })
    }

    fn push_room(&self, room: String, msg: String, mid: Mid) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move {
            let started = Instant::now();
            timed("room", started, self.fan_out(Some(room), msg, mid, 0).await)
        })
    }

    fn push_all(&self, msg: String, mid: Mid, rate: u32) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async move {
            let started = Instant::now();
            timed("all", started, self.fan_out(None, msg, mid, rate).await)
        })
    }

    fn online(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<KeyPresence>, CometError>> {
        Box::pin(async move { self.online_of(&keys) })
    }

    fn online_count(&self) -> BoxFuture<'_, Result<OnlineCount, CometError>> {
        Box::pin(async move {
            metrics::counter!(m::PRESENCE_CALLS, "op" => "count").increment(1);
            Ok(self.shared.presence.count())
        })
    }

    fn room_online_count(&self, room: String) -> BoxFuture<'_, Result<RoomCount, CometError>> {
        Box::pin(async move { self.room_count(&room) })
    }

    fn room_online(&self, room: String, after: String, limit: u32) -> BoxFuture<'_, Result<Vec<String>, CometError>> {
        Box::pin(async move { self.room_page(&room, &after, limit) })
    }
}
