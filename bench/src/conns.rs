//! `conns`: open N subscriptions, hold them with heartbeats, report the connect rate, handshake
//! latency, failures by kind and the server's memory per connection. One process holds at most
//! [`PER_PROCESS`] connections (the machine allows 20,000 open files per process); above that
//! [`run_conns`] spreads the run over worker processes (see `workers.rs`), each on its own
//! 127.0.x.y source address.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::counts::{Counts, format_counts, merge_counts};
use crate::error::{BenchError, Result};
use crate::histogram::{AtomicHistogram, Histogram, LatencySummary};
use crate::http::HttpClient;
use crate::rss::{RssDelta, read_rss_kib};
use crate::subscribe::{Failure, Proto, STEP_TIMEOUT, SubOptions, lookup, subscribe};
use crate::target::{HttpTarget, loopback_addr};

/// Most connections one process opens (open-files limit 20,000, minus sockets for lookups).
pub const PER_PROCESS: u64 = 18_000;
/// Most connections one run opens.
pub const MAX_CONNS: u64 = 200_000;
/// Longest hold or push phase, seconds.
pub const MAX_DURATION: u64 = 600;
/// Most connect attempts (or publishers) in flight.
pub const MAX_CONCURRENCY: usize = 4096;

/// A future the run awaits once every connection is up (the hold phase).
pub type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Where progress and phase events go.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// Settings of a `conns` run (also what a worker process receives, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnsConfig {
    /// Web public base URL, asked for each key's comet unless `comet` is set.
    pub web: String,
    /// Connect straight to this comet address instead of asking web.
    pub comet: Option<String>,
    /// TCP or WebSocket.
    pub proto: Proto,
    /// Connections to open.
    pub conns: u64,
    /// Distinct keys (connection i uses key i mod keys); 0 means one key per connection.
    pub keys: u64,
    /// How long to hold the connections once all are up, seconds.
    pub duration_secs: u64,
    /// Connection attempts per second; 0 = as fast as `concurrency` allows.
    pub rate: u64,
    /// Connection attempts in flight.
    pub concurrency: usize,
    /// Heartbeat announced and kept, seconds.
    pub heartbeat_secs: u64,
    /// Version sent in the handshake (new message format).
    pub ver: Option<String>,
    /// Server processes whose RSS to measure.
    pub pids: Vec<u32>,
    /// Key prefix; keys are `<prefix><index>`.
    pub key_prefix: String,
    /// Index of this process's first connection (workers get a slice).
    pub first_index: u64,
    /// Source address for client sockets.
    pub bind_ip: Option<IpAddr>,
    /// Worker processes: 0 = automatic (one per 18k connections above 18k), 1 = in-process.
    pub workers: usize,
    /// Longest time for opening all connections, seconds.
    pub ramp_timeout_secs: u64,
    /// Pause between the last connection and the "after" RSS reading, seconds.
    pub settle_secs: u64,
    /// Print a progress line each second to stderr.
    pub progress: bool,
}

impl Default for ConnsConfig {
    fn default() -> Self {
        Self {
            web: "http://127.0.0.1:8090".to_string(),
            comet: None,
            proto: Proto::Tcp,
            conns: 1000,
            keys: 0,
            duration_secs: 10,
            rate: 0,
            concurrency: 256,
            heartbeat_secs: 30,
            ver: None,
            pids: Vec::new(),
            key_prefix: default_key_prefix(),
            first_index: 0,
            bind_ip: None,
            workers: 0,
            ramp_timeout_secs: 120,
            settle_secs: 2,
            progress: false,
        }
    }
}

/// A prefix unlikely to collide with an earlier run against the same server.
pub fn default_key_prefix() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("gb{}p{}-", secs % 1_000_000, std::process::id())
}

