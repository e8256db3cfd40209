//! The `gopush` process: loading a role's TOML file (with `GOPUSH_*` environment overrides),
//! checking it, logging, running a cluster role (comet, web, message) against ZooKeeper, or running
//! everything in one process (`standalone`: web, one comet and the in-memory store, no ZooKeeper,
//! no Redis). The binary in `main.rs` is a thin CLI over this.

pub mod config;
pub mod env;
pub mod load;
pub mod logging;
pub mod roles;
pub mod standalone;
