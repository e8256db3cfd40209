//! Message ids (docs/decisions.md#d6-message-ids): Unix time in 100 ns units, like upstream, but
//! strictly increasing per generator (`max(now, last + 1)`), so two pushes in the same 100 ns or a
//! clock step back never give a client a duplicate or smaller mid. Each comet has one for private
//! pushes, each web node one for room and broadcast pushes (docs/decisions.md#d52-one-mid-per-room-message-assigned-by-web).

use crate::rpc::Mid;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Hands out strictly increasing mids; one per comet, and one per web node for room pushes.
#[derive(Debug, Default)]
pub struct Mids {
    last: AtomicI64,
}

impl Mids {
    /// A generator that has handed out nothing yet.
    pub fn new() -> Mids {
        Mids::default()
    }

    /// The next mid: now in 100 ns units, or one more than the last if the clock did not advance.
    pub fn next(&self) -> Mid {
        let now = now_100ns();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

fn now_100ns() -> Mid {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    i64::try_from(nanos / 100).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn mids_are_time_based_and_strictly_increasing_across_threads() {
        let mids = Arc::new(Mids::new());
        let before = now_100ns();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let mids = mids.clone();
                std::thread::spawn(move || (0..10_000).map(|_| mids.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<Mid> = Vec::new();
        for t in threads {
            let got = t.join().unwrap();
            assert!(got.windows(2).all(|w| w[0] < w[1]), "increasing within a thread");
            all.extend(got);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "no duplicates across threads");
        assert!(all[0] >= before, "based on the clock");
        assert!(all[0] > 16_000_000_000_000_000, "100 ns units since 1970");
    }
}
