//! Who serves a key: the comet membership (from ZooKeeper, or fixed in standalone mode) becomes a
//! ring over node names, each node resolves to its active instance, and the instance to the
//! advertised addresses of the asked protocol and a `CometApi` handle to push through. One handle
//! per instance is kept across membership updates, so RPC connections survive ring changes.

use crate::error::WebError;
use cluster::Proto;
use cluster::coalesce::PushCoalescer;
use cluster::membership::CometMembership;
use cluster::node::Instance;
use cluster::pool::{RemoteComet, RpcConfig};
use cluster::rpc::{CometError, Mid, Push, SharedComet, Unavailable};
use ring::{HashKind, Ring};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::info;

/// Makes the handle of a comet instance (remote in a cluster, in-process standalone).
pub type CometFactory = Arc<dyn Fn(&Instance) -> CometHandle + Send + Sync>;

/// What reaches one comet instance: its `CometApi`, and for a remote one the client whose
/// endpoint counts consecutive failed calls and pings, which pruning reads.
#[derive(Clone)]
pub struct CometHandle {
    comet: SharedComet,
    remote: Option<Arc<RemoteComet>>,
    pushes: Option<Arc<PushCoalescer>>,
}

impl CometHandle {
    /// A comet reached in-process (standalone) or a test double: never pruned.
    pub fn local(comet: SharedComet) -> CometHandle {
        CometHandle { comet, remote: None, pushes: None }
    }

    /// A comet reached over RPC; with `rpc.push_batch` > 1 its private pushes are coalesced
    /// (docs/decisions.md#d90-coalesced-pushes-from-web-to-a-comet).
    pub fn remote(remote: Arc<RemoteComet>, rpc: &RpcConfig) -> CometHandle {
        let comet: SharedComet = remote.clone();
        let pushes = (rpc.push_batch > 1)
            .then(|| Arc::new(PushCoalescer::new(comet.clone(), rpc.push_batch, rpc.push_batch_in_flight)));
        CometHandle { comet, remote: Some(remote), pushes }
    }
}

/// The default factory: a [`RemoteComet`] at the instance's first advertised RPC address.
pub fn remote_comets(rpc: RpcConfig) -> CometFactory {
    Arc::new(move |instance: &Instance| -> CometHandle {
        match instance.info.rpc.first() {
            Some(addr) => CometHandle::remote(Arc::new(RemoteComet::new(addr.clone(), rpc.clone())), &rpc),
            // A comet instance that advertises no RPC address: every call fails as unreachable.
            None => CometHandle::local(Arc::new(Unavailable)),
        }
    })
}

/// One comet instance and the handle that reaches it.
#[derive(Clone)]
pub(crate) struct Target {
    /// Its registration.
    pub(crate) instance: Instance,
    /// Its RPC handle.
    pub(crate) comet: SharedComet,
    /// The same handle as a remote client, whose endpoint counts consecutive failed calls and
    /// pings; `None` for handles that are not remote, which are never pruned.
    pub(crate) remote: Option<Arc<RemoteComet>>,
    /// The coalescing sender of its private pushes, if any.
    pushes: Option<Arc<PushCoalescer>>,
}

impl Target {
    /// One private push, coalesced with concurrent ones when the handle does that.
    pub(crate) async fn push_private(
        &self,
        key: String,
        msg: String,
        expire: u32,
        id: Option<String>,
    ) -> Result<Mid, CometError> {
        match &self.pushes {
            Some(pushes) => pushes.push(Push { key, msg, expire, id }).await,
            None => self.comet.push_private(key, msg, expire, id).await,
        }
    }
}

/// An immutable routing snapshot, rebuilt on every membership change.
pub(crate) struct Routes {
    ring: Ring,
    /// Node name → its active instance.
    active: HashMap<String, Target>,
    /// Every instance, active and standby, for health pings.
    all: Vec<Target>,
}

impl Routes {
    /// Routes over `membership`, reusing handles from `handles` (keyed by znode path) and making
    /// the missing ones with `factory`; `handles` is left holding exactly the current instances.
    pub(crate) fn build(
        membership: &CometMembership,
        hash: HashKind,
        handles: &mut HashMap<String, CometHandle>,
        factory: &CometFactory,
    ) -> Routes {
        let mut fresh = HashMap::new();
        let mut target = |instance: &Instance| {
            let handle = handles.get(&instance.path).cloned().unwrap_or_else(|| factory(instance));
            fresh.insert(instance.path.clone(), handle.clone());
            Target { instance: instance.clone(), comet: handle.comet, remote: handle.remote, pushes: handle.pushes }
        };
        let mut active = HashMap::new();
        let mut all = Vec::new();
        for (name, node) in &membership.nodes {
            let t = target(&node.active);
            active.insert(name.clone(), t.clone());
            all.push(t);
            all.extend(node.standbys.iter().map(&mut target));
        }
        *handles = fresh;
        Routes { ring: membership.ring(hash), active, all }
    }

    /// The node owning `key` and its active instance; [`WebError::NoComet`] on an empty ring.
    pub(crate) fn owner(&self, key: &str) -> Result<(&str, &Target), WebError> {
        let node = self.ring.get(key.as_bytes()).ok_or(WebError::NoComet)?;
        let target = self.active.get(node).ok_or(WebError::NoComet)?;
        Ok((node, target))
    }

