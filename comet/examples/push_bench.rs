//! Pushes delivered per second through CometRpc: subscribes `--keys` TCP clients (new format) to a
//! comet, then drives `RemoteComet` pushes (one key per call, or `--batch` keys per push_privates)
//! with `--inflight` calls outstanding for `--secs`, and counts the messages the clients receive.
//! `cargo run --release -p gopush-comet --example push_bench -- --tcp 127.0.0.1:16969 --rpc 127.0.0.1:16970`

use clap::Parser;
use cluster::pool::{RemoteComet, RpcConfig};
use cluster::rpc::CometApi;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// The comet's TCP client address.
    #[arg(long)]
    tcp: SocketAddr,
    /// The comet's CometRpc address.
    #[arg(long)]
    rpc: String,
    /// Subscribed keys (one connection each).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Seconds of pushing.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Calls outstanding at once.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// 0: push_private per key; N: push_privates with N keys per call.
    #[arg(long, default_value_t = 0)]
    batch: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..args.keys {
        let key = format!("bench{i}");
        let mut s = TcpStream::connect(args.tcp).await?;
        let cmd = format!("*5\r\n$3\r\nsub\r\n${}\r\n{key}\r\n$3\r\n600\r\n$0\r\n\r\n$1\r\n1\r\n", key.len());
        s.write_all(cmd.as_bytes()).await?;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(s).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with('{') {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rpc = RpcConfig { timeout: Duration::from_secs(10), ..RpcConfig::default() };
    let comet = Arc::new(RemoteComet::new(args.rpc.clone(), rpc));
    comet.ping().await.map_err(|e| anyhow::anyhow!("ping: {e}"))?;

    let keys: Arc<Vec<String>> = Arc::new((0..args.keys).map(|i| format!("bench{i}")).collect());
    let (calls, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let until = started + Duration::from_secs(args.secs);
    let mut workers = Vec::new();
    for w in 0..args.inflight {
        let (comet, keys, calls, errors) = (comet.clone(), keys.clone(), calls.clone(), errors.clone());
        let batch = args.batch;
        workers.push(tokio::spawn(async move {
            let mut i = w;
            let msg = "{\"test\":1,\"body\":\"hello gopush\"}".to_string();
            while Instant::now() < until {
                let ok = if batch == 0 {
                    comet.push_private(keys[i % keys.len()].clone(), msg.clone(), 0).await.is_ok()
                } else {
                    let ks: Vec<String> = (0..batch).map(|j| keys[(i * batch + j) % keys.len()].clone()).collect();
                    comet.push_privates(ks, msg.clone(), 0).await.is_ok_and(|r| r.failed.is_empty())
                };
                if ok { &calls } else { &errors }.fetch_add(1, Ordering::Relaxed);
                i += args_stride();
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let pushing = started.elapsed();
    // Let the last queued messages arrive.
    let mut last = received.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = received.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let secs = pushing.as_secs_f64();
    let calls = calls.load(Ordering::Relaxed);
    println!(
        "keys={} batch={} inflight={} secs={secs:.2} calls={calls} errors={} calls/s={:.0} delivered={last} delivered/s={:.0}",
        args.keys,
        args.batch,
        args.inflight,
        errors.load(Ordering::Relaxed),
        calls as f64 / secs,
        last as f64 / secs,
    );
    Ok(())
}

/// Workers walk the keys with a prime stride so they spread over all of them.
fn args_stride() -> usize {
    7919
}
