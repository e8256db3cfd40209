//! The comet node: holds client TCP and WebSocket connections (docs/protocol.md, byte for byte),
//! keeps one channel per subscribed key in sharded buckets, owns the keys its ring assigns to its
//! node, and serves `CometRpc` to web nodes. Start with [`Comet::start`]; a connection flows
//! listener → tcp/websocket → handshake → admission → channel.

mod admission;
mod bucket;
mod channel;
mod config;
mod conn;
mod error;
mod frame;
mod handshake;
mod listener;
pub mod metrics;
mod order;
mod ownership;
mod presence;
mod replay;
mod resume;
mod rooms;
mod server;
mod service;
mod state;
mod tcp;
mod webhook;
mod websocket;

pub use config::{BaseConfig, ChannelConfig, CometConfig, NodeConfig};
pub use error::Error;
pub use server::{Comet, CometDeps};
pub use webhook::{WebhookConfig, signature as webhook_signature};
