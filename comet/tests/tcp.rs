//! The TCP client protocol over real sockets, byte for byte (docs/protocol.md#tcp): every row of the
//! reply table, both message formats, heartbeats, deadlines and slow consumers.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn old_and_new_formats_byte_for_byte() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    // Java SDK: three arguments, old format.
    let mut old = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    // The wiki's four arguments put the version in the token slot: old format too.
    let mut wiki = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "1.0.4"]).await;
    // CocoaGoPush: five arguments with an empty token: new format.
    let mut new = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "35", "", "1.0"]).await;

    let raw = r#"{"test":1,"h":"<b>&"}"#;
    let mid = api.push_private("Terry-Mao".into(), raw.into(), 0, None).await.unwrap();
    let new_json = format!(r#"{{"msg":{{"test":1,"h":"\u003cb\u003e\u0026"}},"mid":{mid},"gid":0}}"#);
    expect(&mut new, format!("${}\r\n{new_json}\r\n", new_json.len()).as_bytes()).await;
    let old_json = format!(r#"{{"msg":"{{\"test\":1,\"h\":\"\u003cb\u003e\u0026\"}}","mid":{mid},"gid":0}}"#);
    expect(&mut old, format!("${}\r\n{old_json}\r\n", old_json.len()).as_bytes()).await;
    expect(&mut wiki, format!("${}\r\n{old_json}\r\n", old_json.len()).as_bytes()).await;

    // Several queued messages arrive in order, mids increasing.
    let mut mids = Vec::new();
    for i in 0..20 {
        mids.push(api.push_private("Terry-Mao".into(), format!("{{\"n\":{i}}}"), 0, None).await.unwrap());
    }
    assert!(mids.windows(2).all(|w| w[0] < w[1]));
    for (i, mid) in mids.iter().enumerate() {
        assert_eq!(tcp_message(&mut new).await, format!(r#"{{"msg":{{"n":{i}}},"mid":{mid},"gid":0}}"#));
    }
}

#[tokio::test]
async fn heartbeats_are_answered_and_pipelined_ones_too() {
    let c = start(test_config()).await;
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    s.write_all(b"h").await.unwrap();
    expect(&mut s, b"+h\r\n").await;
    s.write_all(b"hhh").await.unwrap();
    expect(&mut s, b"+h\r\n+h\r\n+h\r\n").await;

    // Heartbeats sent right behind the command, before `+h\r\n`, are answered after it.
    let mut bytes = cmd(&["sub", "Terry-Mao", "30"]);
    bytes.extend_from_slice(b"hh");
    let mut p = tcp_send(c.tcp(), &bytes).await;
    expect(&mut p, b"+h\r\n+h\r\n+h\r\n").await;

    // Pipelined junk closes after the acceptance.
    let mut bytes = cmd(&["sub", "Terry-Mao", "30"]);
    bytes.extend_from_slice(b"h\r\n");
    let mut j = tcp_send(c.tcp(), &bytes).await;
    let got = until_closed(&mut j).await;
    assert!(got.starts_with(b"+h\r\n"), "{got:?}");
}

#[tokio::test]
async fn any_other_byte_closes() {
    let c = start(test_config()).await;
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    s.write_all(b"h\r\n").await.unwrap();
    // `h` is answered, then `\r` closes (do not send `h\r\n`, docs/protocol.md#tcp).
    assert_eq!(until_closed(&mut s).await, b"+h\r\n");
    testkit::eventually("0 connections", WAIT, || std::future::ready(c.comet.connections() == 0)).await;
}

#[tokio::test]
async fn parameter_errors_reply_p_and_close() {
    let c = start(test_config()).await;
    let cases: &[&[&str]] = &[
        &["pub", "Terry-Mao", "30"],
        &["SUB", "Terry-Mao", "30"],
        &["sub", "Terry-Mao"],
        &["sub"],
        &["sub", "", "30"],
        &["sub", "Terry-Mao", "29"],
        &["sub", "Terry-Mao", "-30"],
        &["sub", "Terry-Mao", "thirty"],
        &["sub", &"k".repeat(257), "30"],
    ];
    for args in cases {
        let mut s = tcp_send(c.tcp(), &cmd(args)).await;
        assert_eq!(until_closed(&mut s).await, b"-p\r\n", "{args:?}");
    }
}

#[tokio::test]
async fn keys_of_other_nodes_reply_n() {
    let c = start(test_config()).await;
    for key in ["t1", "t2", "user_1", "hello"] {
        let mut s = tcp_send(c.tcp(), &cmd(&["sub", key, "30"])).await;
        assert_eq!(until_closed(&mut s).await, b"-n\r\n", "{key}");
    }
    // A ring without this node owns nothing either.
    let lone = start_with(test_config(), membership(&[("node2", 1)])).await;
    let mut s = tcp_send(lone.tcp(), &cmd(&["sub", "Terry-Mao", "30"])).await;
    assert_eq!(until_closed(&mut s).await, b"-n\r\n");
    // Nor does an empty membership (no ring yet).
    let empty = start_with(test_config(), cluster::CometMembership::default()).await;
    let mut s = tcp_send(empty.tcp(), &cmd(&["sub", "Terry-Mao", "30"])).await;
    assert_eq!(until_closed(&mut s).await, b"-n\r\n");
}

#[tokio::test]
async fn auth_mode_replies_a_and_c() {
    let mut config = test_config();
    config.channel.auth = true;
    let c = start(config).await;
    c.comet.api().add_token("Terry-Mao".into(), "secret".into(), 3600).await.unwrap();
    // The right token is accepted (from the comet's cache, or from the store).
    tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "secret", "1"]).await;
    c.store.tokens.lock().unwrap().insert(("Terry-Mao".into(), "other".into()), 60);
    tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "other"]).await;
    for args in [&["sub", "Terry-Mao", "30", "wrong"][..], &["sub", "Terry-Mao", "30"], &["sub", "Terry-Mao", "30", ""]]
    {
        let mut s = tcp_send(c.tcp(), &cmd(args)).await;
        assert_eq!(until_closed(&mut s).await, b"-a\r\n", "{args:?}");
    }
    // The token store cannot be asked: -c.
    c.store.fail_tokens.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut s = tcp_send(c.tcp(), &cmd(&["sub", "Terry-Mao", "30", "unknown"])).await;
    assert_eq!(until_closed(&mut s).await, b"-c\r\n");
    // A cached token still works while the store is down.
    tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30", "secret"]).await;
}

