//! The one macro that turns a service's list of methods into everything that speaks it: the tarpc
//! wire service, the object-safe API trait that servers implement and callers use (in-process or
//! remote alike), the wire adapter and its accept loop, the remote clients, a decorator that
//! reports every call to an [`Observer`], and an [`Unavailable`] stand-in. Adding a method to a
//! service is one entry in its list in `rpc.rs`; see `docs/decisions.md` for why.

use super::transport;
use crate::pool::RpcConfig;
use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Sees every call of a service wrapped in [`Observed`]: the operation's name, how long it took,
/// and its outcome (the answer as `Any`, for the few operations whose answer is worth counting,
/// or the error). The message node's metrics are one.
pub trait Observer<E>: Send + Sync + 'static {
    /// Called once per finished call.
    fn observe(&self, op: &'static str, took: Duration, outcome: Result<&dyn Any, &E>);
}

/// A service whose every call is reported to `observer` before its answer is returned.
pub struct Observed<S, O> {
    /// The service that does the work.
    pub inner: S,
    /// Who is told about each call.
    pub observer: O,
}

/// A handle whose every call fails as unreachable: what a comet that advertises no RPC address,
/// or a role with no message node configured, is called through.
pub struct Unavailable;

/// When a connection last carried a request, for the idle timeout.
#[derive(Default)]
pub struct Activity(std::sync::Mutex<Option<Instant>>);

impl Activity {
    /// Notes a request now.
    pub fn touch(&self) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(Instant::now());
        }
    }

    fn idle_since(&self, opened: Instant) -> Instant {
        self.0.lock().ok().and_then(|l| *l).unwrap_or(opened)
    }
}

/// The accept loop of every RPC server: a connection cap, the secret handshake, the idle
/// timeout and the stop signal, around `session`, which serves one authenticated stream.
pub async fn serve_connections<F, S>(
    listener: TcpListener,
    what: &'static str,
    config: RpcConfig,
    stop: CancellationToken,
    session: F,
) where
    F: Fn(TcpStream) -> Pin<Box<dyn Future<Output = (S, Arc<Activity>)> + Send>> + Send + Sync + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    if config.secret.is_empty() {
        if let Ok(addr) = listener.local_addr() {
            if !addr.ip().is_loopback() {
                warn!(service = what, %addr, "rpc port listens beyond loopback with no rpc.secret: anyone who reaches it can push");
            }
        }
    }
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let session = Arc::new(session);
    let refusals = Arc::new(AtomicU64::new(0));
    let conns = stop.clone();
    crate::net::accept_loop(listener, what, Some(limit), stop, move |accepted| {
        let (session, config, stop, refusals) = (session.clone(), config.clone(), conns.clone(), refusals.clone());
        tokio::spawn(async move {
            let _permit = accepted.permit;
            let mut stream = accepted.stream;
            let peer = accepted.peer;
            if let Err(e) = transport::accept(&mut stream, config.secret.expose(), HANDSHAKE_TIMEOUT).await {
                // Said once per burst: a scanner or a misconfigured node would otherwise flood the log.
                if refusals.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                    warn!(service = what, %peer, error = %e, "rpc connection refused");
                }
                return;
            }
            let opened = Instant::now();
            let (requests, activity) = session(stream).await;
            let idle = async {
                loop {
                    let deadline = activity.idle_since(opened) + config.idle_timeout;
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::time::sleep_until(deadline.into()).await;
                }
            };
            tokio::select! {
                _ = requests => {}
                _ = idle => debug!(service = what, %peer, "closing an idle rpc connection"),
                _ = stop.cancelled() => {}
            }
        });
    })
    .await
}

