//! `push` and `mpush`: subscribe K keys, then publish through the admin API
//! (`/1/admin/push/private` one key per request, or `/1/admin/push/mprivate` B keys per request)
//! at a target rate or as fast as C publishers can, for a duration; then wait for stragglers and
//! report accepted pushes, deliveries, losses and push-to-receive latency. Every body carries its
//! send time and sequence (see `payload.rs`), so latency and loss are measured per message.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::conns::{MAX_CONCURRENCY, MAX_DURATION, PER_PROCESS, default_key_prefix};
use crate::counts::{Counts, format_counts};
use crate::error::{BenchError, Result};
use crate::histogram::{AtomicHistogram, LatencySummary};
use crate::http::HttpClient;
use crate::payload;
use crate::subscribe::{Failure, Proto, STEP_TIMEOUT, Session, SubOptions, lookup, subscribe};
use crate::target::{HttpTarget, loopback_addr};
use crate::tracker::{Delivery, Tally, Tracker};
use crate::wire::encode_query;

/// Largest message body, bytes.
pub const MAX_SIZE: usize = 64 * 1024;
/// Largest mprivate batch.
pub const MAX_BATCH: usize = 10_000;
/// How long one admin request may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a `push` or `mpush` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PushConfig {
    /// Web public base URL (asked for each key's comet unless `comet` is set).
    pub web: String,
    /// Web admin base URL (where pushes go).
    pub admin: String,
    /// Subscribe straight at this comet address instead of asking web.
    pub comet: Option<String>,
    /// TCP or WebSocket subscribers.
    pub proto: Proto,
    /// Subscribed keys, one connection each.
    pub keys: u64,
    /// Publishing time, seconds.
    pub duration_secs: u64,
    /// Admin requests per second in total; 0 = as fast as possible.
    pub rate: u64,
    /// Concurrent publishers (one HTTP connection each).
    pub concurrency: usize,
    /// Heartbeat of the subscribers, seconds.
    pub heartbeat_secs: u64,
    /// Version sent by subscribers (new message format).
    pub ver: Option<String>,
    /// Message body size, bytes.
    pub size: usize,
    /// `expire` of each push, seconds (0 = online only).
    pub expire: u64,
    /// Keys per request: 0 = `push/private`, B ≥ 1 = `push/mprivate` batches of B keys.
    pub batch: usize,
    /// Longest wait for outstanding deliveries after publishing stops, seconds.
    pub drain_secs: u64,
    /// Key prefix.
    pub key_prefix: String,
    /// Print a progress line each second to stderr.
    pub progress: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            web: "http://127.0.0.1:8090".to_string(),
            admin: "http://127.0.0.1:8091".to_string(),
            comet: None,
            proto: Proto::Tcp,
            keys: 1000,
            duration_secs: 10,
            rate: 0,
            concurrency: 16,
            heartbeat_secs: 30,
            ver: None,
            size: 64,
            expire: 0,
            batch: 0,
            drain_secs: 5,
            key_prefix: default_key_prefix(),
            progress: false,
        }
    }
}

impl PushConfig {
    /// Checks ranges and the loopback rule; returns the comet address if given.
    pub fn validate(&self) -> Result<Option<SocketAddr>> {
        let bad = |m: String| Err(BenchError::Config(m));
        if self.keys == 0 || self.keys > PER_PROCESS {
            return bad(format!("--keys must be 1..={PER_PROCESS} (subscribers live in one process)"));
        }
        if self.duration_secs == 0 || self.duration_secs > MAX_DURATION || self.drain_secs > 120 {
            return bad(format!("--duration must be 1..={MAX_DURATION} s, --drain <= 120 s"));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!("--concurrency must be 1..={MAX_CONCURRENCY}"));
        }
        if !(30..=3600).contains(&self.heartbeat_secs) {
            return bad("--heartbeat must be 30..=3600 s".into());
        }
        if self.size > MAX_SIZE || self.rate > 10_000_000 || self.expire > u32::MAX as u64 {
            return bad(format!("--size <= {MAX_SIZE}, --rate <= 10M, --expire <= 2^32-1"));
        }
        if self.batch > MAX_BATCH || self.batch as u64 > self.keys {
            return bad(format!("--batch must be <= --keys and <= {MAX_BATCH}"));
        }
        HttpTarget::parse(&self.web)?;
        HttpTarget::parse(&self.admin)?;
        self.comet.as_deref().map(loopback_addr).transpose()
    }

    /// Hard time limit for the whole run, seconds.
    pub fn deadline_secs(&self) -> u64 {
        // Subscribing K keys, publishing, draining, closing, with room to spare.
        120 + self.duration_secs + self.drain_secs + 30
    }

    fn mode(&self) -> &'static str {
        if self.batch == 0 { "private" } else { "mprivate" }
    }
}

