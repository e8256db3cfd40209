//! Resident memory of the processes under test, read from `/proc/PID/status` (`VmRSS`), so the
//! bench can report memory per connection without any help from the server.

use serde::{Deserialize, Serialize};

/// Parses the `VmRSS:   1234 kB` line of a `/proc/PID/status` file, in KiB.
pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value = parts.next()?.parse().ok()?;
    (parts.next()? == "kB").then_some(value)
}

/// Reads a process's resident set size, KiB.
pub fn read_rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vmrss(&status)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no VmRSS for pid {pid}")))
}

/// Memory of one process before and after the connections were opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RssDelta {
    /// The process.
    pub pid: u32,
    /// RSS before the run, KiB.
    pub before_kib: u64,
    /// RSS with all connections open, KiB.
    pub after_kib: u64,
    /// `(after - before) / connections`, KiB (negative if the process shrank).
    pub per_conn_kib: f64,
}

impl RssDelta {
    /// Computes the per-connection figure; zero connections give 0.
    pub fn new(pid: u32, before_kib: u64, after_kib: u64, conns: u64) -> Self {
        let delta = after_kib as f64 - before_kib as f64;
        let per_conn_kib = if conns == 0 { 0.0 } else { delta / conns as f64 };
        Self { pid, before_kib, after_kib, per_conn_kib }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let s = "Name:\tgopush\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(parse_vmrss(s), Some(12345));
        assert_eq!(parse_vmrss("Name: x\n"), None);
        assert_eq!(parse_vmrss("VmRSS: abc kB\n"), None);
        assert_eq!(parse_vmrss("VmRSS: 12 MB\n"), None);
    }

    #[test]
    fn reads_own_rss() {
        assert!(read_rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn per_connection() {
        assert_eq!(RssDelta::new(1, 1000, 61000, 15000).per_conn_kib, 4.0);
        assert_eq!(RssDelta::new(1, 1000, 900, 0).per_conn_kib, 0.0);
        assert!(RssDelta::new(1, 1000, 900, 100).per_conn_kib < 0.0);
    }
}
