//! Offline messages across a Redis fail-over, through real gopush processes (message, two comets,
//! web) over a Redis Cluster of three masters and three replicas, and over two Sentinel-watched
//! shards. Stored pushes flow while one master is `kill -9`ed; with `wait_replicas = 1` every push
//! answered `ret 0` is read back after the replica took over (docs/storage.md#what-each-setting-promises).
//! Each test prints how many pushes were acknowledged, refused, and refused yet stored.

#[allow(dead_code)] // the cluster and HTTP helpers of the shared harness are used here
mod harness;

use harness::http::{msg_get, push};
use harness::{Cluster, eventually, healthy};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{RedisCluster, SentinelSet};

/// Bound on each phase of the run (failover, rejoin, recovery): "something is broken", not a speed.
const PHASE: Duration = Duration::from_secs(90);

/// What the publisher saw: `(key, n)` of each push, by answer.
#[derive(Default)]
struct Outcomes {
    acked: Vec<(String, u64)>,
    refused: Vec<(String, u64)>,
}

type Shared = Arc<Mutex<Outcomes>>;

fn lock(o: &Shared) -> std::sync::MutexGuard<'_, Outcomes> {
    o.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `by` more pushes than now were acknowledged.
async fn acks_grow(outcomes: &Shared, by: usize, what: &str) {
    let target = lock(outcomes).acked.len() + by;
    eventually(&format!("{by} more acknowledged pushes ({what})"), PHASE, || {
        let n = lock(outcomes).acked.len();
        async move { n >= target }
    })
    .await;
}

/// Runs the publisher over `keys`, calls `kill` once some pushes are acknowledged, then `restart`
/// once the cluster acknowledges again or has tried for a while, and checks every acknowledged
/// push can be read back.
async fn no_acknowledged_push_is_lost(label: &str, store: &str, kill: impl FnOnce(), restart: impl FnOnce()) {
    let Some(zk) = testkit::zk_addr() else { return };
    let cluster = Cluster::start_with_store(&zk, store, &["node1", "node2"]).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let keys: Vec<String> = (0..24).map(|i| format!("ha-{i}")).collect();

    let outcomes: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (outcomes, stop, keys, admin) = (outcomes.clone(), stop.clone(), keys.clone(), admin.clone());
        tokio::spawn(async move {
            // Bounded: far more than the run needs, and under the 200 messages kept per key.
            for n in 0..4_000u64 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let key = keys[n as usize % keys.len()].clone();
                let ret = push(&admin, &key, 600, &json!({ "n": n }).to_string()).await;
                {
                    let mut o = lock(&outcomes);
                    if ret == Some(0) { o.acked.push((key, n)) } else { o.refused.push((key, n)) }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    acks_grow(&outcomes, 30, "before the kill").await;
    tokio::task::block_in_place(kill);
    // Let pushes run into the failover, then bring the killed server back as a replica: with
    // wait_replicas = 1 the promoted one cannot acknowledge alone.
    let refused_before = lock(&outcomes).refused.len();
    eventually("pushes to be refused during the failover", PHASE, || {
        let n = lock(&outcomes).refused.len();
        async move { n > refused_before }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(restart);
    acks_grow(&outcomes, 30, "after the killed server rejoined").await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.expect("the publisher task");

    let stat = format!("127.0.0.1:{}", cluster.message_stat);
    eventually("the message node's /health to be 200 again", PHASE, || healthy(&stat)).await;
    let (acked, refused) = {
        let o = lock(&outcomes);
        (o.acked.clone(), o.refused.clone())
    };
    let mut stored = BTreeSet::new();
    for key in &keys {
        for (m, _) in msg_get(&public, key, 0).await {
            if let Some(n) = m["n"].as_u64() {
                stored.insert((key.clone(), n));
            }
        }
    }
    let lost: Vec<&(String, u64)> = acked.iter().filter(|a| !stored.contains(*a)).collect();
    let refused_stored = refused.iter().filter(|r| stored.contains(*r)).count();
    eprintln!(
        "{label}: {} acknowledged, {} stored, {} refused ({refused_stored} of them stored anyway), {} lost",
        acked.len(),
        stored.len(),
        refused.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{label}: acknowledged (ret 0) but lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_master_loses_no_acknowledged_push() {
    let Some(redis) = RedisCluster::start() else { return };
    let seeds: Vec<String> = redis.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    let store = format!(
        "[storage]\nkind = \"redis-cluster\"\n\n[redis]\nstore = 200\nkey_prefix = \"{}:\"\ntimeout = \"1s\"\n\
         wait_replicas = 1\n\n[redis.cluster]\nnodes = [{}]\n",
        testkit::unique_name("ha"),
        seeds.join(", ")
    );
    let redis = Mutex::new(redis);
    let victim = redis.lock().unwrap_or_else(|e| e.into_inner()).masters()[0];
    no_acknowledged_push_is_lost(
        "redis cluster",
        &store,
        || redis.lock().unwrap_or_else(|e| e.into_inner()).kill(victim),
        || redis.lock().unwrap_or_else(|e| e.into_inner()).restart(victim),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sentinel_master_loses_no_acknowledged_push() {
    let (Some(a), Some(b)) = (SentinelSet::start("ha-a"), SentinelSet::start("ha-b")) else { return };
    let mut store = format!(
        "[redis]\nstore = 200\nkey_prefix = \"{}:\"\ntimeout = \"1s\"\nwait_replicas = 1\n\n",
        testkit::unique_name("ha")
    );
    for (i, set) in [&a, &b].iter().enumerate() {
        let sentinels: Vec<String> = set.sentinels().iter().map(|s| format!("\"{s}\"")).collect();
        store.push_str(&format!(
            "[[redis.source]]\nname = \"node{}\"\nsentinels = [{}]\nmaster_name = \"{}\"\n\n",
            i + 1,
            sentinels.join(", "),
            set.name()
        ));
    }
    let a = Mutex::new(a);
    let victim = a.lock().unwrap_or_else(|e| e.into_inner()).master().expect("shard a has a master");
    no_acknowledged_push_is_lost(
        "sentinel shards",
        &store,
        || a.lock().unwrap_or_else(|e| e.into_inner()).kill(victim),
        || a.lock().unwrap_or_else(|e| e.into_inner()).restart(victim),
    )
    .await;
    drop(b);
}
