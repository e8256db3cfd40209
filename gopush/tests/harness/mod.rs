//! The whole-cluster test harness: real `gopush` processes (message, comets, web, or standalone)
//! started from TOML files in a scratch directory, against ZooKeeper and Redis from `testkit`, plus
//! the clients a real user has (HTTP, TCP and WebSocket subscribers). Every child is killed when
//! its handle drops, and its log is printed when the test fails.

pub mod browser;
pub mod client;
pub mod config;
pub mod http;
pub mod proc;
// Only the presence tests take webhooks; other test binaries leave it unused.
#[allow(dead_code)]
pub mod receiver;

use config::{CometPorts, WebPorts, Zk};
use proc::{Gopush, TempDir};
use std::time::Duration;
pub use testkit::eventually;

/// How long the harness waits for a process to serve: generous, a debug build on a busy 2-core box.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `GET http://addr/health` answered 200.
pub async fn healthy(addr: &str) -> bool {
    http::get(addr, "/health").await.is_ok_and(|r| r.status() == 200)
}

/// The ring node the comet ring built from `nodes` (all weight 1) gives `key`.
pub fn owner(nodes: &[&str], key: &str) -> String {
    let ring = ring::Ring::sha1(nodes.iter().map(|n| (*n, 1u32)));
    ring.get(key.as_bytes()).unwrap_or_else(|| panic!("empty ring {nodes:?}")).to_string()
}

/// Keys `<prefix>-<i>` that the ring over `nodes` gives to `node`, the first `n` of them.
pub fn keys_owned_by(nodes: &[&str], node: &str, prefix: &str, n: usize) -> Vec<String> {
    (0..10_000).map(|i| format!("{prefix}-{i}")).filter(|k| owner(nodes, k) == node).take(n).collect()
}

/// A running comet process.
pub struct CometProc {
    /// Its ring node name.
    pub node: String,
    /// Its ports.
    pub ports: CometPorts,
    /// The process.
    pub proc: Gopush,
}

impl CometProc {
    /// The TCP address web hands out for it.
    pub fn tcp(&self) -> String {
        format!("127.0.0.1:{}", self.ports.tcp)
    }

    /// The WebSocket address web hands out for it.
    pub fn ws(&self) -> String {
        format!("127.0.0.1:{}", self.ports.ws)
    }

    /// Its stat port.
    pub fn stat(&self) -> String {
        format!("127.0.0.1:{}", self.ports.stat)
    }
}

/// A cluster: one message node, comets, one web node, all real processes.
pub struct Cluster {
    /// The comets, in start order.
    pub comets: Vec<CometProc>,
    /// The web node.
    pub web: Gopush,
    /// The message node.
    pub message: Gopush,
    /// The message node's stat port.
    pub message_stat: u16,
    web_ports: WebPorts,
    zk: Zk,
    dir: TempDir,
    comet_extra: String,
}

impl Cluster {
    /// Starts message, one comet per name in `nodes`, and web, against ZooKeeper `zk_addr` (unique
    /// roots) and the Redis servers `redis` (a unique key prefix); returns when a push is stored
    /// and every comet is routed to by web.
    pub async fn start(zk_addr: &str, redis: &[String], nodes: &[&str]) -> Cluster {
        Cluster::start_with(zk_addr, redis, nodes, WebPorts::free(), "").await
    }

    /// [`Cluster::start`] with web on `web_ports` (and its extra config lines) and `comet_extra`
    /// appended to every comet's file.
    pub async fn start_with(
        zk_addr: &str,
        redis: &[String],
        nodes: &[&str],
        web_ports: WebPorts,
        comet_extra: &str,
    ) -> Cluster {
        let prefix = format!("{}:", testkit::unique_name("gp"));
        Cluster::launch(zk_addr, &config::plain_store(redis, &prefix), nodes, web_ports, comet_extra).await
    }

    /// Like [`Cluster::start`] with the message node's storage sections written by the caller
    /// (a Redis Cluster, Sentinel shards, `wait_replicas`).
    pub async fn start_with_store(zk_addr: &str, store: &str, nodes: &[&str]) -> Cluster {
        Cluster::launch(zk_addr, store, nodes, WebPorts::free(), "").await
    }

