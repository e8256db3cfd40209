//! TCP clients (docs/protocol.md#tcp): read the subscribe command within the handshake deadline
//! (parsed by `handshake`, checked by `admission`), reply `+h\r\n` or a status line, then run one
//! task per connection that answers `h` heartbeats and writes queued pushes, coalescing a burst
//! into one write. Any other byte, a missed heartbeat deadline or a stuck write closes it.

use crate::admission::{Slot, Subscription, admit};
use crate::conn::{CloseReason, Conn, Queued, Take};
use crate::error::{Error, HEARTBEAT_REPLY};
use crate::handshake::{MAX_ARG, MAX_ARGS, Parse, Subscribe, parse};
use crate::state::Shared;
use bytes::BytesMut;
use cluster::Proto;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tracing::debug;

/// The longest well-formed command: five maximal arguments and their headers.
const MAX_COMMAND: usize = 4 + MAX_ARGS * (MAX_ARG + 12);

/// Deadline for writing a refusal before closing.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one accepted TCP client, holding its connection slot until it ends.
pub(crate) async fn connection(mut stream: TcpStream, shared: Arc<Shared>, _slot: Slot) {
    // Boxed: the handshake's state is freed once it ends, so an idle connection's task is sized by
    // `run` alone (docs/decisions.md#d35-small-fixed-per-connection-memory).
    let Some((subscription, idle)) = Box::pin(subscribe(&mut stream, &shared)).await else { return };
    run(&mut stream, &subscription.conn, idle, shared.config.channel.write_timeout).await;
}

/// Reads and admits the subscribe command, answers it, and replays what a resume asks for; the
/// subscription and its heartbeat deadline, or `None` once a refusal was answered.
async fn subscribe(stream: &mut TcpStream, shared: &Arc<Shared>) -> Option<(Subscription, Duration)> {
    let handshake = tokio::time::timeout(shared.config.channel.handshake_timeout, read_command(stream, shared));
    let admitted = match handshake.await {
        Err(_) => Err(Error::HandshakeTimeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok((sub, pipelined))) => admit(shared, &sub, Proto::Tcp).await.map(|s| (s, sub, pipelined)),
    };
    let (subscription, sub, pipelined) = match admitted {
        Ok(ok) => ok,
        Err(e) => {
            debug!(error = %e, "tcp subscription refused");
            crate::metrics::handshake_failed(&e);
            if let Some(reply) = e.reply() {
                let _ = tokio::time::timeout(REPLY_TIMEOUT, stream.write_all(reply.as_bytes())).await;
            }
            return None;
        }
    };
    crate::resume::replay(shared, &subscription, sub.resume).await;
    let conn = &subscription.conn;
    // Heartbeats sent before `+h\r\n` arrived are answered (upstream dropped them); junk closes.
    for _ in 0..pipelined.heartbeats {
        conn.push(Utf8Bytes::from_static(HEARTBEAT_REPLY));
    }
    if pipelined.junk {
        conn.finish();
    }
    Some((subscription, shared.idle_timeout(sub.heartbeat)))
}

/// Bytes that followed the command in the same reads.
#[derive(Debug, Default)]
struct Pipelined {
    heartbeats: usize,
    junk: bool,
}

async fn read_command(stream: &mut TcpStream, shared: &Shared) -> Result<(Subscribe, Pipelined), Error> {
    let mut buf = Vec::with_capacity(256);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(512.min(MAX_COMMAND + 64 - buf.len()).max(1));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::MalformedCommand);
        }
        match parse(&buf) {
            Parse::Complete { args, consumed } => {
                let sub = Subscribe::from_args(&args, shared.limits())?;
                let rest = &buf[consumed..];
                let heartbeats = rest.iter().take_while(|&&b| b == b'h').count();
                return Ok((sub, Pipelined { heartbeats, junk: heartbeats < rest.len() }));
            }
            Parse::Incomplete if buf.len() < MAX_COMMAND => {}
            Parse::Incomplete | Parse::Invalid => return Err(Error::MalformedCommand),
        }
    }
}

/// Serves a subscribed connection until the client leaves, misbehaves or the comet closes it.
async fn run(stream: &mut TcpStream, conn: &Conn, idle: Duration, write_timeout: Duration) {
    let (mut rd, mut wr) = stream.split();
    let reader = async {
        let mut buf = [0u8; 16];
        loop {
            match tokio::time::timeout(idle, rd.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    for &b in &buf[..n] {
                        if b != b'h' {
                            // Answer the heartbeats before it, then close: the writer ends the task.
                            conn.finish();
                            return std::future::pending().await;
                        }
                        if conn.push(Utf8Bytes::from_static(HEARTBEAT_REPLY)) != Queued::Yes {
                            return;
                        }
                    }
                }
                Err(_) => {
                    conn.note(CloseReason::Heartbeat);
                    return crate::metrics::refused(crate::metrics::HEARTBEAT);
                }
                // EOF or an error.
                _ => return,
            }
        }
    };
    let writer = async {
        let mut batch = BytesMut::new();
        loop {
            let written = match conn.take(&mut batch) {
                Take::Closed => return,
                Take::Empty => {
                    conn.wait().await;
                    continue;
                }
                Take::One(frame) => tokio::time::timeout(write_timeout, wr.write_all(frame.as_bytes())).await,
                Take::Batch => {
                    let r = tokio::time::timeout(write_timeout, wr.write_all(&batch)).await;
                    // Give the burst's buffer back: idle connections keep no buffer.
                    batch = BytesMut::new();
                    r
                }
            };
            if !matches!(written, Ok(Ok(()))) {
                return;
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
        _ = conn.killed() => {}
    }
}
