//! Starting and stopping a comet. Start binds every listener first (so port 0 works and the
//! advertised addresses are known), serves CometRpc and the stat port, follows the membership,
//! registers in ZooKeeper when a session is given and waits to see itself, and only then accepts
//! clients. It also runs the ring follower, which closes the connections of keys that moved away.
//! Shutdown follows docs/decisions.md#d15-graceful-shutdown: deregister, stop accepting, drain.

use crate::config::CometConfig;
use crate::conn::{CloseReason, Conn};
use crate::error::Error;
use crate::listener;
use crate::metrics as m;
use crate::service::CometService;
use crate::state::Shared;
use crate::webhook::Sender;
use cluster::Proto;
use cluster::net::SocketOptions;
use cluster::rpc::{SharedComet, SharedMessages};
use cluster::stat::{Health, HealthFn, serve_stat};
use cluster::{CometMembership, NodeInfo, Registration, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
    first_rpc: SocketAddr,
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
        let tcp_listeners = listener::bind("base.tcp_bind", &b.tcp_bind, &config.channel).await?;
        let ws_listeners = listener::bind("base.ws_bind", &b.ws_bind, &config.channel).await?;
        let mut rpc_listeners = Vec::new();
        for addr in &b.rpc_bind {
            rpc_listeners.push(cluster::net::bind("base.rpc_bind", addr, SocketOptions::default()).await?);
        }
        let stat_listener = match b.stat_bind.as_str() {
            "" => None,
            addr => Some(cluster::net::bind("base.stat_bind", addr, SocketOptions::default()).await?),
        };
        let local = |ls: &[TcpListener]| ls.iter().filter_map(|l| l.local_addr().ok()).collect::<Vec<_>>();
        let (tcp, ws, rpc) = (local(&tcp_listeners), local(&ws_listeners), local(&rpc_listeners));
        let first_rpc = *rpc.first().ok_or_else(|| Error::Config("base.rpc_bind needs at least one address".into()))?;
        let stat = stat_listener.as_ref().and_then(|l| l.local_addr().ok());
        // `validate` refused wildcard binds without an advertised address, so the bound ones are
        // dialable.
        let advertised = |configured: &[String], bound: &[SocketAddr]| -> Vec<String> {
            if configured.is_empty() { bound.iter().map(SocketAddr::to_string).collect() } else { configured.to_vec() }
        };
        let info = NodeInfo {
            rpc: advertised(&b.advertise_rpc, &rpc),
            tcp: advertised(&b.advertise_tcp, &tcp),
            ws: advertised(&b.advertise_ws, &ws),
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
            first_rpc,
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
            comet.tasks.push(tokio::spawn(cluster::rpc::serve_comet(
                l,
                api,
                shared.config.rpc.clone(),
                comet.servers.clone(),
            )));
        }
        if let Some(l) = stat_listener {
            comet.tasks.push(tokio::spawn(serve_stat(l, health_fn(shared.clone()), comet.servers.clone())));
        }
        apply(&shared, &deps.membership.borrow());
        comet.tasks.push(tokio::spawn(follow(shared.clone(), deps.membership.clone(), comet.follow.clone())));
        comet.tasks.push(tokio::spawn(sweep(shared.clone(), comet.follow.clone())));
        if let Some(sender) =
            shared.webhook.clone().and_then(|q| Sender::new(&shared.config.webhook, &shared.config.node.name, q))
        {
            comet.tasks.push(tokio::spawn(sender.run(comet.servers.clone())));
        }

        if let Some(session) = &deps.session {
            let node = shared.config.node.name.clone();
            let registration = Registration::comet(session, &node, &comet.info);
            let wait = shared.config.base.register_timeout;
            let path = tokio::time::timeout(wait, registration.registered())
                .await
                .map_err(|_| Error::NotRegistered(format!("not registered within {wait:?}")))?;
            let registration_watch = registration.subscribe();
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
            .ok_or_else(|| Error::NotRegistered(format!("{path} not seen in the comet membership within {wait:?}")))?;
            apply(&shared, &membership.borrow());
            info!(%path, "registered and seen in the membership");
            comet.tasks.push(tokio::spawn(guard_ownership(
                shared.clone(),
                session.clone(),
                registration_watch,
                comet.follow.clone(),
            )));
        }

        shared.ready.store(true, Ordering::Relaxed);
        let client_listeners = tcp_listeners.into_iter().map(|l| (l, Proto::Tcp));
        for (l, proto) in client_listeners.chain(ws_listeners.into_iter().map(|l| (l, Proto::WebSocket))) {
            comet.tasks.push(tokio::spawn(listener::serve(l, proto, shared.clone(), comet.accept.clone())));
        }
        info!(node = %shared.config.node.name, tcp = ?comet.tcp, ws = ?comet.ws, rpc = ?comet.rpc, "comet serving");
        Ok(comet)
    }

    /// The bound TCP client addresses; empty when `base.tcp_bind` is (TCP is off).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// The bound WebSocket client addresses; empty when `base.ws_bind` is (WebSocket is off).
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.ws
    }

    /// The first bound CometRpc address (`base.rpc_bind` is never empty).
    pub fn rpc_addr(&self) -> SocketAddr {
        self.first_rpc
    }

    /// Every bound CometRpc address.
    pub fn rpc_addrs(&self) -> &[SocketAddr] {
        &self.rpc
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
        if let Some(task) = close_spread(conns, self.shared.config.base.drain, CloseReason::Shutdown) {
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

/// Lets every client go when this comet can no longer be sure it owns their keys
/// (docs/decisions.md#d22-no-split-brain): ZooKeeper unseen for longer than the session timeout
/// (the session has expired there and web may have moved the keys), or this comet's znode gone
/// (web pruned it). No subscriptions are taken then; they are again once ZooKeeper answers and
/// the registration is back. Pushes are still taken, so a ZooKeeper outage loses no stored push.
async fn guard_ownership(
    shared: Arc<Shared>,
    session: Session,
    mut registered: watch::Receiver<Option<String>>,
    stop: CancellationToken,
) {
    let timeout = session.config().timeout;
    let mut unseen_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(GUARD_TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = registered.changed() => {}
            _ = stop.cancelled() => return,
        }
        let znode = registered.borrow().clone();
        let connected = session.connected();
        unseen_since = if connected { None } else { unseen_since.or(Some(Instant::now())) };
        let reason = match (&znode, unseen_since) {
            (None, _) if connected => Some("our znode is gone"),
            (_, Some(since)) if since.elapsed() >= timeout => Some("zookeeper unseen past the session timeout"),
            _ => None,
        };
        let cut = shared.cut_off.load(Ordering::Relaxed);
        match reason {
            Some(reason) if !cut => {
                shared.cut_off.store(true, Ordering::Relaxed);
                let conns = shared.buckets.remove_where(|_| true);
                warn!(reason, clients = conns.len(), "another comet may own our keys now: letting every client go");
                metrics::counter!(m::MIGRATED).increment(conns.len() as u64);
                close_spread(conns, shared.config.base.migrate_grace, CloseReason::Moved);
            }
            None if cut && znode.is_some() && connected => {
                shared.cut_off.store(false, Ordering::Relaxed);
                info!(path = ?znode, "registered again: taking subscriptions");
            }
            _ => {}
        }
    }
}

/// How often the ownership guard looks at the session.
const GUARD_TICK: Duration = Duration::from_millis(250);

async fn follow(shared: Arc<Shared>, mut membership: watch::Receiver<Arc<CometMembership>>, stop: CancellationToken) {
    loop {
        let current = membership.borrow_and_update().clone();
        apply(&shared, &current);
        tokio::select! {
            changed = membership.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Installs the ring of a new membership; when it changed, the channels of keys now owned
/// elsewhere are removed at once and their connections closed over `migrate_grace`.
fn apply(shared: &Shared, membership: &CometMembership) {
    if !shared.ownership.set(membership.ring(shared.ownership.hash())) {
        return;
    }
    let moved = shared.buckets.remove_where(|key| !shared.ownership.owns(key));
    info!(
        nodes = ?membership.nodes.keys().collect::<Vec<_>>(),
        on_ring = shared.ownership.on_ring(),
        moved = moved.len(),
        "ring changed"
    );
    metrics::counter!(m::MIGRATED).increment(moved.len() as u64);
    close_spread(moved, shared.config.base.migrate_grace, CloseReason::Moved);
}

/// Closes `conns` in small batches spread over `over`, so their clients do not all come back at
/// once; returns the task doing it, if any.
fn close_spread(conns: Vec<Arc<Conn>>, over: Duration, why: CloseReason) -> Option<JoinHandle<()>> {
    if conns.is_empty() {
        return None;
    }
    // Noted now: a client whose turn comes later still learns why once it is closed.
    conns.iter().for_each(|c| c.note(why));
    if over.is_zero() {
        conns.iter().for_each(|c| c.close());
        return None;
    }
    Some(tokio::spawn(async move {
        let steps = conns.len().min(100);
        let per = conns.len().div_ceil(steps);
        let pause = over / steps as u32;
        let mut chunks = conns.chunks(per).peekable();
        while let Some(chunk) = chunks.next() {
            chunk.iter().for_each(|c| c.close());
            // Nothing is left to spread after the last batch; waiting then only delays shutdown.
            if chunks.peek().is_some() {
                tokio::time::sleep(pause).await;
            }
        }
    }))
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