/// How long a dialler has to pass the secret handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Expands one service list. The list's methods all return `Result<_, error>`; `remote` names the
/// client type whose inherent `call(args, f)` runs a wire call (one endpoint, or a pool).
macro_rules! rpc_service {
    (
        $(#[$doc:meta])*
        service $Rpc:ident {
            client: $Client:ident,
            api: $Api:ident,
            adapter: $Adapter:ident,
            serve: $serve:ident,
            error: $Err:ident,
            remote: $Remote:ty $(,)?
        }
        $(
            $(#[$mdoc:meta])*
            fn $method:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;
        )*
    ) => {
        $(#[$doc])*
        #[tarpc::service]
        pub trait $Rpc {
            $(
                $(#[$mdoc])*
                async fn $method($($arg: $ty),*) -> Result<$ret, $Err>;
            )*
        }

        #[doc = concat!("The `", stringify!($Rpc), "` operations, callable in-process or through a remote client.")]
        pub trait $Api: Send + Sync + 'static {
            $(
                $(#[$mdoc])*
                fn $method(&self, $($arg: $ty),*) -> $crate::rpc::BoxFuture<'_, Result<$ret, $Err>>;
            )*
        }

        #[doc = concat!("Serves `", stringify!($Rpc), "` by forwarding each request to an [`", stringify!($Api), "`].")]
        #[derive(Clone)]
        pub struct $Adapter(pub ::std::sync::Arc<dyn $Api>);

        impl $Rpc for $Adapter {
            $(
                async fn $method(self, _: ::tarpc::context::Context, $($arg: $ty),*) -> Result<$ret, $Err> {
                    self.0.$method($($arg),*).await
                }
            )*
        }

        #[doc = concat!("Serves `", stringify!($Rpc), "` on `listener` with `api` until `stop` is cancelled, to ")]
        /// diallers that prove `config.secret`, at most `config.max_connections` at once, closing
        /// connections idle for `config.idle_timeout`.
        pub async fn $serve(
            listener: ::tokio::net::TcpListener,
            api: ::std::sync::Arc<dyn $Api>,
            config: $crate::pool::RpcConfig,
            stop: ::tokio_util::sync::CancellationToken,
        ) {
            let adapter = $Adapter(api);
            $crate::rpc::service::serve_connections(listener, stringify!($Rpc), config, stop, move |stream| {
                use ::futures::StreamExt;
                use ::tarpc::server::Channel;
                let channel = ::tarpc::server::BaseChannel::with_defaults($crate::rpc::transport::wrap(stream));
                let adapter = adapter.clone();
                Box::pin(async move {
                    let last = ::std::sync::Arc::new($crate::rpc::service::Activity::default());
                    let seen = last.clone();
                    let requests = channel.execute(adapter.serve()).for_each(move |request| {
                        seen.touch();
                        async {
                            ::tokio::spawn(request);
                        }
                    });
                    (requests, last)
                })
            })
            .await
        }

        impl $Api for $Remote {
            $(
                fn $method(&self, $($arg: $ty),*) -> $crate::rpc::BoxFuture<'_, Result<$ret, $Err>> {
                    Box::pin(self.call(($($arg,)*), |client: $Client, ctx, ($($arg,)*)| async move {
                        client.$method(ctx, $($arg),*).await
                    }))
                }
            )*
        }

        impl<S: $Api, O: $crate::rpc::Observer<$Err>> $Api for $crate::rpc::Observed<S, O> {
            $(
                fn $method(&self, $($arg: $ty),*) -> $crate::rpc::BoxFuture<'_, Result<$ret, $Err>> {
                    Box::pin(async move {
                        let start = ::std::time::Instant::now();
                        let out = self.inner.$method($($arg),*).await;
                        let outcome = out.as_ref().map(|answer| answer as &dyn ::std::any::Any);
                        self.observer.observe(stringify!($method), start.elapsed(), outcome);
                        out
                    })
                }
            )*
        }

        impl $Api for $crate::rpc::Unavailable {
            $(
                fn $method(&self, $(_: $ty),*) -> $crate::rpc::BoxFuture<'_, Result<$ret, $Err>> {
                    Box::pin(async { Err($Err::Unreachable) })
                }
            )*
        }
    };
}

pub(crate) use rpc_service;
