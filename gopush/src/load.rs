//! Reads a role's TOML file. Errors name the file, and through `toml`'s messages the line, the key
//! and what is wrong with it, so an operator can fix a config without reading code.

use anyhow::{Context, anyhow};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Parses `path` as `T`; an error names the file and the offending key.
pub fn load<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    parse(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))
}

/// Parses TOML text as `T`.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    toml::from_str(text)
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
        assert!(err.contains("http_bind"), "{err}");

        let err = load::<web::WebConfig>(Path::new("/nonexistent/web.toml")).expect_err("missing file");
        assert!(format!("{err:#}").contains("/nonexistent/web.toml"));

        let mut file = tempfile();
        writeln!(file.1, "[base]\nhttp_bnd = \"127.0.0.1:1\"").expect("write");
        let err = load::<web::WebConfig>(&file.0).expect_err("typo in a key").to_string();
        assert!(err.contains("http_bnd"), "{err}");
    }

    fn tempfile() -> (std::path::PathBuf, std::fs::File) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("gopush-load-{}-{n}.toml", std::process::id()));
        let file = std::fs::File::create(&path).expect("create temp file");
        (path, file)
    }
}
