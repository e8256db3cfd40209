//! How long a session takes to answer again once ZooKeeper returns after a 30 s outage with the
//! default 30 s session timeout: printed (and bounded only to catch a hang, since machines are
//! noisy). The client library's own doubling back-off left ~11 s here; past the session timeout
//! `Session` now tries a new session every second at most.

use cluster::{Session, ZkConfig};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_answers_again_after_a_long_outage() {
    let Some(mut zk) = testkit::ZkServer::start() else { return };
    let session = Session::start(ZkConfig { addr: zk.addr(), ..ZkConfig::default() });
    tokio::time::timeout(Duration::from_secs(30), session.live()).await.expect("a first session");
    assert!(session.connected());

    zk.stop();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!session.connected(), "the outage is seen");
    let restarted = Instant::now();
    zk.start_again();
    let ready = restarted.elapsed();
    testkit::eventually("the session to answer again", Duration::from_secs(60), || async { session.connected() }).await;
    eprintln!(
        "zookeeper restarted and answered its readiness probe in {ready:?}; the session answered {:?} after the restart",
        restarted.elapsed()
    );
}
