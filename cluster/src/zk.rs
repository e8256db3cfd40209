//! A ZooKeeper session that outlives session expiry. The client library declares a session dead
//! after 1.4 × its timeout without a server; from then on every call fails, so a process that wants
//! to stay in the cluster must build a new client. [`Session`] does that in the background and
//! publishes each live client with a generation number; registrations and watchers re-arm when the
//! generation changes.

use crate::config::de_duration;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use zookeeper_client as zk;

/// Where ZooKeeper is and where in it gopush keeps its nodes (upstream's `[zookeeper]` section).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZkConfig {
    /// Comma-separated `host:port` list of the ensemble.
    pub addr: String,
    /// Session timeout; ephemeral nodes of a crashed process vanish after about this long.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Parent of the comet node znodes (`/<comet_path>/<node>/<seq>`).
    pub comet_path: String,
    /// Parent of the message instance znodes (`/<message_path>/<seq>`).
    pub message_path: String,
    /// Interval of the full re-read that backs up the watches.
    #[serde(deserialize_with = "de_duration")]
    pub resync: Duration,
}

impl Default for ZkConfig {
    fn default() -> Self {
        ZkConfig {
            addr: "127.0.0.1:2181".into(),
            timeout: Duration::from_secs(30),
            comet_path: "/gopush-cluster-comet".into(),
            message_path: "/gopush-cluster-message".into(),
            resync: Duration::from_secs(30),
        }
    }
}

/// A connected client and the generation of the session it belongs to.
#[derive(Clone)]
pub struct Live {
    /// The client of the current session.
    pub client: zk::Client,
    /// Increases by one each time a new session replaces an expired one.
    pub generation: u64,
}

/// A self-renewing ZooKeeper session; cheap to clone, closed when the last clone drops.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    config: ZkConfig,
    live: watch::Receiver<Option<Live>>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Starts connecting in the background and returns at once; see [`Session::live`].
    pub fn start(config: ZkConfig) -> Session {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(keep_session(config.clone(), tx));
        Session { inner: Arc::new(Inner { config, live: rx, task }) }
    }

    /// The configuration this session was started with.
    pub fn config(&self) -> &ZkConfig {
        &self.inner.config
    }

    /// The current live client, if connected.
    pub fn current(&self) -> Option<Live> {
        self.inner.live.borrow().clone()
    }

    /// Waits for a live client (no deadline: callers that need one add a timeout).
    pub async fn live(&self) -> Live {
        let mut rx = self.inner.live.clone();
        loop {
            if let Some(live) = rx.borrow_and_update().clone() {
                return live;
            }
            if rx.changed().await.is_err() {
                // The session task only ends when aborted, i.e. when the session is dropped.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Notifications of session changes (a new generation, or `None` while reconnecting).
    pub fn subscribe(&self) -> watch::Receiver<Option<Live>> {
        self.inner.live.clone()
    }
}

async fn keep_session(config: ZkConfig, tx: watch::Sender<Option<Live>>) {
    let mut generation = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        let connecting = zk::Client::connector()
            .with_session_timeout(config.timeout)
            .with_connection_timeout(config.timeout.min(Duration::from_secs(5)))
            .connect(&config.addr);
        match connecting.await {
            Ok(client) => {
                generation += 1;
                backoff = Duration::from_millis(100);
                info!(addr = %config.addr, generation, session = ?client.session_id(), "zookeeper session established");
                let mut state = client.state_watcher();
                tx.send_replace(Some(Live { client: client.clone(), generation }));
                loop {
                    let s = state.changed().await;
                    if s.is_terminated() {
                        warn!(addr = %config.addr, state = ?s, "zookeeper session ended; starting a new one");
                        break;
                    }
                }
                tx.send_replace(None);
            }
            Err(e) => {
                warn!(addr = %config.addr, error = %e, "cannot reach zookeeper; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(3));
            }
        }
    }
}

/// The open ACL upstream uses for every node.
pub(crate) fn open_acl(mode: zk::CreateMode) -> zk::CreateOptions<'static> {
    mode.with_acls(zk::Acls::anyone_all())
}

/// Creates `path` and its parents as persistent nodes; existing ones are fine.
pub(crate) async fn ensure_path(client: &zk::Client, path: &str) -> Result<(), zk::Error> {
    match client.mkdir(path, &open_acl(zk::CreateMode::Persistent)).await {
        Ok(()) | Err(zk::Error::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}
