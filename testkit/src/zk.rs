//! Private ZooKeeper servers on loopback: a standalone [`ZkServer`] and an N-node [`ZkEnsemble`],
//! run from Debian's `zookeeper` package jars with a capped Java heap. Readiness is the `srvr`
//! four-letter word answering a `Mode:` line, because `ruok` says `imok` even without a quorum.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::proc::{Watched, find_program, free_port, log_tail, retry_port_clash, scratch_dir, write_file};
use crate::{READY_TIMEOUT, Unavailable, poll_until, settle};

/// Debian's ZooKeeper classpath; the conf dir supplies log4j.properties.
const CLASSPATH: &str =
    "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar";

/// The jars that must exist for ZooKeeper to count as installed.
const JARS: [&str; 3] =
    ["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"];

/// Settings shared by standalone and ensemble nodes: short ticks so session expiry tests are fast.
const COMMON_CFG: &str = "tickTime=500
minSessionTimeout=1000
maxSessionTimeout=30000
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,cons
forceSync=no
";

/// The `java` binary, if ZooKeeper (jars + a JRE) is installed.
fn java() -> Result<PathBuf, Unavailable> {
    if let Some(missing) = JARS.iter().find(|j| !Path::new(j).is_file()) {
        return Err(Unavailable::NotInstalled(format!(
            "ZooKeeper not installed: {missing} missing (apt-get install zookeeper)"
        )));
    }
    find_program("java").ok_or_else(|| {
        Unavailable::NotInstalled("ZooKeeper not installed: no `java` on PATH (apt-get install zookeeper)".into())
    })
}

