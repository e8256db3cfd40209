//! WebSocket clients (docs/protocol.md#websocket): an RFC 6455 upgrade on `/sub?key=&heartbeat=`
//! (plain HTTP and other versions get an HTTP answer), then status strings as text frames, `h`
//! frames as heartbeats and one text frame per push. Buffers are a few KiB from config, and frames
//! larger than the write buffer bypass it, so no idle connection keeps a message-sized buffer.

use crate::admission::{Slot, Subscription, admit};
use crate::config::ChannelConfig;
use crate::conn::{CloseReason, Closed, Conn};
use crate::error::{Error, HEARTBEAT_REPLY};
use crate::handshake::{Optional, Subscribe};
use crate::state::Shared;
use bytes::Buf;
use cluster::Proto;
use cluster::query::Query;
use futures::{SinkExt, StreamExt};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::{Message, WebSocketConfig};
use tracing::debug;

/// Deadline for a status frame or close frame before the socket is dropped.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// The library settings for one connection, from `[channel]`.
fn ws_config(c: &ChannelConfig) -> WebSocketConfig {
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

/// Serves one accepted WebSocket client, holding its connection slot until it ends.
pub(crate) async fn connection(stream: TcpStream, shared: Arc<Shared>, _slot: Slot) {
    // Boxed: the upgrade's and the handshake's state is freed once they end, so an idle
    // connection's task is sized by `run` alone (docs/decisions.md#d35-small-fixed-per-connection-memory).
    let Some((mut ws, subscription, idle)) = Box::pin(subscribe(stream, &shared)).await else { return };
    run(&mut ws, &subscription.conn, idle, &shared.config.channel).await;
}

/// Upgrades the connection, then admits the subscription its URL asks for and replays what a
/// resume asks for; the socket, the subscription and its heartbeat deadline, or `None` once the
/// client was answered or left.
async fn subscribe(
    stream: TcpStream,
    shared: &Arc<Shared>,
) -> Option<(WebSocketStream<Capped>, Subscription, Duration)> {
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
    let deadline = tokio::time::Instant::now() + c.handshake_timeout;
    let mut capped = Capped { inner: stream, budget: c.ws_max_request, replay: Vec::new(), replayed: 0 };
    let head = match tokio::time::timeout_at(deadline, read_head(&mut capped)).await {
        Ok(Ok(Some(head))) => head,
        // EOF, an error, an oversized head or the deadline: nothing worth answering.
        _ => return None,
    };
    if let Some(answer) = http_answer(&head) {
        debug!(answer = answer.lines().next().unwrap_or_default(), "not a websocket upgrade");
        let _ = tokio::time::timeout(REPLY_TIMEOUT, async {
            capped.inner.write_all(answer.as_bytes()).await?;
            capped.inner.shutdown().await
        })
        .await;
        return None;
    }
    // The library reads the request again, from the bytes already read.
    capped.replay = head;
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(capped, callback, Some(ws_config(c)));
    let mut ws = match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            debug!(error = %e, "websocket upgrade failed");
            crate::metrics::upgrade_failed(&e);
            return None;
        }
        Err(_) => {
            crate::metrics::refused(crate::metrics::HANDSHAKE);
            return None;
        }
    };
    let socket = ws.get_mut();
    socket.budget = usize::MAX;
    socket.replay = Vec::new();

    let admitted = match query.as_deref().map(|q| parse_subscribe(q, shared)) {
        Some(Ok(sub)) => admit(shared, &sub, Proto::WebSocket).await.map(|s| (s, sub)),
        Some(Err(e)) => Err(e),
        None => Err(Error::BadParameter),
    };
    let (subscription, sub) = match admitted {
        Ok(ok) => ok,
        Err(e) => {
            debug!(error = %e, "websocket subscription refused");
            crate::metrics::handshake_failed(&e);
            // Upstream drops the TCP connection after the status frame, without a close frame.
            if let Some(reply) = e.reply() {
                let _ =
                    tokio::time::timeout(REPLY_TIMEOUT, ws.send(Message::Text(Utf8Bytes::from_static(reply)))).await;
            }
            return None;
        }
    };
    crate::resume::replay(shared, &subscription, sub.resume).await;
    Some((ws, subscription, shared.idle_timeout(sub.heartbeat)))
}

/// Reads the HTTP request head (up to the blank line, within the `Capped` budget); `None` when
/// the client left before sending it.
async fn read_head(socket: &mut Capped) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        // httparse, behind the library, also ends a head at a bare `\n\n`.
        let tail = &head[from..];
        if tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
    }
}

