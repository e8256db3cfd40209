//! The one place that decides how RPC bytes travel: TCP, an authentication handshake, then a
//! 4-byte length prefix with a frame limit and tarpc's bincode codec. Swap the codec here and
//! both ends follow.
//!
//! The handshake proves that the dialler knows the shared `rpc.secret` without sending it: the
//! server sends a magic and a random 32-byte challenge, the dialler answers HMAC-SHA256(secret,
//! challenge), and the server answers one byte, accepted or refused. With no secret configured
//! the answer is still sent and checked against the empty key, so both ends speak one protocol.

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Serialize, de::DeserializeOwned};
use sha2::Sha256;
use std::io;
use std::time::Duration;
use tarpc::serde_transport::{self, Transport};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest RPC frame accepted either way; bounds memory per connection under hostile input.
pub const MAX_FRAME: usize = 16 << 20;

/// The first bytes a server sends: names the protocol and its version, so a client that dials
/// something else fails with a clear error rather than a decoding one.
const MAGIC: &[u8; 8] = b"GOPUSH\x00\x01";
/// The server's answer to a correct proof.
const ACCEPTED: u8 = 1;
/// The server's answer to a wrong proof, just before it closes.
const REFUSED: u8 = 0;

/// An RPC transport over TCP with our framing and codec.
pub type RpcTransport<In, Out> = Transport<TcpStream, In, Out, Bincode<In, Out>>;

/// Wraps a stream that has passed the handshake.
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

fn proof(secret: &str, challenge: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(challenge);
    mac
}

/// Why an incoming RPC connection was not served.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The dialler's proof did not match this node's `rpc.secret`.
    #[error("wrong rpc.secret")]
    WrongSecret,
    /// The dialler did not finish the handshake in time.
    #[error("handshake timed out")]
    Timeout,
    /// The connection failed during the handshake.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The server's side of the handshake, within `timeout`: challenge, check the proof, answer.
pub async fn accept(stream: &mut TcpStream, secret: &str, timeout: Duration) -> Result<(), HandshakeError> {
    let exchange = async {
        let mut challenge = [0u8; 32];
        rand::rng().fill_bytes(&mut challenge);
        let mut hello = [0u8; 40];
        hello[..8].copy_from_slice(MAGIC);
        hello[8..].copy_from_slice(&challenge);
        stream.write_all(&hello).await?;
        let mut answer = [0u8; 32];
        stream.read_exact(&mut answer).await?;
        if proof(secret, &challenge).verify_slice(&answer).is_err() {
            let _ = stream.write_all(&[REFUSED]).await;
            return Err(HandshakeError::WrongSecret);
        }
        stream.write_all(&[ACCEPTED]).await?;
        Ok(())
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| HandshakeError::Timeout)?
}

/// Dials `addr` and passes the handshake with `secret`, all within `timeout`.
pub async fn connect<In, Out>(addr: &str, secret: &str, timeout: Duration) -> io::Result<RpcTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let dial = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut hello = [0u8; 40];
        stream.read_exact(&mut hello).await?;
        if &hello[..8] != MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{addr} does not speak gopush RPC")));
        }
        let answer = proof(secret, &hello[8..]).finalize().into_bytes();
        stream.write_all(&answer).await?;
        let mut verdict = [0u8; 1];
        stream.read_exact(&mut verdict).await?;
        if verdict[0] != ACCEPTED {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("{addr} refused our rpc.secret")));
        }
        Ok(stream)
    };
    let stream = tokio::time::timeout(timeout, dial)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} timed out")))?
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io::Error::new(e.kind(), format!("{addr} closed during the rpc handshake")),
            _ => e,
        })?;
    Ok(wrap(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair(server_secret: &'static str, client_secret: &str) -> (Result<(), HandshakeError>, io::Result<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            accept(&mut s, server_secret, Duration::from_secs(5)).await
        });
        let client = connect::<(), ()>(&addr, client_secret, Duration::from_secs(5)).await.map(drop);
        (server.await.unwrap(), client)
    }

    #[tokio::test]
    async fn the_same_secret_passes_and_another_is_refused() {
        let (s, c) = pair("s3cret", "s3cret").await;
        assert!(s.is_ok() && c.is_ok());
        let (s, c) = pair("", "").await;
        assert!(s.is_ok() && c.is_ok(), "no secret on either side");
        let (s, c) = pair("s3cret", "guess").await;
        assert!(matches!(s, Err(HandshakeError::WrongSecret)));
        assert_eq!(c.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        let (s, c) = pair("s3cret", "").await;
        assert!(matches!(s, Err(HandshakeError::WrongSecret)) && c.is_err(), "a client without the secret");
    }

    #[tokio::test]
    async fn a_silent_dialler_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let r = accept(&mut s, "x", Duration::from_millis(200)).await;
        assert!(matches!(r, Err(HandshakeError::Timeout)));
    }
}
