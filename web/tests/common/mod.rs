//! Shared by the web crate's integration tests: the shared RPC doubles (`cluster::testing`),
//! testkit's HTTP/1.1 client (exact response bytes) with panicking shorthands, and a web node
//! started on loopback ports chosen by the OS.

#![allow(dead_code)]

use cluster::membership::CometMembership;
use cluster::node::{Instance, NodeInfo};
use cluster::rpc::SharedComet;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use web::{CometFactory, CometHandle, Web, WebConfig, WebDeps};

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

/// The golden ring (docs/architecture.md#ring-golden-vectors): node1/node2/node3 with weights
/// 1/2/1; node3 advertises no WebSocket.
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
    let factory: CometFactory = Arc::new(move |i: &Instance| -> CometHandle {
        let name = i.path.strip_prefix("fixed:").unwrap_or(&i.path);
        let comet: SharedComet = match by_path.get(name) {
            Some(c) => c.clone(),
            None => FakeComet::new(name),
        };
        CometHandle::local(comet)
    });
    let (tx, rx) = watch::channel(Arc::new(membership));
    let deps = WebDeps { membership: rx, messages: store.clone(), comets: factory, session: None };
    let web = Web::start(config, deps).await.expect("web starts");
    TestWeb { web, comets, store, membership: tx }
}

/// A response: its exact bytes plus status, headers and body (testkit's one HTTP test client).
#[allow(unused_imports)] // each test file uses its own part
pub use testkit::http::{Conn, Response as Raw};

/// Sends `request` bytes on a new connection and reads one response.
pub async fn exchange(addr: &str, request: &[u8]) -> Raw {
    testkit::http::exchange(addr, request).await.unwrap_or_else(|e| panic!("no response from {addr}: {e}"))
}

/// `GET target` on a new connection.
pub async fn get(addr: &str, target: &str) -> Raw {
    testkit::http::get(addr, target).await.unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

/// `POST target` with `body` on a new connection.
pub async fn post(addr: &str, target: &str, body: &[u8]) -> Raw {
    post_with(addr, target, "", body).await
}

/// `POST target` with extra header lines (each ending in CRLF) and `body`.
pub async fn post_with(addr: &str, target: &str, headers: &str, body: &[u8]) -> Raw {
    testkit::http::post(addr, target, headers, body).await.unwrap_or_else(|e| panic!("POST {target}: {e}"))
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