impl ConnsConfig {
    /// Checks ranges and the loopback rule; returns the comet address if given.
    pub fn validate(&self) -> Result<Option<SocketAddr>> {
        let bad = |m: String| Err(BenchError::Config(m));
        if self.conns == 0 || self.conns > MAX_CONNS {
            return bad(format!("--conns must be 1..={MAX_CONNS}"));
        }
        if self.duration_secs > MAX_DURATION || self.ramp_timeout_secs > MAX_DURATION {
            return bad(format!("--duration and --ramp-timeout must be <= {MAX_DURATION} s"));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!("--concurrency must be 1..={MAX_CONCURRENCY}"));
        }
        if !(30..=3600).contains(&self.heartbeat_secs) {
            return bad("--heartbeat must be 30..=3600 s (the protocol's minimum is 30)".into());
        }
        if self.keys > MAX_CONNS || self.rate > 1_000_000 || self.settle_secs > 60 || self.workers > 250 {
            return bad("--keys, --rate, --settle or --workers out of range".into());
        }
        HttpTarget::parse(&self.web)?;
        self.comet.as_deref().map(loopback_addr).transpose()
    }

    /// Hard time limit for the whole run, seconds.
    pub fn deadline_secs(&self) -> u64 {
        self.ramp_timeout_secs + self.duration_secs + self.settle_secs + 60
    }

    fn key(&self, index: u64) -> String {
        let k = if self.keys == 0 { index } else { index % self.keys };
        format!("{}{k}", self.key_prefix)
    }
}

/// A progress snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnsProgress {
    /// Connection attempts started.
    pub attempted: u64,
    /// Subscriptions that got `+h`.
    pub established: u64,
    /// Established and not (yet) dropped.
    pub alive: u64,
    /// Failed attempts plus dropped connections.
    pub failed: u64,
}

/// What a run (or one worker) sends along the way and at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Once a second.
    Progress(ConnsProgress),
    /// All attempts are settled; the hold phase begins.
    Connected(ConnsProgress),
    /// The final raw figures.
    Outcome(ConnsOutcome),
}

/// Raw figures of one process, mergeable across workers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnsOutcome {
    /// Connection attempts started.
    pub attempted: u64,
    /// Subscriptions that got `+h`.
    pub established: u64,
    /// Still open when the hold phase ended.
    pub alive_at_end: u64,
    /// Failures by kind (`held_*` = dropped during the hold phase).
    pub failures: BTreeMap<String, u64>,
    /// Time from the first attempt until every attempt settled, seconds.
    pub ramp_secs: f64,
    /// Length of the hold phase, seconds.
    pub held_secs: f64,
    /// Connect + handshake latency, ns.
    pub handshake: Histogram,
    /// Web lookup latency, ns (empty when connecting straight to a comet).
    pub lookup: Histogram,
}

impl ConnsOutcome {
    /// Adds a worker's figures (workers run side by side, so times take the maximum).
    pub fn merge(&mut self, o: &ConnsOutcome) {
        self.attempted += o.attempted;
        self.established += o.established;
        self.alive_at_end += o.alive_at_end;
        merge_counts(&mut self.failures, &o.failures);
        self.ramp_secs = self.ramp_secs.max(o.ramp_secs);
        self.held_secs = self.held_secs.max(o.held_secs);
        self.handshake.merge(&o.handshake);
        self.lookup.merge(&o.lookup);
    }
}

/// The result of a `conns` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnsReport {
    /// `tcp` or `ws`.
    pub proto: Proto,
    /// `web <url>` or `comet <addr>`.
    pub via: String,
    /// Connections asked for.
    pub requested: u64,
    /// Worker processes used (0 = in-process).
    pub workers: usize,
    /// Attempts started.
    pub attempted: u64,
    /// Subscriptions established.
    pub established: u64,
    /// Still open at the end of the hold phase.
    pub alive_at_end: u64,
    /// Failures by kind.
    pub failures: BTreeMap<String, u64>,
    /// Seconds until every attempt settled.
    pub ramp_secs: f64,
    /// Established subscriptions per second of ramp.
    pub subscriptions_per_sec: f64,
    /// Connect + handshake latency.
    pub handshake: LatencySummary,
    /// Web lookup latency, if web was asked.
    pub lookup: Option<LatencySummary>,
    /// Seconds held.
    pub held_secs: f64,
    /// Server memory, per measured process (each delta divided by all connections).
    pub rss: Vec<RssDelta>,
    /// Sum of all measured processes' RSS growth divided by the connections, KiB (the figure to
    /// quote when several comets share the connections).
    pub rss_per_conn_kib: Option<f64>,
}

