//! JSON bytes exactly as gopush-cluster's Go encoder wrote them, because clients compare and parse
//! them: compact, `<` `>` `&` written as `\u003c` `\u003e` `\u0026`, U+2028/U+2029 escaped, and
//! messages laid out `{"msg":..,"mid":..,"gid":..}` in the new (raw JSON) or old (JSON string) form.

use std::fmt::Write;

/// Checks that `raw` is one JSON value and returns it compacted the way Go re-encodes a
/// `json.RawMessage`: insignificant white space removed, strings kept as written except for the
/// HTML-sensitive characters. `None` when `raw` is not valid JSON.
pub fn compact(raw: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(raw).ok()?;
    let mut out = String::with_capacity(raw.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                _ => push_html_safe(&mut out, c),
            }
        } else {
            match c {
                ' ' | '\t' | '\n' | '\r' => {}
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
    Some(out)
}

fn push_html_safe(out: &mut String, c: char) {
    match c {
        '<' => out.push_str("\\u003c"),
        '>' => out.push_str("\\u003e"),
        '&' => out.push_str("\\u0026"),
        '\u{2028}' => out.push_str("\\u2028"),
        '\u{2029}' => out.push_str("\\u2029"),
        _ => out.push(c),
    }
}

/// Appends `items` as a JSON array of strings, each written as [`push_string`] writes it.
pub fn push_strings<S: AsRef<str>>(out: &mut String, items: impl IntoIterator<Item = S>) {
    out.push('[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(out, s.as_ref());
    }
    out.push(']');
}

/// Appends `s` as a JSON string literal the way Go's `encoding/json` writes one.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            _ => push_html_safe(out, c),
        }
    }
    out.push('"');
}

/// `s` as a Go-encoded JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

/// A pushed or stored message as clients receive it. `new_format` embeds the message (`compacted`,
/// as returned by [`compact`]) as raw JSON; the old format, for clients that gave no version, carries
/// the `original` bytes as a JSON string.
pub fn message(compacted: &str, original: &str, mid: i64, gid: u32, new_format: bool) -> String {
    group_message(compacted, original, mid, gid, None, new_format)
}

/// Like [`message`], for a room push: the new format adds `"room":"R"` after `gid`, which old
/// SDKs ignore as an unknown field; the old format stays exactly upstream's
/// (docs/protocol.md#message-json).
pub fn group_message(
    compacted: &str,
    original: &str,
    mid: i64,
    gid: u32,
    room: Option<&str>,
    new_format: bool,
) -> String {
    let mut out = String::with_capacity(compacted.len().max(original.len()) + 48);
    out.push_str("{\"msg\":");
    if new_format {
        out.push_str(compacted);
    } else {
        push_string(&mut out, original);
    }
    let _ = write!(out, ",\"mid\":{mid},\"gid\":{gid}");
    if let (Some(room), true) = (room, new_format) {
        out.push_str(",\"room\":");
        push_string(&mut out, room);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_matches_go() {
        assert_eq!(compact("{\"test\":1}").as_deref(), Some("{\"test\":1}"));
        assert_eq!(
            compact(" { \"a\" : [ 1 , 2 ] ,\n \"b\":\"x y\" } ").as_deref(),
            Some("{\"a\":[1,2],\"b\":\"x y\"}")
        );
        assert_eq!(compact(r#"{"test":1,"h":"<b>&"}"#).as_deref(), Some(r#"{"test":1,"h":"\u003cb\u003e\u0026"}"#));
        assert_eq!(compact(r#""a\"<""#).as_deref(), Some(r#""a\"\u003c""#));
        assert_eq!(compact(r#""\u00e9\/""#).as_deref(), Some(r#""\u00e9\/""#), "escapes are kept as written");
        assert_eq!(compact("1.50e3").as_deref(), Some("1.50e3"), "numbers are kept as written");
        assert_eq!(compact("\"\u{2028}\"").as_deref(), Some("\"\\u2028\""));
        assert_eq!(compact("not json"), None);
        assert_eq!(compact("{\"a\":1} {"), None);
        assert_eq!(compact(""), None);
    }

    #[test]
    fn strings_match_go() {
        assert_eq!(string("{\"test\":1}"), r#""{\"test\":1}""#);
        assert_eq!(string("a\nb\tc\u{1}<>&\\"), r#""a\nb\tc\u0001\u003c\u003e\u0026\\""#);
        assert_eq!(string("é"), "\"é\"");
    }

    #[test]
    fn messages_in_both_formats() {
        let raw = r#"{"test":1,"h":"<b>&"}"#;
        let c = compact(raw).unwrap();
        let new = message(&c, raw, 13996474938346192, 0, true);
        assert_eq!(new, r#"{"msg":{"test":1,"h":"\u003cb\u003e\u0026"},"mid":13996474938346192,"gid":0}"#);
        assert_eq!(new.len(), 76, "upstream's 76-byte example");
        let old = message(&c, "{\"test\":1}", 13996474938346192, 0, false);
        assert_eq!(old, r#"{"msg":"{\"test\":1}","mid":13996474938346192,"gid":0}"#);
    }

    #[test]
    fn room_messages_name_their_room_in_the_new_format_only() {
        let new = group_message("{}", "{}", 7, 1, Some("a<b"), true);
        assert_eq!(new, r#"{"msg":{},"mid":7,"gid":1,"room":"a\u003cb"}"#);
        let old = group_message("{}", "{}", 7, 1, Some("a<b"), false);
        assert_eq!(old, r#"{"msg":"{}","mid":7,"gid":1}"#);
        assert_eq!(group_message("1", "1", 8, 2, None, true), r#"{"msg":1,"mid":8,"gid":2}"#);
    }
}
