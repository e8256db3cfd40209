//! Subscribers as an SDK would be: ask web which comet serves the key, connect over TCP (the `*N`
//! RESP-like `sub` command, docs/protocol.md#tcp) or WebSocket (`/sub?key=&heartbeat=&ver=`,
//! docs/protocol.md#websocket), wait for
//! `+h\r\n`, then read pushed frames with a deadline. A refused or failed attempt asks web again,
//! as clients do after a migration.

use super::http::server_get;
use futures::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a subscriber keeps asking web and retrying before the test fails.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(45);

/// What the next read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A pushed message: the JSON bytes (without the TCP `$len` framing).
    Frame(Vec<u8>),
    /// A status line such as `+h\r\n` or `-n\r\n`.
    Status(String),
    /// The server closed the connection.
    Closed,
    /// Nothing within the deadline.
    Timeout,
}

/// The `sub` command; `version` `Some` asks for the new message format.
pub fn sub_command(key: &str, version: Option<&str>) -> Vec<u8> {
    let mut args = vec!["sub", key, "30"];
    if let Some(v) = version {
        args.extend(["", v]);
    }
    command(&args)
}

/// The `sub` command in the new format resuming after `mid` (docs/protocol.md#resume).
pub fn resume_command(key: &str, mid: u64) -> Vec<u8> {
    command(&["sub", key, "30", "", "1", &mid.to_string()])
}

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    out.into_bytes()
}

/// A TCP subscriber.
pub struct TcpSub {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The comet address it is connected to.
    pub server: String,
}

impl TcpSub {
    /// Connects to `server` and subscribes; `Err` carries the refusal (`-n\r\n`, ...) or the failure.
    pub async fn connect(server: &str, key: &str, version: Option<&str>) -> Result<TcpSub, String> {
        TcpSub::start(server, &sub_command(key, version)).await
    }

    /// Connects to `server` and sends `sub` with exactly these arguments after `sub`, e.g. a 7th
    /// naming rooms (docs/protocol.md#rooms-at-subscribe).
    pub async fn connect_args(server: &str, args: &[&str]) -> Result<TcpSub, String> {
        let mut all = vec!["sub"];
        all.extend_from_slice(args);
        TcpSub::start(server, &command(&all)).await
    }

    /// Connects to `server` and subscribes in the new format, resuming after `mid`.
    pub async fn resume(server: &str, key: &str, mid: u64) -> Result<TcpSub, String> {
        TcpSub::start(server, &resume_command(key, mid)).await
    }

    async fn start(server: &str, command: &[u8]) -> Result<TcpSub, String> {
        let stream = timeout(Duration::from_secs(5), TcpStream::connect(server))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let mut sub = TcpSub { stream, buf: Vec::new(), server: server.to_string() };
        sub.stream.write_all(command).await.map_err(|e| format!("write: {e}"))?;
        match sub.next(Duration::from_secs(10)).await {
            Next::Status(s) if s == "+h" => Ok(sub),
            other => Err(format!("subscribe answered {other:?}")),
        }
    }

    /// Asks web (`p=2`) and subscribes, retrying until [`SUBSCRIBE_TIMEOUT`].
    pub async fn subscribe(public: &str, key: &str, version: Option<&str>) -> TcpSub {
        subscribe_via_web(public, key, 2, |server| async move { TcpSub::connect(&server, key, version).await }).await
    }

    /// Reads the next frame or status line.
    pub async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(n) = self.parse() {
                return n;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Next::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
            assert!(self.buf.len() < 1 << 20, "a frame larger than 1 MiB from {}", self.server);
        }
    }

    /// Takes one whole frame or status line off the buffer.
    fn parse(&mut self) -> Option<Next> {
        let nl = self.buf.iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&self.buf[..nl]).trim_end_matches('\r').to_string();
        if let Some(len) = line.strip_prefix('$') {
            let len: usize = len.parse().unwrap_or_else(|_| panic!("bad frame header {line:?}"));
            let end = nl + 1 + len + 2;
            if self.buf.len() < end {
                return None;
            }
            assert_eq!(&self.buf[end - 2..end], b"\r\n", "frame not followed by CRLF");
            let frame = self.buf[nl + 1..nl + 1 + len].to_vec();
            self.buf.drain(..end);
            return Some(Next::Frame(frame));
        }
        self.buf.drain(..=nl);
        Some(Next::Status(line))
    }

    /// The next pushed message as JSON; panics on anything else.
    pub async fn message(&mut self, wait: Duration) -> serde_json::Value {
        match self.next(wait).await {
            Next::Frame(f) => serde_json::from_slice(&f)
                .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {:?}", String::from_utf8_lossy(&f))),
            other => panic!("expected a pushed message on TCP {}, got {other:?}", self.server),
        }
    }

    /// The next pushed frame's raw bytes; panics on anything else.
    pub async fn raw(&mut self, wait: Duration) -> Vec<u8> {
        match self.next(wait).await {
            Next::Frame(f) => f,
            other => panic!("expected a pushed frame on TCP {}, got {other:?}", self.server),
        }
    }

    /// True when the server closes the connection within `wait` (frames in between are skipped).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Closed => return true,
                Next::Timeout => return false,
                Next::Frame(_) | Next::Status(_) => {}
            }
        }
    }
}

