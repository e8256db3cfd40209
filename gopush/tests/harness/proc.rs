//! One real `gopush` child process: spawned from the binary cargo built for this test (or
//! `$GOPUSH_TEST_BIN`), its stdout and stderr appended to a log file, killed (SIGKILL) and reaped
//! on drop, with its log tail printed when the test is failing. testkit's watchdog
//! ([`testkit::Watched`]) kills it too if the test binary itself dies.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;
use testkit::Watched;

/// A running (or stopped) `gopush` process.
pub struct Gopush {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Watched>,
}

impl Gopush {
    /// Starts `gopush <args>` with its output in `<dir>/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, args: &[&str]) -> Gopush {
        let mut p = Gopush {
            name: name.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        // GOPUSH_TEST_BIN runs the tests against another build, say a release one, to tell a
        // debug build's slowness from the code's.
        let bin = std::env::var_os("GOPUSH_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_gopush").into());
        let mut cmd = Command::new(bin);
        cmd.args(&self.args)
            .env("RUST_LOG", std::env::var("GOPUSH_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1");
        let child =
            Watched::spawn(cmd, &self.log, None).unwrap_or_else(|e| panic!("cannot spawn gopush {:?}: {e}", self.args));
        self.child = Some(child);
    }

    /// The process's name in logs and failure messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `kill -9`: a crash, no chance to deregister or close connections. Waits for the exit.
    pub fn kill9(&mut self) {
        // Dropping the watched process SIGKILLs and reaps it, and its watchdog.
        self.child = None;
    }

    /// Sends `signal` (`STOP` to hang the process as a stalled machine would, `CONT` to resume it).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap_or_else(|| panic!("{} is not running", self.name)).pid();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid} failed");
    }

    /// SIGTERM (a graceful stop) and waits up to `wait` for the exit status.
    pub fn terminate(&mut self, wait: Duration) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.terminate(wait);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// The exit status if the process has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(Watched::exited)
    }

    /// Panics with the log tail if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited unexpectedly ({status}); log tail:\n{}", self.name, self.log_tail(60));
        }
    }

    /// The last `n` lines of the process's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(cannot read log: {e})"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole log, for assertions on what the process said.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gopush {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- {} ({}) log, last 80 lines -----\n{}", self.name, self.log.display(), self.log_tail(80));
        }
        self.kill9();
    }
}

/// A scratch directory for configs and logs; removed on drop unless the test is failing or
/// `GOPUSH_TEST_KEEP` is set (to read the logs of a passing run).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/gopush-<prefix>-<unique>`.
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(testkit::unique_name(&format!("gopush-{prefix}")));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in the directory and returns its path as a string (for `-c`).
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        let mut f = File::create(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        std::io::Write::write_all(&mut f, text.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("GOPUSH_TEST_KEEP").is_some() {
            eprintln!("(configs and logs kept in {})", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
