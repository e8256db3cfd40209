//! WebSocket clients (§3.2): an RFC 6455 upgrade on `/sub?key=&heartbeat=&token=&ver=`, with or
//! without `Origin` (optionally restricted by `allowed_origins`), then the TCP protocol's status
//! strings as text frames, `h` data frames as heartbeats, and one text frame per pushed message.
//! Buffers are sized from config (a few KiB, not the library's 128 KiB) to keep idle clients cheap.

use crate::config::ChannelConfig;
use crate::conn::{Closed, Conn, Proto};
use crate::error::{Error, HEARTBEAT_REPLY};
use crate::handshake::{Subscribe, query_params};
use crate::state::{Shared, Slot};
use futures::{SinkExt, StreamExt};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::{Message, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Deadline for a status frame or close frame before the socket is dropped.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts WebSocket clients on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    crate::state::accept_loop(listener, shared, stop, Proto::WebSocket, connection).await
}

/// The library settings for one connection, from `[channel]`.
pub fn ws_config(c: &ChannelConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(c.ws_read_buffer)
        .write_buffer_size(c.ws_write_buffer)
        // Pushes are bounded by the outbox; this only has to exceed the write buffer.
        .max_write_buffer_size(c.ws_write_buffer + (1 << 20))
        .max_message_size(Some(c.ws_max_frame))
        .max_frame_size(Some(c.ws_max_frame))
}

fn refuse(status: StatusCode) -> ErrorResponse {
    let mut resp = ErrorResponse::new(None);
    *resp.status_mut() = status;
    resp
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, _slot: Slot) {
    let c = &shared.config.channel;
    let mut query: Option<String> = None;
    // The library's callback signature fixes the error type; it is built once per refusal.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != "/sub" {
            return Err(refuse(StatusCode::NOT_FOUND));
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            if !c.allowed_origins.is_empty() && !c.allowed_origins.iter().any(|o| o.as_bytes() == origin.as_bytes()) {
                return Err(refuse(StatusCode::FORBIDDEN));
            }
        }
        query = Some(req.uri().query().unwrap_or_default().to_string());
        Ok(resp)
    };
    let capped = Capped { inner: stream, budget: c.ws_max_request };
    // Boxed so the upgrade's large state is freed afterwards instead of sizing every task.
    let upgrade = Box::pin(tokio_tungstenite::accept_hdr_async_with_config(capped, callback, Some(ws_config(c))));
    let mut ws = match tokio::time::timeout(c.handshake_timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            debug!(error = %e, "websocket upgrade failed");
            crate::metrics::upgrade_failed(&e);
            return;
        }
        Err(_) => return crate::metrics::refused(crate::metrics::HANDSHAKE),
    };
    ws.get_mut().budget = usize::MAX;

    let admitted = match query.as_deref().map(|q| parse_subscribe(q, &shared)) {
        Some(Ok(sub)) => shared.admit(&sub, Proto::WebSocket).await.map(|s| (s, sub.heartbeat)),
        Some(Err(e)) => Err(e),
        None => Err(Error::Param),
    };
    let (subscription, heartbeat) = match admitted {
        Ok(ok) => ok,
        Err(e) => {
            debug!(error = %e, "websocket subscription refused");
            crate::metrics::handshake_failed(&e);
            // Upstream drops the TCP connection after the status frame, without a close frame.
            if let Some(reply) = e.reply() {
                let _ =
                    tokio::time::timeout(REPLY_TIMEOUT, ws.send(Message::Text(Utf8Bytes::from_static(reply)))).await;
            }
            return;
        }
    };
    run(&mut ws, &subscription.conn, shared.idle_timeout(heartbeat), c.write_timeout).await;
}

fn parse_subscribe(query: &str, shared: &Shared) -> Result<Subscribe, Error> {
    let [key, heartbeat, token, ver] = query_params(query)?;
    let (Some(key), Some(heartbeat)) = (key, heartbeat) else { return Err(Error::Param) };
    Subscribe::from_fields(&key, &heartbeat, token.as_deref(), ver.as_deref(), shared.limits())
}

async fn run(ws: &mut WebSocketStream<Capped>, conn: &Conn, idle: Duration, write_timeout: Duration) {
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            _ = conn.killed() => break,
            _ = conn.wait() => {
                let mut sent = false;
                loop {
                    match conn.pop() {
                        Err(Closed) => break,
                        Ok(None) => break,
                        Ok(Some(frame)) => {
                            // `feed` buffers; the flush below writes the burst at once.
                            match tokio::time::timeout(write_timeout, ws.feed(Message::Text(frame))).await {
                                Ok(Ok(())) => sent = true,
                                _ => return,
                            }
                        }
                    }
                }
                if sent && !matches!(tokio::time::timeout(write_timeout, ws.flush()).await, Ok(Ok(()))) {
                    return;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) if t.as_str() == "h" => heartbeat(conn, deadline.as_mut(), idle),
                Some(Ok(Message::Binary(b))) if &b[..] == b"h" => heartbeat(conn, deadline.as_mut(), idle),
                // The library answers pings; they do not count as heartbeats (§3.2).
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // Anything else, a close, an oversized frame or an error ends the connection.
                _ => return,
            },
            _ = &mut deadline => return crate::metrics::refused(crate::metrics::HEARTBEAT),
        }
    }
    // Closed by the comet (migration, close_key, full outbox, shutdown): a normal close frame.
    let close = CloseFrame { code: CloseCode::Normal, reason: Utf8Bytes::from_static("") };
    let _ = tokio::time::timeout(REPLY_TIMEOUT, ws.close(Some(close))).await;
}

fn heartbeat(conn: &Conn, deadline: Pin<&mut tokio::time::Sleep>, idle: Duration) {
    conn.push(Utf8Bytes::from_static(HEARTBEAT_REPLY));
    deadline.reset(tokio::time::Instant::now() + idle);
}

/// A client socket that fails reads past a byte budget: the upgrade request has no size limit
/// of its own in the library. The budget is lifted once the upgrade is done.
pub struct Capped {
    inner: TcpStream,
    budget: usize,
}

impl AsyncRead for Capped {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.budget == 0 {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "upgrade request too large")));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        self.budget = self.budget.saturating_sub(got);
        poll
    }
}

impl AsyncWrite for Capped {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
