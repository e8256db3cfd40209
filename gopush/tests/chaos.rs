//! The resume chaos run (docs/protocol.md#resume): real processes (message, three comets, web,
//! ZooKeeper, Redis), publishers offering 2,000 messages a second with expire > 0 for 30 s, and 200
//! clients, half TCP and half WebSocket, each dropping its connection at random and resuming from
//! the last mid it saw; one comet is `kill -9`ed and restarted during the run. Every client must
//! get every message acknowledged for its key exactly once, in mid order. It prints the tally. This is
//! the one long test of the suite.

#[allow(dead_code)] // the browser helpers of the shared harness are not used here
mod harness;

use harness::Cluster;
use harness::client::{Next, TcpSub, WsSub};
use harness::http::{post, server_get, try_msg_get};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
/// Publishers, each owning `CLIENTS / PUBLISHERS` keys and pushing to all of them in one
/// `mprivate` per tick: 20 × 10 keys × 10 ticks a second = 2,000 messages a second. Ten keys a
/// call rather than a handful, because a debug build pays for each HTTP request and RPC far more
/// than for each key in it (docs/benchmarks.md#resume-under-chaos-issue-15).
const PUBLISHERS: usize = 20;
const TICK: Duration = Duration::from_millis(100);
const RUN: Duration = Duration::from_secs(30);
/// How long a client waits after the last message before its final tally.
const QUIET: Duration = Duration::from_secs(3);

/// One connection, either protocol.
enum Sub {
    Tcp(TcpSub),
    // Boxed: a WebSocket stream is far larger than a TCP one.
    Ws(Box<WsSub>),
}

impl Sub {
    async fn next(&mut self, wait: Duration) -> Next {
        match self {
            Sub::Tcp(s) => s.next(wait).await,
            Sub::Ws(s) => s.next(wait).await,
        }
    }
}

/// What the publishers did.
#[derive(Default)]
struct Stats {
    /// Key-messages sent.
    sent: AtomicU64,
    /// `mprivate` calls made, and their total time.
    calls: AtomicU64,
    call_micros: AtomicU64,
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// The sequence numbers received, in arrival order.
    seen: Vec<u64>,
    /// Messages whose mid was not above the last one: duplicates or out of order.
    repeated: u64,
    connections: u64,
    resume_failed: u64,
    /// Live messages dropped by the client after a fallback fetch had returned them.
    deduped: u64,
}

/// A tiny deterministic generator, so each client's disconnects differ without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Takes one message into the tally. A mid not above `last` is a server fault (a repeat or a
/// message out of order), except after a fallback fetch, where the live messages the comet sent
/// meanwhile overlap what the fetch returned and dropping them is the client's job.
fn take(frame: &[u8], last: &mut u64, tally: &mut Tally, fell_back: bool) {
    let v: Value = serde_json::from_slice(frame).expect("a JSON message");
    let mid = v["mid"].as_u64().expect("an integer mid");
    if mid <= *last {
        if fell_back {
            tally.deduped += 1;
        } else {
            tally.repeated += 1;
        }
        return;
    }
    *last = mid;
    tally.seen.push(v["msg"]["s"].as_u64().expect("a sequence number"));
}

async fn client(i: usize, public: String, key: String, stop: Arc<AtomicBool>) -> Tally {
    let tcp = i % 2 == 0;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1);
    let (mut tally, mut last) = (Tally::default(), 0u64);
    let started = Instant::now();
    // Bounded in time: the run, the wind-down and a margin for a slow box.
    while started.elapsed() < RUN + Duration::from_secs(120) {
        let finishing = stop.load(Ordering::Relaxed);
        let Some(server) = server_get(&public, &key, if tcp { 2 } else { 1 }).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let sub = if tcp {
            TcpSub::resume(&server, &key, last).await.map(Sub::Tcp)
        } else {
            WsSub::resume(&server, &key, last).await.map(|s| Sub::Ws(Box::new(s)))
        };
        let Ok(mut sub) = sub else {
            tokio::time::sleep(Duration::from_millis(100 + next_random(&mut rng) % 200)).await;
            continue;
        };
        tally.connections += 1;
        // Stay connected 0.5–6 s, or, winding down, until nothing arrives for QUIET.
        let hold = Duration::from_millis(500 + next_random(&mut rng) % 5500);
        let until = Instant::now() + hold;
        let mut fell_back = false;
        loop {
            let wait = if finishing { QUIET } else { until.saturating_duration_since(Instant::now()) };
            match sub.next(wait).await {
                Next::Frame(f) => take(&f, &mut last, &mut tally, fell_back),
                Next::Status(s) if s.starts_with("+r") => {
                    // The comet could not read the store: fetch what was missed, then go on live;
                    // if the fetch fails too, reconnect and resume again, as gopush.js does.
                    tally.resume_failed += 1;
                    fell_back = true;
                    let Ok(stored) = try_msg_get(&public, &key, last).await else { break };
                    for (msg, mid) in stored {
                        take(json!({"msg": msg, "mid": mid}).to_string().as_bytes(), &mut last, &mut tally, true);
                    }
                }
                Next::Status(_) => {}
                Next::Timeout if finishing => return tally,
                Next::Timeout | Next::Closed => break,
            }
            if !finishing && Instant::now() >= until {
                break;
            }
        }
    }
    panic!("client {i} ({key}) never finished");
}

