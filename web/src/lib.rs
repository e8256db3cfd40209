//! The web node: the public HTTP API that tells clients which comet serves their key, and the admin
//! API that routes pushes to the owning comet by the ring, byte-compatible with gopush-cluster 1.0.5
//! (docs/http-api.md, docs/decisions.md#d1-compatibility-contract). Start one with [`Web::start`].
//! Modules depend one way, `server` → `public`, `admin` → `presence` → `state`, `routing`, `reply`,
//! `limits`; the decisions behind each file are listed in docs/architecture.md#web.

mod admin;
mod client_files;
mod config;
mod cors;
mod deadline;
mod error;
mod limits;
pub mod metrics;
mod presence;
mod prune;
mod public;
mod reply;
mod rooms;
mod routing;
mod server;
mod state;

pub use admin::DEFAULT_TOKEN_SECS;
pub use config::{BaseConfig, WebConfig};
pub use error::WebError;
pub use routing::{CometFactory, CometHandle, remote_comets};
pub use server::{Web, WebDeps};