    // Message and web run on one thread (`--threads 1`), their runtime when pinned to a CPU; comets
    // and standalone keep the default pool, so the tests cover both runtimes.
    async fn launch(zk_addr: &str, store: &str, nodes: &[&str], web_ports: WebPorts, comet_extra: &str) -> Cluster {
        let dir = TempDir::new("cluster");
        let zk = Zk::unique(zk_addr);
        let (rpc, stat) = (testkit::free_port(), testkit::free_port());
        let path = dir.write("message.toml", &config::message_with(&zk, rpc, stat, store));
        let message = Gopush::spawn("message", dir.path(), &["--threads", "1", "message", "-c", &path]);
        let mut comets = Vec::new();
        for node in nodes {
            comets.push(spawn_comet(&dir, &zk, node, comet_extra));
        }
        let path = dir.write("web.toml", &config::web(&zk, &web_ports));
        let web = Gopush::spawn("web", dir.path(), &["--threads", "1", "web", "-c", &path]);
        let comet_extra = comet_extra.to_string();
        let mut cluster = Cluster { comets, web, message, message_stat: stat, web_ports, zk, dir, comet_extra };
        cluster.wait_ready().await;
        cluster
    }

    /// The public API address.
    pub fn public(&self) -> String {
        format!("127.0.0.1:{}", self.web_ports.public)
    }

    /// The admin API address.
    pub fn admin(&self) -> String {
        format!("127.0.0.1:{}", self.web_ports.admin)
    }

    /// The comet running ring node `node`.
    pub fn comet(&self, node: &str) -> &CometProc {
        self.comets.iter().find(|c| c.node == node).unwrap_or_else(|| panic!("no comet {node}"))
    }

    /// The comet running ring node `node`, mutably.
    pub fn comet_mut(&mut self, node: &str) -> &mut CometProc {
        self.comets.iter_mut().find(|c| c.node == node).unwrap_or_else(|| panic!("no comet {node}"))
    }

    /// The ring node names of the running comets.
    pub fn nodes(&self) -> Vec<&str> {
        self.comets.iter().map(|c| c.node.as_str()).collect()
    }

    /// Starts one more comet under ring node `node` and waits until web routes to it.
    pub async fn add_comet(&mut self, node: &str) {
        let zk = self.zk.addr.clone();
        self.add_comet_via(&zk, node).await;
    }

    /// [`Cluster::add_comet`] for a comet that reaches ZooKeeper at `zk_addr` (a [`testkit::TcpProxy`]
    /// that can cut its path, say) instead of the cluster's address.
    pub async fn add_comet_via(&mut self, zk_addr: &str, node: &str) {
        let zk = Zk { addr: zk_addr.to_string(), ..self.zk.clone() };
        self.comets.push(spawn_comet(&self.dir, &zk, node, &self.comet_extra));
        self.wait_ready().await;
    }

    /// Starts ring node `node` again, on the same ports, after a kill; waits until web routes to it.
    pub async fn restart_comet(&mut self, node: &str) {
        let i = self.comets.iter().position(|c| c.node == node).unwrap_or_else(|| panic!("no comet {node}"));
        let ports = self.comets[i].ports.clone();
        let path =
            self.dir.write(&format!("comet-{node}.toml"), &config::comet(&self.zk, node, &ports, &self.comet_extra));
        self.comets[i].proc = Gopush::spawn(&format!("comet-{node}"), self.dir.path(), &["comet", "-c", &path]);
        self.wait_ready().await;
    }

    /// Waits until ZooKeeper shows every comet node and the message node registered with a sequence
    /// of at least `min_seq` and nothing older: every process re-registered (after a session loss).
    pub async fn wait_registered(&self, min_seq: u64, limit: Duration) {
        let zk = cluster::ZkConfig {
            addr: self.zk.addr.clone(),
            timeout: Duration::from_secs(4),
            comet_path: self.zk.comet_path.clone(),
            message_path: self.zk.message_path.clone(),
            resync: Duration::from_millis(500),
        };
        let session = cluster::Session::start(zk);
        let comets = cluster::membership::watch_comets(&session);
        let messages = cluster::membership::watch_messages(&session);
        let nodes: Vec<String> = self.nodes().iter().map(|s| s.to_string()).collect();
        eventually(&format!("every process registered anew (sequence >= {min_seq})"), limit, || {
            let (c, m) = (comets.borrow().clone(), messages.borrow().clone());
            let comets_ok = nodes
                .iter()
                .all(|n| c.nodes.get(n).is_some_and(|node| node.active.seq >= min_seq && node.standbys.is_empty()));
            let messages_ok = m.instances.len() == 1 && m.instances.iter().all(|i| i.seq >= min_seq);
            std::future::ready(comets_ok && messages_ok)
        })
        .await;
    }

