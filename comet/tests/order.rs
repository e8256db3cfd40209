//! Delivery follows mid order per key even when saves finish out of order, and a push retried
//! with the same idempotency id is stored and delivered once (docs/decisions.md#d20-ordering-and-resume,
//! docs/decisions.md#d21-safe-retries).

mod common;

use cluster::rpc::{CometError, StoreError};
use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The mid of a pushed frame's JSON.
fn mid_of(json: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(json).expect("a JSON frame");
    v["mid"].as_i64().expect("a mid")
}

/// Nothing more arrives on `s` within a short while (a failure here is a real extra frame).
async fn nothing_more(s: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 64];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
        assert_eq!(n, 0, "an extra frame arrived: {:?}", String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn stored_pushes_arrive_in_mid_order_whatever_order_their_saves_finish_in() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "1"]).await;
    // The first save takes 300 ms, the next ones none: unordered, the later pushes would win.
    c.store.save_delays.lock().unwrap().extend([Duration::from_millis(300), Duration::ZERO]);

    let slow = tokio::spawn({
        let api = api.clone();
        async move { api.push_private("Terry-Mao".into(), "1".into(), 60, None).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Both answer while the first save still runs: their saves are done (or not needed), and their
    // delivery waits in the key's line.
    let second = api.push_private("Terry-Mao".into(), "2".into(), 60, None).await.unwrap();
    let third = api.push_private("Terry-Mao".into(), "3".into(), 0, None).await.unwrap();
    let first = slow.await.unwrap().unwrap();
    assert!(first < second && second < third, "mids follow the order of the calls");

    let got: Vec<i64> = [tcp_message(&mut s).await, tcp_message(&mut s).await, tcp_message(&mut s).await]
        .iter()
        .map(|m| mid_of(m))
        .collect();
    assert_eq!(got, [first, second, third], "delivered in mid order");
}

#[tokio::test]
async fn a_failed_save_lets_the_pushes_behind_it_through() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "1"]).await;
    c.store.fail_keys.lock().unwrap().insert("Terry-Mao".into());
    c.store.save_delays.lock().unwrap().push_back(Duration::from_millis(200));
    let failing = tokio::spawn({
        let api = api.clone();
        async move { api.push_private("Terry-Mao".into(), "1".into(), 60, None).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let online = api.push_private("Terry-Mao".into(), "2".into(), 0, None).await.unwrap();
    assert_eq!(failing.await.unwrap(), Err(CometError::Store(StoreError::Backend)));
    assert_eq!(mid_of(&tcp_message(&mut s).await), online, "only the online push, once the save gave up");
    nothing_more(&mut s).await;
}

#[tokio::test]
async fn a_retried_id_is_stored_and_delivered_once() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "1"]).await;
    c.store.save_delays.lock().unwrap().push_back(Duration::from_millis(300));
    let id = || Some("order-42".to_string());

    // The retry arrives while the first push still saves: it waits and gets the same answer.
    let first = tokio::spawn({
        let api = api.clone();
        async move { api.push_private("Terry-Mao".into(), "{\"n\":1}".into(), 60, id()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let retry = api.push_private("Terry-Mao".into(), "{\"n\":1}".into(), 60, id()).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(retry, first);
    // A later repeat is answered from memory.
    assert_eq!(api.push_private("Terry-Mao".into(), "{\"n\":1}".into(), 60, id()).await, Ok(first));

    assert_eq!(mid_of(&tcp_message(&mut s).await), first);
    nothing_more(&mut s).await;
    assert_eq!(c.store.saves().len(), 1, "one stored copy");

    // Another id is another message; the same id on a multi-push is its own scope.
    let other = api.push_private("Terry-Mao".into(), "2".into(), 0, Some("order-43".into())).await.unwrap();
    assert!(other > first);
    let many = api.push_privates(vec!["Terry-Mao".into()], "3".into(), 0, id()).await.unwrap();
    assert_eq!(api.push_privates(vec!["Terry-Mao".into()], "3".into(), 0, id()).await, Ok(many.clone()));
    assert_eq!(mid_of(&tcp_message(&mut s).await), other);
    assert_eq!(mid_of(&tcp_message(&mut s).await), many.mid);
    nothing_more(&mut s).await;
}

#[tokio::test]
async fn a_failed_push_frees_its_id_for_a_real_retry() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "1"]).await;
    c.store.fail_save.store(true, Ordering::SeqCst);
    let id = Some("retry-me".to_string());
    assert!(api.push_private("Terry-Mao".into(), "1".into(), 60, id.clone()).await.is_err());
    c.store.fail_save.store(false, Ordering::SeqCst);
    let mid = api.push_private("Terry-Mao".into(), "1".into(), 60, id).await.unwrap();
    assert_eq!(mid_of(&tcp_message(&mut s).await), mid);
    assert_eq!(c.store.saves().len(), 1);
}
