//! The TOML files the harness hands to `gopush -c`: every port from `testkit::free_port()`, unique
//! ZooKeeper roots, short sessions (4 s), fast comet pings (300 ms × 3 failures) so pruning takes
//! about a second, and short migrate/drain spreads. Each file is parsed with its crate's own config
//! type first, so a renamed key fails here with the crate's message instead of as a process exit.

use testkit::free_port;

/// Where the cluster's nodes register: a ZooKeeper address and roots no other test uses.
#[derive(Clone, Debug)]
pub struct Zk {
    /// `host:port` of ZooKeeper.
    pub addr: String,
    /// Unique comet root.
    pub comet_path: String,
    /// Unique message root.
    pub message_path: String,
}

impl Zk {
    /// Unique roots on the ZooKeeper at `addr`.
    pub fn unique(addr: &str) -> Zk {
        Zk {
            addr: addr.to_string(),
            comet_path: format!("/{}", testkit::unique_name("comet")),
            message_path: format!("/{}", testkit::unique_name("message")),
        }
    }

    fn section(&self) -> String {
        format!(
            "[zookeeper]\naddr = \"{}\"\ntimeout = \"4s\"\ncomet_path = \"{}\"\nmessage_path = \"{}\"\nresync = \"2s\"\n",
            self.addr, self.comet_path, self.message_path
        )
    }
}

/// Calls to other nodes: short deadlines and pings so dead nodes are noticed within a second.
pub const RPC: &str = "[rpc]\nping = \"300ms\"\nping_failures = 3\ntimeout = \"2s\"\nconnect_timeout = \"500ms\"\n";

/// A comet's ports.
#[derive(Clone, Debug)]
pub struct CometPorts {
    /// Client TCP.
    pub tcp: u16,
    /// Client WebSocket.
    pub ws: u16,
    /// CometRpc.
    pub rpc: u16,
    /// `/metrics` and `/health`.
    pub stat: u16,
}

impl CometPorts {
    /// Four free ports.
    pub fn free() -> CometPorts {
        CometPorts { tcp: free_port(), ws: free_port(), rpc: free_port(), stat: free_port() }
    }

    fn section(&self) -> String {
        format!(
            "tcp_bind = [\"127.0.0.1:{}\"]\nws_bind = [\"127.0.0.1:{}\"]\nrpc_bind = [\"127.0.0.1:{}\"]\n\
             stat_bind = \"127.0.0.1:{}\"\nmigrate_grace = \"200ms\"\ndrain = \"200ms\"\n",
            self.tcp, self.ws, self.rpc, self.stat
        )
    }
}

/// A web node's ports.
#[derive(Clone, Debug)]
pub struct WebPorts {
    /// Public API.
    pub public: u16,
    /// Admin API.
    pub admin: u16,
    /// More lines for web's `[base]` section (say `cors_origins`).
    pub extra: String,
    /// Missed 300 ms pings after which web calls a comet dead (`[rpc] ping_failures`).
    pub ping_failures: u32,
}

impl WebPorts {
    /// Two free ports.
    pub fn free() -> WebPorts {
        WebPorts { public: free_port(), admin: free_port(), extra: String::new(), ping_failures: 3 }
    }

    fn section(&self) -> String {
        format!(
            "http_bind = \"127.0.0.1:{}\"\nadmin_bind = \"127.0.0.1:{}\"\n{}\n",
            self.public, self.admin, self.extra
        )
    }
}

/// `comet.toml` for ring node `node`, ending with `extra` (more sections, such as `[webhook]`).
pub fn comet(zk: &Zk, node: &str, ports: &CometPorts, extra: &str) -> String {
    let text = format!(
        "[base]\n{}register_timeout = \"60s\"\n\n{}\n[node]\nname = \"{node}\"\nweight = 1\n\n{RPC}\n{extra}",
        ports.section(),
        zk.section()
    );
    if let Err(e) = comet::CometConfig::from_toml(&text) {
        panic!("the harness wrote a comet config the comet crate refuses: {e}\n{text}");
    }
    text
}

/// `web.toml`.
pub fn web(zk: &Zk, ports: &WebPorts) -> String {
    let rpc = RPC.replace("ping_failures = 3", &format!("ping_failures = {}", ports.ping_failures));
    let text = format!("[base]\n{}\n{}\n{rpc}", ports.section(), zk.section());
    if let Err(e) = web::WebConfig::from_toml(&text) {
        panic!("the harness wrote a web config the web crate refuses: {e}\n{text}");
    }
    text
}

/// The `[redis]` section of plain shards `redis`, named node1, node2, ...
pub fn plain_store(redis: &[String], key_prefix: &str) -> String {
    let mut text = format!("[redis]\nstore = 200\nkey_prefix = \"{key_prefix}\"\ntimeout = \"1s\"\n\n");
    for (i, addr) in redis.iter().enumerate() {
        text.push_str(&format!(
            "[[redis.source]]\nname = \"node{}\"\nweight = 1\naddr = \"redis://{addr}\"\n\n",
            i + 1
        ));
    }
    text
}

/// `message.toml` with the storage sections `store` (`[storage]`, `[redis]` and its tables).
pub fn message_with(zk: &Zk, rpc: u16, stat: u16, store: &str) -> String {
    let mut text = format!("[base]\nrpc_bind = [\"127.0.0.1:{rpc}\"]\nstat_bind = \"127.0.0.1:{stat}\"\n\n{store}\n");
    text.push_str(&zk.section());
    if let Err(e) = message::MessageConfig::from_toml(&text) {
        panic!("the harness wrote a message config the message crate refuses: {e}\n{text}");
    }
    text
}

/// `standalone.toml`: web and comet sections, no ZooKeeper or Redis, ending with `extra`.
pub fn standalone(web: &WebPorts, comet: &CometPorts, extra: &str) -> String {
    let text =
        format!("[web.base]\n{}\n[comet.base]\n{}\n[store]\nstore = 20\n{extra}", web.section(), comet.section());
    if let Err(e) = gopush::load::parse::<gopush::standalone::StandaloneConfig>(&text) {
        panic!("the harness wrote a standalone config gopush refuses: {e}\n{text}");
    }
    text
}
