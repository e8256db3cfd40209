//! The wire forms of one pushed message (docs/protocol.md#pushed-messages,
//! docs/protocol.md#message-json), each built at most once per push and shared by every
//! connection that needs it: TCP `$len\r\n<json>\r\n` or a WebSocket text frame holding just the
//! JSON, with `msg` as raw JSON (new format) or as a JSON string (old format).

use cluster::Proto;
use cluster::gojson;
use cluster::rpc::Mid;
use std::sync::OnceLock;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;

/// The message of one push and its lazily built wire forms.
#[derive(Debug)]
pub struct Frames {
    compacted: String,
    original: String,
    mid: Mid,
    gid: u32,
    room: Option<Box<str>>,
    // Indexed by [`slot`]: (tcp, ws) × (old, new).
    built: [OnceLock<Utf8Bytes>; 4],
}

fn slot(proto: Proto, new_format: bool) -> usize {
    (proto == Proto::WebSocket) as usize * 2 + new_format as usize
}

impl Frames {
    /// The message as published (`original`), compacted by [`gojson::compact`], with its mid.
    pub fn new(compacted: String, original: String, mid: Mid) -> Frames {
        Frames { compacted, original, mid, gid: 0, room: None, built: Default::default() }
    }

    /// A room push (`room` set, gid 1) or a broadcast (gid 2) (docs/protocol.md#message-json).
    pub fn group(compacted: String, original: String, mid: Mid, room: Option<&str>) -> Frames {
        let gid = if room.is_some() { cluster::room::ROOM_GID } else { cluster::room::BROADCAST_GID };
        Frames { compacted, original, mid, gid, room: room.map(Into::into), built: Default::default() }
    }

    /// The message id.
    pub fn mid(&self) -> Mid {
        self.mid
    }

    /// The bytes for a connection of `proto` wanting the new or old format.
    pub fn get(&self, proto: Proto, new_format: bool) -> Utf8Bytes {
        self.built[slot(proto, new_format)]
            .get_or_init(|| {
                let room = self.room.as_deref();
                let json = gojson::group_message(&self.compacted, &self.original, self.mid, self.gid, room, new_format);
                match proto {
                    Proto::WebSocket => Utf8Bytes::from(json),
                    Proto::Tcp => Utf8Bytes::from(format!("${}\r\n{json}\r\n", json.len())),
                }
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_match_upstream() {
        let raw = r#"{"test":1,"h":"<b>&"}"#;
        let f = Frames::new(gojson::compact(raw).unwrap(), raw.into(), 13996474938346192);
        assert_eq!(
            f.get(Proto::Tcp, true).as_str(),
            "$76\r\n{\"msg\":{\"test\":1,\"h\":\"\\u003cb\\u003e\\u0026\"},\"mid\":13996474938346192,\"gid\":0}\r\n"
        );
        let old = r#"{"msg":"{\"test\":1,\"h\":\"\u003cb\u003e\u0026\"}","mid":13996474938346192,"gid":0}"#;
        assert_eq!(f.get(Proto::WebSocket, false).as_str(), old);
        assert_eq!(f.get(Proto::Tcp, false).as_str(), format!("${}\r\n{old}\r\n", old.len()));
        assert_eq!(
            f.get(Proto::WebSocket, true).as_str(),
            r#"{"msg":{"test":1,"h":"\u003cb\u003e\u0026"},"mid":13996474938346192,"gid":0}"#
        );
        // Built once, then shared: the same allocation.
        assert_eq!(f.get(Proto::Tcp, true).as_ptr(), f.get(Proto::Tcp, true).as_ptr());
    }
}
