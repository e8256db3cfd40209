//! A ZooKeeper session that outlives session expiry. The client library declares a session dead
//! after 1.4 × its timeout without a server; from then on every call fails, so a process that wants
//! to stay in the cluster must build a new client. [`Session`] does that in the background and
//! publishes each live client with a generation number; registrations and watchers re-arm when the
//! generation changes.

use crate::config::de_duration;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
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
    // True while the client is connected to a server; a session can outlive a disconnection, so
    // `live` alone does not say whether ZooKeeper can be seen right now.
    connected: Arc<AtomicBool>,
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
        let connected = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(keep_session(config.clone(), tx, connected.clone()));
        Session { inner: Arc::new(Inner { config, live: rx, connected, task }) }
    }

    /// The configuration this session was started with.
    pub fn config(&self) -> &ZkConfig {
        &self.inner.config
    }

    /// True while connected to a ZooKeeper server (a kept session may be disconnected for a while).
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// The current live client, if a session exists (it may be disconnected: see [`Session::connected`]).
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

/// How long a connect attempt may go unanswered before the outage is reported; the attempt itself
/// goes on, since the client library keeps trying the ensemble's hosts within its own deadline.
const SLOW_CONNECT: Duration = Duration::from_secs(2);

async fn keep_session(config: ZkConfig, tx: watch::Sender<Option<Live>>, up: Arc<AtomicBool>) {
    let mut generation = 0u64;
    // Operators need to hear about an outage once, not once per retry every few seconds.
    let mut link = Link::default();
    let addr = config.addr.as_str();
    // A client the rescue below already connected, to be published as the next generation.
    let mut rescued: Option<zk::Client> = None;
    loop {
        let client = match rescued.take() {
            Some(client) => client,
            None => connect(&config, &mut link).await,
        };
        generation += 1;
        let session = client.session_id();
        match link.up() {
            Some(after) => {
                info!(addr, generation, ?session, ?after, "zookeeper session established (reachable again)")
            }
            None => info!(addr, generation, ?session, "zookeeper session established"),
        }
        let mut state = client.state_watcher();
        up.store(true, Ordering::Relaxed);
        tx.send_replace(Some(Live { client: client.clone(), generation }));
        let mut lost_since: Option<Instant> = None;
        loop {
            let rescue = async {
                match lost_since {
                    Some(since) => rescue(&config, since).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                s = state.changed() => {
                    if s.is_terminated() {
                        warn!(addr, state = ?s, "zookeeper session ended; starting a new one");
                        break;
                    }
                    match s {
                        zk::SessionState::Disconnected => {
                            up.store(false, Ordering::Relaxed);
                            lost_since = lost_since.or(Some(Instant::now()));
                            link.down(addr, "connection lost");
                        }
                        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                            up.store(true, Ordering::Relaxed);
                            lost_since = None;
                            if let Some(after) = link.up() {
                                info!(addr, ?after, "zookeeper reachable again; session kept");
                            }
                        }
                        _ => {}
                    }
                }
                fresh = rescue => {
                    warn!(
                        addr,
                        old = ?session,
                        "zookeeper answers again but the session, unseen past its timeout, has not come back; \
                         replacing it with a new one"
                    );
                    rescued = Some(fresh);
                    break;
                }
            }
        }
        up.store(false, Ordering::Relaxed);
        tx.send_replace(None);
    }
}

