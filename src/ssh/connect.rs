//! From an [`SshConfig`] to an authenticated SSH connection, and from a connection to an
//! `sftp` byte stream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelMsg, Disconnect};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::auth::{self, Authenticator, Secrets};
use super::channel_io::SftpStream;
use super::child::ChildStream;
use super::host_key::HostKeyPolicy;
use super::prompt::{self, PromptClock};
use super::{algorithms, SshError};
use crate::config::{Proxy, SshConfig};

/// What an SSH connection runs over: a TCP socket, a `ProxyCommand` child, or a direct-tcpip
/// channel of a jump host's connection.
trait Socket: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Socket for T {}

/// Opens authenticated connections to one server, as often as asked (pool, reconnects).
///
/// Only the first successful connection may prompt on the terminal; what it learnt
/// (passphrase-decrypted keys, password, accepted host key) is kept in memory for the others.
/// With `ProxyJump`, each connection goes through a new connection to the jump host, made by
/// the jump host's own connector (which remembers its own secrets).
pub struct Connector {
    cfg: SshConfig,
    /// The connector of the last `ProxyJump` host (whose own `via` leads to the one before),
    /// or why the jump hosts cannot be used.
    via: Result<Option<Arc<Connector>>, String>,
    secrets: Secrets,
    /// Host keys accepted in this process that could not be written to known_hosts.
    accepted_host_keys: Arc<Mutex<Vec<KeyData>>>,
    /// Set once a connection has been authenticated: later ones never prompt.
    connected_once: AtomicBool,
    /// Serialises connections until the first one succeeded, so only one of them prompts.
    first: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.cfg.host)
            .field("port", &self.cfg.port)
            .field("user", &self.cfg.user)
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub fn new(cfg: SshConfig) -> Self {
        let via = jump_chain(&cfg);
        Connector {
            cfg,
            via,
            secrets: Secrets::default(),
            accepted_host_keys: Arc::default(),
            connected_once: AtomicBool::new(false),
            first: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the login that worked took a one-time answer a person typed: then more
    /// sessions must be channels of that one connection (see `SshTransport`).
    pub fn login_was_one_time(&self) -> bool {
        self.secrets.one_time()
    }

    /// A new login where a person answers through `asker` (`sftpfs reauth`): the host key
    /// must be one already trusted, and what the person types is used for this login.
    pub async fn connect_asking(
        &self,
        asker: Arc<dyn prompt::Asker>,
    ) -> Result<SshConnection, SshError> {
        let conn = self.login(false, Some(asker)).await?;
        tracing::info!(
            "logged in again ({}:{} as {})",
            self.cfg.host,
            self.cfg.port,
            self.cfg.user
        );
        Ok(conn)
    }

    /// Connect, verify the host key, authenticate.
    pub async fn connect(&self) -> Result<SshConnection, SshError> {
        let _first = if self.connected_once.load(Ordering::Acquire) {
            None
        } else {
            Some(self.first.lock().await)
        };
        let cfg = &self.cfg;
        let interactive = !cfg.batch_mode
            && !self.connected_once.load(Ordering::Acquire)
            && prompt::tty_available();
        let conn = self.login(interactive, None).await?;
        self.connected_once.store(true, Ordering::Release);
        tracing::debug!("connected to {}:{} as {}", cfg.host, cfg.port, cfg.user);
        Ok(conn)
    }

    /// Handshake and authentication; questions go to `asker` (a person at `sftpfs reauth`)
    /// or, when `interactive`, to the terminal (the host key question too).
    async fn login(
        &self,
        interactive: bool,
        asker: Option<Arc<dyn prompt::Asker>>,
    ) -> Result<SshConnection, SshError> {
        let cfg = &self.cfg;
        let identity_files = auth::identity_files(cfg)?;
        let clock = Arc::new(PromptClock::default());
        let (mut handle, via, banner) = self.handshake(interactive, &clock).await?;
        let mut authenticator = Authenticator::new(
            &mut handle,
            cfg,
            &self.secrets,
            &clock,
            identity_files,
            interactive || asker.is_some(),
        );
        if let Some(a) = asker {
            authenticator = authenticator.asking(a);
        }
        match within(cfg.connect_timeout, &clock, authenticator.run()).await {
            None => return Err(self.timeout()),
            Some(result) => result?,
        }
        Ok(SshConnection {
            handle: Arc::new(handle),
            timeout: cfg.connect_timeout,
            sftp_server: cfg.sftp_server.clone(),
            via: via.map(Box::new),
            banner,
        })
    }

    /// Connection (TCP, ProxyCommand or through the jump host), key exchange and host key
    /// verification, within the connect timeout (plus the time the user takes to answer a
    /// host key question). Also returns the jump host's connection, which must live as long
    /// as this one.
    pub(crate) async fn handshake(
        &self,
        interactive: bool,
        clock: &Arc<PromptClock>,
    ) -> Result<(Handle<ClientHandler>, Option<SshConnection>, Option<String>), SshError> {
        let cfg = &self.cfg;
        let policy = Arc::new(HostKeyPolicy::new(
            cfg,
            interactive,
            self.accepted_host_keys.clone(),
            clock.clone(),
        ));
        let (socket, via, through) = self.open_socket(clock).await?;
        let config = Arc::new(client_config(cfg, &policy));
        let handler = ClientHandler {
            policy,
            show_banner: interactive,
        };
        let (socket, banner) = super::banner::BannerTap::new(socket);
        let handshake = client::connect_stream(config, socket, handler);
        match within(cfg.connect_timeout, clock, handshake).await {
            None => Err(self.timeout()),
            Some(Ok(handle)) => Ok((handle, via, banner.get())),
            Some(Err(HandlerError::HostKey(e))) => Err(e),
            Some(Err(HandlerError::Ssh(e))) => Err(SshError::Handshake {
                host: cfg.host.clone(),
                port: cfg.port,
                reason: format!("{}{through}", handshake_reason(&e)),
            }),
        }
    }

    /// The byte stream the SSH connection runs over, the jump connection it depends on, and
    /// a note for errors (" (through ...)").
    async fn open_socket(
        &self,
        clock: &Arc<PromptClock>,
    ) -> Result<(Box<dyn Socket>, Option<SshConnection>, String), SshError> {
        let cfg = &self.cfg;
        let via = self.via.as_ref().map_err(|e| SshError::Config(e.clone()))?;
        if let Some(via) = via {
            // Boxed: connecting to the jump host recurses into this same code.
            let jump = Box::pin(via.connect()).await?;
            let jump_name = format!("{}:{}", via.cfg.host, via.cfg.port);
            let open = jump.handle.channel_open_direct_tcpip(
                cfg.host.clone(),
                u32::from(cfg.port),
                "127.0.0.1",
                0,
            );
            let channel = match within(cfg.connect_timeout, clock, open).await {
                None => return Err(self.timeout()),
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    return Err(SshError::JumpChannel {
                        jump: jump_name,
                        host: cfg.host.clone(),
                        port: cfg.port,
                        reason: e.to_string(),
                    })
                }
            };
            tracing::debug!("tunnel to {}:{} through {jump_name}", cfg.host, cfg.port);
            let through = format!(" (through jump host {jump_name})");
            return Ok((Box::new(channel.into_stream()), Some(jump), through));
        }
        if let Some(Proxy::Command(command)) = &cfg.proxy {
            let command = proxy_command(command, cfg);
            tracing::debug!("ProxyCommand: {command}");
            let child = ChildStream::shell(&command).map_err(|e| SshError::ProxyCommand {
                command: command.clone(),
                reason: e.to_string(),
            })?;
            let through = format!(" (through ProxyCommand '{command}')");
            return Ok((Box::new(child), None, through));
        }
        let socket = tcp_connect(&cfg.host, cfg.port, cfg.connect_timeout).await?;
        Ok((Box::new(socket), None, String::new()))
    }

    fn timeout(&self) -> SshError {
        SshError::Timeout {
            host: self.cfg.host.clone(),
            port: self.cfg.port,
            timeout: self.cfg.connect_timeout,
        }
    }
}

