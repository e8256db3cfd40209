//! The store over one Redis Cluster (`storage.kind = "redis-cluster"`,
//! docs/storage.md#redis-cluster): the cluster's hash slots shard the keys, and redis-rs
//! `cluster-async` follows `MOVED`/`ASK` redirections and failovers by itself. Every pipeline the
//! store sends touches one Redis key, so it always lands in one slot. Health reads the cluster's
//! own view (`CLUSTER NODES`): one entry per master that serves slots.

use crate::config::RedisConfig;
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;

/// A lazily connecting cluster client over the configured seeds; nothing is dialled until the
/// first call, so the node starts while the cluster is still down.
pub(crate) fn connect(config: &RedisConfig) -> Result<ClusterConnection, String> {
    let seeds = config.cluster_seeds()?;
    let client = ClusterClientBuilder::new(seeds)
        .connection_timeout(config.timeout)
        .response_timeout(config.timeout)
        // Redirections and retries after a failover happen inside the store's own deadline,
        // which cuts them off; short waits let a promoted replica be found within it.
        .retries(8)
        .min_retry_wait(20)
        .max_retry_wait(250)
        .build()
        .map_err(|e| e.to_string())?;
    let cluster_config =
        ClusterConfig::new().set_connection_timeout(config.timeout).set_response_timeout(config.timeout);
    Ok(client.get_pending_async_connection_with_config(cluster_config))
}

/// Each master that serves slots, `host:port`, and whether the cluster sees it up, from the text
/// of `CLUSTER NODES`. A failed master whose slots a replica took over is no longer listed: its
/// keys are served.
pub(crate) fn masters(cluster_nodes: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = cluster_nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // id addr flags master ping pong epoch link slot...
            let (addr, flags, link) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
            let is_master = flags.split(',').any(|f| f == "master");
            if !is_master || fields.len() < 9 {
                return None;
            }
            let host_port = addr.split(['@', ',']).next().unwrap_or(addr).to_string();
            let failing = flags.split(',').any(|f| f == "fail" || f == "fail?");
            Some((host_port, !failing && *link == "connected"))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_with_slots_and_their_state() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master,fail - 1 1 2 connected 5461-10922
c3 127.0.0.1:7003@17003,host3 master - 0 2 3 disconnected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 3 1 connected
e5 127.0.0.1:7005@17005 master,fail - 1 4 5 connected
";
        assert_eq!(
            masters(text),
            vec![
                ("127.0.0.1:7001".to_string(), true),
                ("127.0.0.1:7002".to_string(), false),
                ("127.0.0.1:7003".to_string(), false),
            ]
        );
        assert!(masters("").is_empty());
    }
}
