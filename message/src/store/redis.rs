//! The Redis store: upstream's layout (docs/storage.md#redis-layout) with the fixes of
//! docs/decisions.md#d7-offline-store, docs/decisions.md#d30-redis-key-ttl-and-redis-7 and
//! docs/decisions.md#d33-a-redis-shard-fails-alone. One sorted set
//! per key (`<prefix><key>`), score = mid, member = `{"msg":..,"expire":..,"mid":..}`; keys are
//! sharded by the ketama ring over the configured source names, hashing the key without prefix, so a
//! key lands on the shard upstream chose. Every command or pipeline runs under the configured
//! deadline, and every Redis failure becomes `StoreError::Backend` in [`RedisStore::exec`] alone.
//! Needs Redis 7.0 or later (`EXPIREAT .. NX` / `GT`). docs/storage.md describes the layout.
//! A shard may be a plain server or a Sentinel-watched set, or the whole store one Redis Cluster
//! ([`RedisStore::cluster`]); the commands are the same for all three ([`Connection`]). With
//! `wait_replicas` a save also waits for that many replicas (docs/decisions.md#d80-wait_replicas).

use super::connection::Connection;
use super::sentinel::SentinelConnection;
use super::{MAX_ROOMS_PER_KEY, ROOMS_LIFE, check_key, check_mid, check_room, check_token, prepare, redis_cluster};
use crate::clock::Clock;
use crate::config::RedisConfig;
use crate::error::MessageError;
use crate::member;
use crate::metered::SHARD_UP;
use crate::token::{TokenRecord, to_evict};
use cluster::rpc::{BoxFuture, MessageApi, Mid, Save, StoreError, StoreHealth, StoredMessage, Subscriber};
use futures::future::join_all;
use metrics::gauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult, Value};
use ring::Ring;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Namespace of the token hashes, after the prefix: `<prefix>gopush-token:<key>`.
pub const TOKEN_NAMESPACE: &str = "gopush-token:";

/// Namespace of the room sets, after the prefix: `<prefix>gopush-rooms:<key>`, one Redis set per
/// key on the key's shard, so membership needs no command across keys (and works on Redis Cluster).
pub const ROOMS_NAMESPACE: &str = "gopush-rooms:";

/// Positions in a call's `keys` per pipeline, by (shard, batch within the shard).
type Batches = HashMap<(usize, usize), Vec<usize>>;

/// Offline messages and tokens in ring-sharded Redis servers.
pub struct RedisStore {
    /// Parallel to `ring.nodes()`: shard `i` serves the keys the ring gives node `i`. A Redis
    /// Cluster is one shard without a ring.
    shards: Vec<Shard>,
    ring: Option<Ring>,
    prefix: String,
    store: usize,
    timeout: Duration,
    /// `WAIT` after every save: how many replicas, and for how many milliseconds at most.
    wait: Option<(u32, u64)>,
    clock: Clock,
}

/// One source: its ring name, its connection, and whether it answered last time.
struct Shard {
    name: String,
    conn: Connection,
    /// [`UNKNOWN`], [`UP`] or [`DOWN`]: what the last call or ping learned.
    state: AtomicU8,
}

/// No call has reached the shard yet (a node may start while Redis is down).
const UNKNOWN: u8 = 0;
/// The last call got an answer, even an error reply.
const UP: u8 = 1;
/// The last call could not reach the server (refused, dropped, timed out).
const DOWN: u8 = 2;

/// The one shard name of a Redis Cluster store, in logs and metrics.
const CLUSTER_SHARD: &str = "cluster";

impl Shard {
    fn new(name: &str, conn: Connection) -> Shard {
        // A shard counts as down until it first answers, and the series exists from start-up.
        gauge!(SHARD_UP, "shard" => name.to_string()).set(0.0);
        Shard { name: name.to_string(), conn, state: AtomicU8::new(UNKNOWN) }
    }

