//! RPC clients with deadlines and health: an [`Endpoint`] per remote address dials on demand and
//! redials after a broken connection; [`RemoteComet`] calls one comet instance; [`MessagePool`]
//! spreads calls over the live message instances, weighted at random, skips those failing their
//! health pings, and fails over to another instance when the path to one breaks.

use crate::config::de_duration;
use crate::membership::MessageMembership;
use crate::rpc::transport::connect;
use crate::rpc::{CometError, CometRpcClient, MessageRpcClient, StoreError, context};
use rand::Rng;
use serde::Deserialize;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tarpc::client::RpcError;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Deadlines and health checks of RPC clients (upstream's `[rpc]` section, extended).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    /// Interval of health pings to every remote instance.
    #[serde(deserialize_with = "de_duration")]
    pub ping: Duration,
    /// Consecutive failed pings after which an instance counts as dead.
    pub ping_failures: u32,
    /// Deadline of one call, from send to answer.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Deadline of dialling a remote instance, the authentication handshake included.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// The secret every process of the cluster shares; RPC connections prove they know it
    /// without sending it. Empty means none, which only suits loopback or a private network.
    pub secret: Secret,
    /// Most RPC connections a server keeps open at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// An RPC connection with no request for this long is closed by the server.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Most private pushes web sends to one comet in one call; 1 sends each push alone.
    pub push_batch: usize,
    /// Calls web keeps out to one comet at once before further pushes queue into the next batch.
    pub push_batch_in_flight: usize,
    /// Most message saves a comet sends to the store in one call; 1 sends each save alone.
    pub save_batch: usize,
    /// Save calls a comet keeps out at once before further saves queue into the next batch.
    pub save_batch_in_flight: usize,
}

/// A configured secret: never printed, so configs can be logged.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when none is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            ping: Duration::from_secs(1),
            ping_failures: 3,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            secret: Secret::default(),
            max_connections: 1024,
            // Web pings every comet each second and comets keep their store connection busy, so
            // only abandoned connections sit idle this long.
            idle_timeout: Duration::from_secs(120),
            // Measured with the push scenarios of docs/benchmarks.md; see docs/decisions.md#d90-coalesced-pushes-from-web-to-a-comet.
            push_batch: 64,
            push_batch_in_flight: 1,
            // Off: batching saves did not pay in the stored push scenario, see
            // docs/decisions.md#d91-coalesced-saves-from-a-comet-to-the-store.
            save_batch: 1,
            save_batch_in_flight: 4,
        }
    }
}

/// A tarpc client type an [`Endpoint`] can dial.
pub trait Dial: Clone + Send + Sync + 'static {
    /// Connects to `addr`, proves the shared secret and spawns the client's dispatch task.
    fn dial(addr: &str, secret: &str, timeout: Duration) -> impl Future<Output = io::Result<Self>> + Send;
}

fn client_config() -> tarpc::client::Config {
    let mut config = tarpc::client::Config::default();
    // Web fans pushes out to a comet over one connection; let them overlap freely.
    config.max_in_flight_requests = 20_000;
    config.pending_request_buffer = 1_000;
    config
}

impl Dial for CometRpcClient {
    async fn dial(addr: &str, secret: &str, timeout: Duration) -> io::Result<Self> {
        Ok(CometRpcClient::new(client_config(), connect(addr, secret, timeout).await?).spawn())
    }
}

impl Dial for MessageRpcClient {
    async fn dial(addr: &str, secret: &str, timeout: Duration) -> io::Result<Self> {
        Ok(MessageRpcClient::new(client_config(), connect(addr, secret, timeout).await?).spawn())
    }
}

/// One remote address: a client dialled on first use and again after the connection breaks, and the
/// count of consecutive failed calls and pings.
pub struct Endpoint<C> {
    addr: String,
    config: RpcConfig,
    client: Mutex<Option<C>>,
    // Serialises dialling so a burst of calls to a down instance makes one attempt, not thousands.
    dialling: tokio::sync::Mutex<()>,
    failures: AtomicU32,
}

