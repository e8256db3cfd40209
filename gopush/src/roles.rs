//! The cluster roles: each builds its ZooKeeper session and membership from its config, starts its
//! server, and runs until `stop` is cancelled (SIGTERM or Ctrl-C in the binary).

use cluster::Session;
use cluster::membership::{watch_comets, watch_messages};
use cluster::pool::MessagePool;
use comet::{Comet, CometConfig, CometDeps};
use message::MessageConfig;
use tokio_util::sync::CancellationToken;
use tracing::info;
use web::{Web, WebConfig, WebDeps};

/// Runs a comet: registers under its node name, follows the ring, serves clients until `stop`.
pub async fn comet(config: CometConfig, stop: CancellationToken) -> anyhow::Result<()> {
    let session = Session::start(config.zookeeper.clone());
    let pool = MessagePool::new(config.rpc.clone());
    pool.follow(watch_messages(&session));
    let deps = CometDeps { membership: watch_comets(&session), messages: pool, session: Some(session) };
    let node = config.node.name.clone();
    let comet = Comet::start(config, deps).await?;
    info!(%node, tcp = ?comet.tcp_addrs(), ws = ?comet.ws_addrs(), rpc = ?comet.rpc_addr(), "comet serving");
    stop.cancelled().await;
    comet.shutdown().await;
    Ok(())
}

/// Runs a web node until `stop`.
pub async fn web(config: WebConfig, stop: CancellationToken) -> anyhow::Result<()> {
    let deps = WebDeps::cluster(&config);
    let web = Web::start(config, deps).await?;
    info!(public = %web.public_addr(), admin = %web.admin_addr(), "web serving");
    stop.cancelled().await;
    web.shutdown().await;
    Ok(())
}

/// Runs a message node until `stop`.
pub async fn message(config: MessageConfig, stop: CancellationToken) -> anyhow::Result<()> {
    message::run(config, stop).await?;
    Ok(())
}
