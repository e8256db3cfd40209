//! The bench's message body and how to read it back out of a pushed message, pure. A body is
//! `{"t":<unix nanos at send>,"s":<sequence>,"p":"xxx.."}`, padded to the requested size; a comet
//! wraps it as `{"msg":<body>,"mid":..,"gid":0}` (new format) or with `msg` as a JSON string (old).

use serde::Deserialize;
use serde_json::value::RawValue;

/// What a received message says about the push it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Stamp {
    /// Send time, Unix nanoseconds.
    pub t: u64,
    /// Sequence number of the push.
    pub s: u64,
}

/// Builds a body of at least `size` bytes (exactly `size` when it is big enough for the stamp).
pub fn body(t: u64, s: u64, size: usize) -> String {
    let mut out = format!("{{\"t\":{t},\"s\":{s},\"p\":\"");
    let pad = size.saturating_sub(out.len() + 2);
    out.extend(std::iter::repeat_n('x', pad));
    out.push_str("\"}");
    out
}

/// The envelope a comet pushes; `msg` is kept raw to tell the two formats apart.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    msg: &'a RawValue,
}

/// Extracts the stamp from a pushed message in either format; `None` if it is not one of ours.
pub fn parse_pushed(json: &[u8]) -> Option<Stamp> {
    fast_stamp(json).or_else(|| parse_pushed_slow(json))
}

/// The common case without a JSON parser: the comet puts `msg` first and keeps the body's bytes,
/// so the stamp sits at a fixed place. Receiving is half the CPU on a shared 2-core box, and every
/// cycle saved here goes to the server under test.
fn fast_stamp(json: &[u8]) -> Option<Stamp> {
    let (rest, sep): (&[u8], &[u8]) = if let Some(r) = json.strip_prefix(br#"{"msg":{"t":"#) {
        (r, br#","s":"#)
    } else if let Some(r) = json.strip_prefix(br#"{"msg":"{\"t\":"#) {
        (r, br#",\"s\":"#)
    } else {
        return None;
    };
    let (t, rest) = digits(rest)?;
    let (s, rest) = digits(rest.strip_prefix(sep)?)?;
    // The next byte must end the number, or the message is not one of ours.
    matches!(rest.first(), Some(b',' | b'}')).then_some(Stamp { t, s })
}

fn digits(b: &[u8]) -> Option<(u64, &[u8])> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    let v = b[..n].iter().fold(0u64, |v, &c| v * 10 + u64::from(c - b'0'));
    Some((v, &b[n..]))
}

fn parse_pushed_slow(json: &[u8]) -> Option<Stamp> {
    let env: Envelope<'_> = serde_json::from_slice(json).ok()?;
    let raw = env.msg.get();
    if raw.starts_with('"') {
        // Old format: the body travels as a JSON string.
        let inner: String = serde_json::from_str(raw).ok()?;
        serde_json::from_str(&inner).ok()
    } else {
        serde_json::from_str(raw).ok()
    }
}

/// The JSON body of a `/1/admin/push/mprivate` request: `m` is the message as a string.
pub fn mprivate_body(message: &str, keys: &[&str]) -> String {
    let m = serde_json::Value::String(message.to_string()).to_string();
    let k = serde_json::Value::String(keys.join(",")).to_string();
    format!("{{\"m\":{m},\"k\":{k}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_requested_size() {
        assert_eq!(body(1, 2, 0), r#"{"t":1,"s":2,"p":""}"#);
        let b = body(1_700_000_000_000_000_000, 42, 256);
        assert_eq!(b.len(), 256);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["s"], 42);
    }

    #[test]
    fn reads_both_formats() {
        let b = body(1_700_000_000_123_456_789, 7, 64);
        let new = format!(r#"{{"msg":{b},"mid":13996474938346192,"gid":0}}"#);
        let want = Stamp { t: 1_700_000_000_123_456_789, s: 7 };
        assert_eq!(parse_pushed(new.as_bytes()), Some(want));
        let old = format!(r#"{{"msg":{},"mid":13996474938346192,"gid":0}}"#, serde_json::Value::String(b));
        assert_eq!(parse_pushed(old.as_bytes()), Some(want));
    }

    #[test]
    fn fast_path_agrees_with_the_parser() {
        let b = body(1_700_000_000_123_456_789, 18_446_744, 80);
        let new = format!(r#"{{"msg":{b},"mid":1,"gid":0}}"#);
        let old = format!(r#"{{"msg":{},"mid":1,"gid":0}}"#, serde_json::Value::String(b));
        for m in [new, old] {
            assert!(fast_stamp(m.as_bytes()).is_some(), "{m}");
            assert_eq!(fast_stamp(m.as_bytes()), parse_pushed_slow(m.as_bytes()), "{m}");
        }
        assert_eq!(fast_stamp(br#"{"msg":{"t":1,"s":2x"#), None);
        assert_eq!(fast_stamp(br#"{"msg":{"t":99999999999999999999,"s":2}"#), None);
        assert_eq!(fast_stamp(br#"{"msg":{"t":,"s":2}"#), None);
        assert_eq!(parse_pushed(br#"{"msg":{"s":2,"t":1},"mid":1,"gid":0}"#), Some(Stamp { t: 1, s: 2 }));
    }

    #[test]
    fn ignores_foreign_messages() {
        assert_eq!(parse_pushed(br#"{"msg":{"test":1},"mid":1,"gid":0}"#), None);
        assert_eq!(parse_pushed(br#"{"msg":"hello","mid":1,"gid":0}"#), None);
        assert_eq!(parse_pushed(b"not json"), None);
    }

    #[test]
    fn mprivate_body_embeds_the_message_as_a_string() {
        let m = mprivate_body(r#"{"t":1,"s":2,"p":""}"#, &["a", "b"]);
        assert_eq!(m, r#"{"m":"{\"t\":1,\"s\":2,\"p\":\"\"}","k":"a,b"}"#);
    }
}
