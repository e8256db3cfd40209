//! The `gopush` process: loading a role's TOML file, running a cluster role (comet, web, message)
//! against ZooKeeper, or running everything in one process (`standalone`: web, one comet and the
//! in-memory store, no ZooKeeper, no Redis). The binary in `main.rs` is a thin CLI over this.

pub mod load;
pub mod roles;
pub mod standalone;
