//! The one error type of the web crate: why a request failed (turned into a `ret` code in
//! `reply.rs`, and nowhere else) or why the node could not start.

use cluster::rpc::{CometError, StoreError};

/// Everything that can go wrong in the web node.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A missing, malformed or out-of-range request parameter, an oversized or unreadable body,
    /// or an invalid JSONP callback name.
    #[error("parameter error: {0}")]
    Param(&'static str),
    /// No comet node owns the key (empty ring), or its active instance advertises no address for
    /// the asked protocol.
    #[error("no comet node for the key")]
    NoComet,
    /// A published message that is not one valid JSON value.
    #[error("the message is not valid JSON")]
    BadMessage,
    /// A comet call failed (unreachable, timed out, not the owner, storage failure, bad input).
    #[error("comet: {0}")]
    Comet(#[from] CometError),
    /// A call to the named comet node failed.
    #[error("comet {node}: {error}")]
    CometAt {
        /// The ring node the key belongs to.
        node: String,
        /// What the call returned.
        error: CometError,
    },
    /// A message-store call failed.
    #[error("message store: {0}")]
    Store(#[from] StoreError),
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] cluster::net::BindError),
}
