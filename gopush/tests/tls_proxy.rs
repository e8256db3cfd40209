//! The nginx example (deploy/nginx/gopush.conf) really fronts gopush: Debian's nginx runs it with
//! test ports and a certificate made here, `gopush standalone` advertises the proxy's wss address,
//! and a client that only speaks TLS to nginx is routed, subscribes over wss and gets a push.
//! Under CI a missing nginx fails the test; locally it is skipped with a SKIPPED line.

#[allow(dead_code)] // only the process and HTTP helpers of the shared harness are used here
mod harness;

use futures::{SinkExt, StreamExt};
use harness::READY_TIMEOUT;
use harness::config::{CometPorts, WebPorts};
use harness::proc::{Gopush, TempDir};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use testkit::eventually_some;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

/// The example exactly as shipped; rendering it below fails loudly if its placeholders change.
const EXAMPLE: &str = include_str!("../../deploy/nginx/gopush.conf");

/// Deadline of one request or frame through the proxy.
const WAIT: Duration = Duration::from_secs(10);

/// The message pushed through the cluster.
const MSG: &str = r#"{"via":"nginx"}"#;

/// Ports of one rendering: nginx's https and wss listeners, and the gopush ports behind them.
struct Ports {
    https: u16,
    wss: u16,
    web_public: u16,
    comet_ws: u16,
}

/// Replaces `from` (which must occur) by `to`, so a changed example breaks the test, not the proxy.
fn swap(text: String, from: &str, to: &str) -> String {
    assert!(text.contains(from), "deploy/nginx/gopush.conf no longer contains {from:?}; update this test");
    text.replace(from, to)
}

/// The example with loopback listeners on test ports, the test's upstreams and certificate, and
/// the IPv6 listeners dropped (tests bind 127.0.0.1 only).
fn render(dir: &Path, p: &Ports) -> String {
    let text: String = EXAMPLE.lines().filter(|l| !l.contains("listen [::]:")).map(|l| format!("{l}\n")).collect();
    let text = swap(text, "listen 443 ssl;", &format!("listen 127.0.0.1:{} ssl;", p.https));
    let text = swap(text, "listen 8443 ssl;", &format!("listen 127.0.0.1:{} ssl;", p.wss));
    let text = swap(text, "server 127.0.0.1:8090;", &format!("server 127.0.0.1:{};", p.web_public));
    let text = swap(text, "server 127.0.0.1:6968;", &format!("server 127.0.0.1:{};", p.comet_ws));
    let text = swap(text, "/etc/gopush/tls/fullchain.pem", &dir.join("cert.pem").display().to_string());
    swap(text, "/etc/gopush/tls/privkey.pem", &dir.join("key.pem").display().to_string())
}

/// A rustls client config that trusts only `cert`.
fn client_config(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("the test certificate is a valid trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// `GET path` over TLS to 127.0.0.1:`port`: the status line and the JSON body.
async fn https_get(tls: &Arc<rustls::ClientConfig>, port: u16, path: &str) -> Result<(String, Value), String> {
    let io = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let mut s = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        // nginx closes after the reply (Connection: close); the cap bounds a misbehaving peer.
        (&mut s).take(1 << 20).read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.lines().next().unwrap_or_default().to_string();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        // The body is one JSON object; slicing between the braces also copes with chunked framing.
        let json = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) if a < b => &body[a..=b],
            _ => return Err(format!("no JSON body in {text:?}")),
        };
        let v = serde_json::from_str(json).map_err(|e| format!("{e}: {json:?}"))?;
        Ok((status, v))
    };
    timeout(WAIT, io).await.map_err(|_| format!("GET {path} timed out"))?
}

