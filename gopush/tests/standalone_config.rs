//! The example standalone config parses and equals the built-in defaults, so the README's
//! "no file needed" and conf/standalone.toml never drift apart.

use gopush::logging::LogConfig;
use gopush::standalone::StandaloneConfig;

#[test]
fn the_example_file_is_the_default() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/standalone.toml");
    let file = gopush::load::load::<StandaloneConfig>(&path).expect("conf/standalone.toml parses");
    assert_eq!(file.role, StandaloneConfig::default());
    assert_eq!(file.log, LogConfig::default());
}