/// The result of a `push` or `mpush` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushReport {
    /// `private` or `mprivate`.
    pub mode: String,
    /// Keys per request (1 for private).
    pub batch: u64,
    /// Subscriber protocol.
    pub proto: Proto,
    /// Keys asked for.
    pub keys: u64,
    /// Keys actually subscribed (pushes go to these only).
    pub keys_subscribed: u64,
    /// Failed subscriptions, and subscribers dropped during the run (`held_*`), by kind.
    pub subscribe_failures: BTreeMap<String, u64>,
    /// Message body size, bytes.
    pub size: usize,
    /// Target rate (0 = as fast as possible).
    pub rate: u64,
    /// Publishers.
    pub concurrency: usize,
    /// Length of the publishing phase, seconds.
    pub publish_secs: f64,
    /// Admin requests sent.
    pub requests: u64,
    /// Requests answered `ret 0`.
    pub requests_ok: u64,
    /// `ret 0` answers per second of publishing.
    pub accepted_requests_per_sec: f64,
    /// Non-zero rets (`ret_1001`), HTTP statuses (`http_500`) and transport errors, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Keys reported in `fk` (mprivate).
    pub failed_keys: u64,
    /// Deliveries the server accepted, and their fate.
    pub tally: Tally,
    /// Delivered messages per second, from the first push to the last delivery.
    pub deliveries_per_sec: f64,
    /// A message arrived twice on the same key.
    pub duplicates: u64,
    /// A message arrived on a key it was not pushed to.
    pub misrouted: u64,
    /// Messages that were not the bench's (no stamp).
    pub foreign: u64,
    /// Push-to-receive latency of delivered messages.
    pub latency: LatencySummary,
    /// Admin request round trip.
    pub request_latency: LatencySummary,
    /// Publishing stopped early because the tracking capacity was reached.
    pub capped: bool,
}

impl std::fmt::Display for PushReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = self.proto.name();
        let rate = if self.rate == 0 { "max".to_string() } else { format!("{}/s", self.rate) };
        writeln!(
            f,
            "{}: {} keys ({} subscribed, {proto}), batch {}, {} B bodies, rate {rate}, {} publishers, {:.1} s",
            self.mode, self.keys, self.keys_subscribed, self.batch, self.size, self.concurrency, self.publish_secs
        )?;
        writeln!(
            f,
            "  requests {} ok {} = {:.0} accepted requests/s; errors: {}; failed keys {}",
            self.requests,
            self.requests_ok,
            self.accepted_requests_per_sec,
            format_counts(&self.errors),
            self.failed_keys
        )?;
        let t = &self.tally;
        writeln!(
            f,
            "  deliveries: accepted {} delivered {} lost {} ({:.0} delivered/s); unconfirmed {} duplicates {} misrouted {}{}",
            t.accepted,
            t.delivered,
            t.lost,
            self.deliveries_per_sec,
            t.unconfirmed,
            self.duplicates,
            self.misrouted,
            if self.capped { " [capped]" } else { "" }
        )?;
        let l = &self.latency;
        writeln!(
            f,
            "  push-to-receive: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (n={})",
            l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
        )?;
        let r = &self.request_latency;
        writeln!(f, "  admin request:   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", r.p50_ms, r.p99_ms, r.max_ms)?;
        writeln!(f, "  subscribe failures: {}", format_counts(&self.subscribe_failures))
    }
}

#[derive(Deserialize)]
struct PushReply {
    ret: i64,
    data: Option<PushData>,
}

