//! The web node: the public HTTP API that tells clients which comet serves their key and hands out
//! offline messages, and the admin HTTP API that takes pushes and routes them to the owning comet by
//! the ketama ring. Byte-compatible with gopush-cluster 1.0.5's web (docs/http-api.md). It also
//! prunes comet instances that stop answering. Decisions behind it: docs/decisions.md#d1-compatibility-contract,
//! #d4-every-process-builds-its-own-ring, #d5-web-prunes-dead-comets, #d9-hostile-input,
//! #d10-tokens-over-http, #d11-admin-port-closed-by-default and #d12-observability.
//!
//! Start one with [`Web::start`]; [`WebDeps::cluster`] wires it to ZooKeeper and the message nodes.
//! Modules flow one way: `server` (listen, accept, serve) → `public` / `admin` (handlers) →
//! `state`, `routing`, `reply`.

mod admin;
mod config;
mod deadline;
mod error;
mod limits;
mod prune;
mod public;
mod reply;
mod routing;
mod server;
mod state;

pub use admin::DEFAULT_TOKEN_SECS;
pub use config::{BaseConfig, WebConfig};
pub use error::WebError;
pub use routing::{CometFactory, remote_comets};
pub use server::{Web, WebDeps};
