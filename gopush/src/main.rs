//! `gopush`: one binary for every role. `gopush standalone` needs no file and no other server;
//! `gopush comet|web|message -c FILE` run the cluster roles against ZooKeeper (and Redis).

use clap::{Parser, Subcommand};
use gopush::load::load;
use gopush::standalone::{Standalone, StandaloneConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// A gopush-cluster compatible push service.
#[derive(Parser)]
#[command(name = "gopush", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Web, one comet and an in-memory store in one process: no ZooKeeper, no Redis.
    ///
    /// Public API 127.0.0.1:8090, admin API 127.0.0.1:8091, TCP clients 127.0.0.1:6969,
    /// WebSocket clients 127.0.0.1:6968 unless a config file says otherwise.
    Standalone {
        /// A standalone.toml (see conf/standalone.toml); the defaults need none.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// A comet: holds client TCP and WebSocket connections for the keys its ring node owns.
    Comet {
        /// Its comet.toml (see conf/comet.toml).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// A web node: the public API clients ask and the admin API publishers push to.
    Web {
        /// Its web.toml (see conf/web.toml).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// A message node: the offline message store over Redis shards.
    Message {
        /// Its message.toml (see conf/message.toml).
        #[arg(short, long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gopush: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.role)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gopush: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(role: Role) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    match role {
        Role::Standalone { config } => {
            let config = match config {
                Some(path) => load::<StandaloneConfig>(&path)?,
                None => StandaloneConfig::default(),
            };
            let server = Standalone::start(config).await?;
            let (public, admin) = (server.public_addr(), server.admin_addr());
            println!("gopush standalone serving");
            println!("  public API   http://{public}   (GET /1/server/get?k=KEY&p=2)");
            println!("  admin API    http://{admin}   (POST /1/admin/push/private)");
            println!("  TCP clients  {}", server.tcp_addr());
            println!("  WebSocket    ws://{}/sub?key=KEY&heartbeat=30", server.ws_addr());
            println!(
                "try: curl -d '{{\"hello\":\"world\"}}' 'http://{admin}/1/admin/push/private?key=Terry-Mao&expire=600'"
            );
            stop.cancelled().await;
            server.shutdown().await;
            Ok(())
        }
        Role::Comet { config } => gopush::roles::comet(load(&config)?, stop).await,
        Role::Web { config } => gopush::roles::web(load(&config)?, stop).await,
        Role::Message { config } => gopush::roles::message(load(&config)?, stop).await,
    }
}

/// Cancels `stop` on SIGTERM or Ctrl-C.
async fn stop_on_signal(stop: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gopush: cannot watch SIGTERM ({e}); only Ctrl-C stops it");
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping");
    stop.cancel();
}
