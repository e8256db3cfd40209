//! Delivery in mid order per key (docs/decisions.md#d20-ordering-and-resume). A push takes its
//! mid and its place in each of its keys' lines in one step, under those keys' stripe locks. A
//! push whose save is still running holds its place, and later pushes to the key wait behind it,
//! so a client never sees a newer message before an older one, whatever order saves finish in.
//! Keys with nothing in flight have no line at all: their pushes are delivered in that same step.

use crate::frame::Frames;
use cluster::mid::Mids;
use cluster::rpc::Mid;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

/// Stripes of the key → line map; pushes to keys of different stripes never wait for each other.
const STRIPES: usize = 64;

/// The lines of every key with a save in flight.
pub(crate) struct Sequencer {
    stripes: Vec<Mutex<Lines>>,
    hasher: RandomState,
}

struct Slot {
    mid: Mid,
    state: State,
}

enum State {
    /// The save runs; everything behind waits.
    Saving,
    /// Ready to deliver once everything ahead is.
    Ready(Arc<Frames>),
    /// Its save failed (or was abandoned): nothing to deliver, only its place to give up.
    Dropped,
}

/// Hands one message to the connections of one key.
pub(crate) type Deliver<'a> = &'a dyn Fn(&str, &Frames);

type Lines = HashMap<String, VecDeque<Slot>>;

/// The stripes one step holds, and the step's keys with their stripes.
struct Locked<'a, 'k> {
    keys: Vec<(&'k String, usize)>,
    // Sorted by stripe index.
    guards: Vec<(usize, MutexGuard<'a, Lines>)>,
}

impl<'k> Locked<'_, 'k> {
    /// The `i`th key and the lines of its stripe (which [`Sequencer::lock`] locked).
    fn lines(&mut self, i: usize) -> (&'k String, &mut Lines) {
        let (key, stripe) = self.keys[i];
        let at = self.guards.partition_point(|(s, _)| *s < stripe);
        (key, &mut self.guards[at].1)
    }
}

impl Sequencer {
    /// No lines.
    pub fn new() -> Sequencer {
        Sequencer { stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(), hasher: RandomState::new() }
    }

    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % self.stripes.len()
    }

