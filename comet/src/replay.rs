//! Publisher idempotency ids (docs/decisions.md#d21-safe-retries). A push that carries an `id`
//! claims it first; a repeat of that id within the window gets the first push's answer (waiting
//! for it if it still runs) and is neither stored nor delivered again. A failed push frees its id,
//! so a retry after a clear failure really retries. Bounded in time and in count.

use cluster::rpc::CometError;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long an id is remembered after its push succeeded.
pub(crate) const WINDOW: Duration = Duration::from_secs(10 * 60);
/// Most ids remembered at once; the oldest are forgotten first.
pub(crate) const CAPACITY: usize = 100_000;

type Outcome<T> = Result<T, CometError>;

enum Entry<T> {
    Running(watch::Receiver<Option<Outcome<T>>>),
    Done(T),
}

/// The ids seen recently by one kind of push, with the answer `T` that kind gives.
pub(crate) struct Replays<T> {
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    ids: HashMap<String, Entry<T>>,
    // When each id was claimed, oldest first, for expiry and the count bound.
    order: VecDeque<(Instant, String)>,
}

/// The outcome of claiming an id.
pub(crate) enum Claim<'a, T> {
    /// The id is new: run the push, then [`Running::finish`].
    First(Running<'a, T>),
    /// The id was seen: this is the first push's answer.
    Repeat(Outcome<T>),
}

/// A claimed id whose push runs. Dropped without an answer, the id is freed.
pub(crate) struct Running<'a, T> {
    replays: &'a Replays<T>,
    id: String,
    tx: watch::Sender<Option<Outcome<T>>>,
    finished: bool,
}

impl<T> Replays<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Clone> Replays<T> {
    /// Nothing seen yet.
    pub fn new() -> Replays<T> {
        Replays { inner: Mutex::new(Inner { ids: HashMap::new(), order: VecDeque::new() }) }
    }

    /// Claims `id`, or waits for and returns the answer of the push that claimed it first.
    pub async fn claim(&self, id: String) -> Claim<'_, T> {
        let mut rx = {
            let mut inner = self.lock();
            inner.expire(Instant::now());
            match inner.ids.get(&id) {
                Some(Entry::Done(answer)) => return Claim::Repeat(Ok(answer.clone())),
                Some(Entry::Running(rx)) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    inner.ids.insert(id.clone(), Entry::Running(rx));
                    inner.order.push_back((Instant::now(), id.clone()));
                    return Claim::First(Running { replays: self, id, tx, finished: false });
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => Claim::Repeat(outcome.clone().unwrap_or(Err(CometError::Unreachable))),
            Err(_) => Claim::Repeat(Err(CometError::Unreachable)),
        }
    }

    /// Ids remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }
}

impl<T> Inner<T> {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < WINDOW && self.order.len() <= CAPACITY {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                if matches!(self.ids.get(&id), Some(Entry::Done(_))) {
                    self.ids.remove(&id);
                }
            }
        }
    }
}

impl<T: Clone> Running<'_, T> {
    /// Records the push's answer and hands it to repeats waiting for it. A failure frees the id.
    pub fn finish(mut self, outcome: Outcome<T>) {
        self.finished = true;
        {
            let mut inner = self.replays.lock();
            match &outcome {
                Ok(answer) => inner.ids.insert(self.id.clone(), Entry::Done(answer.clone())),
                Err(_) => inner.ids.remove(&self.id),
            };
        }
        self.tx.send_replace(Some(outcome));
    }
}

impl<T> Drop for Running<'_, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.replays.lock().ids.remove(&self.id);
            self.tx.send_replace(Some(Err(CometError::Unreachable)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_repeat_gets_the_first_answer_and_a_failure_frees_the_id() {
        let r = Replays::<i64>::new();
        let Claim::First(first) = r.claim("a".into()).await else { panic!("new id") };
        let waiting = async {
            match r.claim("a".into()).await {
                Claim::Repeat(o) => o,
                Claim::First(_) => panic!("claimed twice"),
            }
        };
        let (answer, ()) = tokio::join!(waiting, async { first.finish(Ok(7)) });
        assert_eq!(answer, Ok(7), "a repeat that waited");
        assert!(matches!(r.claim("a".into()).await, Claim::Repeat(Ok(7))));

        let Claim::First(b) = r.claim("b".into()).await else { panic!("new id") };
        b.finish(Err(CometError::NotOwner));
        assert!(matches!(r.claim("b".into()).await, Claim::First(_)), "a failed push can be retried");
        assert_eq!(r.len(), 1, "the dropped claim on b freed it again");
    }
}