/// Connects a new session, retrying with a capped back-off until one is established.
async fn connect(config: &ZkConfig, link: &mut Link) -> zk::Client {
    let addr = config.addr.as_str();
    let mut backoff = Duration::from_millis(100);
    loop {
        let connecting = zk::Client::connector()
            .with_session_timeout(config.timeout)
            .with_connection_timeout(config.timeout.min(Duration::from_secs(5)))
            .connect(addr);
        tokio::pin!(connecting);
        let connected = tokio::select! {
            r = &mut connecting => r,
            _ = tokio::time::sleep(SLOW_CONNECT) => {
                link.down(addr, "no session within 2s");
                connecting.await
            }
        };
        match connected {
            Ok(client) => return client,
            Err(e) => {
                link.down(addr, &e.to_string());
                debug!(addr, error = %e, "cannot reach zookeeper; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESCUE_BACKOFF);
            }
        }
    }
}

/// Longest pause between two attempts at a new session.
const RESCUE_BACKOFF: Duration = Duration::from_secs(1);

/// Once a session has been unseen for longer than its timeout, tries a new session every second at
/// most and returns the first one established.
///
/// Until then the client library resumes the session itself, but its back-off doubles with every
/// failed attempt: after a 30 s outage it waited ~11 s more before trying again, and a comet cut off
/// for the whole outage took no subscriptions meanwhile. Past the timeout the server has expired the
/// session, or will drop it soon after it comes back, so a new one loses nothing: the abandoned
/// client ends its own session when it next connects, and registration removes the old znode.
async fn rescue(config: &ZkConfig, lost_since: Instant) -> zk::Client {
    tokio::time::sleep_until((lost_since + config.timeout).into()).await;
    let mut backoff = Duration::from_millis(250);
    loop {
        let attempt = zk::Client::connector()
            .with_session_timeout(config.timeout)
            .with_connection_timeout(config.timeout.min(Duration::from_secs(2)))
            // One pass over the ensemble, then our own back-off, not the library's doubling one.
            .with_fail_eagerly()
            .connect(&config.addr)
            .await;
        match attempt {
            Ok(client) => return client,
            Err(e) => debug!(addr = %config.addr, error = %e, "no new session yet; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESCUE_BACKOFF);
    }
}

/// Whether ZooKeeper answered last time we tried, so each change is logged exactly once.
#[derive(Default)]
struct Link {
    /// Set while ZooKeeper is unreachable (after the WARN, before the INFO).
    down_since: Option<Instant>,
}

impl Link {
    /// A connect attempt failed, is slow, or the connection dropped: WARN on the first one only.
    fn down(&mut self, addr: &str, why: &str) {
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            warn!(addr, error = why, "zookeeper unreachable; retrying quietly until it answers");
        }
    }

    /// Connected: how long the reported outage lasted, if one was reported (the caller logs it).
    fn up(&mut self) -> Option<Duration> {
        self.down_since.take().map(|since| since.elapsed())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;
    use tracing_subscriber::fmt::MakeWriter;

    const WARNED: &str = "zookeeper unreachable";
    const RECOVERED: &str = "reachable again";

    /// Everything the code under test logged, as text.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Log {
        type Writer = Log;
        fn make_writer(&'a self) -> Log {
            self.clone()
        }
    }

    impl Log {
        fn count(&self, needle: &str) -> usize {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).matches(needle).count()
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }

        /// Waits until `needle` was logged at least once; panics with the log after `limit`.
        async fn wait_for(&self, needle: &str, limit: Duration) {
            let deadline = Instant::now() + limit;
            while self.count(needle) == 0 {
                assert!(Instant::now() < deadline, "no {needle:?} within {limit:?}; log:\n{}", self.text());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Captures INFO and above from this (current-thread) runtime's tasks.
    fn capture() -> (Log, tracing::subscriber::DefaultGuard) {
        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    fn config(addr: String) -> ZkConfig {
        ZkConfig { addr, timeout: Duration::from_secs(30), ..ZkConfig::default() }
    }

    #[tokio::test]
    async fn an_unreachable_zookeeper_is_reported_once_not_per_retry() {
        let (log, _guard) = capture();
        let port = testkit::free_port(); // nothing listens there
        let _session = Session::start(config(format!("127.0.0.1:{port}")));
        log.wait_for(WARNED, Duration::from_secs(10)).await;
        // Several connect attempts later, still the one line.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(log.count(WARNED), 1, "{}", log.text());
        assert_eq!(log.count(" WARN "), 1, "{}", log.text());
    }

    #[tokio::test]
    async fn an_outage_is_reported_once_and_its_end_once() {
        let Some(mut zk) = testkit::ZkServer::start() else { return };
        let (log, _guard) = capture();
        let session = Session::start(config(zk.addr()));
        tokio::time::timeout(Duration::from_secs(60), session.live()).await.expect("connects to ZooKeeper");
        assert_eq!(log.count(WARNED), 0, "{}", log.text());

        zk.stop();
        log.wait_for(WARNED, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_secs(4)).await; // the client keeps retrying meanwhile
        assert_eq!(log.count(WARNED), 1, "{}", log.text());

        zk.start_again();
        log.wait_for(RECOVERED, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!((log.count(WARNED), log.count(RECOVERED)), (1, 1), "{}", log.text());
    }
}
