//! The client listeners: binding `base.tcp_bind` and `base.ws_bind` with the `[channel]` socket
//! options, and accepting on them with `cluster::net::accept_loop`. Each accepted socket gets a
//! connection slot or is closed at once (over `max_connections`), then its protocol's task.

use crate::admission::Slot;
use crate::config::ChannelConfig;
use crate::state::Shared;
use crate::{tcp, websocket};
use cluster::Proto;
use cluster::net::{BindError, SocketOptions};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// The socket options of client listeners, from upstream's `[channel]` keys; accepted sockets
/// inherit them on Linux.
fn options(c: &ChannelConfig) -> SocketOptions {
    SocketOptions { rcvbuf: c.rcvbuf, sndbuf: c.sndbuf, keepalive: c.tcp_keepalive }
}

/// Binds every address of config key `key`; an empty list binds nothing (the protocol is off).
pub(crate) async fn bind(key: &str, addrs: &[String], c: &ChannelConfig) -> Result<Vec<TcpListener>, BindError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(cluster::net::bind(key, addr, options(c)).await?);
    }
    Ok(listeners)
}

/// Accepts clients of `proto` on `listener` until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, proto: Proto, shared: Arc<Shared>, stop: CancellationToken) {
    // No semaphore: over `max_connections` a client is closed, not left waiting in the backlog.
    cluster::net::accept_loop(listener, proto.name(), None, stop, |accepted| {
        let Some(slot) = Slot::take(&shared) else {
            debug!(%proto, "max_connections reached; closing a new client");
            return;
        };
        let (stream, shared) = (accepted.stream, shared.clone());
        match proto {
            Proto::Tcp => tokio::spawn(tcp::connection(stream, shared, slot)),
            Proto::WebSocket => tokio::spawn(websocket::connection(stream, shared, slot)),
        };
    })
    .await
}
