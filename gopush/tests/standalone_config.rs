//! The example standalone config parses and equals the built-in defaults, so the README's
//! "no file needed" and conf/standalone.toml never drift apart.

use gopush::standalone::StandaloneConfig;

#[test]
fn the_example_file_is_the_default() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/standalone.toml");
    let file: StandaloneConfig = gopush::load::load(&path).expect("conf/standalone.toml parses");
    let default = StandaloneConfig::default();
    assert_eq!(file.web, default.web);
    assert_eq!(file.comet, default.comet);
    assert_eq!(file.store.store, default.store.store);
}