impl<C: Dial> Endpoint<C> {
    /// An endpoint for `addr`; nothing is dialled until the first call.
    pub fn new(addr: impl Into<String>, config: RpcConfig) -> Arc<Self> {
        Arc::new(Endpoint {
            addr: addr.into(),
            config,
            client: Mutex::new(None),
            dialling: tokio::sync::Mutex::new(()),
            failures: AtomicU32::new(0),
        })
    }

    /// The remote address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Consecutive failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// True until `ping_failures` consecutive failures.
    pub fn healthy(&self) -> bool {
        self.consecutive_failures() < self.config.ping_failures.max(1)
    }

    fn cached(&self) -> Option<C> {
        self.client.lock().ok().and_then(|c| c.clone())
    }

    async fn client(&self) -> io::Result<C> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _gate = self.dialling.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let c = C::dial(&self.addr, self.config.secret.expose(), self.config.connect_timeout).await?;
        debug!(addr = %self.addr, "rpc connected");
        if let Ok(mut slot) = self.client.lock() {
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    /// Counts a call's outcome. Operators hear of an instance once when it becomes unhealthy and
    /// once when it answers again, never once per failed call.
    fn record(&self, outcome: Result<(), &dyn std::fmt::Display>) {
        let threshold = self.config.ping_failures.max(1);
        match outcome {
            Ok(()) => {
                if self.failures.swap(0, Ordering::Relaxed) >= threshold {
                    info!(addr = %self.addr, "rpc peer answers again");
                }
            }
            Err(reason) => {
                if self.failures.fetch_add(1, Ordering::Relaxed) + 1 == threshold {
                    warn!(addr = %self.addr, %reason, failures = threshold, "rpc peer unreachable");
                }
            }
        }
    }

    /// Runs one call with the configured deadline: `f` gets the client, the call's context and
    /// `args`. A broken connection is dropped so the next call redials; `E` receives dial failures
    /// and transport errors.
    pub async fn call<A, T, E, F, Fut>(&self, args: A, f: F) -> Result<T, E>
    where
        E: From<RpcError> + Unreachable,
        F: FnOnce(C, tarpc::context::Context, A) -> Fut,
        Fut: Future<Output = Result<Result<T, E>, RpcError>>,
    {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                debug!(addr = %self.addr, error = %e, "rpc dial failed");
                self.record(Err(&e));
                return Err(E::unreachable());
            }
        };
        match f(client, context(self.config.timeout), args).await {
            Ok(answer) => {
                self.record(Ok(()));
                answer
            }
            Err(e) => {
                self.record(Err(&e));
                if !matches!(e, RpcError::DeadlineExceeded) {
                    if let Ok(mut slot) = self.client.lock() {
                        *slot = None;
                    }
                }
                Err(E::from(e))
            }
        }
    }
}

/// Errors that have a "could not reach it" form.
pub trait Unreachable {
    /// The error for a failed dial.
    fn unreachable() -> Self;
}

impl Unreachable for CometError {
    fn unreachable() -> Self {
        CometError::Unreachable
    }
}

impl Unreachable for StoreError {
    fn unreachable() -> Self {
        StoreError::Unreachable
    }
}

/// A remote comet instance, called at the first of its advertised RPC addresses. Pushes are not
/// retried elsewhere: a push that timed out may have been delivered.
pub struct RemoteComet {
    endpoint: Arc<Endpoint<CometRpcClient>>,
}

impl RemoteComet {
    /// A client for the comet at `addr`.
    pub fn new(addr: impl Into<String>, config: RpcConfig) -> RemoteComet {
        RemoteComet { endpoint: Endpoint::new(addr, config) }
    }

    /// Its endpoint, for health bookkeeping.
    pub fn endpoint(&self) -> &Endpoint<CometRpcClient> {
        &self.endpoint
    }

    /// Runs one wire call on the comet; the `CometApi` methods are built on this.
    pub(crate) async fn call<A, T, F, Fut>(&self, args: A, f: F) -> Result<T, CometError>
    where
        F: FnOnce(CometRpcClient, tarpc::context::Context, A) -> Fut,
        Fut: Future<Output = Result<Result<T, CometError>, RpcError>>,
    {
        self.endpoint.call(args, f).await
    }
}

struct Member {
    endpoint: Arc<Endpoint<MessageRpcClient>>,
    weight: u32,
}

