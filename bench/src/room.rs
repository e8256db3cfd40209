//! `room`: N subscribers joined to one room (spread over the comets by the ring), then M room
//! pushes (`/1/admin/push/room`) or broadcasts (`/1/admin/push/all`) at a fixed rate; reports
//! deliveries per second, the time until the last member got each message (p50/p99) and losses.
//! Every body carries its send time and sequence (`payload.rs`), as in `push`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::conns::{MAX_DURATION, PER_PROCESS, default_key_prefix};
use crate::counts::{Counts, format_counts};
use crate::error::{BenchError, Result};
use crate::histogram::{AtomicHistogram, LatencySummary};
use crate::http::HttpClient;
use crate::payload;
use crate::push::{MAX_SIZE, subscribe_all, unix_nanos};
use crate::subscribe::{Failure, Proto, SubOptions};
use crate::target::{HttpTarget, loopback_addr};
use crate::wire::encode_query;

/// Most messages one run publishes (each is tracked).
pub const MAX_MESSAGES: u64 = 100_000;
/// Keys per join request (the API's limit).
const JOIN_BATCH: usize = 10_000;
/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a `room` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    /// Web public base URL (asked for each key's comet unless `comet` is set).
    pub web: String,
    /// Web admin base URL.
    pub admin: String,
    /// Subscribe straight at this comet address instead of asking web.
    pub comet: Option<String>,
    /// TCP or WebSocket subscribers.
    pub proto: Proto,
    /// Members: subscribed keys, one connection each, all in the room.
    pub members: u64,
    /// Messages to publish.
    pub messages: u64,
    /// Messages per second.
    pub rate: u64,
    /// `push/all` instead of `push/room` (members then need not join).
    pub broadcast: bool,
    /// The room's name.
    pub room: String,
    /// Heartbeat of the subscribers, seconds.
    pub heartbeat_secs: u64,
    /// Version sent by subscribers (new message format).
    pub ver: Option<String>,
    /// Message body size, bytes.
    pub size: usize,
    /// Longest wait for outstanding deliveries after publishing, seconds.
    pub drain_secs: u64,
    /// Key prefix.
    pub key_prefix: String,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            web: "http://127.0.0.1:8090".to_string(),
            admin: "http://127.0.0.1:8091".to_string(),
            comet: None,
            proto: Proto::Tcp,
            members: 1000,
            messages: 100,
            rate: 10,
            broadcast: false,
            room: "bench".to_string(),
            heartbeat_secs: 30,
            ver: None,
            size: 64,
            drain_secs: 5,
            key_prefix: default_key_prefix(),
        }
    }
}

impl RoomConfig {
    /// Checks ranges and the loopback rule.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BenchError::Config(m));
        if self.members == 0 || self.members > PER_PROCESS {
            return bad(format!("--members must be 1..={PER_PROCESS}"));
        }
        if self.messages == 0 || self.messages > MAX_MESSAGES || self.rate == 0 || self.rate > 100_000 {
            return bad(format!("--messages must be 1..={MAX_MESSAGES}, --rate 1..=100000"));
        }
        if self.messages / self.rate > MAX_DURATION || self.drain_secs > 120 || self.size > MAX_SIZE {
            return bad(format!("at most {MAX_DURATION} s of publishing, --drain <= 120, --size <= {MAX_SIZE}"));
        }
        if self.room.is_empty() || self.room.len() > 64 || !(30..=3600).contains(&self.heartbeat_secs) {
            return bad("--room must be 1..=64 bytes, --heartbeat 30..=3600 s".into());
        }
        HttpTarget::parse(&self.web)?;
        HttpTarget::parse(&self.admin)?;
        self.comet.as_deref().map(loopback_addr).transpose()?;
        Ok(())
    }
}

/// The result of a `room` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomReport {
    /// `room` or `broadcast`.
    pub mode: String,
    /// Subscriber protocol.
    pub proto: Proto,
    /// Members asked for, and subscribed.
    pub members: u64,
    /// Members actually subscribed (and joined).
    pub members_subscribed: u64,
    /// Failed subscriptions, and subscribers dropped during the run (`held_*`), by kind.
    pub subscribe_failures: BTreeMap<String, u64>,
    /// Messages published, and answered `ret 0`.
    pub messages: u64,
    /// Messages answered `ret 0` with no failed comet.
    pub messages_ok: u64,
    /// Non-zero rets, HTTP statuses, transport errors and comets reported failed, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Deliveries expected: accepted messages × subscribed members.
    pub expected: u64,
    /// Deliveries that arrived.
    pub delivered: u64,
    /// Expected deliveries that did not arrive within the drain time.
    pub lost: u64,
    /// Delivered messages per second, from the first push to the last delivery.
    pub deliveries_per_sec: f64,
    /// Per message: from its push until its last member got it.
    pub time_to_last_member: LatencySummary,
    /// Members divided by the median time to the last member: how fast one message fans out.
    pub fanout_per_sec: f64,
    /// Per delivery: push to receive.
    pub latency: LatencySummary,
    /// Admin request round trip.
    pub request_latency: LatencySummary,
}

