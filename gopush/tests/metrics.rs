//! What operators graph: a freshly started `gopush standalone` (comet and web) and `gopush message`
//! export every metric with HELP text and at 0 before any traffic, every metric name written in
//! the sources is one the processes describe, the comet counts each kind of refused client under
//! its reason, and the Grafana dashboard in deploy/grafana only queries metrics a running process
//! exports, through a datasource variable.

#[allow(dead_code)] // only the process and HTTP helpers of the shared harness are used here
mod harness;

use harness::READY_TIMEOUT;
use harness::config::{CometPorts, WebPorts, Zk};
use harness::proc::{Gopush, TempDir};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use testkit::eventually_some;

/// The dashboard as shipped.
const DASHBOARD: &str = include_str!("../../deploy/grafana/gopush.json");

/// One `/metrics` page, parsed: HELP texts, TYPEs and every sample (series name with labels → value).
#[derive(Debug, Default)]
struct Exposition {
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    samples: Vec<(String, String, f64)>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                out.help.insert(name.to_string(), help.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                out.types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                let (series, value) = line.rsplit_once(' ').unwrap_or((line, ""));
                let value = value.parse().unwrap_or_else(|e| panic!("bad sample value in {line:?}: {e}"));
                out.samples.push((line[..end].to_string(), series.to_string(), value));
            }
        }
        out
    }

    /// Every sample name (histograms contribute `_bucket`, `_sum` and `_count`).
    fn sample_names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    /// Panics unless each of `names` has HELP text, a TYPE and at least one sample, and unless
    /// every counter and histogram sample is still 0 (nothing has happened yet).
    fn assert_fresh(&self, what: &str, names: &[&str]) {
        let samples = self.sample_names();
        for name in names {
            let help = self.help.get(*name).unwrap_or_else(|| panic!("{what}: {name} has no # HELP line"));
            assert!(!help.trim().is_empty(), "{what}: {name} has an empty HELP text");
            let kind = self.types.get(*name).unwrap_or_else(|| panic!("{what}: {name} has no # TYPE line"));
            let sample = if kind == "histogram" { format!("{name}_count") } else { name.to_string() };
            assert!(samples.contains(sample.as_str()), "{what}: {name} has no sample at start-up");
        }
        for (name, series, value) in &self.samples {
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            let counted = matches!(self.types.get(base).map(String::as_str), Some("counter" | "histogram"));
            if counted && names.contains(&base) {
                assert_eq!(*value, 0.0, "{what}: {series} is {value} before any traffic");
            }
        }
    }
}

/// `GET /metrics` on `addr`, retried until the process serves it (that request is not counted).
async fn metrics(proc: &mut Gopush, addr: &str) -> Exposition {
    let text = eventually_some(&format!("/metrics on {addr}"), READY_TIMEOUT, || {
        proc.assert_alive();
        async move {
            harness::http::get(addr, "/metrics").await.ok().filter(|r| r.status() == 200).map(|r| r.body().to_string())
        }
    })
    .await;
    Exposition::parse(&text)
}

/// A `gopush standalone` on free ports: the process, its comet stat and its web admin addresses.
fn spawn_standalone(dir: &TempDir) -> (Gopush, String, String) {
    let (web, comet) = (WebPorts::free(), CometPorts::free());
    let conf = format!(
        "[web.base]\nhttp_bind = \"127.0.0.1:{}\"\nadmin_bind = \"127.0.0.1:{}\"\n\n\
         [comet.base]\ntcp_bind = [\"127.0.0.1:{}\"]\nws_bind = [\"127.0.0.1:{}\"]\n\
         rpc_bind = [\"127.0.0.1:{}\"]\nstat_bind = \"127.0.0.1:{}\"\ndrain = \"200ms\"\n",
        web.public, web.admin, comet.tcp, comet.ws, comet.rpc, comet.stat
    );
    let path = dir.write("standalone.toml", &conf);
    let proc = Gopush::spawn("standalone", dir.path(), &["standalone", "-c", &path]);
    (proc, format!("127.0.0.1:{}", comet.stat), format!("127.0.0.1:{}", web.admin))
}

