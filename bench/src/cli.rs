//! The command line: `conns`, `push`, `mpush`, `room` (and the hidden `worker`), with the flags that mean
//! the same in every subcommand gathered in [`Common`]. Turning flags into the run configurations
//! happens here and nowhere else; defaults aim at `gopush standalone` on its upstream ports.

use clap::{Args, Parser, Subcommand};

use crate::conns::{ConnsConfig, default_key_prefix};
use crate::online::OnlineConfig;
use crate::push::PushConfig;
use crate::room::RoomConfig;
use crate::subscribe::Proto;

/// Load generator for gopush-compatible clusters (loopback targets only).
#[derive(Debug, Parser)]
#[command(name = "gopush-bench", version)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open N subscriptions, hold them with heartbeats; connect rate, failures, server RSS per connection.
    Conns(ConnsArgs),
    /// Private pushes (/1/admin/push/private) to K subscribed keys; rate, deliveries, loss, latency.
    Push(PushArgs),
    /// Multi-key pushes (/1/admin/push/mprivate) in batches of B keys; deliveries per second.
    Mpush(MpushArgs),
    /// Room pushes (/1/admin/push/room) or broadcasts (/1/admin/push/all) to N members; deliveries/s, time to the last member, loss.
    Room(RoomArgs),
    /// Presence queries (/1/admin/online), one key per GET or B keys per POST; requests/s, latency.
    Online(OnlineArgs),
    /// Internal: one worker process of a large `conns` run.
    #[command(hide = true)]
    Worker {
        /// The worker's configuration, JSON.
        #[arg(long)]
        spec: String,
    },
}

/// Flags shared by every subcommand.
#[derive(Debug, Args)]
pub struct Common {
    /// Web public base URL (for /1/server/get).
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    pub web: String,
    /// Web admin base URL (for pushes).
    #[arg(long, default_value = "http://127.0.0.1:8091")]
    pub admin: String,
    /// Connect straight to this comet address (TCP or WS port) instead of asking web.
    #[arg(long)]
    pub comet: Option<String>,
    /// Client protocol.
    #[arg(long, value_parser = str::parse::<Proto>, default_value = "tcp")]
    pub proto: Proto,
    /// Distinct keys (conns: default one per connection; push: subscribed keys, default 1000).
    #[arg(long)]
    pub keys: Option<u64>,
    /// Hold (conns) or publishing (push, mpush) time, seconds (max 600).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Per second: connection attempts (conns) or admin requests (push, mpush); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// In flight: connection attempts (conns, default 256) or publishers (push, mpush, default 16).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Heartbeat seconds announced and kept (≥ 30).
    #[arg(long, default_value_t = 30)]
    pub heartbeat: u64,
    /// Send this version in the handshake (new message format); none = old format, like the SDKs.
    #[arg(long)]
    pub ver: Option<String>,
    /// Key prefix (default: unique per run).
    #[arg(long)]
    pub key_prefix: Option<String>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// `conns` flags.
#[derive(Debug, Args)]
pub struct ConnsArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Connections to open (max 200,000; above 18,000 the bench spreads over worker processes).
    #[arg(long, default_value_t = 1000)]
    pub conns: u64,
    /// Server process(es) whose RSS to read before and after: PID[,PID].
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Worker processes (0 = one per 18,000 connections when above 18,000).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Longest time for opening all connections, seconds.
    #[arg(long, default_value_t = 120)]
    pub ramp_timeout: u64,
    /// Pause after the last connection before reading RSS, seconds.
    #[arg(long, default_value_t = 2)]
    pub settle: u64,
}

/// `push` flags.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// `expire` of each push, seconds (0 = online only, nothing stored).
    #[arg(long, default_value_t = 0)]
    pub expire: u64,
    /// Longest wait for outstanding deliveries after publishing, seconds.
    #[arg(long, default_value_t = 5)]
    pub drain: u64,
}

/// `mpush` flags.
#[derive(Debug, Args)]
pub struct MpushArgs {
    /// The push flags.
    #[command(flatten)]
    pub push: PushArgs,
    /// Keys per mprivate request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

/// `room` flags. Shared flags: `--keys` is ignored (see `--members`), `--rate` is messages per
/// second (default 10), `--duration` is ignored (see `--messages`).
#[derive(Debug, Args)]
pub struct RoomArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Members: subscribed keys, one connection each, all joined to the room.
    #[arg(long, default_value_t = 1000)]
    pub members: u64,
    /// Messages to publish.
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// Broadcast with /1/admin/push/all instead of pushing to the room.
    #[arg(long)]
    pub broadcast: bool,
    /// The room's name.
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Message body size, bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Longest wait for outstanding deliveries after publishing, seconds.
    #[arg(long, default_value_t = 5)]
    pub drain: u64,
}

