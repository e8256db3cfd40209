//! Where the bench may send load: loopback only. Every address the bench connects to (flags, and
//! the comet addresses web hands out) goes through [`loopback_addr`], the one guard, so a typo can
//! never turn the load generator on somebody else's machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::{BenchError, Result};

/// Resolves `host:port` without DNS and accepts it only if it is loopback.
///
/// Accepted hosts: `localhost`, any IPv4 in 127.0.0.0/8, `::1` (as `[::1]:port`). Everything else,
/// including other names, is refused: resolving arbitrary names could leave the machine.
pub fn loopback_addr(host_port: &str) -> Result<SocketAddr> {
    let s = host_port.trim();
    let (host, port) = split_host_port(s)?;
    let port: u16 = port.parse().map_err(|_| BenchError::Address(s.to_string(), "port is not a number"))?;
    if port == 0 {
        return Err(BenchError::Address(s.to_string(), "port 0"));
    }
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| BenchError::NotLoopback(s.to_string()))?
    };
    if !ip.is_loopback() {
        return Err(BenchError::NotLoopback(s.to_string()));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Splits `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or(BenchError::Address(s.to_string(), "unclosed '['"))?;
        let port = tail.strip_prefix(':').ok_or(BenchError::Address(s.to_string(), "missing port"))?;
        return Ok((host, port));
    }
    s.rsplit_once(':').ok_or(BenchError::Address(s.to_string(), "missing port"))
}

/// An `http://host:port[/prefix]` base URL, checked to be loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// The socket address to connect to.
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub host: String,
    /// A path prefix without trailing slash (usually empty).
    pub prefix: String,
}

impl HttpTarget {
    /// Parses a base URL; only plain `http` is supported (the API has no TLS).
    pub fn parse(url: &str) -> Result<Self> {
        let rest = url
            .trim()
            .strip_prefix("http://")
            .ok_or(BenchError::Address(url.to_string(), "only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let with_port = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:80")
        } else {
            authority.to_string()
        };
        let addr = loopback_addr(&with_port)?;
        Ok(Self { addr, host: authority.to_string(), prefix: path.trim_end_matches('/').to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_forms() {
        assert_eq!(loopback_addr("127.0.0.1:6969").unwrap(), "127.0.0.1:6969".parse().unwrap());
        assert_eq!(loopback_addr("127.5.6.7:1").unwrap(), "127.5.6.7:1".parse().unwrap());
        assert_eq!(loopback_addr("localhost:6968").unwrap(), "127.0.0.1:6968".parse().unwrap());
        assert_eq!(loopback_addr("LOCALHOST:80").unwrap(), "127.0.0.1:80".parse().unwrap());
        assert_eq!(loopback_addr("[::1]:8090").unwrap(), "[::1]:8090".parse().unwrap());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["10.0.0.1:80", "0.0.0.0:6969", "192.168.1.1:1", "example.com:80", "[::]:80", "[2001:db8::1]:80"] {
            assert!(matches!(loopback_addr(bad), Err(BenchError::NotLoopback(_))), "{bad}");
        }
        for bad in ["127.0.0.1", "127.0.0.1:x", "127.0.0.1:0", "[::1", "127.0.0.1:70000"] {
            assert!(matches!(loopback_addr(bad), Err(BenchError::Address(..))), "{bad}");
        }
    }

    #[test]
    fn parses_urls() {
        let t = HttpTarget::parse("http://127.0.0.1:8091").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8091".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8091");
        assert_eq!(t.prefix, "");
        let t = HttpTarget::parse("http://localhost/gp/").unwrap();
        assert_eq!(t.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(t.prefix, "/gp");
        assert!(matches!(HttpTarget::parse("https://127.0.0.1:1"), Err(BenchError::Address(..))));
        assert!(matches!(HttpTarget::parse("http://8.8.8.8:80"), Err(BenchError::NotLoopback(_))));
    }
}