/// Sends a four-letter word and returns the whole answer; `None` if the server is unreachable.
fn four_letter(addr: &str, word: &str) -> Option<String> {
    let sock: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    // The server closes the connection after answering, so read to EOF.
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The node's `Mode:` from `srvr` ("standalone", "leader", "follower", ...), `None` if not serving.
pub(crate) fn mode(addr: &str) -> Option<String> {
    let answer = four_letter(addr, "srvr")?;
    answer.lines().find_map(|l| l.strip_prefix("Mode:")).map(|m| m.trim().to_string())
}

/// Whether a node in this mode is part of a working quorum.
pub(crate) fn in_quorum(mode: Option<&str>) -> bool {
    matches!(mode, Some("leader" | "follower"))
}

/// One ZooKeeper JVM: its directory, config, port and (while running) process.
struct Node {
    dir: PathBuf,
    port: u16,
    java: PathBuf,
    /// Directory the watchdog removes if the test binary dies (the whole server or ensemble dir).
    cleanup: PathBuf,
    proc: Option<Watched>,
}

impl Node {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("zk.log")
    }

    /// Starts the JVM (no wait); the config is already in `dir/zoo.cfg`.
    fn launch(&mut self) -> Result<(), Unavailable> {
        if self.proc.is_some() {
            return Ok(());
        }
        let mut cmd = Command::new(&self.java);
        cmd.current_dir(&self.dir)
            .args(["-Xmx192m", "-XX:+UseSerialGC"])
            // Faster JVM start on 2 busy cores; a test server needs no peak JIT performance.
            .args(["-XX:TieredStopAtLevel=1", "-XX:-UsePerfData"])
            .arg(format!("-Dzookeeper.log.dir={}", self.dir.display()))
            .arg("-Dzookeeper.root.logger=INFO,CONSOLE")
            .args(["-cp", CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain"])
            .arg(self.dir.join("zoo.cfg"));
        let guarded = Watched::spawn(cmd, &self.log(), Some(&self.cleanup))
            .map_err(|e| Unavailable::Broken(format!("ZooKeeper on {}: {e}", self.addr())))?;
        self.proc = Some(guarded);
        Ok(())
    }

    /// Error text for a node that is not serving: exit status if it died, plus its log tail.
    fn failure(&mut self, what: &str) -> String {
        let status = match self.proc.as_mut().and_then(Watched::exited) {
            Some(s) => format!("the JVM exited ({s})"),
            None => format!("not serving after {}s", READY_TIMEOUT.as_secs()),
        };
        format!("{what} on {}: {status}\n{}", self.addr(), log_tail(&self.log(), 20))
    }

    /// Whether the JVM has died (then waiting longer is pointless).
    fn died(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|g| g.exited().is_some())
    }

    /// Waits until `srvr` reports a Mode; kills the node and fails with its log otherwise.
    fn wait_serving(&mut self, what: &str) -> Result<(), Unavailable> {
        let addr = self.addr();
        let mut dead = false;
        let ok = poll_until(READY_TIMEOUT, || {
            dead = dead || self.died();
            dead || mode(&addr).is_some()
        });
        if ok && !dead {
            return Ok(());
        }
        let msg = self.failure(what);
        self.proc = None;
        Err(Unavailable::Broken(msg))
    }
}

/// A private standalone ZooKeeper a test owns and may stop and restart (for destructive tests).
pub struct ZkServer {
    node: Node,
}

impl ZkServer {
    /// Starts a standalone server on a free loopback port; `None` (local) if ZooKeeper is not installed.
    pub fn start() -> Option<ZkServer> {
        settle("ZkServer", Self::launch())
    }

    /// [`Self::start`] without the skip/panic decision, for the shared server.
    pub(crate) fn launch() -> Result<ZkServer, Unavailable> {
        let java = java()?;
        retry_port_clash(|| Self::launch_once(java.clone()))
    }

    fn launch_once(java: PathBuf) -> Result<ZkServer, Unavailable> {
        let dir = scratch_dir("zk");
        let port = free_port();
        write_file(
            &dir.join("zoo.cfg"),
            &format!("{COMMON_CFG}dataDir={}\nclientPort={port}\n", dir.join("data").display()),
        );
        // Constructed before launching so that Drop removes the directory on any failure path.
        let mut server = ZkServer { node: Node { cleanup: dir.clone(), dir, port, java, proc: None } };
        server.node.launch()?;
        server.node.wait_serving("ZooKeeper")?;
        Ok(server)
    }

    /// The client address, "127.0.0.1:port".
    pub fn addr(&self) -> String {
        self.node.addr()
    }

    /// Kills the server and waits for it to exit; its port and data stay reserved for [`Self::start_again`].
    pub fn stop(&mut self) {
        self.node.proc = None;
    }

    /// Restarts a stopped server on the same port and data dir; blocks until it serves (panics if it does not).
    pub fn start_again(&mut self) {
        if self.node.proc.is_some() {
            return;
        }
        let r = self.node.launch().and_then(|()| self.node.wait_serving("ZooKeeper (restart)"));
        if let Err(e) = r {
            panic!("ZkServer::start_again: {e}");
        }
    }

    /// Whether the server process is alive (it may still be starting up).
    pub fn is_running(&self) -> bool {
        self.node.proc.as_ref().is_some_and(Watched::alive)
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.node.proc = None;
        let _ = std::fs::remove_dir_all(&self.node.dir);
    }
}

/// A private N-node ZooKeeper ensemble on loopback whose nodes a test may kill and restart.
pub struct ZkEnsemble {
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl ZkEnsemble {
    /// Starts `n` nodes and blocks until all serve and a leader exists; `None` (local) if not installed.
    pub fn start(n: usize) -> Option<ZkEnsemble> {
        settle("ZkEnsemble", Self::launch(n))
    }

    /// [`Self::start`] without the skip/panic decision, for the shared ensemble.
    pub(crate) fn launch(n: usize) -> Result<ZkEnsemble, Unavailable> {
        assert!(n >= 1, "ZkEnsemble::start needs at least one node");
        let java = java()?;
        retry_port_clash(|| Self::launch_once(n, &java))
    }

    fn launch_once(n: usize, java: &Path) -> Result<ZkEnsemble, Unavailable> {
        let dir = scratch_dir("zk-ensemble");
        // Client, quorum and election port per node, all picked free (no fixed 218x/288x/388x).
        let ports: Vec<[u16; 3]> = (0..n).map(|_| [free_port(), free_port(), free_port()]).collect();
        let servers: String =
            ports.iter().enumerate().map(|(i, [_, q, e])| format!("server.{}=127.0.0.1:{q}:{e}\n", i + 1)).collect();
        let mut ensemble = ZkEnsemble { dir: dir.clone(), nodes: Vec::new() };
        for (i, [client, _, _]) in ports.iter().enumerate() {
            let node_dir = dir.join(format!("node{}", i + 1));
            let data = node_dir.join("data");
            std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", data.display()));
            write_file(&data.join("myid"), &format!("{}\n", i + 1));
            write_file(
                &node_dir.join("zoo.cfg"),
                &format!(
                    "{COMMON_CFG}initLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={client}\n{servers}",
                    data.display()
                ),
            );
            ensemble.nodes.push(Node {
                dir: node_dir,
                port: *client,
                java: java.to_path_buf(),
                cleanup: dir.clone(),
                proc: None,
            });
        }
        for node in &mut ensemble.nodes {
            node.launch()?;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        for i in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            let addr = ensemble.nodes[i].addr();
            let node = &mut ensemble.nodes[i];
            let ok = poll_until(left, || node.died() || mode(&addr).is_some());
            if !ok || node.died() {
                return Err(Unavailable::Broken(node.failure("ZooKeeper ensemble node")));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if n > 1 && !ensemble.wait_for_quorum(left.max(Duration::from_secs(1))) {
            let logs: Vec<String> = ensemble.nodes.iter().map(|nd| log_tail(&nd.log(), 20)).collect();
            return Err(Unavailable::Broken(format!(
                "ZooKeeper ensemble {} elected no leader within {}s\n{}",
                ensemble.addr(),
                READY_TIMEOUT.as_secs(),
                logs.join("\n")
            )));
        }
        Ok(ensemble)
    }

    /// The connect string of all nodes, "127.0.0.1:a,127.0.0.1:b,...".
    pub fn addr(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(Node::addr).collect();
        addrs.join(",")
    }

    /// Index of the running node whose `srvr` says `Mode: leader`.
    pub fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|n| n.proc.is_some() && mode(&n.addr()).as_deref() == Some("leader"))
    }

    /// SIGKILLs node `i` and waits for it to exit (no-op if already killed).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].proc = None;
    }

    /// Restarts a killed node `i` with its data; blocks until it serves (panics if it does not).
    pub fn start_again(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.proc.is_some() {
            return;
        }
        if let Err(e) = node.launch().and_then(|()| node.wait_serving("ZooKeeper ensemble node (restart)")) {
            panic!("ZkEnsemble::start_again({i}): {e}");
        }
    }

    /// Waits until a live node is leader and a majority of all nodes are leader/follower.
    pub fn wait_for_quorum(&self, timeout: Duration) -> bool {
        // A lone "follower" may be stale for a moment after its leader died, so require the leader
        // and a majority, which is what clients need to be served.
        let majority = self.nodes.len() / 2 + 1;
        poll_until(timeout, || {
            let modes: Vec<Option<String>> =
                self.nodes.iter().filter(|n| n.proc.is_some()).map(|n| mode(&n.addr())).collect();
            if self.nodes.len() == 1 {
                // A one-node "ensemble" runs in standalone mode.
                return modes.iter().any(Option::is_some);
            }
            let serving = modes.iter().filter(|m| in_quorum(m.as_deref())).count();
            let leader = modes.iter().any(|m| m.as_deref() == Some("leader"));
            leader && serving >= majority
        })
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.proc = None;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
