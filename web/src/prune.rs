//! Pruning dead comets (DESIGN decision 5): every `ping` interval each comet instance, active or
//! standby, is pinged with a deadline; after `ping_failures` consecutive failures its ephemeral znode
//! is deleted, so every watcher drops it within seconds instead of waiting out its ZooKeeper session
//! (upstream black-holed such a node's keys). Several web nodes may prune the same instance: a
//! delete that finds no node is success. A web node that reaches no comet at all prunes nothing.

use crate::routing::{Routes, Target};
use cluster::pool::RpcConfig;
use cluster::zk::Session;
use futures::future::join_all;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client as zk;

/// Consecutive ping failures per instance path; a pure bookkeeping step, separate from the I/O.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    counts: HashMap<String, u32>,
}

impl Failures {
    /// Records one round of results (`path`, answered) and returns the paths that reached
    /// `threshold` failures. Paths absent from the round are forgotten.
    pub(crate) fn record(&mut self, round: &[(&str, bool)], threshold: u32) -> Vec<String> {
        let mut next = HashMap::with_capacity(round.len());
        let mut dead = Vec::new();
        for &(path, ok) in round {
            if ok {
                continue;
            }
            let n = self.counts.get(path).copied().unwrap_or(0) + 1;
            if n >= threshold {
                dead.push(path.to_string());
            }
            next.insert(path.to_string(), n);
        }
        self.counts = next;
        dead
    }

    /// Starts counting `path` from zero again (after it was pruned).
    pub(crate) fn reset(&mut self, path: &str) {
        self.counts.remove(path);
    }
}

/// Pings every instance in `routes` each `rpc.ping` and deletes the znodes of dead ones, until
/// `shutdown` is cancelled.
pub(crate) async fn run(
    routes: watch::Receiver<Arc<Routes>>,
    session: Session,
    rpc: RpcConfig,
    shutdown: CancellationToken,
) {
    // A ping must end before the next round starts, or rounds would pile up on a hung comet.
    let deadline = rpc.timeout.min(rpc.ping);
    let threshold = rpc.ping_failures.max(1);
    let mut failures = Failures::default();
    let mut tick = tokio::time::interval(rpc.ping);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let snapshot = routes.borrow().clone();
        let targets: &[Target] = snapshot.instances();
        let answers = join_all(
            targets.iter().map(|t| async move { matches!(timeout(deadline, t.comet.ping()).await, Ok(Ok(_))) }),
        )
        .await;
        let round: Vec<(&str, bool)> = targets.iter().map(|t| t.instance.path.as_str()).zip(answers).collect();
        for &(path, ok) in &round {
            if !ok {
                debug!(%path, "comet ping failed");
                metrics::counter!("gopush_web_comet_ping_failures_total").increment(1);
            }
        }
        let dead = failures.record(&round, threshold);
        if dead.is_empty() {
            continue;
        }
        if suspect_ourselves(&round) {
            warn!(
                instances = round.len(),
                "every comet instance failed its ping; suspecting this web node, not pruning"
            );
            continue;
        }
        let deletes = join_all(dead.iter().map(|path| delete(&session, path, deadline))).await;
        for (path, done) in dead.iter().zip(deletes) {
            if done {
                failures.reset(path);
            }
        }
    }
}

/// True when several instances were pinged and none answered: more likely this web node lost its
/// network than every comet died at once, and pruning them all would disconnect every client. Such
/// comets still leave when ZooKeeper expires their sessions.
fn suspect_ourselves(round: &[(&str, bool)]) -> bool {
    round.len() >= 2 && round.iter().all(|&(_, ok)| !ok)
}

/// Deletes one instance's znode; true when it is gone (by us or by someone else).
async fn delete(session: &Session, path: &str, deadline: std::time::Duration) -> bool {
    let Some(live) = session.current() else {
        warn!(%path, "comet stopped answering but zookeeper is unreachable; cannot prune it yet");
        return false;
    };
    match timeout(deadline.max(std::time::Duration::from_secs(1)), live.client.delete(path, None)).await {
        Ok(Ok(())) => {
            warn!(%path, "pruned a comet instance that stopped answering pings");
            metrics::counter!("gopush_web_comet_pruned_total").increment(1);
            true
        }
        Ok(Err(zk::Error::NoNode)) => {
            info!(%path, "comet instance already gone (pruned by another web node or deregistered)");
            true
        }
        Ok(Err(e)) => {
            warn!(%path, error = %e, "cannot prune a dead comet instance");
            false
        }
        Err(_) => {
            warn!(%path, "pruning a dead comet instance timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_node_that_reaches_no_comet_prunes_nothing() {
        assert!(suspect_ourselves(&[("a", false), ("b", false)]));
        assert!(!suspect_ourselves(&[("a", false), ("b", true)]));
        assert!(!suspect_ourselves(&[("a", false)]), "a lone comet that died is still pruned");
        assert!(!suspect_ourselves(&[]));
    }

    #[test]
    fn an_instance_is_dead_after_consecutive_failures_only() {
        let mut f = Failures::default();
        assert!(f.record(&[("a", false), ("b", true)], 3).is_empty());
        assert!(f.record(&[("a", false), ("b", false)], 3).is_empty());
        assert_eq!(f.record(&[("a", false), ("b", true)], 3), ["a"], "b's failure streak was broken");
        f.reset("a");
        assert!(f.record(&[("a", false)], 3).is_empty(), "counting starts again after a prune");
        assert!(f.record(&[("a", true)], 3).is_empty());
        assert!(f.record(&[("a", false)], 3).is_empty(), "a success resets the streak");
        assert!(f.record(&[("b", false)], 1) == ["b"]);
        assert!(f.record(&[], 1).is_empty());
        assert!(f.counts.is_empty(), "instances that left are forgotten");
    }
}
