//! Where and how a process logs. Logs go to stderr because stdout is the program's output (the
//! standalone banner, `gopush config`), without colour unless stderr is a terminal, as text or as
//! one JSON object per line for log shippers. The filter comes from `--log-level`, else `RUST_LOG`
//! (full filter syntax), else the config file's `[log] level`.

use serde::Deserialize;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// The `[log]` section every role's file may have.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A filter in `RUST_LOG` syntax: `info`, `warn`, `info,comet=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}

impl LogConfig {
    /// Checks `level` the way [`init`] will read it, naming the key.
    pub fn check(&self) -> Result<(), String> {
        EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| format!("log.level: {:?} is not a filter: {e}", self.level))
    }
}

/// Installs the global subscriber. `level` and `format` come from the command line and win over
/// `RUST_LOG` and the config; a bad filter is an error rather than a silent fallback.
pub fn init(config: &LogConfig, level: Option<&str>, format: Option<LogFormat>) -> Result<(), String> {
    let filter = match (level, std::env::var("RUST_LOG")) {
        (Some(l), _) => EnvFilter::try_new(l).map_err(|e| format!("--log-level {l:?}: {e}"))?,
        (None, Ok(env)) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG={env:?}: {e}"))?
        }
        _ => EnvFilter::try_new(&config.level).map_err(|e| format!("log.level {:?}: {e}", config.level))?,
    };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let installed = match format.unwrap_or(config.format) {
        LogFormat::Text => {
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).try_init()
        }
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}
