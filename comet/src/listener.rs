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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CometConfig;
    use tokio::net::TcpStream;

    /// A connection's task is allocated once, at the size of its future's largest state, and most
    /// connections sit idle in `run` for hours: the handshake's bigger state must stay in its own
    /// boxed future (docs/decisions.md#d35-small-fixed-per-connection-memory). Before it did, these
    /// futures were 1,248 (TCP) and 1,592 (WebSocket) bytes.
    #[tokio::test]
    async fn a_connection_task_is_sized_by_serving_not_by_the_handshake() {
        let shared = Arc::new(Shared::new(CometConfig::default(), cluster::testing::FakeStore::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let tcp = tcp::connection(stream, shared.clone(), Slot::take(&shared).unwrap());
        assert!(size_of_val(&tcp) <= 1000, "a TCP connection's future is {} bytes", size_of_val(&tcp));

        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let ws = websocket::connection(stream, shared.clone(), Slot::take(&shared).unwrap());
        assert!(size_of_val(&ws) <= 1200, "a WebSocket connection's future is {} bytes", size_of_val(&ws));
    }
}
