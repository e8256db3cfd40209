//! The subscribe command, parsed without I/O. TCP clients send a RESP-like multi-bulk array
//! (`*N\r\n` then N × `$len\r\n<arg>\r\n`, docs/protocol.md#subscribe); [`parse`] answers
//! complete / incomplete / invalid over whatever bytes have arrived. WebSocket clients put the same
//! fields in the `/sub` query (decoded by `cluster::query`); [`Subscribe::from_fields`] checks both.

use crate::error::Error;
use cluster::rpc::Mid;

/// Most arguments a subscribe command may have (`sub key heartbeat token version mid rooms`).
pub const MAX_ARGS: usize = 7;
/// Most rooms a subscriber may join for its own connection (docs/protocol.md#rooms-at-subscribe).
pub const MAX_CLIENT_ROOMS: usize = 16;
/// Longest argument, in bytes.
pub const MAX_ARG: usize = 1024;
/// Longest header line (`$1024\r\n` with some leading zeros); a longer one is junk.
const MAX_LINE: usize = 12;

/// What the bytes received so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// A whole command: its arguments and how many bytes it took (later bytes are heartbeats).
    Complete {
        /// The arguments, `sub` first.
        args: Vec<&'a [u8]>,
        /// Bytes of the buffer the command used.
        consumed: usize,
    },
    /// Well-formed so far; read more.
    Incomplete,
    /// Not a valid command: close without a reply.
    Invalid,
}

/// Parses a subscribe command from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parse<'_> {
    let mut pos = 0;
    let argc = match header(buf, &mut pos, b'*') {
        Line::Value(n) if (1..=MAX_ARGS).contains(&n) => n,
        Line::Value(_) | Line::Invalid => return Parse::Invalid,
        Line::Incomplete => return Parse::Incomplete,
    };
    let mut args = Vec::with_capacity(argc);
    for _ in 0..argc {
        let len = match header(buf, &mut pos, b'$') {
            Line::Value(n) if n <= MAX_ARG => n,
            Line::Value(_) | Line::Invalid => return Parse::Invalid,
            Line::Incomplete => return Parse::Incomplete,
        };
        let Some(frame) = buf.get(pos..pos + len + 2) else {
            // Upstream reads each argument up to `\n`: one arriving early means a short argument.
            return if buf[pos..].contains(&b'\n') { Parse::Invalid } else { Parse::Incomplete };
        };
        let (arg, end) = frame.split_at(len);
        if end != b"\r\n" || arg.contains(&b'\n') {
            return Parse::Invalid;
        }
        args.push(arg);
        pos += len + 2;
    }
    Parse::Complete { args, consumed: pos }
}

enum Line {
    Value(usize),
    Incomplete,
    Invalid,
}

/// Reads one `<prefix><decimal>\r\n` line at `*pos`, advancing past it when whole.
fn header(buf: &[u8], pos: &mut usize, prefix: u8) -> Line {
    let rest = &buf[*pos..];
    let window = &rest[..rest.len().min(MAX_LINE)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        let junk = rest.len() >= MAX_LINE || window.first().is_some_and(|&b| b != prefix);
        return if junk { Line::Invalid } else { Line::Incomplete };
    };
    // Upstream: at least 4 bytes with `\r` before `\n`, i.e. a prefix and one digit or more.
    if nl < 3 || rest[0] != prefix || rest[nl - 1] != b'\r' {
        return Line::Invalid;
    }
    let Some(n) = decimal(&rest[1..nl - 1]) else { return Line::Invalid };
    *pos += nl + 1;
    Line::Value(n)
}

/// A non-negative decimal with an optional `+` (Go's `Atoi` accepts one); `None` for a sign `-`,
/// other bytes, or more than 9 digits.
fn decimal(s: &[u8]) -> Option<usize> {
    let digits = s.strip_prefix(b"+").unwrap_or(s);
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

/// Longest heartbeat kept, in seconds (a day): larger ones are accepted and clamped, since the
/// read deadline only has to outlast a client that heartbeats that rarely.
pub const MAX_HEARTBEAT: u32 = 86_400;

/// A heartbeat as Go's `strconv.Atoi` reads it: an optional sign and decimal digits that fit
/// 64 bits. Upstream accepted any such number, so a long one is clamped here, not refused.
fn heartbeat_secs(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Accumulated negatively so that i64::MIN parses, as in Go.
    let mut n: i64 = 0;
    for d in digits {
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative { Some(n) } else { n.checked_neg() }
}

/// A checked subscription request, the same for TCP and WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Who the client is.
    pub key: String,
    /// Seconds between the client's heartbeats.
    pub heartbeat: u32,
    /// The auth token, empty when none was given.
    pub token: String,
    /// True when the client gave a version: messages carry `msg` as raw JSON (new format).
    pub new_format: bool,
    /// The last mid the client saw, when it asks to resume after it (docs/protocol.md#resume).
    pub resume: Option<Mid>,
    /// Rooms the client asks to join for this connection only, distinct, in the order given.
    pub rooms: Vec<String>,
}

/// What the checks of [`Subscribe`] need from the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest key in bytes.
    pub max_key: usize,
    /// Smallest heartbeat in seconds.
    pub min_heartbeat: u32,
}

