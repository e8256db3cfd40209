//! `gopush-bench`: a load generator for any gopush-cluster-compatible deployment. It speaks only
//! the public protocols (web HTTP API, admin push API, comet TCP and WebSocket, docs/http-api.md and docs/protocol.md),
//! so the same tool measures this project and upstream gopush-cluster 1.0.5. Entry points:
//! [`conns::run_conns`], [`push::run_push`], [`room::run_room`]; the binary in `main.rs` is a thin clap front end.

pub mod cli;
pub mod conns;
pub mod counts;
pub mod error;
pub mod histogram;
pub mod http;
pub mod online;
pub mod payload;
pub mod push;
pub mod room;
pub mod rss;
pub mod socket;
pub mod subscribe;
pub mod target;
pub mod tracker;
pub mod wire;
pub mod workers;

pub use conns::{ConnsConfig, ConnsReport, run_conns};
pub use error::BenchError;
pub use online::{OnlineConfig, OnlineReport, run_online};
pub use push::{PushConfig, PushReport, run_push};
pub use room::{RoomConfig, RoomReport, run_room};
pub use subscribe::Proto;
