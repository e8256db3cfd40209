//! What a process advertises about itself in ZooKeeper
//! (docs/decisions.md#d3-zookeeper-layout-and-advertised-addresses) and how a registered instance
//! is named. The JSON form is `{"rpc":[..],"tcp":[..],"ws":[..],"weight":N}` for comets and
//! `{"rpc":[..],"weight":N}` for message nodes.

use serde::{Deserialize, Serialize};

/// The advertised addresses and ring weight of one process.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Internal RPC addresses (`host:port`), as other processes should dial them.
    #[serde(default)]
    pub rpc: Vec<String>,
    /// Client TCP addresses, handed to clients by `/1/server/get?p=2`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<String>,
    /// Client WebSocket addresses, handed to clients by `/1/server/get?p=1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ws: Vec<String>,
    /// Ring weight (comets) or load-balancing weight (message nodes); 0 takes no keys.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl NodeInfo {
    /// The compact JSON stored as znode data.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses znode data; `None` for data another program (or an older version) wrote.
    pub fn from_json(data: &[u8]) -> Option<NodeInfo> {
        serde_json::from_slice(data).ok()
    }
}

/// One live process registered in ZooKeeper: an ephemeral sequential znode and what it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Full znode path, e.g. `/gopush-cluster-comet/node1/0000000003`; the instance's identity.
    pub path: String,
    /// The sequence number ZooKeeper gave it; the lowest live one under a comet node is active.
    pub seq: u64,
    /// What it advertises.
    pub info: NodeInfo,
}

/// Parses the sequence from the last path component of a sequential znode (`...0000000003`).
pub fn sequence_of(name: &str) -> Option<u64> {
    let last = name.rsplit('/').next().unwrap_or(name);
    let digits = last.len().checked_sub(10).map(|i| &last[i..])?;
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms_match_the_design() {
        let comet = NodeInfo {
            rpc: vec!["127.0.0.1:6970".into()],
            tcp: vec!["127.0.0.1:6969".into(), "127.0.0.1:7069".into()],
            ws: vec!["127.0.0.1:6968".into()],
            weight: 2,
        };
        assert_eq!(
            String::from_utf8(comet.to_json()).unwrap(),
            r#"{"rpc":["127.0.0.1:6970"],"tcp":["127.0.0.1:6969","127.0.0.1:7069"],"ws":["127.0.0.1:6968"],"weight":2}"#
        );
        let message = NodeInfo { rpc: vec!["127.0.0.1:8070".into()], weight: 1, ..Default::default() };
        assert_eq!(String::from_utf8(message.to_json()).unwrap(), r#"{"rpc":["127.0.0.1:8070"],"weight":1}"#);
        assert_eq!(NodeInfo::from_json(&comet.to_json()), Some(comet));
        assert_eq!(NodeInfo::from_json(br#"{"rpc":["a:1"]}"#).unwrap().weight, 1);
        assert_eq!(NodeInfo::from_json(b""), None);
        assert_eq!(NodeInfo::from_json(b"tcp://a:1,ws://a:2"), None);
    }

    #[test]
    fn sequences_parse_from_names_and_paths() {
        assert_eq!(sequence_of("0000000003"), Some(3));
        assert_eq!(sequence_of("/gopush-cluster-comet/node1/0000000042"), Some(42));
        assert_eq!(sequence_of("/m/prefix0000000042"), Some(42));
        assert_eq!(sequence_of("abc"), None);
        assert_eq!(sequence_of("xxxxxxxxxxxx"), None);
    }
}

/// A client protocol: which listener a client uses, which frames it is sent and which address
/// list of a [`NodeInfo`] routes it. The comet, web and the bench all mean this one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// The RESP-like TCP protocol: `$len\r\n<json>\r\n` frames.
    Tcp,
    /// WebSocket `/sub`: one text frame per message.
    #[serde(rename = "ws")]
    WebSocket,
}

impl Proto {
    /// Upstream's `p` parameter of `/1/server/get`: `1` is WebSocket, `2` is TCP.
    pub fn from_param(p: &str) -> Option<Proto> {
        match p {
            "1" => Some(Proto::WebSocket),
            "2" => Some(Proto::Tcp),
            _ => None,
        }
    }

    /// The `p` parameter that asks for this protocol.
    pub fn param(self) -> u8 {
        match self {
            Proto::WebSocket => 1,
            Proto::Tcp => 2,
        }
    }

    /// Its short name in logs, metrics labels and command lines: `tcp` or `ws`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::WebSocket => "ws",
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "ws" | "websocket" => Ok(Proto::WebSocket),
            other => Err(format!("unknown protocol {other:?}: expected tcp or ws")),
        }
    }
}

#[cfg(test)]
mod proto_tests {
    use super::Proto;

    #[test]
    fn names_and_params_round_trip() {
        for p in [Proto::Tcp, Proto::WebSocket] {
            assert_eq!(p.name().parse::<Proto>(), Ok(p));
            assert_eq!(Proto::from_param(&p.param().to_string()), Some(p));
        }
        assert_eq!(Proto::from_param("3"), None);
        assert!("udp".parse::<Proto>().is_err());
    }
}
