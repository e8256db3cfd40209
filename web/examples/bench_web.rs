//! Load test of a web node on loopback: `/1/server/get` and `/1/admin/push/private` requests per
//! second over keep-alive connections. The comet behind the web node is a counting `CometApi`,
//! in-process (`--comet local`) or behind the real RPC transport on loopback (`--comet rpc`, the
//! default: web → tarpc → comet). `--serve` only starts the node, for an external client like wrk.
//!
//! `cargo run --release -p gopush-web --example bench_web -- --connections 32 --seconds 5`

use clap::{Parser, ValueEnum};
use cluster::membership::CometMembership;
use cluster::node::{Instance, NodeInfo};
use cluster::rpc::server::serve_comet;
use cluster::rpc::{
    BoxFuture, CometApi, CometError, CometStatus, MessageApi, Mid, PushPrivatesReply, SharedComet, StoreError,
    StoreHealth, StoredMessage,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use web::{CometFactory, Web, WebConfig, WebDeps, remote_comets};

#[derive(Parser)]
struct Args {
    /// Concurrent keep-alive connections per phase.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds per phase (at most 60).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Where the comet lives.
    #[arg(long, value_enum, default_value_t = Where::Rpc)]
    comet: Where,
    /// Only serve (public 127.0.0.1:18090, admin 127.0.0.1:18091) for this many seconds.
    #[arg(long)]
    serve: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Where {
    Local,
    Rpc,
}

/// A comet that counts pushes and delivers nowhere.
#[derive(Default)]
struct CountingComet {
    pushes: AtomicU64,
}

impl CometApi for CountingComet {
    fn push_private(&self, _: String, _: String, _: u32) -> BoxFuture<'_, Result<Mid, CometError>> {
        Box::pin(async move { Ok(self.pushes.fetch_add(1, Ordering::Relaxed) as Mid) })
    }
    fn push_privates(
        &self,
        keys: Vec<String>,
        _: String,
        _: u32,
    ) -> BoxFuture<'_, Result<PushPrivatesReply, CometError>> {
        Box::pin(async move {
            self.pushes.fetch_add(keys.len() as u64, Ordering::Relaxed);
            Ok(PushPrivatesReply::default())
        })
    }
    fn add_token(&self, _: String, _: String, _: u64) -> BoxFuture<'_, Result<(), CometError>> {
        Box::pin(async { Ok(()) })
    }
    fn close_key(&self, _: String) -> BoxFuture<'_, Result<u32, CometError>> {
        Box::pin(async { Ok(0) })
    }
    fn ping(&self) -> BoxFuture<'_, Result<CometStatus, CometError>> {
        Box::pin(async { Ok(CometStatus::default()) })
    }
}

/// No offline store: this benchmark does not read messages.
struct NoStore;

impl MessageApi for NoStore {
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
        Box::pin(async { Ok(StoreHealth::default()) })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = args.seconds.clamp(1, 60);
    let comet = Arc::new(CountingComet::default());
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let rpc_addr = listener.local_addr()?.to_string();
    tokio::spawn(serve_comet(listener, comet.clone(), stop.clone()));

    let mut config = WebConfig::default();
    let port = if args.serve.is_some() { 18090 } else { 0 };
    config.base.http_bind = format!("127.0.0.1:{port}");
    config.base.admin_bind = format!("127.0.0.1:{}", if port == 0 { 0 } else { port + 1 });
    let info = NodeInfo { rpc: vec![rpc_addr], tcp: vec!["127.0.0.1:6969".into()], ws: vec![], weight: 1 };
    let membership = CometMembership::fixed([("node1".to_string(), info)]);
    let comets: CometFactory = match args.comet {
        Where::Rpc => remote_comets(config.rpc.clone()),
        Where::Local => {
            let local = comet.clone();
            Arc::new(move |_: &Instance| -> SharedComet { local.clone() })
        }
    };
    let (_tx, rx) = watch::channel(Arc::new(membership));
    let deps = WebDeps { membership: rx, messages: Arc::new(NoStore), comets, session: None };
    let web = Web::start(config, deps).await?;
    let (public, admin) = (web.public_addr().to_string(), web.admin_addr().to_string());

    if let Some(secs) = args.serve {
        println!("serving: public http://{public}  admin http://{admin}  for {secs} s");
        tokio::time::sleep(Duration::from_secs(secs.min(3600))).await;
        println!("comet pushes counted: {}", comet.pushes.load(Ordering::Relaxed));
    } else {
        let get = "GET /1/server/get?k=Terry-Mao&p=2 HTTP/1.1\r\nHost: bench\r\n\r\n".to_string();
        let body = r#"{"test":1}"#;
        let push = format!(
            "POST /1/admin/push/private?key=Terry-Mao&expire=0 HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mode = match args.comet {
            Where::Rpc => "comet over loopback RPC",
            Where::Local => "in-process comet",
        };
        println!("{} connections, {seconds} s per phase, keep-alive, {mode}", args.connections);
        let n = phase(&public, &get, args.connections, seconds, "\"ret\":0").await;
        println!("/1/server/get          {:>9.0} req/s", n as f64 / seconds as f64);
        let before = comet.pushes.load(Ordering::Relaxed);
        let n = phase(&admin, &push, args.connections, seconds, "{\"ret\":0}").await;
        let counted = comet.pushes.load(Ordering::Relaxed) - before;
        println!(
            "/1/admin/push/private  {:>9.0} req/s  ({counted} pushes reached the comet)",
            n as f64 / seconds as f64
        );
    }
    web.shutdown().await;
    stop.cancel();
    Ok(())
}

/// Runs `connections` clients sending `request` back to back for `seconds`; returns the answers
/// that contained `expect`.
async fn phase(addr: &str, request: &str, connections: usize, seconds: u64, expect: &'static str) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (addr, request, done) = (addr.to_string(), request.as_bytes().to_vec(), done.clone());
        clients.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(&addr).await else { return };
            let _ = s.set_nodelay(true);
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < end {
                if s.write_all(&request).await.is_err() {
                    return;
                }
                match read_one(&mut s, &mut buf).await {
                    Some(body) if body.contains(expect) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(body) => {
                        eprintln!("unexpected answer: {body}");
                        return;
                    }
                    None => return,
                }
            }
        }));
    }
    for c in clients {
        let _ = c.await;
    }
    done.load(Ordering::Relaxed)
}

/// Reads one response with a Content-Length body; returns the body.
async fn read_one(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..i]).ok()?;
            let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: "))?.parse().ok()?;
            while buf.len() < i + 4 + len {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return String::from_utf8(buf[i + 4..i + 4 + len].to_vec()).ok();
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
