//! Replicated Redis on loopback for the storage fail-over tests: a Redis Cluster of three masters
//! and three replicas ([`RedisCluster`]), and a master/replica pair watched by three Sentinels
//! ([`SentinelSet`]). Both fail over within a few seconds (short node timeouts), and a killed
//! server can be started again to rejoin as a replica. Control goes through `redis-cli`.

use std::path::PathBuf;
use std::process::Command;

use crate::proc::{Watched, find_program, free_port, log_tail, scratch_dir, write_file};
use crate::redis::ping;
use crate::{READY_TIMEOUT, RedisServer, Unavailable, poll_until, settle};

/// How long a cluster node or a Sentinel waits before calling a silent master failed.
const NODE_TIMEOUT_MS: u32 = 1000;

/// Runs `redis-cli -p port args..` and returns its output; `Err` with stderr on failure.
pub(crate) fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let bin = find_program("redis-cli").ok_or("redis-cli not installed")?;
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    if !out.status.success() {
        return Err(format!("redis-cli -p {port} {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the server on `port` says it is a master (`ROLE`).
fn is_master(port: u16) -> bool {
    cli(port, &["ROLE"]).is_ok_and(|r| r.lines().next() == Some("master"))
}

/// Whether the master on `port` has at least one replica online and caught up enough to answer.
fn has_replica(port: u16) -> bool {
    cli(port, &["INFO", "replication"]).is_ok_and(|r| r.contains("connected_slaves:1") && r.contains("state=online"))
}

/// Six `redis-server`s in cluster mode: three masters with one replica each.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts and joins the six nodes and waits until every slot is served and every master has
    /// its replica; `None` (local) if Redis is not installed.
    pub fn start() -> Option<RedisCluster> {
        settle("RedisCluster", Self::launch())
    }

    fn launch() -> Result<RedisCluster, Unavailable> {
        if find_program("redis-cli").is_none() {
            return Err(Unavailable::NotInstalled("redis-cli not installed (apt-get install redis-server)".into()));
        }
        let mut nodes = Vec::with_capacity(6);
        for _ in 0..6 {
            // The bus port is given: the default, port + 10000, may not exist above 55535.
            let args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                &NODE_TIMEOUT_MS.to_string(),
                "--cluster-port",
                &free_port().to_string(),
            ]
            .map(String::from)
            .to_vec();
            nodes.push(RedisServer::launch_with(&args)?);
        }
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addrs.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        cli(nodes[0].port(), &create).map_err(Unavailable::Broken)?;
        let cluster = RedisCluster { nodes };
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    /// Waits until every running node sees `cluster_state:ok` and each master has a replica online.
    fn wait_healthy(&self) -> Result<(), Unavailable> {
        let ok = poll_until(READY_TIMEOUT, || {
            let running: Vec<u16> = self.nodes.iter().filter(|n| n.running()).map(RedisServer::port).collect();
            let state_ok =
                running.iter().all(|&p| cli(p, &["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok")));
            let masters: Vec<u16> = running.iter().copied().filter(|&p| is_master(p)).collect();
            state_ok && masters.len() == 3 && masters.iter().all(|&p| has_replica(p))
        });
        if ok {
            return Ok(());
        }
        let info = cli(self.nodes[0].port(), &["CLUSTER", "NODES"]).unwrap_or_else(|e| e);
        Err(Unavailable::Broken(format!("Redis Cluster did not become healthy in {READY_TIMEOUT:?}:\n{info}")))
    }

    /// Seed addresses, `127.0.0.1:port` of every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// Indexes of the nodes that are running masters now.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].running() && is_master(self.nodes[i].port())).collect()
    }

    /// SIGKILLs node `i` (its replica takes its slots after the node timeout).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Starts killed node `i` again (empty, with its `nodes.conf`): it rejoins as a replica of the
    /// node that took its slots. Blocks until the cluster is whole again.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start_again();
        if let Err(e) = self.wait_healthy() {
            panic!("RedisCluster::restart: {e}");
        }
    }
}

