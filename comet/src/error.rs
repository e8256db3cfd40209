//! The comet's one error type. Start-up failures carry their cause; subscription refusals map to
//! the status line a client receives in [`Error::reply`], the only place the reply bytes of
//! docs/protocol.md#replies are chosen. RPC callers see `cluster::rpc::CometError`, the wire
//! contract shared with web.

use cluster::net::BindError;
use std::io;

/// Why the comet could not start, or why a client's subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration makes no sense.
    #[error("config: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Registration in ZooKeeper, or seeing itself in the membership, did not happen in time.
    #[error("zookeeper: {0}")]
    NotRegistered(String),
    /// A parameter of the subscribe command is missing or wrong (`-p`).
    #[error("parameter error")]
    BadParameter,
    /// This comet does not own the key by its ring, has no ring yet, or is stopping (`-n`).
    #[error("key not owned by this comet")]
    NotOwner,
    /// Auth mode: the token could not be checked because the store did not answer (`-c`).
    #[error("token store unavailable")]
    TokenStoreUnavailable,
    /// Auth mode: the token is missing or not valid for the key (`-a`).
    #[error("token rejected")]
    TokenRejected,
    /// The subscriber asked for rooms while `client_rooms` is off (`-j`).
    #[error("joining rooms at subscribe is not enabled")]
    RoomsRefused,
    /// The key already has `max_subscriber` connections (closed without a reply).
    #[error("too many connections for the key")]
    ChannelFull,
    /// The subscribe command is not well framed (closed without a reply).
    #[error("malformed subscribe command")]
    MalformedCommand,
    /// The subscribe command did not arrive in time (closed without a reply).
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The socket failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The status line sent before closing, or `None` for a silent close (docs/protocol.md#replies).
    pub fn reply(&self) -> Option<&'static str> {
        match self {
            Error::BadParameter => Some("-p\r\n"),
            Error::NotOwner => Some("-n\r\n"),
            Error::TokenStoreUnavailable => Some("-c\r\n"),
            Error::TokenRejected => Some("-a\r\n"),
            Error::RoomsRefused => Some("-j\r\n"),
            _ => None,
        }
    }
}

/// The reply to an accepted subscription and to every heartbeat.
pub(crate) const HEARTBEAT_REPLY: &str = "+h\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_match_upstreams_table() {
        assert_eq!(Error::BadParameter.reply(), Some("-p\r\n"));
        assert_eq!(Error::NotOwner.reply(), Some("-n\r\n"));
        assert_eq!(Error::TokenStoreUnavailable.reply(), Some("-c\r\n"));
        assert_eq!(Error::TokenRejected.reply(), Some("-a\r\n"));
        assert_eq!(Error::RoomsRefused.reply(), Some("-j\r\n"));
        assert_eq!(Error::ChannelFull.reply(), None);
        assert_eq!(Error::MalformedCommand.reply(), None);
        assert_eq!(Error::HandshakeTimeout.reply(), None);
    }
}