    /// Records what a call learned. Only a change of state is logged, so an operator sees one
    /// line when a shard goes away and one when it is back, however many calls fail in between.
    fn learn(&self, reachable: bool, cause: &dyn std::fmt::Display) {
        let now = if reachable { UP } else { DOWN };
        gauge!(SHARD_UP, "shard" => self.name.clone()).set(if reachable { 1.0 } else { 0.0 });
        // `swap` gives each transition to exactly one caller, however many race.
        match (self.state.swap(now, Ordering::Relaxed), now) {
            (before, after) if before == after => {}
            (_, DOWN) => {
                warn!(shard = %self.name, cause = %cause, "redis shard unreachable; its keys fail until it answers")
            }
            (DOWN, _) => info!(shard = %self.name, "redis shard reachable again"),
            _ => debug!(shard = %self.name, "redis shard reachable"),
        }
    }
}

/// Whether a failed call reached the server: an error reply did, a refused, dropped or timed-out
/// connection did not.
fn reached(e: &RedisError) -> bool {
    !(e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error())
}

impl RedisStore {
    /// Clients for every source of a config that [`MessageConfig`](crate::MessageConfig)
    /// validation accepted; connects lazily, so Redis may still be down. Must run inside a Tokio
    /// runtime.
    pub fn new(config: &RedisConfig) -> Result<RedisStore, MessageError> {
        RedisStore::with_clock(config, Clock::system())
    }

