//! The web node's configuration, read from TOML (`conf/web.toml`). Section and key names follow
//! upstream's `web.conf` (`[base]`, `[zookeeper]`, `[rpc]`) with `.` written as `_`; defaults are
//! upstream's except for the bind addresses, which are the example config's ports on loopback.

use crate::error::WebError;
use cluster::config::de_duration;
use cluster::pool::RpcConfig;
use cluster::zk::ZkConfig;
use ring::HashKind;
use serde::Deserialize;
use std::time::Duration;

/// Everything the web node reads from its config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// The ring's point scheme; must equal the comets' (`sha1` is upstream's ring).
    pub ring_hash: HashKind,
    /// Listeners and HTTP limits.
    pub base: BaseConfig,
    /// Where the comet and message nodes register.
    pub zookeeper: ZkConfig,
    /// Deadlines of comet and message calls, and the comet health pings that drive pruning.
    pub rpc: RpcConfig,
}

/// The `[base]` section: the two HTTP listeners and what each request may cost.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaseConfig {
    /// Public API (`/1/server/get`, `/1/msg/get`, ...); upstream's `http.bind`.
    pub http_bind: String,
    /// Admin API (pushes, tokens, `/metrics`, `/health`); upstream's `admin.bind`. Keep it private.
    pub admin_bind: String,
    /// Deadline for reading a request's head or body, and the idle limit of a keep-alive
    /// connection; upstream's `http.servertimeout`.
    #[serde(deserialize_with = "de_duration")]
    pub http_timeout: Duration,
    /// Largest request body accepted on the admin port, in bytes; larger ones get `ret` 65534.
    pub max_body: usize,
    /// When non-empty, every admin API route needs `Authorization: Bearer <admin_token>`.
    pub admin_token: String,
    /// Open HTTP connections per listener; further clients wait in the accept queue.
    pub max_connections: usize,
    /// Open HTTP connections per listener from one source IP; further ones are closed at once, so
    /// one client cannot take every slot.
    pub max_connections_per_ip: usize,
    /// Largest request head (request line and headers) in bytes; a larger one gets HTTP 431 and the
    /// connection is closed. It also bounds the read buffer of a half-sent request.
    pub max_header_bytes: usize,
    /// Adds an `X-Gopush-Error: <reason>` header to API answers whose `ret` is not 0. Off by
    /// default: upstream sent no such header and its responses are kept byte for byte.
    pub error_header: bool,
    /// Origins whose pages may read the public API with `fetch()` (CORS); `"*"` allows any. Empty,
    /// as upstream: pages then use JSONP or are served from web itself.
    pub cors_origins: Vec<String>,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig {
            http_bind: "127.0.0.1:8090".into(),
            admin_bind: "127.0.0.1:8091".into(),
            http_timeout: Duration::from_secs(10),
            max_body: 64 * 1024,
            admin_token: String::new(),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            max_header_bytes: 16 * 1024,
            error_header: false,
            cors_origins: Vec::new(),
        }
    }
}

impl WebConfig {
    /// Parses a config file's text; unknown keys are errors so typos do not pass silently.
    pub fn from_toml(text: &str) -> Result<WebConfig, WebError> {
        let config: WebConfig = toml::from_str(text).map_err(|e| WebError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: values that parse but make no sense.
    pub fn validate(&self) -> Result<(), WebError> {
        if self.base.max_body == 0 {
            return Err(WebError::Config("base.max_body must be at least 1".into()));
        }
        if self.base.max_connections == 0 {
            return Err(WebError::Config("base.max_connections must be at least 1".into()));
        }
        if self.base.max_connections_per_ip == 0 {
            return Err(WebError::Config("base.max_connections_per_ip must be at least 1".into()));
        }
        if self.base.max_header_bytes < 1024 {
            return Err(WebError::Config("base.max_header_bytes must be at least 1024".into()));
        }
        if self.base.http_timeout.is_zero() {
            return Err(WebError::Config("base.http_timeout must be positive".into()));
        }
        if self.rpc.ping.is_zero() || self.rpc.timeout.is_zero() {
            return Err(WebError::Config("rpc.ping and rpc.timeout must be positive".into()));
        }
        if self.rpc.push_batch == 0 || self.rpc.push_batch_in_flight == 0 {
            return Err(WebError::Config("rpc.push_batch and rpc.push_batch_in_flight must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = WebConfig::from_toml("").unwrap();
        assert_eq!(c, WebConfig::default());
        assert_eq!(c.base.http_bind, "127.0.0.1:8090");
        assert_eq!(c.base.admin_bind, "127.0.0.1:8091");
        assert_eq!(c.base.http_timeout, Duration::from_secs(10));
        assert_eq!(c.rpc.ping, Duration::from_secs(1));
        assert_eq!(c.rpc.ping_failures, 3);
        assert_eq!(c.ring_hash, HashKind::Sha1);
    }

    #[test]
    fn keys_parse_and_typos_fail() {
        let c = WebConfig::from_toml(
            "ring_hash = \"md5\"\n[base]\nhttp_bind = \"127.0.0.1:1\"\nhttp_timeout = \"500ms\"\nadmin_token = \"s\"\n\
             [rpc]\nping = \"2s\"\nping_failures = 5\n[zookeeper]\naddr = \"127.0.0.1:2182\"\n",
        )
        .unwrap();
        assert_eq!(c.ring_hash, HashKind::Md5);
        assert_eq!(c.base.http_bind, "127.0.0.1:1");
        assert_eq!(c.base.http_timeout, Duration::from_millis(500));
        assert_eq!(c.base.admin_token, "s");
        assert_eq!(c.rpc.ping, Duration::from_secs(2));
        assert_eq!(c.rpc.ping_failures, 5);
        assert_eq!(c.zookeeper.addr, "127.0.0.1:2182");
        assert!(WebConfig::from_toml("[base]\nhttp.bind = \"x\"\n").is_err());
        assert!(WebConfig::from_toml("[base]\nmax_body = 0\n").is_err());
        assert!(WebConfig::from_toml("[rpc]\npush_batch = 0\n").is_err());
        assert!(WebConfig::from_toml("[rpc]\npush_batch_in_flight = 0\n").is_err());
        assert!(WebConfig::from_toml("ring_hash = \"crc\"\n").is_err());
    }

    #[test]
    fn the_example_config_parses_to_the_defaults() {
        let text = include_str!("../../conf/web.toml");
        assert_eq!(WebConfig::from_toml(text).unwrap(), WebConfig::default());
        // Every key is present, commented out: uncommenting them all still parses to the defaults.
        let uncommented: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ") || r.starts_with('[')).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(WebConfig::from_toml(&uncommented).unwrap(), WebConfig::default());
    }
}