#[tokio::test]
async fn malformed_commands_close_silently() {
    let c = start(test_config()).await;
    let cases: &[&[u8]] = &[
        b"*0\r\n",
        b"*8\r\n$3\r\nsub\r\n",
        b"*1\r\n$-1\r\n\n",
        b"*3\r\n$-3\r\nsub\r\n",
        b"*1\r\n$99999999999999999999\r\n",
        b"*1\r\n$2000\r\n",
        b"GET /sub HTTP/1.1\r\n\r\n",
        b"*3\n$3\nsub\n",
        b"*1\r\n$3\r\nsubXY",
        b"h",
    ];
    for case in cases {
        let mut s = tcp_send(c.tcp(), case).await;
        assert_eq!(until_closed(&mut s).await, b"", "{:?}", String::from_utf8_lossy(case));
    }
    testkit::eventually("0 connections", WAIT, || std::future::ready(c.comet.connections() == 0)).await;
}

#[tokio::test]
async fn handshake_timeout_closes_silently() {
    let mut config = test_config();
    config.channel.handshake_timeout = Duration::from_millis(300);
    let c = start(config).await;
    let mut idle = tokio::net::TcpStream::connect(c.tcp()).await.unwrap();
    let mut partial = tcp_send(c.tcp(), b"*3\r\n$3\r\nsub\r\n").await;
    assert_eq!(until_closed(&mut idle).await, b"");
    assert_eq!(until_closed(&mut partial).await, b"");
}

#[tokio::test]
async fn over_max_subscriber_closes_silently() {
    let mut config = test_config();
    config.channel.max_subscriber = 2;
    let c = start(config).await;
    let _a = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    let _b = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    let mut third = tcp_send(c.tcp(), &cmd(&["sub", "Terry-Mao", "30"])).await;
    assert_eq!(until_closed(&mut third).await, b"");
    // Another key is not affected.
    let other = keys_of("node1", "k", 1).remove(0);
    tcp_sub(c.tcp(), &["sub", &other, "30"]).await;
}

#[tokio::test]
async fn missed_heartbeat_closes() {
    let mut config = test_config();
    // Test-only settings: a 0 s heartbeat plus 300 ms slack instead of upstream's ≥ 30 + 5 s.
    config.channel.min_heartbeat = 0;
    config.channel.heartbeat_slack = Duration::from_millis(300);
    let c = start(config).await;
    let mut s = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "0"]).await;
    // Heartbeats keep it open past the deadline...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.write_all(b"h").await.unwrap();
        expect(&mut s, b"+h\r\n").await;
    }
    // ...and silence closes it.
    let started = std::time::Instant::now();
    assert_eq!(until_closed(&mut s).await, b"");
    assert!(started.elapsed() >= Duration::from_millis(250));
    testkit::eventually("0 connections", WAIT, || std::future::ready(c.comet.connections() == 0)).await;
}

#[tokio::test]
async fn slow_consumer_is_closed_and_others_keep_receiving() {
    let mut config = test_config();
    config.channel.msgbuf = 8;
    config.channel.outbox_bytes = 16 * 1024;
    let c = start(config).await;
    let api = c.comet.api();
    let mut slow = never_reading_sub(c.tcp(), "Terry-Mao").await;
    let mut fast = tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(4000));
    for i in 0..60 {
        let mid = api.push_private("Terry-Mao".into(), body.clone(), 0, None).await.unwrap();
        let got = tcp_message(&mut fast).await;
        assert!(got.ends_with(&format!(",\"mid\":{mid},\"gid\":0}}")), "message {i}");
    }
    testkit::eventually("the slow consumer to be dropped", WAIT, || std::future::ready(c.comet.connections() == 1))
        .await;
    // What the slow client gets is its acceptance, some messages, then the end.
    let got = until_closed(&mut slow).await;
    assert!(got.starts_with(b"+h\r\n") && got.len() < 60 * 4000, "{} bytes", got.len());
}
