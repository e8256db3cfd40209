//! Opens many idle subscriptions to a comet (TCP or WebSocket) from several 127.0.0.x source
//! addresses, holds them, then exits: the load side of the memory-per-connection benchmark.
//! `cargo run --release -p gopush-comet --example idle_clients -- --addr 127.0.0.1:16969 --n 15000`

use clap::Parser;
use futures::StreamExt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser)]
struct Args {
    /// The comet's TCP or WebSocket address.
    #[arg(long)]
    addr: SocketAddr,
    /// Speak WebSocket instead of TCP.
    #[arg(long)]
    ws: bool,
    /// Connections to open.
    #[arg(long, default_value_t = 15_000)]
    n: usize,
    /// Source addresses 127.0.0.1 ..= 127.0.0.<sources>.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// Seconds to hold the connections once all are open.
    #[arg(long, default_value_t = 20)]
    hold: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
}

enum Held {
    Tcp(#[allow(dead_code)] TcpStream),
    Ws(#[allow(dead_code)] Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
}

async fn dial(addr: SocketAddr, i: usize, sources: u8) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let src = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(sources.max(1))) as u8);
    socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    Ok(socket.connect(addr).await?)
}

async fn open(addr: SocketAddr, i: usize, args: &Args) -> anyhow::Result<Held> {
    let key = format!("idle{i}");
    let mut stream = dial(addr, i, args.sources).await?;
    if args.ws {
        let req = format!("ws://{addr}/sub?key={key}&heartbeat=600&ver=1").into_client_request()?;
        let config = WebSocketConfig::default().read_buffer_size(256).write_buffer_size(0);
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "+h\r\n" => Ok(Held::Ws(Box::new(ws))),
            other => anyhow::bail!("{key}: {other:?}"),
        }
    } else {
        let cmd = format!("*5\r\n$3\r\nsub\r\n${}\r\n{key}\r\n$3\r\n600\r\n$0\r\n\r\n$1\r\n1\r\n", key.len());
        stream.write_all(cmd.as_bytes()).await?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await?;
        anyhow::ensure!(&reply == b"+h\r\n", "{key}: {reply:?}");
        Ok(Held::Tcp(stream))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = Vec::with_capacity(args.n);
    for i in 0..args.n {
        let (gate, args) = (gate.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            tokio::time::timeout(Duration::from_secs(30), open(args.addr, i, &args)).await
        }));
    }
    let mut held = Vec::with_capacity(args.n);
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(Ok(h))) => held.push(h),
            Ok(Ok(Err(e))) => {
                failed += 1;
                if failed < 5 {
                    eprintln!("failed: {e}");
                }
            }
            _ => failed += 1,
        }
    }
    let took = started.elapsed();
    println!(
        "connected={} failed={failed} in {:.2}s ({:.0}/s)",
        held.len(),
        took.as_secs_f64(),
        held.len() as f64 / took.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    drop(held);
    Ok(())
}
