//! The comet's one error type. Start-up failures carry their cause; subscription refusals map to
//! the status line a client receives in [`Error::reply`], the only place the §3.1 reply bytes are
//! chosen. RPC callers see `cluster::rpc::CometError`, the wire contract shared with web.

use std::io;

/// Why the comet could not start, or why a client's subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration makes no sense.
    #[error("config: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address from the config.
        addr: String,
        /// What the OS said.
        source: io::Error,
    },
    /// Registration in ZooKeeper did not complete in time.
    #[error("zookeeper: {0}")]
    Register(String),
    /// A parameter of the subscribe command is missing or wrong (`-p`).
    #[error("parameter error")]
    Param,
    /// This comet does not own the key by its ring, or has no ring yet (`-n`).
    #[error("key not owned by this comet")]
    NotOwner,
    /// Auth mode: the token could not be checked because the store did not answer (`-c`).
    #[error("token store unavailable")]
    NoChannel,
    /// Auth mode: the token is missing or not valid for the key (`-a`).
    #[error("token rejected")]
    Auth,
    /// The key already has `max_subscriber` connections (closed without a reply).
    #[error("too many connections for the key")]
    ChannelFull,
    /// The subscribe command is not well framed (closed without a reply).
    #[error("malformed subscribe command")]
    Malformed,
    /// The subscribe command did not arrive in time (closed without a reply).
    #[error("handshake timed out")]
    Timeout,
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The status line sent before closing, or `None` for a silent close (§3.1 reply table).
    pub fn reply(&self) -> Option<&'static str> {
        match self {
            Error::Param => Some("-p\r\n"),
            Error::NotOwner => Some("-n\r\n"),
            Error::NoChannel => Some("-c\r\n"),
            Error::Auth => Some("-a\r\n"),
            _ => None,
        }
    }
}

/// The reply to an accepted subscription and to every heartbeat.
pub const HEARTBEAT_REPLY: &str = "+h\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_match_the_reference_table() {
        assert_eq!(Error::Param.reply(), Some("-p\r\n"));
        assert_eq!(Error::NotOwner.reply(), Some("-n\r\n"));
        assert_eq!(Error::NoChannel.reply(), Some("-c\r\n"));
        assert_eq!(Error::Auth.reply(), Some("-a\r\n"));
        assert_eq!(Error::ChannelFull.reply(), None);
        assert_eq!(Error::Malformed.reply(), None);
        assert_eq!(Error::Timeout.reply(), None);
    }
}
