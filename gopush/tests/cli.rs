//! The binary as an operator meets it: logs on stderr (plain or JSON) and the banner on stdout,
//! config from `GOPUSH_*` variables, `gopush config default|check`, a protocol switched off with
//! `tcp_bind = []`, a prompt exit on SIGTERM, and the README's five-minute tour run as written.
//! Every process is the cargo-built `gopush`, on free loopback ports, killed when its test ends.

use gopush::config::RoleConfig;
use gopush::load::Loaded;
use gopush::logging::LogConfig;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Deadline for a process to print its banner or answer: a debug build on a busy 2-core machine.
const READY: Duration = Duration::from_secs(60);
/// The "it hangs" bound for an exit that takes milliseconds.
const EXIT: Duration = Duration::from_secs(5);

/// Kills `$2` once process `$1` (the test binary) is gone, so no server outlives a killed test.
const WATCHDOG: &str = r#"
p=$1 c=$2
while kill -0 "$p" 2>/dev/null && kill -0 "$c" 2>/dev/null; do sleep 0.5; done
kill -9 "$c" 2>/dev/null
"#;

/// A child process with stdout and stderr collected apart. Each runs in a process group of its
/// own, killed as a whole on drop, so a shell block's python3 goes with its bash.
struct Proc {
    child: Option<Child>,
    watchdog: Option<Child>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Starts `program args` with `env` added and `RUST_LOG`/`NO_COLOR` removed.
    fn spawn(program: &str, args: &[&str], env: &[(String, String)]) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start(cmd)
    }

    fn start(mut cmd: Command) -> Proc {
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let (out, err) = (Arc::new(Mutex::new(String::new())), Arc::new(Mutex::new(String::new())));
        let mut readers = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            readers.push(collect(pipe, out.clone()));
        }
        if let Some(pipe) = child.stderr.take() {
            readers.push(collect(pipe, err.clone()));
        }
        let watchdog = Command::new("bash")
            .args(["-c", WATCHDOG, "gopush-test-watchdog"])
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Proc { child: Some(child), watchdog, out, err, readers }
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn outputs(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout(), self.stderr())
    }

    /// Waits until stdout contains `needle`; panics with both outputs if the process exits first
    /// or `limit` passes.
    fn wait_stdout(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stdout().contains(needle) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.join_readers();
                panic!("exited ({status}) before printing {needle:?}\n{}", self.outputs());
            }
            assert!(Instant::now() < deadline, "no {needle:?} within {limit:?}\n{}", self.outputs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` for the exit; the status and how long it took, `None` on timeout.
    fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let took = started.elapsed();
                self.child = None;
                self.join_readers();
                self.stop_watchdog();
                return Some((status, took));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM, then [`Proc::wait_exit`].
    fn terminate(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let pid = self.child.as_ref()?.id();
        let sent = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
        self.wait_exit(limit)
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let group = format!("-{}", c.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop_watchdog();
    }
}

/// Appends everything `pipe` yields to `into`, line by line, until EOF.
fn collect(pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            into.lock().unwrap_or_else(|e| e.into_inner()).push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    })
}

/// Runs `gopush args` to completion with `env` added: (exit status, stdout, stderr).
fn gopush(args: &[&str], env: &[(String, String)]) -> (ExitStatus, String, String) {
    let mut p = Proc::spawn(env!("CARGO_BIN_EXE_gopush"), args, env);
    let (status, _) = p.wait_exit(READY).unwrap_or_else(|| panic!("gopush {args:?} did not exit\n{}", p.outputs()));
    (status, p.stdout(), p.stderr())
}

/// The standalone's six listeners on free ports, as `GOPUSH_*` variables.
struct Ports {
    public: u16,
    admin: u16,
    tcp: u16,
    ws: u16,
}

impl Ports {
    fn free() -> (Ports, Vec<(String, String)>) {
        let p = Ports {
            public: testkit::free_port(),
            admin: testkit::free_port(),
            tcp: testkit::free_port(),
            ws: testkit::free_port(),
        };
        let list = |port: u16| format!("[\"127.0.0.1:{port}\"]");
        let env = vec![
            ("GOPUSH_WEB__BASE__HTTP_BIND".into(), format!("127.0.0.1:{}", p.public)),
            ("GOPUSH_WEB__BASE__ADMIN_BIND".into(), format!("127.0.0.1:{}", p.admin)),
            ("GOPUSH_COMET__BASE__TCP_BIND".into(), list(p.tcp)),
            ("GOPUSH_COMET__BASE__WS_BIND".into(), list(p.ws)),
            ("GOPUSH_COMET__BASE__RPC_BIND".into(), list(testkit::free_port())),
            ("GOPUSH_COMET__BASE__STAT_BIND".into(), format!("\"127.0.0.1:{}\"", testkit::free_port())),
        ];
        (p, env)
    }
}

/// Starts `gopush [flags] standalone` on free ports and waits for its banner.
fn standalone(flags: &[&str], extra_env: &[(&str, &str)]) -> (Proc, Ports) {
    let (ports, mut env) = Ports::free();
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let args: Vec<&str> = flags.iter().copied().chain(["standalone"]).collect();
    let mut p = Proc::spawn(env!("CARGO_BIN_EXE_gopush"), &args, &env);
    p.wait_stdout("try: curl", READY);
    (p, ports)
}

/// A TCP client of `p`'s comet on `port`, subscribed to `key` (heartbeat 30 s) and past its `+h`.
fn subscribed(p: &Proc, port: u16, key: &str) -> std::net::TcpStream {
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the comet");
    let sub = format!("*3\r\n$3\r\nsub\r\n${}\r\n{key}\r\n$2\r\n30\r\n", key.len());
    std::io::Write::write_all(&mut client, sub.as_bytes()).expect("subscribe");
    client.set_read_timeout(Some(READY)).expect("timeout");
    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).expect("+h");
    assert_eq!(&reply, b"+h\r\n", "{}", p.outputs());
    client
}

/// Stops `p` with SIGTERM, checks it exits cleanly and promptly, and logs how long it took.
fn stop(p: &mut Proc, what: &str) {
    let (status, took) = p.terminate(EXIT).unwrap_or_else(|| panic!("{what}: no exit within {EXIT:?} of SIGTERM"));
    eprintln!("{what}: exited {took:?} after SIGTERM");
    assert!(status.success(), "{what}: {status}\n{}", p.outputs());
}

#[test]
fn logs_go_to_stderr_without_colour_and_the_banner_to_stdout() {
    let (mut p, ports) = standalone(&[], &[]);
    stop(&mut p, "text logs");
    let (out, err) = (p.stdout(), p.stderr());
    assert!(out.starts_with("gopush standalone serving\n"), "{}", p.outputs());
    assert!(out.contains(&format!("http://127.0.0.1:{}", ports.public)), "{}", p.outputs());
    assert!(!out.contains("INFO"), "a log line reached stdout\n{}", p.outputs());
    assert!(err.contains(" INFO ") && err.contains("stopping"), "no logs on stderr\n{}", p.outputs());
    assert!(!err.contains("\x1b["), "ANSI escapes on a stderr that is not a terminal\n{}", p.outputs());
}

#[test]
fn json_logs_are_one_object_per_line() {
    for flags in [&["--log-format", "json"][..], &[]] {
        // Without the flag, the same comes from the [log] section, here set through the environment.
        let env: &[(&str, &str)] = if flags.is_empty() { &[("GOPUSH_LOG__FORMAT", "json")] } else { &[] };
        let (mut p, _) = standalone(flags, env);
        stop(&mut p, "json logs");
        let err = p.stderr();
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines.len() >= 2, "{}", p.outputs());
        for line in &lines {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", p.outputs()));
            assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        }
        assert!(!err.contains("\x1b["), "{}", p.outputs());
        assert!(p.stdout().starts_with("gopush standalone serving\n"), "{}", p.outputs());
    }
}

#[test]
fn the_level_comes_from_the_flag_then_rust_log_then_the_config() {
    // [log] level = "warn" hides the INFO lines...
    let (mut p, _) = standalone(&[], &[("GOPUSH_LOG__LEVEL", "warn")]);
    stop(&mut p, "level from config");
    assert!(!p.stderr().contains(" INFO "), "{}", p.outputs());
    // ...RUST_LOG wins over it...
    let (mut p, _) = standalone(&[], &[("GOPUSH_LOG__LEVEL", "warn"), ("RUST_LOG", "info")]);
    stop(&mut p, "level from RUST_LOG");
    assert!(p.stderr().contains(" INFO "), "{}", p.outputs());
    // ...and the flag wins over both.
    let (mut p, _) = standalone(&["--log-level", "warn"], &[("RUST_LOG", "info")]);
    stop(&mut p, "level from the flag");
    assert!(!p.stderr().contains(" INFO "), "{}", p.outputs());
}

#[test]
fn an_empty_bind_list_disables_that_protocol() {
    for (var, line, other) in [
        ("GOPUSH_COMET__BASE__TCP_BIND", "  TCP clients  disabled", "  WebSocket    ws://"),
        ("GOPUSH_COMET__BASE__WS_BIND", "  WebSocket    disabled", "  TCP clients  127.0.0.1:"),
    ] {
        let (mut p, _) = standalone(&[], &[(var, "[]")]);
        let out = p.stdout();
        assert!(out.contains(line) && out.contains(other), "{var}=[]\n{}", p.outputs());
        stop(&mut p, var);
        assert!(!p.stderr().contains("panicked"), "{}", p.outputs());
    }
}

#[test]
fn sigterm_stops_standalone_promptly_even_with_a_client() {
    // The default drain spreads closes over 5 s; one client must still be let go at once.
    let (mut p, ports) = standalone(&["--log-level", "warn"], &[]);
    let _client = subscribed(&p, ports.tcp, "stop");
    stop(&mut p, "standalone with one client");
}

#[test]
fn one_thread_serves_a_subscriber_and_a_publisher_and_stops_promptly() {
    // `--threads 1` runs every task and the role itself on the main thread (no worker pool).
    let (mut p, ports) = standalone(&["--threads", "1", "--log-level", "warn"], &[]);
    let mut client = subscribed(&p, ports.tcp, "one");

    let body = r#""one-thread-hello""#;
    let admin = format!("127.0.0.1:{}", ports.admin);
    let push = testkit::http::post(&admin, "/1/admin/push/private?key=one&expire=0", "", body.as_bytes());
    let answer = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(push);
    let answer = answer.unwrap_or_else(|e| panic!("push: {e}\n{}", p.outputs()));
    assert!(answer.body().ends_with(r#"{"ret":0}"#), "push answered {:?}\n{}", answer.text(), p.outputs());

    let mut frame = Vec::new();
    let mut buf = [0u8; 256];
    for _ in 0..64 {
        if String::from_utf8_lossy(&frame).contains("one-thread-hello") {
            break;
        }
        let n = client.read(&mut buf).unwrap_or_else(|e| panic!("no message ({e}); got {frame:?}\n{}", p.outputs()));
        assert!(n > 0, "the comet hung up; got {frame:?}\n{}", p.outputs());
        frame.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&frame).contains("one-thread-hello"), "{frame:?}\n{}", p.outputs());
    stop(&mut p, "standalone on one thread");
}

/// Each role's printed default file, as the role reads it.
fn printed_default<T: RoleConfig>() -> String {
    let (status, out, err) = gopush(&["config", "default", T::ROLE], &[]);
    assert!(status.success(), "gopush config default {}: {status}\n{err}", T::ROLE);
    out
}

fn assert_default<T: RoleConfig>() {
    let text = printed_default::<T>();
    let parsed: Loaded<T> = gopush::load::parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", T::ROLE));
    assert_eq!(parsed.role, T::default(), "the printed {} default is not the built-in default", T::ROLE);
    assert_eq!(parsed.log, LogConfig::default());
    // The [log] section is there, commented; uncommented it still says the defaults.
    let uncommented: String =
        text.lines()
            .map(|l| {
                if l.starts_with("#[log]") || l.starts_with("#level") || l.starts_with("#format") { &l[1..] } else { l }
            })
            .map(|l| format!("{l}\n"))
            .collect();
    assert!(uncommented.contains("\n[log]\n"), "{} default has no [log] section", T::ROLE);
    let parsed: Loaded<T> = gopush::load::parse(&uncommented).unwrap_or_else(|e| panic!("{}: {e}", T::ROLE));
    assert_eq!((parsed.role, parsed.log), (T::default(), LogConfig::default()));
    // And `config check` accepts it.
    let dir = std::env::temp_dir().join(testkit::unique_name("gopush-default"));
    std::fs::write(&dir, &text).expect("write the default file");
    let path = dir.display().to_string();
    let (status, out, err) = gopush(&["config", "check", T::ROLE, "-c", &path], &[]);
    let _ = std::fs::remove_file(&dir);
    assert!(status.success() && out == "ok\n", "{}: {status}\n{out}{err}", T::ROLE);
}

#[test]
fn config_default_prints_each_roles_defaults() {
    assert_default::<gopush::standalone::StandaloneConfig>();
    assert_default::<comet::CometConfig>();
    assert_default::<web::WebConfig>();
    assert_default::<message::MessageConfig>();
}

/// `gopush config check ROLE -c <file with text>` with `env`.
fn check(role: &str, text: &str, env: &[(&str, &str)]) -> (ExitStatus, String, String, String) {
    let path = std::env::temp_dir().join(format!("{}.toml", testkit::unique_name("gopush-check")));
    std::fs::write(&path, text).expect("write the file to check");
    let file = path.display().to_string();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (status, out, err) = gopush(&["config", "check", role, "-c", &file], &env);
    let _ = std::fs::remove_file(&path);
    (status, out, err, file)
}

#[test]
fn config_check_names_the_file_and_every_bad_key() {
    let (status, out, err, _) = check("comet", "[base]\ntcp_bind = [\"127.0.0.1:7000\"]\n", &[]);
    assert!(status.success() && out == "ok\n", "{status}\n{out}{err}");

    let bad = "[base]\ntcp_bind = [\"0.0.0.0:7000\"]\nws_bind = [\"127.0.0.1:7000\"]\nrpc_bind = [\"nope\"]\n\
               [log]\nlevel = \"info,comet=loud\"\n";
    let (status, out, err, file) = check("comet", bad, &[]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(!out.contains("ok"), "{out}");
    for needle in [&file, "base.advertise_tcp", "base.tcp_bind[0]: port 7000", "base.rpc_bind[0]", "log.level"] {
        assert!(err.contains(needle), "no {needle:?} in:\n{err}");
    }

    // Ports are checked across a standalone file's web and comet sections.
    let (status, _, err, _) = check(
        "standalone",
        "[web.base]\nhttp_bind = \"127.0.0.1:7001\"\n[comet.base]\nstat_bind = \"127.0.0.1:7001\"\n",
        &[],
    );
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("web.base.http_bind: port 7001 is also bound by comet.base.stat_bind"), "{err}");

    // A syntax error names the file and the line; a type error names the key.
    let (status, _, err, file) = check("web", "[base]\nhttp_bind = \n", &[]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains(&file) && err.contains("line 2"), "{err}");
    let (status, _, err, _) = check("web", "[base]\nhttp_bind = 8090\n", &[]);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("base.http_bind"), "{err}");
}

#[test]
fn config_check_reads_the_environment_too() {
    let (status, out, err, _) = check("comet", "", &[("GOPUSH_BASE__TCP_BIND", "[\"0.0.0.0:7000\"]")]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(err.contains("GOPUSH_BASE__TCP_BIND") && err.contains("base.advertise_tcp"), "{err}");

    let (status, out, err, _) = check(
        "comet",
        "",
        &[("GOPUSH_BASE__TCP_BIND", "[\"0.0.0.0:7000\"]"), ("GOPUSH_BASE__ADVERTISE_TCP", "[\"10.0.0.5:7000\"]")],
    );
    assert!(status.success() && out == "ok\n", "{status}\n{out}{err}");

    for typo in ["GOPUSH_BASE__TCP_BND", "GOPUSH_BASE_TCP_BIND"] {
        let (status, _, err, _) = check("comet", "", &[(typo, "[]")]);
        assert_eq!(status.code(), Some(1));
        assert!(err.contains(typo) && err.contains("matches no config key"), "{err}");
    }
}

/// The fenced `sh` blocks of the README section headed `heading`.
fn readme_blocks(heading: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).expect("read README.md");
    let start = text.find(heading).unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    let section = &text[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("an unclosed code block");
        blocks.push(body[..close + 1].to_string());
        rest = &body[close + 4..];
    }
    blocks
}

/// Replaces the port `from` by `to` where it stands as a number of its own.
fn replace_port(text: &str, from: u16, to: u16) -> String {
    let (from, to) = (from.to_string(), to.to_string());
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(&from) {
        let before = rest[..i].chars().last().or_else(|| out.chars().last());
        let after = rest[i + from.len()..].chars().next();
        let alone = !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit());
        out.push_str(&rest[..i]);
        out.push_str(if alone { &to } else { &from });
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Runs a shell block to completion (bounded); its stdout.
fn run_block(block: &str) -> String {
    let mut p = Proc::start({
        let mut c = Command::new("bash");
        c.args(["-c", block]);
        c
    });
    let (status, _) = p.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| panic!("hung:\n{block}\n{}", p.outputs()));
    assert!(status.success(), "{status}:\n{block}\n{}", p.outputs());
    p.stdout()
}

/// Whether `tool` runs; under CI a missing tool fails the test, locally it skips it.
fn have(tool: &str, test: &str) -> bool {
    if Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
        return true;
    }
    assert!(!testkit::ci(), "{test} needs {tool} (apt-get install curl python3)");
    eprintln!("SKIPPED {test}: {tool} not installed (apt-get install curl python3)");
    false
}

#[test]
fn the_readme_tour_works_as_written() {
    let test = "the_readme_tour_works_as_written";
    if !have("curl", test) || !have("python3", test) {
        return;
    }
    let blocks = readme_blocks("## A five-minute tour");
    assert_eq!(blocks.len(), 4, "the tour's blocks changed; update this test: {blocks:#?}");
    let (mut server, ports) = standalone(&[], &[]);
    // The README says to change these three ports when the server runs on others.
    let ported: Vec<String> = blocks
        .iter()
        .map(|b| replace_port(&replace_port(&replace_port(b, 8090, ports.public), 8091, ports.admin), 6969, ports.tcp))
        .collect();
    let [route, subscriber, push, fetch] = &ported[..] else { unreachable!("checked above") };
    assert!(subscriber.contains("python3"), "the second block is no longer the subscriber:\n{subscriber}");

    let got = run_block(route);
    assert!(got.contains(&format!("\"server\":\"127.0.0.1:{}\"", ports.tcp)), "{got}");

    let mut sub = Proc::start({
        let mut c = Command::new("bash");
        c.args(["-c", subscriber]);
        c
    });
    sub.wait_stdout("+h", Duration::from_secs(20));
    let got = run_block(push);
    assert!(got.contains("{\"ret\":0}"), "{got}");
    sub.wait_stdout("hello", Duration::from_secs(20));
    // A client that answered every frame with a heartbeat would print thousands of lines by now.
    std::thread::sleep(Duration::from_secs(2));
    let printed = sub.stdout();
    assert!(
        printed.lines().count() <= 3,
        "the subscriber prints without end:\n{}",
        &printed[..printed.len().min(2000)]
    );
    assert!(printed.contains("\"msg\":{\"hello\":\"world\"}"), "{printed}");

    let got = run_block(fetch);
    assert!(got.contains("\"msg\":{\"hello\":\"world\"}"), "{got}");
    drop(sub);
    stop(&mut server, "standalone after the tour");
}
