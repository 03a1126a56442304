//! Where SFTP byte streams come from. The pool asks a transport for a new stream whenever it
//! needs a connection — at mount, for extra pool members and after a connection died — so
//! everything above (pool, caches, reconnect) works the same over any of them.

use std::any::Any;

use tokio::io::{AsyncRead, AsyncWrite};

pub trait SftpIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> SftpIo for T {}

/// A new SFTP byte stream and whatever must stay alive while it is used (an SSH connection,
/// a child process).
pub struct Opened {
    pub stream: Box<dyn SftpIo>,
    pub keep_alive: Box<dyn Any + Send + Sync>,
}

#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Opens a new stream. Only the first call may prompt the user. The error is one line.
    async fn open(&self) -> Result<Opened, String>;
}

/// SFTP over the `sftp` subsystem of a russh connection; one SSH connection per stream, so
/// that pool members spread over cores and a dead connection takes down only its own.
pub struct SshTransport {
    connector: crate::ssh::Connector,
}

impl SshTransport {
    pub fn new(connector: crate::ssh::Connector) -> Self {
        SshTransport { connector }
    }
}

/// Disconnects politely when the stream it kept alive is dropped.
struct SshKeepAlive(Option<crate::ssh::SshConnection>);

impl Drop for SshKeepAlive {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { c.disconnect().await });
            }
        }
    }
}

#[async_trait::async_trait]
impl Transport for SshTransport {
    async fn open(&self) -> Result<Opened, String> {
        let conn = self.connector.connect().await.map_err(|e| e.to_string())?;
        let stream = conn.open_sftp().await.map_err(|e| e.to_string())?;
        Ok(Opened {
            stream: Box::new(stream),
            keep_alive: Box::new(SshKeepAlive(Some(conn))),
        })
    }
}