impl Subscribe {
    /// Checks the arguments of a TCP command: `sub key heartbeat [token] [version] [mid] [rooms]`.
    pub fn from_args(args: &[&[u8]], limits: Limits) -> Result<Subscribe, Error> {
        match args {
            [b"sub", key, heartbeat, rest @ ..] => {
                let optional = Optional {
                    token: rest.first().copied(),
                    version: rest.get(1).copied(),
                    mid: rest.get(2).copied(),
                    rooms: rest.get(3).copied(),
                };
                Subscribe::from_fields(key, heartbeat, optional, limits)
            }
            _ => Err(Error::BadParameter),
        }
    }

    /// Checks the fields, wherever they came from; every failure is `-p`.
    pub fn from_fields(
        key: &[u8],
        heartbeat: &[u8],
        optional: Optional<'_>,
        limits: Limits,
    ) -> Result<Subscribe, Error> {
        let Optional { token, version, mid, rooms } = optional;
        if key.is_empty() || key.len() > limits.max_key {
            return Err(Error::BadParameter);
        }
        let key = std::str::from_utf8(key).map_err(|_| Error::BadParameter)?;
        let heartbeat = heartbeat_secs(heartbeat).ok_or(Error::BadParameter)?;
        if heartbeat < i64::from(limits.min_heartbeat) {
            return Err(Error::BadParameter);
        }
        let heartbeat = u32::try_from(heartbeat.min(i64::from(MAX_HEARTBEAT))).unwrap_or(MAX_HEARTBEAT);
        let token = std::str::from_utf8(token.unwrap_or_default()).map_err(|_| Error::BadParameter)?;
        // An empty mid is no mid, as an empty version is no version.
        let resume = match mid.filter(|m| !m.is_empty()) {
            Some(m) => Some(last_mid(m).ok_or(Error::BadParameter)?),
            None => None,
        };
        Ok(Subscribe {
            key: key.to_string(),
            heartbeat,
            token: token.to_string(),
            new_format: version.is_some_and(|v| !v.is_empty()),
            resume,
            rooms: client_rooms(rooms.unwrap_or_default()).ok_or(Error::BadParameter)?,
        })
    }
}

/// The rooms of `R1,R2`: empty entries skipped, repeats dropped, each a valid room name of UTF-8,
/// at most [`MAX_CLIENT_ROOMS`]; `None` when any rule is broken.
fn client_rooms(list: &[u8]) -> Option<Vec<String>> {
    let mut rooms: Vec<String> = Vec::new();
    for name in list.split(|&b| b == b',').filter(|r| !r.is_empty()) {
        let name = std::str::from_utf8(name).ok()?;
        if !cluster::room::valid(name) {
            return None;
        }
        if !rooms.iter().any(|r| r == name) {
            if rooms.len() == MAX_CLIENT_ROOMS {
                return None;
            }
            rooms.push(name.to_string());
        }
    }
    Some(rooms)
}

/// The optional fields of a subscription, each absent when the client did not send it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Optional<'a> {
    /// The auth token.
    pub token: Option<&'a [u8]>,
    /// The client's version; any non-empty one selects the new message format.
    pub version: Option<&'a [u8]>,
    /// The last mid seen, to resume after.
    pub mid: Option<&'a [u8]>,
    /// Rooms to join for this connection, comma-separated.
    pub rooms: Option<&'a [u8]>,
}

