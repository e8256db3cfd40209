//! The shared half of one client connection: a bounded outbox of ready-to-write frames and a
//! close flag. Pushes and heartbeat replies enqueue without waiting; the connection's task drains
//! the outbox. A full outbox closes the connection (a slow consumer), as upstream does; full means
//! over both the frame floor (`msgbuf`) and the byte limit (`outbox_bytes`).

use bytes::BytesMut;
use cluster::Proto;
use cluster::rpc::Mid;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

/// Largest batch copied together for one TCP write.
const MAX_BATCH: usize = 64 * 1024;

/// What a queued frame costs beyond its bytes (the queue entry), so that a flood of tiny frames
/// also reaches the byte limit.
const FRAME_OVERHEAD: usize = std::mem::size_of::<Utf8Bytes>();

/// How much an outbox may hold before its connection counts as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Frames always accepted, whatever their size (upstream's `msgbuf.num`).
    pub frames: usize,
    /// Past `frames`, frames are accepted while the queued bytes stay within this.
    pub bytes: usize,
}

/// One connection as the channels and pushes see it.
#[derive(Debug)]
pub struct Conn {
    /// Its protocol.
    pub proto: Proto,
    /// Whether it gets messages in the new format (it gave a version).
    pub new_format: bool,
    limit: Limit,
    outbox: Mutex<Outbox>,
    // Wakes the writer when frames arrive; `kill` wakes whoever waits for a close.
    wake: Notify,
    kill: Notify,
    // Why it ended: 0 until the first cause is noted, then that cause's `CloseReason as u8`.
    reason: AtomicU8,
    // Rooms the client joined at subscribe, for this connection only (docs/decisions.md#d57-rooms-joined-at-subscribe-belong-to-the-connection).
    own_rooms: Box<[Box<str>]>,
}

/// Why a connection ended, as webhooks report it and WebSocket close frames tell the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// The client hung up, or broke the protocol.
    Client = 1,
    /// The client missed its heartbeat deadline.
    Heartbeat,
    /// An operator closed the key (`close_key`).
    Server,
    /// A ring change moved the key to another comet, or this comet lost ZooKeeper.
    Moved,
    /// Its outbox was full.
    SlowConsumer,
    /// The comet is shutting down.
    Shutdown,
}

impl CloseReason {
    /// The name webhooks and docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client_close",
            CloseReason::Heartbeat => "heartbeat_timeout",
            CloseReason::Server => "server_close",
            CloseReason::Moved => "key_moved",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// The WebSocket close code and reason a client closed by the comet gets (docs/protocol.md).
    pub fn close_frame(self) -> (u16, &'static str) {
        match self {
            // Going away: the client may come back to another comet right away.
            CloseReason::Shutdown => (1001, "shutdown"),
            CloseReason::Server => (1000, "closed by server"),
            CloseReason::Moved => (1000, "key moved"),
            CloseReason::SlowConsumer => (1000, "slow consumer"),
            CloseReason::Client | CloseReason::Heartbeat => (1000, ""),
        }
    }

    fn from_u8(n: u8) -> CloseReason {
        match n {
            2 => CloseReason::Heartbeat,
            3 => CloseReason::Server,
            4 => CloseReason::Moved,
            5 => CloseReason::SlowConsumer,
            6 => CloseReason::Shutdown,
            _ => CloseReason::Client,
        }
    }
}

#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Utf8Bytes>,
    // Bytes of `queue`, each frame counted with FRAME_OVERHEAD.
    bytes: usize,
    closed: bool,
    // No more frames are taken; the writer ends once the queue is written.
    finishing: bool,
    // While a resume reads the store, live messages wait here with their mids, counted in
    // `bytes` and against the same limit as the queue (docs/protocol.md#resume).
    held: Option<Vec<(Mid, Utf8Bytes)>>,
}

/// What happened to an enqueued frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// It will be written.
    Yes,
    /// The outbox was full: the connection is now closed.
    Full,
    /// The connection was already closed.
    Closed,
}

