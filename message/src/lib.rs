//! The message node: the offline message store behind `MessageRpc` (DESIGN decisions 6 and 7).
//! [`store`] holds the two stores (sharded Redis in upstream's layout, and in-memory for standalone
//! mode) behind `cluster::rpc::MessageApi`; [`server`] puts one on the wire, registers it in
//! ZooKeeper and serves `/metrics` and `/health`; [`config`] reads `message.toml`.

pub mod clock;
pub mod config;
pub mod error;
pub mod member;
pub mod metered;
pub mod server;
pub mod store;
pub mod token;

pub use config::MessageConfig;
pub use error::MessageError;
pub use server::{MessageServer, run};
pub use store::{MemoryStore, RedisStore, from_config};