impl std::fmt::Display for RoomReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} members ({} subscribed, {}), {} messages ({} ok); errors: {}",
            self.mode,
            self.members,
            self.members_subscribed,
            self.proto.name(),
            self.messages,
            self.messages_ok,
            format_counts(&self.errors)
        )?;
        writeln!(
            f,
            "  deliveries: expected {} delivered {} lost {} ({:.0} delivered/s)",
            self.expected, self.delivered, self.lost, self.deliveries_per_sec
        )?;
        let t = &self.time_to_last_member;
        writeln!(
            f,
            "  time to last member: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({:.0} deliveries/s within one message)",
            t.p50_ms, t.p99_ms, t.max_ms, self.fanout_per_sec
        )?;
        let l = &self.latency;
        writeln!(f, "  push-to-receive:     p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", l.p50_ms, l.p99_ms, l.max_ms)?;
        let r = &self.request_latency;
        writeln!(f, "  admin request:       p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", r.p50_ms, r.p99_ms, r.max_ms)?;
        writeln!(f, "  subscribe failures: {}", format_counts(&self.subscribe_failures))
    }
}

#[derive(Deserialize)]
struct Reply {
    ret: i64,
    data: Option<ReplyData>,
}

#[derive(Deserialize)]
struct ReplyData {
    #[serde(default)]
    failed: Vec<String>,
}

/// Per message: send time, deliveries, last arrival.
struct Tracked {
    sent: Vec<AtomicU64>,
    arrived: Vec<AtomicU64>,
    last: Vec<AtomicU64>,
    latency: AtomicHistogram,
    last_delivery: AtomicU64,
}

/// Runs `room` and reports.
pub async fn run_room(cfg: RoomConfig) -> Result<RoomReport> {
    let deadline = 180 + cfg.messages / cfg.rate.max(1) + cfg.drain_secs;
    tokio::time::timeout(Duration::from_secs(deadline), run_room_inner(cfg))
        .await
        .map_err(|_| BenchError::Deadline(deadline))?
}