/// What the writer should do next.
#[derive(Debug)]
pub enum Take {
    /// Nothing queued: wait for [`Conn::wait`].
    Empty,
    /// Close the connection.
    Closed,
    /// Exactly one frame was queued: write it as is.
    One(Utf8Bytes),
    /// Several frames were copied into the batch buffer: write it in one go.
    Batch,
}

impl Conn {
    /// A connection whose outbox holds at most `limit` and starts with `first`.
    pub fn new(proto: Proto, new_format: bool, limit: Limit, first: Utf8Bytes) -> Conn {
        let bytes = cost(&first);
        let mut queue = VecDeque::new();
        queue.push_back(first);
        let conn = Conn {
            proto,
            new_format,
            limit,
            outbox: Mutex::new(Outbox { queue, bytes, closed: false, finishing: false, held: None }),
            wake: Notify::new(),
            kill: Notify::new(),
            reason: AtomicU8::new(0),
            own_rooms: Box::default(),
        };
        // A stored permit: the writer's first wait returns at once for `first`.
        conn.wake.notify_one();
        conn
    }

    /// The same connection, in `rooms` of its own besides its key's.
    pub fn with_rooms(mut self, rooms: &[String]) -> Conn {
        self.own_rooms = rooms.iter().map(|r| r.as_str().into()).collect();
        self
    }

    /// Rooms this connection joined for itself at subscribe.
    pub fn own_rooms(&self) -> &[Box<str>] {
        &self.own_rooms
    }

    /// True when the connection joined `room` for itself, so its key's leaving does not remove it.
    pub fn owns_room(&self, room: &str) -> bool {
        self.own_rooms.iter().any(|r| &**r == room)
    }

    /// Enqueues a frame; a full outbox closes the connection.
    pub fn push(&self, frame: Utf8Bytes) -> Queued {
        self.enqueue(None, frame)
    }

    /// Enqueues the frame of message `mid`, or holds it back while the connection resumes.
    pub fn deliver(&self, mid: Mid, frame: Utf8Bytes) -> Queued {
        self.enqueue(Some(mid), frame)
    }

    fn enqueue(&self, mid: Option<Mid>, frame: Utf8Bytes) -> Queued {
        let verdict = {
            let Ok(mut out) = self.outbox.lock() else { return Queued::Closed };
            let queued = out.queue.len() + out.held.as_ref().map_or(0, Vec::len);
            if out.closed || out.finishing {
                Queued::Closed
            } else if queued >= self.limit.frames && out.bytes + cost(&frame) > self.limit.bytes {
                out.closed = true;
                out.clear();
                Queued::Full
            } else {
                out.bytes += cost(&frame);
                match (mid, out.held.as_mut()) {
                    (Some(mid), Some(held)) => {
                        held.push((mid, frame));
                        return Queued::Yes;
                    }
                    _ => out.queue.push_back(frame),
                }
                Queued::Yes
            }
        };
        match verdict {
            Queued::Yes => self.wake.notify_one(),
            Queued::Full => {
                self.note(CloseReason::SlowConsumer);
                crate::metrics::refused(crate::metrics::FULL_OUTBOX);
                self.signal_close()
            }
            Queued::Closed => {}
        }
        verdict
    }

    /// From now on, messages are held back until [`Conn::resume`]; call before the connection
    /// joins its channel, so no live message can pass the stored ones.
    pub fn hold(&self) {
        if let Ok(mut out) = self.outbox.lock() {
            out.held.get_or_insert_with(Vec::new);
        }
    }

    /// Ends holding: queues `stored` (already filtered by the caller, in mid order), then the held
    /// messages newer than `after` and than every stored one. The stored frames are queued whatever
    /// the limit: the store bounds them per key, and a resume that can never fit would only loop.
    pub fn resume(&self, stored: Vec<(Mid, Utf8Bytes)>, after: Mid) {
        let Ok(mut out) = self.outbox.lock() else { return };
        let held = out.held.take().unwrap_or_default();
        if out.closed {
            return;
        }
        let mut last = after;
        for (mid, frame) in stored {
            out.bytes += cost(&frame);
            out.queue.push_back(frame);
            last = last.max(mid);
        }
        for (mid, frame) in held {
            if mid > last {
                last = mid;
                out.queue.push_back(frame);
            } else {
                out.bytes -= cost(&frame);
            }
        }
        drop(out);
        self.wake.notify_one();
    }

