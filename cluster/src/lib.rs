//! What every gopush process shares: the node information each process advertises, ZooKeeper
//! sessions that survive expiry, registration of this process and watching of everyone else's,
//! the two internal RPC contracts (`CometRpc`, `MessageRpc`) with their transport and client
//! pools, and Go-compatible JSON encoding for the wire formats clients see.

pub mod coalesce;
pub mod config;
pub mod gojson;
pub mod membership;
pub mod mid;
pub mod net;
pub mod node;
pub mod pool;
pub mod query;
pub mod registry;
pub mod room;
pub mod rpc;
pub mod stat;
#[cfg(feature = "testing")]
pub mod testing;
pub mod zk;

pub use membership::{CometMembership, CometNode, MessageMembership};
pub use node::{Instance, NodeInfo, Proto};
pub use registry::Registration;
pub use zk::{Session, ZkConfig};