impl ConnsReport {
    /// Builds the report from merged raw figures.
    pub fn new(cfg: &ConnsConfig, workers: usize, o: &ConnsOutcome, rss: Vec<RssDelta>) -> Self {
        let via = match &cfg.comet {
            Some(c) => format!("comet {c}"),
            None => format!("web {}", cfg.web),
        };
        Self {
            proto: cfg.proto,
            via,
            requested: cfg.conns,
            workers,
            attempted: o.attempted,
            established: o.established,
            alive_at_end: o.alive_at_end,
            failures: o.failures.clone(),
            ramp_secs: o.ramp_secs,
            subscriptions_per_sec: if o.ramp_secs > 0.0 { o.established as f64 / o.ramp_secs } else { 0.0 },
            handshake: o.handshake.summary_ms(),
            lookup: (o.lookup.count() > 0).then(|| o.lookup.summary_ms()),
            held_secs: o.held_secs,
            rss_per_conn_kib: total_per_conn(&rss, o.established),
            rss,
        }
    }
}

impl std::fmt::Display for ConnsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = self.proto.name();
        writeln!(
            f,
            "conns: {proto} via {}, {} requested, {} worker process(es)",
            self.via, self.requested, self.workers
        )?;
        writeln!(
            f,
            "  established {} of {} attempted in {:.2} s = {:.0} subscriptions/s",
            self.established, self.attempted, self.ramp_secs, self.subscriptions_per_sec
        )?;
        let h = &self.handshake;
        writeln!(f, "  connect+handshake: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", h.p50_ms, h.p99_ms, h.max_ms)?;
        if let Some(l) = &self.lookup {
            writeln!(f, "  web lookup:        p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", l.p50_ms, l.p99_ms, l.max_ms)?;
        }
        writeln!(f, "  held {:.1} s, alive at end {}", self.held_secs, self.alive_at_end)?;
        writeln!(f, "  failures: {}", format_counts(&self.failures))?;
        for r in &self.rss {
            writeln!(
                f,
                "  rss pid {}: {:.1} MiB -> {:.1} MiB = {:.2} KiB per connection",
                r.pid,
                r.before_kib as f64 / 1024.0,
                r.after_kib as f64 / 1024.0,
                r.per_conn_kib
            )?;
        }
        if let (Some(total), true) = (self.rss_per_conn_kib, self.rss.len() > 1) {
            writeln!(f, "  rss all pids: {total:.2} KiB per connection")?;
        }
        Ok(())
    }
}

/// All processes' RSS growth per connection; `None` without measurements or connections.
fn total_per_conn(rss: &[RssDelta], conns: u64) -> Option<f64> {
    if rss.is_empty() || conns == 0 {
        return None;
    }
    let delta: f64 = rss.iter().map(|r| r.after_kib as f64 - r.before_kib as f64).sum();
    Some(delta / conns as f64)
}