#[derive(Deserialize)]
struct PushData {
    #[serde(default)]
    fk: Vec<String>,
}

/// Unix time in nanoseconds.
pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

struct Shared {
    tracker: Tracker,
    latency: AtomicHistogram,
    request_latency: AtomicHistogram,
    sub_failures: Counts,
    errors: Counts,
    requests: AtomicU64,
    requests_ok: AtomicU64,
    failed_keys: AtomicU64,
    foreign: AtomicU64,
    last_delivery: AtomicU64,
    next_seq: AtomicU64,
    capped: AtomicBool,
}

/// Runs `push` (batch 0) or `mpush` (batch ≥ 1) and reports.
pub async fn run_push(cfg: PushConfig) -> Result<PushReport> {
    let deadline = cfg.deadline_secs();
    tokio::time::timeout(Duration::from_secs(deadline), run_push_inner(cfg))
        .await
        .map_err(|_| BenchError::Deadline(deadline))?
}

async fn run_push_inner(cfg: PushConfig) -> Result<PushReport> {
    let comet = cfg.validate()?;
    let web = HttpTarget::parse(&cfg.web)?;
    let admin = HttpTarget::parse(&cfg.admin)?;
    let sub_opts = Arc::new(SubOptions {
        proto: cfg.proto,
        heartbeat_secs: cfg.heartbeat_secs,
        ver: cfg.ver.clone(),
        bind_ip: None,
        read_buf: (cfg.size + 128).clamp(512, 16 * 1024),
    });
    let sub_failures = Counts::default();
    let sessions =
        subscribe_all(cfg.keys, &cfg.key_prefix, cfg.concurrency, comet, &web, &sub_opts, &sub_failures).await;
    if sessions.is_empty() {
        return Err(BenchError::Config(format!(
            "no key could be subscribed: {}",
            format_counts(&sub_failures.snapshot())
        )));
    }
    let keys: Arc<Vec<String>> = Arc::new(sessions.iter().map(|(k, _)| k.clone()).collect());
    let n_keys = keys.len() as u64;
    let batch = cfg.batch.max(1) as u64;
    if batch > n_keys {
        return Err(BenchError::Config(format!("only {n_keys} keys subscribed, fewer than --batch {batch}")));
    }
    let max_pushes = if cfg.rate > 0 { cfg.rate * (cfg.duration_secs + 1) + 1 } else { u64::MAX };
    let shared = Arc::new(Shared {
        tracker: Tracker::new(n_keys, batch, max_pushes),
        latency: AtomicHistogram::new(),
        request_latency: AtomicHistogram::new(),
        sub_failures,
        errors: Counts::default(),
        requests: AtomicU64::new(0),
        requests_ok: AtomicU64::new(0),
        failed_keys: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        last_delivery: AtomicU64::new(0),
        next_seq: AtomicU64::new(0),
        capped: AtomicBool::new(false),
    });

    // Subscribers: hold every session, feeding deliveries into the tracker.
    let stop_subs = CancellationToken::new();
    let mut subs = JoinSet::new();
    let heartbeat = Duration::from_secs(cfg.heartbeat_secs);
    for (idx, (_, session)) in sessions.into_iter().enumerate() {
        let (shared, stop) = (shared.clone(), stop_subs.clone());
        let first_hb = heartbeat.mul_f64(0.5 + (idx % 1000) as f64 / 2000.0);
        subs.spawn(async move {
            let key = idx as u64;
            let mut on_message = |json: &[u8]| {
                let now = unix_nanos();
                match payload::parse_pushed(json) {
                    Some(stamp) => {
                        if shared.tracker.deliver(key, stamp.s) == Delivery::New {
                            shared.latency.record(now.saturating_sub(stamp.t));
                            shared.last_delivery.fetch_max(now, Ordering::Relaxed);
                        }
                    }
                    None => {
                        shared.foreign.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            if let Err(Failure(kind)) = session.hold(heartbeat, first_hb, &stop, &mut on_message).await {
                shared.sub_failures.add(&format!("held_{kind}"));
            }
        });
    }

    // Progress ticker.
    let stop_ticker = CancellationToken::new();
    if cfg.progress {
        let (shared, stop, mode) = (shared.clone(), stop_ticker.clone(), cfg.mode());
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = (0, 0);
            while !stop.is_cancelled() {
                tick.tick().await;
                let (acc, del) = shared.tracker.counters();
                eprintln!(
                    "[{:>4}s] {mode}: requests {} ok {} accepted {acc} (+{}/s) delivered {del} (+{}/s) errors {}",
                    start.elapsed().as_secs(),
                    shared.requests.load(Ordering::Relaxed),
                    shared.requests_ok.load(Ordering::Relaxed),
                    acc - last.0,
                    del - last.1,
                    shared.errors.total()
                );
                last = (acc, del);
            }
        });
    }

    // Publishers.
    let start = Instant::now();
    let start_nanos = unix_nanos();
    let end = start + Duration::from_secs(cfg.duration_secs);
    let mut pubs = JoinSet::new();
    for _ in 0..cfg.concurrency {
        let (shared, keys, admin, cfg) = (shared.clone(), keys.clone(), admin.clone(), cfg.clone());
        pubs.spawn(async move { publish(&cfg, shared, &keys, admin, start, end).await });
    }
    while pubs.join_next().await.is_some() {}
    let publish_secs = start.elapsed().as_secs_f64();

    // Drain: wait until every accepted delivery arrived, or the drain time is up.
    let drain_end = Instant::now() + Duration::from_secs(cfg.drain_secs);
    while Instant::now() < drain_end {
        let (acc, del) = shared.tracker.counters();
        if del >= acc {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    stop_subs.cancel();
    stop_ticker.cancel();
    if tokio::time::timeout(Duration::from_secs(10), async { while subs.join_next().await.is_some() {} }).await.is_err()
    {
        subs.abort_all();
    }

    let tally = shared.tracker.tally();
    let (duplicates, misrouted) = shared.tracker.anomalies();
    let last = shared.last_delivery.load(Ordering::Relaxed);
    let delivery_secs = last.saturating_sub(start_nanos) as f64 / 1e9;
    let requests_ok = shared.requests_ok.load(Ordering::Relaxed);
    Ok(PushReport {
        mode: cfg.mode().to_string(),
        batch,
        proto: cfg.proto,
        keys: cfg.keys,
        keys_subscribed: n_keys,
        subscribe_failures: shared.sub_failures.snapshot(),
        size: cfg.size,
        rate: cfg.rate,
        concurrency: cfg.concurrency,
        publish_secs,
        requests: shared.requests.load(Ordering::Relaxed),
        requests_ok,
        accepted_requests_per_sec: requests_ok as f64 / publish_secs.max(1e-9),
        errors: shared.errors.snapshot(),
        failed_keys: shared.failed_keys.load(Ordering::Relaxed),
        tally,
        deliveries_per_sec: if delivery_secs > 0.0 { tally.delivered as f64 / delivery_secs } else { 0.0 },
        duplicates,
        misrouted,
        foreign: shared.foreign.load(Ordering::Relaxed),
        latency: shared.latency.snapshot().summary_ms(),
        request_latency: shared.request_latency.snapshot().summary_ms(),
        capped: shared.capped.load(Ordering::Relaxed),
    })
}

/// Subscribes keys `<key_prefix>0..keys` (up to 256 at a time); returns the sessions that got
/// `+h`, with their keys, in key order.
pub(crate) async fn subscribe_all(
    keys: u64,
    key_prefix: &str,
    concurrency: usize,
    comet: Option<SocketAddr>,
    web: &HttpTarget,
    opts: &Arc<SubOptions>,
    failures: &Counts,
) -> Vec<(String, Session)> {
    let sem = Arc::new(Semaphore::new(256.min(concurrency.max(64))));
    let mut tasks = JoinSet::new();
    for i in 0..keys {
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        let key = format!("{key_prefix}{i}");
        let (opts, web) = (opts.clone(), web.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let addr = match comet {
                Some(a) => a,
                None => {
                    let mut client = HttpClient::new(web, None, STEP_TIMEOUT);
                    lookup(&mut client, &key, opts.proto).await?
                }
            };
            let session = subscribe(addr, &key, &opts).await?;
            Ok::<_, Failure>((i, key, session))
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(s)) => out.push(s),
            Ok(Err(Failure(kind))) => failures.add(&kind),
            Err(_) => failures.add("task_panicked"),
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, k, s)| (k, s)).collect()
}

/// One publisher: takes sequence numbers until the end time, paced to the target rate.
async fn publish(
    cfg: &PushConfig,
    shared: Arc<Shared>,
    keys: &[String],
    admin: HttpTarget,
    start: Instant,
    end: Instant,
) {
    let mut client = HttpClient::new(admin, None, PUSH_TIMEOUT);
    let batch = cfg.batch.max(1) as u64;
    let max_pushes = shared.tracker.max_pushes();
    loop {
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        if seq >= max_pushes {
            shared.capped.store(true, Ordering::Relaxed);
            return;
        }
        if cfg.rate > 0 {
            let at = start + Duration::from_secs_f64(seq as f64 / cfg.rate as f64);
            if at >= end {
                return;
            }
            sleep_until(at).await;
        } else if Instant::now() >= end {
            return;
        }
        let body = payload::body(unix_nanos(), seq, cfg.size);
        let targets: Vec<u64> = shared.tracker.keys_of(seq).collect();
        let t0 = Instant::now();
        let resp = if cfg.batch == 0 {
            let key = &keys[targets[0] as usize];
            let path = format!("/1/admin/push/private?key={}&expire={}", encode_query(key), cfg.expire);
            client.post(&path, "application/json", body.as_bytes()).await
        } else {
            let names: Vec<&str> = targets.iter().map(|&k| keys[k as usize].as_str()).collect();
            let m = payload::mprivate_body(&body, &names);
            let path = format!("/1/admin/push/mprivate?expire={}", cfg.expire);
            client.post(&path, "application/json", m.as_bytes()).await
        };
        shared.request_latency.record(t0.elapsed().as_nanos() as u64);
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                shared.errors.add(&format!("io_{:?}", e.kind()));
                continue;
            }
        };
        if resp.status != 200 {
            shared.errors.add(&format!("http_{}", resp.status));
            continue;
        }
        let reply: PushReply = match serde_json::from_slice(&resp.body) {
            Ok(r) => r,
            Err(_) => {
                shared.errors.add("bad_json");
                continue;
            }
        };
        if reply.ret != 0 {
            shared.errors.add(&format!("ret_{}", reply.ret));
            continue;
        }
        shared.requests_ok.fetch_add(1, Ordering::Relaxed);
        let failed: HashSet<&str> = reply.data.iter().flat_map(|d| d.fk.iter().map(String::as_str)).collect();
        shared.failed_keys.fetch_add(failed.len() as u64, Ordering::Relaxed);
        for (j, &k) in targets.iter().enumerate().take(batch as usize) {
            if !failed.contains(keys[k as usize].as_str()) {
                shared.tracker.accept(seq, j as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert_eq!(PushConfig::default().validate().unwrap(), None);
        for bad in [
            PushConfig { keys: 0, ..Default::default() },
            PushConfig { keys: PER_PROCESS + 1, ..Default::default() },
            PushConfig { duration_secs: 0, ..Default::default() },
            PushConfig { batch: 1001, ..Default::default() },
            PushConfig { size: MAX_SIZE + 1, ..Default::default() },
        ] {
            assert!(matches!(bad.validate(), Err(BenchError::Config(_))), "{bad:?}");
        }
        let remote = PushConfig { admin: "http://172.16.0.1:8091".into(), ..Default::default() };
        assert!(matches!(remote.validate(), Err(BenchError::NotLoopback(_))));
    }

    #[test]
    fn replies_parse() {
        let r: PushReply = serde_json::from_str(r#"{"data":{"fk":["k2"]},"ret":0}"#).unwrap();
        assert_eq!((r.ret, r.data.unwrap().fk), (0, vec!["k2".to_string()]));
        let r: PushReply = serde_json::from_str(r#"{"ret":1001}"#).unwrap();
        assert!(r.ret == 1001 && r.data.is_none());
    }
}
