//! Per-source limits that keep one client from starving the rest: a cap on open connections per
//! IP address, and a throttle on failed admin tokens per IP address. Both live in bounded maps
//! guarded by a plain mutex that is never held across an `.await`
//! (docs/decisions.md#d9-hostile-input).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The address a limit counts: an IPv4 client reaching an IPv6 socket counts as itself.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Open connections per source address. An entry exists only while that source has a connection,
/// so the map is bounded by the listener's connection cap.
pub(crate) struct PerIp {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it gives the place back.
pub(crate) struct IpSlot {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A limiter allowing `cap` connections per source.
    pub(crate) fn new(cap: usize) -> Arc<PerIp> {
        Arc::new(PerIp { cap, open: Mutex::new(HashMap::new()) })
    }

    /// A place for one more connection from `ip`, or `None` when it already has `cap`.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = source(ip);
        let mut open = self.open.lock().ok()?;
        let n = open.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(IpSlot { owner: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.owner.open.lock() {
            if let Some(n) = open.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&self.ip);
                }
            }
        }
    }
}

/// Failed admin tokens that block a source.
pub(crate) const AUTH_FAILURES: u32 = 10;
/// The window those failures must fall in.
pub(crate) const AUTH_WINDOW: Duration = Duration::from_secs(10);
/// How long a blocked source gets 429 for every admin API request.
pub(crate) const AUTH_BLOCK: Duration = Duration::from_secs(60);
/// Sources tracked at once; beyond it, new sources go untracked until entries expire, so an
/// attacker with many addresses costs bounded memory and cannot lock others out.
pub(crate) const AUTH_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl Failures {
    fn expired(&self, now: Instant) -> bool {
        match self.blocked_until {
            Some(until) => now >= until,
            None => now.duration_since(self.since) >= AUTH_WINDOW,
        }
    }
}

/// What a failed token did to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strike {
    /// Counted; the source may keep trying.
    Counted,
    /// This failure blocked the source (logged once, here).
    Blocked,
    /// Not counted: the table is full.
    Untracked,
}

/// Failed admin tokens per source address.
#[derive(Default)]
pub(crate) struct AuthThrottle {
    sources: Mutex<HashMap<IpAddr, Failures>>,
}

impl AuthThrottle {
    /// True while `ip` is blocked.
    pub(crate) fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let Ok(sources) = self.sources.lock() else { return false };
        sources.get(&source(ip)).and_then(|f| f.blocked_until).is_some_and(|until| now < until)
    }

    /// Records one failed token from `ip`.
    pub(crate) fn fail(&self, ip: IpAddr, now: Instant) -> Strike {
        let ip = source(ip);
        let Ok(mut sources) = self.sources.lock() else { return Strike::Untracked };
        if !sources.contains_key(&ip) && sources.len() >= AUTH_SOURCES {
            sources.retain(|_, f| !f.expired(now));
            if sources.len() >= AUTH_SOURCES {
                return Strike::Untracked;
            }
        }
        let f = sources.entry(ip).or_insert(Failures { since: now, count: 0, blocked_until: None });
        if f.expired(now) {
            *f = Failures { since: now, count: 0, blocked_until: None };
        }
        f.count += 1;
        if f.count >= AUTH_FAILURES && f.blocked_until.is_none() {
            f.blocked_until = Some(now + AUTH_BLOCK);
            return Strike::Blocked;
        }
        Strike::Counted
    }

    /// Sources currently tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sources.lock().map_or(0, |s| s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn connections_are_capped_per_source() {
        let limit = PerIp::new(2);
        let a = limit.admit(ip(1)).unwrap();
        let _b = limit.admit(ip(1)).unwrap();
        assert!(limit.admit(ip(1)).is_none());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(limit.admit(mapped).is_none(), "IPv4-mapped counts as the IPv4 source");
        assert!(limit.admit(ip(2)).is_some(), "other sources are not affected");
        drop(a);
        assert!(limit.admit(ip(1)).is_some());
        assert_eq!(limit.open.lock().unwrap().len(), 1, "sources without connections are forgotten");
    }

    #[test]
    fn failed_tokens_block_a_source_for_a_while() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        for _ in 1..AUTH_FAILURES {
            assert_eq!(t.fail(ip(1), now), Strike::Counted);
        }
        assert!(!t.blocked(ip(1), now));
        assert_eq!(t.fail(ip(1), now), Strike::Blocked);
        assert!(t.blocked(ip(1), now + AUTH_BLOCK - Duration::from_secs(1)));
        assert!(!t.blocked(ip(2), now), "per source");
        assert_eq!(t.fail(ip(1), now + Duration::from_secs(1)), Strike::Counted, "blocked once, logged once");
        assert!(!t.blocked(ip(1), now + AUTH_BLOCK));
        // Failures spread wider than the window never block.
        for i in 0..3 * AUTH_FAILURES {
            t.fail(ip(3), now + AUTH_WINDOW * i);
        }
        assert!(!t.blocked(ip(3), now + AUTH_WINDOW * 3 * AUTH_FAILURES));
    }

    #[test]
    fn the_table_is_bounded() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        for n in 0..AUTH_SOURCES as u32 {
            t.fail(ip(n), now);
        }
        assert_eq!(t.fail(ip(999_999), now), Strike::Untracked);
        assert_eq!(t.len(), AUTH_SOURCES);
        assert_eq!(t.fail(ip(999_999), now + AUTH_WINDOW), Strike::Counted, "expired entries make room");
        assert_eq!(t.len(), 1);
    }
}