/// Runs `conns`: in-process up to [`PER_PROCESS`] connections, else over worker processes.
pub async fn run_conns(cfg: ConnsConfig) -> Result<ConnsReport> {
    cfg.validate()?;
    let deadline = cfg.deadline_secs();
    let workers = match cfg.workers {
        0 if cfg.conns > PER_PROCESS => cfg.conns.div_ceil(PER_PROCESS) as usize,
        0 | 1 => 0,
        w => w,
    };
    let run = async {
        if workers > 0 {
            return crate::workers::run_workers(&cfg, workers).await;
        }
        let before = rss_all(&cfg.pids)?;
        let after: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
        let hold: Hold = {
            let (pids, after, settle, hold) =
                (cfg.pids.clone(), after.clone(), cfg.settle_secs, Duration::from_secs(cfg.duration_secs));
            Box::pin(async move {
                sleep(Duration::from_secs(settle)).await;
                let rss = pids.iter().map(|&p| read_rss_kib(p).unwrap_or(0)).collect();
                *after.lock().unwrap_or_else(|p| p.into_inner()) = rss;
                sleep(hold.saturating_sub(Duration::from_secs(settle))).await;
            })
        };
        let sink = if cfg.progress { progress_printer() } else { Arc::new(|_: Event| {}) as Sink };
        let outcome = run_local(&cfg, sink, hold).await?;
        let after = after.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let rss = rss_deltas(&cfg.pids, &before, &after, outcome.established);
        Ok(ConnsReport::new(&cfg, 0, &outcome, rss))
    };
    tokio::time::timeout(Duration::from_secs(deadline), run).await.map_err(|_| BenchError::Deadline(deadline))?
}

/// Reads every pid's RSS (an unreadable pid is an error: the user asked for it).
pub fn rss_all(pids: &[u32]) -> Result<Vec<u64>> {
    pids.iter()
        .map(|&p| read_rss_kib(p).map_err(|e| BenchError::Config(format!("cannot read RSS of pid {p}: {e}"))))
        .collect()
}

/// Pairs before/after readings into deltas (missing "after" readings count as 0).
pub fn rss_deltas(pids: &[u32], before: &[u64], after: &[u64], conns: u64) -> Vec<RssDelta> {
    pids.iter()
        .enumerate()
        .map(|(i, &pid)| {
            RssDelta::new(pid, before.get(i).copied().unwrap_or(0), after.get(i).copied().unwrap_or(0), conns)
        })
        .collect()
}

/// A sink that prints one progress line per event to stderr.
pub fn progress_printer() -> Sink {
    let start = std::time::Instant::now();
    Arc::new(move |e: Event| {
        let (tag, p) = match e {
            Event::Progress(p) => ("", p),
            Event::Connected(p) => (" (all attempts settled, holding)", p),
            Event::Outcome(_) => return,
        };
        eprintln!(
            "[{:>4}s] conns: attempted {} established {} alive {} failed {}{tag}",
            start.elapsed().as_secs(),
            p.attempted,
            p.established,
            p.alive,
            p.failed
        );
    })
}

struct Shared {
    attempted: AtomicU64,
    established: AtomicU64,
    alive: AtomicU64,
    settled: AtomicU64,
    failures: Counts,
    handshake: AtomicHistogram,
    lookup: AtomicHistogram,
    /// Keep-alive clients for web lookups, reused so lookups do not eat ephemeral ports.
    web_pool: Mutex<Vec<HttpClient>>,
}

impl Shared {
    fn progress(&self) -> ConnsProgress {
        ConnsProgress {
            attempted: self.attempted.load(Ordering::Relaxed),
            established: self.established.load(Ordering::Relaxed),
            alive: self.alive.load(Ordering::Relaxed),
            failed: self.failures.total(),
        }
    }
}

