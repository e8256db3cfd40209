//! A minimal HTTP/1.1 client for the web API over loopback: one connection per client, kept alive
//! when the server allows it (upstream web sends `Connection: close`, ours keeps alive), response
//! bodies by Content-Length, chunked or close-delimited. The response parser is pure; every read
//! has a size limit and every request a deadline.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::socket::connect_tcp;
use crate::target::HttpTarget;

/// Largest response head or body the bench accepts.
pub const MAX_RESPONSE: usize = 1 << 20;

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
    /// Whether the server wants the connection closed afterwards.
    pub close: bool,
}

/// What the parser found in the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole response and the bytes it took.
    Done(Response, usize),
    /// Need more bytes (or the end of the stream, for a close-delimited body).
    Incomplete,
    /// Not HTTP/1.x.
    Invalid(&'static str),
}

/// Parses one response from the start of `buf`; `eof` says the server closed the stream.
pub fn parse_response(buf: &[u8], eof: bool) -> Parsed {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > 16 * 1024 { Parsed::Invalid("response head too long") } else { Parsed::Incomplete };
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else { return Parsed::Invalid("head is not UTF-8") };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Parsed::Invalid("not HTTP/1.x");
    }
    let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
        return Parsed::Invalid("bad status code");
    };
    let mut close = version == "HTTP/1.0";
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { return Parsed::Invalid("bad header line") };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) if n <= MAX_RESPONSE => length = Some(n),
                _ => return Parsed::Invalid("bad content-length"),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        }
    }
    let body_start = head_end + 4;
    let rest = &buf[body_start..];
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Parsed::Done(Response { status, body: Vec::new(), close }, body_start);
    }
    if chunked {
        return match dechunk(rest) {
            Ok(Some((body, used))) => Parsed::Done(Response { status, body, close }, body_start + used),
            Ok(None) => Parsed::Incomplete,
            Err(e) => Parsed::Invalid(e),
        };
    }
    match length {
        Some(n) if rest.len() >= n => {
            Parsed::Done(Response { status, body: rest[..n].to_vec(), close }, body_start + n)
        }
        Some(_) => Parsed::Incomplete,
        None if eof => Parsed::Done(Response { status, body: rest.to_vec(), close: true }, buf.len()),
        None => Parsed::Incomplete,
    }
}

