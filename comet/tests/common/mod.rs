//! Shared helpers of the comet's socket tests: an in-memory message store double (the real store
//! is the message crate's), comets started on port 0 with a fixed membership, and raw TCP and
//! WebSocket clients that check bytes exactly.
#![allow(dead_code)]

use cluster::{CometMembership, NodeInfo};
use comet::{Comet, CometConfig, CometDeps};
use futures::StreamExt;
use ring::{HashKind, Ring};
use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous wait for things that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(5);

pub use cluster::testing::FakeStore;

/// A comet config on loopback port 0 with no waiting on shutdown or migration.
pub fn test_config() -> CometConfig {
    let mut c = CometConfig::default();
    c.base.tcp_bind = vec!["127.0.0.1:0".into()];
    c.base.ws_bind = vec!["127.0.0.1:0".into()];
    c.base.rpc_bind = vec!["127.0.0.1:0".into()];
    c.base.stat_bind = "127.0.0.1:0".into();
    c.base.drain = Duration::ZERO;
    c.base.migrate_grace = Duration::ZERO;
    c
}

/// Upstream's golden ring members (docs/architecture.md#ring-golden-vectors): node1 ×1, node2 ×2,
/// node3 ×1. Our comets are node1.
pub fn golden() -> CometMembership {
    membership(&[("node1", 1), ("node2", 2), ("node3", 1)])
}

pub fn membership(nodes: &[(&str, u32)]) -> CometMembership {
    CometMembership::fixed(
        nodes
            .iter()
            .map(|(n, w)| (n.to_string(), NodeInfo { rpc: vec![format!("{n}:1")], weight: *w, ..Default::default() })),
    )
}

/// `n` keys `prefix0..` that the golden ring gives to `node`.
pub fn keys_of(node: &str, prefix: &str, n: usize) -> Vec<String> {
    let ring = Ring::new(HashKind::Sha1, [("node1", 1), ("node2", 2), ("node3", 1)]);
    (0..).map(|i| format!("{prefix}{i}")).filter(|k| ring.get(k.as_bytes()) == Some(node)).take(n).collect()
}

pub struct Running {
    pub comet: Comet,
    pub store: Arc<FakeStore>,
    pub membership: watch::Sender<Arc<CometMembership>>,
}

impl Running {
    pub fn tcp(&self) -> SocketAddr {
        self.comet.tcp_addrs()[0]
    }
    pub fn ws(&self) -> SocketAddr {
        self.comet.ws_addrs()[0]
    }
}

/// Starts a standalone comet (node1) over the golden membership.
pub async fn start(config: CometConfig) -> Running {
    start_with(config, golden()).await
}

pub async fn start_with(config: CometConfig, m: CometMembership) -> Running {
    let store = FakeStore::new();
    let (tx, rx) = watch::channel(Arc::new(m));
    let deps = CometDeps { membership: rx, messages: store.clone(), session: None };
    let comet = Comet::start(config, deps).await.expect("comet starts");
    Running { comet, store, membership: tx }
}

/// A subscribe command with these arguments.
pub fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

pub async fn tcp_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("send");
    s
}

/// Reads exactly `expected.len()` bytes and compares them.
pub async fn expect(s: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .expect("bytes in time")
        .unwrap_or_else(|e| panic!("reading {:?}: {e}", String::from_utf8_lossy(expected)));
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected));
}

/// Reads until the server closes; returns what came before.
pub async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let r = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "server did not close; got {:?}", String::from_utf8_lossy(&all));
    all
}

/// Subscribes `key` (old format) from a socket with a tiny receive window that the test never
/// reads: a slow consumer.
pub async fn never_reading_sub(addr: SocketAddr, key: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
    let mut slow = socket.connect(addr).await.expect("connect");
    slow.write_all(&cmd(&["sub", key, "30"])).await.expect("send");
    slow
}

/// Subscribes over TCP and checks `+h\r\n`.
pub async fn tcp_sub(addr: SocketAddr, args: &[&str]) -> TcpStream {
    let mut s = tcp_send(addr, &cmd(args)).await;
    expect(&mut s, b"+h\r\n").await;
    s
}

/// Reads one pushed `$len\r\n<json>\r\n` frame and returns the JSON.
pub async fn tcp_message(s: &mut TcpStream) -> String {
    tokio::time::timeout(WAIT, async {
        let mut head = Vec::new();
        loop {
            let b = s.read_u8().await.expect("frame header");
            head.push(b);
            if head.ends_with(b"\r\n") {
                break;
            }
        }
        assert_eq!(head[0], b'$', "{:?}", String::from_utf8_lossy(&head));
        let len: usize = std::str::from_utf8(&head[1..head.len() - 2]).unwrap().parse().unwrap();
        let mut body = vec![0u8; len + 2];
        s.read_exact(&mut body).await.expect("frame body");
        assert!(body.ends_with(b"\r\n"));
        body.truncate(len);
        String::from_utf8(body).unwrap()
    })
    .await
    .expect("a message in time")
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `path_and_query`, with an `Origin` header when given.
pub async fn ws_open(addr: SocketAddr, path_and_query: &str, origin: Option<&str>) -> Result<Ws, String> {
    let mut req = format!("ws://{addr}{path_and_query}").into_client_request().map_err(|e| e.to_string())?;
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// The next text frame.
pub async fn ws_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Waits for the server to end the connection; returns the close frame's code, if one was sent.
pub async fn ws_closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("expected the end, got {other:?}"),
            Some(Err(_)) | None => return None,
        }
    }
}
