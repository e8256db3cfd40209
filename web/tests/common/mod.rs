//! Shared by the web crate's integration tests: the shared RPC doubles (`cluster::testing`), a raw
//! HTTP/1.1 client that returns the exact bytes
//! of a response, and a web node started on loopback ports chosen by the OS.

#![allow(dead_code)]

use cluster::membership::CometMembership;
use cluster::node::{Instance, NodeInfo};
use cluster::rpc::SharedComet;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use web::{CometFactory, Web, WebConfig, WebDeps};

pub use cluster::testing::{CometCall, FakeComet, FakeStore};

/// A comet node's advertised info with distinct, recognisable addresses.
pub fn comet_info(name: &str, weight: u32, ws: bool) -> NodeInfo {
    NodeInfo {
        rpc: vec![format!("{name}-rpc:6970")],
        tcp: vec![format!("{name}:6969"), format!("{name}:7069")],
        ws: if ws { vec![format!("{name}:6968")] } else { vec![] },
        weight,
    }
}

/// The golden ring (docs/architecture.md#ring-golden-vectors): node1/node2/node3 with weights 1/2/1; node3 advertises no WebSocket.
pub fn golden_membership() -> CometMembership {
    CometMembership::fixed([
        ("node1".to_string(), comet_info("node1", 1, true)),
        ("node2".to_string(), comet_info("node2", 2, true)),
        ("node3".to_string(), comet_info("node3", 1, false)),
    ])
}

/// A web node in front of comet doubles (one per node of `membership`) and `store`.
pub struct TestWeb {
    pub web: Web,
    pub comets: HashMap<String, Arc<FakeComet>>,
    pub store: Arc<FakeStore>,
    pub membership: watch::Sender<Arc<CometMembership>>,
}

impl TestWeb {
    pub fn public(&self) -> String {
        self.web.public_addr().to_string()
    }
    pub fn admin(&self) -> String {
        self.web.admin_addr().to_string()
    }
    pub fn comet(&self, node: &str) -> &FakeComet {
        &self.comets[node]
    }
}

/// A config on loopback ports chosen by the OS.
pub fn loopback_config() -> WebConfig {
    let mut config = WebConfig::default();
    config.base.http_bind = "127.0.0.1:0".into();
    config.base.admin_bind = "127.0.0.1:0".into();
    config
}

pub async fn start_web(config: WebConfig, membership: CometMembership, store: Arc<FakeStore>) -> TestWeb {
    let comets: HashMap<String, Arc<FakeComet>> =
        membership.nodes.keys().map(|n| (n.clone(), FakeComet::new(n))).collect();
    let by_path = comets.clone();
    let factory: CometFactory = Arc::new(move |i: &Instance| -> SharedComet {
        let name = i.path.strip_prefix("fixed:").unwrap_or(&i.path);
        match by_path.get(name) {
            Some(c) => c.clone(),
            None => FakeComet::new(name),
        }
    });
    let (tx, rx) = watch::channel(Arc::new(membership));
    let deps = WebDeps { membership: rx, messages: store.clone(), comets: factory, session: None };
    let web = Web::start(config, deps).await.expect("web starts");
    TestWeb { web, comets, store, membership: tx }
}

/// A response as raw bytes, split into head and body.
#[derive(Debug)]
pub struct Raw {
    /// Status line and headers (without the blank line), `Date:` removed since it changes.
    pub head: String,
    pub date: Option<String>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn body(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }
    pub fn status(&self) -> u16 {
        self.head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }
    /// The whole response with `Date` removed: what golden tests compare.
    pub fn text(&self) -> String {
        format!("{}\r\n\r\n{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

/// A client connection that keeps bytes read past one response for the next (pipelining).
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: &str) -> Conn {
        Conn { stream: TcpStream::connect(addr).await.expect("connect"), buf: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("bytes within 10 s")
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response: the head, then exactly Content-Length bytes of body.
    pub async fn response(&mut self) -> Raw {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = self.fill().await;
            assert!(n > 0, "connection closed before a full head: {:?}", String::from_utf8_lossy(&self.buf));
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("ascii head");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"))
            .parse()
            .expect("numeric Content-Length");
        while self.buf.len() < head_end + 4 + len {
            assert!(self.fill().await > 0, "connection closed mid-body");
        }
        let body = self.buf[head_end + 4..head_end + 4 + len].to_vec();
        self.buf.drain(..head_end + 4 + len);
        let mut date = None;
        let head = head
            .split("\r\n")
            .filter(|l| match l.strip_prefix("Date: ") {
                Some(d) => {
                    date = Some(d.to_string());
                    false
                }
                None => true,
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        Raw { head, date, body }
    }

    /// Reads until the server closes; returns what came (nothing expected on an idle close).
    pub async fn until_closed(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.buf)
    }
}

/// Sends `request` bytes on a new connection and reads one response.
pub async fn exchange(addr: &str, request: &[u8]) -> Raw {
    let mut conn = Conn::open(addr).await;
    conn.send(request).await;
    conn.response().await
}

/// `GET target` on a new connection.
pub async fn get(addr: &str, target: &str) -> Raw {
    exchange(addr, format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).await
}

/// `POST target` with `body` on a new connection.
pub async fn post(addr: &str, target: &str, body: &[u8]) -> Raw {
    post_with(addr, target, "", body).await
}

/// `POST target` with extra header lines (each ending in CRLF) and `body`.
pub async fn post_with(addr: &str, target: &str, headers: &str, body: &[u8]) -> Raw {
    let mut req =
        format!("POST {target} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(body);
    exchange(addr, &req).await
}

/// The exact bytes of a JSON 200 response (without `Date`), as Go wrote them.
pub fn json_200(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The exact bytes of a JSONP 200 response (without `Date`).
pub fn jsonp_200(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/javascript;charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}