/// The next text frame within [`WAIT`], skipping control frames.
async fn next_text<S>(ws: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no frame through the proxy within {WAIT:?}"),
            Ok(Some(Ok(Message::Text(t)))) => return t.as_str().to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("expected a text frame through the proxy, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_gopush_over_tls_through_the_nginx_example() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("rcgen makes a self-signed certificate");
    let (cert_pem, key_pem) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    let tls = client_config(certified.cert.der().clone());

    let (web, comet) = (WebPorts::free(), CometPorts::free());
    let proxy = testkit::Nginx::start(2, |dir, ports| {
        for (name, pem) in [("cert.pem", &cert_pem), ("key.pem", &key_pem)] {
            std::fs::write(dir.join(name), pem).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
        }
        render(dir, &Ports { https: ports[0], wss: ports[1], web_public: web.public, comet_ws: comet.ws })
    });
    let Some(proxy) = proxy else { return }; // skipped locally when nginx is absent
    let (https, wss) = (proxy.ports()[0], proxy.ports()[1]);

    // The comet advertises the proxy, not its own port: that is what web hands to clients.
    let advertised = format!("127.0.0.1:{wss}");
    let dir = TempDir::new("tls-proxy");
    let conf = format!(
        "[web.base]\nhttp_bind = \"127.0.0.1:{}\"\nadmin_bind = \"127.0.0.1:{}\"\n\n\
         [comet.base]\ntcp_bind = [\"127.0.0.1:{}\"]\nws_bind = [\"127.0.0.1:{}\"]\n\
         rpc_bind = [\"127.0.0.1:{}\"]\nstat_bind = \"127.0.0.1:{}\"\nadvertise_ws = [\"{advertised}\"]\n\
         drain = \"200ms\"\n",
        web.public, web.admin, comet.tcp, comet.ws, comet.rpc, comet.stat
    );
    gopush::load::parse::<gopush::standalone::StandaloneConfig>(&conf).expect("the test's standalone config parses");
    let path = dir.write("standalone.toml", &conf);
    let mut server = Gopush::spawn("standalone", dir.path(), &["standalone", "-c", &path]);

    // Routing over https through nginx: p=1 (WebSocket) answers the proxy's wss address.
    let key = testkit::unique_name("tls");
    let route = format!("/1/server/get?k={key}&p=1");
    let (status, reply) = eventually_some("gopush to answer through nginx over https", READY_TIMEOUT, || {
        server.assert_alive();
        let (tls, route) = (tls.clone(), route.clone());
        async move { https_get(&tls, https, &route).await.ok().filter(|(s, _)| s.contains(" 200 ")) }
    })
    .await;
    assert_eq!(reply["ret"], 0, "{status}: {reply}");
    assert_eq!(reply["data"]["server"], advertised.as_str(), "web must hand out the advertised wss address");

    // Subscribe over wss to what web answered, through nginx, trusting only the test certificate.
    let url = format!("wss://{advertised}/sub?key={key}&heartbeat=30&ver=1");
    let connector = Connector::Rustls(tls.clone());
    let upgrade = tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, Some(connector));
    let (mut ws, _) = timeout(WAIT, upgrade)
        .await
        .unwrap_or_else(|_| panic!("wss upgrade through nginx timed out"))
        .unwrap_or_else(|e| panic!("wss upgrade through nginx failed: {e}\n{}", proxy.log_tail(20)));
    assert_eq!(next_text(&mut ws).await, "+h\r\n", "the comet accepts the subscription");

    // A heartbeat goes both ways through the proxy.
    ws.send(Message::text("h")).await.unwrap_or_else(|e| panic!("wss send: {e}"));
    assert_eq!(next_text(&mut ws).await, "+h\r\n", "the heartbeat is answered through the proxy");

    // A push on the admin port (private, never proxied) arrives over wss.
    let admin = format!("127.0.0.1:{}", web.admin);
    assert_eq!(harness::http::push(&admin, &key, 0, MSG).await, Some(0), "the push is accepted");
    let frame: Value = serde_json::from_str(&next_text(&mut ws).await).expect("a pushed frame is JSON");
    assert_eq!(frame["msg"], serde_json::json!({"via": "nginx"}), "{frame}");

    let log = proxy.access_log();
    assert!(log.contains("GET /1/server/get?"), "nginx logged the https routing request:\n{log}");
    let _ = ws.close(None).await;
    assert!(proxy.is_running(), "nginx is still running:\n{}", proxy.log_tail(20));
    server.assert_alive();
}
