//! Opening client sockets. Sources can be pinned to a 127.0.x.y address so that several worker
//! processes each get their own ~28k ephemeral ports towards the same comet.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Connects to `addr`, bound first to `bind_ip` (port chosen by the kernel) when given.
pub async fn connect_tcp(addr: SocketAddr, bind_ip: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = bind_ip {
        if ip.is_ipv4() == addr.is_ipv4() {
            // Without it, ports of the previous run still in TIME_WAIT on this source address
            // cannot be bound again for a minute, and a second large run fails with EADDRNOTAVAIL.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(ip, 0))?;
        }
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
