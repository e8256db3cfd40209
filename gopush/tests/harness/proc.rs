//! One real `gopush` child process: spawned from the binary cargo built for this test, its stdout
//! and stderr appended to a log file, killed (SIGKILL) and reaped on drop, with its log tail printed
//! when the test is failing. A small bash watchdog kills it too if the test binary itself dies.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Kills `$2` once process `$1` (the test binary) is gone; leaves when `$2` exits first.
const WATCHDOG: &str = r#"
p=$1 c=$2
while kill -0 "$p" 2>/dev/null && kill -0 "$c" 2>/dev/null; do sleep 0.5; done
kill -9 "$c" 2>/dev/null
"#;

/// A running (or stopped) `gopush` process.
pub struct Gopush {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Gopush {
    /// Starts `gopush <args>` with its output in `<dir>/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, args: &[&str]) -> Gopush {
        let mut p = Gopush {
            name: name.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            log: dir.join(format!("{name}.log")),
            child: None,
            watchdog: None,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("cannot dup the log fd: {e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_gopush"))
            .args(&self.args)
            .env("RUST_LOG", std::env::var("GOPUSH_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn gopush {:?}: {e}", self.args));
        let watchdog = Command::new("bash")
            .args(["-c", WATCHDOG, "gopush-test-watchdog"])
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        self.child = Some(child);
        self.watchdog = watchdog;
    }

    /// The process's name in logs and failure messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `kill -9`: a crash, no chance to deregister or close connections. Waits for the exit.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop_watchdog();
    }

    /// SIGTERM (a graceful stop) and waits up to `wait` for the exit status.
    pub fn terminate(&mut self, wait: Duration) -> Option<ExitStatus> {
        let pid = self.child.as_ref()?.id();
        let sent = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} ({}) failed", self.name);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                self.child = None;
                self.stop_watchdog();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The exit status if the process has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
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

    fn stop_watchdog(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
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