    /// Like [`RedisStore::new`] with a clock a test can move.
    pub fn with_clock(config: &RedisConfig, clock: Clock) -> Result<RedisStore, MessageError> {
        let ring = Ring::new(config.ring_hash, config.source.iter().map(|s| (s.name.clone(), s.weight)));
        let mut shards = Vec::with_capacity(ring.nodes().len());
        for (name, _) in ring.nodes() {
            let fail = |reason: String| MessageError::Redis { name: name.clone(), reason };
            let source = config.source.iter().find(|s| &s.name == name).ok_or_else(|| fail("lost".into()))?;
            let info = source.connection_info().map_err(&fail)?;
            if !source.sentinels.is_empty() {
                let sentinels = source.sentinel_infos().map_err(&fail)?;
                let conn = SentinelConnection::new(sentinels, source.master_name.clone(), &info, config.timeout);
                shards.push(Shard::new(name, Connection::Sentinel(conn)));
                continue;
            }
            let client = redis::Client::open(info).map_err(|e| fail(e.to_string()))?;
            // One connection attempt per reconnect, retried by the next call: while a server is
            // down calls fail at once instead of queueing behind a long backoff, and the first
            // call after it returns reconnects.
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.timeout))
                .set_response_timeout(Some(config.timeout))
                .set_number_of_retries(0)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(200));
            let conn =
                ConnectionManager::new_lazy_with_config(client, manager_config).map_err(|e| fail(e.to_string()))?;
            shards.push(Shard::new(name, Connection::Direct(conn)));
        }
        Ok(RedisStore::assemble(config, shards, Some(ring), clock))
    }

    /// A store over the Redis Cluster of `config.cluster` (`storage.kind = "redis-cluster"`);
    /// connects lazily. Must run inside a Tokio runtime.
    pub fn cluster(config: &RedisConfig, clock: Clock) -> Result<RedisStore, MessageError> {
        let fail = |reason: String| MessageError::Redis { name: CLUSTER_SHARD.into(), reason };
        let conn = redis_cluster::connect(config).map_err(fail)?;
        let shards = vec![Shard::new(CLUSTER_SHARD, Connection::Cluster(conn))];
        Ok(RedisStore::assemble(config, shards, None, clock))
    }

    fn assemble(config: &RedisConfig, shards: Vec<Shard>, ring: Option<Ring>, clock: Clock) -> RedisStore {
        // WAIT's own timeout stays inside the call's deadline, so a missing replica is reported
        // as such (with a log line) rather than as a timed-out call.
        let wait_ms = (config.timeout.as_millis() / 2).max(1) as u64;
        RedisStore {
            shards,
            ring,
            prefix: config.key_prefix.clone(),
            store: config.store,
            timeout: config.timeout,
            wait: (config.wait_replicas > 0).then_some((config.wait_replicas, wait_ms)),
            clock,
        }
    }

    /// The source name whose server holds `key` (the ring over names and weights, as upstream);
    /// `cluster` for a Redis Cluster store.
    pub fn shard_name(&self, key: &str) -> &str {
        self.shard_of(key).map_or("", |i| self.shards[i].name.as_str())
    }

    fn shard_of(&self, key: &str) -> Option<usize> {
        match &self.ring {
            Some(ring) => ring.owner_index(key.as_bytes()),
            None => Some(0),
        }
    }

    fn shard(&self, key: &str) -> Result<&Shard, StoreError> {
        self.shard_of(key).map(|i| &self.shards[i]).ok_or(StoreError::Backend)
    }

    /// Splits `keys` into pipelines by position in `keys`, so failures come back in the caller's
    /// order: all of a shard's keys in one, or one key each in a Redis Cluster, where a pipeline
    /// must stay within one slot. Also returns the positions of bad keys and keys with no shard.
    fn batches(&self, keys: &[String]) -> (Vec<usize>, Batches) {
        let mut failed = Vec::new();
        let mut batches = Batches::new();
        for (pos, key) in keys.iter().enumerate() {
            match (check_key(key), self.shard_of(key)) {
                (Ok(()), Some(shard)) => {
                    let batch = if self.ring.is_some() { 0 } else { pos };
                    batches.entry((shard, batch)).or_default().push(pos)
                }
                _ => failed.push(pos),
            }
        }
        (failed, batches)
    }

    fn message_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn token_key(&self, key: &str) -> String {
        format!("{}{TOKEN_NAMESPACE}{key}", self.prefix)
    }

    fn rooms_key(&self, key: &str) -> String {
        format!("{}{ROOMS_NAMESPACE}{key}", self.prefix)
    }

    /// Runs one command under the deadline.
    async fn cmd<T: FromRedisValue>(&self, what: &'static str, shard: &Shard, cmd: &Cmd) -> Result<T, StoreError> {
        self.exec(what, shard, || {
            let mut conn = shard.conn.clone();
            async move { cmd.query_async(&mut conn).await }
        })
        .await
    }

    /// Runs one pipeline (one round trip) under the deadline.
    async fn pipe<T: FromRedisValue>(
        &self,
        what: &'static str,
        shard: &Shard,
        pipe: &Pipeline,
    ) -> Result<T, StoreError> {
        self.exec(what, shard, || {
            let mut conn = shard.conn.clone();
            async move { pipe.query_async(&mut conn).await }
        })
        .await
    }

    /// Runs `call` under the deadline; the one place Redis errors become `StoreError::Backend`.
    /// A call that failed on a broken connection is sent once more (every call here is
    /// idempotent), so the first call after a Redis restart uses the fresh connection instead of
    /// failing on the dead one. What the call learned about the shard is recorded here too, so
    /// pings and requests alike mark it up or down.
    async fn exec<T, F, Fut>(&self, what: &'static str, shard: &Shard, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match call().await {
                // READONLY: a Sentinel shard's master was demoted; the resend goes to the new one.
                Err(e) if e.is_unrecoverable_error() || e.is_io_error() || e.code() == Some("READONLY") => {
                    debug!(op = what, error = %e, "redis connection broke; trying once more");
                    call().await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(Ok(v)) => {
                shard.learn(true, &"");
                Ok(v)
            }
            Ok(Err(e)) => {
                debug!(op = what, error = %e, "redis call failed");
                shard.learn(reached(&e), &e);
                Err(StoreError::Backend)
            }
            Err(_) => {
                debug!(op = what, timeout = ?self.timeout, "redis call timed out");
                shard.learn(false, &format_args!("no answer within {:?}", self.timeout));
                Err(StoreError::Backend)
            }
        }
    }

    /// Appends the commands that store one message under `key` (always [`SAVE_COMMANDS`] of them).
    fn push_save(&self, pipe: &mut Pipeline, key: &str, member: &str, mid: Mid, expire_at: i64) {
        let k = self.message_key(key);
        pipe.cmd("ZADD").arg(&k).arg(mid).arg(member);
        // Keep the newest `store` members, as upstream did.
        pipe.cmd("ZREMRANGEBYRANK").arg(&k).arg(0).arg(-(self.store as i64) - 1);
        push_expire_at_least(pipe, &k, expire_at);
    }

    async fn save_private_io(&self, key: String, msg: String, mid: Mid, expire: u32) -> Result<(), StoreError> {
        check_key(&key)?;
        let compacted = prepare(&msg, mid)?;
        if expire == 0 {
            return Ok(());
        }
        let expire_at = self.clock.now() + i64::from(expire);
        let member = member::encode(&compacted, expire_at, mid);
        let mut pipe = redis::pipe();
        self.push_save(&mut pipe, &key, &member, mid, expire_at);
        let shard = self.shard(&key)?;
        let Some((replicas, _)) = self.wait else {
            return self.pipe("save_private", shard, &pipe).await;
        };
        self.push_wait(&mut pipe);
        let replies: Vec<Value> = self.pipe("save_private", shard, &pipe).await?;
        if self.replicated(shard, &replies, replicas) { Ok(()) } else { Err(StoreError::Backend) }
    }

    /// Appends `WAIT` when saves must reach replicas; it counts the replicas that have every
    /// write this connection sent before it.
    fn push_wait(&self, pipe: &mut Pipeline) {
        if let Some((replicas, ms)) = self.wait {
            pipe.cmd("WAIT").arg(replicas).arg(ms);
        }
    }

    /// Whether a save pipeline's last reply, its `WAIT`, counted at least `replicas` replicas.
    /// The message is on the master either way; a shortfall only withdraws the promise.
    fn replicated(&self, shard: &Shard, replies: &[Value], replicas: u32) -> bool {
        let confirmed = match replies.last() {
            Some(Value::Int(n)) => *n,
            _ => -1,
        };
        if confirmed < i64::from(replicas) {
            warn!(shard = %shard.name, confirmed, wanted = replicas, "too few replicas confirmed a save; answering failure");
            return false;
        }
        true
    }

    async fn save_privates_io(
        &self,
        keys: Vec<String>,
        msg: String,
        mid: Mid,
        expire: u32,
    ) -> Result<Vec<String>, StoreError> {
        let compacted = prepare(&msg, mid)?;
        let expire_at = self.clock.now() + i64::from(expire);
        let member = member::encode(&compacted, expire_at, mid);
        let mut failed = if expire > 0 {
            self.save_rows("save_privates", &keys, |_| (member.as_str(), mid, expire_at)).await
        } else {
            self.batches(&keys).0
        };
        failed.sort_unstable();
        Ok(failed.into_iter().map(|pos| keys[pos].clone()).collect())
    }

    async fn save_batch_io(&self, saves: Vec<Save>) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let now = self.clock.now();
        let mut answers = Vec::with_capacity(saves.len());
        // The saves that reach Redis: their keys, their rows, and where each answer goes.
        let (mut keys, mut rows, mut at) = (Vec::new(), Vec::new(), Vec::new());
        for (pos, save) in saves.into_iter().enumerate() {
            match check_key(&save.key).and_then(|()| prepare(&save.msg, save.mid)) {
                Err(e) => answers.push(Err(e)),
                Ok(_) if save.expire == 0 => answers.push(Ok(())),
                Ok(compacted) => {
                    let expire_at = now + i64::from(save.expire);
                    rows.push((member::encode(&compacted, expire_at, save.mid), save.mid, expire_at));
                    keys.push(save.key);
                    at.push(pos);
                    answers.push(Ok(()));
                }
            }
        }
        if !keys.is_empty() {
            for failed in self.save_rows("save_batch", &keys, |i| (rows[i].0.as_str(), rows[i].1, rows[i].2)).await {
                answers[at[failed]] = Err(StoreError::Backend);
            }
        }
        Ok(answers)
    }

    /// Saves row `row(pos)` (member, mid, expire time) under `keys[pos]` for every key, one
    /// pipeline per shard (per key in a Redis Cluster), the pipelines at once; returns the
    /// positions whose save failed, bad keys included.
    async fn save_rows<'a>(
        &self,
        op: &'static str,
        keys: &[String],
        row: impl Fn(usize) -> (&'a str, Mid, i64),
    ) -> Vec<usize> {
        let (mut failed, batches) = self.batches(keys);
        let rounds = batches.into_iter().map(|((shard, _), positions)| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &pos in &positions {
                let (member, mid, expire_at) = row(pos);
                self.push_save(&mut pipe, &keys[pos], member, mid, expire_at);
            }
            self.push_wait(&mut pipe);
            let saves = positions.len() * SAVE_COMMANDS;
            let shard = &self.shards[shard];
            async move {
                let answer = self.pipe::<Vec<Value>>(op, shard, &pipe).await;
                match answer {
                    Ok(replies) if replies.len() == saves + usize::from(self.wait.is_some()) => {
                        if let Some((replicas, _)) = self.wait
                            && !self.replicated(shard, &replies, replicas)
                        {
                            return positions;
                        }
                        positions
                            .iter()
                            .zip(replies[..saves].chunks(SAVE_COMMANDS))
                            .filter(|(_, r)| r.iter().any(|v| matches!(v, Value::ServerError(_))))
                            .map(|(&pos, _)| pos)
                            .collect()
                    }
                    Ok(_) | Err(_) => positions,
                }
            }
        });
        for shard_failed in join_all(rounds).await {
            failed.extend(shard_failed);
        }
        failed
    }

    async fn get_private_io(&self, key: String, after: Mid) -> Result<Vec<StoredMessage>, StoreError> {
        check_key(&key)?;
        check_mid(after)?;
        let k = self.message_key(&key);
        let shard = self.shard(&key)?;
        // Inclusive bound at the double nearest to `after` (Redis parses the integer text to it):
        // every mid > after has a score >= that double, even where scores round. `mid > after`
        // is then decided exactly below.
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(&k).arg(after).arg("+inf").arg("WITHSCORES");
        let rows: Vec<(Vec<u8>, f64)> = self.cmd("get_private", shard, &range).await?;
        let now = self.clock.now();
        let mut out = Vec::with_capacity(rows.len());
        let mut stale: Vec<Vec<u8>> = Vec::new();
        for (raw, score) in rows {
            match std::str::from_utf8(&raw).ok().and_then(|m| member::decode(m, score)) {
                Some(m) if m.expired(now) => stale.push(raw),
                Some(m) if m.mid > after => out.push(StoredMessage { msg: m.msg, mid: m.mid, gid: 0 }),
                Some(_) => {}
                None => {
                    warn!(key = %k, "removing a member that is not a gopush message");
                    stale.push(raw);
                }
            }
        }
        // Equal scores come back ordered by member bytes; the exact mids decide the order.
        out.sort_by_key(|m| m.mid);
        if !stale.is_empty() {
            let mut rem = redis::cmd("ZREM");
            rem.arg(&k).arg(&stale);
            // The answer does not depend on the clean-up; a failure leaves it for the next read.
            let _: Result<(), _> = self.cmd("remove_expired", shard, &rem).await;
        }
        Ok(out)
    }

    async fn del_private_io(&self, key: String) -> Result<(), StoreError> {
        check_key(&key)?;
        let mut del = redis::cmd("DEL");
        del.arg(self.message_key(&key));
        self.cmd("del_private", self.shard(&key)?, &del).await
    }

    async fn add_token_io(&self, key: String, token: String, life: u64) -> Result<(), StoreError> {
        check_key(&key)?;
        check_token(&token)?;
        let tk = self.token_key(&key);
        let shard = self.shard(&key)?;
        if life == 0 {
            // A zero lifetime revokes the token.
            let mut del = redis::cmd("HDEL");
            del.arg(&tk).arg(&token);
            return self.cmd("add_token", shard, &del).await;
        }
        let mut all = redis::cmd("HGETALL");
        all.arg(&tk);
        let fields: Vec<(String, String)> = self.cmd("add_token", shard, &all).await?;
        let now = self.clock.now();
        // Unreadable records count as expired so they get dropped.
        let gone = TokenRecord { expire: i64::MIN, life: 0 };
        let records: Vec<(String, TokenRecord)> = fields
            .into_iter()
            .map(|(t, v)| {
                let r = TokenRecord::decode(&v).unwrap_or(gone);
                (t, r)
            })
            .collect();
        let evict = to_evict(&records, &token, now);
        let record = TokenRecord::new(now, life);
        let mut pipe = redis::pipe();
        if !evict.is_empty() {
            pipe.cmd("HDEL").arg(&tk).arg(&evict);
        }
        pipe.cmd("HSET").arg(&tk).arg(&token).arg(record.encode());
        push_expire_at_least(&mut pipe, &tk, record.expire);
        self.pipe("add_token", shard, &pipe).await
    }

    async fn check_token_io(&self, key: String, token: String) -> Result<bool, StoreError> {
        check_key(&key)?;
        check_token(&token)?;
        let tk = self.token_key(&key);
        let shard = self.shard(&key)?;
        let mut get = redis::cmd("HGET");
        get.arg(&tk).arg(&token);
        let stored: Option<String> = self.cmd("check_token", shard, &get).await?;
        Ok(self.settle_token(&key, &token, stored).await)
    }

    /// Whether the stored token record `stored` is valid now: a valid one slides, a stale one is
    /// removed.
    async fn settle_token(&self, key: &str, token: &str, stored: Option<String>) -> bool {
        let Some(text) = stored else { return false };
        let tk = self.token_key(key);
        let Ok(shard) = self.shard(key) else { return false };
        let now = self.clock.now();
        match TokenRecord::decode(&text) {
            Some(r) if r.valid(now) => {
                let slid = r.slid(now);
                let mut pipe = redis::pipe();
                pipe.cmd("HSET").arg(&tk).arg(token).arg(slid.encode());
                push_expire_at_least(&mut pipe, &tk, slid.expire);
                if self.pipe::<()>("slide_token", shard, &pipe).await.is_err() {
                    // The token is valid now; only its extension was lost.
                    warn!(key = %key, "cannot extend a token's lifetime");
                }
                true
            }
            _ => {
                let mut del = redis::cmd("HDEL");
                del.arg(&tk).arg(token);
                let _: Result<(), _> = self.cmd("remove_token", shard, &del).await;
                false
            }
        }
    }

    /// Adds (`join`) or removes `room` for each key, one pipeline per batch in parallel; returns
    /// the keys that failed (bad, shard down, or a join over [`MAX_ROOMS_PER_KEY`]).
    async fn change_rooms_io(&self, keys: Vec<String>, room: String, join: bool) -> Result<Vec<String>, StoreError> {
        check_room(&room)?;
        let (mut failed, batches) = self.batches(&keys);
        let (what, per_key) = if join { ("join_rooms", 3) } else { ("leave_rooms", 1) };
        let rounds = batches.into_iter().map(|((shard, _), positions)| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &pos in &positions {
                let rk = self.rooms_key(&keys[pos]);
                if join {
                    pipe.cmd("SADD").arg(&rk).arg(&room);
                    pipe.cmd("SCARD").arg(&rk);
                    pipe.cmd("EXPIRE").arg(&rk).arg(ROOMS_LIFE);
                } else {
                    pipe.cmd("SREM").arg(&rk).arg(&room);
                }
            }
            let (shard, room, keys) = (&self.shards[shard], &room, &keys);
            async move {
                let replies = match self.pipe::<Vec<Value>>(what, shard, &pipe).await {
                    Ok(r) if r.len() == positions.len() * per_key => r,
                    Ok(_) | Err(_) => return positions,
                };
                let mut failed = Vec::new();
                let mut over = redis::pipe();
                for (&pos, r) in positions.iter().zip(replies.chunks(per_key)) {
                    if r.iter().any(|v| matches!(v, Value::ServerError(_))) {
                        failed.push(pos);
                    } else if join && matches!(r, [Value::Int(1), Value::Int(n), _] if *n as usize > MAX_ROOMS_PER_KEY)
                    {
                        // This join made the set too big: take it back.
                        over.cmd("SREM").arg(self.rooms_key(&keys[pos])).arg(room);
                        failed.push(pos);
                    }
                }
                if !failed.is_empty() && join {
                    let _: Result<(), _> = self.pipe("join_rooms", shard, &over).await;
                }
                failed
            }
        });
        for shard_failed in join_all(rounds).await {
            failed.extend(shard_failed);
        }
        failed.sort_unstable();
        Ok(failed.into_iter().map(|pos| keys[pos].clone()).collect())
    }

    async fn get_rooms_io(&self, key: String) -> Result<Vec<String>, StoreError> {
        check_key(&key)?;
        let mut members = redis::cmd("SMEMBERS");
        members.arg(self.rooms_key(&key));
        let mut rooms: Vec<String> = self.cmd("get_rooms", self.shard(&key)?, &members).await?;
        rooms.sort_unstable();
        Ok(rooms)
    }

    /// The key's rooms and its token's record in one round trip, then the token settled.
    async fn subscriber_io(&self, key: String, token: Option<String>) -> Result<Subscriber, StoreError> {
        check_key(&key)?;
        let Some(token) = token else {
            return Ok(Subscriber { token_valid: false, rooms: self.get_rooms_io(key).await? });
        };
        check_token(&token)?;
        let shard = self.shard(&key)?;
        let (mut rooms, stored): (Vec<String>, Option<String>) = if self.ring.is_some() {
            let mut pipe = redis::pipe();
            pipe.cmd("SMEMBERS").arg(self.rooms_key(&key));
            pipe.cmd("HGET").arg(self.token_key(&key)).arg(&token);
            self.pipe("subscriber", shard, &pipe).await?
        } else {
            // In a Redis Cluster the two keys may sit in different slots: two calls, side by side.
            let mut members = redis::cmd("SMEMBERS");
            members.arg(self.rooms_key(&key));
            let mut hget = redis::cmd("HGET");
            hget.arg(self.token_key(&key)).arg(&token);
            let (rooms, stored) =
                futures::future::join(self.cmd("subscriber", shard, &members), self.cmd("subscriber", shard, &hget))
                    .await;
            (rooms?, stored?)
        };
        rooms.sort_unstable();
        Ok(Subscriber { token_valid: self.settle_token(&key, &token, stored).await, rooms })
    }

    async fn ping_io(&self) -> StoreHealth {
        if self.ring.is_none() {
            return self.cluster_health().await;
        }
        let pings = self.shards.iter().map(|s| async move {
            let up = self.cmd::<String>("ping", s, &redis::cmd("PING")).await.is_ok();
            (s.name.clone(), up)
        });
        StoreHealth { backend: "redis".into(), shards: join_all(pings).await }
    }

    /// The cluster's masters as the cluster sees them, each also set in the shard gauge.
    async fn cluster_health(&self) -> StoreHealth {
        let shard = &self.shards[0];
        let nodes = self.cmd::<String>("ping", shard, redis::cmd("CLUSTER").arg("NODES")).await;
        let masters = match nodes {
            Ok(text) => redis_cluster::masters(&text),
            Err(_) => Vec::new(),
        };
        for (name, up) in &masters {
            gauge!(SHARD_UP, "shard" => name.clone()).set(if *up { 1.0 } else { 0.0 });
        }
        // No answer, or an answer without masters, is an unreachable cluster.
        let shards = if masters.is_empty() { vec![(CLUSTER_SHARD.to_string(), false)] } else { masters };
        StoreHealth { backend: "redis-cluster".into(), shards }
    }
}

