//! The WebSocket client protocol over real sockets (docs/protocol.md#websocket): `/sub` upgrades with and
//! without `Origin`, status strings as text frames, `h` heartbeats, one text frame per message in
//! the old or new format, and the limits that protect the comet.

mod common;

use common::*;
use futures::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

#[tokio::test]
async fn subscribe_with_and_without_origin_both_formats() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut browser = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", Some("http://example.com")).await.unwrap();
    assert_eq!(ws_text(&mut browser).await, "+h\r\n");
    let mut native = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30&token=&ver=1.0.5", None).await.unwrap();
    assert_eq!(ws_text(&mut native).await, "+h\r\n");

    let raw = r#"{"test":1,"h":"<b>&"}"#;
    let mid = api.push_private("Terry-Mao".into(), raw.into(), 0, None).await.unwrap();
    assert_eq!(
        ws_text(&mut browser).await,
        format!(r#"{{"msg":"{{\"test\":1,\"h\":\"\u003cb\u003e\u0026\"}}","mid":{mid},"gid":0}}"#)
    );
    assert_eq!(
        ws_text(&mut native).await,
        format!(r#"{{"msg":{{"test":1,"h":"\u003cb\u003e\u0026"}},"mid":{mid},"gid":0}}"#)
    );
    // A burst arrives as one text frame per message, in order.
    let mut mids = Vec::new();
    for i in 0..10 {
        mids.push(api.push_private("Terry-Mao".into(), format!("[{i}]"), 0, None).await.unwrap());
    }
    for (i, mid) in mids.iter().enumerate() {
        assert_eq!(ws_text(&mut native).await, format!(r#"{{"msg":[{i}],"mid":{mid},"gid":0}}"#));
    }
    // Percent-encoded keys are decoded.
    let key = keys_of("node1", "a b/", 1).remove(0);
    let mut enc =
        ws_open(c.ws(), &format!("/sub?key={}&heartbeat=30", key.replace(' ', "%20").replace('/', "%2F")), None)
            .await
            .unwrap();
    assert_eq!(ws_text(&mut enc).await, "+h\r\n");
    api.push_private(key.clone(), "1".into(), 0, None).await.unwrap();
    assert!(ws_text(&mut enc).await.starts_with(r#"{"msg":"1","mid":"#));
}

#[tokio::test]
async fn heartbeats_text_or_binary() {
    let c = start(test_config()).await;
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    ws.send(Message::Text(Utf8Bytes::from_static("h"))).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    ws.send(Message::Binary(bytes::Bytes::from_static(b"h"))).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    ws.send(Message::Ping(bytes::Bytes::from_static(b"p"))).await.unwrap();
    match tokio::time::timeout(WAIT, futures::StreamExt::next(&mut ws)).await.unwrap() {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"p"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // Any other payload closes, without a close frame.
    ws.send(Message::Text(Utf8Bytes::from_static("h\r\n"))).await.unwrap();
    assert_eq!(ws_closed(&mut ws).await, None);
}

#[tokio::test]
async fn status_frames_then_close() {
    let mut config = test_config();
    config.channel.auth = true;
    let c = start(config).await;
    c.comet.api().add_token("Terry-Mao".into(), "tok".into(), 60).await.unwrap();
    let cases = [
        ("/sub?key=Terry-Mao", "-p\r\n"),
        ("/sub?heartbeat=30", "-p\r\n"),
        ("/sub?key=Terry-Mao&heartbeat=10&token=tok", "-p\r\n"),
        ("/sub?key=&heartbeat=30&token=tok", "-p\r\n"),
        ("/sub?key=%zz&heartbeat=30", "-p\r\n"),
        ("/sub?key=t1&heartbeat=30&token=tok", "-n\r\n"),
        ("/sub?key=Terry-Mao&heartbeat=30&token=bad", "-a\r\n"),
        ("/sub?key=Terry-Mao&heartbeat=30", "-a\r\n"),
    ];
    for (path, reply) in cases {
        let mut ws = ws_open(c.ws(), path, Some("http://example.com")).await.unwrap();
        assert_eq!(ws_text(&mut ws).await, reply, "{path}");
        assert_eq!(ws_closed(&mut ws).await, None, "{path}: dropped without a close frame");
    }
    let mut ok = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30&token=tok&ver=1", None).await.unwrap();
    assert_eq!(ws_text(&mut ok).await, "+h\r\n");
    c.store.fail_tokens.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30&token=unknown", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "-c\r\n");
}

#[tokio::test]
async fn wrong_path_and_origin_are_refused_at_upgrade() {
    let mut config = test_config();
    config.channel.allowed_origins = vec!["https://app.example.com".into()];
    let c = start(config).await;
    let err = ws_open(c.ws(), "/other?key=Terry-Mao&heartbeat=30", None).await.unwrap_err();
    assert!(err.contains("404"), "{err}");
    let err = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", Some("https://evil.example.com")).await.unwrap_err();
    assert!(err.contains("403"), "{err}");
    let mut ok = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", Some("https://app.example.com")).await.unwrap();
    assert_eq!(ws_text(&mut ok).await, "+h\r\n");
    let mut native = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_text(&mut native).await, "+h\r\n");
}

#[tokio::test]
async fn oversized_frames_close() {
    let c = start(test_config()).await;
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    ws.send(Message::Binary(vec![b'h'; 4096].into())).await.unwrap();
    ws_closed(&mut ws).await;
    testkit::eventually("0 connections", WAIT, || std::future::ready(c.comet.connections() == 0)).await;
}

#[tokio::test]
async fn over_max_subscriber_is_dropped_after_upgrade() {
    let mut config = test_config();
    config.channel.max_subscriber = 1;
    let c = start(config).await;
    let mut first = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_text(&mut first).await, "+h\r\n");
    let mut second = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_closed(&mut second).await, None);
}

#[tokio::test]
async fn pings_do_not_extend_the_deadline_but_h_does() {
    let mut config = test_config();
    config.channel.min_heartbeat = 0;
    config.channel.heartbeat_slack = Duration::from_millis(400);
    let c = start(config).await;
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=0", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ws.send(Message::Text(Utf8Bytes::from_static("h"))).await.unwrap();
        assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    }
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            if ws.send(Message::Ping(bytes::Bytes::from_static(b"x"))).await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(100), futures::StreamExt::next(&mut ws)).await {
                Ok(Some(Ok(Message::Pong(_)))) | Err(_) => {}
                Ok(_) => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "pings kept the connection open");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn close_key_sends_a_normal_close_frame() {
    let c = start(test_config()).await;
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    let mut tcp = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    assert_eq!(c.comet.api().close_key("Terry-Mao".into()).await.unwrap(), 2);
    assert_eq!(ws_closed(&mut ws).await, Some(1000));
    assert_eq!(until_closed(&mut tcp).await, b"");
    assert_eq!(c.comet.api().ping().await.unwrap().channels, 0);
}
