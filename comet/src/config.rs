//! The comet's configuration, read from TOML (`conf/comet.toml`). Sections and keys follow upstream's
//! `comet.conf` (`[base]`, `[zookeeper]`, `[channel]`, `[rpc]`) with `.` written as `_`; the ring node
//! name and weight (upstream's `zookeeper:comet.node`/`comet.weight`) live in `[node]`. Defaults are
//! upstream's, bound to loopback.

use crate::error::Error;
use crate::webhook::WebhookConfig;
use cluster::config::de_duration;
use cluster::pool::RpcConfig;
use cluster::zk::ZkConfig;
use ring::HashKind;
use serde::Deserialize;
use std::time::Duration;

/// Everything the comet reads from its config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CometConfig {
    /// The ring's point scheme; must equal the web nodes' (`sha1` is upstream's ring).
    pub ring_hash: HashKind,
    /// Listeners and the addresses advertised in ZooKeeper.
    pub base: BaseConfig,
    /// Where this comet registers and watches the other comets.
    pub zookeeper: ZkConfig,
    /// This comet's ring node name and weight.
    pub node: NodeConfig,
    /// Client connections: buffers, limits, deadlines, auth.
    pub channel: ChannelConfig,
    /// Deadlines of calls to the message nodes (used by the binary that builds the message pool).
    pub rpc: RpcConfig,
    /// Presence webhooks; off unless `url` is set.
    pub webhook: WebhookConfig,
}

/// The `[base]` section: where the comet listens and what it tells others to dial.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaseConfig {
    /// Client TCP listeners (upstream `tcp.bind`); empty disables TCP.
    pub tcp_bind: Vec<String>,
    /// Client WebSocket listeners (upstream `websocket.bind`); empty disables WebSocket.
    pub ws_bind: Vec<String>,
    /// CometRpc listeners (upstream `rpc.bind`).
    pub rpc_bind: Vec<String>,
    /// `/metrics` and `/health` (upstream `stat.bind`); empty disables it.
    pub stat_bind: String,
    /// TCP addresses handed to clients; empty means the bound addresses.
    pub advertise_tcp: Vec<String>,
    /// WebSocket addresses handed to clients; empty means the bound addresses.
    pub advertise_ws: Vec<String>,
    /// RPC addresses web nodes dial; empty means the bound addresses.
    pub advertise_rpc: Vec<String>,
    /// How long start-up waits to be registered and to see itself in ZooKeeper.
    #[serde(deserialize_with = "de_duration")]
    pub register_timeout: Duration,
    /// After a ring change, connections of keys that moved away are closed spread over this long.
    #[serde(deserialize_with = "de_duration")]
    pub migrate_grace: Duration,
    /// On shutdown, connections are closed spread over this long (docs/decisions.md#d15-graceful-shutdown).
    #[serde(deserialize_with = "de_duration")]
    pub drain: Duration,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig {
            tcp_bind: vec!["127.0.0.1:6969".into()],
            ws_bind: vec!["127.0.0.1:6968".into()],
            rpc_bind: vec!["127.0.0.1:6970".into()],
            stat_bind: "127.0.0.1:6972".into(),
            advertise_tcp: Vec::new(),
            advertise_ws: Vec::new(),
            advertise_rpc: Vec::new(),
            register_timeout: Duration::from_secs(30),
            migrate_grace: Duration::from_secs(5),
            drain: Duration::from_secs(5),
        }
    }
}

/// The `[node]` section: this comet's identity on the ring.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Ring node name (upstream `comet.node`); processes sharing it are hot standbys.
    pub name: String,
    /// Ring weight (upstream `comet.weight`): 255 × weight spots.
    pub weight: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { name: "node1".into(), weight: 1 }
    }
}