async fn run_room_inner(cfg: RoomConfig) -> Result<RoomReport> {
    cfg.validate()?;
    let comet = cfg.comet.as_deref().map(loopback_addr).transpose()?;
    let web = HttpTarget::parse(&cfg.web)?;
    let admin = HttpTarget::parse(&cfg.admin)?;
    let opts = Arc::new(SubOptions {
        proto: cfg.proto,
        heartbeat_secs: cfg.heartbeat_secs,
        ver: cfg.ver.clone(),
        bind_ip: None,
        read_buf: (cfg.size + 160).clamp(512, 16 * 1024),
    });
    let sub_failures = Arc::new(Counts::default());
    let sessions = subscribe_all(cfg.members, &cfg.key_prefix, 256, comet, &web, &opts, &sub_failures).await;
    if sessions.is_empty() {
        return Err(BenchError::Config(format!("no member subscribed: {}", format_counts(&sub_failures.snapshot()))));
    }
    let errors = Counts::default();
    let mut client = HttpClient::new(admin, None, REQUEST_TIMEOUT);
    if !cfg.broadcast {
        let keys: Vec<&str> = sessions.iter().map(|(k, _)| k.as_str()).collect();
        for chunk in keys.chunks(JOIN_BATCH) {
            let body = serde_json::json!({"k": chunk.join(","), "r": cfg.room}).to_string();
            let ok = client.post("/1/admin/room/join", "application/json", body.as_bytes()).await.ok();
            let reply = ok.and_then(|r| serde_json::from_slice::<Reply>(&r.body).ok());
            if reply.is_none_or(|r| r.ret != 0) {
                return Err(BenchError::Config("the room join was refused (does the server have rooms?)".into()));
            }
        }
    }
    let n = sessions.len() as u64;
    let zero = |_| AtomicU64::new(0);
    let tracked = Arc::new(Tracked {
        sent: (0..cfg.messages).map(zero).collect(),
        arrived: (0..cfg.messages).map(zero).collect(),
        last: (0..cfg.messages).map(zero).collect(),
        latency: AtomicHistogram::new(),
        last_delivery: AtomicU64::new(0),
    });

    let stop = CancellationToken::new();
    let mut subs = JoinSet::new();
    let heartbeat = Duration::from_secs(cfg.heartbeat_secs);
    for (idx, (_, session)) in sessions.into_iter().enumerate() {
        let (tracked, stop, failures) = (tracked.clone(), stop.clone(), sub_failures.clone());
        let first_hb = heartbeat.mul_f64(0.5 + (idx % 1000) as f64 / 2000.0);
        subs.spawn(async move {
            let mut on_message = |json: &[u8]| {
                let now = unix_nanos();
                let Some(stamp) = payload::parse_pushed(json) else { return };
                let Some(i) = usize::try_from(stamp.s).ok().filter(|&i| i < tracked.arrived.len()) else { return };
                tracked.arrived[i].fetch_add(1, Ordering::Relaxed);
                tracked.last[i].fetch_max(now, Ordering::Relaxed);
                tracked.latency.record(now.saturating_sub(stamp.t));
                tracked.last_delivery.fetch_max(now, Ordering::Relaxed);
            };
            if let Err(Failure(kind)) = session.hold(heartbeat, first_hb, &stop, &mut on_message).await {
                failures.add(&format!("held_{kind}"));
            }
        });
    }

    // Publish at the rate, one request at a time (a room push answers once queued).
    let request_latency = AtomicHistogram::new();
    let start = Instant::now();
    let start_nanos = unix_nanos();
    let mut accepted = Vec::new();
    let path = if cfg.broadcast {
        "/1/admin/push/all".to_string()
    } else {
        format!("/1/admin/push/room?room={}", encode_query(&cfg.room))
    };
    for seq in 0..cfg.messages {
        sleep_until(start + Duration::from_secs_f64(seq as f64 / cfg.rate as f64)).await;
        let t = unix_nanos();
        tracked.sent[seq as usize].store(t, Ordering::Relaxed);
        let body = payload::body(t, seq, cfg.size);
        let t0 = Instant::now();
        let resp = client.post(&path, "application/json", body.as_bytes()).await;
        request_latency.record(t0.elapsed().as_nanos() as u64);
        let reply = match resp {
            Err(e) => {
                errors.add(&format!("io_{:?}", e.kind()));
                continue;
            }
            Ok(r) if r.status != 200 => {
                errors.add(&format!("http_{}", r.status));
                continue;
            }
            Ok(r) => match serde_json::from_slice::<Reply>(&r.body) {
                Ok(reply) => reply,
                Err(_) => {
                    errors.add("bad_json");
                    continue;
                }
            },
        };
        if reply.ret != 0 {
            errors.add(&format!("ret_{}", reply.ret));
            continue;
        }
        let failed = reply.data.map(|d| d.failed).unwrap_or_default();
        failed.iter().for_each(|node| errors.add(&format!("comet_failed_{node}")));
        if failed.is_empty() {
            accepted.push(seq as usize);
        }
    }

    // Drain until every accepted message reached every member, or the drain time is up.
    let expected = accepted.len() as u64 * n;
    let delivered_of = |t: &Tracked| accepted.iter().map(|&i| t.arrived[i].load(Ordering::Relaxed).min(n)).sum::<u64>();
    let drain_end = Instant::now() + Duration::from_secs(cfg.drain_secs);
    while Instant::now() < drain_end && delivered_of(&tracked) < expected {
        sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    if tokio::time::timeout(Duration::from_secs(10), async { while subs.join_next().await.is_some() {} }).await.is_err()
    {
        subs.abort_all();
    }

    let delivered = delivered_of(&tracked);
    let to_last = AtomicHistogram::new();
    for &i in &accepted {
        if tracked.arrived[i].load(Ordering::Relaxed) >= n {
            let (sent, last) = (tracked.sent[i].load(Ordering::Relaxed), tracked.last[i].load(Ordering::Relaxed));
            to_last.record(last.saturating_sub(sent));
        }
    }
    let last = tracked.last_delivery.load(Ordering::Relaxed);
    let secs = last.saturating_sub(start_nanos) as f64 / 1e9;
    let to_last = to_last.snapshot().summary_ms();
    let fanout_per_sec = if to_last.p50_ms > 0.0 { n as f64 * 1e3 / to_last.p50_ms } else { 0.0 };
    Ok(RoomReport {
        mode: if cfg.broadcast { "broadcast" } else { "room" }.to_string(),
        proto: cfg.proto,
        members: cfg.members,
        members_subscribed: n,
        subscribe_failures: sub_failures.snapshot(),
        messages: cfg.messages,
        messages_ok: accepted.len() as u64,
        errors: errors.snapshot(),
        expected,
        delivered,
        lost: expected - delivered,
        deliveries_per_sec: if secs > 0.0 { delivered as f64 / secs } else { 0.0 },
        time_to_last_member: to_last,
        fanout_per_sec,
        latency: tracked.latency.snapshot().summary_ms(),
        request_latency: request_latency.snapshot().summary_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(RoomConfig::default().validate().is_ok());
        for bad in [
            RoomConfig { members: 0, ..Default::default() },
            RoomConfig { messages: MAX_MESSAGES + 1, ..Default::default() },
            RoomConfig { rate: 0, ..Default::default() },
            RoomConfig { room: String::new(), ..Default::default() },
        ] {
            assert!(matches!(bad.validate(), Err(BenchError::Config(_))), "{bad:?}");
        }
        let remote = RoomConfig { admin: "http://172.16.0.1:8091".into(), ..Default::default() };
        assert!(matches!(remote.validate(), Err(BenchError::NotLoopback(_))));
    }

    #[test]
    fn replies_parse() {
        let r: Reply = serde_json::from_str(r#"{"data":{"comets":1,"failed":["node2"]},"ret":0}"#).unwrap();
        assert_eq!((r.ret, r.data.unwrap().failed), (0, vec!["node2".to_string()]));
    }
}