/// A mid to resume after: plain decimal digits, no sign, fitting 63 bits; 0 means "from the start".
fn last_mid(s: &[u8]) -> Option<Mid> {
    if s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits { max_key: 256, min_heartbeat: 30 };

    fn complete(buf: &[u8]) -> (Vec<&[u8]>, usize) {
        match parse(buf) {
            Parse::Complete { args, consumed } => (args, consumed),
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn upstream_examples_parse() {
        let new = b"*5\r\n$3\r\nsub\r\n$9\r\nTerry-Mao\r\n$2\r\n30\r\n$0\r\n\r\n$5\r\n1.0.5\r\n";
        let (args, used) = complete(new);
        assert_eq!(used, new.len());
        let s = Subscribe::from_args(&args, LIMITS).unwrap();
        let want = Subscribe {
            key: "Terry-Mao".into(),
            heartbeat: 30,
            token: String::new(),
            new_format: true,
            resume: None,
            rooms: Vec::new(),
        };
        assert_eq!(s, want);

        let old = b"*3\r\n$3\r\nsub\r\n$9\r\nTerry-Mao\r\n$2\r\n30\r\nh";
        let (args, used) = complete(old);
        assert_eq!(&old[used..], b"h", "pipelined bytes are left for the caller");
        assert!(!Subscribe::from_args(&args, LIMITS).unwrap().new_format);

        // The wiki's 4-argument example puts the version in the token slot: old format.
        let wiki = b"*4\r\n$3\r\nsub\r\n$9\r\nTerry-Mao\r\n$2\r\n30\r\n$5\r\n1.0.4\r\n";
        let s = Subscribe::from_args(&complete(wiki).0, LIMITS).unwrap();
        assert_eq!((s.token.as_str(), s.new_format), ("1.0.4", false));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let cmd = b"*5\r\n$3\r\nsub\r\n$9\r\nTerry-Mao\r\n$2\r\n35\r\n$0\r\n\r\n$3\r\n1.0\r\n";
        for end in 0..cmd.len() {
            assert_eq!(parse(&cmd[..end]), Parse::Incomplete, "prefix {end}");
        }
        assert!(matches!(parse(cmd), Parse::Complete { .. }));
    }

    #[test]
    fn hostile_framing_is_invalid() {
        let cases: &[&[u8]] = &[
            b"*0\r\n",
            b"*8\r\n",
            b"*-1\r\n",
            b"*99999999999999999999\r\n",
            b"*3\n",
            b"*\r\n",
            b"x",
            b"GET / HTTP/1.1\r\n",
            b"*1\r\n$-1\r\n\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$1025\r\n",
            b"*1\r\n$18446744073709551617\r\n",
            b"*1\r\n$3\r\nsubX\r\n",
            b"*1\r\n$3\r\nsu\n\r\n",
            b"*1\r\n$5\r\nsu\r\n",
            b"*1\r\n$3x\r\n",
            b"*1\r\n+3\r\nsub\r\n",
            b"*1\r\n$3\r\nsub\n\n",
            b"*1\r\n$00000000000003\r\nsub\r\n",
            b"*2\r\n$3\r\nsub\r\n*1\r\n",
        ];
        for case in cases {
            assert_eq!(parse(case), Parse::Invalid, "{:?}", String::from_utf8_lossy(case));
        }
        // A `+` sign is accepted, as Go's Atoi does.
        assert!(matches!(parse(b"*+1\r\n$+3\r\nsub\r\n"), Parse::Complete { .. }));
    }

    #[test]
    fn parameter_errors() {
        let p = |args: &[&[u8]]| Subscribe::from_args(args, LIMITS).map(|_| ()).map_err(|e| e.reply());
        assert_eq!(p(&[b"sub", b"k", b"30"]), Ok(()));
        assert_eq!(p(&[b"SUB", b"k", b"30"]), Err(Some("-p\r\n")), "case-sensitive command");
        assert_eq!(p(&[b"pub", b"k", b"30"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"k"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"", b"30"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"k", b"29"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"k", b"-30"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"k", b"x"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"k", b""]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"k", b"99999999999999999999"]), Err(Some("-p\r\n")), "over 64 bits");
        assert_eq!(p(&[b"sub", b"k", b"-9223372036854775808"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"k", b"+"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", &[b'k'; 257], b"30"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", &[b'k'; 256], b"30"]), Ok(()));
        assert_eq!(p(&[b"sub", b"\xff", b"30"]), Err(Some("-p\r\n")));
        assert_eq!(p(&[b"sub", b"k", b"+30"]), Ok(()));
    }

    #[test]
    fn a_sixth_argument_asks_to_resume_after_a_mid() {
        let cmd = b"*6\r\n$3\r\nsub\r\n$1\r\nk\r\n$2\r\n30\r\n$0\r\n\r\n$1\r\n1\r\n$17\r\n13996474938346192\r\n";
        let s = Subscribe::from_args(&complete(cmd).0, LIMITS).unwrap();
        assert_eq!((s.new_format, s.resume), (true, Some(13996474938346192)));
        let resume = |m: &[u8]| Subscribe::from_args(&[b"sub", b"k", b"30", b"", b"1", m], LIMITS).map(|s| s.resume);
        assert_eq!(resume(b"0").unwrap(), Some(0), "0 resumes from the start");
        assert_eq!(resume(b"").unwrap(), None, "empty is no resume");
        for bad in [&b"-1"[..], b"+1", b"x", b"1.5", b"9223372036854775808", b"00000000000000000001"] {
            assert!(resume(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(resume(b"9223372036854775807").unwrap(), Some(i64::MAX));
    }

    #[test]
    fn a_seventh_argument_names_rooms_for_the_connection() {
        let cmd = b"*7\r\n$3\r\nsub\r\n$1\r\nk\r\n$2\r\n30\r\n$0\r\n\r\n$1\r\n1\r\n$0\r\n\r\n$8\r\nr1,r2,r1\r\n";
        let s = Subscribe::from_args(&complete(cmd).0, LIMITS).unwrap();
        assert_eq!((s.resume, s.rooms), (None, vec!["r1".to_string(), "r2".to_string()]), "empty 6th: no resume");
        let rooms = |r: &[u8]| Subscribe::from_args(&[b"sub", b"k", b"30", b"", b"1", b"", r], LIMITS).map(|s| s.rooms);
        assert_eq!(rooms(b"").unwrap(), Vec::<String>::new());
        assert_eq!(rooms(b",a,,").unwrap(), vec!["a".to_string()], "empty entries are skipped");
        let sixteen = (0..16).map(|i| format!("r{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(rooms(sixteen.as_bytes()).unwrap().len(), 16);
        assert!(rooms(format!("{sixteen},r16").as_bytes()).is_err(), "17 rooms");
        assert!(rooms(&[b'r'; 65]).is_err(), "a room over 64 bytes");
        assert!(rooms(b"\xff").is_err(), "not UTF-8");
        let s = Subscribe::from_args(&[b"sub", b"k", b"30", b"", b"1", b"5", b"a"], LIMITS).unwrap();
        assert_eq!((s.resume, s.rooms), (Some(5), vec!["a".to_string()]), "resume and rooms together");
    }

    #[test]
    fn long_heartbeats_are_accepted_and_clamped() {
        let hb = |h: &[u8]| Subscribe::from_args(&[b"sub", b"k", h], LIMITS).map(|s| s.heartbeat);
        assert_eq!(hb(b"9999999999").unwrap(), MAX_HEARTBEAT, "10 digits");
        assert_eq!(hb(b"9223372036854775807").unwrap(), MAX_HEARTBEAT, "i64::MAX");
        assert_eq!(hb(b"0000000000030").unwrap(), 30, "leading zeros");
        assert_eq!(hb(b"86400").unwrap(), 86_400);
        assert!(hb(b"9223372036854775808").is_err(), "Atoi's range ends at i64::MAX");
        assert_eq!(heartbeat_secs(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(heartbeat_secs(b"-30"), Some(-30));
    }

    fn command(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_on_junk(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&buf);
        }

        #[test]
        fn never_panics_on_near_valid_input(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
            cut in 0usize..400,
            flip in 0usize..400,
            byte in any::<u8>(),
        ) {
            let mut buf = command(&args);
            if flip < buf.len() {
                buf[flip] = byte;
            }
            buf.truncate(cut.max(1));
            if let Parse::Complete { args, consumed } = parse(&buf) {
                prop_assert!(consumed <= buf.len());
                prop_assert!(args.len() <= MAX_ARGS && args.iter().all(|a| a.len() <= MAX_ARG));
                let _ = Subscribe::from_args(&args, LIMITS);
            }
        }

        #[test]
        fn well_formed_commands_round_trip(
            args in proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..60), 1..6),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut buf = command(&args);
            let len = buf.len();
            for end in 0..len {
                prop_assert_eq!(parse(&buf[..end]), Parse::Incomplete);
            }
            buf.extend_from_slice(&tail);
            match parse(&buf) {
                Parse::Complete { args: got, consumed } => {
                    prop_assert_eq!(consumed, len);
                    prop_assert_eq!(got, args.iter().map(Vec::as_slice).collect::<Vec<_>>());
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