    /// Closes the connection: its task stops writing and drops the socket.
    pub fn close(&self) {
        if let Ok(mut out) = self.outbox.lock() {
            out.closed = true;
            out.clear();
        }
        self.signal_close();
    }

    /// Closes the connection, noting `why` unless an earlier cause was noted.
    pub fn close_for(&self, why: CloseReason) {
        self.note(why);
        self.close();
    }

    /// Notes why the connection ends; the first cause noted wins.
    pub fn note(&self, why: CloseReason) {
        let _ = self.reason.compare_exchange(0, why as u8, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Why the connection ended: the first cause noted, else the client.
    pub fn reason(&self) -> CloseReason {
        CloseReason::from_u8(self.reason.load(Ordering::Relaxed))
    }

    /// Stops taking frames; the writer ends after writing what is queued (the answers to the
    /// heartbeats that came before a bad byte).
    pub fn finish(&self) {
        if let Ok(mut out) = self.outbox.lock() {
            out.finishing = true;
        }
        self.wake.notify_one();
    }

    fn signal_close(&self) {
        self.wake.notify_one();
        self.kill.notify_waiters();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.outbox.lock().map_or(true, |o| o.closed)
    }

    /// Waits until frames may have been queued (or the connection closed).
    pub async fn wait(&self) {
        self.wake.notified().await
    }

    /// Resolves once the connection is closed.
    pub async fn killed(&self) {
        loop {
            let notified = self.kill.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Takes the next frame, one at a time (WebSocket sends each as its own frame).
    pub fn pop(&self) -> Result<Option<Utf8Bytes>, Closed> {
        let Ok(mut out) = self.outbox.lock() else { return Err(Closed) };
        if out.closed {
            return Err(Closed);
        }
        match out.pop() {
            None if out.finishing => Err(Closed),
            next => Ok(next),
        }
    }

    /// Takes what is queued for one TCP write: a single frame as is, or several copied into
    /// `batch` so that a burst costs one syscall.
    pub fn take(&self, batch: &mut BytesMut) -> Take {
        let Ok(mut out) = self.outbox.lock() else { return Take::Closed };
        if out.closed {
            return Take::Closed;
        }
        match out.queue.len() {
            0 if out.finishing => Take::Closed,
            0 => Take::Empty,
            1 => out.pop().map_or(Take::Empty, Take::One),
            _ => {
                while batch.len() < MAX_BATCH {
                    let Some(frame) = out.pop() else { break };
                    batch.extend_from_slice(frame.as_bytes());
                }
                Take::Batch
            }
        }
    }
}

fn cost(frame: &Utf8Bytes) -> usize {
    frame.len() + FRAME_OVERHEAD
}

impl Outbox {
    fn pop(&mut self) -> Option<Utf8Bytes> {
        let frame = self.queue.pop_front()?;
        self.bytes -= cost(&frame);
        if self.queue.is_empty() {
            // An emptied queue gives its memory back: most connections are idle most of the time,
            // and a kept buffer (128 bytes at the least) is 5 % of an idle connection, while a
            // fresh one costs one small allocation per burst.
            self.queue = VecDeque::new();
        }
        Some(frame)
    }

    fn clear(&mut self) {
        self.queue = VecDeque::new();
        self.held = None;
        self.bytes = 0;
    }
}

/// The connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &'static str) -> Utf8Bytes {
        Utf8Bytes::from_static(s)
    }

    /// Upstream's pure frame count: no bytes beyond the floor.
    fn frames(n: usize) -> Limit {
        Limit { frames: n, bytes: 0 }
    }

    #[test]
    fn the_byte_limit_lets_many_small_frames_queue_and_cuts_big_backlogs() {
        let limit = Limit { frames: 2, bytes: 1000 };
        let c = Conn::new(Proto::Tcp, false, limit, frame("+h\r\n"));
        // Far more frames than the floor, while their bytes fit.
        let small = (1000 - cost(&frame("+h\r\n"))) / cost(&frame("0123456789"));
        for i in 0..small {
            assert_eq!(c.push(frame("0123456789")), Queued::Yes, "frame {i}");
        }
        assert_eq!(c.push(frame("0123456789")), Queued::Full, "over the byte limit");
        assert!(c.is_closed());

        // Under the floor, even frames bigger than the byte limit are queued.
        let c = Conn::new(Proto::Tcp, false, limit, frame("+h\r\n"));
        let big = Utf8Bytes::from("x".repeat(5000));
        assert_eq!(c.push(big.clone()), Queued::Yes);
        assert_eq!(c.push(big), Queued::Full);

        // Writing frees room.
        let c = Conn::new(Proto::Tcp, false, limit, frame("+h\r\n"));
        for _ in 0..small {
            c.push(frame("0123456789"));
        }
        assert!(matches!(c.take(&mut BytesMut::new()), Take::Batch));
        assert_eq!(c.push(frame("0123456789")), Queued::Yes);
    }

    #[test]
    fn outbox_is_bounded_and_a_full_one_closes() {
        let c = Conn::new(Proto::Tcp, false, frames(3), frame("+h\r\n"));
        assert_eq!(c.push(frame("a")), Queued::Yes);
        assert_eq!(c.push(frame("b")), Queued::Yes);
        assert_eq!(c.push(frame("c")), Queued::Full);
        assert!(c.is_closed());
        assert_eq!(c.push(frame("d")), Queued::Closed);
        assert!(matches!(c.take(&mut BytesMut::new()), Take::Closed));
    }

    #[test]
    fn take_batches_several_frames() {
        let c = Conn::new(Proto::Tcp, false, frames(10), frame("+h\r\n"));
        assert!(matches!(c.take(&mut BytesMut::new()), Take::One(f) if f == "+h\r\n"));
        let mut batch = BytesMut::new();
        assert!(matches!(c.take(&mut batch), Take::Empty));
        c.push(frame("ab"));
        c.push(frame("cd"));
        assert!(matches!(c.take(&mut batch), Take::Batch));
        assert_eq!(&batch[..], b"abcd");
        assert_eq!(c.pop(), Ok(None));
        c.close();
        assert_eq!(c.pop(), Err(Closed));
    }

    #[test]
    fn finish_writes_what_is_queued_then_ends() {
        let c = Conn::new(Proto::Tcp, false, frames(10), frame("+h\r\n"));
        c.finish();
        assert_eq!(c.push(frame("late")), Queued::Closed);
        assert!(matches!(c.take(&mut BytesMut::new()), Take::One(_)));
        assert!(matches!(c.take(&mut BytesMut::new()), Take::Closed));
        assert!(!c.is_closed(), "finishing is not a kill");
    }

    #[test]
    fn a_resume_queues_stored_then_newer_held_messages() {
        let c = Conn::new(Proto::Tcp, true, frames(4), frame("+h\r\n"));
        c.hold();
        assert_eq!(c.deliver(5, frame("5")), Queued::Yes);
        assert_eq!(c.push(frame("+h\r\n")), Queued::Yes, "heartbeat answers are not held");
        assert_eq!(c.deliver(7, frame("7")), Queued::Yes);
        assert_eq!(c.deliver(9, frame("9")), Queued::Full, "held messages count against the limit");
        let c = Conn::new(Proto::Tcp, true, frames(10), frame("+h\r\n"));
        c.hold();
        c.deliver(2, frame("2"));
        c.deliver(5, frame("5"));
        c.deliver(7, frame("7"));
        c.resume(vec![(3, frame("3")), (5, frame("5"))], 2);
        c.deliver(8, frame("8"));
        let mut batch = BytesMut::new();
        assert!(matches!(c.take(&mut batch), Take::Batch));
        assert_eq!(&batch[..], b"+h\r\n3578", "2 was seen, 5 came from the store");
    }

    #[tokio::test]
    async fn killed_resolves_on_close() {
        let c = std::sync::Arc::new(Conn::new(Proto::WebSocket, true, frames(2), frame("+h\r\n")));
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.killed().await }
        });
        tokio::task::yield_now().await;
        c.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
