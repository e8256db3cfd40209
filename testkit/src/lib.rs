//! Test harness that gives tests real ZooKeeper, Redis and nginx servers on loopback.
//!
//! Shared servers come from `GOPUSH_TEST_ZK`, `GOPUSH_TEST_ZK_ENSEMBLE` and `GOPUSH_TEST_REDIS`
//! (set by `.ci/run`) or are started privately once per test binary. Under `CI` anything missing
//! panics; locally a test whose software is not installed is skipped with a `SKIPPED` line on
//! stderr. Every process started here dies with the test binary, even when it is killed. Also the
//! one bounded poller ([`wait_until`], [`eventually`]), the one HTTP test client ([`http`]) and the
//! one process watchdog ([`Watched`]) every crate's tests use, and a proxy that cuts one network
//! path ([`TcpProxy`]).
#![warn(missing_docs)]

pub mod http;
mod nginx;
mod proc;
mod proxy;
mod redis;
mod redis_ha;
mod wait;
mod zk;

use std::any::Any;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use nginx::Nginx;
pub use proc::{Watched, free_port};
pub use proxy::TcpProxy;
pub use redis::RedisServer;
pub use redis_ha::{RedisCluster, SentinelSet};
pub(crate) use wait::poll as poll_until;
pub use wait::{eventually, eventually_some, wait_until};
pub use zk::{ZkEnsemble, ZkServer};

/// How long a server we start may take to serve; a busy 2-core CI machine mid-build needs seconds.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a server named by an environment variable gets to answer: it should already be up.
const ENV_SERVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The install line printed with every "missing software" message.
pub(crate) const INSTALL_HINT: &str = "apt-get install zookeeper redis-server redis-sentinel nginx systemd";

/// Whether we run under CI (`CI` set and non-empty): then missing servers fail tests, never skip.
pub fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A name unique across tests, processes and runs (`prefix-<pid>-<counter>-<nanos>`), for ZK paths and Redis keys.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Why a server cannot be had; decides between skipping and panicking.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// The software is not installed: skip locally, panic under CI.
    NotInstalled(String),
    /// A server named by an environment variable does not answer: skip locally, panic under CI.
    NotServing(String),
    /// Installed but broken (did not start, bad configuration): always panic, skipping would hide it.
    Broken(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NotInstalled(m) | Unavailable::NotServing(m) | Unavailable::Broken(m) => f.write_str(m),
        }
    }
}

/// Turns a failure into `None` plus a `SKIPPED` line (local, software missing) or a panic.
pub(crate) fn settle<T>(what: &str, r: Result<T, Unavailable>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            report(what, &e);
            None
        }
    }
}

/// Prints the `SKIPPED` line for a skippable failure, panics for the others.
fn report(what: &str, e: &Unavailable) {
    // cargo's harness names each test thread after the test, so the line says who skipped.
    let thread = std::thread::current();
    match verdict(ci(), thread.name().unwrap_or("test"), what, e) {
        // Straight to the stderr handle: `eprintln!` would be captured by the test harness and
        // hidden for a passing test, and the point of the line is to be seen.
        Ok(skip_line) => {
            let _ = writeln!(std::io::stderr(), "{skip_line}");
        }
        Err(panic_msg) => panic!("{panic_msg}"),
    }
}

/// The decision behind [`report`], kept pure for unit tests: `Ok(skip line)` or `Err(panic message)`.
fn verdict(ci: bool, test: &str, what: &str, e: &Unavailable) -> Result<String, String> {
    match e {
        Unavailable::NotInstalled(reason) | Unavailable::NotServing(reason) if !ci => {
            Ok(format!("SKIPPED {test} ({what}): {reason}"))
        }
        Unavailable::NotInstalled(reason) => Err(format!(
            "{what}: {reason}. CI is set, and under CI tests never skip: install the servers with \
             `{INSTALL_HINT}` (.ci/run does this)"
        )),
        Unavailable::NotServing(reason) => Err(format!("{what}: {reason} (CI is set, so this fails)")),
        Unavailable::Broken(reason) => Err(format!("{what}: {reason}")),
    }
}

/// A shared server's address plus whatever keeps a private server alive until the process exits.
struct Shared<A> {
    addr: A,
    /// Never dropped (lives in a static): the watchdogs kill these servers when the binary exits.
    _keep: Option<Box<dyn Any + Send + Sync>>,
}

/// Resolves a process-wide shared server once; later calls reuse the outcome, even a failure.
fn shared<A: Clone>(
    cell: &'static OnceLock<Result<Shared<A>, Unavailable>>,
    what: &str,
    init: impl FnOnce() -> Result<Shared<A>, Unavailable>,
) -> Option<A> {
    // The init result, failure included, is stored so a broken setup fails every test fast
    // instead of each one retrying a 60 s start.
    match cell.get_or_init(init) {
        Ok(s) => Some(s.addr.clone()),
        Err(e) => {
            report(what, e);
            None
        }
    }
}

/// An installed program a test runs (`systemd-analyze`, ...), found on `PATH` or in the usual
/// Debian places; `None` with a `SKIPPED` line locally when it is missing, a panic under CI.
pub fn program(name: &str, package: &str) -> Option<PathBuf> {
    let found = proc::find_program(name).ok_or_else(|| {
        Unavailable::NotInstalled(format!("`{name}` not installed: not on PATH (apt-get install {package})"))
    });
    settle(name, found)
}