/// A `gopush message` over the shared test Redis and ZooKeeper: the process and its stat address;
/// `None` when those servers are not available (skipped locally, a panic under CI).
fn spawn_message(dir: &TempDir) -> Option<(Gopush, String)> {
    let zk = testkit::zk_addr()?;
    let redis = testkit::redis_addrs()?;
    let (rpc, stat) = (testkit::free_port(), testkit::free_port());
    let prefix = format!("{}:", testkit::unique_name("metrics"));
    let path = dir.write(
        "message.toml",
        &harness::config::message_with(&Zk::unique(&zk), rpc, stat, &harness::config::plain_store(&redis, &prefix)),
    );
    let proc = Gopush::spawn("message", dir.path(), &["message", "-c", &path]);
    Some((proc, format!("127.0.0.1:{stat}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_processes_export_every_series_with_help_at_zero() {
    let dir = TempDir::new("metrics-fresh");
    let (mut standalone, stat, admin) = spawn_standalone(&dir);
    let both: Vec<&str> = comet::metrics::NAMES.iter().chain(web::metrics::NAMES).copied().collect();
    // The comet's stat port and web's admin port render the same process-wide registry. Web
    // starts after the comet, so its admin port answering means both have described theirs.
    let fresh = metrics(&mut standalone, &admin).await;
    fresh.assert_fresh("standalone web admin port", &both);
    for gauge in ["gopush_web_comet_nodes", "gopush_web_comet_instances"] {
        assert_eq!(sample(&fresh, gauge), 1.0, "standalone's web routes to its one comet from the start");
    }
    metrics(&mut standalone, &stat).await.assert_fresh("standalone comet stat port", &both);

    let Some((mut message, stat)) = spawn_message(&dir) else { return };
    metrics(&mut message, &stat).await.assert_fresh("message stat port", message::metered::NAMES);
}

/// Every `gopush_*` name inside a string literal in the crates' sources.
fn names_in_sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = BTreeMap::new();
    let mut dirs: Vec<_> = ["cluster", "comet", "web", "message"].iter().map(|c| root.join(c).join("src")).collect();
    // Bounded: the crates have a few dozen source files.
    let mut budget = 10_000;
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries.flatten() {
            budget -= 1;
            assert!(budget > 0, "too many source files under {}", root.display());
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for name in metric_names(&text) {
                    if text.contains(&format!("\"{name}\"")) {
                        found.insert(name, path.display().to_string());
                    }
                }
            }
        }
    }
    found
}

/// Every `gopush_[a-z0-9_]+` token in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("gopush_") {
        let tail = &rest[at..];
        let len =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..len].to_string());
        rest = &tail[len..];
    }
    out
}

#[test]
fn every_metric_name_in_the_sources_is_described() {
    let described: BTreeSet<&str> =
        comet::metrics::NAMES.iter().chain(web::metrics::NAMES).chain(message::metered::NAMES).copied().collect();
    let found = names_in_sources();
    assert!(found.len() >= described.len(), "the source scan found too little: {found:?}");
    for (name, file) in &found {
        assert!(
            described.contains(name.as_str()),
            "{file} records {name}, which no metrics module lists in NAMES or describes at start-up"
        );
    }
}

