//! The one place that decides how RPC bytes travel: TCP, a 4-byte length prefix with a frame limit,
//! and tarpc's bincode codec. Swap the codec here and both ends follow.

use serde::{Serialize, de::DeserializeOwned};
use std::io;
use std::time::Duration;
use tarpc::serde_transport::{self, Transport};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio::net::TcpStream;

/// Largest RPC frame accepted either way; bounds memory per connection under hostile input.
pub const MAX_FRAME: usize = 16 << 20;

/// An RPC transport over TCP with our framing and codec.
pub type RpcTransport<In, Out> = Transport<TcpStream, In, Out, Bincode<In, Out>>;

/// Wraps an accepted or dialled stream.
pub fn wrap<In, Out>(stream: TcpStream) -> RpcTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    // Requests are small and latency-bound: never wait for Nagle.
    let _ = stream.set_nodelay(true);
    let framing = LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec();
    serde_transport::new(Framed::new(stream, framing), Bincode::default())
}

/// Dials `addr` within `timeout`.
pub async fn connect<In, Out>(addr: &str, timeout: Duration) -> io::Result<RpcTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} timed out")))??;
    Ok(wrap(stream))
}