/// Decodes a chunked body: `Ok(None)` if incomplete.
fn dechunk(mut buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, &'static str> {
    let total = buf.len();
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(buf, b"\r\n") else {
            return if buf.len() > 64 { Err("chunk size line too long") } else { Ok(None) };
        };
        let size_str = std::str::from_utf8(&buf[..eol]).map_err(|_| "bad chunk size")?;
        let size_str = size_str.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).map_err(|_| "bad chunk size")?;
        if body.len() + size > MAX_RESPONSE {
            return Err("chunked body too large");
        }
        let data = eol + 2;
        if size == 0 {
            // No trailers expected; the final CRLF ends the body.
            if buf.len() < data + 2 {
                return Ok(None);
            }
            if &buf[data..data + 2] != b"\r\n" {
                return Err("trailers are not supported");
            }
            return Ok(Some((body, total - buf.len() + data + 2)));
        }
        if buf.len() < data + size + 2 {
            return Ok(None);
        }
        if &buf[data + size..data + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF");
        }
        body.extend_from_slice(&buf[data..data + size]);
        buf = &buf[data + size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One keep-alive connection to a web port.
pub struct HttpClient {
    target: HttpTarget,
    bind_ip: Option<IpAddr>,
    timeout: Duration,
    conn: Option<TcpStream>,
    buf: BytesMut,
}

impl HttpClient {
    /// A client for `target`, optionally binding its sockets to a loopback source address.
    pub fn new(target: HttpTarget, bind_ip: Option<IpAddr>, timeout: Duration) -> Self {
        Self { target, bind_ip, timeout, conn: None, buf: BytesMut::with_capacity(1024) }
    }

    /// The target's address.
    pub fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    /// Sends `GET path` (path relative to the target's prefix).
    pub async fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, None).await
    }

    /// Sends `POST path` with a body.
    pub async fn post(&mut self, path: &str, content_type: &str, body: &[u8]) -> io::Result<Response> {
        self.request("POST", path, Some((content_type, body))).await
    }

    async fn request(&mut self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> io::Result<Response> {
        let mut req = format!("{method} {}{path} HTTP/1.1\r\nHost: {}\r\n", self.target.prefix, self.target.host);
        if let Some((ct, b)) = body {
            req.push_str(&format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some((_, b)) = body {
            bytes.extend_from_slice(b);
        }
        match tokio::time::timeout(self.timeout, self.exchange(&bytes)).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                Err(io::Error::new(io::ErrorKind::TimedOut, "http request timed out"))
            }
        }
    }

    async fn exchange(&mut self, req: &[u8]) -> io::Result<Response> {
        // A reused keep-alive connection may have been closed by the server meanwhile: retry once
        // on a fresh connection if nothing at all came back.
        let reused = self.conn.is_some();
        match self.exchange_once(req).await {
            Err(e) if reused && e.kind() == io::ErrorKind::ConnectionAborted => self.exchange_once(req).await,
            r => r,
        }
    }

    async fn exchange_once(&mut self, req: &[u8]) -> io::Result<Response> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => connect_tcp(self.target.addr, self.bind_ip).await?,
        };
        let stale = |e: io::Error| {
            if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
                io::Error::new(io::ErrorKind::ConnectionAborted, e)
            } else {
                e
            }
        };
        conn.write_all(req).await.map_err(stale)?;
        self.buf.clear();
        loop {
            let n = conn.read_buf(&mut self.buf).await.map_err(stale)?;
            let eof = n == 0;
            if eof && self.buf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed before any response"));
            }
            match parse_response(&self.buf, eof) {
                Parsed::Done(resp, _) => {
                    if !resp.close && !eof {
                        self.conn = Some(conn);
                    }
                    return Ok(resp);
                }
                Parsed::Invalid(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
                Parsed::Incomplete if eof => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "response cut short"));
                }
                Parsed::Incomplete if self.buf.len() > MAX_RESPONSE + 16 * 1024 => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "response too large"));
                }
                Parsed::Incomplete => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(p: Parsed) -> (Response, usize) {
        match p {
            Parsed::Done(r, n) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length_and_keep_alive() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"ret\":0}extra";
        let (r, n) = done(parse_response(raw, false));
        assert_eq!((r.status, r.body.as_slice(), r.close, n), (200, &b"{\"ret\":0}"[..], false, raw.len() - 5));
        for cut in 0..raw.len() - 5 {
            assert_eq!(parse_response(&raw[..cut], false), Parsed::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn connection_close_and_http10() {
        let (r, _) = done(parse_response(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false));
        assert!(r.close);
        let (r, _) = done(parse_response(b"HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 1\r\n\r\nx", false));
        assert!(r.close && r.status == 405);
    }

    #[test]
    fn chunked_and_close_delimited() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"re\r\n5;x=1\r\nt\":0}\r\n0\r\n\r\n";
        let (r, n) = done(parse_response(raw, false));
        assert_eq!((r.body.as_slice(), n), (&b"{\"ret\":0}"[..], raw.len()));
        assert_eq!(parse_response(&raw[..raw.len() - 1], false), Parsed::Incomplete);
        let raw = b"HTTP/1.1 200 OK\r\n\r\nabc";
        assert_eq!(parse_response(raw, false), Parsed::Incomplete);
        let (r, _) = done(parse_response(raw, true));
        assert_eq!((r.body.as_slice(), r.close), (&b"abc"[..], true));
    }

    #[test]
    fn rejects_junk() {
        assert!(matches!(parse_response(b"SSH-2.0\r\n\r\n", false), Parsed::Invalid(_)));
        assert!(matches!(parse_response(b"HTTP/1.1 abc\r\n\r\n", false), Parsed::Invalid(_)));
        assert!(matches!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false), Parsed::Invalid(_)));
        assert!(matches!(parse_response(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", false), Parsed::Invalid(_)));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(parse_response(raw, false), Parsed::Invalid(_)));
        assert!(matches!(parse_response(&[b'a'; 20000], false), Parsed::Invalid(_)));
    }
}