/// Every `expr` string in the dashboard JSON, with the title of its panel.
fn exprs(v: &Value, panel: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            let title = m.get("title").and_then(Value::as_str).unwrap_or(panel);
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push((title.to_string(), e.clone())),
                    _ => exprs(v, title, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, panel, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_is_a_grafana_model_with_a_datasource_variable() {
    let dash: Value = serde_json::from_str(DASHBOARD).expect("deploy/grafana/gopush.json is JSON");
    assert!(dash["title"].is_string() && dash["uid"].is_string(), "a dashboard needs a title and a uid");
    let vars = dash["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource" && v["name"] == "datasource" && v["query"] == "prometheus"),
        "the Prometheus datasource is a variable named datasource"
    );
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().expect("every panel has a numeric id")), "duplicate panel id in {p}");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {} uses the variable", p["title"]);
            assert!(!p["targets"].as_array().is_none_or(Vec::is_empty), "panel {} has queries", p["title"]);
        }
    }
    let mut all = Vec::new();
    exprs(&dash, "", &mut all);
    let text: String = all.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>().join("\n");
    for needed in [
        "gopush_comet_connections",
        "gopush_comet_subscriptions_total",
        "gopush_comet_pushes_total",
        "gopush_comet_push_failures_total",
        "gopush_comet_refused_total",
        "gopush_comet_slow_consumers_total",
        "histogram_quantile",
        "gopush_web_push_seconds_bucket",
        "gopush_message_store_seconds_bucket",
    ] {
        assert!(text.contains(needed), "the dashboard has no query using {needed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_metrics_the_processes_export() {
    let dash: Value = serde_json::from_str(DASHBOARD).expect("deploy/grafana/gopush.json is JSON");
    let mut all = Vec::new();
    exprs(&dash, "", &mut all);
    assert!(!all.is_empty(), "the dashboard has no queries");

    let dir = TempDir::new("metrics-dashboard");
    let (mut standalone, stat, admin) = spawn_standalone(&dir);
    let mut exported: BTreeSet<String> = BTreeSet::new();
    // Admin first: web starts after the comet, so then both have registered their series.
    for addr in [&admin, &stat] {
        exported.extend(metrics(&mut standalone, addr).await.sample_names().into_iter().map(str::to_string));
    }
    let uses_message = all.iter().any(|(_, e)| e.contains("gopush_message_"));
    if uses_message {
        let Some((mut message, stat)) = spawn_message(&dir) else { return };
        exported.extend(metrics(&mut message, &stat).await.sample_names().into_iter().map(str::to_string));
    }
    for (panel, expr) in &all {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "panel {panel:?} queries no gopush metric: {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "panel {panel:?} queries {name}, which no running process exports: {expr}"
            );
        }
    }
}

/// The value of the sample `series` (name with labels, as rendered), 0 when absent.
fn sample(e: &Exposition, series: &str) -> f64 {
    e.samples.iter().find(|(_, s, _)| s == series).map_or(0.0, |(_, _, v)| *v)
}

