//! Where SFTP byte streams come from. The pool asks a transport for a new stream whenever it
//! needs a connection — at mount, for extra pool members and after a connection died — so
//! everything above (pool, caches, reconnect) works the same over any of them.

use std::any::Any;
use std::sync::Arc;

use crate::config::{MountConfig, TransportKind};

use super::exec::{ExecError, ExecLimits, ExecOutput};

pub use super::transport_direct::DirectTransport;
pub use super::transport_passive::PassiveTransport;
pub use super::transport_process::CommandTransport;

use tokio::io::{AsyncRead, AsyncWrite};

pub trait SftpIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> SftpIo for T {}

/// A new SFTP byte stream and whatever must stay alive while it is used (an SSH connection,
/// a child process).
pub struct Opened {
    pub stream: Box<dyn SftpIo>,
    pub keep_alive: Box<dyn Any + Send + Sync>,
    /// The server's SSH identification line, when the transport saw it.
    pub banner: Option<String>,
}

#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Opens a new stream. Only the first call may prompt the user. The error is one line.
    async fn open(&self) -> Result<Opened, String>;

    /// How many streams this transport can ever give at the same time (`passive`: one);
    /// `None` when there is no limit. The pool is never larger.
    fn max_connections(&self) -> Option<usize> {
        None
    }

    /// Whether a lost stream can be replaced by a new one (`passive`: no).
    fn can_reconnect(&self) -> bool {
        true
    }

    /// Whether new streams need a person to log in again (the login that worked took a
    /// one-time code, and its connection is gone).
    fn needs_person(&self) -> bool {
        false
    }

    /// Logs in again with a person answering through `asker` (`sftpfs reauth`), so that new
    /// streams can be opened. The error is one line.
    async fn reauth(&self, _asker: Arc<dyn crate::ssh::Asker>) -> Result<(), String> {
        Err("this mount's transport logs in without a person; nothing to do".into())
    }

    /// Runs `command` on the server (an SSH exec channel beside the SFTP sessions) with
    /// `stdin` as its standard input: for what SFTP cannot ask, as hashes (`remote/hash/`).
    async fn exec(
        &self,
        _command: &str,
        _stdin: &[u8],
        _limits: ExecLimits,
    ) -> Result<ExecOutput, ExecError> {
        Err(ExecError::Unavailable(
            "this transport cannot run commands on the server".into(),
        ))
    }
}

/// The transport the configuration asks for: the built-in SSH client (default),
/// `ssh_command=` (a child process, the system `ssh` by default), `directport=` (SFTP over
/// TCP) or `passive` (SFTP on our own standard input and output). The ssh_config resolution
/// (`ssh::config::resolve`) must have run before, for the built-in SSH client. `passive`
/// takes over standard input and output here, at once: call this before the daemon detaches
/// from the terminal. The error is one line.
pub fn transport_for(cfg: &MountConfig) -> Result<Arc<dyn Transport>, String> {
    match cfg.transport.kind() {
        TransportKind::Ssh => Ok(Arc::new(SshTransport::new(crate::ssh::Connector::new(
            cfg.ssh.clone(),
        )))),
        TransportKind::Command(words) => {
            if cfg.ssh.password_stdin {
                return Err(
                    "password_stdin works only with the built-in SSH client, not with \
                            ssh_command= (use an agent or a key, or your ssh command's own way)"
                        .into(),
                );
            }
            Ok(Arc::new(CommandTransport::new(&words, cfg)?))
        }
        TransportKind::Direct(port) => Ok(Arc::new(DirectTransport::new(
            cfg.ssh.host_alias.clone(),
            port,
            cfg.ssh.connect_timeout,
        ))),
        TransportKind::Passive => Ok(Arc::new(PassiveTransport::from_stdio()?)),
    }
}

/// SFTP over the `sftp` subsystem of a russh connection; one SSH connection per stream, so
/// that pool members spread over cores and a dead connection takes down only its own —
/// except after a login that took a one-time answer (a code typed in keyboard-interactive):
/// a new login would need the person again, so further streams are channels of that one
/// connection for as long as it lives.
pub struct SshTransport {
    connector: crate::ssh::Connector,
    /// The connection of the one-time login, while it lives.
    shared: std::sync::Mutex<Option<Arc<SshKeepAlive>>>,
    /// The connections of the streams handed out, while they live: commands (`exec`) run on
    /// channels of these, never on a connection of their own.
    opened: std::sync::Mutex<Vec<std::sync::Weak<SshKeepAlive>>>,
    /// Which of them the next command goes to.
    next_exec: std::sync::atomic::AtomicUsize,
}

