//! A loopback TCP proxy that can cut one network path: put it between a process and a server,
//! then [`TcpProxy::cut`] drops every connection through it and refuses new ones (the server stays
//! up for everyone else), and [`TcpProxy::heal`] lets connections through again.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A proxy from a free loopback port to one target address; stops when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    target: SocketAddr,
    cut: AtomicBool,
    stopped: AtomicBool,
    // Both halves of every connection through the proxy, to shut them down on a cut.
    live: Mutex<Vec<TcpStream>>,
}

impl TcpProxy {
    /// Starts forwarding a free loopback port to `target` (`host:port`).
    pub fn start(target: &str) -> TcpProxy {
        let target: SocketAddr = target.parse().unwrap_or_else(|e| panic!("proxy target {target}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on loopback");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            target,
            cut: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept(listener, s));
        TcpProxy { addr, shared }
    }

    /// The address to give the process instead of the target's.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Drops every connection through the proxy and refuses new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.close_all();
    }

    /// Lets new connections through again.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.close_all();
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

impl Shared {
    fn close_all(&self) {
        let live = std::mem::take(&mut *self.live.lock().unwrap_or_else(|e| e.into_inner()));
        for s in live {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.cut.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) else {
            continue;
        };
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
        {
            let mut live = shared.live.lock().unwrap_or_else(|e| e.into_inner());
            live.retain(|s| s.peer_addr().is_ok());
            for s in [&client, &server] {
                if let Ok(s) = s.try_clone() {
                    live.push(s);
                }
            }
        }
        std::thread::spawn(move || pipe(client, server));
        std::thread::spawn(move || pipe(s2, c2));
    }
}

/// Copies `from` to `to` until either side ends, then ends both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let (mut r, mut w) = (s.try_clone().unwrap(), s);
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn echoes(addr: &str) -> bool {
        let Ok(mut s) = TcpStream::connect(addr) else { return false };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = [0u8; 4];
        s.write_all(b"ping").is_ok() && s.read_exact(&mut got).is_ok() && &got == b"ping"
    }

    #[test]
    fn a_cut_drops_and_refuses_connections_until_healed() {
        let proxy = TcpProxy::start(&echo_server());
        assert!(echoes(&proxy.addr()));
        let mut held = TcpStream::connect(proxy.addr()).unwrap();
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        held.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        held.read_exact(&mut one).unwrap();

        proxy.cut();
        assert!(matches!(held.read(&mut one), Ok(0) | Err(_)), "a connection through the cut path ends");
        assert!(!echoes(&proxy.addr()), "no new connection passes a cut");
        proxy.heal();
        assert!(echoes(&proxy.addr()));
    }
}
