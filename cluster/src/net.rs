//! Listening sockets, written once for every port a gopush process opens: [`bind`] applies the
//! socket options and names the config key in its error, and [`accept_loop`] hands accepted
//! streams to a callback, backing off exponentially on accept errors (out of descriptors, mostly)
//! and logging once per burst of them rather than once per failed accept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Accept backlog. Clients that reconnect all at once after a comet failure arrive in a burst;
/// tokio's default of 1024 overflowed in the 30k-connection benchmark (SYN retransmits of ~1 s).
pub const BACKLOG: u32 = 4096;

/// Socket options of a listener; accepted sockets inherit them on Linux.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_RCVBUF` in bytes; 0 keeps the kernel's default.
    pub rcvbuf: u32,
    /// `SO_SNDBUF` in bytes; 0 keeps the kernel's default.
    pub sndbuf: u32,
    /// `SO_KEEPALIVE`.
    pub keepalive: bool,
}

/// A listener that could not be opened: the config key it came from, the address and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({key}): {cause}")]
pub struct BindError {
    /// The config key that named the address, e.g. `base.tcp_bind`.
    pub key: String,
    /// The address as configured.
    pub addr: String,
    /// The operating system's reason. Not a `source`, so error chains don't print it twice.
    pub cause: std::io::Error,
}

/// Binds `addr` (from config key `key`) with `options`. An empty host (`:8080`) means every
/// interface, as in upstream's configs.
pub async fn bind(key: &str, addr: &str, options: SocketOptions) -> Result<TcpListener, BindError> {
    let err = |cause| BindError { key: key.to_string(), addr: addr.to_string(), cause };
    let target = match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    };
    let resolved =
        tokio::net::lookup_host(&target).await.map_err(err)?.next().ok_or_else(|| {
            err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the address resolves to nothing"))
        })?;
    let socket = if resolved.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    if options.rcvbuf > 0 {
        socket.set_recv_buffer_size(options.rcvbuf).map_err(err)?;
    }
    if options.sndbuf > 0 {
        socket.set_send_buffer_size(options.sndbuf).map_err(err)?;
    }
    if options.keepalive {
        socket.set_keepalive(true).map_err(err)?;
    }
    socket.bind(resolved).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)
}

/// True for an address that binds every interface (`0.0.0.0`, `[::]` or an empty host), which
/// nobody can dial and so must not be advertised.
pub fn is_wildcard(addr: &str) -> bool {
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    host.is_empty() || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// True for an address on the loopback interface only, where no other host can reach it.
pub fn is_loopback(addr: &str) -> bool {
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Splits `host:port` (the host may be empty or a bracketed IPv6 address).
pub fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("{addr:?} is not host:port"))?;
    let port = port.parse::<u16>().map_err(|_| format!("{addr:?} has no valid port"))?;
    Ok((host, port))
}