    /// Panics (with the log) if any process has exited.
    pub fn assert_alive(&mut self) {
        self.message.assert_alive();
        self.web.assert_alive();
        for c in &mut self.comets {
            c.proc.assert_alive();
        }
    }

    /// Waits for: every comet healthy, the message node healthy, web routing a key of every comet
    /// to it, and a stored push (so comets see the message node).
    pub async fn wait_ready(&mut self) {
        let stat = format!("127.0.0.1:{}", self.message_stat);
        self.wait_healthy("message", &stat).await;
        for i in 0..self.comets.len() {
            let (name, addr) = (self.comets[i].proc.name().to_string(), self.comets[i].stat());
            self.wait_healthy(&name, &addr).await;
        }
        let nodes: Vec<String> = self.nodes().iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        for c in 0..self.comets.len() {
            let key = keys_owned_by(&refs, &self.comets[c].node, "probe", 1).remove(0);
            let want = self.comets[c].tcp();
            let public = self.public();
            self.assert_alive();
            eventually(&format!("web to route {key} to {want}"), READY_TIMEOUT, || {
                let (public, key, want) = (public.clone(), key.clone(), want.clone());
                async move { http::server_get(&public, &key, 2).await == Some(want) }
            })
            .await;
        }
        let (admin, key) = (self.admin(), refs.first().map_or("probe".to_string(), |n| format!("probe-{n}")));
        eventually("a stored push (expire > 0) to answer ret 0", READY_TIMEOUT, || {
            let (admin, key) = (admin.clone(), key.clone());
            async move { http::push(&admin, &key, 60, "{\"probe\":1}").await == Some(0) }
        })
        .await;
    }

    async fn wait_healthy(&mut self, name: &str, addr: &str) {
        eventually(&format!("{name} to be healthy on {addr}"), READY_TIMEOUT, || {
            self.assert_alive();
            let addr = addr.to_string();
            async move { healthy(&addr).await }
        })
        .await;
    }
}

fn spawn_comet(dir: &TempDir, zk: &Zk, node: &str, extra: &str) -> CometProc {
    let ports = CometPorts::free();
    let path = dir.write(&format!("comet-{node}.toml"), &config::comet(zk, node, &ports, extra));
    let proc = Gopush::spawn(&format!("comet-{node}"), dir.path(), &["comet", "-c", &path]);
    CometProc { node: node.to_string(), ports, proc }
}

/// `gopush standalone` as one process.
pub struct Standalone {
    /// The process.
    pub proc: Gopush,
    /// Web's ports.
    pub web: WebPorts,
    /// The comet's ports.
    pub comet: CometPorts,
    _dir: TempDir,
}

impl Standalone {
    /// Starts `gopush standalone -c <file>` on free ports and waits until web routes a key.
    pub async fn start() -> Standalone {
        Standalone::start_with(WebPorts::free(), "").await
    }

    /// [`Standalone::start`] with web on `web` (and its extra config lines) and `extra` appended to
    /// the file (more sections).
    pub async fn start_with(web: WebPorts, extra: &str) -> Standalone {
        let dir = TempDir::new("standalone");
        let comet = CometPorts::free();
        let path = dir.write("standalone.toml", &config::standalone(&web, &comet, extra));
        let mut proc = Gopush::spawn("standalone", dir.path(), &["standalone", "-c", &path]);
        let public = format!("127.0.0.1:{}", web.public);
        eventually("standalone to serve", READY_TIMEOUT, || {
            proc.assert_alive();
            let public = public.clone();
            async move { http::server_get(&public, "probe", 2).await.is_some() }
        })
        .await;
        Standalone { proc, web, comet, _dir: dir }
    }

    /// The public API address.
    pub fn public(&self) -> String {
        format!("127.0.0.1:{}", self.web.public)
    }

    /// The admin API address.
    pub fn admin(&self) -> String {
        format!("127.0.0.1:{}", self.web.admin)
    }
}
