//! CometRpc behaviour over real sockets: store-then-deliver ordering and failures, batched pushes,
//! tokens, ring changes moving keys away, the wire server, the stat port and shutdown.

mod common;

use cluster::pool::{RemoteComet, RpcConfig};
use cluster::rpc::{CometApi, CometError, StoreError};
use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn push_private_stores_first_and_a_failed_save_delivers_nothing() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "1"]).await;

    let mid = api.push_private("Terry-Mao".into(), "{\"a\": 1}".into(), 60, None).await.unwrap();
    assert_eq!(c.store.saves(), vec![(vec!["Terry-Mao".to_string()], "{\"a\": 1}".to_string(), mid, 60)]);
    assert_eq!(tcp_message(&mut s).await, format!(r#"{{"msg":{{"a":1}},"mid":{mid},"gid":0}}"#));

    c.store.fail_save.store(true, Ordering::SeqCst);
    let err = api.push_private("Terry-Mao".into(), "2".into(), 60, None).await.unwrap_err();
    assert_eq!(err, CometError::Store(StoreError::Backend));
    // expire 0 is online only: no save, still delivered.
    let mid3 = api.push_private("Terry-Mao".into(), "3".into(), 0, None).await.unwrap();
    assert_eq!(tcp_message(&mut s).await, format!(r#"{{"msg":3,"mid":{mid3},"gid":0}}"#), "message 2 never came");
    assert_eq!(c.store.saves().len(), 1);

    assert_eq!(api.push_private("Terry-Mao".into(), "not json".into(), 0, None).await, Err(CometError::BadMessage));
    assert_eq!(api.push_private("".into(), "1".into(), 0, None).await, Err(CometError::BadKey));
    assert_eq!(api.push_private("t1".into(), "1".into(), 0, None).await, Err(CometError::NotOwner));
    assert_eq!(c.comet.api().ping().await.unwrap().channels, 1, "pushes to unknown keys create no channel");
}

#[tokio::test]
async fn push_privates_reports_failed_keys() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mine = keys_of("node1", "m", 3);
    let mut subs = Vec::new();
    for k in &mine {
        subs.push(tcp_sub(c.tcp(), &["sub", k, "30", "", "1"]).await);
    }
    c.store.fail_keys.lock().unwrap().insert(mine[2].clone());
    let keys = vec![mine[0].clone(), "t1".into(), mine[1].clone(), mine[0].clone(), mine[2].clone(), String::new()];
    let reply = api.push_privates(keys, "{\"x\":true}".into(), 30, None).await.unwrap();
    assert_eq!(reply.failed, vec!["t1".to_string(), String::new(), mine[2].clone()]);
    let saves = c.store.saves();
    assert_eq!(saves.len(), 1, "one batched save");
    assert_eq!(saves[0].0, vec![mine[0].clone(), mine[1].clone()]);
    assert_eq!(saves[0].2, reply.mid);
    for s in &mut subs[..2] {
        assert_eq!(tcp_message(s).await, format!(r#"{{"msg":{{"x":true}},"mid":{},"gid":0}}"#, reply.mid));
    }
    // The key whose save failed got nothing: the next push is the first it sees.
    let next = api.push_privates(vec![mine[2].clone()], "7".into(), 0, None).await.unwrap();
    assert!(next.failed.is_empty() && next.mid > reply.mid);
    assert_eq!(tcp_message(&mut subs[2]).await, format!(r#"{{"msg":7,"mid":{},"gid":0}}"#, next.mid));

    // A store that fails outright fails every owned key.
    c.store.fail_save.store(true, Ordering::SeqCst);
    let reply = api.push_privates(vec![mine[0].clone(), "t2".into()], "1".into(), 30, None).await.unwrap();
    assert_eq!(reply.failed, vec!["t2".to_string(), mine[0].clone()]);
    assert!(matches!(api.push_privates(vec![mine[0].clone()], "{".into(), 0, None).await, Err(CometError::BadMessage)));
}

#[tokio::test]
async fn tokens_are_stored_and_checked() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    api.add_token("Terry-Mao".into(), "t".into(), 120).await.unwrap();
    assert_eq!(c.store.tokens.lock().unwrap().get(&("Terry-Mao".into(), "t".into())), Some(&120));
    assert_eq!(api.add_token("t1".into(), "t".into(), 120).await, Err(CometError::NotOwner));
    assert_eq!(api.add_token("Terry-Mao".into(), "".into(), 120).await, Err(CometError::BadToken));
}

#[tokio::test]
async fn ring_change_closes_moved_keys_only() {
    let mut config = test_config();
    config.base.migrate_grace = Duration::from_millis(200);
    let c = start_with(config, membership(&[("node1", 1)])).await;
    // With node1 alone every key is ours; after node2 and node3 join, some move.
    let staying = keys_of("node1", "s", 3);
    let moving = [keys_of("node2", "v", 2), keys_of("node3", "v", 2)].concat();
    let mut stay = Vec::new();
    for k in &staying {
        stay.push(tcp_sub(c.tcp(), &["sub", k, "30"]).await);
    }
    let mut go = Vec::new();
    for k in &moving {
        go.push(tcp_sub(c.tcp(), &["sub", k, "30"]).await);
    }
    let mut ws_go = ws_open(c.ws(), &format!("/sub?key={}&heartbeat=30", moving[0]), None).await.unwrap();
    assert_eq!(ws_text(&mut ws_go).await, "+h\r\n");

    c.membership.send_replace(Arc::new(golden()));
    for s in &mut go {
        assert_eq!(until_closed(s).await, b"");
    }
    assert_eq!(ws_closed(&mut ws_go).await, Some(1000));
    for s in &mut stay {
        s.write_all(b"h").await.unwrap();
        expect(s, b"+h\r\n").await;
    }
    assert_eq!(c.comet.api().push_private(moving[0].clone(), "1".into(), 0, None).await, Err(CometError::NotOwner));
    let mut s = tcp_send(c.tcp(), &cmd(&["sub", &moving[1], "30"])).await;
    assert_eq!(until_closed(&mut s).await, b"-n\r\n");
    // Closed connections' tasks finish a moment after their clients see the close.
    testkit::eventually("3 connections", WAIT, || std::future::ready(c.comet.connections() == 3)).await;
    let status = c.comet.api().ping().await.unwrap();
    assert_eq!((status.connections, status.channels, status.serving), (3, 3, true));
}

#[tokio::test]
async fn cometrpc_over_tcp() {
    let c = start(test_config()).await;
    let remote = RemoteComet::new(c.comet.rpc_addr().to_string(), RpcConfig::default());
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    let mid = remote.push_private("Terry-Mao".into(), "{\"r\":1}".into(), 0, None).await.unwrap();
    assert_eq!(tcp_message(&mut s).await, format!(r#"{{"msg":"{{\"r\":1}}","mid":{mid},"gid":0}}"#));
    assert_eq!(remote.push_private("t1".into(), "1".into(), 0, None).await, Err(CometError::NotOwner));
    let status = remote.ping().await.unwrap();
    assert_eq!((status.node.as_str(), status.connections, status.serving), ("node1", 1, true));
    assert_eq!(remote.close_key("Terry-Mao".into()).await, Ok(1));
    assert_eq!(until_closed(&mut s).await, b"");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> testkit::http::Response {
    testkit::http::get(&addr.to_string(), path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test]
async fn stat_port_serves_health_and_metrics() {
    let c = start(test_config()).await;
    let _s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    c.comet.api().push_private("Terry-Mao".into(), "1".into(), 0, None).await.unwrap();
    let stat = c.comet.stat_addr().unwrap();
    let health = http_get(stat, "/health").await;
    let body = health.body();
    assert_eq!(health.status(), 200, "{body}");
    assert!(body.contains("\"node\":\"node1\"") && body.contains("\"serving\":true"), "{body}");
    let metrics = http_get(stat, "/metrics").await;
    assert!(metrics.body().contains("gopush_comet_pushes_total"), "{}", metrics.body());
    // A comet off the ring is not healthy.
    let off = start_with(test_config(), membership(&[("node2", 1)])).await;
    assert_eq!(http_get(off.comet.stat_addr().unwrap(), "/health").await.status(), 503);
}

#[tokio::test]
async fn shutdown_closes_everything_and_stops_listening() {
    let mut config = test_config();
    config.base.drain = Duration::from_millis(200);
    let c = start(config).await;
    let mut a = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    let mut b = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_text(&mut b).await, "+h\r\n");
    let (tcp, rpc) = (c.tcp(), c.comet.rpc_addr());
    tokio::time::timeout(Duration::from_secs(10), c.comet.shutdown()).await.expect("shutdown in time");
    assert_eq!(until_closed(&mut a).await, b"");
    assert_eq!(ws_closed(&mut b).await, Some(1001), "going away: the comet is shutting down");
    assert!(tokio::net::TcpStream::connect(tcp).await.is_err(), "tcp listener closed");
    assert!(tokio::net::TcpStream::connect(rpc).await.is_err(), "rpc listener closed");
}
