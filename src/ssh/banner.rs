//! The server's SSH identification line (`SSH-2.0-OpenSSH_9.2p1 Debian-2`), read off the
//! byte stream as the SSH library reads it: the library does not hand it out, and some SFTP
//! quirks (see `remote::profile`) are known only by the server's name.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes kept from the start of the stream: the identification comes within the first 255
/// after at most a few lines of text (RFC 4253, 4.2).
const KEEP: usize = 2048;

/// A stream that remembers its first bytes read.
pub struct BannerTap<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

/// Where the tapped bytes are read back.
#[derive(Clone, Default)]
pub struct Banner(Arc<Mutex<Vec<u8>>>);

impl Banner {
    /// The identification line, once the handshake read it.
    pub fn get(&self) -> Option<String> {
        let seen = self.0.lock().unwrap();
        seen.split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"SSH-"))
            // Printable ASCII only: a hostile server's escape sequences must not reach a
            // terminal through the log.
            .map(|l| {
                l.strip_suffix(b"\r")
                    .unwrap_or(l)
                    .iter()
                    .map(|&b| {
                        if (0x20..0x7f).contains(&b) {
                            b as char
                        } else {
                            '?'
                        }
                    })
                    .collect()
            })
    }
}

impl<S> BannerTap<S> {
    pub fn new(inner: S) -> (BannerTap<S>, Banner) {
        let b = Banner::default();
        (
            BannerTap {
                inner,
                seen: b.0.clone(),
            },
            b,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BannerTap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let mut seen = self.seen.lock().unwrap();
        if seen.len() < KEEP {
            let new = &buf.filled()[before..];
            let room = KEEP - seen.len();
            seen.extend_from_slice(&new[..new.len().min(room)]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BannerTap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_identification_line_after_other_lines() {
        let (mut server, client) = tokio::io::duplex(4096);
        let (mut tap, banner) = BannerTap::new(client);
        server
            .write_all(b"Welcome\r\nSSH-2.0-AsyncSSH_2.14.2\r\n\x00\x00\x01")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = tap.read(&mut buf).await.unwrap();
        assert!(n > 0);
        assert_eq!(banner.get().as_deref(), Some("SSH-2.0-AsyncSSH_2.14.2"));
    }
}
