//! The web node (DESIGN decisions 1, 4, 5, 9-12): the public HTTP API that tells clients which comet
//! serves their key and hands out offline messages, and the admin HTTP API that takes pushes and
//! routes them to the owning comet by the ketama ring. Byte-compatible with gopush-cluster 1.0.5's
//! web (§2 of the reference). It also prunes comet instances that stop answering.
//!
//! Start one with [`Web::start`]; [`WebDeps::cluster`] wires it to ZooKeeper and the message nodes.

pub mod config;
pub mod error;
pub mod metrics;
pub mod params;
pub mod reply;
pub mod routing;

mod admin;
mod deadline;
mod prune;
mod public;
mod server;

pub use admin::DEFAULT_TOKEN_SECS;
pub use config::{BaseConfig, WebConfig};
pub use error::WebError;
pub use routing::{CometFactory, remote_comets};
pub use server::{Web, WebDeps};
