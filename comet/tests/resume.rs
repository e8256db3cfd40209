//! Resume on subscribe (docs/protocol.md#resume): a client that sends the last mid it saw gets the
//! stored messages after it, then the live ones, in mid order, with no gap and no duplicate, also
//! while saves are in flight and while it reconnects over and over during a stream of pushes.

mod common;

use common::*;
use futures::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The mid of a pushed frame's JSON.
fn mid_of(json: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(json).expect("a JSON frame");
    v["mid"].as_i64().expect("a mid")
}

#[tokio::test]
async fn tcp_resume_sends_what_came_after_the_mid_then_live_messages() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut mids = Vec::new();
    for i in 0..4 {
        mids.push(api.push_private("Terry-Mao".into(), format!("{{\"n\":{i}}}"), 60, None).await.unwrap());
    }
    let after = mids[1].to_string();
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "1", &after]).await;
    assert_eq!(tcp_message(&mut s).await, format!("{{\"msg\":{{\"n\":2}},\"mid\":{},\"gid\":0}}", mids[2]));
    assert_eq!(mid_of(&tcp_message(&mut s).await), mids[3]);
    let live = api.push_private("Terry-Mao".into(), "{\"n\":4}".into(), 0, None).await.unwrap();
    assert_eq!(mid_of(&tcp_message(&mut s).await), live);

    // Old format, resuming from the start.
    let mut old = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "", "0"]).await;
    assert_eq!(tcp_message(&mut old).await, format!("{{\"msg\":\"{{\\\"n\\\":0}}\",\"mid\":{},\"gid\":0}}", mids[0]));
}

#[tokio::test]
async fn a_save_in_flight_while_resuming_arrives_once_and_in_order() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let stored = api.push_private("Terry-Mao".into(), "1".into(), 60, None).await.unwrap();
    // The next save takes 400 ms: the client attaches while it runs.
    c.store.save_delays.lock().unwrap().push_back(Duration::from_millis(400));
    let slow = tokio::spawn({
        let api = api.clone();
        async move { api.push_private("Terry-Mao".into(), "2".into(), 60, None).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30&ver=1&mid=0", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    let online = api.push_private("Terry-Mao".into(), "3".into(), 0, None).await.unwrap();
    let in_flight = slow.await.unwrap().unwrap();
    let got: Vec<i64> =
        [ws_text(&mut ws).await, ws_text(&mut ws).await, ws_text(&mut ws).await].iter().map(|m| mid_of(m)).collect();
    assert_eq!(got, [stored, in_flight, online], "stored, then the one in flight, then the live one");
    // Nothing else: a heartbeat's answer is the next frame.
    ws.send(Message::text("h")).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
}

#[tokio::test]
async fn an_unreadable_store_still_subscribes_and_says_resume_failed() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    api.push_private("Terry-Mao".into(), "1".into(), 60, None).await.unwrap();
    c.store.fail_keys.lock().unwrap().insert("Terry-Mao".into());
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "1", "0"]).await;
    expect(&mut s, b"+r\r\n").await;
    let live = api.push_private("Terry-Mao".into(), "2".into(), 0, None).await.unwrap();
    assert_eq!(mid_of(&tcp_message(&mut s).await), live);

    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30&ver=1&mid=0", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    assert_eq!(ws_text(&mut ws).await, "+r\r\n");
}

#[tokio::test]
async fn a_bad_mid_is_a_parameter_error() {
    let c = start(test_config()).await;
    let mut s = tcp_send(c.tcp(), &cmd(&["sub", "Terry-Mao", "30", "", "1", "-5"])).await;
    assert_eq!(until_closed(&mut s).await, b"-p\r\n");
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30&mid=x", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "-p\r\n");
}

/// A publisher pushes without pause, some saves slow, while a client drops its connection after
/// every few messages and resumes from the last mid it saw, alternating TCP and WebSocket. What it
/// saw, across all its connections, is every pushed mid exactly once, in order.
#[tokio::test]
async fn reconnecting_over_and_over_during_pushes_loses_and_repeats_nothing() {
    const PUSHES: usize = 400;
    let c = start(test_config()).await;
    let api = c.comet.api();
    c.store.save_delays.lock().unwrap().extend((0..PUSHES).map(|i| Duration::from_millis((i % 7 == 0) as u64 * 3)));
    let publisher = tokio::spawn({
        let api = api.clone();
        async move {
            let mut mids = Vec::with_capacity(PUSHES);
            for i in 0..PUSHES {
                // Every tenth push is online only: it reaches only a connected client, so it is not
                // counted as owed (a gap there is no resume's business).
                let expire = if i % 10 == 9 { 0 } else { 60 };
                let mid = api.push_private("Terry-Mao".into(), i.to_string(), expire, None).await.unwrap();
                if expire > 0 {
                    mids.push(mid);
                }
                // Spread over a few hundred milliseconds, so the client reconnects many times.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            mids
        }
    });
    let mut seen: Vec<i64> = Vec::new();
    let mut last = 0i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for round in 0.. {
        assert!(tokio::time::Instant::now() < deadline, "gave up after {round} rounds, {} seen", seen.len());
        let done = publisher.is_finished();
        let want = if done { usize::MAX } else { 1 + round % 5 };
        let mut got = Vec::new();
        if round % 2 == 0 {
            let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "", "1", &last.to_string()]).await;
            while got.len() < want {
                match tokio::time::timeout(Duration::from_millis(200), tcp_message(&mut s)).await {
                    Ok(m) => got.push(mid_of(&m)),
                    Err(_) => break,
                }
            }
        } else {
            let q = format!("/sub?key=Terry-Mao&heartbeat=30&ver=1&mid={last}");
            let mut ws = ws_open(c.ws(), &q, None).await.unwrap();
            assert_eq!(ws_text(&mut ws).await, "+h\r\n");
            while got.len() < want {
                match tokio::time::timeout(Duration::from_millis(200), ws_text(&mut ws)).await {
                    Ok(m) => got.push(mid_of(&m)),
                    Err(_) => break,
                }
            }
        }
        for mid in got {
            assert!(mid > last, "mid {mid} after {last}: a duplicate or out of order");
            last = mid;
            seen.push(mid);
        }
        if done {
            eprintln!("resumed {round} times, saw {} messages", seen.len());
            break;
        }
    }
    let pushed = publisher.await.unwrap();
    let stored_seen: Vec<i64> = seen.iter().copied().filter(|m| pushed.contains(m)).collect();
    assert_eq!(stored_seen, pushed, "every stored message once, in order");
}
