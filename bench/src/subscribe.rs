//! One subscriber, as a real client does it (docs/protocol.md#client-lifecycle): optionally ask web which comet holds
//! the key, connect, send the TCP `sub` command or the WebSocket `/sub` upgrade, wait for `+h`, then
//! hold the connection with `h` heartbeats and hand every pushed message to a callback. Failures come
//! back as a short kind label (`connect_refused`, `refused_n`, ..) for the reports to count.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::{Message, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use crate::http::HttpClient;
use crate::socket::connect_tcp;
use crate::target::loopback_addr;
use crate::wire::{self, Frame, MAX_FRAME, Parsed};

/// How long a connect, a handshake or a web lookup may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence tolerated beyond the heartbeat interval before the bench calls a connection dead.
const SILENCE_GRACE: Duration = Duration::from_secs(15);

/// The client protocol: the one enum comet and web use too, so the bench's `tcp`/`ws` and the `p`
/// code it sends web cannot drift from theirs.
pub use cluster::Proto;

/// How subscribers connect.
#[derive(Debug, Clone)]
pub struct SubOptions {
    /// TCP or WebSocket.
    pub proto: Proto,
    /// Heartbeat interval announced and kept, seconds (≥ 30 by protocol).
    pub heartbeat_secs: u64,
    /// Version sent in the handshake; `Some` asks for the new message format.
    pub ver: Option<String>,
    /// Source address for client sockets.
    pub bind_ip: Option<IpAddr>,
    /// Per-connection read buffer, bytes (small for idle connections, larger for pushes).
    pub read_buf: usize,
}

/// Why one subscription failed or ended early: a short label counted in reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl Failure {
    fn new(kind: &str) -> Self {
        Failure(kind.to_string())
    }

    fn io(stage: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let what = match e.kind() {
            ConnectionRefused => "refused",
            ConnectionReset => "reset",
            TimedOut => "timeout",
            AddrNotAvailable | AddrInUse => "no_ports",
            UnexpectedEof => "closed",
            _ if e.raw_os_error() == Some(24) => "too_many_files",
            _ => "error",
        };
        Failure(format!("{stage}_{what}"))
    }
}

#[derive(Deserialize)]
struct ServerGet {
    ret: i64,
    data: Option<ServerData>,
}

#[derive(Deserialize)]
struct ServerData {
    server: String,
}

/// Asks web which comet address serves `key` for `proto` (`GET /1/server/get?k=KEY&p=1|2`).
pub async fn lookup(web: &mut HttpClient, key: &str, proto: Proto) -> Result<SocketAddr, Failure> {
    let path = format!("/1/server/get?k={}&p={}", wire::encode_query(key), proto.param());
    let resp = web.get(&path).await.map_err(|e| Failure::io("lookup", &e))?;
    if resp.status != 200 {
        return Err(Failure(format!("lookup_http_{}", resp.status)));
    }
    let parsed: ServerGet = serde_json::from_slice(&resp.body).map_err(|_| Failure::new("lookup_bad_json"))?;
    match (parsed.ret, parsed.data) {
        (0, Some(d)) => loopback_addr(&d.server).map_err(|_| Failure::new("lookup_not_loopback")),
        (0, None) => Err(Failure::new("lookup_no_data")),
        (ret, _) => Err(Failure(format!("lookup_ret_{ret}"))),
    }
}

/// An established subscription.
pub enum Session {
    /// TCP, with bytes already read past `+h`.
    Tcp(TcpStream, BytesMut),
    /// WebSocket.
    Ws(Box<WebSocketStream<TcpStream>>),
}

/// Connects to a comet and subscribes `key`; returns once `+h` arrived.
pub async fn subscribe(comet: SocketAddr, key: &str, opts: &SubOptions) -> Result<Session, Failure> {
    let stream = match timeout(STEP_TIMEOUT, connect_tcp(comet, opts.bind_ip)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Failure::io("connect", &e)),
        Err(_) => return Err(Failure::new("connect_timeout")),
    };
    let ver = opts.ver.as_deref();
    let handshake = async {
        match opts.proto {
            Proto::Tcp => subscribe_tcp(stream, key, opts.heartbeat_secs, ver, opts.read_buf).await,
            Proto::WebSocket => subscribe_ws(stream, comet, key, opts.heartbeat_secs, ver, opts.read_buf).await,
        }
    };
    timeout(STEP_TIMEOUT, handshake).await.unwrap_or_else(|_| Err(Failure::new("handshake_timeout")))
}

async fn subscribe_tcp(
    mut stream: TcpStream,
    key: &str,
    hb: u64,
    ver: Option<&str>,
    read_buf: usize,
) -> Result<Session, Failure> {
    stream.write_all(&wire::tcp_handshake(key, hb, ver)).await.map_err(|e| Failure::io("handshake", &e))?;
    let mut buf = BytesMut::with_capacity(read_buf.max(64));
    loop {
        match wire::parse_tcp(&buf) {
            Parsed::Frame(Frame::Heartbeat, n) => {
                buf.advance(n);
                return Ok(Session::Tcp(stream, buf));
            }
            Parsed::Frame(Frame::Refused(c), _) => return Err(refused(c)),
            Parsed::Frame(Frame::Message(_), _) | Parsed::Invalid(_) => return Err(Failure::new("handshake_protocol")),
            Parsed::Incomplete => {}
        }
        let n = stream.read_buf(&mut buf).await.map_err(|e| Failure::io("handshake", &e))?;
        if n == 0 {
            return Err(Failure::new("handshake_closed"));
        }
    }
}

