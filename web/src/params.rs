//! Request parameters, decoded the way Go's `url.ParseQuery` does for the query string and
//! form bodies: pairs split on `&`, `+` is a space, `%XX` escapes; a pair with a bad escape or a `;`
//! is skipped (so its parameter counts as missing), and the first value of a name wins. Pure.

/// Decoded `name=value` pairs of a query string or an `application/x-www-form-urlencoded` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `raw` (without the leading `?`).
    pub fn parse(raw: &[u8]) -> Params {
        let pairs = raw
            .split(|&b| b == b'&')
            .filter(|p| !p.is_empty() && !p.contains(&b';'))
            .filter_map(|pair| {
                let (name, value) = match pair.iter().position(|&b| b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &[][..]),
                };
                Some((unescape(name)?, unescape(value)?))
            })
            .collect();
        Params(pairs)
    }

    /// The first value of `name`, if present (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The first value of `name` when present and non-empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// Go's `QueryUnescape`; `None` for a bad `%` escape or bytes that are not UTF-8.
fn unescape(s: &[u8]) -> Option<String> {
    String::from_utf8(cluster::urlenc::percent_decode(s)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_go() {
        let p = Params::parse(b"k=Terry-Mao&p=2&cb=a.b&k=second&x=a%20b+c&e=&flag");
        assert_eq!(p.get("k"), Some("Terry-Mao"));
        assert_eq!(p.get("p"), Some("2"));
        assert_eq!(p.get("x"), Some("a b c"));
        assert_eq!(p.get("e"), Some(""));
        assert_eq!(p.non_empty("e"), None);
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get("missing"), None);
        assert_eq!(Params::parse(b"k=%E4%BD%A0").get("k"), Some("你"));
        assert_eq!(Params::parse(b"k=a=b").get("k"), Some("a=b"));
        assert_eq!(Params::parse(b"%6B=v").get("k"), Some("v"), "names are unescaped too");
    }

    #[test]
    fn bad_pairs_are_skipped() {
        let p = Params::parse(b"k=%zz&m=1&k=ok");
        assert_eq!(p.get("k"), Some("ok"), "the bad pair is dropped, the later one counts");
        assert_eq!(Params::parse(b"k=%4").get("k"), None);
        assert_eq!(Params::parse(b"k=%").get("k"), None);
        assert_eq!(Params::parse(b"k=%ff").get("k"), None, "not UTF-8");
        assert_eq!(Params::parse(b"k=a;b&m=1").get("k"), None, "Go rejects semicolons");
        assert_eq!(Params::parse(b"k=a;b&m=1").get("m"), Some("1"));
        assert_eq!(Params::parse(b"").get("k"), None);
        assert_eq!(Params::parse(b"&&=&").get(""), Some(""));
    }
}
