//! The internal RPC contracts: each service is one list of methods below, expanded by
//! [`rpc_service!`](service) into a tarpc service for the wire, an object-safe trait (`CometApi`,
//! `MessageApi`) that servers implement and callers use, the wire adapter, the remote client and
//! the observing decorator. Standalone mode calls a comet or a store in-process through the same
//! trait with no socket in between. Errors are typed enums; the codec is chosen in [`transport`].

use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tarpc::client::RpcError;
use tarpc::context::Context;

pub(crate) mod service;
pub mod transport;

use service::rpc_service;
pub use service::{Observed, Observer, Unavailable};

/// A message id: Unix time in 100 ns units, strictly increasing per comet (docs/decisions.md#d6-message-ids).
pub type Mid = i64;

/// A boxed, sendable future: the return type of the object-safe API traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One stored offline message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The message as published: one valid JSON value.
    pub msg: String,
    /// Its id.
    pub mid: Mid,
    /// Group id; always 0 (private) in gopush 1.0.5.
    pub gid: u32,
}

/// What `push_privates` reports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PushPrivatesReply {
    /// The one mid given to this push.
    pub mid: Mid,
    /// Keys that were not delivered nor stored (not owned here, or their save failed).
    pub failed: Vec<String>,
}

/// One private push of a [`push_batch`](CometApi::push_batch): the arguments of `push_private`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// The key.
    pub key: String,
    /// The message: one valid JSON value.
    pub msg: String,
    /// Seconds to keep it for offline delivery; 0 = online only.
    pub expire: u32,
    /// The publisher's idempotency id, if any.
    pub id: Option<String>,
}

/// One message of a [`save_batch`](MessageApi::save_batch): the arguments of `save_private`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Save {
    /// The key.
    pub key: String,
    /// The message: one valid JSON value.
    pub msg: String,
    /// Its mid.
    pub mid: Mid,
    /// Seconds to keep it; 0 stores nothing.
    pub expire: u32,
}

/// What `MessageRpc.subscriber` answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscriber {
    /// Whether the given token is valid; `false` when none was given.
    pub token_valid: bool,
    /// The key's rooms, sorted.
    pub rooms: Vec<String>,
}

/// A comet's answer to a health ping.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CometStatus {
    /// Its ring node name.
    pub node: String,
    /// Open client connections.
    pub connections: u64,
    /// Channels (keys with connections or cached tokens).
    pub channels: u64,
    /// Whether it sees itself in the ring and serves subscriptions.
    pub serving: bool,
}

/// How one key is connected to a comet: its subscribed connections by protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyPresence {
    /// Subscribed TCP connections.
    pub tcp: u32,
    /// Subscribed WebSocket connections.
    pub ws: u32,
}

impl KeyPresence {
    /// Connections of both protocols.
    pub fn conns(&self) -> u32 {
        self.tcp.saturating_add(self.ws)
    }
}

/// A comet's presence totals, for `/1/admin/online/count`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OnlineCount {
    /// Its ring node name.
    pub node: String,
    /// Keys with at least one subscribed connection.
    pub keys: u64,
    /// Subscribed TCP connections.
    pub tcp: u64,
    /// Subscribed WebSocket connections.
    pub ws: u64,
}

/// A comet's figures for one room, for `/1/admin/online/count?room=R`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoomCount {
    /// Its ring node name.
    pub node: String,
    /// Keys with at least one live connection in the room.
    pub keys: u64,
    /// Live connections in the room.
    pub conns: u64,
}

/// A message node's answer to a health ping.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoreHealth {
    /// The storage kind, e.g. `redis` or `memory`.
    pub backend: String,
    /// Per shard: its name and whether it answered.
    pub shards: Vec<(String, bool)>,
}

impl StoreHealth {
    /// True when every shard answered.
    pub fn healthy(&self) -> bool {
        self.shards.iter().all(|(_, up)| *up)
    }
}

/// Why a comet call failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CometError {
    /// The key is empty or longer than the comet accepts.
    #[error("bad key")]
    BadKey,
    /// The message is not one valid JSON value.
    #[error("the message is not valid JSON")]
    BadMessage,
    /// The token is empty or too long.
    #[error("bad token")]
    BadToken,
    /// The key belongs to another comet node by this comet's ring.
    #[error("this comet does not own the key")]
    NotOwner,
    /// Saving the message (or token) failed; nothing was delivered.
    #[error("store: {0}")]
    Store(StoreError),
    /// The comet could not be reached or the connection broke.
    #[error("comet unreachable")]
    Unreachable,
    /// The call passed its deadline.
    #[error("comet call timed out")]
    Timeout,
}

/// Why a message-store call failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StoreError {
    /// The key is empty or too long.
    #[error("bad key")]
    BadKey,
    /// The message is not one valid JSON value.
    #[error("the message is not valid JSON")]
    BadMessage,
    /// A negative mid.
    #[error("bad message id")]
    BadMid,
    /// The token is empty or too long.
    #[error("bad token")]
    BadToken,
    /// The storage backend (Redis) failed or is down.
    #[error("storage backend unavailable")]
    Backend,
    /// No message node is registered or reachable.
    #[error("no message node available")]
    NoNode,
    /// The message node could not be reached or the connection broke.
    #[error("message node unreachable")]
    Unreachable,
    /// The call passed its deadline.
    #[error("message call timed out")]
    Timeout,
}

impl From<RpcError> for CometError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::DeadlineExceeded => CometError::Timeout,
            _ => CometError::Unreachable,
        }
    }
}

