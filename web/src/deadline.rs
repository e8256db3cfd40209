//! A write deadline for HTTP connections. hyper bounds how long a request head may take to arrive,
//! but not how long a response may wait for a client that stopped reading; such a client would hold
//! its connection slot forever. [`WriteDeadline`] fails a write that makes no progress for too long.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Wraps a stream so that a write (or flush) blocked for longer than `limit` fails with `TimedOut`.
pub(crate) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, timer: Box::pin(tokio::time::sleep(limit)), armed: false }
    }

    /// Called when the inner write is pending: starts the clock once, fails when it runs out.
    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.armed {
            self.armed = true;
            self.timer.as_mut().reset(Instant::now() + self.limit);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")),
            Poll::Pending => Poll::Pending,
        }
    }

    fn settle<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => self.blocked(cx).map(Err),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.settle(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.settle(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.settle(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.settle(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_fails_the_write() {
        let (near, mut far) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(near, Duration::from_secs(10));
        w.write_all(b"0123456789abcdef").await.unwrap();
        let started = Instant::now();
        let e = w.write_all(b"more").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        // A reader that keeps up never trips it, however long the whole exchange takes.
        let (near, mut far2) = tokio::io::duplex(4);
        let mut w = WriteDeadline::new(near, Duration::from_secs(1));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut b = [0u8; 4];
            while got.len() < 40 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let n = far2.read(&mut b).await.unwrap();
                got.extend_from_slice(&b[..n]);
            }
            got
        });
        w.write_all(&[7u8; 40]).await.unwrap();
        assert_eq!(reader.await.unwrap(), [7u8; 40]);
        let mut b = [0u8; 16];
        far.read_exact(&mut b).await.unwrap();
    }
}