/// The `[channel]` section: per-connection and per-key behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelConfig {
    /// SO_SNDBUF of client sockets in bytes (upstream `sndbuf.size`); 0 keeps the kernel default.
    pub sndbuf: u32,
    /// SO_RCVBUF of client sockets in bytes (upstream `rcvbuf.size`); 0 keeps the kernel default.
    pub rcvbuf: u32,
    /// SO_KEEPALIVE on client sockets (upstream `tcp.keepalive`).
    pub tcp_keepalive: bool,
    /// Connections per key (upstream `maxsubscriber`); one more is closed without a reply.
    pub max_subscriber: usize,
    /// Shards of the key → channel map (upstream `bucket`).
    pub bucket: usize,
    /// Require a token valid for the key on subscribe (upstream `auth`).
    pub auth: bool,
    /// Let a subscriber join rooms for its own connection at subscribe (docs/protocol.md#rooms-at-subscribe).
    pub client_rooms: bool,
    /// Queued outgoing frames always accepted per connection (upstream `msgbuf.num`); past it, the
    /// byte limit `outbox_bytes` decides when a connection is a slow consumer and is closed.
    pub msgbuf: usize,
    /// Queued outgoing bytes per connection beyond `msgbuf` frames; over both, the connection is
    /// closed. 0 gives upstream's pure frame count.
    pub outbox_bytes: usize,
    /// Client connections held at most; further ones are closed at once.
    pub max_connections: usize,
    /// Deadline of the subscribe command after accept (upstream: fixed 5 s).
    #[serde(deserialize_with = "de_duration")]
    pub handshake_timeout: Duration,
    /// Smallest heartbeat a client may ask for, in seconds (upstream: fixed 30).
    pub min_heartbeat: u32,
    /// The read deadline is the client's heartbeat plus this (upstream: fixed 5 s).
    #[serde(deserialize_with = "de_duration")]
    pub heartbeat_slack: Duration,
    /// Deadline of one socket write; a client that does not read for this long is closed.
    #[serde(deserialize_with = "de_duration")]
    pub write_timeout: Duration,
    /// Longest key accepted, in bytes.
    pub max_key: usize,
    /// How long a token confirmed by the message store is trusted without asking again.
    #[serde(deserialize_with = "de_duration")]
    pub token_cache: Duration,
    /// WebSocket read buffer per connection, in bytes (the library default is 128 KiB).
    pub ws_read_buffer: usize,
    /// WebSocket outgoing bytes buffered before a write, in bytes (the library default is 128 KiB).
    pub ws_write_buffer: usize,
    /// Largest WebSocket frame or message a client may send, in bytes; larger ones close it.
    pub ws_max_frame: usize,
    /// Largest HTTP upgrade request accepted, in bytes.
    pub ws_max_request: usize,
    /// When non-empty, a WebSocket upgrade carrying an `Origin` outside this list gets 403.
    /// Requests without `Origin` (native clients) are always accepted.
    pub allowed_origins: Vec<String>,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            sndbuf: 2048,
            rcvbuf: 256,
            tcp_keepalive: false,
            max_subscriber: 64,
            bucket: 16,
            auth: false,
            client_rooms: false,
            msgbuf: 30,
            outbox_bytes: 1 << 20,
            max_connections: 100_000,
            handshake_timeout: Duration::from_secs(5),
            min_heartbeat: 30,
            heartbeat_slack: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_key: 256,
            token_cache: Duration::from_secs(60),
            ws_read_buffer: 128,
            ws_write_buffer: 4096,
            ws_max_frame: 1024,
            ws_max_request: 8192,
            allowed_origins: Vec::new(),
        }
    }
}

