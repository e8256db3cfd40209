//! What every request handler reads: the configuration, the current routing snapshot, the message
//! store and the metrics handle. Built once by the server and shared by both ports' connections;
//! it imports nothing from the handlers or the server, so the crate's modules flow one way.

use crate::config::WebConfig;
use crate::limits::AuthThrottle;
use crate::routing::Routes;
use cluster::mid::Mids;
use cluster::rpc::SharedMessages;
use cluster::zk::Session;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::sync::watch;

/// The shared state of one web node.
pub(crate) struct State {
    pub(crate) config: WebConfig,
    pub(crate) routes: watch::Receiver<Arc<Routes>>,
    pub(crate) messages: SharedMessages,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) session: Option<Session>,
    /// Failed admin tokens per source address.
    pub(crate) throttle: AuthThrottle,
    /// The mids of room and broadcast pushes sent from this node.
    pub(crate) mids: Mids,
}

impl State {
    /// The current routing snapshot (the watch lock is held only for the clone).
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes.borrow().clone()
    }
}