impl RoomArgs {
    /// The run configuration.
    pub fn config(&self) -> RoomConfig {
        let c = &self.common;
        RoomConfig {
            web: c.web.clone(),
            admin: c.admin.clone(),
            comet: c.comet.clone(),
            proto: c.proto,
            members: self.members,
            messages: self.messages,
            rate: if c.rate == 0 { 10 } else { c.rate },
            broadcast: self.broadcast,
            room: self.room.clone(),
            heartbeat_secs: c.heartbeat,
            ver: c.ver.clone(),
            size: self.size,
            drain_secs: self.drain,
            key_prefix: c.key_prefix.clone().unwrap_or_else(default_key_prefix),
        }
    }
}

/// `online` flags.
#[derive(Debug, Args)]
pub struct OnlineArgs {
    /// Web admin base URL.
    #[arg(long, default_value = "http://127.0.0.1:8091")]
    pub admin: String,
    /// Distinct keys asked about: `<key-prefix>0` .. `<key-prefix>(keys-1)`, the keys `conns` opens.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Keys per request: 0 asks one key per `GET ?key=`, B posts batches of B keys.
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Run time, seconds (max 600).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Connections asking at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Key prefix (as given to `conns`).
    #[arg(long, default_value = "bench-")]
    pub key_prefix: String,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

impl OnlineArgs {
    /// The run configuration.
    pub fn config(&self) -> OnlineConfig {
        OnlineConfig {
            admin: self.admin.clone(),
            keys: self.keys,
            batch: self.batch,
            duration_secs: self.duration,
            concurrency: self.concurrency,
            key_prefix: self.key_prefix.clone(),
        }
    }
}

impl ConnsArgs {
    /// The run configuration.
    pub fn config(&self) -> ConnsConfig {
        let c = &self.common;
        ConnsConfig {
            web: c.web.clone(),
            comet: c.comet.clone(),
            proto: c.proto,
            conns: self.conns,
            keys: c.keys.unwrap_or(0),
            duration_secs: c.duration,
            rate: c.rate,
            concurrency: c.concurrency.unwrap_or(256),
            heartbeat_secs: c.heartbeat,
            ver: c.ver.clone(),
            pids: self.pid.clone(),
            key_prefix: c.key_prefix.clone().unwrap_or_else(default_key_prefix),
            first_index: 0,
            bind_ip: None,
            workers: self.workers,
            ramp_timeout_secs: self.ramp_timeout,
            settle_secs: self.settle,
            progress: !c.quiet && !c.json,
        }
    }
}

impl PushArgs {
    /// The run configuration for `push` (batch 0) or `mpush`.
    pub fn config(&self, batch: usize) -> PushConfig {
        let c = &self.common;
        PushConfig {
            web: c.web.clone(),
            admin: c.admin.clone(),
            comet: c.comet.clone(),
            proto: c.proto,
            keys: c.keys.unwrap_or(1000),
            duration_secs: c.duration,
            rate: c.rate,
            concurrency: c.concurrency.unwrap_or(16),
            heartbeat_secs: c.heartbeat,
            ver: c.ver.clone(),
            size: self.size,
            expire: self.expire,
            batch,
            drain_secs: self.drain,
            key_prefix: c.key_prefix.clone().unwrap_or_else(default_key_prefix),
            progress: !c.quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("gopush-bench").chain(args.iter().copied())).unwrap().command
    }

    #[test]
    fn flags_read_the_same_everywhere() {
        let Command::Conns(c) = parse(&["conns", "--conns", "20", "--proto", "ws", "--pid", "1,2", "--json"]) else {
            panic!()
        };
        let cfg = c.config();
        assert_eq!(
            (cfg.conns, cfg.proto, cfg.pids.clone(), cfg.keys, cfg.progress),
            (20, Proto::WebSocket, vec![1, 2], 0, false)
        );
        let Command::Mpush(m) = parse(&["mpush", "--keys", "500", "--batch", "50", "--rate", "10", "--ver", "1.0"])
        else {
            panic!()
        };
        let cfg = m.push.config(m.batch);
        assert_eq!((cfg.keys, cfg.batch, cfg.rate, cfg.ver.as_deref()), (500, 50, 10, Some("1.0")));
        assert_eq!(cfg.admin, "http://127.0.0.1:8091");
        let Command::Push(p) = parse(&["push", "--concurrency", "4", "--comet", "127.0.0.1:6969"]) else { panic!() };
        let cfg = p.config(0);
        assert_eq!((cfg.concurrency, cfg.comet.as_deref(), cfg.keys), (4, Some("127.0.0.1:6969"), 1000));
        assert!(Cli::try_parse_from(["gopush-bench", "push", "--proto", "udp"]).is_err());
    }
}
