//! Memory after a large push: many idle WebSocket clients each sent one 64 KiB message must not
//! leave the comet holding a buffer of that size per connection
//! (docs/decisions.md#d42-no-per-connection-buffer-the-size-of-the-largest-message).
//! Its own test binary, so no other test's allocations move the process's RSS. The clients read
//! raw frames through a small fixed buffer, so their own memory does not count either.

mod common;

use common::*;
use futures::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Clients; each holds two sockets in this process (its own and the comet's).
const CLIENTS: usize = 2_000;
/// The pushed message's size.
const MESSAGE: usize = 64 * 1024;
/// Growth allowed over the idle figure. Before the fix every connection kept the message's size
/// (2,000 × 64 KiB = 125 MiB); a shared message and allocator noise stay far below this.
const BOUND: u64 = 32 * 1024 * 1024;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("VmRSS in kB") * 1024
}

/// Reads exactly `n` bytes through a small buffer, keeping none of them.
async fn skip(s: &mut TcpStream, mut n: usize) {
    let mut buf = [0u8; 2048];
    while n > 0 {
        let want = n.min(buf.len());
        let got = s.read(&mut buf[..want]).await.expect("read");
        assert!(got > 0, "closed with {n} bytes to go");
        n -= got;
    }
}

/// Reads one server frame's header and returns its payload length.
async fn frame_len(s: &mut TcpStream) -> usize {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.expect("frame header");
    assert_eq!(h[0], 0x81, "a final text frame");
    match h[1] {
        126 => usize::from(s.read_u16().await.expect("16-bit length")),
        127 => usize::try_from(s.read_u64().await.expect("64-bit length")).expect("length"),
        n => usize::from(n),
    }
}

/// Upgrades on `/sub` for `key` and waits for `+h\r\n`, reading through small buffers only.
async fn subscribe(addr: std::net::SocketAddr, key: String) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /sub?key={key}&heartbeat=300 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("upgrade request");
    let mut tail = [0u8; 4];
    let mut read = 0;
    while &tail != b"\r\n\r\n" {
        tail.rotate_left(1);
        tail[3] = s.read_u8().await.expect("upgrade response");
        read += 1;
        assert!(read < 1024, "upgrade response too long");
    }
    assert_eq!(frame_len(&mut s).await, 4);
    skip(&mut s, 4).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_buffers_shrink_after_a_large_push() {
    let c = start_with(test_config(), membership(&[("node1", 1)])).await;
    let keys: Vec<String> = (0..CLIENTS).map(|i| format!("mem{i}")).collect();
    let ws = c.ws();
    let mut clients: Vec<TcpStream> = tokio::time::timeout(
        Duration::from_secs(120),
        futures::stream::iter(keys.clone()).map(|k| subscribe(ws, k)).buffer_unordered(64).collect(),
    )
    .await
    .expect("clients subscribed in time");
    testkit::eventually("every client to connect", Duration::from_secs(30), || async {
        c.comet.connections() == CLIENTS
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_bytes();

    let body = format!("\"{}\"", "z".repeat(MESSAGE));
    let reply = c.comet.api().push_privates(keys, body, 0, None).await.expect("push");
    assert!(reply.failed.is_empty());
    let read_all = futures::stream::iter(clients.iter_mut()).for_each_concurrent(64, |s| async move {
        let n = frame_len(s).await;
        assert!(n > MESSAGE, "{n} bytes");
        skip(s, n).await;
    });
    tokio::time::timeout(Duration::from_secs(120), read_all).await.expect("every client got the push");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_bytes();

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{CLIENTS} websocket clients, one {} KiB push each: RSS idle {:.1} MiB, after {:.1} MiB \
         (+{:.1} MiB, bound +{:.0})",
        MESSAGE / 1024,
        mib(idle),
        mib(after),
        mib(after.saturating_sub(idle)),
        mib(BOUND)
    );
    assert!(after <= idle + BOUND, "RSS grew from {idle} to {after} bytes");
    assert_eq!(c.comet.connections(), CLIENTS, "every client still connected");
}
