//! The byte stream of an `sftp` channel. Reads come from russh's channel stream; writes go
//! to the SSH session task as whole messages, which sends them itself as soon as the
//! server's window allows.
//!
//! Why not russh's own `ChannelTx`: it counts the server's receive window on the writer's
//! side, so every WINDOW_ADJUST takes two cross-thread hops (the session task wakes the
//! writer, the writer hands the next bytes back) before data moves again. Against a server
//! with a small window (Dropbear: 24 KiB, extended 8 KiB at a time) that made uploads slower
//! than OpenSSH's `ssh`. The session keeps what the window does not yet allow in its own
//! queue and flushes it while handling the WINDOW_ADJUST. Memory stays bounded by what the
//! SFTP client above has in flight.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use russh::client::{self, Handle};
use russh::ChannelId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type Sending = Pin<Box<dyn Future<Output = Result<(), Bytes>> + Send>>;

pub struct SftpStream {
    stream: russh::ChannelStream<client::Msg>,
    handle: Arc<Handle<super::connect::ClientHandler>>,
    id: ChannelId,
    /// The message being handed to the session task, and how many bytes of the caller's
    /// buffer it holds (a `poll_write` that returned Pending is called again with them).
    sending: Option<(Sending, usize)>,
}

impl SftpStream {
    pub(super) fn new(
        channel: russh::Channel<client::Msg>,
        handle: Arc<Handle<super::connect::ClientHandler>>,
    ) -> SftpStream {
        let id = channel.id();
        SftpStream {
            stream: channel.into_stream(),
            handle,
            id,
            sending: None,
        }
    }
}

impl AsyncRead for SftpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SftpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.sending.is_none() {
            let handle = self.handle.clone();
            let (id, data) = (self.id, Bytes::copy_from_slice(buf));
            let fut: Sending = Box::pin(async move { handle.data(id, data).await });
            self.sending = Some((fut, buf.len()));
        }
        let (fut, len) = self.sending.as_mut().expect("set above");
        let result = ready!(fut.as_mut().poll(cx));
        let len = *len;
        self.sending = None;
        match result {
            Ok(()) => Poll::Ready(Ok(len)),
            Err(_) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the SSH connection is closed",
            ))),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((fut, _)) = self.sending.as_mut() {
            let result = ready!(fut.as_mut().poll(cx));
            self.sending = None;
            if result.is_err() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the SSH connection is closed",
                )));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        // EOF through the same queue as the data, so it cannot overtake it.
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
