//! What all tasks of one comet share: the channels, the ring ownership, the mid generator, the
//! message store client and the connection count. Admission of a subscription (ownership, auth,
//! channel limit) lives here so TCP and WebSocket apply the same rules in the same order.

use crate::bucket::Buckets;
use crate::config::CometConfig;
use crate::conn::{Conn, Proto};
use crate::error::{Error, HEARTBEAT_REPLY};
use crate::handshake::{Limits, Subscribe};
use crate::metrics as m;
use crate::mid::Mids;
use crate::ownership::Ownership;
use cluster::CometMembership;
use cluster::rpc::{CometStatus, SharedMessages};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tracing::info;

/// The state shared by the listeners, the RPC service and the ownership follower.
pub struct Shared {
    /// The configuration the comet started with.
    pub config: CometConfig,
    /// The key → channel map.
    pub buckets: Buckets,
    /// The ring and this comet's node on it.
    pub ownership: Ownership,
    /// The mid generator.
    pub mids: Mids,
    /// Where messages and tokens are stored.
    pub messages: SharedMessages,
    /// Open client connections, handshakes included.
    connections: AtomicUsize,
    /// Registered and seen in the membership: listeners accept.
    pub ready: AtomicBool,
    /// Shutting down: no new subscriptions.
    pub stopping: AtomicBool,
}

impl Shared {
    /// Fresh state: no ring, no channels.
    pub fn new(config: CometConfig, messages: SharedMessages) -> Shared {
        Shared {
            buckets: Buckets::new(config.channel.bucket),
            ownership: Ownership::new(config.node.name.clone(), config.ring_hash),
            mids: Mids::new(),
            messages,
            connections: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            config,
        }
    }

    /// The checks a subscribe command must pass.
    pub fn limits(&self) -> Limits {
        Limits { max_key: self.config.channel.max_key, min_heartbeat: self.config.channel.min_heartbeat }
    }

    /// The read deadline of a subscribed client.
    pub fn idle_timeout(&self, heartbeat: u32) -> Duration {
        Duration::from_secs(u64::from(heartbeat)) + self.config.channel.heartbeat_slack
    }

    /// Counts a new client connection, or `None` when `max_connections` are open.
    pub fn slot(self: &Arc<Self>) -> Option<Slot> {
        let before = self.connections.fetch_add(1, Ordering::Relaxed);
        if before >= self.config.channel.max_connections {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        metrics::gauge!(m::CONNECTIONS).increment(1.0);
        Some(Slot(self.clone()))
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Whether subscriptions are served: ready, not stopping, and on the ring.
    pub fn serving(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed) && self.ownership.on_ring()
    }

    /// Health and load, for `CometRpc.ping` and `/health`.
    pub fn status(&self) -> CometStatus {
        CometStatus {
            node: self.ownership.node().to_string(),
            connections: self.connections() as u64,
            channels: self.buckets.channels() as u64,
            serving: self.serving(),
        }
    }

    /// Admits a checked subscription: the key must be owned here, the token valid in auth mode,
    /// and the channel not full. The connection starts with `+h\r\n` queued.
    pub async fn admit(self: &Arc<Self>, sub: &Subscribe, proto: Proto) -> Result<Subscription, Error> {
        let refuse = |e: Error| {
            metrics::counter!(m::REFUSALS, "reason" => reason(&e)).increment(1);
            e
        };
        if self.stopping.load(Ordering::Relaxed) || !self.ownership.owns(&sub.key) {
            return Err(refuse(Error::NotOwner));
        }
        if self.config.channel.auth {
            self.check_token(&sub.key, &sub.token).await.map_err(refuse)?;
        }
        let c = &self.config.channel;
        let conn = Arc::new(Conn::new(proto, sub.new_format, c.msgbuf, Utf8Bytes::from_static(HEARTBEAT_REPLY)));
        if !self.buckets.join(&sub.key, &conn, c.max_subscriber) {
            return Err(refuse(Error::ChannelFull));
        }
        let proto_label = if proto == Proto::Tcp { "tcp" } else { "websocket" };
        metrics::counter!(m::SUBSCRIPTIONS, "proto" => proto_label).increment(1);
        Ok(Subscription { shared: self.clone(), key: sub.key.clone(), conn })
    }

    async fn check_token(&self, key: &str, token: &str) -> Result<(), Error> {
        if token.is_empty() {
            return Err(Error::Auth);
        }
        if self.buckets.token_cached(key, token, Instant::now()) {
            return Ok(());
        }
        // No lock is held here: the store call may take a while.
        match self.messages.check_token(key.to_string(), token.to_string()).await {
            Ok(true) => {
                self.buckets.cache_token(key, token, Instant::now() + self.config.channel.token_cache);
                Ok(())
            }
            Ok(false) => Err(Error::Auth),
            Err(_) => Err(Error::NoChannel),
        }
    }

    /// Installs the ring of a new membership; when it changed, the channels of keys now owned
    /// elsewhere are removed at once and their connections closed over `migrate_grace`.
    pub fn apply(&self, membership: &CometMembership) {
        if !self.ownership.set(membership.ring(self.ownership.hash())) {
            return;
        }
        let moved = self.buckets.remove_where(|key| !self.ownership.owns(key));
        info!(
            nodes = ?membership.nodes.keys().collect::<Vec<_>>(),
            on_ring = self.ownership.on_ring(),
            moved = moved.len(),
            "ring changed"
        );
        metrics::counter!(m::MIGRATED).increment(moved.len() as u64);
        close_spread(moved, self.config.base.migrate_grace);
    }
}

fn reason(e: &Error) -> &'static str {
    match e {
        Error::NotOwner => "not_owner",
        Error::Auth => "auth",
        Error::NoChannel => "token_store",
        Error::ChannelFull => "channel_full",
        _ => "other",
    }
}

/// Closes `conns` in small batches spread over `over`, so their clients do not all come back at
/// once; returns the task doing it, if any.
pub fn close_spread(conns: Vec<Arc<Conn>>, over: Duration) -> Option<JoinHandle<()>> {
    if conns.is_empty() {
        return None;
    }
    if over.is_zero() {
        conns.iter().for_each(|c| c.close());
        return None;
    }
    Some(tokio::spawn(async move {
        let steps = conns.len().min(100);
        let per = conns.len().div_ceil(steps);
        let pause = over / steps as u32;
        for chunk in conns.chunks(per) {
            chunk.iter().for_each(|c| c.close());
            tokio::time::sleep(pause).await;
        }
    }))
}

/// One counted client connection; dropping it uncounts it.
pub struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    }
}

/// A connection joined to its key's channel; dropping it closes the connection and leaves.
pub struct Subscription {
    shared: Arc<Shared>,
    key: String,
    /// The connection's shared half.
    pub conn: Arc<Conn>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.conn.close();
        self.shared.buckets.leave(&self.key, &self.conn);
    }
}

/// Accepts clients on `listener` until `stop` is cancelled and runs `connection` for each one that
/// gets a connection slot; shared by the TCP and WebSocket listeners.
pub async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
    proto: Proto,
    connection: F,
) where
    F: Fn(tokio::net::TcpStream, Arc<Shared>, Slot) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors: back off rather than spin.
                    tracing::warn!(error = %e, ?proto, "cannot accept a client");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Some(slot) = shared.slot() else {
            tracing::debug!(?proto, "max_connections reached; closing a new client");
            continue;
        };
        // Go sets TCP_NODELAY by default; clients expect each push promptly.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, shared.clone(), slot));
    }
}
