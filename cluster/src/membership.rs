//! Who is alive: snapshots of the comet nodes (each node's active instance is its lowest live
//! sequence; the others are hot standbys; a node with no live instance is absent) and of the message
//! instances. One persistent recursive watch per tree triggers a re-read, a periodic re-read backs
//! it up, and a new session (after expiry) re-arms everything. While ZooKeeper is unreachable the
//! last snapshot stays in force: routing goes on with what was known.

use crate::node::{Instance, NodeInfo, sequence_of};
use crate::zk::{Live, Session};
use futures::future::join_all;
use ring::{HashKind, Ring};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};
use zookeeper_client as zk;

/// The live comet nodes, by ring node name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CometMembership {
    /// Node name → its instances.
    pub nodes: BTreeMap<String, CometNode>,
}

/// The live instances registered under one comet node name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CometNode {
    /// The oldest live registration; it owns the node's keys.
    pub active: Instance,
    /// Later registrations, in sequence order; one takes over when the active one dies.
    pub standbys: Vec<Instance>,
}

impl CometMembership {
    /// The ring over the nodes and their active instances' weights.
    pub fn ring(&self, hash: HashKind) -> Ring {
        Ring::new(hash, self.nodes.iter().map(|(name, n)| (name.clone(), n.active.info.weight)))
    }

    /// The active instance of `node`.
    pub fn active(&self, node: &str) -> Option<&Instance> {
        self.nodes.get(node).map(|n| &n.active)
    }

    /// A membership of fixed nodes, for standalone mode and tests: one instance each.
    pub fn fixed<I: IntoIterator<Item = (String, NodeInfo)>>(nodes: I) -> CometMembership {
        let nodes = nodes
            .into_iter()
            .map(|(name, info)| {
                let active = Instance { path: format!("fixed:{name}"), seq: 0, info };
                (name, CometNode { active, standbys: Vec::new() })
            })
            .collect();
        CometMembership { nodes }
    }
}

/// The live message instances, in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMembership {
    /// Every registered message process.
    pub instances: Vec<Instance>,
}

/// Watches `/<comet_path>` and publishes a snapshot after every change. The watch runs until every
/// receiver is dropped.
pub fn watch_comets(session: &Session) -> watch::Receiver<Arc<CometMembership>> {
    let root = session.config().comet_path.trim_end_matches('/').to_string();
    spawn_watch(session.clone(), root, |client, root, cache| Box::pin(read_comets(client, root, cache)))
}

/// Watches `/<message_path>` and publishes a snapshot after every change. The watch runs until every
/// receiver is dropped.
pub fn watch_messages(session: &Session) -> watch::Receiver<Arc<MessageMembership>> {
    let root = session.config().message_path.trim_end_matches('/').to_string();
    spawn_watch(session.clone(), root, |client, root, cache| Box::pin(read_messages(client, root, cache)))
}

type Cache = HashMap<String, NodeInfo>;
type ReadFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, zk::Error>> + Send + 'a>>;

fn spawn_watch<T, R>(session: Session, root: String, read: R) -> watch::Receiver<Arc<T>>
where
    T: Default + PartialEq + Send + Sync + 'static,
    R: for<'a> Fn(&'a zk::Client, &'a str, &'a mut Cache) -> ReadFuture<'a, T> + Send + Sync + 'static,
{
    let (tx, rx) = watch::channel(Arc::new(T::default()));
    tokio::spawn(async move {
        let resync = session.config().resync;
        let mut sessions = session.subscribe();
        let mut cache = Cache::new();
        loop {
            let live = tokio::select! {
                live = session.live() => live,
                _ = tx.closed() => return,
            };
            sessions.borrow_and_update();
            if !follow(&live, &root, &read, &mut cache, &tx, &mut sessions, resync).await {
                return;
            }
        }
    });
    rx
}

