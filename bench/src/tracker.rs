//! Which deliveries were expected and which arrived. Push `s` goes to the batch of keys
//! `(s*B + j) mod K` for `j < B` (B = 1 for single pushes), so every expected delivery has a slot
//! `s*B + j`, and a received `(key, s)` maps back to it. Two bitmaps (accepted by the server,
//! delivered to the subscriber) give lost, duplicate and unconfirmed deliveries exactly, whatever
//! order responses and deliveries arrive in.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Most slots tracked (two bitmaps of 32 MiB each).
pub const MAX_SLOTS: u64 = 1 << 28;

/// What a received message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// First arrival of an expected slot.
    New,
    /// The slot had already arrived.
    Duplicate,
    /// The push was not meant for this key.
    Misrouted,
}

/// The final count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Deliveries the server accepted (ret 0, minus failed keys).
    pub accepted: u64,
    /// Accepted deliveries that arrived.
    pub delivered: u64,
    /// Accepted deliveries that never arrived: `accepted - delivered`.
    pub lost: u64,
    /// Deliveries that arrived although the push was not confirmed (error or timeout).
    pub unconfirmed: u64,
}

/// Expected and received deliveries of one run.
pub struct Tracker {
    keys: u64,
    batch: u64,
    accepted: Box<[AtomicU64]>,
    delivered: Box<[AtomicU64]>,
    accepted_n: AtomicU64,
    delivered_n: AtomicU64,
    duplicates: AtomicU64,
    misrouted: AtomicU64,
}

impl Tracker {
    /// Tracks up to `max_pushes` pushes of `batch` keys each over `keys` keys (`batch <= keys`).
    pub fn new(keys: u64, batch: u64, max_pushes: u64) -> Self {
        let keys = keys.max(1);
        let batch = batch.clamp(1, keys);
        let slots = max_pushes.saturating_mul(batch).min(MAX_SLOTS);
        let words = slots.div_ceil(64) as usize;
        let bitmap = || (0..words).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Self {
            keys,
            batch,
            accepted: bitmap(),
            delivered: bitmap(),
            accepted_n: AtomicU64::new(0),
            delivered_n: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
        }
    }

    /// How many pushes fit.
    pub fn max_pushes(&self) -> u64 {
        self.accepted.len() as u64 * 64 / self.batch
    }

    /// The key indexes push `seq` goes to, in order.
    pub fn keys_of(&self, seq: u64) -> impl Iterator<Item = u64> + use<> {
        let (k, b) = (self.keys, self.batch);
        let first = seq.wrapping_mul(b) % k;
        (0..b).map(move |j| (first + j) % k)
    }

    /// Marks delivery `j` of push `seq` as accepted by the server.
    pub fn accept(&self, seq: u64, j: u64) {
        let slot = seq.saturating_mul(self.batch).saturating_add(j);
        if set(&self.accepted, slot) == Some(true) {
            self.accepted_n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records that key `key` received push `seq`.
    pub fn deliver(&self, key: u64, seq: u64) -> Delivery {
        let first = seq.wrapping_mul(self.batch) % self.keys;
        let j = (key % self.keys + self.keys - first) % self.keys;
        if j >= self.batch {
            self.misrouted.fetch_add(1, Ordering::Relaxed);
            return Delivery::Misrouted;
        }
        match set(&self.delivered, seq.saturating_mul(self.batch).saturating_add(j)) {
            Some(true) => {
                self.delivered_n.fetch_add(1, Ordering::Relaxed);
                Delivery::New
            }
            Some(false) => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                Delivery::Duplicate
            }
            None => {
                self.misrouted.fetch_add(1, Ordering::Relaxed);
                Delivery::Misrouted
            }
        }
    }

    /// Accepted and delivered counts so far (cheap, for progress and the drain wait).
    pub fn counters(&self) -> (u64, u64) {
        (self.accepted_n.load(Ordering::Relaxed), self.delivered_n.load(Ordering::Relaxed))
    }

    /// Duplicate and misrouted deliveries so far.
    pub fn anomalies(&self) -> (u64, u64) {
        (self.duplicates.load(Ordering::Relaxed), self.misrouted.load(Ordering::Relaxed))
    }

    /// The exact final count.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for (a, d) in self.accepted.iter().zip(self.delivered.iter()) {
            let (a, d) = (a.load(Ordering::Relaxed), d.load(Ordering::Relaxed));
            t.accepted += u64::from(a.count_ones());
            t.delivered += u64::from((a & d).count_ones());
            t.unconfirmed += u64::from((d & !a).count_ones());
        }
        t.lost = t.accepted - t.delivered;
        t
    }
}

/// Sets a bit; `Some(true)` if it was newly set, `None` if out of range.
fn set(bits: &[AtomicU64], slot: u64) -> Option<bool> {
    let word = bits.get(usize::try_from(slot / 64).ok()?)?;
    let mask = 1u64 << (slot % 64);
    Some(word.fetch_or(mask, Ordering::Relaxed) & mask == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_pushes() {
        let t = Tracker::new(10, 1, 100);
        assert_eq!(t.keys_of(13).collect::<Vec<_>>(), vec![3]);
        t.accept(13, 0);
        t.accept(14, 0);
        assert_eq!(t.deliver(3, 13), Delivery::New);
        assert_eq!(t.deliver(3, 13), Delivery::Duplicate);
        assert_eq!(t.deliver(5, 13), Delivery::Misrouted);
        assert_eq!(t.deliver(5, 15), Delivery::New); // arrived although not confirmed
        assert_eq!(t.tally(), Tally { accepted: 2, delivered: 1, lost: 1, unconfirmed: 1 });
        assert_eq!(t.counters(), (2, 2));
        assert_eq!(t.anomalies(), (1, 1));
    }

    #[test]
    fn batches_wrap_around_the_keys() {
        let t = Tracker::new(5, 3, 10);
        assert_eq!(t.keys_of(0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(t.keys_of(1).collect::<Vec<_>>(), vec![3, 4, 0]);
        for (j, k) in t.keys_of(1).enumerate() {
            t.accept(1, j as u64);
            assert_eq!(t.deliver(k, 1), Delivery::New);
        }
        assert_eq!(t.deliver(1, 1), Delivery::Misrouted);
        assert_eq!(t.tally(), Tally { accepted: 3, delivered: 3, lost: 0, unconfirmed: 0 });
    }

    #[test]
    fn out_of_range_is_not_a_panic() {
        let t = Tracker::new(4, 2, 2);
        assert!(t.max_pushes() >= 2);
        let far = t.max_pushes() + 10;
        assert_eq!(t.deliver(0, far * 2), Delivery::Misrouted);
        assert_eq!(t.deliver(0, u64::MAX), Delivery::Misrouted);
        t.accept(far, 0);
        assert_eq!(t.tally().accepted, 0);
    }
}
