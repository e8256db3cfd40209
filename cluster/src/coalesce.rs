//! Concurrent private pushes to one comet travel as one `push_batch` call
//! (docs/decisions.md#d90-coalesced-pushes-from-web-to-a-comet).
//!
//! No push waits for a window to fill: while fewer than `in_flight` calls are out, the next push
//! leaves at once, alone if nothing else is queued. Only while every call slot is busy do pushes
//! queue, and the next free slot takes all of them (up to `max`) in one call. A lone push therefore
//! costs what it did, and under load the per-call costs (framing, a request task on each side, a
//! wake-up per answer) are paid once per batch. Each push still gets its own answer: a bad key or a
//! failed save fails that push alone, and only a transport failure (the comet unreachable or the
//! call past its deadline) fails the whole batch, as it would have failed each push.

use crate::rpc::{CometError, Mid, Push, SharedComet};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Queued pushes waiting for a call slot; beyond this, pushers wait (backpressure, bounded memory).
const QUEUE: usize = 8192;

/// A push and where its answer goes.
struct Pending {
    push: Push,
    reply: oneshot::Sender<Result<Mid, CometError>>,
}

/// Sends the private pushes for one comet, coalesced; cheap to share, stops when dropped.
pub struct PushCoalescer {
    queue: mpsc::Sender<Pending>,
}

impl PushCoalescer {
    /// Starts the sender for `comet`: at most `max` pushes per call and `in_flight` calls at once.
    /// Must be called inside a Tokio runtime.
    pub fn new(comet: SharedComet, max: usize, in_flight: usize) -> PushCoalescer {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(send_batches(comet, pending, max.max(1), in_flight.max(1)));
        PushCoalescer { queue }
    }

    /// Pushes one message, answered as `push_private` would answer it.
    pub async fn push(&self, push: Push) -> Result<Mid, CometError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Pending { push, reply }).await.map_err(|_| CometError::Unreachable)?;
        answer.await.unwrap_or(Err(CometError::Unreachable))
    }
}

async fn send_batches(comet: SharedComet, mut pending: mpsc::Receiver<Pending>, max: usize, in_flight: usize) {
    let slots = Arc::new(Semaphore::new(in_flight));
    loop {
        // A free slot first: while none is, pushes pile up in the queue and leave together.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = pending.recv().await else { return };
        let mut batch = Vec::with_capacity(max.min(64));
        batch.push(first);
        while batch.len() < max {
            match pending.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let comet = comet.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (pushes, replies): (Vec<Push>, Vec<_>) = batch.into_iter().map(|p| (p.push, p.reply)).unzip();
            answer(replies, call(&comet, pushes).await);
        });
    }
}

/// One call: a single push goes as `push_private`, so a comet without `push_batch` still serves it.
async fn call(comet: &SharedComet, mut pushes: Vec<Push>) -> Result<Vec<Result<Mid, CometError>>, CometError> {
    if pushes.len() == 1 {
        let Push { key, msg, expire, id } = pushes.remove(0);
        return Ok(vec![comet.push_private(key, msg, expire, id).await]);
    }
    comet.push_batch(pushes).await
}

fn answer(
    replies: Vec<oneshot::Sender<Result<Mid, CometError>>>,
    outcome: Result<Vec<Result<Mid, CometError>>, CometError>,
) {
    match outcome {
        Ok(answers) if answers.len() == replies.len() => {
            for (reply, a) in replies.into_iter().zip(answers) {
                let _ = reply.send(a);
            }
        }
        // A comet that answers a different number of results cannot be matched up: fail them all.
        Ok(_) => replies.into_iter().for_each(|r| drop(r.send(Err(CometError::Unreachable)))),
        Err(e) => replies.into_iter().for_each(|r| drop(r.send(Err(e.clone())))),
    }
}
