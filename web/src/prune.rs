//! Comet health and pruning (docs/decisions.md#d5-web-prunes-dead-comets): each `ping` interval
//! every comet instance is pinged and a change between answering and not is logged once. With a
//! ZooKeeper session, an instance whose endpoint failed `ping_failures` calls in a row loses its
//! znode, so watchers drop it in seconds instead of after its session expires; a web node that
//! reaches no comet at all prunes nothing.

use crate::routing::{Routes, Target};
use cluster::pool::RpcConfig;
use cluster::registry::delete_instance;
use cluster::zk::Session;
use futures::future::join_all;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A change in whether an instance answers its pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// It answered before (or is new) and its ping failed.
    Unreachable,
    /// It failed before and answered now.
    Recovered,
}

/// Whether each instance answered its last ping: only transitions are logged, so a dead comet
/// costs one WARN line, not one per ping.
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    answered: HashMap<String, bool>,
}

impl Reachability {
    /// Records one round of (`path`, answered) and returns the instances whose state changed.
    /// Instances absent from the round are forgotten; a new one is assumed reachable.
    pub(crate) fn record(&mut self, round: &[(&str, bool)]) -> Vec<(String, Change)> {
        let mut next = HashMap::with_capacity(round.len());
        let mut changes = Vec::new();
        for &(path, ok) in round {
            let before = self.answered.get(path).copied().unwrap_or(true);
            if before && !ok {
                changes.push((path.to_string(), Change::Unreachable));
            } else if !before && ok {
                changes.push((path.to_string(), Change::Recovered));
            }
            next.insert(path.to_string(), ok);
        }
        self.answered = next;
        changes
    }
}

/// Pings every instance in `routes` each `rpc.ping`, logs reachability changes and, given a
/// session, deletes the znodes of dead instances, until `shutdown` is cancelled.
pub(crate) async fn run(
    routes: watch::Receiver<Arc<Routes>>,
    session: Option<Session>,
    rpc: RpcConfig,
    shutdown: CancellationToken,
) {
    let threshold = rpc.ping_failures.max(1);
    // The endpoint's own dial and call deadlines end a ping and count it as failed; this outer
    // bound only keeps a round from hanging if they did not.
    let bound = rpc.connect_timeout + rpc.timeout + Duration::from_secs(1);
    let mut reachability = Reachability::default();
    let mut suspecting = false;
    let mut tick = tokio::time::interval(rpc.ping);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let snapshot = routes.borrow().clone();
        let targets: &[Target] = snapshot.instances();
        let answers =
            join_all(targets.iter().map(|t| async move { matches!(timeout(bound, t.comet.ping()).await, Ok(Ok(_))) }))
                .await;
        let round: Vec<(&str, bool)> = targets.iter().map(|t| t.instance.path.as_str()).zip(answers).collect();
        for &(path, ok) in &round {
            if !ok {
                debug!(%path, "comet ping failed");
                metrics::counter!("gopush_web_comet_ping_failures_total").increment(1);
            }
        }
        for (path, change) in reachability.record(&round) {
            let addr = targets.iter().find(|t| t.instance.path == path).and_then(|t| t.instance.info.rpc.first());
            let addr = addr.map_or("", String::as_str);
            match change {
                Change::Unreachable => warn!(%path, %addr, "comet instance unreachable: its pings fail"),
                Change::Recovered => info!(%path, %addr, "comet instance answers its pings again"),
            }
        }
        let Some(session) = &session else { continue };
        let dead: Vec<&str> = targets
            .iter()
            .filter(|t| t.remote.as_ref().is_some_and(|r| r.endpoint().consecutive_failures() >= threshold))
            .map(|t| t.instance.path.as_str())
            .collect();
        if dead.is_empty() {
            continue;
        }
        if suspect_ourselves(&round) {
            if !suspecting {
                warn!(
                    instances = round.len(),
                    "every comet instance failed its ping; suspecting this web node, not pruning"
                );
                suspecting = true;
            }
            continue;
        }
        suspecting = false;
        join_all(dead.iter().map(|path| prune(session, path, rpc.timeout))).await;
    }
}

/// True when several instances were pinged and none answered: more likely this web node lost its
/// network than every comet died at once, and pruning them all would disconnect every client. Such
/// comets still leave when ZooKeeper expires their sessions.
fn suspect_ourselves(round: &[(&str, bool)]) -> bool {
    round.len() >= 2 && round.iter().all(|&(_, ok)| !ok)
}

/// Deletes one instance's znode; a failure is retried on the next round while it stays dead.
async fn prune(session: &Session, path: &str, deadline: Duration) {
    match timeout(deadline.max(Duration::from_secs(1)), delete_instance(session, path)).await {
        Ok(Ok(true)) => {
            warn!(%path, "pruned a comet instance that stopped answering pings");
            metrics::counter!("gopush_web_comet_pruned_total").increment(1);
        }
        Ok(Ok(false)) => {
            info!(%path, "comet instance already gone (pruned by another web node or deregistered)");
        }
        Ok(Err(e)) => warn!(%path, error = %e, "cannot prune a dead comet instance"),
        Err(_) => warn!(%path, "pruning a dead comet instance timed out"),
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
    fn reachability_changes_are_reported_once_per_transition() {
        let mut r = Reachability::default();
        assert!(r.record(&[("a", true), ("b", true)]).is_empty());
        assert_eq!(r.record(&[("a", false), ("b", true)]), [("a".to_string(), Change::Unreachable)]);
        assert!(r.record(&[("a", false), ("b", true)]).is_empty(), "still down: no second line");
        assert!(r.record(&[("a", false), ("b", true)]).is_empty());
        assert_eq!(r.record(&[("a", true), ("b", true)]), [("a".to_string(), Change::Recovered)]);
        assert!(r.record(&[("a", true)]).is_empty());
        assert_eq!(r.record(&[("c", false)]), [("c".to_string(), Change::Unreachable)], "new and failing");
        assert!(r.record(&[]).is_empty());
        assert!(r.answered.is_empty(), "instances that left are forgotten");
    }
}
