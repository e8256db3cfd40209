//! Concurrent calls to one remote process travel as one batch call: private pushes from web to a
//! comet (`push_batch`, docs/decisions.md#d90-coalesced-pushes-from-web-to-a-comet) and saves from a
//! comet to the message nodes (`save_batch`, docs/decisions.md#d91-coalesced-saves-from-a-comet-to-the-store).
//!
//! No call waits for a window to fill: while fewer than `in_flight` calls are out, the next item
//! leaves at once, alone if nothing else is queued. Only while every call slot is busy do items
//! queue, and the next free slot takes all of them (up to `max`) in one call. A lone item therefore
//! costs what it did, and under load the per-call costs (framing, a request task on each side, a
//! wake-up per answer) are paid once per batch. Each item still gets its own answer: a bad key or a
//! failed save fails that item alone, and only a transport failure (the peer unreachable or the
//! call past its deadline) fails the whole batch, as it would have failed each item.

use crate::rpc::{CometError, Mid, Push, Save, SharedComet, SharedMessages, StoreError};
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Queued items waiting for a call slot; beyond this, callers wait (backpressure, bounded memory).
const QUEUE: usize = 8192;

/// What one batch call answers: an answer per item, or a failure of the whole call.
type Answers<T, E> = Result<Vec<Result<T, E>>, E>;

/// Sends one batch of items to the peer; a batch of one should go as the single-item call, so a
/// peer without the batch method still serves it.
type Send<I, T, E> = Arc<dyn Fn(Vec<I>) -> BoxFuture<'static, Answers<T, E>> + Sync + std::marker::Send>;

/// An item and where its answer goes.
struct Pending<I, T, E> {
    item: I,
    reply: oneshot::Sender<Result<T, E>>,
}

/// Coalesces calls of one kind to one peer; cheap to share, stops when dropped.
pub struct Coalescer<I, T, E> {
    queue: mpsc::Sender<Pending<I, T, E>>,
    // Answered when the sender is gone or a peer's answer cannot be matched to the items.
    lost: E,
}

impl<I, T, E> Coalescer<I, T, E>
where
    I: std::marker::Send + 'static,
    T: std::marker::Send + 'static,
    E: Clone + std::marker::Send + 'static,
{
    /// Starts the sender: at most `max` items per call and `in_flight` calls at once; `lost` is the
    /// error of items whose call could not be made or matched. Must be called inside a Tokio runtime.
    fn start(send: Send<I, T, E>, max: usize, in_flight: usize, lost: E) -> Coalescer<I, T, E> {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(send_batches(send, pending, max.max(1), in_flight.max(1), lost.clone()));
        Coalescer { queue, lost }
    }

    /// Sends one item, answered as the single-item call would answer it.
    pub async fn call(&self, item: I) -> Result<T, E> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Pending { item, reply }).await.is_err() {
            return Err(self.lost.clone());
        }
        answer.await.unwrap_or_else(|_| Err(self.lost.clone()))
    }
}

/// Private pushes to one comet, coalesced into `push_batch` calls.
pub type PushCoalescer = Coalescer<Push, Mid, CometError>;

impl PushCoalescer {
    /// Starts the sender for `comet`: at most `max` pushes per call and `in_flight` calls at once.
    /// Must be called inside a Tokio runtime.
    pub fn new(comet: SharedComet, max: usize, in_flight: usize) -> PushCoalescer {
        let send: Send<Push, Mid, CometError> = Arc::new(move |mut pushes: Vec<Push>| {
            let comet = comet.clone();
            Box::pin(async move {
                if pushes.len() == 1 {
                    let Push { key, msg, expire, id } = pushes.remove(0);
                    return Ok(vec![comet.push_private(key, msg, expire, id).await]);
                }
                comet.push_batch(pushes).await
            })
        });
        Coalescer::start(send, max, in_flight, CometError::Unreachable)
    }

    /// Pushes one message, answered as `push_private` would answer it.
    pub async fn push(&self, push: Push) -> Result<Mid, CometError> {
        self.call(push).await
    }
}

/// Saves of private messages to the store, coalesced into `save_batch` calls.
pub type SaveCoalescer = Coalescer<Save, (), StoreError>;

impl SaveCoalescer {
    /// Starts the sender for `store`: at most `max` saves per call and `in_flight` calls at once.
    /// Must be called inside a Tokio runtime.
    pub fn saves(store: SharedMessages, max: usize, in_flight: usize) -> SaveCoalescer {
        let send: Send<Save, (), StoreError> = Arc::new(move |mut saves: Vec<Save>| {
            let store = store.clone();
            Box::pin(async move {
                if saves.len() == 1 {
                    let Save { key, msg, mid, expire } = saves.remove(0);
                    return Ok(vec![store.save_private(key, msg, mid, expire).await]);
                }
                store.save_batch(saves).await
            })
        });
        Coalescer::start(send, max, in_flight, StoreError::Unreachable)
    }

    /// Saves one message, answered as `save_private` would answer it.
    pub async fn save(&self, save: Save) -> Result<(), StoreError> {
        self.call(save).await
    }
}

async fn send_batches<I, T, E>(
    send: Send<I, T, E>,
    mut pending: mpsc::Receiver<Pending<I, T, E>>,
    max: usize,
    in_flight: usize,
    lost: E,
) where
    I: std::marker::Send + 'static,
    T: std::marker::Send + 'static,
    E: Clone + std::marker::Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight));
    loop {
        // A free slot first: while none is, items pile up in the queue and leave together.
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
        let (send, lost) = (send.clone(), lost.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let (items, replies): (Vec<I>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.reply)).unzip();
            answer(replies, send(items).await, lost);
        });
    }
}

fn answer<T, E: Clone>(replies: Vec<oneshot::Sender<Result<T, E>>>, outcome: Answers<T, E>, lost: E) {
    match outcome {
        Ok(answers) if answers.len() == replies.len() => {
            for (reply, a) in replies.into_iter().zip(answers) {
                let _ = reply.send(a);
            }
        }
        // A peer that answers a different number of results cannot be matched up: fail them all.
        Ok(_) => replies.into_iter().for_each(|r| drop(r.send(Err(lost.clone())))),
        Err(e) => replies.into_iter().for_each(|r| drop(r.send(Err(e.clone())))),
    }
}