/// An authenticated SSH connection. Cheap to clone; the connection closes when the last
/// clone (and every stream opened on it) is gone, or on [`SshConnection::disconnect`].
#[derive(Clone)]
pub struct SshConnection {
    handle: Arc<Handle<ClientHandler>>,
    /// Bound on the wait for the server's answers when opening a channel.
    timeout: Duration,
    /// `sftp_server=`: another subsystem, or a command to run, instead of `sftp`.
    sftp_server: Option<String>,
    /// The jump host's connection this one runs through, kept alive with it.
    via: Option<Box<SshConnection>>,
    /// The server's SSH identification line.
    banner: Option<String>,
}

impl std::fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConnection")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl SshConnection {
    /// The server's SSH identification line (`SSH-2.0-OpenSSH_9.2p1 ...`), if it sent one.
    pub fn banner(&self) -> Option<&str> {
        self.banner.as_deref()
    }

    /// Open a session channel running the `sftp` subsystem (or what `sftp_server=` says: a
    /// subsystem name, or a command when it contains a `/`, as in sshfs).
    pub async fn open_sftp(&self) -> Result<SftpStream, SshError> {
        let open = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.channel_error(e))?;
            match self.sftp_server.as_deref() {
                Some(cmd) if cmd.contains('/') => channel.exec(true, cmd).await,
                Some(name) => channel.request_subsystem(true, name).await,
                None => channel.request_subsystem(true, "sftp").await,
            }
            .map_err(|e| self.channel_error(e))?;
            // Wait for the answer before making the stream, which would drop it.
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => {
                        return Ok(SftpStream::new(channel, self.handle.clone()))
                    }
                    Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) | None => {
                        return Err(SshError::NoSftpSubsystem)
                    }
                    Some(msg) => tracing::debug!("while waiting for sftp: {msg:?}"),
                }
            }
        };
        tokio::time::timeout(self.timeout, open)
            .await
            .map_err(|_| SshError::SftpTimeout {
                timeout: self.timeout,
            })?
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs `command` on an exec channel of this connection (see `exec.rs`).
    pub async fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        limits: crate::remote::exec::ExecLimits,
    ) -> Result<crate::remote::exec::ExecOutput, crate::remote::exec::ExecError> {
        super::exec::run(&self.handle, command, stdin, limits, self.timeout).await
    }

    pub async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        if let Some(via) = &self.via {
            Box::pin(via.disconnect()).await;
        }
    }

    fn channel_error(&self, e: russh::Error) -> SshError {
        if self.is_closed() {
            SshError::Closed
        } else {
            SshError::Channel {
                reason: e.to_string(),
            }
        }
    }
}