/// Opens this process's share of connections, awaits `hold`, closes them, returns raw figures.
pub async fn run_local(cfg: &ConnsConfig, sink: Sink, hold: Hold) -> Result<ConnsOutcome> {
    let comet = cfg.validate()?;
    let web = HttpTarget::parse(&cfg.web)?;
    let n = cfg.conns.min(PER_PROCESS);
    let opts = Arc::new(SubOptions {
        proto: cfg.proto,
        heartbeat_secs: cfg.heartbeat_secs,
        ver: cfg.ver.clone(),
        bind_ip: cfg.bind_ip,
        read_buf: 128,
    });
    let shared = Arc::new(Shared {
        attempted: AtomicU64::new(0),
        established: AtomicU64::new(0),
        alive: AtomicU64::new(0),
        settled: AtomicU64::new(0),
        failures: Counts::default(),
        handshake: AtomicHistogram::new(),
        lookup: AtomicHistogram::new(),
        web_pool: Mutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let ticker = {
        let (shared, sink, stop) = (shared.clone(), sink.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            while !stop.is_cancelled() {
                tick.tick().await;
                sink(Event::Progress(shared.progress()));
            }
        })
    };

    let sem = Arc::new(Semaphore::new(cfg.concurrency));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let ramp_deadline = start + Duration::from_secs(cfg.ramp_timeout_secs);
    let heartbeat = Duration::from_secs(cfg.heartbeat_secs);
    for i in 0..n {
        if cfg.rate > 0 {
            sleep_until(start + Duration::from_secs_f64(i as f64 / cfg.rate as f64)).await;
        }
        let Ok(Ok(permit)) = tokio::time::timeout_at(ramp_deadline, sem.clone().acquire_owned()).await else {
            break;
        };
        let index = cfg.first_index + i;
        let key = cfg.key(index);
        let (shared, opts, stop, web) = (shared.clone(), opts.clone(), stop.clone(), web.clone());
        shared.attempted.fetch_add(1, Ordering::Relaxed);
        // Spread first heartbeats over [hb/2, hb) so they do not all fire in the same second.
        let first_hb = heartbeat.mul_f64(0.5 + (index % 1000) as f64 / 2000.0);
        tasks.spawn(async move {
            let addr = match comet {
                Some(a) => Ok(a),
                None => web_lookup(&shared, web, opts.bind_ip, &key, opts.proto).await,
            };
            let session = match addr {
                Ok(a) => {
                    let t1 = Instant::now();
                    let s = subscribe(a, &key, &opts).await;
                    if s.is_ok() {
                        shared.handshake.record(t1.elapsed().as_nanos() as u64);
                    }
                    s
                }
                Err(f) => Err(f),
            };
            drop(permit);
            let session = match session {
                Ok(s) => s,
                Err(Failure(kind)) => {
                    shared.failures.add(&kind);
                    shared.settled.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            shared.established.fetch_add(1, Ordering::Relaxed);
            shared.alive.fetch_add(1, Ordering::Relaxed);
            shared.settled.fetch_add(1, Ordering::Relaxed);
            let r = session.hold(heartbeat, first_hb, &stop, &mut |_| {}).await;
            shared.alive.fetch_sub(1, Ordering::Relaxed);
            if let Err(Failure(kind)) = r {
                shared.failures.add(&format!("held_{kind}"));
            }
        });
    }
    let spawned = shared.attempted.load(Ordering::Relaxed);
    // Every attempt settles within its step timeouts; wait for that, bounded.
    let settle_deadline = Instant::now().max(ramp_deadline) + STEP_TIMEOUT * 3;
    while shared.settled.load(Ordering::Relaxed) < spawned && Instant::now() < settle_deadline {
        sleep(Duration::from_millis(20)).await;
    }
    let ramp_secs = start.elapsed().as_secs_f64();
    sink(Event::Connected(shared.progress()));

    let held = Instant::now();
    hold.await;
    let held_secs = held.elapsed().as_secs_f64();
    let alive_at_end = shared.alive.load(Ordering::Relaxed);
    stop.cancel();
    let closing = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), closing).await.is_err() {
        tasks.abort_all();
    }
    ticker.abort();
    let pending = spawned.saturating_sub(shared.settled.load(Ordering::Relaxed));
    shared.failures.add_n("unsettled", pending);
    Ok(ConnsOutcome {
        attempted: spawned,
        established: shared.established.load(Ordering::Relaxed),
        alive_at_end,
        failures: shared.failures.snapshot(),
        ramp_secs,
        held_secs,
        handshake: shared.handshake.snapshot(),
        lookup: shared.lookup.snapshot(),
    })
}

async fn web_lookup(
    shared: &Shared,
    web: HttpTarget,
    bind_ip: Option<IpAddr>,
    key: &str,
    proto: Proto,
) -> Result<SocketAddr, Failure> {
    let pooled = shared.web_pool.lock().await.pop();
    let mut client = pooled.unwrap_or_else(|| HttpClient::new(web, bind_ip, STEP_TIMEOUT));
    let t = Instant::now();
    let r = lookup(&mut client, key, proto).await;
    if r.is_ok() {
        shared.lookup.record(t.elapsed().as_nanos() as u64);
    }
    shared.web_pool.lock().await.push(client);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ranges_and_targets() {
        let ok = ConnsConfig::default();
        assert_eq!(ok.validate().unwrap(), None);
        let c = ConnsConfig { comet: Some("localhost:6969".into()), ..ConnsConfig::default() };
        assert_eq!(c.validate().unwrap(), Some("127.0.0.1:6969".parse().unwrap()));
        for bad in [
            ConnsConfig { conns: 0, ..ConnsConfig::default() },
            ConnsConfig { conns: MAX_CONNS + 1, ..ConnsConfig::default() },
            ConnsConfig { duration_secs: 601, ..ConnsConfig::default() },
            ConnsConfig { heartbeat_secs: 29, ..ConnsConfig::default() },
            ConnsConfig { concurrency: 0, ..ConnsConfig::default() },
        ] {
            assert!(matches!(bad.validate(), Err(BenchError::Config(_))), "{bad:?}");
        }
        let remote = ConnsConfig { web: "http://10.1.1.1:8090".into(), ..ConnsConfig::default() };
        assert!(matches!(remote.validate(), Err(BenchError::NotLoopback(_))));
        let remote = ConnsConfig { comet: Some("192.168.0.1:6969".into()), ..ConnsConfig::default() };
        assert!(matches!(remote.validate(), Err(BenchError::NotLoopback(_))));
    }

    #[test]
    fn keys_wrap() {
        let c = ConnsConfig { key_prefix: "k".into(), keys: 3, ..ConnsConfig::default() };
        assert_eq!((c.key(0), c.key(4)), ("k0".to_string(), "k1".to_string()));
        let c = ConnsConfig { key_prefix: "k".into(), keys: 0, ..ConnsConfig::default() };
        assert_eq!(c.key(40_000), "k40000");
    }

    #[test]
    fn outcomes_merge_and_config_round_trips() {
        let mut a = ConnsOutcome { attempted: 2, established: 1, ramp_secs: 1.0, ..Default::default() };
        a.failures.insert("connect_refused".into(), 1);
        let b = ConnsOutcome { attempted: 3, established: 3, ramp_secs: 2.0, ..Default::default() };
        a.merge(&b);
        assert_eq!((a.attempted, a.established, a.ramp_secs), (5, 4, 2.0));
        let r = ConnsReport::new(&ConnsConfig::default(), 2, &a, vec![]);
        assert_eq!((r.subscriptions_per_sec, r.rss_per_conn_kib), (2.0, None));
        let rss = vec![RssDelta::new(1, 100, 300, 4), RssDelta::new(2, 100, 200, 4)];
        let r = ConnsReport::new(&ConnsConfig::default(), 2, &a, rss);
        assert_eq!(r.rss_per_conn_kib, Some(75.0));
        assert!(r.to_string().contains("rss all pids: 75.00 KiB"));
        assert!(r.to_string().contains("connect_refused=1"));
        let cfg = ConnsConfig { pids: vec![1, 2], bind_ip: Some("127.0.0.3".parse().unwrap()), ..Default::default() };
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<ConnsConfig>(&json).unwrap(), cfg);
    }
}