impl From<RpcError> for StoreError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::DeadlineExceeded => StoreError::Timeout,
            _ => StoreError::Unreachable,
        }
    }
}

impl StoreError {
    /// True for failures of the path to a message node, where another node may succeed.
    pub fn is_transport(&self) -> bool {
        matches!(self, StoreError::Unreachable | StoreError::Timeout)
    }
}

rpc_service! {
    /// The wire service a comet serves to web nodes.
    service CometRpc {
        client: CometRpcClient,
        api: CometApi,
        adapter: CometAdapter,
        serve: serve_comet,
        error: CometError,
        remote: crate::pool::RemoteComet,
    }
    /// Assigns a mid, stores the message when `expire > 0` (failing without delivering if the save
    /// fails), then delivers it to every connection of `key` in mid order. Returns the mid. A
    /// publisher's idempotency `id` seen before on this comet, within its window, answers the
    /// first push's outcome again and does nothing else.
    fn push_private(key: String, msg: String, expire: u32, id: Option<String>) -> Mid;
    /// One mid for all keys, one batched save, then delivery; reports the keys that failed.
    /// `id` works as for `push_private`.
    fn push_privates(keys: Vec<String>, msg: String, expire: u32, id: Option<String>) -> PushPrivatesReply;
    /// Runs each push as `push_private` would and answers each on its own, in order: many
    /// concurrent pushes to one comet in one call (docs/decisions.md#d90-coalesced-pushes-from-web-to-a-comet).
    fn push_batch(pushes: Vec<Push>) -> Vec<Result<Mid, CometError>>;
    /// Stores a client token for `key` (auth mode), valid for `expire_secs`, sliding on use.
    fn add_token(key: String, token: String, expire_secs: u64) -> ();
    /// Closes every connection of `key` and forgets its channel; returns how many were closed.
    fn close_key(key: String) -> u32;
    /// Health and load.
    fn ping() -> CometStatus;
    /// Adds `room` to the live connections of those `keys` that are connected here, so they get
    /// the room's next push at once; the store holds the membership itself. A bad room is `BadKey`.
    fn join_rooms(keys: Vec<String>, room: String) -> ();
    /// Takes `room` away from the live connections of `keys` connected here.
    fn leave_rooms(keys: Vec<String>, room: String) -> ();
    /// Queues the message, with the `mid` web gave it, for every connection here whose key is in
    /// `room`; answers once queued, and delivery follows in chunks in arrival order.
    fn push_room(room: String, msg: String, mid: Mid) -> ();
    /// Like `push_room` for every connection here, at most `rate` deliveries a second (0: no limit).
    fn push_all(msg: String, mid: Mid, rate: u32) -> ();
    /// The subscribed connections of each of `keys`, in the same order (offline keys are zero).
    fn online(keys: Vec<String>) -> Vec<KeyPresence>;
    /// This comet's presence totals.
    fn online_count() -> OnlineCount;
    /// How many keys (and their connections) are live in `room` here. A bad room is `BadKey`.
    fn room_online_count(room: String) -> RoomCount;
    /// One page of `room`'s live keys here: those sorting after `after` ("" for the first page),
    /// ascending, at most `limit` (1 to `room::MAX_PAGE`, else `BadKey`).
    fn room_online(room: String, after: String, limit: u32) -> Vec<String>;
}

rpc_service! {
    /// The wire service a message node serves to comets and web nodes.
    service MessageRpc {
        client: MessageRpcClient,
        api: MessageApi,
        adapter: MessageAdapter,
        serve: serve_message,
        error: StoreError,
        remote: crate::pool::MessagePool,
    }
    /// Stores one message for `expire` seconds.
    fn save_private(key: String, msg: String, mid: Mid, expire: u32) -> ();
    /// Stores one message under many keys; returns the keys whose save failed.
    fn save_privates(keys: Vec<String>, msg: String, mid: Mid, expire: u32) -> Vec<String>;
    /// Stores several messages, each as `save_private` would, answering each on its own.
    fn save_batch(saves: Vec<Save>) -> Vec<Result<(), StoreError>>;
    /// Unexpired messages of `key` with mid greater than `after`, ascending.
    fn get_private(key: String, after: Mid) -> Vec<StoredMessage>;
    /// Deletes every stored message of `key`.
    fn del_private(key: String) -> ();
    /// Adds or refreshes a client token of `key` for `expire_secs`.
    fn add_token(key: String, token: String, expire_secs: u64) -> ();
    /// True when `token` is valid for `key`; a valid token's lifetime starts again.
    fn check_token(key: String, token: String) -> bool;
    /// Health of the store behind this node.
    fn ping() -> StoreHealth;
    /// Adds `room` to each key's rooms; returns the keys whose save failed. A bad room is `BadKey`.
    fn join_rooms(keys: Vec<String>, room: String) -> Vec<String>;
    /// Removes `room` from each key's rooms; returns the keys whose save failed.
    fn leave_rooms(keys: Vec<String>, room: String) -> Vec<String>;
    /// The rooms `key` is in, sorted.
    fn get_rooms(key: String) -> Vec<String>;
    /// What a comet needs to admit a subscriber of `key`, in one call: the rooms of the key and,
    /// when a token is given, whether it is valid (a valid token's lifetime starts again).
    fn subscriber(key: String, token: Option<String>) -> Subscriber;
}

/// Shared handle to a comet, local or remote.
pub type SharedComet = Arc<dyn CometApi>;
/// Shared handle to the message store, local or remote.
pub type SharedMessages = Arc<dyn MessageApi>;

/// A context whose deadline is `timeout` from now.
pub fn context(timeout: Duration) -> Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}