/// Our side of russh's session: host key verification and the login banner.
pub(crate) struct ClientHandler {
    policy: Arc<HostKeyPolicy>,
    show_banner: bool,
}

/// russh turns a refused key into a bare "unknown key"; carrying our own error through the
/// handler keeps the reason (unknown, changed at file:line, revoked…).
#[derive(Debug)]
pub(crate) enum HandlerError {
    Ssh(russh::Error),
    HostKey(SshError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandlerError> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Err(HandlerError::HostKey(SshError::HostCertificate));
        };
        let (policy, key) = (self.policy.clone(), key.clone());
        // File reads and perhaps a terminal prompt: off the async threads.
        match tokio::task::spawn_blocking(move || policy.verify(&key)).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(HandlerError::HostKey(e)),
            Err(e) => Err(HandlerError::Ssh(russh::Error::IO(std::io::Error::other(
                e,
            )))),
        }
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), HandlerError> {
        // ssh shows the banner to the person logging in; reconnections stay quiet.
        if self.show_banner {
            let _ = prompt::tell(banner);
        } else {
            tracing::debug!("server banner: {}", banner.trim_end());
        }
        Ok(())
    }
}

fn client_config(cfg: &SshConfig, policy: &HostKeyPolicy) -> client::Config {
    let keepalive = (!cfg.server_alive_interval.is_zero()).then_some(cfg.server_alive_interval);
    client::Config {
        nodelay: true,
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 32,
        keepalive_interval: keepalive,
        keepalive_max: cfg.server_alive_count_max,
        inactivity_timeout: None,
        preferred: {
            let mut p = algorithms::preferred(
                cfg.ciphers.as_deref(),
                cfg.kex_algorithms.as_deref(),
                cfg.macs.as_deref(),
                cfg.compression,
            );
            p.key = policy.preferred_algorithms(&p.key).into();
            p
        },
        ..Default::default()
    }
}

