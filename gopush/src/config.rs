//! What `gopush config default|check ROLE` and start-up know about each role's file: its commented
//! default (the example in `conf/`, compiled in so an installed binary can print it) and the checks
//! serde cannot make: addresses that parse, wildcard binds that say what to advertise, and no port
//! bound twice. Each problem names its key, so the operator knows which line to fix.

use comet::CometConfig;
use message::MessageConfig;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::IpAddr;
use web::WebConfig;

use crate::standalone::StandaloneConfig;

/// `conf/message.toml` ends with an example second shard for `scripts/local-cluster`; the default
/// file is what comes before this line.
pub const DEFAULTS_END: &str = "# ---- end of the defaults ----";

/// A role's config type, as the binary reads, prints and checks it.
pub trait RoleConfig: DeserializeOwned + Default + PartialEq + Debug {
    /// The role's name on the command line.
    const ROLE: &'static str;
    /// The example file in `conf/`, comments and all.
    const EXAMPLE: &'static str;

    /// Everything wrong with this config beyond parsing, each message starting with its key.
    fn problems(&self) -> Vec<String>;

    /// The commented default file `gopush config default ROLE` prints.
    fn default_file() -> &'static str {
        match Self::EXAMPLE.split_once(DEFAULTS_END) {
            Some((defaults, _)) => defaults.trim_end_matches('\n'),
            None => Self::EXAMPLE.trim_end_matches('\n'),
        }
    }
}

impl RoleConfig for StandaloneConfig {
    const ROLE: &'static str = "standalone";
    const EXAMPLE: &'static str = include_str!("../../conf/standalone.toml");

    fn problems(&self) -> Vec<String> {
        let mut c = Checker::default();
        web_addresses(&mut c, &self.web, "web.");
        comet_addresses(&mut c, &self.comet, "comet.");
        if let Err(e) = self.web.validate() {
            c.crate_error("web.", e);
        }
        if let Err(e) = self.comet.validate() {
            c.crate_error("comet.", e);
        }
        if self.store.store == 0 {
            c.problem("store.store", "must be at least 1".into());
        }
        c.finish()
    }
}

impl RoleConfig for CometConfig {
    const ROLE: &'static str = "comet";
    const EXAMPLE: &'static str = include_str!("../../conf/comet.toml");

    fn problems(&self) -> Vec<String> {
        let mut c = Checker::default();
        comet_addresses(&mut c, self, "");
        c.zookeeper("zookeeper.addr", &self.zookeeper.addr);
        if let Err(e) = self.validate() {
            c.crate_error("", e);
        }
        c.finish()
    }
}

impl RoleConfig for WebConfig {
    const ROLE: &'static str = "web";
    const EXAMPLE: &'static str = include_str!("../../conf/web.toml");

    fn problems(&self) -> Vec<String> {
        let mut c = Checker::default();
        web_addresses(&mut c, self, "");
        c.zookeeper("zookeeper.addr", &self.zookeeper.addr);
        if let Err(e) = self.validate() {
            c.crate_error("", e);
        }
        c.finish()
    }
}

impl RoleConfig for MessageConfig {
    const ROLE: &'static str = "message";
    const EXAMPLE: &'static str = include_str!("../../conf/message.toml");

    fn problems(&self) -> Vec<String> {
        let mut c = Checker::default();
        let b = &self.base;
        c.binds("base.rpc_bind", &b.rpc_bind);
        c.advertise("base.advertise", &b.advertise, "base.rpc_bind", &b.rpc_bind);
        c.bind("base.stat_bind", &b.stat_bind);
        c.zookeeper("zookeeper.addr", &self.zookeeper.addr);
        if let Err(e) = self.validate() {
            c.crate_error("", e);
        }
        c.finish()
    }
}

fn comet_addresses(c: &mut Checker, comet: &CometConfig, p: &str) {
    let b = &comet.base;
    c.binds(&format!("{p}base.tcp_bind"), &b.tcp_bind);
    c.binds(&format!("{p}base.ws_bind"), &b.ws_bind);
    c.binds(&format!("{p}base.rpc_bind"), &b.rpc_bind);
    if !b.stat_bind.is_empty() {
        c.bind(&format!("{p}base.stat_bind"), &b.stat_bind);
    }
    for (what, adv, bind) in [("tcp", &b.advertise_tcp, &b.tcp_bind), ("ws", &b.advertise_ws, &b.ws_bind)] {
        c.advertise(&format!("{p}base.advertise_{what}"), adv, &format!("{p}base.{what}_bind"), bind);
    }
    c.advertise(&format!("{p}base.advertise_rpc"), &b.advertise_rpc, &format!("{p}base.rpc_bind"), &b.rpc_bind);
}

fn web_addresses(c: &mut Checker, web: &WebConfig, p: &str) {
    c.bind(&format!("{p}base.http_bind"), &web.base.http_bind);
    c.bind(&format!("{p}base.admin_bind"), &web.base.admin_bind);
}

/// Collects problems and the ports each bind key uses.
#[derive(Default)]
struct Checker {
    problems: Vec<String>,
    ports: BTreeMap<u16, Vec<String>>,
}

impl Checker {
    fn problem(&mut self, key: &str, message: String) {
        self.problems.push(format!("{key}: {message}"));
    }