/// A master, its replica and three Sentinels that monitor them under one master name.
pub struct SentinelSet {
    /// Index 0 started as master, 1 as its replica; Sentinel may swap them.
    servers: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
    name: String,
}

/// One `redis-sentinel` process.
struct Sentinel {
    port: u16,
    dir: PathBuf,
    _proc: Watched,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SentinelSet {
    /// Starts the pair and the Sentinels, and waits until every Sentinel knows the replica and
    /// the other Sentinels (else it could not fail over); `None` (local) if Redis Sentinel is not
    /// installed.
    pub fn start(name: &str) -> Option<SentinelSet> {
        settle("SentinelSet", Self::launch(name))
    }

    fn launch(name: &str) -> Result<SentinelSet, Unavailable> {
        let bin = find_program("redis-sentinel").ok_or_else(|| {
            Unavailable::NotInstalled(
                "Redis Sentinel not installed: no `redis-sentinel` (apt-get install redis-sentinel)".into(),
            )
        })?;
        let master = RedisServer::launch()?;
        let replica_of = ["--replicaof".to_string(), "127.0.0.1".into(), master.port().to_string()];
        let replica = RedisServer::launch_with(&replica_of)?;
        let mut sentinels = Vec::with_capacity(3);
        for _ in 0..3 {
            sentinels.push(Self::sentinel(&bin, name, master.port())?);
        }
        let set = SentinelSet { servers: vec![master, replica], sentinels, name: name.to_string() };
        let ready = poll_until(READY_TIMEOUT, || {
            has_replica(set.servers[0].port())
                && set.sentinels.iter().all(|s| {
                    let known = |what: &str| {
                        cli(s.port, &["SENTINEL", what, name]).map(|o| o.lines().filter(|l| *l == "ip").count())
                    };
                    known("replicas").is_ok_and(|n| n >= 1) && known("sentinels").is_ok_and(|n| n >= 2)
                })
        });
        if !ready {
            let log = set.sentinels.first().map(|s| log_tail(&s.dir.join("sentinel.log"), 20)).unwrap_or_default();
            return Err(Unavailable::Broken(format!("the Sentinels of {name} did not learn the set:\n{log}")));
        }
        Ok(set)
    }

    fn sentinel(bin: &std::path::Path, name: &str, master_port: u16) -> Result<Sentinel, Unavailable> {
        let dir = scratch_dir("sentinel");
        let port = free_port();
        let log = dir.join("sentinel.log");
        let conf = dir.join("sentinel.conf");
        write_file(
            &conf,
            &format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {name} {NODE_TIMEOUT_MS}\n\
                 sentinel failover-timeout {name} 5000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.display(),
                log = log.display(),
            ),
        );
        let mut cmd = Command::new(bin);
        cmd.current_dir(&dir).arg(&conf);
        let proc = Watched::spawn(cmd, &log, Some(&dir)).map_err(|e| Unavailable::Broken(format!("Sentinel: {e}")))?;
        let addr = format!("127.0.0.1:{port}");
        if !poll_until(READY_TIMEOUT, || ping(&addr)) {
            return Err(Unavailable::Broken(format!("Sentinel on {addr} did not answer:\n{}", log_tail(&log, 20))));
        }
        Ok(Sentinel { port, dir, _proc: proc })
    }

    /// The master name the Sentinels monitor.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Sentinels' addresses.
    pub fn sentinels(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect()
    }

    /// Index (0 or 1) of the server that is a running master now.
    pub fn master(&self) -> Option<usize> {
        (0..2).find(|&i| self.servers[i].running() && is_master(self.servers[i].port()))
    }

    /// SIGKILLs server `i`.
    pub fn kill(&mut self, i: usize) {
        self.servers[i].stop();
    }

    /// Starts killed server `i` again (empty) and waits until the Sentinels made it the replica
    /// of the current master and it is in sync.
    pub fn restart(&mut self, i: usize) {
        self.servers[i].start_again();
        let other = 1 - i;
        let port = self.servers[other].port();
        let synced = poll_until(READY_TIMEOUT, || is_master(port) && has_replica(port));
        assert!(synced, "SentinelSet::restart: server {i} did not rejoin as the replica of server {other}");
    }
}