/// The connectors of the `ProxyJump` hosts, chained: each one's `via` is the hop before it.
/// Hosts that the ssh_config resolution did not fill in are made from the specs with this
/// config's settings.
fn jump_chain(cfg: &SshConfig) -> Result<Option<Arc<Connector>>, String> {
    let hops = match &cfg.proxy {
        Some(Proxy::Jump(specs)) if cfg.jump_hosts.is_empty() => specs
            .iter()
            .map(|spec| super::config::hop_config(cfg, spec, &cfg.user).map(|(hop, _)| hop))
            .collect::<Result<Vec<_>, _>>()?,
        _ => cfg.jump_hosts.clone(),
    };
    let mut via: Option<Arc<Connector>> = None;
    for hop in hops {
        let mut c = Connector::new(hop);
        if via.is_some() {
            c.via = Ok(via);
        }
        via = Some(Arc::new(c));
    }
    Ok(via)
}

/// A `ProxyCommand` with ssh's tokens expanded: `%h` host, `%p` port, `%r` user, `%n` the
/// host as written, `%%`.
fn proxy_command(command: &str, cfg: &SshConfig) -> String {
    let port = cfg.port.to_string();
    super::config::expand_tokens(
        command,
        &[
            ('h', &cfg.host),
            ('p', &port),
            ('r', &cfg.user),
            ('n', &cfg.host_alias),
        ],
    )
}

/// Resolve and connect, trying each address in turn with `timeout` each (as ssh's
/// ConnectTimeout does).
async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, SshError> {
    let resolve_error = |reason: String| SshError::Resolve {
        host: host.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(resolve_error(e.to_string())),
            Err(_) => return Err(resolve_error(format!("no answer within {timeout:?}"))),
        };
    let mut last = resolve_error("no address".into());
    for addr in addrs {
        tracing::debug!("connecting to {addr}");
        last = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY: {e}");
                }
                return Ok(stream);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => SshError::Refused {
                host: host.to_string(),
                port,
            },
            Ok(Err(e)) => SshError::Connect {
                host: host.to_string(),
                port,
                source: e,
            },
            Err(_) => SshError::Timeout {
                host: host.to_string(),
                port,
                timeout,
            },
        };
    }
    Err(last)
}

/// Run `fut` with a deadline of `timeout`, pushed back by the time spent in prompts.
async fn within<F: Future>(timeout: Duration, clock: &PromptClock, fut: F) -> Option<F::Output> {
    let start = Instant::now();
    tokio::pin!(fut);
    loop {
        let deadline = start + timeout + clock.paused();
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep_until(deadline) => {
                if start + timeout + clock.paused() <= Instant::now() {
                    return None;
                }
            }
        }
    }
}

fn handshake_reason(e: &russh::Error) -> String {
    use std::io::ErrorKind;
    match e {
        russh::Error::Disconnect | russh::Error::HUP => {
            "the server closed the connection".to_string()
        }
        russh::Error::IO(io)
            if matches!(
                io.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ) =>
        {
            format!("the server closed the connection ({io}); is it an SSH server?")
        }
        russh::Error::Version => "the server does not speak SSH".to_string(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deadline_excludes_prompt_time() {
        let clock = Arc::new(PromptClock::default());
        let short = Duration::from_millis(100);
        let slow = tokio::time::sleep(Duration::from_millis(300));
        assert!(within(short, &clock, slow).await.is_none());
        let c = clock.clone();
        let prompting = prompt::blocking_timed(&c, || {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        });
        assert!(within(short, &clock, prompting).await.is_some());
    }
}
