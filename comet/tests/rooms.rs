//! Room changes that race a subscriber's store read (docs/decisions.md#d53-the-owning-comet-indexes-live-connections-by-room):
//! the store double answers the subscriber's read late, so a join or leave reaches the comet
//! after the read and before the subscriber joins its channel, every time.

mod common;

use cluster::rpc::MessageApi;
use common::*;
use std::time::Duration;

const KEY: &str = "Terry-Mao";

/// Waits until the store has served more than `before` calls: the subscriber's read is done.
async fn read_done(c: &Running, before: u32) {
    testkit::eventually("the subscriber's store read", WAIT, || std::future::ready(c.store.served() > before)).await;
}

/// The next message's `msg` field, as JSON text.
async fn next_msg(s: &mut tokio::net::TcpStream) -> String {
    let v: serde_json::Value = serde_json::from_str(&tcp_message(s).await).expect("JSON");
    v["msg"].to_string()
}

#[tokio::test]
async fn changes_during_the_first_subscribers_store_read_reach_it() {
    let c = start(test_config()).await;
    let api = c.comet.api();
    let store: &dyn MessageApi = &*c.store;
    store.join_rooms(vec![KEY.into()], "old".into()).await.unwrap();
    c.store.subscriber_delays.lock().unwrap().push_back(Duration::from_millis(500));
    let before = c.store.served();
    let addr = c.tcp();
    let subscribing = tokio::spawn(async move { tcp_sub(addr, &["sub", KEY, "30", "", "1"]).await });
    read_done(&c, before).await;

    // As web does: the store first, then the owning comet, while the subscriber's answer (rooms:
    // "old") is still on its way.
    store.join_rooms(vec![KEY.into()], "new".into()).await.unwrap();
    api.join_rooms(vec![KEY.into()], "new".into()).await.unwrap();
    store.leave_rooms(vec![KEY.into()], "old".into()).await.unwrap();
    api.leave_rooms(vec![KEY.into()], "old".into()).await.unwrap();
    let mut s = subscribing.await.unwrap();

    api.push_room("old".into(), "{\"room\":\"old\"}".into(), 1).await.unwrap();
    api.push_room("new".into(), "{\"room\":\"new\"}".into(), 2).await.unwrap();
    assert_eq!(next_msg(&mut s).await, r#"{"room":"new"}"#, "the join reached the subscriber, the leave did too");
    api.push_private(KEY.into(), "{\"marker\":1}".into(), 0, None).await.unwrap();
    assert_eq!(next_msg(&mut s).await, r#"{"marker":1}"#, "nothing from the room it left");

    // A second subscriber finds the channel's rooms current and takes them without a store read.
    let before = c.store.served();
    let mut t = tcp_sub(c.tcp(), &["sub", KEY, "30", "", "1"]).await;
    assert_eq!(c.store.served(), before, "no store read");
    api.push_room("new".into(), "{\"n\":2}".into(), 3).await.unwrap();
    assert_eq!(next_msg(&mut s).await, r#"{"n":2}"#);
    assert_eq!(next_msg(&mut t).await, r#"{"n":2}"#);
}

#[tokio::test]
async fn a_join_on_a_token_only_channel_does_not_hide_the_stored_rooms() {
    let mut config = test_config();
    config.channel.auth = true;
    let c = start(config).await;
    let api = c.comet.api();
    let store: &dyn MessageApi = &*c.store;
    store.join_rooms(vec![KEY.into()], "stored".into()).await.unwrap();
    // The token is cached: the key has a channel that does not know its rooms.
    api.add_token(KEY.into(), "secret".into(), 600).await.unwrap();
    store.join_rooms(vec![KEY.into()], "joined".into()).await.unwrap();
    api.join_rooms(vec![KEY.into()], "joined".into()).await.unwrap();

    let mut s = tcp_sub(c.tcp(), &["sub", KEY, "30", "secret", "1"]).await;
    api.push_room("stored".into(), "{\"room\":\"stored\"}".into(), 1).await.unwrap();
    api.push_room("joined".into(), "{\"room\":\"joined\"}".into(), 2).await.unwrap();
    assert_eq!(next_msg(&mut s).await, r#"{"room":"stored"}"#);
    assert_eq!(next_msg(&mut s).await, r#"{"room":"joined"}"#);
}

#[tokio::test]
async fn a_subscriber_that_gives_up_leaves_no_channel_behind() {
    let mut config = test_config();
    config.channel.auth = true;
    let c = start(config).await;
    // A wrong token: the subscriber began loading, then was refused.
    let mut s = tcp_send(c.tcp(), &cmd(&["sub", KEY, "30", "wrong"])).await;
    assert_eq!(until_closed(&mut s).await, b"-a\r\n");
    let api = c.comet.api();
    testkit::eventually("no channel left", WAIT, || {
        let api = api.clone();
        async move { api.ping().await.map(|s| s.channels) == Ok(0) }
    })
    .await;
}