fn refused(c: u8) -> Failure {
    Failure(format!("refused_{}", if c.is_ascii_alphanumeric() { c as char } else { '?' }))
}

/// WebSocket limits: small buffers, as the server keeps its own
/// (docs/decisions.md#d35-small-fixed-per-connection-memory).
fn ws_config(read_buf: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buf.max(256))
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
}

async fn subscribe_ws(
    stream: TcpStream,
    comet: SocketAddr,
    key: &str,
    hb: u64,
    ver: Option<&str>,
    read_buf: usize,
) -> Result<Session, Failure> {
    let url = format!("ws://{comet}{}", wire::ws_path(key, hb, ver));
    let mut req = url.into_client_request().map_err(|_| Failure::new("ws_bad_request"))?;
    // Upstream (x/net websocket) answers 403 without an Origin; browsers always send one.
    req.headers_mut().insert("Origin", HeaderValue::from_static("http://127.0.0.1"));
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config(read_buf)))
        .await
        .map_err(|e| Failure(format!("ws_upgrade_{}", ws_error_kind(&e))))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return match wire::parse_ws(t.as_bytes()) {
                    Ok(Frame::Heartbeat) => Ok(Session::Ws(Box::new(ws))),
                    Ok(Frame::Refused(c)) => Err(refused(c)),
                    _ => Err(Failure::new("handshake_protocol")),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(_)) => return Err(Failure::new("handshake_protocol")),
            Some(Err(_)) | None => return Err(Failure::new("handshake_closed")),
        }
    }
}

fn ws_error_kind(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => resp.status().as_u16().to_string(),
        E::Io(io) => Failure::io("io", io).0,
        _ => "error".to_string(),
    }
}

impl Session {
    /// Keeps the subscription alive until `stop`, sending `h` every `heartbeat` (the first after
    /// `first_heartbeat`, to spread them) and passing pushed message JSON to `on_message`.
    /// `Ok` means stopped by us; `Err` says how the connection died.
    pub async fn hold(
        self,
        heartbeat: Duration,
        first_heartbeat: Duration,
        stop: &CancellationToken,
        on_message: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), Failure> {
        match self {
            Session::Tcp(stream, buf) => hold_tcp(stream, buf, heartbeat, first_heartbeat, stop, on_message).await,
            Session::Ws(ws) => hold_ws(*ws, heartbeat, first_heartbeat, stop, on_message).await,
        }
    }
}

async fn hold_tcp(
    mut stream: TcpStream,
    mut buf: BytesMut,
    heartbeat: Duration,
    first_heartbeat: Duration,
    stop: &CancellationToken,
    on_message: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<(), Failure> {
    let chunk = buf.capacity().max(64);
    let mut next_hb = Instant::now() + first_heartbeat;
    let mut last_rx = Instant::now();
    loop {
        loop {
            let used = match wire::parse_tcp(&buf) {
                Parsed::Frame(Frame::Heartbeat, n) => n,
                Parsed::Frame(Frame::Message(json), n) => {
                    on_message(json);
                    n
                }
                Parsed::Frame(Frame::Refused(c), _) => return Err(refused(c)),
                Parsed::Invalid(_) => return Err(Failure::new("protocol")),
                Parsed::Incomplete => break,
            };
            buf.advance(used);
        }
        if buf.capacity() - buf.len() < chunk / 4 {
            buf.reserve(chunk);
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = sleep_until(next_hb) => {
                stream.write_all(b"h").await.map_err(|e| Failure::io("heartbeat", &e))?;
                next_hb += heartbeat;
            }
            _ = sleep_until(last_rx + heartbeat + SILENCE_GRACE) => return Err(Failure::new("heartbeat_timeout")),
            r = stream.read_buf(&mut buf) => match r {
                Ok(0) => return Err(Failure::new("closed_by_server")),
                Ok(_) => last_rx = Instant::now(),
                Err(e) => return Err(Failure::io("read", &e)),
            },
        }
    }
}

async fn hold_ws(
    mut ws: WebSocketStream<TcpStream>,
    heartbeat: Duration,
    first_heartbeat: Duration,
    stop: &CancellationToken,
    on_message: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<(), Failure> {
    let mut next_hb = Instant::now() + first_heartbeat;
    let mut last_rx = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                // Best effort: a clean close is polite, but it must not delay the end of a run.
                let _ = timeout(Duration::from_millis(200), ws.close(None)).await;
                return Ok(());
            }
            _ = sleep_until(next_hb) => {
                ws.send(Message::text("h")).await.map_err(|_| Failure::new("heartbeat_error"))?;
                next_hb += heartbeat;
            }
            _ = sleep_until(last_rx + heartbeat + SILENCE_GRACE) => return Err(Failure::new("heartbeat_timeout")),
            m = ws.next() => {
                last_rx = Instant::now();
                match m {
                    Some(Ok(Message::Text(t))) => match wire::parse_ws(t.as_bytes()) {
                        Ok(Frame::Heartbeat) => {}
                        Ok(Frame::Message(json)) => on_message(json),
                        Ok(Frame::Refused(c)) => return Err(refused(c)),
                        Err(_) => return Err(Failure::new("protocol")),
                    },
                    Some(Ok(Message::Binary(b))) => on_message(&b),
                    Some(Ok(Message::Close(_))) | None => return Err(Failure::new("closed_by_server")),
                    Some(Ok(_)) => {}
                    Some(Err(_)) => return Err(Failure::new("read_error")),
                }
            }
        }
    }
}
