//! The crate's one error type, for starting and running a node. Store calls answer with the wire
//! type `cluster::rpc::StoreError`; Redis failures become `StoreError::Backend` in `store::redis`.

use std::io;

/// Why a message node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The configuration is invalid; the text names the key.
    #[error("config: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the config.
        addr: String,
        /// What the OS said.
        source: io::Error,
    },
    /// A Redis client could not be created for a source.
    #[error("redis source {name}: {reason}")]
    Redis {
        /// The source's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
}
