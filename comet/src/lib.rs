//! The comet node: holds client TCP and WebSocket connections (reference §3, byte for byte), keeps
//! one channel per subscribed key in sharded buckets, owns the keys its ring assigns to its node,
//! and serves `CometRpc` to web nodes: pushes get a mid, are stored when they expire later, and are
//! encoded once and queued for every connection of the key. Start with [`Comet::start`].

pub mod bucket;
pub mod channel;
pub mod config;
pub mod conn;
pub mod error;
pub mod handshake;
pub mod metrics;
pub mod mid;
pub mod ownership;
pub mod push;
pub mod rpc;
pub mod server;
pub mod state;
pub mod tcp;
pub mod websocket;

pub use config::CometConfig;
pub use error::Error;
pub use server::{Comet, CometDeps};
