//! Private nginx servers on loopback, run from Debian's `/usr/sbin/nginx` in the foreground as one
//! process (`daemon off; master_process off`), with every path (pid, logs, temp dirs) in a
//! throwaway prefix directory. The caller supplies the `http {}` contents, for example the
//! deploy/nginx example rendered with test ports; readiness is every listen port accepting.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::proc::{Watched, find_program, free_port, log_tail, retry_port_clash, scratch_dir, write_file};
use crate::{READY_TIMEOUT, Unavailable, poll_until, settle};

/// A private nginx a test owns; dropping it kills nginx and removes its directory.
pub struct Nginx {
    dir: PathBuf,
    ports: Vec<u16>,
    proc: Option<Watched>,
}

/// The main configuration around the caller's `http {}` contents: foreground, one process, and
/// every file nginx writes kept in the prefix, so it runs unprivileged and leaves nothing behind.
fn main_conf(dir: &Path, http: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr notice;\n\
         events {{\n    worker_connections 1024;\n}}\n\
         http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/tmp/body;\n    \
         proxy_temp_path {d}/tmp/proxy;\n    fastcgi_temp_path {d}/tmp/fastcgi;\n    \
         uwsgi_temp_path {d}/tmp/uwsgi;\n    scgi_temp_path {d}/tmp/scgi;\n\n{http}\n}}\n"
    )
}

impl Nginx {
    /// Starts nginx listening on `ports` free loopback ports. `http` gets the prefix directory (to
    /// write certificates into) and the ports, and returns what goes inside `http {}`; it must
    /// `listen` on each port at 127.0.0.1. `None` (local runs) if nginx is not installed.
    pub fn start(ports: usize, http: impl FnMut(&Path, &[u16]) -> String) -> Option<Nginx> {
        settle("Nginx", Self::launch(ports, http))
    }

    fn launch(ports: usize, mut http: impl FnMut(&Path, &[u16]) -> String) -> Result<Nginx, Unavailable> {
        let bin = find_program("nginx").ok_or_else(|| {
            Unavailable::NotInstalled(
                "nginx not installed: no `nginx` on PATH or in /usr/sbin (apt-get install nginx)".into(),
            )
        })?;
        retry_port_clash(|| {
            // Constructed before running so that Drop removes the directory on any failure path.
            let mut server =
                Nginx { dir: scratch_dir("nginx"), ports: (0..ports).map(|_| free_port()).collect(), proc: None };
            std::fs::create_dir_all(server.dir.join("tmp"))
                .map_err(|e| Unavailable::Broken(format!("nginx: cannot create its temp dir: {e}")))?;
            let conf = server.dir.join("nginx.conf");
            write_file(&conf, &main_conf(&server.dir, &http(&server.dir, &server.ports)));
            server.run(&bin, &conf)?;
            Ok(server)
        })
    }

    fn log(&self) -> PathBuf {
        self.dir.join("nginx.log")
    }

    /// Spawns nginx and waits until every port accepts; on failure reports its log tail.
    fn run(&mut self, bin: &Path, conf: &Path) -> Result<(), Unavailable> {
        let mut cmd = Command::new(bin);
        // `-e stderr`: errors before the config is read would otherwise go to /var/log/nginx.
        cmd.current_dir(&self.dir).arg("-p").arg(&self.dir).arg("-c").arg(conf).args(["-e", "stderr"]);
        let mut guarded = Watched::spawn(cmd, &self.log(), Some(&self.dir))
            .map_err(|e| Unavailable::Broken(format!("nginx in {}: {e}", self.dir.display())))?;
        let addrs: Vec<SocketAddr> = self.ports.iter().map(|p| SocketAddr::from(([127, 0, 0, 1], *p))).collect();
        let mut exited = None;
        let ok = poll_until(READY_TIMEOUT, || {
            exited = exited.or_else(|| guarded.exited());
            exited.is_some() || addrs.iter().all(|a| TcpStream::connect_timeout(a, Duration::from_millis(500)).is_ok())
        });
        if ok && exited.is_none() {
            self.proc = Some(guarded);
            return Ok(());
        }
        drop(guarded);
        let why = match exited {
            Some(s) => format!("nginx exited ({s})"),
            None => format!("ports {:?} not accepting after {}s", self.ports, READY_TIMEOUT.as_secs()),
        };
        Err(Unavailable::Broken(format!("nginx in {}: {why}\n{}", self.dir.display(), log_tail(&self.log(), 30))))
    }

    /// The ports nginx listens on, in the order the `http` callback got them.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The prefix directory (config, certificates, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether nginx is still running.
    pub fn is_running(&self) -> bool {
        self.proc.as_ref().is_some_and(Watched::alive)
    }

    /// The access log so far, to check that requests really went through the proxy.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The last `n` lines of nginx's own log (stderr), for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log(), n)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- nginx -----\n{}", log_tail(&self.log(), 40));
        }
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
