//! Starting and stopping a web node: bind both listeners, follow the comet membership into routes,
//! serve HTTP/1.1 with keep-alive (one task per connection, capped by a semaphore; head reads,
//! idle connections and blocked response writes under `http_timeout`), prune dead comets when a ZooKeeper session is given,
//! and on shutdown stop accepting and let in-flight requests finish.

use crate::admin;
use crate::config::WebConfig;
use crate::deadline::WriteDeadline;
use crate::error::WebError;
use crate::prune;
use crate::public;
use crate::routing::{self, CometFactory, Routes, remote_comets};
use cluster::membership::{CometMembership, watch_comets, watch_messages};
use cluster::pool::MessagePool;
use cluster::rpc::SharedMessages;
use cluster::zk::Session;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
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

/// What every request handler reads.
pub(crate) struct State {
    pub(crate) config: WebConfig,
    pub(crate) routes: watch::Receiver<Arc<Routes>>,
    pub(crate) messages: SharedMessages,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) session: Option<Session>,
}

impl State {
    /// The current routing snapshot (the watch lock is held only for the clone).
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes.borrow().clone()
    }
}

/// Counts one answered API request by route and `ret`.
pub(crate) fn count(route: &'static str, ret: u32) {
    let ret = match ret {
        0 => "0",
        1001 => "1001",
        65534 => "65534",
        _ => "65535",
    };
    metrics::counter!("gopush_web_requests_total", "route" => route, "ret" => ret).increment(1);
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
        let public = bind(&config.base.http_bind).await?;
        let admin = bind(&config.base.admin_bind).await?;
        let public_addr = local_addr(&public, &config.base.http_bind)?;
        let admin_addr = local_addr(&admin, &config.base.admin_bind)?;
        let metrics = cluster::stat::metrics_handle();
        crate::metrics::describe_and_zero();
        let routes = routing::follow(deps.membership, config.ring_hash, deps.comets);
        let shutdown = CancellationToken::new();
        let connections = TaskTracker::new();
        let mut tasks = Vec::new();
        if let Some(session) = &deps.session {
            tasks.push(tokio::spawn(prune::run(routes.clone(), session.clone(), config.rpc.clone(), shutdown.clone())));
        }
        tasks.push(tokio::spawn(cluster::stat::upkeep(metrics.clone(), shutdown.clone())));
        let state = Arc::new(State { config, routes, messages: deps.messages, metrics, session: deps.session });
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

    /// Stops accepting, lets in-flight requests finish (up to a few seconds) and stops pruning.
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

/// Accept backlog: clients reconnecting all at once after a comet failure all ask web first, and
/// tokio's default of 1024 overflowed in the 30k-connection benchmark (SYN retransmits of ~1 s).
const BACKLOG: u32 = 4096;

async fn bind(addr: &str) -> Result<TcpListener, WebError> {
    let err = |source| WebError::Bind { addr: addr.to_string(), source };
    let resolved =
        tokio::net::lookup_host(addr).await.map_err(err)?.next().ok_or_else(|| {
            err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the address resolves to nothing"))
        })?;
    let socket = if resolved.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(resolved).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)
}

fn local_addr(listener: &TcpListener, addr: &str) -> Result<SocketAddr, WebError> {
    listener.local_addr().map_err(|source| WebError::Bind { addr: addr.to_string(), source })
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
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(base.http_timeout)
        .keep_alive(true)
        // Go writes canonical header names (`Content-Type`); some old clients compare them exactly.
        .title_case_headers(true)
        .max_buf_size(64 * 1024);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "http connection");
                    stream
                }
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    warn!(error = %e, "cannot accept an http connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let handler_state = state.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let state = handler_state.clone();
            async move {
                let response = match port {
                    Port::Public => public::handle(&state, req).await,
                    Port::Admin => admin::handle(&state, req).await,
                };
                Ok::<_, Infallible>(response)
            }
        });
        let io = TokioIo::new(WriteDeadline::new(stream, base.http_timeout));
        let conn = builder.serve_connection(io, service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
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
    }
}