/// A WebSocket subscriber.
pub struct WsSub {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The comet address it is connected to.
    pub server: String,
}

impl WsSub {
    /// Upgrades on `ws://server/sub?key=key&heartbeat=30[&ver=ver]` and waits for `+h\r\n`.
    pub async fn connect(server: &str, key: &str, ver: Option<&str>) -> Result<WsSub, String> {
        let mut query = format!("key={key}&heartbeat=30");
        if let Some(v) = ver {
            query.push_str(&format!("&ver={v}"));
        }
        WsSub::start(server, &query).await
    }

    /// Upgrades on `ws://server/sub?query` and waits for `+h\r\n`.
    pub async fn connect_query(server: &str, query: &str) -> Result<WsSub, String> {
        WsSub::start(server, query).await
    }

    /// Upgrades with `ver=1&mid=mid`: the new format, resuming after `mid`.
    pub async fn resume(server: &str, key: &str, mid: u64) -> Result<WsSub, String> {
        WsSub::start(server, &format!("key={key}&heartbeat=30&ver=1&mid={mid}")).await
    }

    async fn start(server: &str, query: &str) -> Result<WsSub, String> {
        let url = format!("ws://{server}/sub?{query}");
        let (ws, _) = timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url.as_str()))
            .await
            .map_err(|_| "upgrade timed out".to_string())?
            .map_err(|e| format!("upgrade: {e}"))?;
        let mut sub = WsSub { ws, server: server.to_string() };
        match sub.next(Duration::from_secs(10)).await {
            Next::Status(s) if s == "+h\r\n" => Ok(sub),
            other => Err(format!("subscribe answered {other:?}")),
        }
    }

    /// Asks web (`p=1`) and subscribes, retrying until [`SUBSCRIBE_TIMEOUT`].
    pub async fn subscribe(public: &str, key: &str, ver: Option<&str>) -> WsSub {
        subscribe_via_web(public, key, 1, |server| async move { WsSub::connect(&server, key, ver).await }).await
    }

    /// Reads the next data frame: text starting with `+`/`-` is a status (CRLF kept), else a message.
    pub async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Next::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Next::Closed,
                Ok(Some(Ok(m))) => m,
            };
            let data = match msg {
                Message::Text(t) => t.as_str().as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => return Next::Closed,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            return match data.first() {
                Some(b'+' | b'-') => Next::Status(String::from_utf8_lossy(&data).into_owned()),
                _ => Next::Frame(data),
            };
        }
    }

    /// The next pushed message as JSON; panics on anything else.
    pub async fn message(&mut self, wait: Duration) -> serde_json::Value {
        match self.next(wait).await {
            Next::Frame(f) => serde_json::from_slice(&f)
                .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {:?}", String::from_utf8_lossy(&f))),
            other => panic!("expected a pushed message on WebSocket {}, got {other:?}", self.server),
        }
    }

    /// Sends the heartbeat `h` and expects `+h\r\n` back.
    pub async fn heartbeat(&mut self) {
        self.ws.send(Message::text("h")).await.unwrap_or_else(|e| panic!("ws send: {e}"));
        assert_eq!(self.next(Duration::from_secs(10)).await, Next::Status("+h\r\n".into()));
    }

    /// True when the server closes the connection within `wait` (frames in between are skipped).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Closed => return true,
                Next::Timeout => return false,
                Next::Frame(_) | Next::Status(_) => {}
            }
        }
    }

    /// The code and reason of the server's close frame within `wait` (other frames are skipped);
    /// `None` when the connection ended without one or stayed open.
    #[allow(dead_code)] // the presence tests use it; other test binaries share this harness
    pub async fn close_frame(&mut self, wait: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string()));
                }
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }
}

impl TcpSub {
    /// Sends the heartbeat byte `h` and expects `+h\r\n` back.
    pub async fn heartbeat(&mut self) {
        self.stream.write_all(b"h").await.unwrap_or_else(|e| panic!("tcp send: {e}"));
        assert_eq!(self.next(Duration::from_secs(10)).await, Next::Status("+h".into()));
    }
}

/// Asks web which comet serves `key` for protocol `p` and subscribes there with `connect`, retrying
/// both until [`SUBSCRIBE_TIMEOUT`], as a real client does after a disconnect.
async fn subscribe_via_web<T, F, Fut>(public: &str, key: &str, p: u8, connect: F) -> T
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let what = if p == 1 { "WebSocket" } else { "TCP" };
    let subscribed = std::sync::Mutex::new(None);
    let (subscribed_ref, connect) = (&subscribed, &connect);
    super::eventually(&format!("{what} subscribe {key} via {public}"), SUBSCRIBE_TIMEOUT, || async move {
        let failure = match server_get(public, key, p).await {
            Some(server) => match connect(server.clone()).await {
                Ok(sub) => {
                    *subscribed_ref.lock().unwrap_or_else(|e| e.into_inner()) = Some(sub);
                    return true;
                }
                Err(e) => format!("{server}: {e}"),
            },
            None => "web gave no server".to_string(),
        };
        // Captured by the test harness and shown only if the test fails.
        eprintln!("{what} subscribe {key} via {public}: {failure}");
        false
    })
    .await;
    let sub = subscribed.lock().unwrap_or_else(|e| e.into_inner()).take();
    sub.unwrap_or_else(|| panic!("{what} subscribe {key}: no subscription after success"))
}
