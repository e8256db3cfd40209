//! Standalone mode: web, one comet and the in-memory store in one process, with
//! the same public and admin APIs and client protocols as a cluster. The comet is its own ring's only
//! node and web reaches it in-process through `CometApi`, so a push costs no RPC hop.

use cluster::rpc::SharedMessages;
use cluster::{CometMembership, NodeInfo};
use comet::{Comet, CometConfig, CometDeps};
use message::MemoryStore;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use web::{Web, WebConfig, WebDeps};

/// `standalone.toml`: the web and comet sections of the cluster configs, and the store's cap.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    /// The web node (its `[web.zookeeper]` section is unused).
    pub web: WebConfig,
    /// The comet (its `[comet.zookeeper]` section is unused; `node.name` names the only ring node).
    pub comet: CometConfig,
    /// The in-memory offline store.
    pub store: StoreConfig,
}

/// `[store]`: the in-memory offline store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Newest messages kept per key (upstream's `redis:store`).
    pub store: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { store: 20 }
    }
}

impl StandaloneConfig {
    /// Every listener on 127.0.0.1 port 0: for tests and benchmarks that run several at once.
    pub fn ephemeral() -> StandaloneConfig {
        let mut c = StandaloneConfig::default();
        let any = "127.0.0.1:0".to_string();
        c.web.base.http_bind = any.clone();
        c.web.base.admin_bind = any.clone();
        c.comet.base.tcp_bind = vec![any.clone()];
        c.comet.base.ws_bind = vec![any.clone()];
        c.comet.base.rpc_bind = vec![any.clone()];
        c.comet.base.stat_bind = any;
        c
    }
}

/// A running standalone server.
pub struct Standalone {
    comet: Comet,
    web: Web,
    info: NodeInfo,
    _membership: watch::Sender<Arc<CometMembership>>,
}

impl Standalone {
    /// Starts the store, the comet, then web; returns once clients can connect.
    pub async fn start(mut config: StandaloneConfig) -> anyhow::Result<Standalone> {
        // The store is in this process: a save costs no call, so batching saves would only add a hop.
        config.comet.rpc.save_batch = 1;
        let node = config.comet.node.name.clone();
        // The ring only needs the node's name and weight; its addresses are filled in once bound.
        let placeholder = NodeInfo { weight: config.comet.node.weight, ..NodeInfo::default() };
        let (tx, rx) = watch::channel(Arc::new(CometMembership::fixed([(node.clone(), placeholder)])));
        let store: SharedMessages = Arc::new(MemoryStore::new(config.store.store));

        let deps = CometDeps { membership: rx.clone(), messages: store.clone(), session: None };
        let comet = Comet::start(config.comet, deps).await?;
        let info = comet.node_info().clone();
        tx.send_replace(Arc::new(CometMembership::fixed([(node, info.clone())])));

        let api = comet.api();
        let deps = WebDeps {
            membership: rx,
            messages: store,
            comets: Arc::new(move |_| web::CometHandle::local(api.clone())),
            session: None,
        };
        let web = match Web::start(config.web, deps).await {
            Ok(web) => web,
            Err(e) => {
                comet.shutdown().await;
                return Err(e.into());
            }
        };
        Ok(Standalone { comet, web, info, _membership: tx })
    }

    /// The public HTTP API address.
    pub fn public_addr(&self) -> SocketAddr {
        self.web.public_addr()
    }

    /// The admin HTTP API address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.web.admin_addr()
    }

    /// The first TCP client address; `None` when `tcp_bind = []` disabled TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.comet.tcp_addrs().first().copied()
    }

    /// The first WebSocket client address; `None` when `ws_bind = []` disabled WebSocket.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.comet.ws_addrs().first().copied()
    }

    /// What the comet advertises (as `/1/server/get` reports it).
    pub fn node_info(&self) -> &NodeInfo {
        &self.info
    }

    /// The comet's stat port (`/metrics`, `/health`), if configured.
    pub fn stat_addr(&self) -> Option<SocketAddr> {
        self.comet.stat_addr()
    }

    /// Stops web first (no new pushes), then drains the comet's connections.
    pub async fn shutdown(self) {
        self.web.shutdown().await;
        self.comet.shutdown().await;
    }
}
