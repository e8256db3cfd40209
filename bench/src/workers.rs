//! `conns` over several processes: the parent re-executes itself (`gopush-bench worker --spec
//! JSON`) once per 18k connections, each worker on its own 127.0.x.y source address so ephemeral
//! ports never run out. Workers report JSON lines on stdout (progress, connected, outcome); the
//! parent measures RSS once all are connected and ends the hold phase by closing their stdin.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout_at};

use crate::conns::{ConnsConfig, ConnsOutcome, ConnsProgress, ConnsReport, Event, Hold, PER_PROCESS, Sink};
use crate::conns::{progress_printer, rss_all, rss_deltas, run_local};
use crate::error::{BenchError, Result};
use crate::rss::read_rss_kib;

/// The hidden subcommand a worker runs.
pub const WORKER_SUBCOMMAND: &str = "worker";

/// The source address of worker `w` in run `run`: 127.0.R.2, 127.0.R.3, .. with R = 1 + run mod 250,
/// so back-to-back runs do not meet the previous run's TIME_WAIT ports.
pub fn worker_ip(run: u32, w: usize) -> Result<IpAddr> {
    let r = 1 + (run % 250) as u8;
    u8::try_from(w + 2)
        .ok()
        .filter(|&b| b < 255)
        .map(|b| IpAddr::V4(Ipv4Addr::new(127, 0, r, b)))
        .ok_or_else(|| BenchError::Config(format!("too many workers ({w})")))
}

/// Splits the run into per-worker configurations.
pub fn worker_specs(cfg: &ConnsConfig, workers: usize) -> Result<Vec<ConnsConfig>> {
    let per = cfg.conns.div_ceil(workers as u64);
    if per > PER_PROCESS {
        return Err(BenchError::Config(format!("{workers} workers would each hold {per} > {PER_PROCESS} connections")));
    }
    let mut specs = Vec::new();
    let mut first = 0;
    let run = std::process::id();
    for w in 0..workers {
        let n = per.min(cfg.conns - first);
        if n == 0 {
            break;
        }
        specs.push(ConnsConfig {
            conns: n,
            first_index: cfg.first_index + first,
            rate: cfg.rate.div_ceil(workers as u64),
            concurrency: cfg.concurrency.div_ceil(workers).max(1),
            bind_ip: Some(worker_ip(run, w)?),
            pids: Vec::new(),
            workers: 1,
            progress: false,
            // The parent decides when the hold ends; a worker's own limit is only a safety net.
            duration_secs: cfg.duration_secs,
            ..cfg.clone()
        });
        first += n;
    }
    Ok(specs)
}

/// Runs as a worker: connections from `spec`, events as JSON lines on stdout, hold until stdin closes.
pub async fn worker_main(spec: &str) -> Result<()> {
    let cfg: ConnsConfig = serde_json::from_str(spec).map_err(|e| BenchError::Worker(format!("bad spec: {e}")))?;
    let sink: Sink = Arc::new(emit);
    let limit = Duration::from_secs(cfg.duration_secs + cfg.settle_secs + 60);
    let hold: Hold = Box::pin(async move {
        // Any line or EOF on stdin ends the hold; the time limit covers a vanished parent.
        let mut stdin = tokio::io::stdin();
        let mut byte = [0u8; 1];
        let _ = tokio::time::timeout(limit, stdin.read(&mut byte)).await;
    });
    let outcome = run_local(&cfg, sink, hold).await?;
    emit(Event::Outcome(outcome));
    Ok(())
}

