//! Starting and stopping a comet. Start binds every listener first (so port 0 works and the
//! advertised addresses are known), serves CometRpc and the stat port, follows the membership,
//! registers in ZooKeeper when a session is given and waits to see itself, and only then accepts
//! clients. Shutdown follows DESIGN decision 15: deregister, stop accepting, drain.

use crate::config::{ChannelConfig, CometConfig};
use crate::error::Error;
use crate::rpc::CometService;
use crate::state::{Shared, close_spread};
use crate::{metrics as m, tcp, websocket};
use cluster::rpc::{SharedComet, SharedMessages};
use cluster::stat::{Health, HealthFn, serve_stat};
use cluster::{CometMembership, NodeInfo, Registration, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// What a comet needs from the process around it.
pub struct CometDeps {
    /// The comet membership (from `cluster::membership::watch_comets`, or `CometMembership::fixed`).
    pub membership: watch::Receiver<Arc<CometMembership>>,
    /// Where messages and tokens are stored (a `MessagePool`, or an in-process store).
    pub messages: SharedMessages,
    /// The ZooKeeper session to register with; `None` in standalone mode (no registration).
    pub session: Option<Session>,
}

/// A running comet.
pub struct Comet {
    shared: Arc<Shared>,
    api: Arc<CometService>,
    info: NodeInfo,
    tcp: Vec<SocketAddr>,
    ws: Vec<SocketAddr>,
    rpc: Vec<SocketAddr>,
    stat: Option<SocketAddr>,
    registration: Option<Registration>,
    // Stopped in this order on shutdown: the ring follower, the client listeners, the servers.
    follow: CancellationToken,
    accept: CancellationToken,
    servers: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Comet {
    /// Starts a comet; returns once it accepts clients (registered and seen in the membership when
    /// a session is given).
    pub async fn start(config: CometConfig, deps: CometDeps) -> Result<Comet, Error> {
        config.validate()?;
        crate::metrics::describe_and_zero();
        let b = &config.base;
        let mut tcp_listeners = Vec::new();
        for addr in &b.tcp_bind {
            tcp_listeners.push(bind_client(addr, &config.channel).await?);
        }
        let mut ws_listeners = Vec::new();
        for addr in &b.ws_bind {
            ws_listeners.push(bind_client(addr, &config.channel).await?);
        }
        let mut rpc_listeners = Vec::new();
        for addr in &b.rpc_bind {
            rpc_listeners.push(TcpListener::bind(addr).await.map_err(|e| bind_error(addr, e))?);
        }
        let stat_listener = match b.stat_bind.as_str() {
            "" => None,
            addr => Some(TcpListener::bind(addr).await.map_err(|e| bind_error(addr, e))?),
        };
        let local = |ls: &[TcpListener]| ls.iter().filter_map(|l| l.local_addr().ok()).collect::<Vec<_>>();
        let (tcp, ws, rpc) = (local(&tcp_listeners), local(&ws_listeners), local(&rpc_listeners));
        let stat = stat_listener.as_ref().and_then(|l| l.local_addr().ok());
        let info = NodeInfo {
            rpc: advertised(&b.advertise_rpc, &rpc, "rpc")?,
            tcp: advertised(&b.advertise_tcp, &tcp, "tcp")?,
            ws: advertised(&b.advertise_ws, &ws, "ws")?,
            weight: config.node.weight,
        };

        let shared = Arc::new(Shared::new(config, deps.messages));
        let api = Arc::new(CometService::new(shared.clone()));
        let mut comet = Comet {
            shared: shared.clone(),
            api: api.clone(),
            info,
            tcp,
            ws,
            rpc,
            stat,
            registration: None,
            follow: CancellationToken::new(),
            accept: CancellationToken::new(),
            servers: CancellationToken::new(),
            tasks: Vec::new(),
        };
        // From here on, an early return drops `comet`, whose Drop cancels every task started.
        for l in rpc_listeners {
            let api: SharedComet = api.clone();
            comet.tasks.push(tokio::spawn(cluster::rpc::server::serve_comet(l, api, comet.servers.clone())));
        }
        if let Some(l) = stat_listener {
            comet.tasks.push(tokio::spawn(serve_stat(l, health_fn(shared.clone()), comet.servers.clone())));
        }
        shared.apply(&deps.membership.borrow());
        comet.tasks.push(tokio::spawn(follow(shared.clone(), deps.membership.clone(), comet.follow.clone())));
        comet.tasks.push(tokio::spawn(sweep(shared.clone(), comet.follow.clone())));

        if let Some(session) = &deps.session {
            let node = shared.config.node.name.clone();
            let registration = Registration::comet(session, &node, &comet.info);
            let wait = shared.config.base.register_timeout;
            let path = tokio::time::timeout(wait, registration.registered())
                .await
                .map_err(|_| Error::Register(format!("not registered within {wait:?}")))?;
            comet.registration = Some(registration);
            let mut membership = deps.membership.clone();
            tokio::time::timeout(wait, async {
                loop {
                    let seen = membership
                        .borrow_and_update()
                        .nodes
                        .get(&node)
                        .is_some_and(|n| n.active.path == path || n.standbys.iter().any(|s| s.path == path));
                    if seen {
                        return true;
                    }
                    if membership.changed().await.is_err() {
                        return false;
                    }
                }
            })
            .await
            .ok()
            .filter(|seen| *seen)
            .ok_or_else(|| Error::Register(format!("{path} not seen in the comet membership within {wait:?}")))?;
            shared.apply(&membership.borrow());
            info!(%path, "registered and seen in the membership");
        }

        shared.ready.store(true, Ordering::Relaxed);
        for l in tcp_listeners {
            comet.tasks.push(tokio::spawn(tcp::serve(l, shared.clone(), comet.accept.clone())));
        }
        for l in ws_listeners {
            comet.tasks.push(tokio::spawn(websocket::serve(l, shared.clone(), comet.accept.clone())));
        }
        info!(node = %shared.config.node.name, tcp = ?comet.tcp, ws = ?comet.ws, rpc = ?comet.rpc, "comet serving");
        Ok(comet)
    }

    /// The bound TCP client addresses.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// The bound WebSocket client addresses.
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.ws
    }

    /// The first bound CometRpc address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc[0]
    }

    /// The bound stat address, if the stat port is enabled.
    pub fn stat_addr(&self) -> Option<SocketAddr> {
        self.stat
    }

    /// What this comet advertises in ZooKeeper.
    pub fn node_info(&self) -> &NodeInfo {
        &self.info
    }

    /// The znode this comet holds, when registered.
    pub fn registration_path(&self) -> Option<String> {
        self.registration.as_ref().and_then(Registration::path)
    }

    /// The comet's API for in-process callers (standalone mode, tests).
    pub fn api(&self) -> SharedComet {
        self.api.clone()
    }

    /// Open client connections.
    pub fn connections(&self) -> usize {
        self.shared.connections()
    }

    /// Deregisters, stops accepting, closes every connection spread over `drain`, then stops the
    /// RPC and stat servers.
    pub async fn shutdown(mut self) {
        let started = Instant::now();
        self.shared.stopping.store(true, Ordering::Relaxed);
        // Our own leaving must not look like a migration.
        self.follow.cancel();
        if let Some(registration) = self.registration.take() {
            registration.deregister().await;
        }
        self.accept.cancel();
        let conns = self.shared.buckets.remove_where(|_| true);
        let n = conns.len();
        if let Some(task) = close_spread(conns, self.shared.config.base.drain) {
            let _ = task.await;
        }
        // Connection tasks end as soon as they see the close; give them a moment to say so.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.shared.connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.servers.cancel();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        info!(closed = n, took = ?started.elapsed(), "comet stopped");
    }
}

