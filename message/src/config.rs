//! The message node's TOML configuration: upstream's `[base]`, `[storage]`, `[redis]` and
//! `[zookeeper]` sections with upstream's defaults, parsed and validated without I/O. Redis sources
//! keep upstream's `name:weight → address` meaning, written as `[[redis.source]]` tables; an address
//! may also be written the upstream way (`tcp@host:port#password`).

use crate::error::MessageError;
use cluster::config::de_duration;
use cluster::net::{check_advertise, split_host_port};
use cluster::zk::ZkConfig;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use ring::HashKind;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

/// The whole `message.toml`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessageConfig {
    /// Listening addresses, advertised addresses and weight.
    pub base: BaseConfig,
    /// Which store backs the node.
    pub storage: StorageConfig,
    /// The Redis store (used when `storage.kind = "redis"`).
    pub redis: RedisConfig,
    /// Where the node registers itself.
    pub zookeeper: ZkConfig,
    /// The RPC server: the shared secret, the connection cap and the idle timeout.
    pub rpc: cluster::pool::RpcConfig,
}

/// `[base]`: where the node listens and what it advertises.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaseConfig {
    /// RPC listen addresses (upstream `rpc.bind`).
    pub rpc_bind: Vec<String>,
    /// RPC addresses other processes dial; empty means the bound addresses.
    pub advertise: Vec<String>,
    /// Load-balancing weight among message nodes (upstream `node.weight`); 0 takes no calls.
    pub weight: u32,
    /// Address of the `/metrics` and `/health` HTTP port.
    pub stat_bind: String,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig {
            rpc_bind: vec!["127.0.0.1:8070".into()],
            advertise: Vec::new(),
            weight: 1,
            stat_bind: "127.0.0.1:8072".into(),
        }
    }
}

/// `[storage]`: the backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `redis` (upstream's default), `redis-cluster` or `memory` (one process only, lost on restart).
    pub kind: StorageKind,
}

/// The storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageKind {
    /// Redis shards, upstream's layout.
    #[default]
    Redis,
    /// One Redis Cluster (`[redis.cluster]`): its hash slots shard the keys instead of the ring.
    RedisCluster,
    /// In this process's memory.
    Memory,
}

/// `[redis]`: shards and per-key limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Newest messages kept per key (upstream `store`); caps the memory store too.
    pub store: usize,
    /// Prepended to every Redis key; empty reads and writes upstream's keys.
    pub key_prefix: String,
    /// Deadline of one Redis command or pipeline, connecting included.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Ring scheme over the sources; `sha1` picks the same shard as upstream.
    pub ring_hash: HashKind,
    /// The shards (upstream `[redis.source]`).
    pub source: Vec<RedisSource>,
    /// Replicas that must confirm a save (`WAIT`) before it is acknowledged; 0 does not wait.
    pub wait_replicas: u32,
    /// The Redis Cluster used when `storage.kind = "redis-cluster"`.
    pub cluster: RedisClusterConfig,
}

/// `[redis.cluster]`: where to find a Redis Cluster; the client learns the rest from it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisClusterConfig {
    /// Seed nodes, `host:port` or `redis://host:port`; any one that answers is enough.
    pub nodes: Vec<String>,
    /// `AUTH` password of the cluster's nodes; empty for none.
    pub password: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            store: 20,
            key_prefix: String::new(),
            timeout: Duration::from_secs(2),
            ring_hash: HashKind::Sha1,
            source: vec![RedisSource::default()],
            wait_replicas: 0,
            cluster: RedisClusterConfig::default(),
        }
    }
}