/// Every live message instance, called weighted at random with fail-over on transport errors.
pub struct MessagePool {
    config: RpcConfig,
    members: RwLock<Arc<Vec<Member>>>,
}

/// How many instances one call may try before giving up.
const MAX_ATTEMPTS: usize = 3;

impl MessagePool {
    /// An empty pool; see [`MessagePool::follow`] and [`MessagePool::set`].
    pub fn new(config: RpcConfig) -> Arc<MessagePool> {
        Arc::new(MessagePool { config, members: RwLock::new(Arc::new(Vec::new())) })
    }

    /// Replaces the members with these (address, weight) pairs, keeping the connections of
    /// addresses that stay.
    pub fn set(&self, addrs: Vec<(String, u32)>) {
        let old = self.snapshot();
        let members: Vec<Member> = addrs
            .into_iter()
            .map(|(addr, weight)| {
                let endpoint = match old.iter().find(|m| m.endpoint.addr() == addr) {
                    Some(m) => m.endpoint.clone(),
                    None => Endpoint::new(addr, self.config.clone()),
                };
                Member { endpoint, weight }
            })
            .collect();
        if let Ok(mut slot) = self.members.write() {
            *slot = Arc::new(members);
        }
    }

    /// Keeps the pool equal to the membership (every rpc address of every instance, with the
    /// instance's weight) and pings each member every `ping`. Stops when the pool is dropped.
    pub fn follow(self: &Arc<Self>, mut membership: watch::Receiver<Arc<MessageMembership>>) {
        let pool: Weak<MessagePool> = Arc::downgrade(self);
        let every = self.config.ping;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                let Some(this) = pool.upgrade() else { return };
                let current = membership.borrow_and_update().clone();
                let addrs: Vec<(String, u32)> = current
                    .instances
                    .iter()
                    .flat_map(|i| i.info.rpc.iter().map(move |a| (a.clone(), i.info.weight)))
                    .collect();
                if addrs.iter().map(|a| &a.0).ne(this.snapshot().iter().map(|m| m.endpoint.addr())) {
                    info!(?addrs, "message nodes changed");
                    this.set(addrs);
                }
                let pings = this.snapshot();
                drop(this);
                tokio::select! {
                    _ = tick.tick() => {
                        for m in pings.iter() {
                            let _ = m.endpoint.call((), |c, ctx, ()| async move { c.ping(ctx).await }).await;
                        }
                    }
                    changed = membership.changed() => if changed.is_err() { return },
                }
            }
        });
    }

    fn snapshot(&self) -> Arc<Vec<Member>> {
        self.members.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// Up to [`MAX_ATTEMPTS`] members: healthy ones first, each group in weighted random order.
    fn order(&self) -> Vec<Arc<Endpoint<MessageRpcClient>>> {
        let members = self.snapshot();
        let mut rng = rand::rng();
        let mut keyed: Vec<(bool, f64, &Member)> = members
            .iter()
            .filter(|m| m.weight > 0)
            .map(|m| {
                // Efraimidis–Spirakis: u^(1/w) sorted descending is a weighted random order.
                let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                (m.endpoint.healthy(), u.powf(1.0 / f64::from(m.weight)), m)
            })
            .collect();
        keyed.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
        keyed.into_iter().take(MAX_ATTEMPTS).map(|(_, _, m)| m.endpoint.clone()).collect()
    }

    /// Runs one wire call on a message node, trying another on transport errors; the
    /// `MessageApi` methods are built on this.
    pub(crate) async fn call<A, T, F, Fut>(&self, args: A, f: F) -> Result<T, StoreError>
    where
        A: Clone,
        F: Fn(MessageRpcClient, tarpc::context::Context, A) -> Fut,
        Fut: Future<Output = Result<Result<T, StoreError>, RpcError>>,
    {
        let mut last = StoreError::NoNode;
        for endpoint in self.order() {
            match endpoint.call(args.clone(), &f).await {
                Err(e) if e.is_transport() => {
                    debug!(addr = %endpoint.addr(), error = %e, "message node failed; trying another");
                    last = e;
                }
                other => return other,
            }
        }
        Err(last)
    }
}
