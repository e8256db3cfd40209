//! A comet alone in its own process, for benchmarks: a fixed membership in which it owns every
//! key, a message store that accepts everything, and a line with its connection count and RSS
//! every two seconds. Release build:
//! `cargo run --release -p gopush-comet --example standalone_comet -- --tcp 127.0.0.1:16969`

use clap::Parser;
use cluster::rpc::{BoxFuture, MessageApi, Mid, StoreError, StoreHealth, StoredMessage};
use cluster::{CometMembership, NodeInfo};
use comet::{Comet, CometConfig, CometDeps};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Parser)]
struct Args {
    /// TCP client listeners (repeatable; none disables TCP).
    #[arg(long)]
    tcp: Vec<String>,
    /// WebSocket client listeners (repeatable; none disables WebSocket).
    #[arg(long)]
    ws: Vec<String>,
    /// CometRpc listener.
    #[arg(long, default_value = "127.0.0.1:16970")]
    rpc: String,
    /// Per-connection outbox (msgbuf).
    #[arg(long, default_value_t = 30)]
    msgbuf: usize,
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0)]
    secs: u64,
}

/// A store that keeps nothing and never fails.
struct NullStore;

impl MessageApi for NullStore {
    fn save_private(&self, _: String, _: String, _: Mid, _: u32) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn save_privates(
        &self,
        _: Vec<String>,
        _: String,
        _: Mid,
        _: u32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn get_private(&self, _: String, _: Mid) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn del_private(&self, _: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn add_token(&self, _: String, _: String, _: u64) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn check_token(&self, _: String, _: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async { Ok(true) })
    }
    fn ping(&self) -> BoxFuture<'_, Result<StoreHealth, StoreError>> {
        Box::pin(async { Ok(StoreHealth { backend: "null".into(), shards: Vec::new() }) })
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = CometConfig::default();
    config.base.tcp_bind = args.tcp;
    config.base.ws_bind = args.ws;
    config.base.rpc_bind = vec![args.rpc];
    config.base.stat_bind = String::new();
    config.base.drain = Duration::ZERO;
    config.channel.msgbuf = args.msgbuf;
    config.channel.max_connections = 1_000_000;
    let membership = CometMembership::fixed([("node1".to_string(), NodeInfo { weight: 1, ..Default::default() })]);
    let (_tx, rx) = watch::channel(Arc::new(membership));
    let deps = CometDeps { membership: rx, messages: Arc::new(NullStore), session: None };
    let comet = Comet::start(config, deps).await?;
    println!(
        "ready pid={} tcp={:?} ws={:?} rpc={} rss_kib={}",
        std::process::id(),
        comet.tcp_addrs(),
        comet.ws_addrs(),
        comet.rpc_addr(),
        rss_kib()
    );
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => println!("connections={} rss_kib={}", comet.connections(), rss_kib()),
            _ = tokio::signal::ctrl_c() => break,
        }
        if args.secs > 0 && started.elapsed() >= Duration::from_secs(args.secs) {
            break;
        }
    }
    comet.shutdown().await;
    Ok(())
}
