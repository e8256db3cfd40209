//! The comet client protocols' bytes (docs/protocol.md), pure: the TCP `sub` handshake, the WebSocket
//! `/sub` query, and an incremental parser for what a comet sends a TCP client (`+h\r\n`,
//! `-x\r\n`, `$len\r\n<json>\r\n`). No sockets here, so every case is a byte-string test.

/// Largest push frame the bench accepts (bigger ones are a protocol violation for our payloads).
pub const MAX_FRAME: usize = 1 << 20;

/// The TCP handshake: `*3` (old message format) without a version, `*5` with token "" and version.
pub fn tcp_handshake(key: &str, heartbeat_secs: u64, ver: Option<&str>) -> Vec<u8> {
    let hb = heartbeat_secs.to_string();
    let mut args: Vec<&str> = vec!["sub", key, &hb];
    if let Some(v) = ver {
        args.push("");
        args.push(v);
    }
    let mut out = Vec::with_capacity(64 + key.len());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// The WebSocket subscription path and query (`ver`, not `version`, per docs/protocol.md#websocket).
pub fn ws_path(key: &str, heartbeat_secs: u64, ver: Option<&str>) -> String {
    let mut p = format!("/sub?key={}&heartbeat={heartbeat_secs}", encode_query(key));
    if let Some(v) = ver {
        p.push_str("&ver=");
        p.push_str(&encode_query(v));
    }
    p
}

/// Percent-encodes a query value (keys the bench makes are plain, but flags may not be).
pub fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One thing a comet sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `+h\r\n`: subscription accepted, or a heartbeat answer.
    Heartbeat,
    /// `-p\r\n`, `-n\r\n`, `-c\r\n`, `-a\r\n`: refused, the byte after `-`.
    Refused(u8),
    /// `$len\r\n<json>\r\n`: a pushed message, the JSON.
    Message(&'a [u8]),
}

/// What the parser found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A frame and how many bytes it took.
    Frame(Frame<'a>, usize),
    /// Need more bytes.
    Incomplete,
    /// Not the protocol.
    Invalid(&'static str),
}

/// Parses one TCP frame from the start of `buf`.
pub fn parse_tcp(buf: &[u8]) -> Parsed<'_> {
    let Some(&first) = buf.first() else { return Parsed::Incomplete };
    match first {
        b'+' | b'-' => {
            if buf.len() < 4 {
                return Parsed::Incomplete;
            }
            if &buf[2..4] != b"\r\n" {
                return Parsed::Invalid("status line not 3 bytes + CRLF");
            }
            match (first, buf[1]) {
                (b'+', b'h') => Parsed::Frame(Frame::Heartbeat, 4),
                (b'-', c) => Parsed::Frame(Frame::Refused(c), 4),
                _ => Parsed::Invalid("unknown status"),
            }
        }
        b'$' => {
            let Some(nl) = buf.iter().take(12).position(|&b| b == b'\n') else {
                return if buf.len() >= 12 { Parsed::Invalid("length line too long") } else { Parsed::Incomplete };
            };
            if nl < 3 || buf[nl - 1] != b'\r' {
                return Parsed::Invalid("bad length line");
            }
            let Some(len) = std::str::from_utf8(&buf[1..nl - 1]).ok().and_then(|s| s.parse::<usize>().ok()) else {
                return Parsed::Invalid("length not a number");
            };
            if len > MAX_FRAME {
                return Parsed::Invalid("frame too large");
            }
            let start = nl + 1;
            let end = start + len;
            if buf.len() < end + 2 {
                return Parsed::Incomplete;
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Parsed::Invalid("frame not followed by CRLF");
            }
            Parsed::Frame(Frame::Message(&buf[start..end]), end + 2)
        }
        _ => Parsed::Invalid("unexpected first byte"),
    }
}

/// Classifies a WebSocket text frame the way SDKs do: by its first byte.
pub fn parse_ws(payload: &[u8]) -> Result<Frame<'_>, &'static str> {
    match payload {
        b"+h\r\n" => Ok(Frame::Heartbeat),
        [b'-', c, b'\r', b'\n'] => Ok(Frame::Refused(*c)),
        [b'{', ..] => Ok(Frame::Message(payload)),
        _ => Err("unexpected websocket frame"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_match_upstreams_examples() {
        assert_eq!(tcp_handshake("Terry-Mao", 30, None), b"*3\r\n$3\r\nsub\r\n$9\r\nTerry-Mao\r\n$2\r\n30\r\n");
        assert_eq!(
            tcp_handshake("Terry-Mao", 30, Some("1.0.5")),
            b"*5\r\n$3\r\nsub\r\n$9\r\nTerry-Mao\r\n$2\r\n30\r\n$0\r\n\r\n$5\r\n1.0.5\r\n"
        );
        assert_eq!(ws_path("k 1", 30, None), "/sub?key=k%201&heartbeat=30");
        assert_eq!(ws_path("k1", 45, Some("1.0")), "/sub?key=k1&heartbeat=45&ver=1.0");
    }

    #[test]
    fn parses_status_and_messages_incrementally() {
        let stream = b"+h\r\n$9\r\n{\"a\":\"b\"}\r\n-n\r\n";
        for cut in 0..stream.len() {
            let p = parse_tcp(&stream[..cut]);
            assert!(matches!(p, Parsed::Incomplete | Parsed::Frame(..)), "cut {cut}: {p:?}");
        }
        assert_eq!(parse_tcp(stream), Parsed::Frame(Frame::Heartbeat, 4));
        assert_eq!(parse_tcp(&stream[4..]), Parsed::Frame(Frame::Message(b"{\"a\":\"b\"}"), 15));
        assert_eq!(parse_tcp(&stream[19..]), Parsed::Frame(Frame::Refused(b'n'), 4));
        assert_eq!(parse_tcp(&stream[4..10]), Parsed::Incomplete);
    }

    #[test]
    fn rejects_junk() {
        assert!(matches!(parse_tcp(b"x"), Parsed::Invalid(_)));
        assert!(matches!(parse_tcp(b"+x\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse_tcp(b"+hh\r"), Parsed::Invalid(_)));
        assert!(matches!(parse_tcp(b"$-1\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse_tcp(b"$99999999999\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse_tcp(b"$2\r\nab\n\n"), Parsed::Invalid(_)));
        assert!(matches!(parse_tcp(b"$\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse_tcp(b"$2000000\r\n"), Parsed::Invalid(_)));
    }

    #[test]
    fn classifies_ws_frames() {
        assert_eq!(parse_ws(b"+h\r\n"), Ok(Frame::Heartbeat));
        assert_eq!(parse_ws(b"-p\r\n"), Ok(Frame::Refused(b'p')));
        assert_eq!(parse_ws(b"{\"msg\":1}"), Ok(Frame::Message(b"{\"msg\":1}")));
        assert!(parse_ws(b"h").is_err());
    }
}
