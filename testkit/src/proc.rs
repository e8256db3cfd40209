//! Process plumbing shared by the server types: free loopback ports, throwaway directories, log
//! tails, and spawning a process next to a watchdog ([`Watched`], also used for the `gopush`
//! processes of whole-cluster tests). The watchdog kills the process (and removes its directory)
//! when the test binary is gone, because Drop does not run when a test binary is killed and never
//! runs for the process-wide shared servers kept in statics.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// Watchdog run by `bash -c` with args: test process PID, server PID, directory to remove (empty:
/// none).
///
/// Its stdin is a pipe whose write end only the test process holds (Rust opens pipes close-on-exec,
/// so no other child inherits it): `read` returns EOF (status 1) the moment the test process dies,
/// and status > 128 on the 0.5 s timeout. The `kill -0` on the test PID is the belt to those braces.
/// When the server exits first (a test stopped it), the watchdog just leaves.
const WATCHDOG: &str = r#"
p=$1 c=$2 d=$3
while kill -0 "$p" 2>/dev/null; do
  read -r -t 0.5 _
  [ $? -gt 128 ] || break
  kill -0 "$c" 2>/dev/null || exit 0
done
kill -9 "$c" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  kill -0 "$c" 2>/dev/null || break
  sleep 0.1
done
[ -z "$d" ] || rm -rf -- "$d"
"#;

/// Ports handed out by this process, never handed out twice (so a stopped server keeps its port).
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free loopback TCP port (bind 127.0.0.1:0, read, drop), never the same twice in this process.
pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .expect("testkit: cannot bind 127.0.0.1:0 to find a free port (is loopback up?)");
        let port = listener.local_addr().expect("testkit: local_addr of a bound listener").port();
        if handed.insert(port) {
            return port;
        }
    }
    panic!("testkit: the kernel kept returning ports this process already handed out");
}

/// Creates a throwaway directory `<tmp>/gopush-testkit-<kind>-<pid>-<n>-<nanos>`.
pub(crate) fn scratch_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gopush-testkit-{}", crate::unique_name(kind)));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", dir.display()));
    dir
}

/// Writes a file, panicking with the path on failure (a harness cannot go on without it).
pub(crate) fn write_file(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("testkit: cannot write {}: {e}", path.display()));
}

/// What a server logs when another process took its port between `free_port` and its bind.
pub(crate) const PORT_CLASH: &str = "Address already in use";

/// The last `n` lines of a log file, for failure messages; flags a port clash anywhere in the log.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            // A bind error can sit above a long Java stack trace, so look at the whole log.
            let clash = if text.contains(PORT_CLASH) { format!(" (port clash: {PORT_CLASH})") } else { String::new() };
            format!("last {} lines of {}{clash}:\n{}", lines.len() - start, path.display(), lines[start..].join("\n"))
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// Runs a fresh start up to 3 times when it lost the race for its free-picked port.
pub(crate) fn retry_port_clash<T>(
    mut start: impl FnMut() -> Result<T, crate::Unavailable>,
) -> Result<T, crate::Unavailable> {
    let mut attempt = 1;
    loop {
        match start() {
            Err(crate::Unavailable::Broken(m)) if attempt < 3 && m.contains(PORT_CLASH) => attempt += 1,
            r => return r,
        }
    }
}

/// Finds an executable by name on `PATH`, then in the usual Debian places (tests may run with a thin PATH).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running process and its watchdog; dropping it SIGKILLs both and reaps them.
pub struct Watched {
    server: Child,
    /// Holds the write end of the watchdog's stdin pipe: closing it (process death) fires the watchdog.
    watchdog: Child,
}

impl Watched {
    /// Spawns `cmd` with stdout and stderr appended to `log`, plus a watchdog that kills it and
    /// removes `cleanup_dir` (if any) once this test process is gone.
    pub fn spawn(mut cmd: Command, log: &Path, cleanup_dir: Option<&Path>) -> Result<Watched, String> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open log {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("cannot dup log fd: {e}"))?;
        // Own process groups: a Ctrl-C on `cargo test` then reaches only the test binary, and the
        // watchdog survives it long enough to clean up.
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let mut server = cmd.spawn().map_err(|e| format!("cannot spawn {:?}: {e}", cmd.get_program()))?;
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("testkit-watchdog")
            .arg(std::process::id().to_string())
            .arg(server.id().to_string())
            .arg(cleanup_dir.unwrap_or(Path::new("")))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        match watchdog {
            Ok(watchdog) => Ok(Watched { server, watchdog }),
            Err(e) => {
                let _ = server.kill();
                let _ = server.wait();
                Err(format!("cannot spawn the bash watchdog: {e}"))
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.server.id()
    }

    /// Whether the process exists and is not a zombie (works through `&self`, unlike `try_wait`).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.server.id()))
            // The state letter follows the ")" that closes the command name.
            .is_ok_and(|st| st.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    }

    /// The exit status if the process has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.server.try_wait().ok().flatten()
    }

    /// Sends SIGTERM (a graceful stop) and waits up to `wait` for the exit status; `None` if the
    /// process is still running then.
    pub fn terminate(&mut self, wait: Duration) -> Option<ExitStatus> {
        let pid = self.server.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        let mut status = None;
        crate::poll_until(wait, || {
            status = self.exited();
            status.is_some()
        });
        status
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Watchdog first: SIGKILL gives it no chance to run its cleanup, which would delete the
        // directory a stopped server is about to be restarted from.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