/// The HTTP answer for a request that is not a version-13 WebSocket upgrade, which the library
/// would drop without a word: 400 for plain HTTP, 426 naming version 13 for other versions.
/// Anything else goes to the library (`None`).
fn http_answer(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let header = |name: &str| {
        let mut lines = text.split('\n').skip(1).take_while(|l| !l.trim_end_matches('\r').is_empty());
        lines.find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let upgrade = header("upgrade").is_some_and(|u| u.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket")));
    let (status, extra, body) = if !upgrade {
        (
            "400 Bad Request",
            "",
            "This port speaks WebSocket only: GET /sub?key=KEY&heartbeat=SECONDS with Upgrade: websocket.\n",
        )
    } else if header("sec-websocket-version").as_deref() != Some("13") {
        ("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n", "Only WebSocket version 13 is supported.\n")
    } else {
        return None;
    };
    Some(format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// The header of an unmasked, final text frame of `len` payload bytes (RFC 6455, 5.2).
fn text_frame_header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x81;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Writes a large text frame straight to the socket, after everything the library holds, so the
/// library's out-buffer never grows to the frame's size (it keeps its capacity once grown).
async fn write_large(ws: &mut WebSocketStream<Capped>, frame: &Utf8Bytes) -> Result<(), ()> {
    // Flushing empties the library's buffer (queued frames, a pending pong) before our bytes.
    ws.flush().await.map_err(|_| ())?;
    let (header, n) = text_frame_header(frame.len());
    let mut bytes = Buf::chain(&header[..n], frame.as_bytes());
    ws.get_mut().inner.write_all_buf(&mut bytes).await.map_err(|_| ())
}

fn parse_subscribe(query: &str, shared: &Shared) -> Result<Subscribe, Error> {
    // A malformed pair elsewhere in the query is skipped, as Go's `url.ParseQuery` does.
    let q = Query::parse(query.as_bytes());
    let (Some(key), Some(heartbeat)) = (q.bytes("key"), q.bytes("heartbeat")) else { return Err(Error::BadParameter) };
    let optional =
        Optional { token: q.bytes("token"), version: q.bytes("ver"), mid: q.bytes("mid"), rooms: q.bytes("room") };
    Subscribe::from_fields(key, heartbeat, optional, shared.limits())
}

async fn run(ws: &mut WebSocketStream<Capped>, conn: &Conn, idle: Duration, c: &ChannelConfig) {
    let write_timeout = c.write_timeout;
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
                        Ok(Some(frame)) if frame.len() > c.ws_write_buffer => {
                            match tokio::time::timeout(write_timeout, write_large(ws, &frame)).await {
                                Ok(Ok(())) => {}
                                _ => return,
                            }
                        }
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
                // The library answers pings; they do not count as heartbeats (docs/protocol.md#websocket).
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // Anything else, a close, an oversized frame or an error ends the connection.
                _ => return,
            },
            _ = &mut deadline => {
                conn.note(CloseReason::Heartbeat);
                return crate::metrics::refused(crate::metrics::HEARTBEAT);
            }
        }
    }
    // Closed by the comet (migration, close_key, full outbox, shutdown): the code and reason say why.
    let (code, reason) = conn.reason().close_frame();
    let close = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from_static(reason) };
    let _ = tokio::time::timeout(REPLY_TIMEOUT, ws.close(Some(close))).await;
}

fn heartbeat(conn: &Conn, deadline: Pin<&mut tokio::time::Sleep>, idle: Duration) {
    conn.push(Utf8Bytes::from_static(HEARTBEAT_REPLY));
    deadline.reset(tokio::time::Instant::now() + idle);
}

/// A client socket that fails reads past a byte budget: the upgrade request has no size limit
/// of its own in the library. The budget is lifted once the upgrade is done.
struct Capped {
    inner: TcpStream,
    budget: usize,
    // The request head read before the upgrade, given to the library first; not budgeted twice.
    replay: Vec<u8>,
    replayed: usize,
}

impl AsyncRead for Capped {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.replayed < self.replay.len() {
            let n = buf.remaining().min(self.replay.len() - self.replayed);
            let start = self.replayed;
            buf.put_slice(&self.replay[start..start + n]);
            self.replayed += n;
            return Poll::Ready(Ok(()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_for_what_the_library_would_drop() {
        let plain = http_answer(b"GET /sub?key=k&heartbeat=30 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(plain.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{plain}");
        let v8 = b"GET /sub HTTP/1.1\nUpgrade: WebSocket\nSec-WebSocket-Version: 8\n\n";
        let v8 = http_answer(v8).unwrap();
        assert!(v8.starts_with("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"), "{v8}");
        let v13 = b"GET /sub HTTP/1.1\r\nupgrade: websocket\r\nsec-websocket-version:13\r\n\r\n";
        assert_eq!(http_answer(v13), None, "the library decides the rest");
        // Headers end at the blank line: pipelined bytes after it are not read as headers.
        assert!(http_answer(b"GET / HTTP/1.1\r\n\r\nUpgrade: websocket\r\n").unwrap().contains(" 400 "));
    }

    #[test]
    fn frame_headers_use_the_shortest_length_encoding() {
        let header = |len| {
            let (h, n) = text_frame_header(len);
            h[..n].to_vec()
        };
        assert_eq!(header(125), [0x81, 125]);
        assert_eq!(header(126), [0x81, 126, 0, 126]);
        assert_eq!(header(65_535), [0x81, 126, 0xff, 0xff]);
        assert_eq!(header(65_536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
