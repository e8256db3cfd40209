//! Client tokens (docs/decisions.md#d7-offline-store, docs/decisions.md#d10-tokens-over-http): each
//! token of a key carries its absolute expiry and its lifetime, because a successful check slides
//! the expiry forward by that lifetime. The record is stored as a small JSON object,
//! `{"expire":<unix s>,"life":<s>}`, in both stores.

use serde::{Deserialize, Serialize};

/// Tokens kept per key at most; adding beyond this drops those closest to expiry.
pub const MAX_TOKENS_PER_KEY: usize = 256;

/// Longest accepted lifetime (about 100 years), so expiry arithmetic never overflows.
pub const MAX_TOKEN_LIFE: u64 = 100 * 366 * 24 * 3600;

/// One token's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Absolute expiry, Unix seconds.
    pub expire: i64,
    /// Lifetime in seconds; a successful check sets `expire = now + life`.
    pub life: i64,
}

impl TokenRecord {
    /// A token valid for `life_secs` from `now`.
    pub fn new(now: i64, life_secs: u64) -> TokenRecord {
        let life = life_secs.min(MAX_TOKEN_LIFE) as i64;
        TokenRecord { expire: now.saturating_add(life), life }
    }

    /// True while `now` has not passed the expiry.
    pub fn valid(&self, now: i64) -> bool {
        now <= self.expire
    }

    /// The record after a successful check at `now`.
    pub fn slid(&self, now: i64) -> TokenRecord {
        TokenRecord { expire: now.saturating_add(self.life), life: self.life }
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the stored form; `None` for anything else.
    pub fn decode(text: &str) -> Option<TokenRecord> {
        serde_json::from_str(text).ok()
    }
}

/// Of `records` (token, record), the tokens to drop so that, with one more added, at most
/// [`MAX_TOKENS_PER_KEY`] valid ones remain: every expired one, then the soonest to expire.
pub fn to_evict<'a>(records: &'a [(String, TokenRecord)], adding: &str, now: i64) -> Vec<&'a str> {
    let mut evict: Vec<&str> = Vec::new();
    let mut live: Vec<&(String, TokenRecord)> = Vec::new();
    for r in records {
        if !r.1.valid(now) {
            evict.push(&r.0);
        } else if r.0 != adding {
            live.push(r);
        }
    }
    if live.len() >= MAX_TOKENS_PER_KEY {
        live.sort_by_key(|r| (r.1.expire, &r.0));
        let excess = live.len() + 1 - MAX_TOKENS_PER_KEY;
        evict.extend(live[..excess].iter().map(|r| r.0.as_str()));
    }
    evict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_slide_by_their_own_lifetime() {
        let r = TokenRecord::new(1000, 30);
        assert_eq!(r, TokenRecord { expire: 1030, life: 30 });
        assert!(r.valid(1030));
        assert!(!r.valid(1031));
        assert_eq!(r.slid(1020), TokenRecord { expire: 1050, life: 30 });
        assert_eq!(TokenRecord::decode(&r.encode()), Some(r));
        assert_eq!(r.encode(), r#"{"expire":1030,"life":30}"#);
        assert_eq!(TokenRecord::decode("x"), None);
        assert_eq!(TokenRecord::new(i64::MAX - 5, u64::MAX).expire, i64::MAX);
    }

    #[test]
    fn eviction_drops_expired_then_soonest() {
        let recs: Vec<(String, TokenRecord)> = (0..MAX_TOKENS_PER_KEY as i64 + 2)
            .map(|i| (format!("t{i}"), TokenRecord { expire: 100 + i, life: 1 }))
            .collect();
        // At now=101, t0 is expired; 257 remain live, so adding a new one evicts the two soonest.
        let e = to_evict(&recs, "new", 101);
        assert_eq!(e, vec!["t0", "t1", "t2"]);
        // Refreshing an existing token does not count it twice.
        let e = to_evict(&recs, "t5", 101);
        assert_eq!(e, vec!["t0", "t1"]);
        assert!(to_evict(&recs[..3], "x", 0).is_empty());
    }
}
