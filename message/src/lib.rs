//! The message node: the offline message store behind `MessageRpc`
//! (docs/decisions.md#d6-message-ids, docs/decisions.md#d7-offline-store).
//! [`store`] holds the two stores (sharded Redis in upstream's layout, and in-memory for standalone
//! mode) behind `cluster::rpc::MessageApi`; [`server`] puts one on the wire as a [`MessageNode`],
//! registers it in ZooKeeper and serves `/metrics` and `/health`; [`config`] reads `message.toml`.

pub mod clock;
pub mod config;
pub mod error;
mod member;
pub mod metered;
pub mod server;
pub mod store;
mod token;

pub use config::MessageConfig;
pub use error::MessageError;
pub use server::{MessageNode, run};
pub use store::{MemoryStore, RedisStore};
