//! The one macro that turns a service's list of methods into everything that speaks it: the tarpc
//! wire service, the object-safe API trait that servers implement and callers use (in-process or
//! remote alike), the wire adapter and its accept loop, the remote clients, a decorator that
//! reports every call to an [`Observer`], and an [`Unavailable`] stand-in. Adding a method to a
//! service is one entry in its list in `rpc.rs`; see `docs/decisions.md` for why.

use std::any::Any;
use std::time::Duration;

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

        #[doc = concat!("Serves `", stringify!($Rpc), "` on `listener` with `api` until `stop` is cancelled.")]
        pub async fn $serve(
            listener: ::tokio::net::TcpListener,
            api: ::std::sync::Arc<dyn $Api>,
            stop: ::tokio_util::sync::CancellationToken,
        ) {
            use ::futures::StreamExt;
            use ::tarpc::server::Channel;
            let adapter = $Adapter(api);
            let connections = stop.clone();
            $crate::net::accept_loop(listener, stringify!($Rpc), None, stop, move |accepted| {
                let channel = ::tarpc::server::BaseChannel::with_defaults($crate::rpc::transport::wrap(accepted.stream));
                let requests = channel.execute(adapter.clone().serve()).for_each(|request| async {
                    ::tokio::spawn(request);
                });
                let stop = connections.clone();
                ::tokio::spawn(async move {
                    ::tokio::select! {
                        _ = requests => {}
                        _ = stop.cancelled() => {}
                    }
                });
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
