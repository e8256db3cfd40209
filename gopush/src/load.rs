//! Reads a role's config: the TOML file (or the built-in defaults when there is none), then the
//! `GOPUSH_*` environment variables (see [`crate::env`]) applied to that table, then the `[log]`
//! section split off for the process and the rest deserialized as the role's config. Errors name
//! the file or the variable and the key, so an operator can fix a config without reading code.

use crate::env::{self, Var};
use crate::logging::LogConfig;
use anyhow::{Context, anyhow};
use serde::de::DeserializeOwned;
use std::path::Path;

/// A role's config and the process's `[log]` section, read from the same file.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    /// The role's own config (everything but `[log]`).
    pub role: T,
    /// The `[log]` section.
    pub log: LogConfig,
}

/// Reads `path` as `T`; an error names the file and the offending key.
pub fn load<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Loaded<T>> {
    load_with(Some(path), &[])
}

/// Reads `path` (or, when `None`, starts from the defaults) and applies `vars` on top.
pub fn load_with<T: DeserializeOwned>(path: Option<&Path>, vars: &[Var]) -> anyhow::Result<Loaded<T>> {
    let (mut table, origin) = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("cannot read config file {}", p.display()))?;
            let table = text.parse::<toml::Table>().map_err(|e| anyhow!("config file {}: {e}", p.display()))?;
            (table, format!("config file {}", p.display()))
        }
        None => (toml::Table::new(), "built-in defaults".to_string()),
    };
    for var in vars {
        let value = probe::<T>(var).map_err(|e| anyhow!("environment variable {}: {e}", var.name))?;
        env::set(&mut table, &var.path, value).map_err(|e| anyhow!("environment variable {}: {e}", var.name))?;
    }
    let origin = if vars.is_empty() {
        origin
    } else {
        let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        format!("{origin} with {}", names.join(", "))
    };
    split(table).map_err(|e| anyhow!("{origin}: {e}"))
}

/// Parses TOML text as `T` and its `[log]` section, without the environment.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<Loaded<T>, String> {
    split(text.parse::<toml::Table>().map_err(|e| e.to_string())?)
}

/// Checks one variable on its own, so a typo is reported under the variable's name rather than as
/// an unknown key of the merged file. Returns the value to set: the TOML value, or the raw text
/// when only a string fits (so `GOPUSH_BASE__ADMIN_TOKEN=123` is the token "123").
fn probe<T: DeserializeOwned>(var: &Var) -> Result<toml::Value, String> {
    let try_value = |value: toml::Value| {
        let mut table = toml::Table::new();
        env::set(&mut table, &var.path, value)?;
        split::<T>(table).map(|_| ())
    };
    let value = env::value(&var.raw);
    let first = match try_value(value.clone()) {
        Ok(()) => return Ok(value),
        Err(e) => e,
    };
    if first.contains("unknown field") {
        return Err(format!(
            "matches no config key ({first}); keys are GOPUSH_ then the section and key upper-cased, \
             joined by a double underscore, e.g. {}",
            env::var_name("base.tcp_bind")
        ));
    }
    let text = toml::Value::String(var.raw.clone());
    if !value.is_str() && try_value(text.clone()).is_ok() {
        return Ok(text);
    }
    Err(first)
}

/// Splits off `[log]` and deserializes both parts; errors name the key (`base.http_bind: ...`).
fn split<T: DeserializeOwned>(mut table: toml::Table) -> Result<Loaded<T>, String> {
    let log = match table.remove("log") {
        None => LogConfig::default(),
        Some(toml::Value::Table(t)) => deserialize::<LogConfig>(t, "log")?,
        Some(_) => return Err("log: must be a section ([log])".into()),
    };
    let role = deserialize::<T>(table, "")?;
    Ok(Loaded { role, log })
}

