//! The message node process: binds the RPC and stat ports, serves `MessageRpc` over the configured
//! store, registers in ZooKeeper as `/<message_path>/<seq>` with its advertised addresses, and on
//! shutdown deregisters first (so clients stop choosing it) and only then closes its ports.

use crate::config::MessageConfig;
use crate::error::MessageError;
use crate::store;
use cluster::net::{self, BindError, SocketOptions};
use cluster::node::NodeInfo;
use cluster::registry::Registration;
use cluster::rpc::SharedMessages;
use cluster::rpc::serve_message;
use cluster::stat::{Health, HealthFn, metrics_handle, serve_stat};
use cluster::zk::Session;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How long `/health` waits for the store to answer before reporting it down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// A running message node: its bound ports, what it advertises, and the task that deregisters and
/// stops it once `shutdown` is cancelled.
pub struct MessageNode {
    rpc_addrs: Vec<SocketAddr>,
    stat_addr: SocketAddr,
    info: NodeInfo,
    registered: watch::Receiver<Option<String>>,
    lifecycle: JoinHandle<()>,
}

impl MessageNode {
    /// Starts a node with the store the config names; returns once every port is bound.
    /// Registration proceeds in the background (ZooKeeper may be down); cancel `shutdown` to stop.
    /// This is the one place the config is validated: the binary and the tests both come here.
    pub async fn start(config: MessageConfig, shutdown: CancellationToken) -> Result<MessageNode, MessageError> {
        config.validate()?;
        // Install the recorder before the first store call is counted.
        metrics_handle();
        let store = store::open(&config)?;
        crate::metered::describe_and_zero();
        let options = SocketOptions::default();
        let mut listeners = Vec::with_capacity(config.base.rpc_bind.len());
        for addr in &config.base.rpc_bind {
            listeners.push(net::bind("base.rpc_bind", addr, options).await?);
        }
        let rpc_addrs: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
        let stat = net::bind("base.stat_bind", &config.base.stat_bind, options).await?;
        let stat_addr = stat.local_addr().map_err(|cause| BindError {
            key: "base.stat_bind".into(),
            addr: config.base.stat_bind.clone(),
            cause,
        })?;
        let advertise = if config.base.advertise.is_empty() {
            rpc_addrs.iter().map(SocketAddr::to_string).collect()
        } else {
            config.base.advertise.clone()
        };
        let info = NodeInfo { rpc: advertise, weight: config.base.weight, ..NodeInfo::default() };

        // Serving stops only after deregistration, so it has its own token.
        let serving = CancellationToken::new();
        let mut tasks: Vec<JoinHandle<()>> = listeners
            .into_iter()
            .map(|l| tokio::spawn(serve_message(l, store.clone(), config.rpc.clone(), serving.clone())))
            .collect();
        tasks.push(tokio::spawn(serve_stat(stat, health_of(store), serving.clone())));

        let session = Session::start(config.zookeeper.clone());
        let registration = Registration::message(&session, &info);
        let registered = registration.subscribe();
        info!(rpc = ?rpc_addrs, stat = %stat_addr, advertise = ?info.rpc, weight = info.weight, "message node serving");

        let lifecycle = tokio::spawn(async move {
            shutdown.cancelled().await;
            info!("message node shutting down: deregistering");
            registration.deregister().await;
            drop(session);
            serving.cancel();
            for t in tasks {
                let _ = t.await;
            }
            info!("message node stopped");
        });
        Ok(MessageNode { rpc_addrs, stat_addr, info, registered, lifecycle })
    }

    /// The bound RPC addresses (with the real ports when the config asked for port 0).
    pub fn rpc_addrs(&self) -> &[SocketAddr] {
        &self.rpc_addrs
    }

    /// The bound stat address.
    pub fn stat_addr(&self) -> SocketAddr {
        self.stat_addr
    }

    /// What the node registers in ZooKeeper.
    pub fn node_info(&self) -> &NodeInfo {
        &self.info
    }

    /// Waits until the node is registered and returns its znode path.
    pub async fn registered(&self) -> Option<String> {
        let mut rx = self.registered.clone();
        rx.wait_for(Option::is_some).await.ok().and_then(|p| p.clone())
    }

    /// Waits until the node has shut down (after `shutdown` was cancelled).
    pub async fn wait(self) {
        let _ = self.lifecycle.await;
    }
}

/// Runs a message node until `shutdown` is cancelled and it has deregistered and stopped.
pub async fn run(config: MessageConfig, shutdown: CancellationToken) -> Result<(), MessageError> {
    MessageNode::start(config, shutdown).await?.wait().await;
    Ok(())
}

/// `/health`: the store's ping, every shard up.
fn health_of(store: SharedMessages) -> HealthFn {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            match tokio::time::timeout(HEALTH_TIMEOUT, store.ping()).await {
                Ok(Ok(h)) => {
                    let shards: serde_json::Map<String, serde_json::Value> =
                        h.shards.iter().map(|(name, up)| (name.clone(), serde_json::Value::Bool(*up))).collect();
                    Health { ok: h.healthy(), detail: serde_json::json!({ "backend": h.backend, "shards": shards }) }
                }
                Ok(Err(e)) => Health { ok: false, detail: serde_json::json!({ "error": e.to_string() }) },
                Err(_) => Health { ok: false, detail: serde_json::json!({ "error": "store ping timed out" }) },
            }
        })
    })
}
