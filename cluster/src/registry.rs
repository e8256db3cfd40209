//! Keeps this process registered in ZooKeeper as an ephemeral sequential znode under a parent
//! (`/<comet_path>/<node>` for comets, `/<message_path>` for message nodes). The znode is created again
//! with a new session after expiry, and again after a backoff if someone else deletes it (web prunes
//! instances that stop answering pings). [`Registration::deregister`] removes it on shutdown.

use crate::node::NodeInfo;
use crate::zk::{Live, Session, ensure_path, open_acl};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zookeeper_client as zk;

/// Why [`delete_instance`] could not delete a znode.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// No live session: ZooKeeper is unreachable or the session is being replaced.
    #[error("zookeeper is unreachable")]
    NoSession,
    /// ZooKeeper failed the delete.
    #[error("zookeeper: {0}")]
    Zk(String),
}

/// Deletes another process's registration at `path`, as web does to prune a comet that stopped
/// answering. Several callers may race for the same znode, so one that is already gone is success:
/// `Ok(true)` when this call deleted it, `Ok(false)` when it was gone. Callers add their own deadline.
pub async fn delete_instance(session: &Session, path: &str) -> Result<bool, DeleteError> {
    let live = session.current().ok_or(DeleteError::NoSession)?;
    match live.client.delete(path, None).await {
        Ok(()) => Ok(true),
        Err(zk::Error::NoNode) => Ok(false),
        Err(e) => Err(DeleteError::Zk(e.to_string())),
    }
}

/// Default wait before re-creating a znode that someone else deleted.
pub const DEFAULT_REREGISTER_BACKOFF: Duration = Duration::from_secs(2);

/// A live registration; dropping it stops keeping the znode (the session close removes it).
pub struct Registration {
    path: watch::Receiver<Option<String>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// Registers a comet instance under `/<comet_path>/<node>`.
    pub fn comet(session: &Session, node: &str, info: &NodeInfo) -> Registration {
        let parent = format!("{}/{}", session.config().comet_path.trim_end_matches('/'), node);
        Registration::start(session.clone(), parent, info, DEFAULT_REREGISTER_BACKOFF)
    }

    /// Registers a message instance under `/<message_path>`.
    pub fn message(session: &Session, info: &NodeInfo) -> Registration {
        let parent = session.config().message_path.trim_end_matches('/').to_string();
        Registration::start(session.clone(), parent, info, DEFAULT_REREGISTER_BACKOFF)
    }

    /// Registers `info` as an ephemeral sequential child of `parent`, re-creating it after a
    /// deletion by others once `backoff` has passed.
    pub fn start(session: Session, parent: String, info: &NodeInfo, backoff: Duration) -> Registration {
        let (tx, rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep_registered(session, parent, info.to_json(), backoff, tx, stop.clone()));
        Registration { path: rx, stop, task: Some(task) }
    }

    /// The znode path currently held, if registered right now.
    pub fn path(&self) -> Option<String> {
        self.path.borrow().clone()
    }

    /// Changes of the held path (`None` while re-registering).
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.path.clone()
    }

    /// Waits until the znode exists and returns its path.
    pub async fn registered(&self) -> String {
        let mut rx = self.path.clone();
        loop {
            if let Some(p) = rx.borrow_and_update().clone() {
                return p;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Deletes the znode and stops; waits at most a few seconds for ZooKeeper.
    pub async fn deregister(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

enum Next {
    /// The session changed: register with the new one at once.
    NewSession,
    /// Our znode was deleted by someone else: wait the backoff, then register again.
    Deleted,
    Stop,
}

async fn keep_registered(
    session: Session,
    parent: String,
    data: Vec<u8>,
    backoff: Duration,
    path_tx: watch::Sender<Option<String>>,
    stop: CancellationToken,
) {
    let mut sessions = session.subscribe();
    // A znode of an earlier session that may linger on the server until it expires it there.
    let mut stale: Option<String> = None;
    loop {
        let live = tokio::select! {
            live = session.live() => live,
            _ = stop.cancelled() => return,
        };
        sessions.borrow_and_update();
        let path = match create(&live.client, &parent, &data).await {
            Ok(path) => path,
            Err(e) => {
                warn!(%parent, error = %e, "cannot register in zookeeper; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        info!(%path, generation = live.generation, "registered in zookeeper");
        if let Some(old) = stale.take() {
            match live.client.delete(&old, None).await {
                Ok(()) => info!(path = %old, "removed the znode of our expired session"),
                Err(zk::Error::NoNode) => {}
                Err(e) => warn!(path = %old, error = %e, "cannot remove the znode of our expired session"),
            }
        }
        path_tx.send_replace(Some(path.clone()));

        match hold(&live, &path, &mut sessions, &stop).await {
            Next::NewSession => stale = Some(path),
            Next::Deleted => {
                path_tx.send_replace(None);
                warn!(%path, "our znode was deleted by another client; registering again in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
            }
            Next::Stop => {
                path_tx.send_replace(None);
                match tokio::time::timeout(Duration::from_secs(3), live.client.delete(&path, None)).await {
                    Ok(Ok(()) | Err(zk::Error::NoNode)) => info!(%path, "deregistered"),
                    Ok(Err(e)) => warn!(%path, error = %e, "cannot deregister"),
                    Err(_) => warn!(%path, "deregistering timed out"),
                }
                return;
            }
        }
        path_tx.send_replace(None);
    }
}

async fn create(client: &zk::Client, parent: &str, data: &[u8]) -> Result<String, zk::Error> {
    ensure_path(client, parent).await?;
    let prefix = format!("{parent}/");
    let (_, seq) = client.create(&prefix, data, &open_acl(zk::CreateMode::EphemeralSequential)).await?;
    Ok(format!("{prefix}{seq}"))
}

/// Re-check interval of our znode, a safety net should a watch be lost across a reconnect.
const RECHECK: Duration = Duration::from_secs(10);

/// Watches our znode until it is deleted, the session changes or we are told to stop.
async fn hold(live: &Live, path: &str, sessions: &mut watch::Receiver<Option<Live>>, stop: &CancellationToken) -> Next {
    let mut state = live.client.state_watcher();
    loop {
        let watched = live.client.check_and_watch_stat(path).await;
        let watcher = match watched {
            Ok((Some(_), watcher)) => watcher,
            Ok((None, _)) => return Next::Deleted,
            Err(e) => {
                // Connection loss during a failover: the session may survive, so try again.
                warn!(%path, error = %e, "cannot watch our znode; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(300)) => continue,
                    _ = sessions.changed() => return Next::NewSession,
                    _ = stop.cancelled() => return Next::Stop,
                }
            }
        };
        tokio::select! {
            event = watcher.changed() => match event.event_type {
                zk::EventType::NodeDeleted => return Next::Deleted,
                zk::EventType::Session if event.session_state.is_terminated() => {
                    // Wait for the session task to publish the next generation.
                    let _ = sessions.changed().await;
                    return Next::NewSession;
                }
                _ => continue,
            },
            // A reconnect to another server may not carry the watch over: set it again.
            _ = state.changed() => continue,
            _ = tokio::time::sleep(RECHECK) => continue,
            _ = sessions.changed() => return Next::NewSession,
            _ = stop.cancelled() => return Next::Stop,
        }
    }
}