/// Deserializes the section at `prefix` (`""` for the whole file); the error starts with the key.
fn deserialize<T: DeserializeOwned>(table: toml::Table, prefix: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let key = match (prefix, e.path().to_string().as_str()) {
            (p, ".") => p.to_string(),
            ("", path) => path.to_string(),
            (p, path) => format!("{p}.{path}"),
        };
        // toml appends "in `section`" on a line of its own; the key in front already says where.
        let inner = e.inner().to_string();
        let message = inner.lines().next().unwrap_or_default().trim();
        if key.is_empty() { message.to_string() } else { format!("{key}: {message}") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn errors_name_the_file_and_the_key() {
        let mut file = tempfile();
        writeln!(file.1, "[base]\nhttp_bind = 8090").expect("write");
        let err = load::<web::WebConfig>(&file.0).expect_err("a number is not an address").to_string();
        assert!(err.contains(&file.0.display().to_string()), "{err}");
        assert!(err.contains("base.http_bind"), "{err}");

        let err = load::<web::WebConfig>(Path::new("/nonexistent/web.toml")).expect_err("missing file");
        assert!(format!("{err:#}").contains("/nonexistent/web.toml"));

        let mut file = tempfile();
        writeln!(file.1, "[base]\nhttp_bnd = \"127.0.0.1:1\"").expect("write");
        let err = load::<web::WebConfig>(&file.0).expect_err("typo in a key").to_string();
        assert!(err.contains("http_bnd"), "{err}");

        let mut file = tempfile();
        writeln!(file.1, "[log]\nformat = \"xml\"").expect("write");
        let err = load::<web::WebConfig>(&file.0).expect_err("unknown format").to_string();
        assert!(err.contains("log.format"), "{err}");
    }

    fn var(name: &str, raw: &str) -> Var {
        let found = env::config_vars([(name.into(), raw.into())]).expect("UTF-8");
        found.into_iter().next().unwrap_or_else(|| panic!("{name} is not a config variable"))
    }

    #[test]
    fn the_environment_overrides_the_file_and_the_defaults() {
        let mut file = tempfile();
        writeln!(file.1, "[base]\ntcp_bind = [\"127.0.0.1:1\"]\nws_bind = [\"127.0.0.1:2\"]").expect("write");
        let vars = [
            var("GOPUSH_BASE__TCP_BIND", "[\"127.0.0.1:7000\"]"),
            var("GOPUSH_RPC__TIMEOUT", "\"2s\""),
            var("GOPUSH_CHANNEL__MSGBUF", "7"),
            var("GOPUSH_ZOOKEEPER__ADDR", "10.0.0.1:2181,10.0.0.2:2181"),
            var("GOPUSH_LOG__FORMAT", "json"),
        ];
        for path in [Some(file.0.as_path()), None] {
            let c = load_with::<comet::CometConfig>(path, &vars).expect("overrides apply");
            assert_eq!(c.role.base.tcp_bind, ["127.0.0.1:7000"]);
            assert_eq!(c.role.rpc.timeout, std::time::Duration::from_secs(2));
            assert_eq!(c.role.channel.msgbuf, 7);
            assert_eq!(c.role.zookeeper.addr, "10.0.0.1:2181,10.0.0.2:2181");
            assert_eq!(c.log.format, crate::logging::LogFormat::Json);
        }
        let c = load_with::<comet::CometConfig>(Some(file.0.as_path()), &vars[1..2]).expect("file kept");
        assert_eq!((c.role.base.tcp_bind[0].as_str(), c.role.base.ws_bind[0].as_str()), ("127.0.0.1:1", "127.0.0.1:2"));

        // A string-typed key takes a value that would otherwise parse as a number.
        let c = load_with::<web::WebConfig>(None, &[var("GOPUSH_BASE__ADMIN_TOKEN", "123")]).expect("token");
        assert_eq!(c.role.base.admin_token, "123");
    }

    #[test]
    fn a_variable_that_matches_no_key_is_an_error_naming_it() {
        for name in ["GOPUSH_BASE__TCP_BND", "GOPUSH_BASE_TCP_BIND", "GOPUSH_NOPE__X", "GOPUSH_LOG__COLOUR"] {
            let err = load_with::<comet::CometConfig>(None, &[var(name, "1")]).expect_err(name).to_string();
            assert!(err.contains(name) && err.contains("matches no config key"), "{err}");
        }
        let err = load_with::<comet::CometConfig>(None, &[var("GOPUSH_CHANNEL__MSGBUF", "many")])
            .expect_err("not a number")
            .to_string();
        assert!(err.contains("GOPUSH_CHANNEL__MSGBUF") && err.contains("channel.msgbuf"), "{err}");
        // tcp_bind is a web key nowhere: the same variable is fine for a comet, an error for web.
        let err = load_with::<web::WebConfig>(None, &[var("GOPUSH_BASE__TCP_BIND", "[]")]).expect_err("web");
        assert!(err.to_string().contains("GOPUSH_BASE__TCP_BIND"), "{err}");
    }

    fn tempfile() -> (std::path::PathBuf, std::fs::File) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("gopush-load-{}-{n}.toml", std::process::id()));
        let file = std::fs::File::create(&path).expect("create temp file");
        (path, file)
    }
}
