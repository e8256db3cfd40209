//! A tiny HTTP/1.1 client over a TcpStream (`Connection: close`, read to EOF, bounded size and
//! time) and the gopush API calls the tests make with it: server/get, push, msg/get.

use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Deadline of one whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response read.
const MAX_RESPONSE: u64 = 1 << 20;

/// A response: status code, raw header block, body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The header lines, as sent.
    pub headers: String,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET path`.
pub async fn get(addr: &str, path: &str) -> std::io::Result<Reply> {
    request(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()).await
}

/// `POST path` with a body.
pub async fn post(addr: &str, path: &str, content_type: &str, body: &str) -> std::io::Result<Reply> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.as_bytes());
    request(addr, raw).await
}

async fn request(addr: &str, raw: Vec<u8>) -> std::io::Result<Reply> {
    let io = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(&raw).await?;
        let mut buf = Vec::new();
        s.take(MAX_RESPONSE).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = timeout(REQUEST_TIMEOUT, io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{addr}: no answer")))??;
    parse(&buf).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {:?}", String::from_utf8_lossy(&buf)),
        )
    })
}

/// Splits a whole response; honours Content-Length when present.
fn parse(buf: &[u8]) -> Option<Reply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = &buf[end + 4..];
    let reply = Reply { status, headers: headers.replace("\r\n", "\n"), body: String::new() };
    if let Some(len) = reply.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = body.get(..len)?;
    }
    Some(Reply { body: String::from_utf8(body.to_vec()).ok()?, ..reply })
}

/// The `ret` of a JSON reply.
pub fn ret(v: &Value) -> u64 {
    v["ret"].as_u64().unwrap_or_else(|| panic!("no ret in {v}"))
}

/// `/1/server/get?k=key&p=proto` (1 WebSocket, 2 TCP): the address when `ret` is 0.
pub async fn server_get(public: &str, key: &str, proto: u8) -> Option<String> {
    let r = get(public, &format!("/1/server/get?k={key}&p={proto}")).await.ok()?;
    let v: Value = serde_json::from_str(&r.body).ok()?;
    (v["ret"] == 0).then(|| v["data"]["server"].as_str().map(str::to_string)).flatten()
}

/// `POST /1/admin/push/private?key=key&expire=expire` with `msg`: the `ret`, or `None` when the
/// request itself failed (connection refused, timeout).
pub async fn push(admin: &str, key: &str, expire: u32, msg: &str) -> Option<u64> {
    let r =
        post(admin, &format!("/1/admin/push/private?key={key}&expire={expire}"), "application/json", msg).await.ok()?;
    serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["ret"].as_u64())
}

/// `/1/msg/get?k=key&m=mid`: the stored messages `(msg, mid)`, oldest first; panics on `ret` != 0.
pub async fn msg_get(public: &str, key: &str, mid: u64) -> Vec<(Value, u64)> {
    try_msg_get(public, key, mid).await.unwrap_or_else(|e| panic!("/1/msg/get k={key}: {e}"))
}

/// `/1/msg/get`, reporting a failure instead of panicking.
pub async fn try_msg_get(public: &str, key: &str, mid: u64) -> Result<Vec<(Value, u64)>, String> {
    let r = get(public, &format!("/1/msg/get?k={key}&m={mid}")).await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {:?}", r.body))?;
    if v["ret"] != 0 {
        return Err(format!("ret {}", v["ret"]));
    }
    let Some(msgs) = v["data"]["msgs"].as_array() else { return Ok(Vec::new()) };
    Ok(msgs
        .iter()
        .map(|m| (m["msg"].clone(), m["mid"].as_u64().unwrap_or_else(|| panic!("no integer mid in {m}"))))
        .collect())
}