/// The `sub` command with a token: `*4 sub KEY HEARTBEAT TOKEN`.
fn sub_with_token(key: &str, heartbeat: &str, token: &str) -> Vec<u8> {
    let mut out = String::from("*4\r\n");
    for a in ["sub", key, heartbeat, token] {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    out.into_bytes()
}

/// Reads until `want` arrived or the peer closed, within 10 s; what was read.
async fn read_until(s: &mut tokio::net::TcpStream, want: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !got.windows(want.len()).any(|w| w == want) && got.len() < 1 << 16 {
        let mut buf = [0u8; 256];
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_reason() {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let dir = TempDir::new("metrics-refusals");
    let (web, comet) = (WebPorts::free(), CometPorts::free());
    let conf = format!(
        "[web.base]\nhttp_bind = \"127.0.0.1:{}\"\nadmin_bind = \"127.0.0.1:{}\"\n\n\
         [comet.base]\ntcp_bind = [\"127.0.0.1:{}\"]\nws_bind = [\"127.0.0.1:{}\"]\n\
         rpc_bind = [\"127.0.0.1:{}\"]\nstat_bind = \"127.0.0.1:{}\"\ndrain = \"200ms\"\n\n\
         [comet.channel]\nauth = true\nmin_heartbeat = 1\nheartbeat_slack = \"300ms\"\nhandshake_timeout = \"2s\"\n\
         msgbuf = 2\nallowed_origins = [\"https://ok.example\"]\n",
        web.public, web.admin, comet.tcp, comet.ws, comet.rpc, comet.stat
    );
    gopush::load::parse::<gopush::standalone::StandaloneConfig>(&conf).expect("the test's config parses");
    let path = dir.write("standalone.toml", &conf);
    let mut proc = Gopush::spawn("standalone", dir.path(), &["standalone", "-c", &path]);
    let (stat, admin, tcp) =
        (format!("127.0.0.1:{}", comet.stat), format!("127.0.0.1:{}", web.admin), format!("127.0.0.1:{}", comet.tcp));
    metrics(&mut proc, &stat).await; // serving
    let key = |k: &str| format!("{}-{k}", testkit::unique_name("refuse"));
    let add_token = |k: String| {
        let admin = admin.clone();
        async move {
            let r = harness::http::post(&admin, &format!("/1/token/add?k={k}&t=tok"), "text/plain", "").await;
            assert!(r.as_ref().is_ok_and(|r| r.body().contains("\"ret\":0")), "token add for {k}: {r:?}");
        }
    };

    // handshake: not a subscribe command.
    let mut s = tokio::net::TcpStream::connect(&tcp).await.expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
    read_until(&mut s, b"never").await;

    // auth: no token in auth mode.
    let mut s = tokio::net::TcpStream::connect(&tcp).await.expect("connect");
    s.write_all(&harness::client::sub_command(&key("auth"), None)).await.expect("write");
    assert_eq!(read_until(&mut s, b"-a\r\n").await, b"-a\r\n", "the comet refuses a missing token");

    // origin: an Origin outside allowed_origins gets 403.
    let mut req = format!("ws://127.0.0.1:{}/sub?key={}&heartbeat=30", comet.ws, key("origin"))
        .into_client_request()
        .expect("a valid request");
    req.headers_mut().insert("Origin", "https://evil.example".parse().expect("header value"));
    let refused = tokio_tungstenite::connect_async(req).await;
    assert!(refused.is_err(), "an upgrade from a foreign Origin is refused");

    // heartbeat: subscribed with a 1 s heartbeat, then silent.
    let k = key("heartbeat");
    add_token(k.clone()).await;
    let mut s = tokio::net::TcpStream::connect(&tcp).await.expect("connect");
    s.write_all(&sub_with_token(&k, "1", "tok")).await.expect("write");
    assert_eq!(read_until(&mut s, b"+h\r\n").await, b"+h\r\n", "subscribed with a token");
    let after = read_until(&mut s, b"never").await;
    assert!(after.is_empty(), "closed without a reply after the missed heartbeat: {after:?}");

    // full_outbox: a subscriber that stops reading, with small socket buffers and msgbuf = 2.
    let k = key("slow");
    add_token(k.clone()).await;
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(2048).expect("SO_RCVBUF");
    let mut slow = sock.connect(tcp.parse().expect("addr")).await.expect("connect");
    slow.write_all(&sub_with_token(&k, "30", "tok")).await.expect("write");
    assert_eq!(read_until(&mut slow, b"+h\r\n").await, b"+h\r\n", "subscribed with a token");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(30_000));
    for _ in 0..40 {
        let ret = harness::http::push(&admin, &k, 0, &big).await;
        assert_eq!(ret, Some(0), "a push to a connected key is accepted");
        let e = Exposition::parse(harness::http::get(&stat, "/metrics").await.expect("/metrics").body());
        if sample(&e, "gopush_comet_refused_total{reason=\"full_outbox\"}") > 0.0 {
            break;
        }
    }

    let e = metrics(&mut proc, &stat).await;
    for reason in ["handshake", "auth", "origin", "heartbeat", "full_outbox"] {
        let series = format!("gopush_comet_refused_total{{reason=\"{reason}\"}}");
        assert!(sample(&e, &series) >= 1.0, "{series} was not counted");
    }
    assert!(sample(&e, "gopush_comet_slow_consumers_total") >= 1.0, "the slow consumer was counted too");
    drop(slow);
}
