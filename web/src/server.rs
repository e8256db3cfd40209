//! Starting and stopping a web node: bind both listeners, follow the comet membership into routes,
//! serve HTTP/1.1 with keep-alive (a task per connection under a per-listener and a per-source cap;
//! request heads capped in bytes and as a whole in time; idle connections and blocked writes under
//! `http_timeout`), watch comet health, and on shutdown let in-flight requests finish
//! (docs/decisions.md#d34-web-http-serving, docs/decisions.md#d47-hostile-http-clients).

use crate::admin;
use crate::config::WebConfig;
use crate::deadline::WriteDeadline;
use crate::error::WebError;
use crate::limits::{AuthThrottle, PerIp};
use crate::prune;
use crate::public;
use crate::routing::{self, CometFactory, remote_comets};
use crate::state::State;
use cluster::membership::{CometMembership, watch_comets, watch_messages};
use cluster::mid::Mids;
use cluster::net::{Accepted, SocketOptions, accept_loop, bind};
use cluster::pool::MessagePool;
use cluster::rpc::SharedMessages;
use cluster::zk::Session;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// hyper's smallest allowed read buffer.
const MIN_BUF: usize = 8192;

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a web node talks to; [`WebDeps::cluster`] builds the usual ZooKeeper-backed set.
pub struct WebDeps {
    /// The live comet nodes.
    pub membership: watch::Receiver<Arc<CometMembership>>,
    /// The offline message store (a message-node pool, or the in-memory store standalone).
    pub messages: SharedMessages,
    /// Makes the handle of each comet instance.
    pub comets: CometFactory,
    /// The ZooKeeper session; pruning dead comets needs one.
    pub session: Option<Session>,
}

impl WebDeps {
    /// A session to `config.zookeeper`, the comet membership watched there, a message-node pool
    /// following the message membership, and remote comets. Must run inside a tokio runtime.
    pub fn cluster(config: &WebConfig) -> WebDeps {
        let session = Session::start(config.zookeeper.clone());
        let pool = MessagePool::new(config.rpc.clone());
        pool.follow(watch_messages(&session));
        WebDeps {
            membership: watch_comets(&session),
            messages: pool,
            comets: remote_comets(config.rpc.clone()),
            session: Some(session),
        }
    }
}

/// A running web node.
pub struct Web {
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: CancellationToken,
    connections: TaskTracker,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Port {
    Public,
    Admin,
}

impl Web {
    /// Binds both ports and starts serving; returns once the listeners are open.
    pub async fn start(config: WebConfig, deps: WebDeps) -> Result<Web, WebError> {
        config.validate()?;
        if admin_exposed(&config) {
            warn!(
                admin_bind = %config.base.admin_bind,
                "the admin port listens beyond loopback and base.admin_token is empty: anyone who reaches it can push"
            );
        }
        let public = bind("base.http_bind", &config.base.http_bind, SocketOptions::default()).await?;
        let admin = bind("base.admin_bind", &config.base.admin_bind, SocketOptions::default()).await?;
        let public_addr = local_addr(&public, "base.http_bind", &config.base.http_bind)?;
        let admin_addr = local_addr(&admin, "base.admin_bind", &config.base.admin_bind)?;
        let metrics = cluster::stat::metrics_handle();
        crate::metrics::describe_and_zero();
        let routes = routing::follow(deps.membership, config.ring_hash, deps.comets);
        let shutdown = CancellationToken::new();
        let connections = TaskTracker::new();
        let mut tasks = Vec::new();
        let health = prune::run(routes.clone(), deps.session.clone(), config.rpc.clone(), shutdown.clone());
        tasks.push(tokio::spawn(health));
        tasks.push(tokio::spawn(cluster::stat::upkeep(metrics.clone(), shutdown.clone())));
        let throttle = AuthThrottle::default();
        let state = Arc::new(State {
            config,
            routes,
            messages: deps.messages,
            metrics,
            session: deps.session,
            throttle,
            mids: Mids::new(),
        });
        for (listener, port) in [(public, Port::Public), (admin, Port::Admin)] {
            let serving = serve(listener, state.clone(), port, shutdown.clone(), connections.clone());
            tasks.push(tokio::spawn(serving));
        }
        info!(%public_addr, %admin_addr, "web node serving");
        Ok(Web { public_addr, admin_addr, shutdown, connections, tasks })
    }

    /// The bound public address (useful when configured with port 0).
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Stops accepting, lets in-flight requests finish (up to a few seconds) and stops pinging.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.connections.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), self.connections.wait()).await;
        info!("web node stopped");
    }
}

/// True when the admin port is reachable from other hosts without a token.
fn admin_exposed(config: &WebConfig) -> bool {
    config.base.admin_token.is_empty() && !cluster::net::is_loopback(&config.base.admin_bind)
}

fn local_addr(listener: &TcpListener, key: &str, addr: &str) -> Result<SocketAddr, WebError> {
    listener.local_addr().map_err(|cause| cluster::net::BindError { key: key.into(), addr: addr.into(), cause }.into())
}

/// Accepts connections on one port until shutdown.
async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    port: Port,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    let base = &state.config.base;
    let limit = Arc::new(Semaphore::new(base.max_connections));
    let per_ip = PerIp::new(base.max_connections_per_ip);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Armed once per request head, so it bounds the whole head, however slowly it trickles in.
        .header_read_timeout(base.http_timeout)
        .keep_alive(true)
        // Go writes canonical header names (`Content-Type`); some old clients compare them exactly.
        .title_case_headers(true)
        // A head past this gets 431. The read buffer is capped alike, so a half-sent request holds
        // a few KiB, not the 64 KiB-plus it held when only the buffer was capped.
        .max_header_size(base.max_header_bytes)
        .max_buf_size(base.max_header_bytes.max(MIN_BUF));
    let what = match port {
        Port::Public => "public http",
        Port::Admin => "admin http",
    };
    let http_timeout = base.http_timeout;
    let stop = shutdown.clone();
    accept_loop(listener, what, Some(limit), stop, move |accepted: Accepted| {
        let Accepted { stream, peer, permit } = accepted;
        let Some(slot) = per_ip.admit(peer.ip()) else {
            // Closed at once: a source at its cap gets no slot and no buffer.
            debug!(%peer, port = what, "connection over the per-source cap closed");
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "port" => what).increment(1);
            return;
        };
        debug!(%peer, port = what, "http connection");
        let handler_state = state.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let state = handler_state.clone();
            async move {
                let response = match port {
                    Port::Public => public::handle(&state, req).await,
                    Port::Admin => admin::handle(&state, peer.ip(), req).await,
                };
                Ok::<_, Infallible>(response)
            }
        });
        let io = TokioIo::new(WriteDeadline::new(stream, http_timeout));
        let conn = builder.serve_connection(io, service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _places = (permit, slot);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(error = %e, "http connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_admin_port_without_a_token_is_flagged() {
        let mut c = WebConfig::default();
        assert!(!admin_exposed(&c), "loopback by default");
        c.base.admin_bind = "0.0.0.0:8091".into();
        assert!(admin_exposed(&c));
        c.base.admin_bind = ":8091".into();
        assert!(admin_exposed(&c));
        c.base.admin_token = "s".into();
        assert!(!admin_exposed(&c), "a token guards it");
        c.base.admin_token.clear();
        c.base.admin_bind = "[::1]:8091".into();
        assert!(!admin_exposed(&c));
    }
}
