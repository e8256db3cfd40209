//! Config keys from the environment, so containers and supervisors can change any setting without
//! editing a file. One scheme for every role: `GOPUSH_<SECTION>__<KEY>`, names upper-cased, a
//! double underscore between levels (`GOPUSH_BASE__TCP_BIND`, `GOPUSH_WEB__BASE__HTTP_BIND` in
//! standalone, `GOPUSH_RING_HASH` at the top level). Values are TOML; a bare word is a string.

use std::ffi::OsString;

/// Every config variable starts with this.
pub const PREFIX: &str = "GOPUSH_";

/// Names under [`PREFIX`] that the repository's own tools set (the test harness, CI and
/// `scripts/local-cluster`); they reach every child process, so they must not count as typos.
const RESERVED: &[&str] = &["GOPUSH_TEST", "GOPUSH_CI_", "GOPUSH_BIN"];

/// One `GOPUSH_*` variable meant as a config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    /// The variable's name, for error messages.
    pub name: String,
    /// The key it sets: `["base", "tcp_bind"]` for `GOPUSH_BASE__TCP_BIND`.
    pub path: Vec<String>,
    /// Its value as written.
    pub raw: String,
}

impl Var {
    /// The key in the dotted form config errors use (`base.tcp_bind`).
    pub fn key(&self) -> String {
        self.path.join(".")
    }
}

/// The config variables among `vars` (usually `std::env::vars_os()`), sorted by name so the
/// outcome does not depend on the environment's order.
pub fn config_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Vec<Var>, String> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(PREFIX) || RESERVED.iter().any(|r| name.starts_with(r)) {
            continue;
        }
        let raw = value.into_string().map_err(|_| format!("environment variable {name}: value is not UTF-8"))?;
        out.push(Var { name: name.to_string(), path: key_path(&name[PREFIX.len()..]), raw });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `BASE__TCP_BIND` → `["base", "tcp_bind"]`.
fn key_path(rest: &str) -> Vec<String> {
    rest.split("__").map(str::to_ascii_lowercase).collect()
}

/// The variable that sets a dotted key: `base.tcp_bind` → `GOPUSH_BASE__TCP_BIND`.
pub fn var_name(key: &str) -> String {
    format!("{PREFIX}{}", key.split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join("__"))
}

/// Parses `raw` as one TOML value (`5`, `true`, `"2s"`, `["a", "b"]`, `{ name = "n" }`); anything
/// that is not a TOML value, such as `127.0.0.1:7000` or `2s`, is taken as that string.
pub fn value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) if t.len() == 1 => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        _ => toml::Value::String(raw.to_string()),
    }
}

/// Sets `path` in `table` to `value`, creating the tables on the way; a list or value in the way
/// is an error (a list is replaced as a whole, never entered).
pub fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else { return Err("names no key".into()) };
    let mut here = table;
    for (i, part) in parents.iter().enumerate() {
        let entry = here.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("{} is not a section, so it has no key {:?}", path[..=i].join("."), path[i + 1])),
        };
    }
    here.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn names_map_to_keys_and_tools_are_left_alone() {
        let got = config_vars(vars(&[
            ("PATH", "/bin"),
            ("GOPUSH_RPC__TIMEOUT", "\"2s\""),
            ("GOPUSH_BASE__TCP_BIND", "[\"127.0.0.1:7000\"]"),
            ("GOPUSH_TEST_ZK", "127.0.0.1:2181"),
            ("GOPUSH_TESTKIT_ORPHAN_REPORT", "x"),
            ("GOPUSH_CI_TEST_CMD", "cargo test"),
            ("GOPUSH_BIN", "target/release/gopush"),
            ("GOPUSH_RING_HASH", "md5"),
        ]))
        .expect("UTF-8");
        let keys: Vec<String> = got.iter().map(Var::key).collect();
        assert_eq!(keys, ["base.tcp_bind", "ring_hash", "rpc.timeout"]);
        assert_eq!(var_name("web.base.http_bind"), "GOPUSH_WEB__BASE__HTTP_BIND");
    }

    #[test]
    fn values_are_toml_or_else_strings() {
        assert_eq!(value("5"), toml::Value::Integer(5));
        assert_eq!(value("true"), toml::Value::Boolean(true));
        assert_eq!(value("\"2s\""), toml::Value::String("2s".into()));
        assert_eq!(value("2s"), toml::Value::String("2s".into()));
        assert_eq!(value("127.0.0.1:7000"), toml::Value::String("127.0.0.1:7000".into()));
        assert_eq!(value("[\"a\", \"b\"]"), toml::Value::Array(vec!["a".into(), "b".into()]));
        assert_eq!(value("1\nx = 2"), toml::Value::String("1\nx = 2".into()));
    }

    #[test]
    fn set_creates_sections_and_refuses_to_enter_values() {
        let mut t = toml::Table::new();
        let path = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        set(&mut t, &path("web.base.http_bind"), "x".into()).expect("set");
        assert_eq!(t["web"]["base"]["http_bind"].as_str(), Some("x"));
        let err = set(&mut t, &path("web.base.http_bind.port"), 1.into()).expect_err("a string has no keys");
        assert!(err.contains("web.base.http_bind"), "{err}");
    }
}
