//! `gopush`: one binary for every role. `gopush standalone` needs no file and no other server;
//! `gopush comet|web|message -c FILE` run the cluster roles against ZooKeeper (and Redis);
//! `gopush config default|check ROLE` print or validate a role's file without starting anything.

use clap::{Parser, Subcommand, ValueEnum};
use comet::CometConfig;
use gopush::config::RoleConfig;
use gopush::env::{self, Var};
use gopush::load::{Loaded, load_with};
use gopush::logging::{self, LogConfig, LogFormat};
use gopush::standalone::{Standalone, StandaloneConfig};
use message::MessageConfig;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use web::WebConfig;

/// The runtime for `role`: `threads` workers if given, where one means tokio's single-threaded
/// runtime; by default one worker per CPU the process may use, and on one CPU the single-threaded
/// runtime for web and message nodes but a pool of one worker for roles holding clients
/// (docs/decisions.md#d92-one-thread-for-a-pinned-web-or-message-node).
fn runtime(role: &Ready, threads: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = threads.or_else(|| std::thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get);
    let single = workers == 1 && (threads.is_some() || matches!(role, Ready::Web(_) | Ready::Message(_)));
    if single {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    }
}

/// How long the runtime may wait, once the role has shut down, for blocking work still running
/// (a slow DNS lookup, say). The drain is over by then; dropping the runtime instead would wait for
/// such work without any limit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_millis(500);