/// Follows one session's view of the tree; returns false when nobody listens any more.
async fn follow<T, R>(
    live: &Live,
    root: &str,
    read: &R,
    cache: &mut Cache,
    tx: &watch::Sender<Arc<T>>,
    sessions: &mut watch::Receiver<Option<Live>>,
    resync: Duration,
) -> bool
where
    T: PartialEq,
    R: for<'a> Fn(&'a zk::Client, &'a str, &'a mut Cache) -> ReadFuture<'a, T> + Sync,
{
    let mut watcher = loop {
        match live.client.watch(root, zk::AddWatchMode::PersistentRecursive).await {
            Ok(w) => break w,
            Err(e) => {
                warn!(%root, error = %e, "cannot watch; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = sessions.changed() => return true,
                    _ = tx.closed() => return false,
                }
            }
        }
    };
    loop {
        let mut wait = resync;
        match read(&live.client, root, cache).await {
            Ok(snapshot) => {
                tx.send_if_modified(|current| {
                    if **current == snapshot {
                        return false;
                    }
                    *current = Arc::new(snapshot);
                    true
                });
            }
            Err(e) => {
                warn!(%root, error = %e, "cannot read membership; keeping the last snapshot");
                wait = Duration::from_millis(500);
            }
        }
        tokio::select! {
            event = watcher.changed() => {
                debug!(%root, ?event, "membership event");
                if event.event_type == zk::EventType::Session {
                    if event.session_state.is_terminated() {
                        let _ = sessions.changed().await;
                        return true;
                    }
                    if event.session_state == zk::SessionState::SyncConnected {
                        // After a reconnect to another server the persistent watch is not always
                        // re-established (and events during the gap are lost, ZOOKEEPER-4698), so
                        // add it again; the re-read below rebuilds what was missed.
                        match live.client.watch(root, zk::AddWatchMode::PersistentRecursive).await {
                            Ok(fresh) => watcher = fresh,
                            Err(e) => warn!(%root, error = %e, "cannot re-add the watch after a reconnect"),
                        }
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = sessions.changed() => return true,
            _ = tx.closed() => return false,
        }
    }
}

/// Children of `path`, or none when it does not exist.
async fn children(client: &zk::Client, path: &str) -> Result<Vec<String>, zk::Error> {
    match client.list_children(path).await {
        Ok(c) => Ok(c),
        Err(zk::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Reads the instances among `names` (children of `dir`), using and refreshing `cache`. Znode data of
/// an instance never changes after creation, so each is read once.
async fn instances(
    client: &zk::Client,
    dir: &str,
    names: Vec<String>,
    cache: &Cache,
) -> Result<Vec<Instance>, zk::Error> {
    let reads = names.into_iter().filter_map(|name| {
        let seq = sequence_of(&name)?;
        let path = format!("{dir}/{name}");
        Some(async move {
            if let Some(info) = cache.get(&path) {
                return Ok(Some(Instance { path, seq, info: info.clone() }));
            }
            match client.get_data(&path).await {
                Ok((data, _)) => match NodeInfo::from_json(&data) {
                    Some(info) => Ok(Some(Instance { path, seq, info })),
                    None => {
                        warn!(%path, "ignoring a znode whose data is not gopush node info");
                        Ok(None)
                    }
                },
                Err(zk::Error::NoNode) => Ok(None),
                Err(e) => Err(e),
            }
        })
    });
    let mut found: Vec<Instance> = Vec::new();
    for r in join_all(reads).await {
        if let Some(i) = r? {
            found.push(i);
        }
    }
    found.sort_by_key(|i| i.seq);
    Ok(found)
}

fn refresh_cache<'a>(cache: &mut Cache, seen: impl Iterator<Item = &'a Instance>) {
    let fresh: Cache = seen.map(|i| (i.path.clone(), i.info.clone())).collect();
    *cache = fresh;
}

async fn read_comets(client: &zk::Client, root: &str, cache: &mut Cache) -> Result<CometMembership, zk::Error> {
    let names = children(client, root).await?;
    let lists = join_all(names.iter().map(|n| {
        let dir = format!("{root}/{n}");
        async move {
            let kids = children(client, &dir).await?;
            Ok::<_, zk::Error>((dir, kids))
        }
    }))
    .await;
    let mut nodes = BTreeMap::new();
    for (name, listed) in names.into_iter().zip(lists) {
        let (dir, kids) = listed?;
        let mut found = instances(client, &dir, kids, cache).await?.into_iter();
        if let Some(active) = found.next() {
            nodes.insert(name, CometNode { active, standbys: found.collect() });
        }
    }
    let membership = CometMembership { nodes };
    refresh_cache(cache, membership.nodes.values().flat_map(|n| std::iter::once(&n.active).chain(&n.standbys)));
    Ok(membership)
}

async fn read_messages(client: &zk::Client, root: &str, cache: &mut Cache) -> Result<MessageMembership, zk::Error> {
    let names = children(client, root).await?;
    let membership = MessageMembership { instances: instances(client, root, names, cache).await? };
    refresh_cache(cache, membership.instances.iter());
    Ok(membership)
}
