//! The RPC servers' guards over real loopback TCP: only diallers that know `rpc.secret` are
//! served, connections idle past `idle_timeout` are closed, and at most `max_connections` are
//! served at once while the rest wait.

use cluster::pool::{RemoteComet, RpcConfig, Secret};
use cluster::rpc::{CometApi, CometError, serve_comet};
use cluster::testing::{CometCall, FakeComet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn config(secret: &str) -> RpcConfig {
    RpcConfig {
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        secret: Secret(secret.into()),
        ..RpcConfig::default()
    }
}

async fn serve(server: RpcConfig) -> (String, Arc<FakeComet>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let comet = FakeComet::new("node1");
    let stop = CancellationToken::new();
    tokio::spawn(serve_comet(listener, comet.clone(), server, stop.clone()));
    (addr, comet, stop)
}

#[tokio::test]
async fn only_diallers_with_the_secret_are_served() {
    let (addr, served, _stop) = serve(config("s3cret")).await;

    let stranger = RemoteComet::new(addr.clone(), config(""));
    assert_eq!(stranger.push_private("k".into(), "1".into(), 0, None).await, Err(CometError::Unreachable));
    let guesser = RemoteComet::new(addr.clone(), config("guess"));
    assert_eq!(guesser.push_private("k".into(), "1".into(), 0, None).await, Err(CometError::Unreachable));
    assert!(served.calls().is_empty(), "nothing reached the comet without the secret");

    let member = RemoteComet::new(addr, config("s3cret"));
    assert_eq!(member.push_private("k".into(), "1".into(), 0, None).await, Ok(1));
    assert_eq!(served.calls(), [CometCall::Push { key: "k".into(), msg: "1".into(), expire: 0 }]);
}

#[tokio::test]
async fn a_raw_connection_is_challenged_and_dropped_when_silent() {
    let (addr, _, _stop) = serve(config("s3cret")).await;
    let mut raw = TcpStream::connect(&addr).await.expect("connect");
    let mut hello = [0u8; 40];
    raw.read_exact(&mut hello).await.expect("the server speaks first");
    assert_eq!(&hello[..6], b"GOPUSH");
    // Say nothing: the server gives up after its handshake deadline and closes.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), raw.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "closed without another byte: {closed:?}");
}

#[tokio::test]
async fn idle_connections_are_closed_and_redialled() {
    let server = RpcConfig { idle_timeout: Duration::from_millis(300), ..config("") };
    let (addr, served, _stop) = serve(server).await;
    let comet = RemoteComet::new(addr, config(""));
    assert_eq!(comet.push_private("a".into(), "1".into(), 0, None).await, Ok(1));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The server closed the idle connection; the first call after may see it broken, and the
    // endpoint redials for the next one.
    let mut ok = false;
    for _ in 0..3 {
        if comet.push_private("b".into(), "1".into(), 0, None).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "the endpoint redialled after the idle close");
    assert!(served.calls().len() >= 2);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait() {
    let server = RpcConfig { max_connections: 1, ..config("") };
    let (addr, _, _stop) = serve(server).await;
    let first = RemoteComet::new(addr.clone(), config(""));
    assert!(first.push_private("a".into(), "1".into(), 0, None).await.is_ok());
    // A second dialler is not served while the first holds the only place.
    let second = RemoteComet::new(addr, config(""));
    assert_eq!(second.push_private("b".into(), "1".into(), 0, None).await, Err(CometError::Unreachable));
    drop(first);
    let mut ok = false;
    for _ in 0..20 {
        if second.push_private("b".into(), "1".into(), 0, None).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the place was freed when the first dialler left");
}
