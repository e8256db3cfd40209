//! Tests of the harness against real servers: start/stop/restart of ZooKeeper and Redis, leader
//! failover in an ensemble, the shared addresses, and that servers die with a killed test binary.
//! All in one binary so the JVMs start in parallel and the run stays well under a minute.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{RedisServer, ZkEnsemble, ZkServer, wait_until};

/// The `Mode:` a ZooKeeper node reports to `srvr`, `None` if it does not serve.
fn zk_mode(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"srvr").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_string)
}

/// Whether a Redis server answers PING.
fn redis_ping(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

#[test]
fn zk_server_stops_and_starts_again_on_the_same_port() {
    let Some(mut zk) = ZkServer::start() else {
        return;
    };
    let addr = zk.addr();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(zk_mode(&addr).as_deref(), Some("standalone"));
    assert!(zk.is_running());

    zk.stop();
    assert!(!zk.is_running());
    assert!(zk_mode(&addr).is_none(), "a stopped server still answers");

    zk.start_again();
    assert_eq!(zk.addr(), addr);
    assert!(zk.is_running());
    assert_eq!(zk_mode(&addr).as_deref(), Some("standalone"));
}

#[test]
fn ensemble_elects_a_new_leader_when_the_leader_is_killed() {
    let Some(mut ens) = ZkEnsemble::start(3) else {
        return;
    };
    let nodes: Vec<String> = ens.addr().split(',').map(str::to_string).collect();
    assert_eq!(nodes.len(), 3, "{}", ens.addr());
    let old = ens.leader().expect("start() returns only once a leader exists");
    for (i, n) in nodes.iter().enumerate() {
        let want = if i == old { "leader" } else { "follower" };
        assert_eq!(zk_mode(n).as_deref(), Some(want), "node {i}");
    }

    let t = Instant::now();
    ens.kill(old);
    assert!(zk_mode(&nodes[old]).is_none(), "killed node still answers");
    wait_until("a new leader", Duration::from_secs(30), || ens.leader().is_some_and(|l| l != old));
    assert!(ens.wait_for_quorum(Duration::from_secs(10)));
    eprintln!("new leader after {:?}", t.elapsed());

    ens.start_again(old);
    assert!(ens.wait_for_quorum(Duration::from_secs(30)));
    // The old leader rejoins under the new one.
    wait_until("the restarted node to rejoin as a follower", Duration::from_secs(30), || {
        zk_mode(&nodes[old]).as_deref() == Some("follower")
    });
}

#[test]
fn redis_server_pings_stops_and_starts_again() {
    let Some(mut r) = RedisServer::start() else {
        return;
    };
    assert_eq!(r.addr(), format!("127.0.0.1:{}", r.port()));
    assert!(redis_ping(&r.addr()));
    r.stop();
    assert!(!redis_ping(&r.addr()), "a stopped server still answers");
    r.start_again();
    assert!(redis_ping(&r.addr()));
}

#[test]
fn shared_addresses_serve() {
    if let Some(addr) = testkit::zk_addr() {
        assert!(zk_mode(&addr).is_some(), "zk_addr {addr} does not serve");
        // Every call returns the same shared server.
        assert_eq!(testkit::zk_addr(), Some(addr));
    }
    if let Some(addrs) = testkit::redis_addrs() {
        assert!(addrs.len() >= 2, "{addrs:?}");
        for a in &addrs {
            assert!(redis_ping(a), "redis_addrs entry {a} does not answer PING");
        }
    }
}

#[test]
fn shared_ensemble_has_a_quorum() {
    let Some(addr) = testkit::zk_ensemble_addr() else {
        return;
    };
    let modes: Vec<Option<String>> = addr.split(',').map(zk_mode).collect();
    assert_eq!(modes.len(), 3, "{addr}");
    assert!(modes.iter().any(|m| m.as_deref() == Some("leader")), "{addr}: {modes:?}");
    assert!(modes.iter().all(Option::is_some), "{addr}: {modes:?}");
}

/// Env var that turns [`orphan_child`] from a no-op into the victim process of [`servers_die_with_a_killed_test_binary`].
const CHILD_ENV: &str = "GOPUSH_TESTKIT_ORPHAN_REPORT";

/// Victim side: starts a Redis it drops and one it keeps, reports the kept one, then hangs.
#[test]
fn orphan_child() {
    let Some(report) = std::env::var_os(CHILD_ENV) else {
        return; // Normal runs: nothing to do.
    };
    let dropped = RedisServer::start().expect("child: redis");
    drop(dropped);
    let kept = RedisServer::start().expect("child: redis");
    // Write then rename, so the parent never reads a half-written file.
    let tmp = std::path::Path::new(&report).with_extension("tmp");
    std::fs::write(&tmp, kept.addr()).expect("child: write report");
    std::fs::rename(&tmp, &report).expect("child: rename report");
    std::thread::sleep(Duration::from_secs(120));
}

/// Lists this machine's testkit scratch directories that belong to process `pid`.
fn scratch_dirs_of(pid: u32) -> Vec<PathBuf> {
    let mark = format!("-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .expect("read temp dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gopush-testkit-") && n.contains(&mark))
        })
        .collect()
}

#[test]
fn servers_die_with_a_killed_test_binary() {
    // Redis is the cheap server to prove the watchdog with; ZooKeeper uses the same spawn path.
    if RedisServer::start().is_none() {
        return;
    }
    let report = std::env::temp_dir().join(testkit::unique_name("gopush-testkit-orphan-report"));
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", "orphan_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &report)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the test binary again");
    let pid = child.id();
    wait_until("the child to report its server", Duration::from_secs(30), || report.exists());
    let addr = std::fs::read_to_string(&report).expect("read report");
    let _ = std::fs::remove_file(&report);
    assert!(redis_ping(&addr), "child's server {addr} does not serve");
    assert_eq!(scratch_dirs_of(pid).len(), 1, "the dropped server's dir should be gone, the kept one's present");

    // SIGKILL: no Drop, no unwinding; only the watchdog can clean up.
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    wait_until(&format!("server {addr} to die with its killed test binary"), Duration::from_secs(5), || {
        !redis_ping(&addr)
    });
    wait_until("the scratch dirs to be removed", Duration::from_secs(5), || scratch_dirs_of(pid).is_empty());
}
