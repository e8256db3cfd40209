//! Hostile HTTP clients (docs/decisions.md#d9-hostile-input): heads capped in bytes and in time,
//! a per-source connection cap that closes extra connections at once, and throttled admin tokens.
//! Attackers connect from 127.0.0.2, well-behaved clients from 127.0.0.1: both are loopback.

#[allow(unused_imports)]
mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse().expect("ip"), 0))?;
    socket.connect(addr.parse().expect("addr")).await
}

/// True when the server closes `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_do_not_slow_down_others() {
    let w = start_web(loopback_config(), golden_membership(), Arc::new(FakeStore::default())).await;
    let p = w.public();
    // 2,000 requests whose heads never end, each 8 KiB in: more than one source may hold.
    let pad = format!("GET /1/time/get HTTP/1.1\r\nHost: t\r\nX-Pad: {}", "a".repeat(8 * 1024));
    let mut held = Vec::new();
    let started = Instant::now();
    for _ in 0..2000 {
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(2), connect_from("127.0.0.2", &p)).await else {
            continue;
        };
        let _ = s.write_all(pad.as_bytes()).await;
        held.push(s);
        assert!(started.elapsed() < Duration::from_secs(60), "opening the attack took too long");
    }
    let asked = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), get(&p, "/1/server/get?k=t1&p=2")).await.expect("answered");
    let took = asked.elapsed();
    println!("a normal request under 2,000 half-sent ones took {took:?}");
    assert_eq!(r.text(), json_200(r#"{"data":{"server":"node2:6969"},"ret":0}"#));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The per-source cap (1,000 by default) closed the rest at once.
    let mut closed = 0;
    for s in held.iter_mut().rev().take(1000) {
        if closed_within(s, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    assert!(closed >= 900, "only {closed} of the connections over the cap were closed");
    drop(held);
    w.web.shutdown().await;
}

#[tokio::test]
async fn heads_are_capped_in_bytes() {
    let w = start_web(loopback_config(), golden_membership(), Arc::new(FakeStore::default())).await;
    for target in [w.public(), w.admin()] {
        let mut s = TcpStream::connect(&target).await.unwrap();
        let req = format!("GET /1/time/get HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(100 * 1024));
        // The server may stop reading (and reset) before all of it is written.
        let _ = s.write_all(req.as_bytes()).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await.expect("closed");
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains(" 200 "), "{text}");
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 431 "), "{text}");
    }
    // A head just under the cap is still served.
    let r = exchange(
        &w.public(),
        format!("GET /1/time/get HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n", "a".repeat(15 * 1024)).as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 200);
    w.web.shutdown().await;
}

#[tokio::test]
async fn a_head_that_trickles_in_is_cut_off_as_a_whole() {
    let mut config = loopback_config();
    config.base.http_timeout = Duration::from_millis(500);
    let w = start_web(config, golden_membership(), Arc::new(FakeStore::default())).await;
    let mut s = TcpStream::connect(w.public()).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    // One header byte every 50 ms keeps every read short, but the head never ends.
    for b in b"GET /1/time/get HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')).take(100) {
        if s.write_all(&[*b]).await.is_err() || closed_within(&mut s, Duration::from_millis(50)).await {
            cut = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(cut, "the trickling head was never cut off");
    assert!(took < Duration::from_secs(2), "cut after {took:?}");
    w.web.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_per_source_cap_are_closed_at_once() {
    let mut config = loopback_config();
    config.base.max_connections_per_ip = 5;
    let w = start_web(config, golden_membership(), Arc::new(FakeStore::default())).await;
    let p = w.public();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from("127.0.0.2", &p).await.unwrap());
    }
    let mut extra = connect_from("127.0.0.2", &p).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)).await, "the sixth was kept open");
    // Held connections still work, and other sources are not affected.
    held[0].write_all(b"GET /1/time/get HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 12];
    held[0].read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    assert_eq!(get(&p, "/1/time/get").await.status(), 200);
    // A place freed is a place taken again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect_from("127.0.0.2", &p).await.unwrap();
    again.write_all(b"GET /1/time/get HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    again.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    w.web.shutdown().await;
}

/// `POST /1/token/add` from `from` with an `Authorization` header; the status code.
async fn token_add_from(from: &str, admin: &str, authorization: &str) -> u16 {
    let mut s = connect_from(from, admin).await.unwrap();
    let req = format!(
        "POST /1/token/add?k=Terry-Mao&t=x HTTP/1.1\r\nHost: t\r\nAuthorization: {authorization}\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

#[tokio::test]
async fn admin_tokens_take_any_scheme_case_and_wrong_ones_are_throttled() {
    let mut config = loopback_config();
    config.base.admin_token = "s3cret".into();
    let w = start_web(config, golden_membership(), Arc::new(FakeStore::default())).await;
    let a = w.admin();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        assert_eq!(token_add_from("127.0.0.1", &a, &format!("{scheme} s3cret")).await, 200, "{scheme}");
    }
    for _ in 0..10 {
        assert_eq!(token_add_from("127.0.0.2", &a, "Bearer guess").await, 401);
    }
    // Blocked now, even with the right token; other sources are not.
    let r = {
        let mut s = connect_from("127.0.0.2", &a).await.unwrap();
        s.write_all(
            b"POST /1/token/add?k=a&t=b HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .unwrap();
        let mut got = vec![0u8; 4096];
        let n = s.read(&mut got).await.unwrap();
        String::from_utf8_lossy(&got[..n]).to_string()
    };
    assert!(r.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{r}");
    assert!(r.contains("Retry-After: 60\r\n"), "{r}");
    assert_eq!(token_add_from("127.0.0.1", &a, "Bearer s3cret").await, 200);
    // Monitoring is never throttled.
    let mut s = connect_from("127.0.0.2", &a).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    w.web.shutdown().await;
}