/// One shard: upstream's `name:weight proto@addr#password` line as a table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSource {
    /// Ring node name; must match upstream's to find upstream's data.
    pub name: String,
    /// Ring weight (255 × weight spots).
    pub weight: u32,
    /// `redis://host:port[/db]`, `unix:///path`, upstream's `tcp@host:port[#pw]` / `unix@/path`,
    /// or a bare `host:port`.
    pub addr: String,
    /// `AUTH` password; empty for none (overrides a `#password` in `addr`).
    pub password: String,
    /// Sentinels watching this shard, `host:port` each; when set, `addr` is ignored and the shard
    /// is whichever server these Sentinels name master of `master_name`.
    pub sentinels: Vec<String>,
    /// The master name the Sentinels monitor (their `sentinel monitor <name> ..`).
    pub master_name: String,
}

impl Default for RedisSource {
    fn default() -> Self {
        RedisSource {
            name: "node1".into(),
            weight: 1,
            addr: "redis://127.0.0.1:6379".into(),
            password: String::new(),
            sentinels: Vec::new(),
            master_name: String::new(),
        }
    }
}

impl MessageConfig {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<MessageConfig, MessageError> {
        let config: MessageConfig = toml::from_str(text).map_err(|e| MessageError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: non-empty lists, advertise addresses, Redis sources.
    pub fn validate(&self) -> Result<(), MessageError> {
        let err = |m: String| Err(MessageError::Config(m));
        let b = &self.base;
        if b.rpc_bind.is_empty() {
            return err("base.rpc_bind: at least one address is required".into());
        }
        check_advertise("base.rpc_bind", &b.rpc_bind, "base.advertise", &b.advertise).map_err(MessageError::Config)?;
        if let Err(e) = split_host_port(&b.stat_bind) {
            return err(format!("base.stat_bind: {e}"));
        }
        if self.redis.store == 0 {
            return err("redis.store: must be at least 1".into());
        }
        match self.storage.kind {
            StorageKind::Redis => self.redis.validate()?,
            StorageKind::RedisCluster => self.redis.validate_cluster()?,
            StorageKind::Memory => {}
        }
        if self.zookeeper.addr.trim().is_empty() {
            return err("zookeeper.addr: empty".into());
        }
        if !self.zookeeper.message_path.starts_with('/') {
            return err(format!("zookeeper.message_path: {:?} must start with '/'", self.zookeeper.message_path));
        }
        Ok(())
    }
}

impl RedisConfig {
    /// Checks limits and every source; errors name the offending key.
    fn validate(&self) -> Result<(), MessageError> {
        let err = |m: String| Err(MessageError::Config(m));
        if self.store == 0 {
            return err("redis.store: must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return err("redis.timeout: must be more than 0".into());
        }
        if self.source.is_empty() {
            return err("redis.source: at least one [[redis.source]] is required".into());
        }
        let mut names = HashSet::new();
        for (i, s) in self.source.iter().enumerate() {
            if s.name.is_empty() {
                return err(format!("redis.source[{i}].name: empty"));
            }
            if !names.insert(s.name.as_str()) {
                return err(format!("redis.source[{i}].name: {:?} is listed twice", s.name));
            }
            if s.weight == 0 {
                return err(format!("redis.source[{i}].weight: must be at least 1"));
            }
            if s.sentinels.is_empty() {
                if let Err(e) = s.connection_info() {
                    return err(format!("redis.source[{i}].addr: {e}"));
                }
                continue;
            }
            if s.master_name.is_empty() {
                return err(format!("redis.source[{i}].master_name: required with sentinels"));
            }
            for (j, a) in s.sentinels.iter().enumerate() {
                if let Err(e) = parse_source_addr(a, "") {
                    return err(format!("redis.source[{i}].sentinels[{j}]: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Checks the `[redis.cluster]` seeds and the limits a cluster store shares with shards.
    fn validate_cluster(&self) -> Result<(), MessageError> {
        let err = |m: String| Err(MessageError::Config(m));
        if self.timeout.is_zero() {
            return err("redis.timeout: must be more than 0".into());
        }
        if self.cluster.nodes.is_empty() {
            return err("redis.cluster.nodes: at least one seed node is required for kind = \"redis-cluster\"".into());
        }
        for (i, n) in self.cluster.nodes.iter().enumerate() {
            if let Err(e) = parse_source_addr(n, "") {
                return err(format!("redis.cluster.nodes[{i}]: {e}"));
            }
        }
        Ok(())
    }

    /// Connection info of every cluster seed, the cluster password applied.
    pub(crate) fn cluster_seeds(&self) -> Result<Vec<ConnectionInfo>, String> {
        self.cluster.nodes.iter().map(|n| parse_source_addr(n, &self.cluster.password)).collect()
    }
}

impl RedisSource {
    /// The redis client's connection info for this source, password applied.
    pub(crate) fn connection_info(&self) -> Result<ConnectionInfo, String> {
        parse_source_addr(&self.addr, &self.password)
    }

    /// Connection info of each Sentinel (no password: Sentinels are reached without `AUTH`).
    pub(crate) fn sentinel_infos(&self) -> Result<Vec<ConnectionInfo>, String> {
        self.sentinels.iter().map(|a| parse_source_addr(a, "")).collect()
    }
}

/// Parses a source address in any accepted form (see [`RedisSource::addr`]); a non-empty
/// `password` replaces any `#password` in the address.
fn parse_source_addr(addr: &str, password: &str) -> Result<ConnectionInfo, String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("empty".into());
    }
    let (info, inline_pw) = if addr.contains("://") {
        let info = addr.into_connection_info().map_err(|e| format!("{addr:?} is not a Redis URL: {e}"))?;
        (info, None)
    } else {
        let (target, pw) = match addr.split_once('#') {
            Some((t, p)) => (t, Some(p)),
            None => (addr, None),
        };
        let conn = if let Some(path) = target.strip_prefix("unix@") {
            if path.is_empty() {
                return Err(format!("{addr:?} names no socket path"));
            }
            ConnectionAddr::Unix(path.into())
        } else {
            let hp = target.strip_prefix("tcp@").unwrap_or(target);
            let (host, port) = split_host_port(hp)?;
            // `::1:6379` could split anywhere; only a bracketed IPv6 host is unambiguous.
            if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
                return Err(format!("{addr:?}: write IPv6 hosts in brackets, e.g. [::1]:6379"));
            }
            if port == 0 {
                return Err(format!("{addr:?} has port 0"));
            }
            ConnectionAddr::Tcp(host.trim_start_matches('[').trim_end_matches(']').into(), port)
        };
        (conn.into_connection_info().map_err(|e| e.to_string())?, pw.filter(|p| !p.is_empty()))
    };
    if !info.addr().is_supported() {
        return Err(format!("{addr:?}: this build supports redis:// and unix sockets, not TLS"));
    }
    let pw = if password.is_empty() { inline_pw } else { Some(password) };
    Ok(match pw {
        Some(p) => {
            let settings = info.redis_settings().clone().set_password(p);
            info.set_redis_settings(settings)
        }
        None => info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<MessageConfig, MessageError>) -> String {
        match r {
            Err(MessageError::Config(m)) => m,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_upstreams() {
        let c = MessageConfig::from_toml("").unwrap();
        assert_eq!(c.base.rpc_bind, vec!["127.0.0.1:8070"]);
        assert!(c.base.advertise.is_empty());
        assert_eq!(c.base.weight, 1);
        assert_eq!(c.base.stat_bind, "127.0.0.1:8072");
        assert_eq!(c.storage.kind, StorageKind::Redis);
        assert_eq!(c.redis.store, 20);
        assert_eq!(c.redis.key_prefix, "");
        assert_eq!(c.redis.ring_hash, HashKind::Sha1);
        assert_eq!(c.redis.source, vec![RedisSource::default()]);
        assert_eq!(c.zookeeper, ZkConfig::default());
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../conf/message.toml");
        let c = MessageConfig::from_toml(text).unwrap();
        assert_eq!(c.base, BaseConfig::default());
        // The example adds a second shard on 6380 to the single default source.
        assert_eq!(c.redis.source.len(), 2);
        assert_eq!(c.redis.source[0], RedisSource::default());
        assert_eq!((c.redis.source[1].name.as_str(), c.redis.source[1].weight), ("node2", 1));
        assert_eq!(RedisConfig { source: vec![RedisSource::default()], ..c.redis.clone() }, RedisConfig::default());
        assert_eq!(c.zookeeper, ZkConfig::default());
    }

    #[test]
    fn full_form_parses() {
        let c = MessageConfig::from_toml(
            r#"
            [base]
            rpc_bind = ["0.0.0.0:8070", "0.0.0.0:8270"]
            advertise = ["10.0.0.5:8070"]
            weight = 3
            [storage]
            kind = "memory"
            [redis]
            store = 5
            key_prefix = "gp:"
            timeout = "500ms"
            ring_hash = "md5"
            [[redis.source]]
            name = "node1"
            weight = 1
            addr = "tcp@localhost:6379#secret"
            [[redis.source]]
            name = "node2"
            weight = 2
            addr = "redis://10.0.0.7:6380/1"
            password = "pw"
            [zookeeper]
            addr = "zk1:2181,zk2:2181"
            timeout = "10s"
            "#,
        )
        .unwrap();
        assert_eq!(c.base.weight, 3);
        assert_eq!(c.storage.kind, StorageKind::Memory);
        assert_eq!(c.redis.timeout, Duration::from_millis(500));
        assert_eq!(c.redis.ring_hash, HashKind::Md5);
        let a = c.redis.source[0].connection_info().unwrap();
        assert_eq!(a.addr(), &ConnectionAddr::Tcp("localhost".into(), 6379));
        assert_eq!(a.redis_settings().password(), Some("secret"));
        let b = c.redis.source[1].connection_info().unwrap();
        assert_eq!(b.addr(), &ConnectionAddr::Tcp("10.0.0.7".into(), 6380));
        assert_eq!(b.redis_settings().password(), Some("pw"));
        assert_eq!(b.redis_settings().db(), 1);
        assert_eq!(c.zookeeper.timeout, Duration::from_secs(10));
    }

    #[test]
    fn replicated_kinds_parse() {
        let c = MessageConfig::from_toml(
            "[storage]\nkind = \"redis-cluster\"\n[redis]\nwait_replicas = 1\n\
             [redis.cluster]\nnodes = [\"10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]\npassword = \"pw\"",
        )
        .unwrap();
        assert_eq!(c.storage.kind, StorageKind::RedisCluster);
        assert_eq!(c.redis.wait_replicas, 1);
        let seeds = c.redis.cluster_seeds().unwrap();
        assert_eq!(seeds[1].addr(), &ConnectionAddr::Tcp("10.0.0.2".into(), 7000));
        assert_eq!(seeds[0].redis_settings().password(), Some("pw"));
        let c = MessageConfig::from_toml(
            "[[redis.source]]\nname = \"node1\"\nsentinels = [\"10.0.0.1:26379\"]\nmaster_name = \"shard1\"",
        )
        .unwrap();
        assert_eq!(
            c.redis.source[0].sentinel_infos().unwrap()[0].addr(),
            &ConnectionAddr::Tcp("10.0.0.1".into(), 26379)
        );
    }

    #[test]
    fn source_addresses_in_every_form() {
        let tcp = |s: &str| parse_source_addr(s, "").map(|i| i.addr().clone());
        assert_eq!(tcp("127.0.0.1:6379"), Ok(ConnectionAddr::Tcp("127.0.0.1".into(), 6379)));
        assert_eq!(tcp("tcp@localhost:6379"), Ok(ConnectionAddr::Tcp("localhost".into(), 6379)));
        assert_eq!(tcp("[::1]:6379"), Ok(ConnectionAddr::Tcp("::1".into(), 6379)));
        assert_eq!(tcp("unix@/run/redis.sock"), Ok(ConnectionAddr::Unix("/run/redis.sock".into())));
        assert_eq!(tcp("redis://h:7000"), Ok(ConnectionAddr::Tcp("h".into(), 7000)));
        let pw = parse_source_addr("tcp@h:1#inline", "").unwrap();
        assert_eq!(pw.redis_settings().password(), Some("inline"));
        let over = parse_source_addr("tcp@h:1#inline", "explicit").unwrap();
        assert_eq!(over.redis_settings().password(), Some("explicit"));
        assert_eq!(parse_source_addr("h:1", "").unwrap().redis_settings().password(), None);
        for bad in ["", "nohost", "h:notaport", "h:0", "unix@", "::1:6379", "rediss://h:1", "http//x"] {
            assert!(parse_source_addr(bad, "").is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_wildcard_bind_needs_an_advertise_address() {
        let m = msg(MessageConfig::from_toml("[base]\nrpc_bind = [\"0.0.0.0:8070\"]"));
        assert!(m.starts_with("base.advertise:"), "{m}");
        let m = msg(MessageConfig::from_toml("[base]\nrpc_bind = [\":8070\"]"));
        assert!(m.starts_with("base.advertise:"), "{m}");
        let m = msg(MessageConfig::from_toml("[base]\nrpc_bind = [\"[::]:8070\"]"));
        assert!(m.starts_with("base.advertise:"), "{m}");
        MessageConfig::from_toml("[base]\nrpc_bind = [\"0.0.0.0:8070\"]\nadvertise = [\"10.1.1.1:8070\"]").unwrap();
        let m = msg(MessageConfig::from_toml("[base]\nadvertise = [\"0.0.0.0:8070\"]"));
        assert!(m.starts_with("base.advertise[0]:"), "{m}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[base]\nrpc_bind = []", "base.rpc_bind:"),
            ("[base]\nrpc_bind = [\"nope\"]", "base.rpc_bind[0]:"),
            ("[base]\nstat_bind = \"x\"", "base.stat_bind:"),
            ("[redis]\nstore = 0", "redis.store:"),
            ("[redis]\ntimeout = \"0s\"", "redis.timeout:"),
            ("[redis]\nsource = []", "redis.source:"),
            ("[[redis.source]]\nname = \"\"", "redis.source[0].name:"),
            ("[[redis.source]]\nweight = 0", "redis.source[0].weight:"),
            ("[[redis.source]]\naddr = \"x\"", "redis.source[0].addr:"),
            ("[[redis.source]]\nname = \"a\"\n[[redis.source]]\nname = \"a\"", "redis.source[1].name:"),
            ("[zookeeper]\nmessage_path = \"x\"", "zookeeper.message_path:"),
            ("[storage]\nkind = \"redis-cluster\"", "redis.cluster.nodes:"),
            ("[storage]\nkind = \"redis-cluster\"\n[redis.cluster]\nnodes = [\"h:0\"]", "redis.cluster.nodes[0]:"),
            ("[[redis.source]]\nsentinels = [\"h:26379\"]", "redis.source[0].master_name:"),
            ("[[redis.source]]\nsentinels = [\"x\"]\nmaster_name = \"m\"", "redis.source[0].sentinels[0]:"),
        ];
        for (text, key) in cases {
            let m = msg(MessageConfig::from_toml(text));
            assert!(m.starts_with(key), "{text:?} gave {m:?}, expected it to start with {key:?}");
        }
        // serde's own errors name the key too.
        assert!(msg(MessageConfig::from_toml("[redis]\nstor = 1")).contains("stor"));
        assert!(msg(MessageConfig::from_toml("[redis]\nring_hash = \"crc\"")).contains("ring_hash"));
        assert!(msg(MessageConfig::from_toml("[storage]\nkind = \"mysql\"")).contains("kind"));
        // A memory store needs no Redis source, but keeps the per-key cap.
        MessageConfig::from_toml("[storage]\nkind = \"memory\"\n[redis]\nsource = []").unwrap();
        let m = msg(MessageConfig::from_toml("[storage]\nkind = \"memory\"\n[redis]\nstore = 0"));
        assert!(m.starts_with("redis.store:"), "{m}");
    }
}
