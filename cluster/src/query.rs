//! URL query strings and form bodies, decoded as Go's `url.ParseQuery` does: pairs split on `&`,
//! `+` is a space, `%XX` escapes; a pair with a bad escape or a `;` is skipped (so its name counts
//! as missing) and the rest is kept; the first value of a name wins. Upstream parsed both web's
//! parameters and the comet's WebSocket `/sub` query this way, so both use this one parser. Pure.

/// Decoded `name=value` pairs of a query string or an `application/x-www-form-urlencoded` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(Vec<u8>, Vec<u8>)>);

impl Query {
    /// Parses `raw` (without the leading `?`).
    pub fn parse(raw: &[u8]) -> Query {
        let pairs = raw
            .split(|&b| b == b'&')
            .filter(|p| !p.is_empty() && !p.contains(&b';'))
            .filter_map(|pair| {
                let (name, value) = match pair.iter().position(|&b| b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &[][..]),
                };
                Some((percent_decode(name)?, percent_decode(value)?))
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `name` as raw bytes, if present (possibly empty).
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(n, _)| n == name.as_bytes()).map(|(_, v)| v.as_slice())
    }

    /// The first value of `name`, if present and UTF-8 (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` when present, UTF-8 and non-empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// Decodes `s` as Go's `url.QueryUnescape`; `None` when a `%` is not followed by two hex digits.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = hex(*s.get(i + 1)?)?;
                let lo = hex(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_gos() {
        assert_eq!(percent_decode(b"a+b%20c%2Fd%e9").as_deref(), Some(&b"a b c/d\xe9"[..]));
        assert_eq!(percent_decode(b"").as_deref(), Some(&b""[..]));
        assert_eq!(percent_decode(b"%"), None);
        assert_eq!(percent_decode(b"%4"), None);
        assert_eq!(percent_decode(b"%zz"), None);
    }

    #[test]
    fn decodes_like_go() {
        let q = Query::parse(b"k=Terry-Mao&p=2&cb=a.b&k=second&x=a%20b+c&e=&flag");
        assert_eq!(q.get("k"), Some("Terry-Mao"), "the first value of a duplicate wins");
        assert_eq!(q.get("p"), Some("2"));
        assert_eq!(q.get("x"), Some("a b c"), "+ is a space");
        assert_eq!(q.get("e"), Some(""), "an empty value is present");
        assert_eq!(q.non_empty("e"), None);
        assert_eq!(q.get("flag"), Some(""), "a name without = has an empty value");
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::parse(b"k=%E4%BD%A0").get("k"), Some("你"));
        assert_eq!(Query::parse(b"k=a=b").get("k"), Some("a=b"));
        assert_eq!(Query::parse(b"%6B=v").get("k"), Some("v"), "names are unescaped too");
        assert_eq!(Query::parse(b"k=a+%2B+b").get("k"), Some("a + b"));
    }

    #[test]
    fn bad_pairs_are_skipped_and_the_rest_kept() {
        let q = Query::parse(b"k=%zz&m=1&k=ok");
        assert_eq!(q.get("k"), Some("ok"), "the bad pair is dropped, the later one counts");
        assert_eq!(q.get("m"), Some("1"));
        let q = Query::parse(b"key=K&%zz=1&heartbeat=30");
        assert_eq!((q.get("key"), q.get("heartbeat")), (Some("K"), Some("30")), "a bad name drops only its pair");
        assert_eq!(Query::parse(b"k=%4").get("k"), None);
        assert_eq!(Query::parse(b"k=%").get("k"), None);
        assert_eq!(Query::parse(b"k=a;b&m=1").get("k"), None, "Go rejects semicolons");
        assert_eq!(Query::parse(b"k=a;b&m=1").get("m"), Some("1"));
        assert_eq!(Query::parse(b"").get("k"), None);
        assert_eq!(Query::parse(b"&&=&").get(""), Some(""));
    }

    #[test]
    fn values_that_are_not_utf8_are_kept_as_bytes() {
        let q = Query::parse(b"k=%ff");
        assert_eq!(q.bytes("k"), Some(&b"\xff"[..]));
        assert_eq!(q.get("k"), None, "not UTF-8 as a string");
    }
}