/// Pushes `{"s": seq}` to `keys` every tick for RUN, one call at a time: a publisher that sends a
/// key's messages one after another defines their order (docs/decisions.md#d70-resume-on-subscribe
/// says why overlapping calls to one key do not). A call that overruns its tick is followed at
/// once by the next, so a slow stretch (the kill) is made up rather than lost. Returns each key's
/// acknowledged sequence numbers.
async fn publisher(admin: String, keys: Vec<String>, stats: Arc<Stats>) -> HashMap<String, Vec<u64>> {
    let mut acked: HashMap<String, Vec<u64>> = keys.iter().map(|k| (k.clone(), Vec::new())).collect();
    let started = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let body_keys = keys.join(",");
    for seq in 0u64.. {
        tick.tick().await;
        if started.elapsed() >= RUN {
            break;
        }
        stats.sent.fetch_add(keys.len() as u64, Ordering::Relaxed);
        let body = json!({ "m": json!({ "s": seq }).to_string(), "k": body_keys }).to_string();
        let call = Instant::now();
        let reply = post(&admin, "/1/admin/push/mprivate?expire=600", "application/json", &body).await;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.call_micros.fetch_add(call.elapsed().as_micros() as u64, Ordering::Relaxed);
        let Ok(reply) = reply else { continue };
        let v: Value = serde_json::from_slice(reply.body_bytes()).unwrap_or(Value::Null);
        if v["ret"] != 0 {
            continue;
        }
        let failed: Vec<&str> =
            v["data"]["fk"].as_array().map_or(Vec::new(), |f| f.iter().filter_map(Value::as_str).collect());
        for k in keys.iter().filter(|k| !failed.contains(&k.as_str())) {
            acked.get_mut(k).expect("own key").push(seq);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_two_hundred_resuming_clients_get_every_message_once_in_order_through_a_kill_9() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    let mut cluster = Cluster::start(&zk, &redis, &["node1", "node2", "node3"]).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let prefix = testkit::unique_name("chaos");
    let keys: Vec<String> = (0..CLIENTS).map(|i| format!("{prefix}-{i}")).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| tokio::spawn(client(i, public.clone(), k.clone(), stop.clone())))
        .collect();
    let stats = Arc::new(Stats::default());
    let per = CLIENTS / PUBLISHERS;
    let publishers: Vec<_> =
        keys.chunks(per).map(|chunk| tokio::spawn(publisher(admin.clone(), chunk.to_vec(), stats.clone()))).collect();

    let started = Instant::now();
    tokio::time::sleep(RUN / 3).await;
    cluster.comet_mut("node1").proc.kill9();
    let killed = started.elapsed();
    tokio::time::sleep(RUN / 6).await;
    cluster.restart_comet("node1").await;
    let restarted = started.elapsed();

    let mut acked: HashMap<String, Vec<u64>> = HashMap::new();
    for p in publishers {
        acked.extend(p.await.expect("publisher"));
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut tallies = Vec::new();
    for c in clients {
        tallies.push(c.await.expect("client"));
    }

    let (mut lost, mut repeated, mut disorder, mut extra) = (0usize, 0u64, 0usize, 0usize);
    let mut failures = Vec::new();
    for (key, tally) in keys.iter().zip(&tallies) {
        let want = &acked[key];
        let missing: Vec<u64> = want.iter().copied().filter(|s| !tally.seen.contains(s)).collect();
        // Each key's messages are sent one after another, so their sequence numbers follow mid order.
        let out_of_order = tally.seen.windows(2).filter(|w| w[0] >= w[1]).count();
        lost += missing.len();
        repeated += tally.repeated;
        disorder += out_of_order;
        extra += tally.seen.len().saturating_sub(want.len() - missing.len());
        let mut unique = tally.seen.clone();
        unique.sort_unstable();
        unique.dedup();
        let twice = tally.seen.len() - unique.len();
        if (!missing.is_empty() || tally.repeated > 0 || twice > 0 || out_of_order > 0) && failures.len() < 5 {
            failures.push(format!(
                "{key}: missing {missing:?}, {} mids not above the last one, {twice} received twice, \
                 {out_of_order} out of order",
                tally.repeated
            ));
        }
    }
    let acked_total: usize = acked.values().map(Vec::len).sum();
    let seen_total: usize = tallies.iter().map(|t| t.seen.len()).sum();
    let connections: u64 = tallies.iter().map(|t| t.connections).sum();
    let resume_failed: u64 = tallies.iter().map(|t| t.resume_failed).sum();
    let deduped: u64 = tallies.iter().map(|t| t.deduped).sum();
    let sent = stats.sent.load(Ordering::Relaxed);
    let calls = stats.calls.load(Ordering::Relaxed).max(1);
    let call_ms = stats.call_micros.load(Ordering::Relaxed) as f64 / calls as f64 / 1000.0;
    eprintln!(
        "chaos tally: {CLIENTS} clients ({} tcp, {} websocket), {sent} key-messages sent in {elapsed:.1?} \
         ({:.0}/s; {calls} mprivate calls, {call_ms:.0} ms each on average), {acked_total} acknowledged, {seen_total} received, {connections} connections \
         (resumes), {resume_failed} resumes fell back to /1/msg/get ({deduped} live messages dropped by the client as already fetched); node1 killed at {killed:.1?}, \
         back at {restarted:.1?}; lost {lost}, repeated {repeated}, out of order {disorder}, \
         received though not acknowledged {extra}",
        CLIENTS.div_ceil(2),
        CLIENTS / 2,
        sent as f64 / elapsed.as_secs_f64(),
    );
    assert!(failures.is_empty(), "clients saw gaps, repeats or disorder:\n{}", failures.join("\n"));
    assert!(acked_total > 0 && connections > CLIENTS as u64 * 3, "the run really ran");
}