/// Commands [`RedisStore::push_save`] appends per key.
const SAVE_COMMANDS: usize = 4;

/// Makes the key live at least until `at`: `NX` sets a first expiry (a new key, or one upstream
/// wrote without TTL), `GT` only ever extends it, so the key's TTL is its latest member's expiry.
fn push_expire_at_least(pipe: &mut Pipeline, key: &str, at: i64) {
    pipe.cmd("EXPIREAT").arg(key).arg(at).arg("NX");
    pipe.cmd("EXPIREAT").arg(key).arg(at).arg("GT");
}

impl MessageApi for RedisStore {
    fn save_private(&self, key: String, msg: String, mid: Mid, expire: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.save_private_io(key, msg, mid, expire))
    }

    fn save_privates(
        &self,
        keys: Vec<String>,
        msg: String,
        mid: Mid,
        expire: u32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.save_privates_io(keys, msg, mid, expire))
    }

    fn save_batch(&self, saves: Vec<Save>) -> BoxFuture<'_, Result<Vec<Result<(), StoreError>>, StoreError>> {
        Box::pin(self.save_batch_io(saves))
    }

    fn get_private(&self, key: String, after: Mid) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(self.get_private_io(key, after))
    }

    fn del_private(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.del_private_io(key))
    }

    fn add_token(&self, key: String, token: String, expire_secs: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.add_token_io(key, token, expire_secs))
    }

    fn check_token(&self, key: String, token: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(self.check_token_io(key, token))
    }

    fn ping(&self) -> BoxFuture<'_, Result<StoreHealth, StoreError>> {
        Box::pin(async move { Ok(self.ping_io().await) })
    }

    fn join_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.change_rooms_io(keys, room, true))
    }

    fn leave_rooms(&self, keys: Vec<String>, room: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.change_rooms_io(keys, room, false))
    }

    fn get_rooms(&self, key: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.get_rooms_io(key))
    }

    fn subscriber(&self, key: String, token: Option<String>) -> BoxFuture<'_, Result<Subscriber, StoreError>> {
        Box::pin(self.subscriber_io(key, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisSource;

    fn config(names: &[(&str, u32)]) -> RedisConfig {
        RedisConfig {
            source: names
                .iter()
                .map(|(n, w)| RedisSource {
                    name: n.to_string(),
                    weight: *w,
                    addr: "127.0.0.1:1".into(),
                    password: String::new(),
                    ..RedisSource::default()
                })
                .collect(),
            ..RedisConfig::default()
        }
    }

    #[tokio::test]
    async fn keys_land_on_upstreams_shard() {
        // docs/architecture.md#ring-golden-vectors: node1 w1, node2 w2, node3 w1; the source order must not matter.
        for order in [ring::golden::MEMBERS, [("node3", 1), ("node1", 1), ("node2", 2)]] {
            let store = RedisStore::new(&config(&order)).unwrap();
            for (key, node) in ring::golden::OWNERS {
                assert_eq!(store.shard_name(key), node, "key {key:?}");
            }
        }
    }

    #[tokio::test]
    async fn prefixes_apply_to_redis_keys_not_to_the_ring() {
        let mut c = config(&[("node1", 1), ("node2", 2), ("node3", 1)]);
        c.key_prefix = "gp:".into();
        let store = RedisStore::new(&c).unwrap();
        assert_eq!(store.message_key("Terry-Mao"), "gp:Terry-Mao");
        assert_eq!(store.token_key("Terry-Mao"), "gp:gopush-token:Terry-Mao");
        assert_eq!(store.shard_name("Terry-Mao"), "node1");
    }
}
