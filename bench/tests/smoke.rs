//! Smoke test: each subcommand's core against `gopush standalone` started in-process, with small
//! numbers for a few seconds. It checks that the counts add up (every accepted delivery is either
//! delivered or lost, nothing lost on loopback at a low rate), not how fast anything is.

use bench::{ConnsConfig, Proto, PushConfig, RoomConfig, run_conns, run_push, run_room};
use gopush::standalone::{Standalone, StandaloneConfig};

async fn start() -> Standalone {
    Standalone::start(StandaloneConfig::ephemeral()).await.expect("standalone starts")
}

fn conns_config(s: &Standalone, proto: Proto, via_web: bool) -> ConnsConfig {
    let comet = match proto {
        Proto::Tcp => s.tcp_addr(),
        Proto::WebSocket => s.ws_addr(),
    }
    .expect("ephemeral() enables both protocols");
    ConnsConfig {
        web: format!("http://{}", s.public_addr()),
        comet: (!via_web).then(|| comet.to_string()),
        proto,
        conns: 200,
        duration_secs: 1,
        concurrency: 32,
        pids: vec![std::process::id()],
        settle_secs: 0,
        ..ConnsConfig::default()
    }
}

fn push_config(s: &Standalone, proto: Proto, batch: usize, ver: Option<&str>) -> PushConfig {
    PushConfig {
        web: format!("http://{}", s.public_addr()),
        admin: format!("http://{}", s.admin_addr()),
        proto,
        keys: 50,
        duration_secs: 2,
        rate: 100,
        concurrency: 4,
        size: 100,
        batch,
        ver: ver.map(str::to_string),
        drain_secs: 5,
        ..PushConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conns_tcp_and_ws_via_web_and_direct() {
    let s = start().await;
    for (proto, via_web) in
        [(Proto::Tcp, true), (Proto::WebSocket, true), (Proto::Tcp, false), (Proto::WebSocket, false)]
    {
        let r = run_conns(conns_config(&s, proto, via_web)).await.expect("conns runs");
        assert_eq!(r.attempted, 200, "{r}");
        assert_eq!(r.established, 200, "{r}");
        assert_eq!(r.alive_at_end, 200, "{r}");
        assert!(r.failures.is_empty(), "{r}");
        assert_eq!(r.handshake.count, 200);
        assert_eq!(r.lookup.is_some(), via_web);
        assert!(r.subscriptions_per_sec > 0.0);
        assert_eq!(r.rss.len(), 1);
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_private_loses_nothing_at_a_low_rate() {
    let s = start().await;
    for (proto, ver) in [(Proto::Tcp, None), (Proto::WebSocket, Some("1.0.5"))] {
        let r = run_push(push_config(&s, proto, 0, ver)).await.expect("push runs");
        assert_eq!(r.keys_subscribed, 50, "{r}");
        assert!(r.requests_ok >= 150, "{r}");
        assert_eq!(r.requests_ok, r.requests, "{r}");
        assert!(r.errors.is_empty(), "{r}");
        assert_eq!(r.tally.accepted, r.requests_ok, "{r}");
        assert_eq!(r.tally.accepted, r.tally.delivered + r.tally.lost, "{r}");
        assert_eq!(r.tally.lost, 0, "{r}");
        assert_eq!((r.tally.unconfirmed, r.duplicates, r.misrouted, r.foreign), (0, 0, 0, 0), "{r}");
        assert_eq!(r.latency.count, r.tally.delivered);
        assert!(r.subscribe_failures.is_empty(), "{r}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpush_batches_lose_nothing_at_a_low_rate() {
    let s = start().await;
    for (proto, ver) in [(Proto::Tcp, Some("1.0.5")), (Proto::WebSocket, None)] {
        let mut cfg = push_config(&s, proto, 10, ver);
        cfg.rate = 20;
        let r = run_push(cfg).await.expect("mpush runs");
        assert!(r.requests_ok >= 30, "{r}");
        assert!(r.errors.is_empty() && r.failed_keys == 0, "{r}");
        assert_eq!(r.tally.accepted, r.requests_ok * 10, "{r}");
        assert_eq!(r.tally.accepted, r.tally.delivered + r.tally.lost, "{r}");
        assert_eq!(r.tally.lost, 0, "{r}");
        assert_eq!((r.tally.unconfirmed, r.duplicates, r.misrouted), (0, 0, 0), "{r}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_and_broadcast_reach_every_member() {
    let s = start().await;
    for (broadcast, proto, ver) in [(false, Proto::Tcp, Some("1.0.5")), (true, Proto::WebSocket, None)] {
        let cfg = RoomConfig {
            web: format!("http://{}", s.public_addr()),
            admin: format!("http://{}", s.admin_addr()),
            proto,
            members: 40,
            messages: 10,
            rate: 50,
            broadcast,
            ver: ver.map(str::to_string),
            ..RoomConfig::default()
        };
        let r = run_room(cfg).await.expect("room runs");
        assert_eq!((r.members_subscribed, r.messages_ok), (40, 10), "{r}");
        assert!(r.errors.is_empty(), "{r}");
        assert_eq!((r.expected, r.delivered, r.lost), (400, 400, 0), "{r}");
        assert_eq!(r.time_to_last_member.count, 10, "{r}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn refuses_non_loopback_targets() {
    let cfg = ConnsConfig { web: "http://192.0.2.1:8090".into(), ..ConnsConfig::default() };
    assert!(matches!(run_conns(cfg).await, Err(bench::BenchError::NotLoopback(_))));
    let cfg = PushConfig { admin: "http://example.com:8091".into(), ..PushConfig::default() };
    assert!(matches!(run_push(cfg).await, Err(bench::BenchError::NotLoopback(_))));
}
