//! The stored form of one offline message, pure and I/O-free. Upstream's Redis member is
//! `{"msg":<raw json>,"expire":<unix s>}` with the mid only in the (double) score; ours appends the
//! exact `"mid"` so ids survive above 2^53. Decoding accepts both, taking a legacy member's mid from
//! its score. The memory store keeps the same fields, so both stores share one meaning.

use cluster::rpc::Mid;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt::Write;

/// A decoded member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The message as stored: one compact JSON value.
    pub msg: String,
    /// Absolute expiry, Unix seconds; the message is gone once the clock passes it.
    pub expire: i64,
    /// The exact id (from the member, or from the score for upstream's members).
    pub mid: Mid,
}

impl Member {
    /// True once `now` is past the expiry (a message is still served during its last second).
    pub fn expired(&self, now: i64) -> bool {
        self.expire < now
    }
}

/// Encodes `{"msg":<compacted>,"expire":<expire>,"mid":<mid>}`; `compacted` must already be the
/// compact JSON from `cluster::gojson::compact`, so the bytes match Go's encoder for the first two
/// fields.
pub fn encode(compacted: &str, expire: i64, mid: Mid) -> String {
    let mut out = String::with_capacity(compacted.len() + 56);
    out.push_str("{\"msg\":");
    out.push_str(compacted);
    let _ = write!(out, ",\"expire\":{expire},\"mid\":{mid}}}");
    out
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    msg: &'a RawValue,
    expire: i64,
    #[serde(default)]
    mid: Option<Mid>,
}

/// Decodes a member read with its `score`; `None` when it is not a message member (upstream skipped
/// and deleted those too).
pub fn decode(member: &str, score: f64) -> Option<Member> {
    let wire: Wire<'_> = serde_json::from_str(member).ok()?;
    let mid = match wire.mid {
        Some(mid) => mid,
        None => score_to_mid(score)?,
    };
    (mid >= 0).then(|| Member { msg: wire.msg.get().to_string(), expire: wire.expire, mid })
}

/// The integer a score stands for, as exactly as a double allows; `None` for scores no mid has.
pub fn score_to_mid(score: f64) -> Option<Mid> {
    // 2^63 is exactly representable; anything at or above it does not fit an i64.
    (0.0..9_223_372_036_854_775_808.0).contains(&score).then_some(score as Mid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_in_upstreams_field_order_plus_mid() {
        assert_eq!(
            encode(r#"{"test":1}"#, 1_764_000_000, 17_999_999_999_999_999),
            r#"{"msg":{"test":1},"expire":1764000000,"mid":17999999999999999}"#
        );
    }

    #[test]
    fn round_trips_exact_mids_whatever_the_score() {
        let m = encode(r#"[1,"a"]"#, 10, 17_999_999_999_999_999);
        // The score of an odd mid near 1.8e16 rounds to an even double.
        let d = decode(&m, 17_999_999_999_999_999_f64).unwrap();
        assert_eq!(d, Member { msg: r#"[1,"a"]"#.into(), expire: 10, mid: 17_999_999_999_999_999 });
    }

    #[test]
    fn reads_upstream_members_by_score() {
        let d = decode(r#"{"msg":{"test":1},"expire":1400000000}"#, 13_996_474_938_346_192.0).unwrap();
        assert_eq!(d.mid, 13_996_474_938_346_192);
        assert_eq!(d.msg, r#"{"test":1}"#);
        assert_eq!(d.expire, 1_400_000_000);
        // Upstream's Go struct order does not matter, nor extra fields.
        let d = decode(r#"{"expire":5,"x":true,"msg":"s"}"#, 7.0).unwrap();
        assert_eq!((d.msg.as_str(), d.expire, d.mid), ("\"s\"", 5, 7));
    }

    #[test]
    fn refuses_what_is_not_a_member() {
        for bad in ["", "x", "{}", r#"{"msg":1}"#, r#"{"expire":1}"#, r#"{"msg":1,"expire":"1"}"#] {
            assert_eq!(decode(bad, 1.0), None, "{bad:?}");
        }
        assert_eq!(decode(r#"{"msg":1,"expire":1}"#, -1.0), None);
        assert_eq!(decode(r#"{"msg":1,"expire":1}"#, f64::NAN), None);
        assert_eq!(decode(r#"{"msg":1,"expire":1}"#, 1e300), None);
        assert_eq!(decode(r#"{"msg":1,"expire":1,"mid":-4}"#, 1.0), None);
    }

    #[test]
    fn expiry_is_inclusive_of_its_last_second() {
        let m = Member { msg: "1".into(), expire: 100, mid: 1 };
        assert!(!m.expired(100));
        assert!(m.expired(101));
    }
}
