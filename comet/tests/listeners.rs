//! The client listeners: an empty `tcp_bind` or `ws_bind` turns that protocol off, and the other
//! keeps working.

mod common;

use common::*;

#[tokio::test]
async fn an_empty_bind_list_turns_a_protocol_off() {
    let mut config = test_config();
    config.base.tcp_bind = Vec::new();
    let c = start(config).await;
    assert!(c.comet.tcp_addrs().is_empty());
    assert!(c.comet.node_info().tcp.is_empty(), "nothing to advertise");
    let mut ws = ws_open(c.ws(), "/sub?key=Terry-Mao&heartbeat=30", None).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "+h\r\n");

    let mut config = test_config();
    config.base.ws_bind = Vec::new();
    let c = start(config).await;
    assert!(c.comet.ws_addrs().is_empty());
    assert!(c.comet.node_info().ws.is_empty());
    tcp_sub(c.tcp(), &["sub", "Terry-Mao", "30"]).await;
}
