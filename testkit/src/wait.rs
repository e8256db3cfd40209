//! Bounded waiting, written once for every test: [`wait_until`] for plain threads and
//! [`eventually`] for async tests. Both poll a condition with a short, growing pause, stop after a
//! bounded number of polls and a bounded time, and panic naming what they waited for, so a hung
//! condition fails the test with a sentence instead of a timeout of the whole run.

use std::future::Future;
use std::time::{Duration, Instant};

/// First pause between polls: short, so fast conditions cost little.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between polls: a slow condition is still noticed within a tenth of a second.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// How many polls fit in `timeout`, the cap that keeps the loops bounded in count as well as time.
fn max_polls(timeout: Duration) -> u128 {
    timeout.as_millis() / FIRST_PAUSE.as_millis() + 2
}

/// The pause after poll number `n` (0-based).
fn pause(n: u128) -> Duration {
    FIRST_PAUSE.saturating_mul(1 << n.min(4) as u32).min(MAX_PAUSE)
}

/// Polls `cond` until it holds or `timeout` passes; false on timeout. For harness code that
/// reports the failure itself.
pub(crate) fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    for n in 0..max_polls(timeout) {
        if cond() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(pause(n).min(left));
    }
    false
}

/// Blocks until `cond` holds; panics naming `what` once `timeout` has passed.
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(poll(timeout, cond), "gave up after {timeout:?} waiting for {what}");
}

/// Awaits until the future `cond` makes gives true; panics naming `what` once `timeout` has
/// passed, even when one poll of `cond` hangs.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(what, timeout, || {
        let check = cond();
        async move { check.await.then_some(()) }
    })
    .await
}

/// Like [`eventually`], for a check that yields a value once it holds: awaits until the future
/// `find` makes gives `Some` and returns what it holds.
pub async fn eventually_some<T, F, Fut>(what: &str, timeout: Duration, mut find: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let polls = async {
        for n in 0..max_polls(timeout) {
            if let Some(found) = find().await {
                return Some(found);
            }
            tokio::time::sleep(pause(n)).await;
        }
        None
    };
    match tokio::time::timeout(timeout, polls).await.ok().flatten() {
        Some(found) => found,
        None => panic!("gave up after {timeout:?} waiting for {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_gives_up_and_succeeds() {
        assert!(!poll(Duration::from_millis(150), || false));
        assert!(poll(Duration::from_millis(150), || true));
        let mut n = 0;
        assert!(poll(Duration::from_secs(5), || {
            n += 1;
            n == 3
        }));
    }

    #[test]
    #[should_panic(expected = "waiting for the moon")]
    fn wait_until_names_what_it_waited_for() {
        wait_until("the moon", Duration::from_millis(50), || false);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a hung check")]
    async fn eventually_bounds_a_condition_that_hangs() {
        eventually("a hung check", Duration::from_millis(100), std::future::pending::<bool>).await;
    }

    #[tokio::test]
    async fn eventually_returns_once_the_condition_holds() {
        let mut n = 0;
        eventually("the third poll", Duration::from_secs(5), || {
            n += 1;
            std::future::ready(n == 3)
        })
        .await;
        assert_eq!(n, 3);
    }
}