impl Drop for Comet {
    fn drop(&mut self) {
        self.follow.cancel();
        self.accept.cancel();
        self.servers.cancel();
    }
}

fn bind_error(addr: &str, source: std::io::Error) -> Error {
    Error::Bind { addr: addr.to_string(), source }
}

/// A client listener with upstream's socket options; accepted sockets inherit them on Linux.
async fn bind_client(addr: &str, c: &ChannelConfig) -> Result<TcpListener, Error> {
    let e = |err| bind_error(addr, err);
    let sa = tokio::net::lookup_host(addr)
        .await
        .map_err(e)?
        .next()
        .ok_or_else(|| e(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))?;
    let socket = if sa.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(e)?;
    socket.set_reuseaddr(true).map_err(e)?;
    if c.rcvbuf > 0 {
        socket.set_recv_buffer_size(c.rcvbuf).map_err(e)?;
    }
    if c.sndbuf > 0 {
        socket.set_send_buffer_size(c.sndbuf).map_err(e)?;
    }
    if c.tcp_keepalive {
        socket.set_keepalive(true).map_err(e)?;
    }
    socket.bind(sa).map_err(e)?;
    socket.listen(4096).map_err(e)
}

/// The configured advertised addresses, or the bound ones; a wildcard bind must be advertised.
fn advertised(configured: &[String], bound: &[SocketAddr], what: &str) -> Result<Vec<String>, Error> {
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    bound
        .iter()
        .map(|a| {
            if a.ip().is_unspecified() {
                Err(Error::Config(format!(
                    "base.{what}_bind binds {a}: set base.advertise_{what} to reachable addresses"
                )))
            } else {
                Ok(a.to_string())
            }
        })
        .collect()
}

async fn follow(shared: Arc<Shared>, mut membership: watch::Receiver<Arc<CometMembership>>, stop: CancellationToken) {
    loop {
        let current = membership.borrow_and_update().clone();
        shared.apply(&current);
        tokio::select! {
            changed = membership.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Expires cached tokens, drops channels left empty and refreshes the channel gauge.
async fn sweep(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.config.channel.token_cache.clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                shared.buckets.sweep(std::time::Instant::now());
                metrics::gauge!(m::CHANNELS).set(shared.buckets.channels() as f64);
            }
            _ = stop.cancelled() => return,
        }
    }
}

fn health_fn(shared: Arc<Shared>) -> HealthFn {
    Arc::new(move || {
        let shared = shared.clone();
        Box::pin(async move {
            let s = shared.status();
            metrics::gauge!(m::CHANNELS).set(s.channels as f64);
            Health {
                ok: s.serving,
                detail: serde_json::json!({
                    "node": s.node, "connections": s.connections, "channels": s.channels, "serving": s.serving,
                }),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_need_an_advertised_address() {
        let any: SocketAddr = "0.0.0.0:6969".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:6969".parse().unwrap();
        assert!(advertised(&[], &[any], "tcp").is_err());
        assert_eq!(advertised(&[], &[lo], "tcp").unwrap(), vec!["127.0.0.1:6969"]);
        assert_eq!(advertised(&["push.example:6969".into()], &[any], "tcp").unwrap(), vec!["push.example:6969"]);
    }
}