impl CometConfig {
    /// Parses a config file's text; unknown keys are errors so typos do not pass silently. The
    /// values are checked by [`CometConfig::validate`], which `Comet::start` calls.
    pub fn from_toml(text: &str) -> Result<CometConfig, Error> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Checks what serde cannot: values that parse but make no sense, and the advertise rule
    /// (a wildcard bind needs an advertised address). `Comet::start` calls it, once.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        let c = &self.channel;
        if self.node.name.is_empty() {
            return bad("node.name must not be empty");
        }
        if self.base.rpc_bind.is_empty() {
            return bad("base.rpc_bind needs at least one address");
        }
        if c.max_subscriber == 0 || c.bucket == 0 || c.msgbuf == 0 || c.max_connections == 0 {
            return bad("channel.max_subscriber, bucket, msgbuf and max_connections must be at least 1");
        }
        if c.handshake_timeout.is_zero() || c.write_timeout.is_zero() {
            return bad("channel.handshake_timeout and write_timeout must be positive");
        }
        if c.max_key == 0 || c.max_key > crate::handshake::MAX_ARG {
            return bad("channel.max_key must be between 1 and 1024");
        }
        if c.ws_read_buffer < 64 || c.ws_max_frame < 16 || c.ws_max_request < 512 {
            return bad("channel.ws_read_buffer >= 64, ws_max_frame >= 16 and ws_max_request >= 512 are required");
        }
        if self.rpc.save_batch == 0 || self.rpc.save_batch_in_flight == 0 {
            return bad("rpc.save_batch and rpc.save_batch_in_flight must be at least 1");
        }
        self.webhook.validate()?;
        let b = &self.base;
        for (bind_key, binds, advertise_key, advertise) in [
            ("base.tcp_bind", &b.tcp_bind, "base.advertise_tcp", &b.advertise_tcp),
            ("base.ws_bind", &b.ws_bind, "base.advertise_ws", &b.advertise_ws),
            ("base.rpc_bind", &b.rpc_bind, "base.advertise_rpc", &b.advertise_rpc),
        ] {
            cluster::net::check_advertise(bind_key, binds, advertise_key, advertise).map_err(Error::Config)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_upstream_defaults() {
        let c = CometConfig::from_toml("").unwrap();
        c.validate().unwrap();
        assert_eq!(c, CometConfig::default());
        assert_eq!(c.base.tcp_bind, vec!["127.0.0.1:6969"]);
        assert_eq!(c.channel.max_subscriber, 64);
        assert_eq!(c.channel.msgbuf, 30);
        assert_eq!(c.channel.min_heartbeat, 30);
        assert_eq!(c.node.name, "node1");
        assert_eq!(c.ring_hash, HashKind::Sha1);
    }

    #[test]
    fn keys_parse_and_typos_fail() {
        let c = CometConfig::from_toml(
            "ring_hash = \"md5\"\n[node]\nname = \"n2\"\nweight = 3\n[channel]\nauth = true\nheartbeat_slack = \"250ms\"\n",
        )
        .unwrap();
        assert_eq!(c.ring_hash, HashKind::Md5);
        assert_eq!((c.node.name.as_str(), c.node.weight), ("n2", 3));
        assert!(c.channel.auth);
        assert_eq!(c.channel.heartbeat_slack, Duration::from_millis(250));
        assert!(CometConfig::from_toml("[channel]\nmaxsubscriber = 3\n").is_err());
        let invalid = |text: &str| CometConfig::from_toml(text).unwrap().validate().is_err();
        assert!(invalid("[channel]\nmsgbuf = 0\n"));
        assert!(invalid("[node]\nname = \"\"\n"));
    }

    #[test]
    fn wildcard_binds_need_an_advertised_address() {
        let check = |text: &str| CometConfig::from_toml(text).unwrap().validate().map_err(|e| e.to_string());
        let e = check("[base]\ntcp_bind = [\"0.0.0.0:6969\"]\n").unwrap_err();
        assert!(e.contains("base.advertise_tcp"), "{e}");
        assert!(check("[base]\nws_bind = [\":6968\"]\n").unwrap_err().contains("base.advertise_ws"));
        check("[base]\ntcp_bind = [\"0.0.0.0:6969\"]\nadvertise_tcp = [\"push.example:6969\"]\n").unwrap();
        check("[base]\ntcp_bind = []\nws_bind = []\n").unwrap();
    }

    #[test]
    fn shipped_example_configs_parse() {
        for file in ["comet.toml", "comet-2.toml"] {
            let path = format!("{}/../conf/{file}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            let config = CometConfig::from_toml(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            config.validate().unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }
}