    /// Locks the stripes of `keys` in index order (so two multi-key pushes cannot deadlock) and
    /// pairs each key with its stripe, so a key is hashed once per step.
    fn lock<'k>(&self, keys: impl Iterator<Item = &'k String>) -> Locked<'_, 'k> {
        let keys: Vec<(&String, usize)> = keys.map(|k| (k, self.stripe(k))).collect();
        let mut wanted: Vec<usize> = keys.iter().map(|(_, s)| *s).collect();
        wanted.sort_unstable();
        wanted.dedup();
        // A poisoned stripe only means a panic elsewhere mid-update; its lines are still usable.
        let guards =
            wanted.into_iter().map(|i| (i, self.stripes[i].lock().unwrap_or_else(|p| p.into_inner()))).collect();
        Locked { keys, guards }
    }

    /// Gives `keys` the next mid and builds the message's frames with it. With `saving`, every key
    /// gets a place that holds back later pushes until [`Sequencer::finish`]; without, the message
    /// is delivered now to keys with nothing in flight and queued behind the saves of the others.
    pub fn begin(
        &self,
        keys: &[String],
        mids: &Mids,
        saving: bool,
        build: impl FnOnce(Mid) -> Frames,
        deliver: Deliver<'_>,
    ) -> (Mid, Arc<Frames>) {
        let mut locked = self.lock(keys.iter());
        let mid = mids.next();
        let frames = Arc::new(build(mid));
        for i in 0..locked.keys.len() {
            let (key, lines) = locked.lines(i);
            match (saving, lines.get_mut(key.as_str())) {
                (true, Some(line)) => line.push_back(Slot { mid, state: State::Saving }),
                (true, None) => {
                    lines.insert(key.clone(), VecDeque::from([Slot { mid, state: State::Saving }]));
                }
                (false, Some(line)) => line.push_back(Slot { mid, state: State::Ready(frames.clone()) }),
                (false, None) => deliver(key, &frames),
            }
        }
        (mid, frames)
    }

    /// The save of message `mid` ended: it is delivered to `saved` keys in its place, given up for
    /// the others, and whatever waited behind it is delivered in turn.
    pub fn finish(&self, saved: &[String], failed: &[String], mid: Mid, frames: &Arc<Frames>, deliver: Deliver<'_>) {
        let mut locked = self.lock(saved.iter().chain(failed));
        for i in 0..locked.keys.len() {
            let outcome = if i < saved.len() { Some(frames) } else { None };
            let (key, lines) = locked.lines(i);
            let Some(line) = lines.get_mut(key.as_str()) else { continue };
            if let Some(slot) = line.iter_mut().find(|s| s.mid == mid && matches!(s.state, State::Saving)) {
                slot.state = outcome.map_or(State::Dropped, |f| State::Ready(f.clone()));
            }
            while let Some(front) = line.front() {
                match &front.state {
                    State::Saving => break,
                    State::Ready(f) => deliver(key, f),
                    State::Dropped => {}
                }
                line.pop_front();
            }
            if line.is_empty() {
                lines.remove(key.as_str());
            }
        }
    }

    /// Runs `join` (a connection joining `key`'s channel) at a point no delivery to the key can
    /// cross, and returns the boundary: every message with a smaller mid was delivered before, so a
    /// save it had is done; every message with this mid or a greater one reaches the channel after.
    /// With nothing in flight, the boundary is a fresh mid, since every later push gets a greater one.
    pub fn attach<R>(&self, key: &str, mids: &Mids, join: impl FnOnce() -> R) -> (Mid, R) {
        let key = key.to_string();
        let mut locked = self.lock(std::iter::once(&key));
        let (_, lines) = locked.lines(0);
        let front = lines.get(key.as_str()).and_then(|line| line.front()).map(|slot| slot.mid);
        let boundary = front.unwrap_or_else(|| mids.next());
        (boundary, join())
    }

    /// Keys with a push in flight.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.stripes.iter().map(|s| s.lock().map_or(0, |l| l.len())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn frames(mid: Mid) -> Frames {
        Frames::new(mid.to_string(), mid.to_string(), mid)
    }

    #[test]
    fn a_later_push_waits_for_an_earlier_save() {
        let seq = Sequencer::new();
        let mids = Mids::new();
        let seen = RefCell::new(Vec::new());
        let deliver = |k: &str, f: &Frames| seen.borrow_mut().push((k.to_string(), f.mid()));
        let k = vec!["k".to_string()];
        let (m1, f1) = seq.begin(&k, &mids, true, frames, &deliver);
        let (m2, f2) = seq.begin(&k, &mids, true, frames, &deliver);
        let (m3, _) = seq.begin(&k, &mids, false, frames, &deliver);
        assert!(seen.borrow().is_empty(), "everything waits for the first save");
        seq.finish(&k, &[], m2, &f2, &deliver);
        assert!(seen.borrow().is_empty(), "the second save finished first but must wait");
        seq.finish(&k, &[], m1, &f1, &deliver);
        let order: Vec<Mid> = seen.borrow().iter().map(|(_, m)| *m).collect();
        assert_eq!(order, [m1, m2, m3]);
        assert_eq!(seq.waiting(), 0, "an empty line is removed");
    }

    #[test]
    fn a_failed_save_gives_up_its_place_and_other_keys_do_not_wait() {
        let seq = Sequencer::new();
        let mids = Mids::new();
        let seen = RefCell::new(Vec::new());
        let deliver = |k: &str, f: &Frames| seen.borrow_mut().push((k.to_string(), f.mid()));
        let (a, b) = (vec!["a".to_string()], vec!["b".to_string()]);
        let (m1, f1) = seq.begin(&a, &mids, true, frames, &deliver);
        let (m2, _) = seq.begin(&b, &mids, false, frames, &deliver);
        assert_eq!(*seen.borrow(), [("b".to_string(), m2)], "another key is not held back");
        let (m3, _) = seq.begin(&a, &mids, false, frames, &deliver);
        seq.finish(&[], &a, m1, &f1, &deliver);
        assert_eq!(seen.borrow().last(), Some(&("a".to_string(), m3)));
        assert_eq!(seen.borrow().len(), 2, "the failed message is not delivered");
    }

    #[test]
    fn attach_returns_the_oldest_mid_in_flight_or_a_fresh_one() {
        let seq = Sequencer::new();
        let mids = Mids::new();
        let deliver = |_: &str, _: &Frames| {};
        let k = vec!["k".to_string()];
        let (m1, f1) = seq.begin(&k, &mids, true, frames, &deliver);
        seq.begin(&k, &mids, true, frames, &deliver);
        assert_eq!(seq.attach("k", &mids, || ()).0, m1, "the save in flight is delivered after attaching");
        seq.finish(&k, &[], m1, &f1, &deliver);
        let (m3, _) = seq.begin(&["j".to_string()], &mids, false, frames, &deliver);
        let (boundary, joined) = seq.attach("j", &mids, || 7);
        assert!(boundary > m3 && joined == 7, "nothing in flight: a mid after every earlier push");
        let (m4, _) = seq.begin(&["j".to_string()], &mids, false, frames, &deliver);
        assert!(m4 > boundary);
    }

    #[test]
    fn a_batch_holds_every_key_it_saves() {
        let seq = Sequencer::new();
        let mids = Mids::new();
        let seen = RefCell::new(Vec::new());
        let deliver = |k: &str, f: &Frames| seen.borrow_mut().push((k.to_string(), f.mid()));
        let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let (m1, f1) = seq.begin(&keys, &mids, true, frames, &deliver);
        let (m2, _) = seq.begin(&keys[..1], &mids, false, frames, &deliver);
        assert!(seen.borrow().is_empty());
        seq.finish(&keys[1..], &keys[..1], m1, &f1, &deliver);
        assert_eq!(seen.borrow().len(), 100, "99 saved keys and the queued push to the failed one");
        assert!(seen.borrow().contains(&("k0".to_string(), m2)));
        assert!(!seen.borrow().contains(&("k0".to_string(), m1)));
    }
}