/// A gopush-cluster compatible push service.
#[derive(Parser)]
#[command(name = "gopush", version, about, long_about = None)]
struct Cli {
    /// Log line format; overrides the config's `[log] format`.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter such as `debug` or `info,comet=debug`; overrides RUST_LOG and `[log] level`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Worker threads; default one per CPU the process may use. 1 runs every task on one thread.
    #[arg(long, global = true)]
    threads: Option<NonZeroUsize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Web, one comet and an in-memory store in one process: no ZooKeeper, no Redis.
    ///
    /// Public API 127.0.0.1:8090, admin API 127.0.0.1:8091, TCP clients 127.0.0.1:6969,
    /// WebSocket clients 127.0.0.1:6968 unless a config file or GOPUSH_* variables say otherwise.
    Standalone {
        /// A standalone.toml (see `gopush config default standalone`); the defaults need none.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// A comet: holds client TCP and WebSocket connections for the keys its ring node owns.
    Comet {
        /// Its comet.toml (see `gopush config default comet`).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// A web node: the public API clients ask and the admin API publishers push to.
    Web {
        /// Its web.toml (see `gopush config default web`).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// A message node: the offline message store over Redis shards.
    Message {
        /// Its message.toml (see `gopush config default message`).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print a role's default config file, or check one without starting anything.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print ROLE's full default file, every key commented: `gopush config default comet > comet.toml`.
    Default {
        /// The role whose file to print.
        role: RoleName,
    },
    /// Check a file as ROLE would read it (GOPUSH_* variables included): prints "ok" and exits 0,
    /// or prints each problem with its key and exits 1.
    Check {
        /// The role that would read the file.
        role: RoleName,
        /// The file to check.
        #[arg(short, long)]
        config: PathBuf,
    },
}

/// The roles that read a config file.
#[derive(Clone, Copy, ValueEnum)]
enum RoleName {
    /// `gopush standalone`'s file.
    Standalone,
    /// `gopush comet`'s file.
    Comet,
    /// `gopush web`'s file.
    Web,
    /// `gopush message`'s file.
    Message,
}

/// A role with its config read and checked, ready to run (boxed: the configs differ in size).
enum Ready {
    Standalone(Box<StandaloneConfig>),
    Comet(Box<CometConfig>),
    Web(Box<WebConfig>),
    Message(Box<MessageConfig>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let vars = match env::config_vars(std::env::vars_os()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("gopush: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prepared = match cli.command {
        Command::Config { action } => return config_command(action, &vars),
        Command::Standalone { config } => {
            prepare(config.as_deref(), &vars).map(|(c, log)| (Ready::Standalone(Box::new(c)), log))
        }
        Command::Comet { config } => prepare(Some(&config), &vars).map(|(c, log)| (Ready::Comet(Box::new(c)), log)),
        Command::Web { config } => prepare(Some(&config), &vars).map(|(c, log)| (Ready::Web(Box::new(c)), log)),
        Command::Message { config } => prepare(Some(&config), &vars).map(|(c, log)| (Ready::Message(Box::new(c)), log)),
    };
    let (ready, log) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gopush: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = logging::init(&log, cli.log_level.as_deref(), cli.log_format) {
        eprintln!("gopush: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match runtime(&ready, cli.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gopush: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(ready));
    // Dropping the runtime would wait for every blocking task without limit; the role is done.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gopush: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the role's config (file or defaults, then the environment) and refuses it if it has
/// problems, listing all of them at once.
fn prepare<T: RoleConfig>(path: Option<&Path>, vars: &[Var]) -> anyhow::Result<(T, LogConfig)> {
    let Loaded { role, log } = load_with::<T>(path, vars)?;
    let mut problems = role.problems();
    if let Err(e) = log.check() {
        problems.push(e);
    }
    if problems.is_empty() {
        return Ok((role, log));
    }
    // A problem may come from a variable rather than the file: say which, or the file looks wrong.
    for problem in &mut problems {
        let from: Vec<&str> = vars.iter().filter(|v| problem.contains(&v.key())).map(|v| v.name.as_str()).collect();
        if !from.is_empty() {
            problem.push_str(&format!(" (set by {})", from.join(", ")));
        }
    }
    let origin = match path {
        Some(p) => format!("config file {}", p.display()),
        None => "built-in defaults".to_string(),
    };
    anyhow::bail!("{origin}:\n  {}", problems.join("\n  "))
}

fn config_command(action: ConfigAction, vars: &[Var]) -> ExitCode {
    match action {
        ConfigAction::Default { role } => {
            println!("{}", default_file(role));
            ExitCode::SUCCESS
        }
        ConfigAction::Check { role, config } => {
            let checked = match role {
                RoleName::Standalone => prepare::<StandaloneConfig>(Some(&config), vars).map(|_| ()),
                RoleName::Comet => prepare::<CometConfig>(Some(&config), vars).map(|_| ()),
                RoleName::Web => prepare::<WebConfig>(Some(&config), vars).map(|_| ()),
                RoleName::Message => prepare::<MessageConfig>(Some(&config), vars).map(|_| ()),
            };
            match checked {
                Ok(()) => {
                    println!("ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn default_file(role: RoleName) -> &'static str {
    match role {
        RoleName::Standalone => StandaloneConfig::default_file(),
        RoleName::Comet => CometConfig::default_file(),
        RoleName::Web => WebConfig::default_file(),
        RoleName::Message => MessageConfig::default_file(),
    }
}

async fn run(ready: Ready) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    match ready {
        Ready::Standalone(config) => {
            let server = Standalone::start(*config).await?;
            let (public, admin) = (server.public_addr(), server.admin_addr());
            let tcp = server.tcp_addr().map_or_else(|| "disabled (tcp_bind = [])".to_string(), |a| a.to_string());
            let ws = server.ws_addr().map_or_else(
                || "disabled (ws_bind = [])".to_string(),
                |a| format!("ws://{a}/sub?key=KEY&heartbeat=30"),
            );
            println!("gopush standalone serving");
            println!("  public API   http://{public}   (GET /1/server/get?k=KEY&p=2)");
            println!("  admin API    http://{admin}   (POST /1/admin/push/private)");
            println!("  TCP clients  {tcp}");
            println!("  WebSocket    {ws}");
            println!(
                "try: curl -d '{{\"hello\":\"world\"}}' 'http://{admin}/1/admin/push/private?key=Terry-Mao&expire=600'"
            );
            stop.cancelled().await;
            server.shutdown().await;
            Ok(())
        }
        Ready::Comet(config) => gopush::roles::comet(*config, stop).await,
        Ready::Web(config) => gopush::roles::web(*config, stop).await,
        Ready::Message(config) => gopush::roles::message(*config, stop).await,
    }
}

/// Cancels `stop` on SIGTERM or Ctrl-C.
async fn stop_on_signal(stop: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the process");
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
