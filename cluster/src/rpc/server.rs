//! Serving the wire services: accept loop, one tarpc channel per connection, one task per request,
//! all stopped by a cancellation token. The handlers only forward to the object-safe API trait.

use super::transport::wrap;
use super::{
    CometError, CometRpc, CometStatus, MessageRpc, Mid, PushPrivatesReply, SharedComet, SharedMessages, StoreError,
    StoreHealth, StoredMessage,
};
use futures::StreamExt;
use std::time::Duration;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

#[derive(Clone)]
struct CometServer(SharedComet);

impl CometRpc for CometServer {
    async fn push_private(self, _: Context, key: String, msg: String, expire: u32) -> Result<Mid, CometError> {
        self.0.push_private(key, msg, expire).await
    }
    async fn push_privates(
        self,
        _: Context,
        keys: Vec<String>,
        msg: String,
        expire: u32,
    ) -> Result<PushPrivatesReply, CometError> {
        self.0.push_privates(keys, msg, expire).await
    }
    async fn add_token(self, _: Context, key: String, token: String, expire_secs: u64) -> Result<(), CometError> {
        self.0.add_token(key, token, expire_secs).await
    }
    async fn close_key(self, _: Context, key: String) -> Result<u32, CometError> {
        self.0.close_key(key).await
    }
    async fn ping(self, _: Context) -> CometStatus {
        self.0.ping().await.unwrap_or_default()
    }
}

#[derive(Clone)]
struct MessageServer(SharedMessages);

impl MessageRpc for MessageServer {
    async fn save_private(self, _: Context, key: String, msg: String, mid: Mid, expire: u32) -> Result<(), StoreError> {
        self.0.save_private(key, msg, mid, expire).await
    }
    async fn save_privates(
        self,
        _: Context,
        keys: Vec<String>,
        msg: String,
        mid: Mid,
        expire: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.0.save_privates(keys, msg, mid, expire).await
    }
    async fn get_private(self, _: Context, key: String, after: Mid) -> Result<Vec<StoredMessage>, StoreError> {
        self.0.get_private(key, after).await
    }
    async fn del_private(self, _: Context, key: String) -> Result<(), StoreError> {
        self.0.del_private(key).await
    }
    async fn add_token(self, _: Context, key: String, token: String, expire_secs: u64) -> Result<(), StoreError> {
        self.0.add_token(key, token, expire_secs).await
    }
    async fn check_token(self, _: Context, key: String, token: String) -> Result<bool, StoreError> {
        self.0.check_token(key, token).await
    }
    async fn ping(self, _: Context) -> StoreHealth {
        // A store that cannot even report is reported with no shards up.
        self.0
            .ping()
            .await
            .unwrap_or_else(|_| StoreHealth { backend: "unknown".into(), shards: vec![("store".into(), false)] })
    }
}

// The wire traits use `async fn`, whose futures can only be proven `Send` for concrete types, so
// the accept loop is stamped out per service instead of written once over a generic `Serve`.
macro_rules! accept_loop {
    ($listener:expr, $server:expr, $shutdown:expr, $what:literal) => {{
        let (listener, server, shutdown) = ($listener, $server, $shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        debug!(%peer, concat!($what, " rpc connection"));
                        stream
                    }
                    Err(e) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        warn!(error = %e, concat!("cannot accept ", $what, " rpc connection"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => return,
            };
            let channel = BaseChannel::with_defaults(wrap(stream));
            let requests = channel.execute(server.clone().serve()).for_each(|request| async {
                tokio::spawn(request);
            });
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = requests => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    }};
}

/// Serves `CometRpc` on `listener` with `api` until `shutdown` is cancelled.
pub async fn serve_comet(listener: TcpListener, api: SharedComet, shutdown: CancellationToken) {
    accept_loop!(listener, CometServer(api), shutdown, "comet")
}

/// Serves `MessageRpc` on `listener` with `api` until `shutdown` is cancelled.
pub async fn serve_message(listener: TcpListener, api: SharedMessages, shutdown: CancellationToken) {
    accept_loop!(listener, MessageServer(api), shutdown, "message")
}