/// Checks the rule every registered process follows: what it advertises is what others dial, so
/// a wildcard bind needs an advertised address, and an advertised address must be a real
/// `host:port` (not a wildcard, not port 0). `bind_key` and `advertise_key` name the config keys
/// in the error.
pub fn check_advertise(
    bind_key: &str,
    binds: &[String],
    advertise_key: &str,
    advertise: &[String],
) -> Result<(), String> {
    for (i, a) in binds.iter().enumerate() {
        split_host_port(a).map_err(|e| format!("{bind_key}[{i}]: {e}"))?;
    }
    if advertise.is_empty() {
        if let Some(a) = binds.iter().find(|a| is_wildcard(a)) {
            return Err(format!(
                "{advertise_key}: {bind_key} {a:?} listens on every interface, so say which address other \
                 processes should dial (e.g. {advertise_key} = [\"10.0.0.5:{}\"])",
                split_host_port(a).map_or(0, |(_, p)| p)
            ));
        }
    }
    for (i, a) in advertise.iter().enumerate() {
        match split_host_port(a) {
            Err(e) => return Err(format!("{advertise_key}[{i}]: {e}")),
            Ok(_) if is_wildcard(a) => {
                return Err(format!("{advertise_key}[{i}]: {a:?} is a wildcard address nobody can dial"));
            }
            Ok((_, 0)) => return Err(format!("{advertise_key}[{i}]: {a:?} has port 0")),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// One accepted connection.
pub struct Accepted {
    /// The socket, with `TCP_NODELAY` set: Go sets it by default and clients expect each push
    /// promptly.
    pub stream: TcpStream,
    /// The remote address.
    pub peer: SocketAddr,
    /// The connection's place under the loop's limit, if it has one; hold it while serving.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// First pause after a failed accept; it doubles per consecutive failure up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// Longest pause after failed accepts: long enough not to spin, short enough to recover quickly
/// once descriptors are free again.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Accepts on `listener` until `stop` is cancelled and gives each connection to `handle`. With a
/// `limit`, a place is taken before accepting, so connections beyond it wait in the backlog.
/// `what` names the port in logs (`"tcp"`, `"admin http"`, …).
pub async fn accept_loop<F>(
    listener: TcpListener,
    what: &'static str,
    limit: Option<Arc<Semaphore>>,
    stop: CancellationToken,
    mut handle: F,
) where
    F: FnMut(Accepted),
{
    let mut failures = 0u32;
    loop {
        let permit = match &limit {
            Some(limit) => tokio::select! {
                permit = limit.clone().acquire_owned() => match permit {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
                _ = stop.cancelled() => return,
            },
            None => None,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if failures == 0 {
                        warn!(port = what, error = %e, "cannot accept connections; backing off");
                    }
                    failures = failures.saturating_add(1);
                    let pause = FIRST_PAUSE.saturating_mul(1 << failures.min(8)).min(MAX_PAUSE);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            },
            _ = stop.cancelled() => return,
        };
        if failures > 0 {
            info!(port = what, failed = failures, "accepting connections again");
            failures = 0;
        }
        let _ = stream.set_nodelay(true);
        handle(Accepted { stream, peer, permit });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_loopback() {
        for a in ["0.0.0.0:1", "[::]:1", ":8080"] {
            assert!(is_wildcard(a), "{a}");
        }
        for a in ["127.0.0.1:1", "10.0.0.1:1", "localhost:1", "[::1]:1"] {
            assert!(!is_wildcard(a), "{a}");
        }
        for a in ["127.0.0.1:1", "127.9.9.9:1", "localhost:1", "[::1]:1"] {
            assert!(is_loopback(a), "{a}");
        }
        for a in ["0.0.0.0:1", ":1", "10.0.0.1:1", "example.com:1"] {
            assert!(!is_loopback(a), "{a}");
        }
    }

    #[test]
    fn advertise_rules() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_advertise("b", &v(&["127.0.0.1:1"]), "a", &[]).is_ok());
        let e = check_advertise("base.rpc_bind", &v(&["0.0.0.0:8070"]), "base.advertise", &[]).unwrap_err();
        assert!(e.starts_with("base.advertise:") && e.contains("0.0.0.0:8070"), "{e}");
        assert!(check_advertise("b", &v(&[":8070"]), "a", &v(&["10.0.0.5:8070"])).is_ok());
        assert!(check_advertise("b", &v(&["nope"]), "a", &[]).unwrap_err().starts_with("b[0]:"));
        assert!(check_advertise("b", &[], "a", &v(&["0.0.0.0:1"])).unwrap_err().contains("wildcard"));
        assert!(check_advertise("b", &[], "a", &v(&["h:0"])).unwrap_err().contains("port 0"));
    }

    #[tokio::test]
    async fn bind_names_the_key_and_says_the_cause_once() {
        let first = bind("base.tcp_bind", "127.0.0.1:0", SocketOptions::default()).await.unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let e = bind("base.ws_bind", &addr, SocketOptions::default()).await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("base.ws_bind") && text.contains(&addr), "{text}");
        assert_eq!(text.matches("in use").count(), 1, "{text}");
        assert!(std::error::Error::source(&e).is_none());
    }

    #[tokio::test]
    async fn the_loop_hands_over_connections_under_its_limit() {
        let listener = bind("test", "127.0.0.1:0", SocketOptions::default()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let limit = Arc::new(Semaphore::new(1));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(accept_loop(listener, "test", Some(limit), stop.clone(), move |a| {
            let _ = tx.send(a);
        }));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let first = rx.recv().await.unwrap();
        assert!(first.permit.is_some());
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        assert!(waited.is_err(), "the second waits while the first holds the only place");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        assert!(second.permit.is_some());
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