    /// The advertised addresses of `protocol` for `key`'s owner; [`WebError::NoComet`] when there is
    /// no owner or it lists none.
    pub(crate) fn addresses(&self, key: &str, protocol: Proto) -> Result<&[String], WebError> {
        let (_, target) = self.owner(key)?;
        let info = &target.instance.info;
        let addrs = match protocol {
            Proto::WebSocket => &info.ws,
            Proto::Tcp => &info.tcp,
        };
        if addrs.is_empty() { Err(WebError::NoComet) } else { Ok(addrs) }
    }

    /// Each node and its active instance.
    pub(crate) fn active(&self) -> impl Iterator<Item = (&str, &Target)> {
        self.active.iter().map(|(node, target)| (node.as_str(), target))
    }

    /// Every instance, active and standby.
    pub(crate) fn instances(&self) -> &[Target] {
        &self.all
    }

    /// Number of nodes in the ring.
    pub(crate) fn nodes(&self) -> usize {
        self.active.len()
    }
}

/// Keeps a routing snapshot equal to the membership. The task ends when every receiver of the
/// returned channel is dropped.
pub(crate) fn follow(
    mut membership: watch::Receiver<Arc<CometMembership>>,
    hash: HashKind,
    factory: CometFactory,
) -> watch::Receiver<Arc<Routes>> {
    let mut handles = HashMap::new();
    let first = Routes::build(&membership.borrow_and_update(), hash, &mut handles, &factory);
    crate::metrics::routing(first.nodes(), first.instances().len());
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = membership.changed() => {
                    if changed.is_err() {
                        // Nobody publishes membership any more: keep routing with the last one.
                        tx.closed().await;
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
            let snapshot = membership.borrow_and_update().clone();
            let routes = Routes::build(&snapshot, hash, &mut handles, &factory);
            info!(nodes = routes.nodes(), instances = routes.instances().len(), "comet routing updated");
            metrics::gauge!("gopush_web_comet_nodes").set(routes.nodes() as f64);
            metrics::gauge!("gopush_web_comet_instances").set(routes.instances().len() as f64);
            tx.send_replace(Arc::new(routes));
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::membership::CometNode;
    use cluster::node::NodeInfo;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn info(weight: u32, tcp: &[&str]) -> NodeInfo {
        NodeInfo {
            rpc: vec!["127.0.0.1:1".into()],
            tcp: tcp.iter().map(|s| s.to_string()).collect(),
            ws: vec![],
            weight,
        }
    }

    fn golden() -> CometMembership {
        CometMembership::fixed([
            ("node1".to_string(), info(1, &["n1:1", "n1:2"])),
            ("node2".to_string(), info(2, &["n2:1"])),
            ("node3".to_string(), info(1, &[])),
        ])
    }

    fn counting() -> (CometFactory, Arc<AtomicUsize>) {
        let made = Arc::new(AtomicUsize::new(0));
        let m = made.clone();
        let f: CometFactory = Arc::new(move |_: &Instance| -> CometHandle {
            m.fetch_add(1, Ordering::Relaxed);
            CometHandle::local(Arc::new(Unavailable))
        });
        (f, made)
    }

    #[test]
    fn keys_route_by_the_golden_ring() {
        let (factory, _) = counting();
        let routes = Routes::build(&golden(), HashKind::Sha1, &mut HashMap::new(), &factory);
        assert_eq!(routes.owner("Terry-Mao").unwrap().0, "node1");
        assert_eq!(routes.owner("t1").unwrap().0, "node2");
        assert_eq!(routes.owner("t2").unwrap().0, "node3");
        assert_eq!(routes.owner("wrap211").unwrap().0, "node2");
        assert_eq!(routes.addresses("Terry-Mao", Proto::Tcp).unwrap(), ["n1:1", "n1:2"]);
        assert!(matches!(routes.addresses("Terry-Mao", Proto::WebSocket), Err(WebError::NoComet)));
        assert!(matches!(routes.addresses("t2", Proto::Tcp), Err(WebError::NoComet)), "node3 lists no tcp");
    }

    #[test]
    fn empty_membership_has_no_owner() {
        let (factory, _) = counting();
        let routes = Routes::build(&CometMembership::default(), HashKind::Sha1, &mut HashMap::new(), &factory);
        assert!(matches!(routes.owner("k"), Err(WebError::NoComet)));
        assert_eq!(routes.nodes(), 0);
    }

    #[test]
    fn handles_are_reused_across_updates_and_standbys_get_one() {
        let (factory, made) = counting();
        let mut handles = HashMap::new();
        let mut m = golden();
        Routes::build(&m, HashKind::Sha1, &mut handles, &factory);
        assert_eq!(made.load(Ordering::Relaxed), 3);
        let standby = Instance { path: "fixed:node1/standby".into(), seq: 1, info: info(1, &["s:1"]) };
        if let Some(CometNode { standbys, .. }) = m.nodes.get_mut("node1") {
            standbys.push(standby);
        }
        m.nodes.remove("node3");
        let routes = Routes::build(&m, HashKind::Sha1, &mut handles, &factory);
        assert_eq!(made.load(Ordering::Relaxed), 4, "only the new standby needed a handle");
        assert_eq!(routes.instances().len(), 3);
        assert_eq!(handles.len(), 3, "the removed node's handle is dropped");
        assert_ne!(routes.owner("t2").unwrap().0, "node3", "node3's keys moved");
    }
}