fn emit(e: Event) {
    if let Ok(line) = serde_json::to_string(&e) {
        let mut out = std::io::stdout().lock();
        // A parent that went away is not worth a panic.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Runs `conns` over `workers` child processes and merges their figures.
pub async fn run_workers(cfg: &ConnsConfig, workers: usize) -> Result<ConnsReport> {
    let specs = worker_specs(cfg, workers)?;
    let exe = std::env::current_exe()?;
    let before = rss_all(&cfg.pids)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Event)>();
    let mut children: Vec<Child> = Vec::new();
    for (w, spec) in specs.iter().enumerate() {
        let json = serde_json::to_string(spec).map_err(|e| BenchError::Worker(e.to_string()))?;
        let mut child = Command::new(&exe)
            .arg(WORKER_SUBCOMMAND)
            .arg("--spec")
            .arg(json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| BenchError::Worker("no stdout".into()))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(ev) = serde_json::from_str::<Event>(&line) {
                    let _ = tx.send((w, ev));
                }
            }
        });
        children.push(child);
    }
    drop(tx);
    let n = specs.len();
    let print = if cfg.progress { Some(progress_printer()) } else { None };
    let mut latest = vec![ConnsProgress::default(); n];
    let mut connected = vec![false; n];
    let mut outcomes: Vec<Option<ConnsOutcome>> = vec![None; n];
    let mut last_print = Instant::now();
    let sum = |v: &[ConnsProgress]| {
        v.iter().fold(ConnsProgress::default(), |a, p| ConnsProgress {
            attempted: a.attempted + p.attempted,
            established: a.established + p.established,
            alive: a.alive + p.alive,
            failed: a.failed + p.failed,
        })
    };

    // Phase 1: until every worker has settled its attempts (or died).
    let ramp_end = Instant::now() + Duration::from_secs(cfg.ramp_timeout_secs + 30);
    while connected.iter().any(|c| !c) {
        match timeout_at(ramp_end, rx.recv()).await {
            Ok(Some((w, ev))) => match ev {
                Event::Progress(p) => latest[w] = p,
                Event::Connected(p) => {
                    latest[w] = p;
                    connected[w] = true;
                }
                Event::Outcome(o) => {
                    connected[w] = true;
                    outcomes[w] = Some(o);
                }
            },
            Ok(None) => break,
            Err(_) => return Err(BenchError::Worker("workers did not finish connecting in time".into())),
        }
        if let Some(p) = &print {
            if last_print.elapsed() >= Duration::from_secs(1) {
                p(Event::Progress(sum(&latest)));
                last_print = Instant::now();
            }
        }
    }
    if let Some(p) = &print {
        p(Event::Connected(sum(&latest)));
    }

    // Phase 2: settle, measure, hold.
    let hold_start = Instant::now();
    sleep(Duration::from_secs(cfg.settle_secs)).await;
    let after: Vec<u64> = cfg.pids.iter().map(|&p| read_rss_kib(p).unwrap_or(0)).collect();
    let hold_end = hold_start + Duration::from_secs(cfg.duration_secs.max(cfg.settle_secs));
    loop {
        match timeout_at(hold_end.min(Instant::now() + Duration::from_secs(1)), rx.recv()).await {
            Ok(Some((w, Event::Progress(p)))) => latest[w] = p,
            Ok(Some((w, Event::Outcome(o)))) => outcomes[w] = Some(o),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                if Instant::now() >= hold_end {
                    break;
                }
                if let Some(p) = &print {
                    p(Event::Progress(sum(&latest)));
                }
            }
        }
    }

    // Phase 3: closing stdin ends each worker's hold; collect outcomes.
    for c in &mut children {
        drop(c.stdin.take());
    }
    let collect_end = Instant::now() + Duration::from_secs(30);
    while outcomes.iter().any(|o| o.is_none()) {
        match timeout_at(collect_end, rx.recv()).await {
            Ok(Some((w, Event::Outcome(o)))) => outcomes[w] = Some(o),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    for c in &mut children {
        if tokio::time::timeout(Duration::from_secs(5), c.wait()).await.is_err() {
            let _ = c.start_kill();
        }
    }
    let mut merged = ConnsOutcome::default();
    let mut missing = 0;
    for o in &outcomes {
        match o {
            Some(o) => merged.merge(o),
            None => missing += 1,
        }
    }
    if missing > 0 {
        merged.failures.insert("worker_lost".into(), missing);
    }
    let rss = rss_deltas(&cfg.pids, &before, &after, merged.established);
    Ok(ConnsReport::new(cfg, n, &merged, rss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_cover_every_connection_once() {
        let cfg = ConnsConfig { conns: 40_001, rate: 10_000, concurrency: 300, ..Default::default() };
        let specs = worker_specs(&cfg, 3).unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs.iter().map(|s| s.conns).sum::<u64>(), 40_001);
        assert_eq!(specs[1].first_index, specs[0].conns);
        let run = 1 + (std::process::id() % 250) as u8;
        assert_eq!(specs[2].bind_ip, Some(IpAddr::V4(Ipv4Addr::new(127, 0, run, 4))));
        assert!(specs.iter().all(|s| s.conns <= PER_PROCESS && s.workers == 1 && s.pids.is_empty()));
        assert_eq!(specs[0].rate, 3334);
        assert!(worker_specs(&cfg, 2).is_err());
        assert!(worker_ip(7, 253).is_err());
        assert_eq!(worker_ip(250, 0).unwrap(), IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2)));
    }
}
