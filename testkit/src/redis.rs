//! Private Redis servers on loopback, run from Debian's `redis-server` binary without persistence
//! (`--save ''`, no AOF) in a throwaway directory. Readiness is a raw `PING` answered by `+PONG`,
//! so the harness needs no Redis client crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::proc::{Watched, find_program, free_port, log_tail, retry_port_clash, scratch_dir};
use crate::{READY_TIMEOUT, Unavailable, poll_until, settle};

/// Whether a Redis server at `addr` answers `PING` with `+PONG`.
pub(crate) fn ping(addr: &str) -> bool {
    let Ok(sock) = addr.parse::<SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&sock, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    // "+PONG\r\n" may in theory arrive in pieces; a loading server answers "-LOADING ..." instead.
    while got < 5 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"+PONG")
}

/// A private Redis server a test owns and may stop and restart.
pub struct RedisServer {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    /// Arguments after the harness's own (cluster mode, `--replicaof`, ...).
    extra: Vec<String>,
    proc: Option<Watched>,
}

impl RedisServer {
    /// Starts a server on a free loopback port; `None` (local) if `redis-server` is not installed.
    pub fn start() -> Option<RedisServer> {
        settle("RedisServer", Self::launch())
    }

    /// [`Self::start`] without the skip/panic decision, for the shared servers.
    pub(crate) fn launch() -> Result<RedisServer, Unavailable> {
        Self::launch_with(&[])
    }

    /// Like [`Self::launch`] with more `redis-server` arguments; the server's directory is its
    /// working directory, so relative files (a cluster's `nodes.conf`) live and survive there.
    pub(crate) fn launch_with(extra: &[String]) -> Result<RedisServer, Unavailable> {
        let bin = find_program("redis-server").ok_or_else(|| {
            Unavailable::NotInstalled(
                "Redis not installed: no `redis-server` on PATH (apt-get install redis-server)".into(),
            )
        })?;
        retry_port_clash(|| {
            // Constructed before running so that Drop removes the directory on any failure path.
            let mut server = RedisServer {
                dir: scratch_dir("redis"),
                port: free_port(),
                bin: bin.clone(),
                extra: extra.to_vec(),
                proc: None,
            };
            server.run()?;
            Ok(server)
        })
    }

    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Spawns the server and waits for `+PONG`; on failure kills it and reports its log tail.
    fn run(&mut self) -> Result<(), Unavailable> {
        if self.proc.is_some() {
            return Ok(());
        }
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.dir)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.log())
            .args(&self.extra);
        let mut guarded = Watched::spawn(cmd, &self.log(), Some(&self.dir))
            .map_err(|e| Unavailable::Broken(format!("Redis on {}: {e}", self.addr())))?;
        let addr = self.addr();
        let mut exited = None;
        let ok = poll_until(READY_TIMEOUT, || {
            exited = exited.or_else(|| guarded.exited());
            exited.is_some() || ping(&addr)
        });
        if ok && exited.is_none() {
            self.proc = Some(guarded);
            return Ok(());
        }
        drop(guarded);
        let why = match exited {
            Some(s) => format!("redis-server exited ({s})"),
            None => format!("no +PONG after {}s", READY_TIMEOUT.as_secs()),
        };
        Err(Unavailable::Broken(format!("Redis on {addr}: {why}\n{}", log_tail(&self.log(), 20))))
    }

    /// The client address, "127.0.0.1:port".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port, reserved for this server for its whole life.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server runs (it was not stopped, or was started again).
    pub fn running(&self) -> bool {
        self.proc.is_some()
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Restarts a stopped server on the same port (empty: nothing is persisted); blocks until it serves.
    pub fn start_again(&mut self) {
        if let Err(e) = self.run() {
            panic!("RedisServer::start_again: {e}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
