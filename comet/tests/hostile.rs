//! Clients that push the comet's limits: long heartbeats, plain HTTP on the WebSocket port, bursts
//! of small frames and consumers that never read, and large messages over WebSocket (delivered
//! intact, with no per-connection buffer kept for them; see tests/memory.rs for the RSS check).

mod common;

use common::*;
use futures::SinkExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

#[tokio::test]
async fn heartbeats_over_nine_digits_are_accepted() {
    let c = start(test_config()).await;
    // Upstream's Atoi took any 64-bit number; the comet clamps it to a day.
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "9999999999"]).await;
    s.write_all(b"h").await.unwrap();
    expect(&mut s, b"+h\r\n").await;
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=9223372036854775807", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    // Past 64 bits Atoi failed too: still `-p`.
    let mut s = tcp_send(c.tcp(), &cmd(&["sub", "Terry-Mao", "99999999999999999999"])).await;
    assert_eq!(until_closed(&mut s).await, b"-p\r\n");
}

/// Sends `request` to the WebSocket port and returns everything the comet answers before closing.
async fn http(c: &Running, request: &str) -> String {
    let mut s = tcp_send(c.ws(), request.as_bytes()).await;
    String::from_utf8(until_closed(&mut s).await).unwrap()
}

#[tokio::test]
async fn the_websocket_port_answers_plain_http_and_old_versions() {
    let c = start(test_config()).await;
    let plain = http(&c, "GET /sub?key=Terry-Mao&heartbeat=30 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{plain}");
    let (head, body) = plain.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())), "{plain}");
    assert!(body.contains("WebSocket"), "{plain}");

    let v8 = http(
        &c,
        "GET /sub?key=Terry-Mao&heartbeat=30 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert!(v8.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{v8}");
    assert!(v8.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{v8}");

    // A request split over several writes still upgrades: the head read first is replayed.
    let mut s = TcpStream::connect(c.ws()).await.unwrap();
    let request = "GET /sub?key=Terry-Mao&heartbeat=30 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    for part in request.as_bytes().chunks(40) {
        s.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"+h\r\n") && got.len() < 4096 {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.expect("an answer in time").unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");

    // Unchanged: a real upgrade elsewhere is a 404 from the upgrade itself.
    assert!(ws_open(c.ws(), "/other", None).await.unwrap_err().contains("404"));
}

#[tokio::test]
async fn a_burst_of_small_frames_does_not_cut_a_reading_client() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut tcp = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    // Far more than `msgbuf` (30) frames, queued before the writers get a turn.
    let mut mids = Vec::new();
    for i in 0..500 {
        mids.push(api.push_private("Terry-Mao".into(), format!("[{i}]"), 0, None).await.unwrap());
    }
    for (i, mid) in mids.iter().enumerate() {
        assert_eq!(tcp_message(&mut tcp).await, format!(r#"{{"msg":"[{i}]","mid":{mid},"gid":0}}"#));
        assert_eq!(ws_text(&mut ws).await, format!(r#"{{"msg":"[{i}]","mid":{mid},"gid":0}}"#));
    }
    assert_eq!(c.comet.connections(), 2);
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_over_the_byte_limit() {
    let mut config = test_config();
    config.channel.msgbuf = 4;
    config.channel.outbox_bytes = 64 * 1024;
    let c = start(config).await;
    let api = c.comet.api();
    let mut slow = never_reading_sub(c.tcp(), "Terry-Mao").await;
    testkit::eventually("the subscriber to connect", Duration::from_secs(5), || async { c.comet.connections() == 1 })
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(4000));
    // Eight frames are past `msgbuf` but hold 32 KiB: under the byte limit, so kept.
    for _ in 0..8 {
        api.push_private("Terry-Mao".into(), body.clone(), 0, None).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.comet.connections(), 1, "cut under the byte limit");
    // 160 KiB cannot all sit in the kernel's small buffers: the outbox goes over 64 KiB.
    for _ in 0..32 {
        api.push_private("Terry-Mao".into(), body.clone(), 0, None).await.unwrap();
    }
    testkit::eventually("the slow consumer to be cut", Duration::from_secs(5), || async { c.comet.connections() == 0 })
        .await;
    let got = until_closed(&mut slow).await;
    assert!(got.starts_with(b"+h\r\n") && got.len() < 40 * 4000, "{} bytes", got.len());
}

#[tokio::test]
async fn large_messages_reach_websocket_clients_intact_and_in_order() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30&ver=1", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
    let mut expected = Vec::new();
    // Sizes around the 126 and 65536 length encodings and the write buffer.
    for size in [10, 120, 4000, 5000, 65_530, 70_000, 10] {
        let body = format!("\"{}\"", "y".repeat(size));
        let mid = api.push_private("Terry-Mao".into(), body.clone(), 0, None).await.unwrap();
        expected.push(format!(r#"{{"msg":{body},"mid":{mid},"gid":0}}"#));
    }
    for e in &expected {
        assert_eq!(&ws_text(&mut ws).await, e);
    }
    // The connection is still in step: a heartbeat is answered.
    ws.send(Message::Text(Utf8Bytes::from_static("h"))).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");
}