/// Reads an environment variable, treating empty as unset.
fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The shared standalone ZooKeeper: `$GOPUSH_TEST_ZK` if set, else a private server started once.
pub fn zk_addr() -> Option<String> {
    static CELL: OnceLock<Result<Shared<String>, Unavailable>> = OnceLock::new();
    shared(&CELL, "shared ZooKeeper", || {
        if let Some(addr) = env_nonempty("GOPUSH_TEST_ZK") {
            if poll_until(ENV_SERVER_TIMEOUT, || zk::mode(&addr).is_some()) {
                return Ok(Shared { addr, _keep: None });
            }
            return Err(Unavailable::NotServing(format!(
                "GOPUSH_TEST_ZK={addr} does not answer `srvr` with a Mode: line (is it running?)"
            )));
        }
        let server = ZkServer::launch()?;
        Ok(Shared { addr: server.addr(), _keep: Some(Box::new(server)) })
    })
}

/// The shared ZooKeeper ensemble's connect string: `$GOPUSH_TEST_ZK_ENSEMBLE` or a private 3-node one.
pub fn zk_ensemble_addr() -> Option<String> {
    static CELL: OnceLock<Result<Shared<String>, Unavailable>> = OnceLock::new();
    shared(&CELL, "shared ZooKeeper ensemble", || {
        if let Some(addr) = env_nonempty("GOPUSH_TEST_ZK_ENSEMBLE") {
            let nodes: Vec<&str> = addr.split(',').map(str::trim).collect();
            if nodes.len() < 3 {
                return Err(Unavailable::Broken(format!(
                    "GOPUSH_TEST_ZK_ENSEMBLE={addr} must list 3 nodes (127.0.0.1:a,127.0.0.1:b,127.0.0.1:c)"
                )));
            }
            let ok = poll_until(ENV_SERVER_TIMEOUT, || {
                let modes: Vec<Option<String>> = nodes.iter().map(|n| zk::mode(n)).collect();
                modes.iter().all(|m| zk::in_quorum(m.as_deref()))
                    && modes.iter().any(|m| m.as_deref() == Some("leader"))
            });
            if ok {
                return Ok(Shared { addr, _keep: None });
            }
            let modes: Vec<String> =
                nodes.iter().map(|n| format!("{n}={}", zk::mode(n).unwrap_or_else(|| "-".into()))).collect();
            return Err(Unavailable::NotServing(format!(
                "GOPUSH_TEST_ZK_ENSEMBLE={addr} has no serving quorum (modes: {})",
                modes.join(" ")
            )));
        }
        let ensemble = ZkEnsemble::launch(3)?;
        Ok(Shared { addr: ensemble.addr(), _keep: Some(Box::new(ensemble)) })
    })
}

/// The shared Redis servers (at least 2): `$GOPUSH_TEST_REDIS` (comma list) or two private ones.
pub fn redis_addrs() -> Option<Vec<String>> {
    static CELL: OnceLock<Result<Shared<Vec<String>>, Unavailable>> = OnceLock::new();
    shared(&CELL, "shared Redis", || {
        if let Some(list) = env_nonempty("GOPUSH_TEST_REDIS") {
            let addrs: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if addrs.len() < 2 || addrs.iter().any(String::is_empty) {
                return Err(Unavailable::Broken(format!(
                    "GOPUSH_TEST_REDIS={list} must list at least 2 host:port entries"
                )));
            }
            if poll_until(ENV_SERVER_TIMEOUT, || addrs.iter().all(|a| redis::ping(a))) {
                return Ok(Shared { addr: addrs, _keep: None });
            }
            let dead: Vec<&String> = addrs.iter().filter(|a| !redis::ping(a)).collect();
            return Err(Unavailable::NotServing(format!(
                "GOPUSH_TEST_REDIS lists {dead:?}, which do not answer PING with +PONG"
            )));
        }
        let servers = vec![RedisServer::launch()?, RedisServer::launch()?];
        Ok(Shared { addr: servers.iter().map(RedisServer::addr).collect(), _keep: Some(Box::new(servers)) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_carry_prefix_and_pid() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())), "{a}");
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "free_port repeated a port: {ports:?}");
        for p in ports {
            std::net::TcpListener::bind(("127.0.0.1", p)).expect("a free port should bind");
        }
    }

    #[test]
    fn missing_software_skips_locally_and_fails_under_ci() {
        let e = Unavailable::NotInstalled("ZooKeeper not installed (apt-get install zookeeper)".into());
        let skip = verdict(false, "a::test", "ZkServer", &e).expect("local run skips");
        assert_eq!(skip, "SKIPPED a::test (ZkServer): ZooKeeper not installed (apt-get install zookeeper)");
        let fail = verdict(true, "a::test", "ZkServer", &e).expect_err("CI never skips");
        assert!(fail.contains("apt-get install zookeeper redis-server"), "{fail}");

        let down = Unavailable::NotServing("GOPUSH_TEST_ZK=127.0.0.1:1 does not answer".into());
        assert!(verdict(false, "t", "shared ZooKeeper", &down).is_ok());
        assert!(verdict(true, "t", "shared ZooKeeper", &down).is_err());

        let broken = Unavailable::Broken("JVM exited".into());
        assert!(verdict(false, "t", "ZkServer", &broken).is_err(), "broken installs always fail");
    }

    #[test]
    fn port_clashes_are_retried_other_failures_are_not() {
        let mut calls = 0;
        let r: Result<(), _> = proc::retry_port_clash(|| {
            calls += 1;
            Err(Unavailable::Broken(format!("log says {}", proc::PORT_CLASH)))
        });
        assert!(r.is_err());
        assert_eq!(calls, 3, "a clash is retried twice with fresh ports");

        let mut calls = 0;
        let r: Result<(), _> = proc::retry_port_clash(|| {
            calls += 1;
            Err(Unavailable::Broken("JVM exited".into()))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
