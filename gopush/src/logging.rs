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
    let env = std::env::var("RUST_LOG").ok().filter(|e| !e.trim().is_empty());
    let (text, source) = match (level, env) {
        (Some(l), _) => (l.to_string(), "--log-level "),
        (None, Some(env)) => (env, "RUST_LOG="),
        (None, None) => (config.level.clone(), "log.level "),
    };
    let filter = EnvFilter::try_new(&text).map_err(|e| format!("{source}{text:?}: {e}"))?;
    let filter = quiet_rpc_spans(filter, &text);
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

/// Adds `tarpc=warn` unless the filter names tarpc itself. tarpc opens an INFO span for every RPC
/// on both ends, with its deadline formatted as a date, and at the default `info` every call paid
/// for building it though nothing is logged inside: about a sixth of the servers' CPU per
/// stored push (docs/decisions.md#d75-no-per-rpc-spans-by-default). tarpc's warnings still show.
fn quiet_rpc_spans(filter: EnvFilter, text: &str) -> EnvFilter {
    if text.contains("tarpc") {
        return filter;
    }
    match "tarpc=warn".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_spans_are_off_unless_the_filter_asks_for_tarpc() {
        let quiet = quiet_rpc_spans(EnvFilter::new("info"), "info").to_string();
        assert!(quiet.contains("tarpc=warn"), "{quiet}");
        let asked = quiet_rpc_spans(EnvFilter::new("info,tarpc=debug"), "info,tarpc=debug").to_string();
        assert!(!asked.contains("tarpc=warn"), "{asked}");
    }
}
