//! The rules a subscription passes, the same for TCP and WebSocket and in the same order: a
//! connection slot under `max_connections`, then ownership of the key, the token in auth mode
//! (docs/decisions.md#d28-auth-replies-store-unreachable-versus-bad-token) and the channel's
//! `max_subscriber` limit. What is admitted is a [`Subscription`], which leaves its channel on drop.

use crate::conn::{CloseReason, Conn, Limit};
use crate::error::{Error, HEARTBEAT_REPLY};
use crate::handshake::Subscribe;
use crate::metrics as m;
use crate::state::Shared;
use cluster::Proto;
use cluster::rpc::Mid;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

/// One counted client connection; dropping it uncounts it.
pub(crate) struct Slot(Arc<Shared>);

impl Slot {
    /// Counts a new client connection, or `None` when `max_connections` are open.
    pub fn take(shared: &Arc<Shared>) -> Option<Slot> {
        let before = shared.connections.fetch_add(1, Ordering::Relaxed);
        if before >= shared.config.channel.max_connections {
            shared.connections.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        metrics::gauge!(m::CONNECTIONS).increment(1.0);
        Some(Slot(shared.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    }
}

/// A connection joined to its key's channel; dropping it closes the connection and leaves.
pub(crate) struct Subscription {
    shared: Arc<Shared>,
    /// The key it joined.
    pub key: String,
    /// The connection's shared half.
    pub conn: Arc<Conn>,
    /// When resuming: the mid from which messages arrive live (see `Sequencer::attach`).
    pub boundary: Option<Mid>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.conn.close_for(CloseReason::Client);
        self.shared.buckets.leave(&self.key, &self.conn);
        self.shared.presence.leave(&self.key, self.conn.proto, self.conn.reason());
    }
}

/// Admits a checked subscription: the key must be owned here, the token valid in auth mode, and
/// the channel not full. The connection starts with `+h\r\n` queued.
pub(crate) async fn admit(shared: &Arc<Shared>, sub: &Subscribe, proto: Proto) -> Result<Subscription, Error> {
    let refuse = |e: Error| {
        metrics::counter!(m::REFUSALS, "reason" => reason(&e)).increment(1);
        e
    };
    if !sub.rooms.is_empty() && !shared.config.channel.client_rooms {
        return Err(refuse(Error::RoomsRefused));
    }
    if shared.stopping.load(Ordering::Relaxed) || !shared.owns(&sub.key) {
        return Err(refuse(Error::NotOwner));
    }
    // Taken before the store is read, so room changes arriving meanwhile are kept for the join.
    let loading = shared.buckets.begin(&sub.key);
    let rooms = check_token_and_load_rooms(shared, &sub.key, &sub.token, loading.known).await.map_err(refuse)?;
    let c = &shared.config.channel;
    let limit = Limit { frames: c.msgbuf, bytes: c.outbox_bytes };
    let conn = Conn::new(proto, sub.new_format, limit, Utf8Bytes::from_static(HEARTBEAT_REPLY));
    let conn = Arc::new(conn.with_rooms(&sub.rooms));
    let join = || loading.join(&conn, c.max_subscriber, rooms);
    let (boundary, joined) = match sub.resume {
        Some(_) => {
            // Held before joining, so no live message can overtake the stored ones.
            conn.hold();
            let (boundary, joined) = shared.order.attach(&sub.key, &shared.mids, join);
            (Some(boundary), joined)
        }
        None => (None, join()),
    };
    if !joined {
        return Err(refuse(Error::ChannelFull));
    }
    // The label predates `cluster::Proto`'s short names; dashboards count on "websocket".
    let proto_label = match proto {
        Proto::Tcp => "tcp",
        Proto::WebSocket => "websocket",
    };
    metrics::counter!(m::SUBSCRIPTIONS, "proto" => proto_label).increment(1);
    shared.presence.join(&sub.key, proto);
    Ok(Subscription { shared: shared.clone(), key: sub.key.clone(), conn, boundary })
}

/// The token check of auth mode and the loading of the key's rooms, in one store call when
/// either is needed (a cached token and a channel that knows its rooms, `known`, need none).
/// `Some(rooms)` when loaded. Without auth a store that cannot be asked admits the subscriber
/// without its rooms (docs/decisions.md#d53-the-owning-comet-indexes-live-connections-by-room).
async fn check_token_and_load_rooms(
    shared: &Shared,
    key: &str,
    token: &str,
    known: bool,
) -> Result<Option<Vec<String>>, Error> {
    let auth = shared.config.channel.auth;
    if auth && token.is_empty() {
        return Err(Error::TokenRejected);
    }
    let check = auth && !shared.buckets.token_cached(key, token, Instant::now());
    if !check && known {
        return Ok(None);
    }
    // No lock is held here: the store call may take a while.
    match shared.messages.subscriber(key.to_string(), check.then(|| token.to_string())).await {
        Ok(found) if check && !found.token_valid => Err(Error::TokenRejected),
        Ok(found) => {
            if check {
                shared.buckets.cache_token(key, token, Instant::now() + shared.config.channel.token_cache);
            }
            Ok(Some(found.rooms))
        }
        Err(_) if check => Err(Error::TokenStoreUnavailable),
        Err(e) => {
            tracing::debug!(key, error = %e, "rooms not loaded; the subscriber gets them once the store answers");
            Ok(None)
        }
    }
}

fn reason(e: &Error) -> &'static str {
    match e {
        Error::NotOwner => "not_owner",
        Error::TokenRejected => "auth",
        Error::TokenStoreUnavailable => "token_store",
        Error::ChannelFull => "channel_full",
        Error::RoomsRefused => "client_rooms",
        _ => "other",
    }
}
