//! The one HTTP/1.1 test client: raw bytes in, the exact bytes of each response out, plus its
//! status, headers and body parsed. Golden tests compare bytes; everything else reads fields.
//! One-shot calls ([`get`], [`post`], [`exchange`]) report failures, so a test can poll a server
//! that is still starting; a held [`Conn`] (keep-alive, pipelining) panics, because a test that
//! holds a connection wants a failure to be loud. Every read is bounded in time and size.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Deadline of one read (and of connecting): a loaded debug build answers well within it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response read; anything bigger is a bug in the server under test.
const MAX_RESPONSE: usize = 1 << 20;

/// One response: its exact bytes and the parts a test reads.
#[derive(Debug, Clone)]
pub struct Response {
    bytes: Vec<u8>,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// The exact bytes on the wire, head and body.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers in the order sent.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `Date` header, which golden comparisons leave out because it changes.
    pub fn date(&self) -> Option<&str> {
        self.header("date")
    }

    /// The body as bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body as text; panics when it is not UTF-8, which no gopush answer should be.
    pub fn body(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or_else(|e| panic!("body is not UTF-8 ({e}): {:?}", self.body))
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body()))
    }

    /// The exact response as text with the `Date` line taken out: what golden tests compare.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let head: Vec<&str> = head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("date:")).collect();
        format!("{}\r\n\r\n{body}", head.join("\r\n"))
    }
}

/// What the bytes read so far hold.
enum Parsed {
    /// Not a whole response yet.
    Partial,
    /// A response and the number of bytes it took.
    Done(Response, usize),
}

/// Parses one response from the front of `buf`. Without `Content-Length` the body runs to the
/// end of the connection, so `closed` says whether it has ended.
fn parse(buf: &[u8], closed: bool) -> io::Result<Parsed> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(Parsed::Partial);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("the head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line.split_once(':').ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let start = end + 4;
    let length = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).map(|(_, v)| v);
    let total = match length {
        // These statuses never carry a body, whatever the headers say (RFC 9110, 6.4.1).
        _ if status == 204 || status == 304 || (100..200).contains(&status) => start,
        Some(v) => start + v.parse::<usize>().map_err(|_| bad(format!("bad Content-Length {v:?}")))?,
        None if closed => buf.len(),
        None => return Ok(Parsed::Partial),
    };
    if buf.len() < total {
        return Ok(Parsed::Partial);
    }
    let response = Response { bytes: buf[..total].to_vec(), status, headers, body: buf[start..total].to_vec() };
    Ok(Parsed::Done(response, total))
}

/// A client connection that keeps bytes read past one response for the next (pipelining).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl Conn {
    /// Connects, or reports why not.
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}")))??;
        Ok(Conn { stream, buf: Vec::new(), closed: false })
    }

    /// Connects; panics when it cannot.
    pub async fn open(addr: &str) -> Conn {
        Conn::connect(addr).await.unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
    }

    /// Writes raw request bytes; panics when the write fails.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap_or_else(|e| panic!("cannot send the request: {e}"));
    }

    /// Reads one more chunk; 0 once the server has closed.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.len() > MAX_RESPONSE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response larger than 1 MiB"));
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no bytes within {READ_TIMEOUT:?}")))??;
        self.buf.extend_from_slice(&chunk[..n]);
        self.closed |= n == 0;
        Ok(n)
    }

    /// Reads the next response, or reports why there is none.
    pub async fn read_response(&mut self) -> io::Result<Response> {
        loop {
            if let Parsed::Done(r, used) = parse(&self.buf, self.closed)? {
                self.buf.drain(..used);
                return Ok(r);
            }
            if self.closed {
                let got = String::from_utf8_lossy(&self.buf);
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("closed mid-response: {got:?}")));
            }
            self.fill().await?;
        }
    }

    /// Reads the next response; panics when there is none.
    pub async fn response(&mut self) -> Response {
        self.read_response().await.unwrap_or_else(|e| panic!("no response: {e}"))
    }

    /// Reads until the server closes and returns what came; panics if it does not close in time.
    pub async fn until_closed(&mut self) -> Vec<u8> {
        while !self.closed {
            if let Err(e) = self.fill().await {
                panic!("the server did not close ({e}); got {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
        std::mem::take(&mut self.buf)
    }
}

/// Sends raw `request` bytes on a new connection and reads one response.
pub async fn exchange(addr: &str, request: &[u8]) -> io::Result<Response> {
    let mut conn = Conn::connect(addr).await?;
    conn.stream.write_all(request).await?;
    conn.read_response().await
}

/// `GET target` on a new connection.
pub async fn get(addr: &str, target: &str) -> io::Result<Response> {
    exchange(addr, format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await
}

/// `POST target` with extra header lines (each ending in CRLF) and `body`, on a new connection.
pub async fn post(addr: &str, target: &str, headers: &str, body: &[u8]) -> io::Result<Response> {
    let mut request =
        format!("POST {target} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n", body.len())
            .into_bytes();
    request.extend_from_slice(body);
    exchange(addr, &request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(raw: &[u8], closed: bool) -> (Response, usize) {
        match parse(raw, closed).unwrap() {
            Parsed::Done(r, n) => (r, n),
            Parsed::Partial => panic!("partial: {raw:?}"),
        }
    }

    #[test]
    fn parses_one_response_and_leaves_the_next() {
        let raw = b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404";
        let (r, used) = done(raw, false);
        assert_eq!((r.status(), r.body(), r.date(), used), (200, "ok", Some("x"), raw.len() - 12));
        assert_eq!(r.bytes(), &raw[..used]);
        assert_eq!(r.text(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false), Ok(Parsed::Partial)));
    }

    #[test]
    fn without_a_length_the_body_runs_to_the_close() {
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\n\r\nab", false), Ok(Parsed::Partial)));
        let (r, _) = done(b"HTTP/1.1 200 OK\r\n\r\nab", true);
        assert_eq!(r.body(), "ab");
        assert!(parse(b"HTTP/1.1 abc\r\n\r\n", true).is_err());
    }

    #[tokio::test]
    async fn talks_to_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"ret\":0}").await.unwrap();
        });
        let r = get(&addr, "/x").await.unwrap();
        assert_eq!(r.json()["ret"], 0);
        server.await.unwrap();
    }
}
