//! The crate's one error type, for starting and running a node. Store calls answer with the wire
//! type `cluster::rpc::StoreError`; Redis failures become `StoreError::Backend` in `store::redis`.

/// Why a message node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The configuration is invalid; the text names the key.
    #[error("config: {0}")]
    Config(String),
    /// A listener could not be bound; the error names the config key and the address.
    #[error(transparent)]
    Bind(#[from] cluster::net::BindError),
    /// A Redis client could not be created for a source.
    #[error("redis source {name}: {reason}")]
    Redis {
        /// The source's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
}