    /// A crate's own validation message, which starts with its key; skipped when a check here has
    /// already reported that key, so one mistake is not reported twice.
    fn crate_error(&mut self, prefix: &str, error: impl std::fmt::Display) {
        let message = error.to_string();
        let message = message.strip_prefix("config: ").unwrap_or(&message);
        let key: String = message.chars().take_while(|c| !matches!(c, ' ' | ':' | '[')).collect();
        let full = format!("{prefix}{key}");
        if !self.problems.iter().any(|p| p.starts_with(&full)) {
            self.problems.push(format!("{prefix}{message}"));
        }
    }

    fn bind(&mut self, key: &str, addr: &str) {
        match host_port(addr) {
            Ok((_, port)) => {
                if port != 0 {
                    self.ports.entry(port).or_default().push(key.to_string());
                }
            }
            Err(e) => self.problem(key, e),
        }
    }

    fn binds(&mut self, key: &str, addrs: &[String]) {
        for (i, a) in addrs.iter().enumerate() {
            self.bind(&format!("{key}[{i}]"), a);
        }
    }

    /// Others must be told an address they can dial: a wildcard bind needs `adv`, and no entry of
    /// `adv` may itself be a wildcard or port 0.
    fn advertise(&mut self, key: &str, adv: &[String], bind_key: &str, binds: &[String]) {
        if adv.is_empty() {
            if let Some(w) = binds.iter().find(|a| is_wildcard(a)) {
                self.problem(
                    key,
                    format!(
                        "{bind_key} {w:?} listens on every interface, so say which address others dial \
                         (e.g. {key} = [\"10.0.0.5:{}\"])",
                        host_port(w).map(|(_, p)| p).unwrap_or(0)
                    ),
                );
            }
        }
        for (i, a) in adv.iter().enumerate() {
            match host_port(a) {
                Err(e) => self.problem(&format!("{key}[{i}]"), e),
                Ok(_) if is_wildcard(a) => {
                    self.problem(&format!("{key}[{i}]"), format!("{a:?} is a wildcard address nobody can dial"))
                }
                Ok((_, 0)) => self.problem(&format!("{key}[{i}]"), format!("{a:?} has port 0")),
                Ok(_) => {}
            }
        }
    }

    fn zookeeper(&mut self, key: &str, list: &str) {
        if list.trim().is_empty() {
            return self.problem(key, "empty".into());
        }
        for a in list.split(',').map(str::trim) {
            if let Err(e) = host_port(a) {
                self.problem(key, e);
            }
        }
    }

    /// The problems, plus one per port bound by more than one key.
    fn finish(mut self) -> Vec<String> {
        for (port, keys) in &self.ports {
            if keys.len() > 1 {
                self.problems.push(format!("{}: port {port} is also bound by {}", keys[0], keys[1..].join(", ")));
            }
        }
        self.problems
    }
}

/// Splits `host:port`; IPv6 hosts are bracketed. An empty host means every interface.
fn host_port(addr: &str) -> Result<(&str, u16), String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("{addr:?} is not host:port"))?;
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("{addr:?}: write IPv6 hosts in brackets, e.g. [::1]:{port}"));
    }
    if host.chars().any(char::is_whitespace) {
        return Err(format!("{addr:?}: the host contains spaces"));
    }
    let port = port.parse::<u16>().map_err(|_| format!("{addr:?} has no valid port (0 to 65535)"))?;
    Ok((host, port))
}

/// True for `0.0.0.0`, `[::]` and an empty host: addresses nobody can dial.
fn is_wildcard(addr: &str) -> bool {
    match host_port(addr) {
        Ok((host, _)) => {
            host.is_empty() || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comet(text: &str) -> Vec<String> {
        crate::load::parse::<CometConfig>(text).expect("parses").role.problems()
    }

    #[test]
    fn the_defaults_have_no_problems() {
        assert_eq!(StandaloneConfig::default().problems(), Vec::<String>::new());
        assert_eq!(CometConfig::default().problems(), Vec::<String>::new());
        assert_eq!(WebConfig::default().problems(), Vec::<String>::new());
        assert_eq!(MessageConfig::default().problems(), Vec::<String>::new());
    }

    #[test]
    fn problems_name_their_keys() {
        let p = comet("[base]\ntcp_bind = [\"0.0.0.0:6969\"]\nws_bind = [\"127.0.0.1:6969\"]");
        assert!(p.iter().any(|m| m.starts_with("base.advertise_tcp: base.tcp_bind \"0.0.0.0:6969\"")), "{p:?}");
        assert!(
            p.iter().any(|m| m.starts_with("base.tcp_bind[0]: port 6969 is also bound by base.ws_bind[0]")),
            "{p:?}"
        );
        let p = comet("[base]\nrpc_bind = [\"nope\"]\nadvertise_ws = [\"[::]:1\"]\n[zookeeper]\naddr = \"a:1,b\"");
        assert!(p.contains(&"base.rpc_bind[0]: \"nope\" is not host:port".to_string()), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("base.advertise_ws[0]: \"[::]:1\" is a wildcard")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("zookeeper.addr: \"b\"")), "{p:?}");
        let p = comet("[channel]\nmsgbuf = 0");
        assert!(p.iter().any(|m| m.starts_with("channel.")), "the comet crate's own check: {p:?}");
        let p = crate::load::parse::<MessageConfig>("[base]\nrpc_bind = [\":8070\"]").expect("parses").role.problems();
        assert_eq!(p.len(), 1, "reported once, not by both checks: {p:?}");
        assert!(p[0].starts_with("base.advertise:"), "{p:?}");
    }
}
