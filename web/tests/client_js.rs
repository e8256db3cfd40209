//! The browser client's pure logic (back-off, dedupe, URL building, frame parsing) under Node's own
//! test runner; its networked behaviour runs in real Chromium in gopush/tests/browser.rs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_js_client_passes_its_node_tests() {
    let Some(node) = testkit::program("node", "nodejs") else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/js");
    let log = std::env::temp_dir().join(format!("{}.log", testkit::unique_name("node-test")));
    let mut cmd = Command::new(node);
    cmd.args(["--test", "test/gopush.test.js"]).current_dir(&dir);
    let mut child = testkit::Watched::spawn(cmd, &log, None).expect("node starts");
    let mut status = None;
    testkit::wait_until("node --test to finish", Duration::from_secs(60), || {
        status = child.exited();
        status.is_some()
    });
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(status.is_some_and(|s| s.success()), "node --test failed:\n{output}");
    assert!(output.contains("# fail 0"), "{output}");
}
