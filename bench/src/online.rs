//! `online`: asks the admin API who is online, one key per request (`GET /1/admin/online?key=K`) or
//! B keys per request (`POST /1/admin/online`, body `{"k":"k1,k2"}`), from C keep-alive
//! connections as fast as they go for a duration; reports requests per second, failures and request
//! latency. It subscribes nothing itself: run `conns` with the same `--key-prefix` beside it to have
//! keys online (`<prefix><i>`, the keys `conns` opens).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::conns::{MAX_CONCURRENCY, MAX_DURATION};
use crate::counts::{Counts, format_counts};
use crate::error::{BenchError, Result};
use crate::histogram::{AtomicHistogram, LatencySummary};
use crate::http::HttpClient;
use crate::target::HttpTarget;
use crate::wire::encode_query;

/// Largest batch the admin API takes.
pub const MAX_BATCH: usize = 10_000;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of an `online` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineConfig {
    /// Web admin base URL.
    pub admin: String,
    /// Distinct keys asked about, `<key_prefix>0` .. `<key_prefix>(keys-1)`.
    pub keys: u64,
    /// Keys per request: 0 asks one key with `GET ?key=`, B ≥ 1 posts batches of B.
    pub batch: usize,
    /// How long to run, seconds.
    pub duration_secs: u64,
    /// Connections asking at once.
    pub concurrency: usize,
    /// The keys' prefix.
    pub key_prefix: String,
}

impl OnlineConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BenchError::Config(m));
        if self.keys == 0 || self.batch as u64 > self.keys || self.batch > MAX_BATCH {
            return bad(format!("need 1 ≤ --batch ≤ --keys and --batch ≤ {MAX_BATCH} (or --batch 0)"));
        }
        if self.duration_secs == 0 || self.duration_secs > MAX_DURATION {
            return bad(format!("--duration must be 1 to {MAX_DURATION}"));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!("--concurrency must be 1 to {MAX_CONCURRENCY}"));
        }
        Ok(())
    }
}

/// What an `online` run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OnlineReport {
    /// The settings.
    pub config: OnlineConfig,
    /// Requests answered `ret` 0.
    pub ok: u64,
    /// Failed requests by kind.
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Keys reported online in the answers.
    pub online_keys: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Successful requests per second.
    pub requests_per_sec: f64,
    /// Request latency.
    pub latency: LatencySummary,
}

impl std::fmt::Display for OnlineReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        let what = if c.batch == 0 { "GET ?key=".to_string() } else { format!("POST batches of {}", c.batch) };
        writeln!(f, "online: {what} over {} keys, {} connections, {:.1} s", c.keys, c.concurrency, self.seconds)?;
        writeln!(
            f,
            "  requests ok:  {} ({:.0}/s), online keys seen: {}",
            self.ok, self.requests_per_sec, self.online_keys
        )?;
        writeln!(f, "  failures:     {}", format_counts(&self.failures))?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency ms:   p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        )
    }
}

/// Runs `online` and reports.
pub async fn run_online(cfg: OnlineConfig) -> Result<OnlineReport> {
    cfg.validate()?;
    let admin = HttpTarget::parse(&cfg.admin)?;
    let latency = Arc::new(AtomicHistogram::new());
    let failures = Arc::new(Counts::default());
    let (ok, online) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let end = started + Duration::from_secs(cfg.duration_secs);
    let mut tasks = JoinSet::new();
    for worker in 0..cfg.concurrency {
        let (cfg, admin) = (cfg.clone(), admin.clone());
        let (latency, failures, ok, online) = (latency.clone(), failures.clone(), ok.clone(), online.clone());
        tasks.spawn(async move {
            let mut client = HttpClient::new(admin, None, REQUEST_TIMEOUT);
            // Workers start at different keys so they do not ask the same ones in step.
            let mut next = (worker as u64).wrapping_mul(7919) % cfg.keys;
            let mut key = || {
                let k = format!("{}{next}", cfg.key_prefix);
                next = (next + 1) % cfg.keys;
                k
            };
            while Instant::now() < end {
                let t0 = Instant::now();
                let answer = if cfg.batch == 0 {
                    client.get(&format!("/1/admin/online?key={}", encode_query(&key()))).await
                } else {
                    let keys: Vec<String> = (0..cfg.batch).map(|_| key()).collect();
                    let body = serde_json::json!({ "k": keys.join(",") }).to_string();
                    client.post("/1/admin/online", "application/json", body.as_bytes()).await
                };
                latency.record(t0.elapsed().as_nanos() as u64);
                match answer {
                    Err(e) => failures.add(&format!("io_{:?}", e.kind())),
                    Ok(r) if r.status != 200 => failures.add(&format!("http_{}", r.status)),
                    Ok(r) => match serde_json::from_slice::<serde_json::Value>(&r.body) {
                        Ok(v) if v["ret"] == 0 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            let data = &v["data"];
                            let n = match &data["online"] {
                                serde_json::Value::Array(a) => a.len() as u64,
                                serde_json::Value::Bool(b) => u64::from(*b),
                                _ => 0,
                            };
                            online.fetch_add(n, Ordering::Relaxed);
                        }
                        Ok(v) => failures.add(&format!("ret_{}", v["ret"])),
                        Err(_) => failures.add("bad_json"),
                    },
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let seconds = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    Ok(OnlineReport {
        ok,
        failures: failures.snapshot(),
        online_keys: online.load(Ordering::Relaxed),
        seconds,
        requests_per_sec: ok as f64 / seconds.max(1e-9),
        latency: latency.snapshot().summary_ms(),
        config: cfg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let c = OnlineConfig {
            admin: "http://127.0.0.1:8091".into(),
            keys: 1000,
            batch: 0,
            duration_secs: 10,
            concurrency: 16,
            key_prefix: "k".into(),
        };
        assert!(c.validate().is_ok());
        assert!(OnlineConfig { batch: 1001, ..c.clone() }.validate().is_err());
        assert!(OnlineConfig { concurrency: 0, ..c.clone() }.validate().is_err());
        assert!(OnlineConfig { duration_secs: 0, ..c }.validate().is_err());
    }
}