impl SshTransport {
    pub fn new(connector: crate::ssh::Connector) -> Self {
        SshTransport {
            connector,
            shared: std::sync::Mutex::new(None),
            opened: std::sync::Mutex::new(Vec::new()),
            next_exec: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Remembers the connection of a stream handed out, for `exec`.
    fn note_opened(&self, keep: &Arc<SshKeepAlive>) {
        let mut o = self.opened.lock().unwrap();
        o.retain(|w| w.upgrade().is_some_and(|k| k.is_live()));
        if !o
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(keep)))
        {
            o.push(Arc::downgrade(keep));
        }
    }

    /// A live connection of this transport's streams, a different one each time.
    fn connection_for_exec(&self) -> Option<Arc<SshKeepAlive>> {
        let live: Vec<Arc<SshKeepAlive>> = (self.opened.lock().unwrap().iter())
            .filter_map(|w| w.upgrade())
            .filter(|k| k.is_live())
            .collect();
        let n = self
            .next_exec
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        live.get(n % live.len().max(1)).cloned()
    }

    /// The live connection of a one-time login, if there is one.
    fn shared_connection(&self) -> Option<Arc<SshKeepAlive>> {
        let mut s = self.shared.lock().unwrap();
        if s.as_ref()
            .is_some_and(|k| k.0.as_ref().is_none_or(|c| c.is_closed()))
        {
            *s = None;
        }
        s.clone()
    }
}

/// Disconnects politely when the last stream it kept alive is dropped.
struct SshKeepAlive(Option<crate::ssh::SshConnection>);

impl SshKeepAlive {
    fn is_live(&self) -> bool {
        self.0.as_ref().is_some_and(|c| !c.is_closed())
    }
}

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
        if let Some(keep) = self.shared_connection() {
            let conn = keep.0.as_ref().expect("a live shared connection");
            // The connection lives on even if this channel cannot be had (a server limiting
            // sessions per connection): then the error is this stream's only.
            let stream = conn.open_sftp().await.map_err(|e| e.to_string())?;
            tracing::debug!("another SFTP channel on the connection of the one-time login");
            let banner = conn.banner().map(str::to_string);
            self.note_opened(&keep);
            return Ok(Opened {
                stream: Box::new(stream),
                keep_alive: Box::new(keep),
                banner,
            });
        }
        let conn = self.connector.connect().await.map_err(|e| {
            if self.connector.login_was_one_time() {
                // Nobody is there to type a new code: say so rather than guess.
                format!(
                    "{e}; the connection of the login with a one-time code is lost: a new \
                     login needs you (sftpfs reauth MOUNTPOINT)"
                )
            } else {
                e.to_string()
            }
        })?;
        let stream = conn.open_sftp().await.map_err(|e| e.to_string())?;
        let banner = conn.banner().map(str::to_string);
        let keep = Arc::new(SshKeepAlive(Some(conn)));
        if self.connector.login_was_one_time() {
            tracing::info!(
                "the login took a one-time answer: the pool's sessions share its connection"
            );
            *self.shared.lock().unwrap() = Some(keep.clone());
        }
        self.note_opened(&keep);
        Ok(Opened {
            stream: Box::new(stream),
            keep_alive: Box::new(keep),
            banner,
        })
    }

    fn needs_person(&self) -> bool {
        self.connector.login_was_one_time() && self.shared_connection().is_none()
    }

    async fn reauth(&self, asker: Arc<dyn crate::ssh::Asker>) -> Result<(), String> {
        if !self.needs_person() {
            return Err(
                "the mount's login needs nobody: its connection is up, or it logs \
                        in by itself"
                    .into(),
            );
        }
        let conn = self
            .connector
            .connect_asking(asker)
            .await
            .map_err(|e| e.to_string())?;
        // Whatever this login took, its connection serves the pool from now on.
        *self.shared.lock().unwrap() = Some(Arc::new(SshKeepAlive(Some(conn))));
        Ok(())
    }

    async fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        limits: ExecLimits,
    ) -> Result<ExecOutput, ExecError> {
        let Some(keep) = self.connection_for_exec() else {
            return Err(ExecError::Failed(
                "no SSH connection is up to run a command on".into(),
            ));
        };
        let conn = keep.0.as_ref().expect("a live connection");
        conn.exec(command, stdin, limits).await
    }
}
