//! Where one shard's commands go: a plain server, the master of a Sentinel-watched set, or a
//! whole Redis Cluster. The store builds its commands once and sends them through
//! [`Connection`] whatever the kind, so a new per-key command is written in one place for all
//! three (docs/storage.md#kinds-of-storage).

use super::sentinel::SentinelConnection;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// One shard's connection, cheap to clone (every clone shares the same sockets).
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server at a fixed address, reconnected by redis-rs.
    Direct(ConnectionManager),
    /// Whichever server the shard's Sentinels name master.
    Sentinel(SentinelConnection),
    /// A Redis Cluster: the key's slot picks the node.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Direct(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Direct(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
