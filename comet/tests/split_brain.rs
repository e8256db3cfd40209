//! No split brain (docs/decisions.md#d22-no-split-brain): a comet that cannot see ZooKeeper past
//! its session timeout lets its clients go and takes no new subscriptions, since web may have
//! moved its keys to another comet; once ZooKeeper is back and it is registered again, it serves.

mod common;

use cluster::membership::watch_comets;
use cluster::{Session, ZkConfig};
use comet::{Comet, CometDeps};
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comet_cut_off_from_zookeeper_lets_its_clients_go_and_comes_back() {
    let Some(mut zk) = testkit::ZkServer::start() else { return };
    let root = format!("/{}", testkit::unique_name("split"));
    let zk_config = ZkConfig {
        addr: zk.addr(),
        timeout: Duration::from_secs(3),
        comet_path: format!("{root}/comet"),
        message_path: format!("{root}/message"),
        ..ZkConfig::default()
    };
    let session = Session::start(zk_config.clone());
    let mut config = test_config();
    config.zookeeper = zk_config;
    config.base.register_timeout = Duration::from_secs(30);
    let deps = CometDeps { membership: watch_comets(&session), messages: FakeStore::new(), session: Some(session) };
    let comet = Comet::start(config, deps).await.expect("comet registers and starts");
    let tcp = comet.tcp_addrs()[0];
    let mut client = tcp_sub(tcp, &["sub", "Terry-Mao", "30", "", "1"]).await;

    zk.stop();
    // Closed once the session timeout has passed without ZooKeeper (a bound, not a speed check).
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 64];
        while !matches!(tokio::io::AsyncReadExt::read(&mut client, &mut buf).await, Ok(0) | Err(_)) {}
    })
    .await;
    assert!(closed.is_ok(), "the client was let go");
    let mut refused = tcp_send(tcp, &cmd(&["sub", "Terry-Mao", "30", "", "1"])).await;
    assert_eq!(until_closed(&mut refused).await, b"-n\r\n", "no subscription while cut off");
    // Pushes are still taken: with ZooKeeper down everywhere, web still routes here, and a stored
    // push is kept for the client to fetch, whichever comet it reconnects to.
    assert!(comet.api().push_private("Terry-Mao".into(), "1".into(), 60, None).await.is_ok());

    zk.start_again();
    testkit::eventually("the comet to take subscriptions again", Duration::from_secs(60), || async {
        let mut s = tcp_send(tcp, &cmd(&["sub", "Terry-Mao", "30", "", "1"])).await;
        let mut ok = [0u8; 4];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), tokio::io::AsyncReadExt::read_exact(&mut s, &mut ok)).await,
            Ok(Ok(_))
        ) && &ok == b"+h\r\n"
    })
    .await;
    comet.shutdown().await;
}
