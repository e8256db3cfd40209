//! Resume on subscribe (docs/protocol.md#resume, docs/decisions.md#d70-resume-on-subscribe): a
//! client that sends the last mid it saw gets every stored message after it, then the live ones,
//! in mid order, with no gap and no duplicate. Admission holds the connection's live messages and
//! joins it at a boundary no delivery crosses; this reads the store for what came before the
//! boundary and releases the held messages behind it.

use crate::admission::Subscription;
use crate::frame::Frames;
use crate::metrics as m;
use crate::state::Shared;
use cluster::gojson;
use cluster::rpc::Mid;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tracing::debug;

/// Sent after `+h\r\n` when the store could not be read: the client is subscribed and receives
/// live messages, but must fetch what it missed with `/1/msg/get`.
pub(crate) const RESUME_FAILED: &str = "+r\r\n";

/// Queues the stored messages newer than `after` and older than the subscription's boundary, then
/// the live messages held meanwhile. Does nothing for a subscription that did not ask to resume.
pub(crate) async fn replay(shared: &Shared, sub: &Subscription, after: Option<Mid>) {
    let (Some(after), Some(boundary)) = (after, sub.boundary) else { return };
    let conn = &sub.conn;
    // The store call has its own RPC deadline; this bounds a local store or a stuck pool too.
    let read = shared.messages.get_private(sub.key.clone(), after);
    let stored = match tokio::time::timeout(shared.config.channel.handshake_timeout, read).await {
        Ok(Ok(stored)) => stored,
        outcome => {
            debug!(key = %sub.key, ?outcome, "resume could not read the store");
            metrics::counter!(m::RESUMES, "outcome" => "failed").increment(1);
            conn.push(Utf8Bytes::from_static(RESUME_FAILED));
            conn.resume(Vec::new(), after);
            return;
        }
    };
    let mut frames: Vec<(Mid, Utf8Bytes)> = stored
        .into_iter()
        // Messages from the boundary on reach the connection live, in their place.
        .filter(|s| s.mid > after && s.mid < boundary)
        .filter_map(|s| {
            // The store keeps what was published, which was checked as JSON on the way in.
            let compacted = gojson::compact(&s.msg)?;
            let frame = Frames::new(compacted, s.msg, s.mid).get(conn.proto, conn.new_format);
            Some((s.mid, frame))
        })
        .collect();
    frames.sort_unstable_by_key(|(mid, _)| *mid);
    frames.dedup_by_key(|(mid, _)| *mid);
    metrics::counter!(m::RESUMES, "outcome" => "ok").increment(1);
    metrics::counter!(m::DELIVERIES).increment(frames.len() as u64);
    conn.resume(frames, after);
}
