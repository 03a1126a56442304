//! Typed SFTP operations and OpenSSH extensions over one session. Paths and handles are bytes.

use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite};

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use super::bounds::{server_text, ListingBound, MAX_PACKET};
use super::client::Client;
use super::error::{RemoteError, Result};
use super::profile::{Ext, Profile, SymlinkOrder};
use super::protocol::*;

/// An open remote file or directory handle (opaque bytes chosen by the server).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle(pub Vec<u8>);

/// Request sizes this session may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_read: u32,
    pub max_write: u32,
    pub max_open_handles: u64,
}

impl Limits {
    /// Without `limits@openssh.com`: 32 KiB is what every SFTP v3 server must accept.
    const CONSERVATIVE: Limits = Limits {
        max_read: 32 * 1024,
        max_write: 32 * 1024,
        max_open_handles: 0,
    };
    /// Our own ceiling, so that a generous server cannot make replies exceed what we read.
    const CEILING: u32 = 255 * 1024;
}

/// `statvfs@openssh.com` reply, the fields of struct statvfs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatVfs {
    pub bsize: u64,
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
    pub fsid: u64,
    pub flag: u64,
    pub namemax: u64,
}

pub struct Sftp {
    client: Client,
    profile: Arc<Profile>,
    limits: Limits,
    /// READ size in use: `limits`' when the server said, else learned (see `read`).
    read_size: AtomicU32,
    /// The READ size is known: said by the server, or seen answered in full, or seen capped.
    read_size_known: AtomicBool,
}

fn unexpected(what: &'static str, r: Response) -> RemoteError {
    match r {
        Response::Status { code, message } => RemoteError::Status { code, message },
        other => RemoteError::Protocol(format!("expected {what}, got {other}")),
    }
}

fn status_ok(r: Response) -> Result<()> {
    match r {
        Response::Status {
            code: SSH_FX_OK, ..
        } => Ok(()),
        other => Err(unexpected("status", other)),
    }
}

impl Sftp {
    /// Starts SFTP on `stream` (an `sftp` subsystem channel, a child's pipes, a socket):
    /// version exchange, extension discovery and request-size negotiation.
    pub async fn start<S>(stream: S, timeout: Duration) -> Result<Sftp>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Sftp::start_with(stream, timeout, None).await
    }

    /// `start`, knowing the server's SSH banner (`banner`), which tells some quirks.
    pub async fn start_with<S>(stream: S, timeout: Duration, banner: Option<&str>) -> Result<Sftp>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (client, hello) = Client::start(stream, timeout).await?;
        let profile = Profile::decide(banner, hello.version, &hello.extensions);
        let mut sftp = Sftp {
            client,
            profile: Arc::new(profile),
            limits: Limits::CONSERVATIVE,
            // Without limits@openssh.com, READs as large as ours first: a server that allows
            // less answers short, and `read` learns its size. WRITEs stay at 32 KiB: one
            // too large can kill a server.
            read_size: AtomicU32::new(Limits::CEILING),
            read_size_known: AtomicBool::new(false),
        };
        if sftp.profile.has(Ext::Limits) {
            match sftp.query_limits().await {
                Ok(l) => {
                    sftp.limits = l;
                    sftp.read_size = AtomicU32::new(l.max_read);
                    sftp.read_size_known = AtomicBool::new(true);
                }
                Err(e) if sftp.profile.refused(Ext::Limits, &e) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::debug!("sftp session: {:?}, limits {:?}", sftp.profile, sftp.limits);
        Ok(sftp)
    }

    /// Shares what an earlier session of the same mount learned of the same server
    /// (extensions seen not to work); the caller checked `Profile::same_server`.
    pub fn adopt_profile(&mut self, earlier: &Arc<Profile>) {
        self.profile = earlier.clone();
    }

    async fn query_limits(&self) -> Result<Limits> {
        let mut d = self.extended("limits@openssh.com", |p| p).await?;
        if d.remaining() < 32 {
            return Err(RemoteError::Protocol("short limits reply".into()));
        }
        let packet = d.get_u64();
        let read = d.get_u64();
        let write = d.get_u64();
        let handles = d.get_u64();
        // Zero means "no limit given"; a write must also fit in one packet with its header.
        let pick = |v: u64| {
            let v = if v == 0 { u64::MAX } else { v };
            let v = v
                .min(packet.saturating_sub(1024).max(32 * 1024))
                .min(Limits::CEILING as u64);
            v.min((MAX_PACKET - 1024) as u64) as u32
        };
        Ok(Limits {
            max_read: pick(read),
            max_write: pick(write),
            max_open_handles: handles,
        })
    }

    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_read: self.read_size.load(Ordering::Relaxed),
            ..self.limits
        }
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub fn stats(&self) -> super::stats::ConnStats {
        self.client.stats()
    }

    /// Why the session ended, when the server broke the protocol (a malformed packet) or
    /// stopped answering; only to the first caller.
    pub fn broken_by_once(&self) -> Option<RemoteError> {
        self.client.broken_by_once()
    }

    /// The session was ended because the server stopped answering.
    pub fn went_silent(&self) -> bool {
        self.client.went_silent()
    }

    /// Probes the connection now (see `health.rs`).
    pub fn suspect(&self) {
        self.client.suspect()
    }

    /// A session nothing can replace (`noreconnect`, `passive`) is never declared dead for
    /// silence: its requests only time out.
    pub fn never_declare_dead(&self) {
        self.client.never_declare_dead()
    }

    /// Resolves when the session ends: true when it went silent.
    pub fn ended(&self) -> impl std::future::Future<Output = bool> + Send + 'static {
        self.client.ended()
    }

    /// Bytes of file data in flight on this session (READs asked, WRITEs sent, unanswered).
    pub fn bulk_in_flight(&self) -> u64 {
        self.client.bulk_in_flight()
    }

    pub fn shutdown(&self) {
        self.client.shutdown()
    }

    async fn extended(
        &self,
        name: &'static str,
        fill: impl FnOnce(Packet) -> Packet,
    ) -> Result<Bytes> {
        let r = self
            .client
            .request(|id| fill(Packet::new(SSH_FXP_EXTENDED, id).string(name.as_bytes())))
            .await?;
        match r {
            Response::ExtendedReply(d) => Ok(d),
            other => Err(unexpected("extended reply", other)),
        }
    }

    /// An extended request whose answer may take longer than a request deadline (a hash of
    /// a large file, computed before the server answers): waited for `patience` instead.
    pub(super) async fn extended_patient(
        &self,
        name: &'static str,
        patience: Duration,
        fill: impl FnOnce(Packet) -> Packet,
    ) -> Result<Bytes> {
        let r = self
            .client
            .send(|id| fill(Packet::new(SSH_FXP_EXTENDED, id).string(name.as_bytes())))?
            .patient(patience)
            .wait()
            .await?;
        match r {
            Response::ExtendedReply(d) => Ok(d),
            other => Err(unexpected("extended reply", other)),
        }
    }

    /// `or_unsupported`, for the hash requests (`remote/hash/`).
    pub(super) fn unless_refused<T>(&self, e: Ext, r: Result<T>) -> Result<T> {
        self.or_unsupported(e, r)
    }

    async fn extended_status(
        &self,
        name: &'static str,
        fill: impl FnOnce(Packet) -> Packet,
    ) -> Result<()> {
        let r = self
            .client
            .request(|id| fill(Packet::new(SSH_FXP_EXTENDED, id).string(name.as_bytes())))
            .await?;
        status_ok(r)
    }

    async fn path_request(&self, kind: u8, path: &[u8]) -> Result<Response> {
        self.client
            .request(|id| Packet::new(kind, id).string(path))
            .await
    }

    async fn attrs_reply(&self, r: Response) -> Result<Attrs> {
        match r {
            Response::Attrs(a) => Ok(a),
            other => Err(unexpected("attributes", other)),
        }
    }

    async fn single_name(&self, r: Response) -> Result<Vec<u8>> {
        match r {
            Response::Name(mut v) if v.len() == 1 => Ok(v.remove(0).name),
            other => Err(unexpected("one name", other)),
        }
    }

    pub async fn realpath(&self, path: &[u8]) -> Result<Vec<u8>> {
        let r = self.path_request(SSH_FXP_REALPATH, path).await?;
        self.single_name(r).await
    }

    /// `~` and `~user` expansion through `expand-path@openssh.com`, falling back to REALPATH.
    pub async fn expand_path(&self, path: &[u8]) -> Result<Vec<u8>> {
        if !self.profile.has(Ext::ExpandPath) {
            return self.realpath(path).await;
        }
        let r = self
            .client
            .request(|id| {
                Packet::new(SSH_FXP_EXTENDED, id)
                    .string(b"expand-path@openssh.com")
                    .string(path)
            })
            .await?;
        self.single_name(r).await
    }

    pub async fn lstat(&self, path: &[u8]) -> Result<Attrs> {
        let r = self.path_request(SSH_FXP_LSTAT, path).await?;
        self.attrs_reply(r).await
    }

    pub async fn stat(&self, path: &[u8]) -> Result<Attrs> {
        let r = self.path_request(SSH_FXP_STAT, path).await?;
        self.attrs_reply(r).await
    }

    pub async fn fstat(&self, h: &Handle) -> Result<Attrs> {
        let r = self
            .client
            .request(|id| Packet::new(SSH_FXP_FSTAT, id).string(&h.0))
            .await?;
        self.attrs_reply(r).await
    }

    pub async fn setstat(&self, path: &[u8], a: &Attrs) -> Result<()> {
        let r = self
            .client
            .request(|id| Packet::new(SSH_FXP_SETSTAT, id).string(path).attrs(a))
            .await?;
        status_ok(r)
    }

    /// SETSTAT that does not follow a final symlink, when the server can.
    pub async fn lsetstat(&self, path: &[u8], a: &Attrs) -> Result<()> {
        if !self.profile.has(Ext::Lsetstat) {
            return self.setstat(path, a).await;
        }
        let r = self
            .extended_status(Ext::Lsetstat.name(), |p| p.string(path).attrs(a))
            .await;
        match self.or_unsupported(Ext::Lsetstat, r) {
            Err(RemoteError::Unsupported(_)) => self.setstat(path, a).await,
            r => r,
        }
    }

    pub async fn fsetstat(&self, h: &Handle, a: &Attrs) -> Result<()> {
        self.fsetstat_send(h, a).await
    }

    pub async fn open(&self, path: &[u8], pflags: u32, a: &Attrs) -> Result<Handle> {
        let r = self
            .client
            .request(|id| {
                Packet::new(SSH_FXP_OPEN, id)
                    .string(path)
                    .u32(pflags)
                    .attrs(a)
            })
            .await?;
        match r {
            Response::Handle(h) => Ok(Handle(h)),
            other => Err(unexpected("handle", other)),
        }
    }

    pub async fn opendir(&self, path: &[u8]) -> Result<Handle> {
        match self.path_request(SSH_FXP_OPENDIR, path).await? {
            Response::Handle(h) => Ok(Handle(h)),
            other => Err(unexpected("handle", other)),
        }
    }

    pub async fn close(&self, h: &Handle) -> Result<()> {
        let r = self
            .client
            .request(|id| Packet::new(SSH_FXP_CLOSE, id).string(&h.0))
            .await?;
        status_ok(r)
    }

    /// Queues a CLOSE whose answer nobody needs (a directory handle fully read).
    pub fn close_nowait(&self, h: &Handle) {
        let _ = self
            .client
            .send(|id| Packet::new(SSH_FXP_CLOSE, id).string(&h.0));
    }

    /// One READ of at most `limits().max_read` bytes. Empty at end of file; may be short.
    /// `len` bytes at `offset`, fewer only at the end of the file. A request longer than
    /// the READ size in use (sized before a smaller one was learned, or on another
    /// connection) is served in pieces of that size.
    pub async fn read(&self, h: &Handle, offset: u64, len: u32) -> Result<Bytes> {
        if len <= self.read_size.load(Ordering::Relaxed) {
            return self.read_sized(h, offset, len).await;
        }
        let mut all = bytes::BytesMut::with_capacity(len as usize);
        while (all.len() as u32) < len {
            let ask = (len - all.len() as u32).min(self.read_size.load(Ordering::Relaxed));
            let d = self.read_sized(h, offset + all.len() as u64, ask).await?;
            let end_of_file = (d.len() as u32) < ask;
            all.extend_from_slice(&d);
            if end_of_file {
                break;
            }
        }
        Ok(all.freeze())
    }

    /// One READ of at most the size in use. A server that did not say its READ size and
    /// answers short (with at least the 32 KiB every server must serve) is asked for the
    /// rest: if more comes, it caps READs, and its size is used from then on.
    async fn read_sized(&self, h: &Handle, offset: u64, len: u32) -> Result<Bytes> {
        let len = len.min(self.read_size.load(Ordering::Relaxed));
        let first = match self.read_once(h, offset, len).await {
            // A server that refuses a READ larger than it allows (instead of answering
            // short) gets the size every server must accept.
            Err(RemoteError::Status { code, .. })
                if !self.read_size_known.load(Ordering::Relaxed)
                    && len > Limits::CONSERVATIVE.max_read
                    && matches!(code, SSH_FX_FAILURE | SSH_FX_BAD_MESSAGE) =>
            {
                self.read_size
                    .store(Limits::CONSERVATIVE.max_read, Ordering::Relaxed);
                self.read_size_known.store(true, Ordering::Relaxed);
                let len = len.min(Limits::CONSERVATIVE.max_read);
                return self.read_once(h, offset, len).await;
            }
            r => r?,
        };
        let got = first.len() as u32;
        // Less than every server must serve: the end of the file (or a file still growing),
        // never a cap to learn.
        if self.read_size_known.load(Ordering::Relaxed) || got < Limits::CONSERVATIVE.max_read {
            return Ok(first);
        }
        if got >= len {
            if got > Limits::CONSERVATIVE.max_read {
                // Answered in full, larger than the protocol's minimum: no cap to learn.
                self.read_size_known.store(true, Ordering::Relaxed);
            }
            return Ok(first);
        }
        let more = self.read_once(h, offset + got as u64, len - got).await?;
        if more.is_empty() {
            return Ok(first);
        }
        self.read_size.fetch_min(got, Ordering::Relaxed);
        if !self.read_size_known.swap(true, Ordering::Relaxed) {
            tracing::info!("the server answers READs of at most {got} bytes; using that size");
        }
        let mut all = bytes::BytesMut::with_capacity(len as usize);
        all.extend_from_slice(&first);
        all.extend_from_slice(&more);
        while (all.len() as u32) < len {
            let next = self
                .read_once(h, offset + all.len() as u64, len - all.len() as u32)
                .await?;
            if next.is_empty() {
                break;
            }
            all.extend_from_slice(&next);
        }
        Ok(all.freeze())
    }

    async fn read_once(&self, h: &Handle, offset: u64, len: u32) -> Result<Bytes> {
        let r = self
            .client
            .request(|id| {
                Packet::new(SSH_FXP_READ, id)
                    .string(&h.0)
                    .u64(offset)
                    .u32(len)
            })
            .await?;
        match r {
            // More than asked: which bytes are the file's cannot be known.
            Response::Data(d) if d.len() > len as usize => Err(RemoteError::Protocol(format!(
                "a READ of {len} bytes answered with {}",
                d.len()
            ))),
            Response::Data(d) => Ok(d),
            Response::Status {
                code: SSH_FX_EOF, ..
            } => Ok(Bytes::new()),
            other => Err(unexpected("data", other)),
        }
    }

    /// One WRITE; `data` must not exceed `limits().max_write`.
    pub async fn write(&self, h: &Handle, offset: u64, data: &[u8]) -> Result<()> {
        self.write_send(h, offset, data).await
    }

    /// Queues one WRITE now and returns the wait for its reply: writes queued in a given
    /// order reach the server in that order, whoever awaits them.
    pub fn write_send(
        &self,
        h: &Handle,
        offset: u64,
        data: &[u8],
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        debug_assert!(data.len() <= self.limits.max_write as usize);
        let sent = self.client.send(|id| {
            Packet::new(SSH_FXP_WRITE, id)
                .string(&h.0)
                .u64(offset)
                .string(data)
        });
        async move { status_ok(sent?.wait().await?) }
    }

    /// Queues one FSETSTAT now and returns the wait for its reply, in order with the WRITEs
    /// queued on the handle (see `write_send`).
    pub fn fsetstat_send(
        &self,
        h: &Handle,
        a: &Attrs,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let sent = self
            .client
            .send(|id| Packet::new(SSH_FXP_FSETSTAT, id).string(&h.0).attrs(a));
        async move { status_ok(sent?.wait().await?) }
    }

    /// One READDIR batch; `None` at the end of the directory.
    pub async fn readdir(&self, h: &Handle) -> Result<Option<Vec<NameEntry>>> {
        let r = self
            .client
            .request(|id| Packet::new(SSH_FXP_READDIR, id).string(&h.0))
            .await?;
        match r {
            Response::Name(v) => Ok(Some(v)),
            Response::Status {
                code: SSH_FX_EOF, ..
            } => Ok(None),
            other => Err(unexpected("names", other)),
        }
    }

    /// Every entry of a directory (`.` and `..` included, as the server sends them), within
    /// `bound`: past it the listing fails with [`RemoteError::Exceeded`].
    /// Several READDIRs travel at once: a small directory costs two round trips, not three.
    pub async fn read_dir_all(&self, path: &[u8], bound: &ListingBound) -> Result<Vec<NameEntry>> {
        const IN_FLIGHT: usize = 4;
        let started = tokio::time::Instant::now();
        let h = self.opendir(path).await?;
        let send = |h: &Handle| {
            self.client
                .send(|id| Packet::new(SSH_FXP_READDIR, id).string(&h.0))
        };
        let mut queue = std::collections::VecDeque::new();
        let mut all = Vec::new();
        let mut name_bytes = 0;
        let res = 'read: loop {
            while queue.len() < IN_FLIGHT {
                match send(&h) {
                    Ok(p) => queue.push_back(p),
                    Err(e) => break 'read Err(e),
                }
            }
            let reply = match queue.pop_front().unwrap().wait().await {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            match reply {
                Response::Name(v) => {
                    name_bytes += v.iter().map(|e| e.name.len()).sum::<usize>();
                    all.extend(v);
                }
                Response::Status {
                    code: SSH_FX_EOF, ..
                } => break Ok(()),
                other => break Err(unexpected("names", other)),
            }
            let past = if all.len() > bound.entries {
                format!("more than {} entries", bound.entries)
            } else if name_bytes > bound.name_bytes {
                format!("more than {} bytes of names", bound.name_bytes)
            } else if started.elapsed() > bound.time {
                format!("not complete after {} s", bound.time.as_secs())
            } else {
                continue;
            };
            break Err(RemoteError::Exceeded(format!(
                "the listing of {} was refused: {past}, past the bound of a listing \
                 (does the server's listing never end?)",
                server_text(path)
            )));
        };
        // The READDIRs still in flight are answered (EOF, or more names nobody holds); the
        // CLOSE queues behind them and nothing waits for it.
        drop(queue);
        self.close_nowait(&h);
        res.map(|()| all)
    }

    pub async fn remove(&self, path: &[u8]) -> Result<()> {
        status_ok(self.path_request(SSH_FXP_REMOVE, path).await?)
    }

    pub async fn mkdir(&self, path: &[u8], a: &Attrs) -> Result<()> {
        let r = self
            .client
            .request(|id| Packet::new(SSH_FXP_MKDIR, id).string(path).attrs(a))
            .await?;
        status_ok(r)
    }

    pub async fn rmdir(&self, path: &[u8]) -> Result<()> {
        status_ok(self.path_request(SSH_FXP_RMDIR, path).await?)
    }

    /// Plain SFTP rename: fails when `to` exists (used for RENAME_NOREPLACE).
    pub async fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let r = self
            .client
            .request(|id| Packet::new(SSH_FXP_RENAME, id).string(from).string(to))
            .await?;
        status_ok(r)
    }

    /// rename(2) semantics: atomically replaces `to`.
    pub async fn posix_rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        if !self.profile.has(Ext::PosixRename) {
            return Err(RemoteError::Unsupported("posix-rename@openssh.com"));
        }
        let r = self
            .extended_status(Ext::PosixRename.name(), |p| p.string(from).string(to))
            .await;
        self.or_unsupported(Ext::PosixRename, r)
    }

    pub async fn readlink(&self, path: &[u8]) -> Result<Vec<u8>> {
        let r = self.path_request(SSH_FXP_READLINK, path).await?;
        self.single_name(r).await
    }

    /// Makes `link` a symlink to `target`, in the order this server reads (OpenSSH's, target
    /// first, the reverse of the draft; see [`Profile`]).
    pub async fn symlink(&self, link: &[u8], target: &[u8]) -> Result<()> {
        let (first, second) = match self.profile.symlink_order {
            SymlinkOrder::TargetFirst => (target, link),
            SymlinkOrder::LinkFirst => (link, target),
        };
        let r = self
            .client
            .request(|id| {
                Packet::new(SSH_FXP_SYMLINK, id)
                    .string(first)
                    .string(second)
            })
            .await?;
        status_ok(r)
    }

    pub async fn hardlink(&self, existing: &[u8], new: &[u8]) -> Result<()> {
        if !self.profile.has(Ext::Hardlink) {
            return Err(RemoteError::Unsupported("hardlink@openssh.com"));
        }
        let r = self
            .extended_status(Ext::Hardlink.name(), |p| p.string(existing).string(new))
            .await;
        self.or_unsupported(Ext::Hardlink, r)
    }

    pub async fn fsync(&self, h: &Handle) -> Result<()> {
        if !self.profile.has(Ext::Fsync) {
            return Err(RemoteError::Unsupported("fsync@openssh.com"));
        }
        let r = self
            .extended_status(Ext::Fsync.name(), |p| p.string(&h.0))
            .await;
        self.or_unsupported(Ext::Fsync, r)
    }

    pub async fn statvfs(&self, path: &[u8]) -> Result<StatVfs> {
        if !self.profile.has(Ext::Statvfs) {
            return Err(RemoteError::Unsupported("statvfs@openssh.com"));
        }
        let r = self.extended(Ext::Statvfs.name(), |p| p.string(path)).await;
        let mut d = self.or_unsupported(Ext::Statvfs, r)?;
        if d.remaining() < 88 {
            return Err(RemoteError::Protocol("short statvfs reply".into()));
        }
        Ok(StatVfs {
            bsize: d.get_u64(),
            frsize: d.get_u64(),
            blocks: d.get_u64(),
            bfree: d.get_u64(),
            bavail: d.get_u64(),
            files: d.get_u64(),
            ffree: d.get_u64(),
            favail: d.get_u64(),
            fsid: d.get_u64(),
            flag: d.get_u64(),
            namemax: d.get_u64(),
        })
    }

    /// The draft's `space-available` (ProFTPD, SFTP v6 servers), as a `statvfs` answer: the
    /// sizes it gives, in its allocation unit (4 KiB when it says 0), and no inode counts
    /// (left 0 for the caller to fill in). Unsupported when it says nothing useful either.
    pub async fn space_available(&self, path: &[u8]) -> Result<StatVfs> {
        if !self.profile.has(Ext::SpaceAvailable) {
            return Err(RemoteError::Unsupported("space-available"));
        }
        let r = self
            .extended(Ext::SpaceAvailable.name(), |p| p.string(path))
            .await;
        let mut d = self.or_unsupported(Ext::SpaceAvailable, r)?;
        if d.remaining() < 36 {
            return Err(RemoteError::Protocol("short space-available reply".into()));
        }
        let (total, free, _user_total, user_free) =
            (d.get_u64(), d.get_u64(), d.get_u64(), d.get_u64());
        let unit = match d.get_u32() {
            0 => 4096,
            n => n as u64,
        };
        if total == 0 {
            // "Unknown": as good as no answer.
            return Err(RemoteError::Unsupported("space-available"));
        }
        Ok(StatVfs {
            bsize: unit,
            frsize: unit,
            blocks: total / unit,
            bfree: free / unit,
            bavail: user_free.min(free) / unit,
            namemax: 255,
            ..StatVfs::default()
        })
    }

    /// Server-side copy (`copy-data`): `len` 0 copies to the end of the source.
    pub async fn copy_data(
        &self,
        from: &Handle,
        from_off: u64,
        len: u64,
        to: &Handle,
        to_off: u64,
    ) -> Result<()> {
        if !self.profile.has(Ext::CopyData) {
            return Err(RemoteError::Unsupported("copy-data"));
        }
        let r = self
            .extended_status(Ext::CopyData.name(), |p| {
                p.string(&from.0)
                    .u64(from_off)
                    .u64(len)
                    .string(&to.0)
                    .u64(to_off)
            })
            .await;
        self.or_unsupported(Ext::CopyData, r)
    }

    /// An offered extension's answer: a refusal of the request itself becomes `Unsupported`,
    /// as if it had never been offered (and it is not asked again on this mount).
    fn or_unsupported<T>(&self, e: Ext, r: Result<T>) -> Result<T> {
        match r {
            Err(err) if self.profile.refused(e, &err) => Err(RemoteError::Unsupported(e.name())),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;

    use crate::remote::testing::{server, TempDir};

    fn tmp() -> TempDir {
        TempDir::new()
    }

    fn b(p: &std::path::Path) -> Vec<u8> {
        p.as_os_str().as_bytes().to_vec()
    }

    #[tokio::test]
    async fn without_limits_reads_learn_the_size_the_server_serves() {
        use crate::remote::testing::ChildTransport;
        use crate::remote::Transport;
        let d = tmp();
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(d.join("f"), &data).unwrap();
        let path = b(&d.join("f"));
        for (cap, want) in [(None, Limits::CEILING), (Some(32 * 1024), 32 * 1024)] {
            let mut t = ChildTransport::hiding(vec!["limits@openssh.com"]);
            t.read_cap = cap;
            let o = t.open().await.unwrap();
            let s = Sftp::start(o.stream, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(s.limits().max_read, Limits::CEILING, "tried large first");
            let h = s
                .open(&path, SSH_FXF_READ, &Attrs::default())
                .await
                .unwrap();
            let got = s.read(&h, 1000, Limits::CEILING).await.unwrap();
            assert_eq!(
                &got[..],
                &data[1000..1000 + Limits::CEILING as usize],
                "{cap:?}"
            );
            assert_eq!(s.limits().max_read, want, "{cap:?}");
            // At the end of the file a short answer stays short.
            let tail = s.read(&h, 590_000, 32 * 1024).await.unwrap();
            assert_eq!(&tail[..], &data[590_000..]);
            drop(o.keep_alive);
        }
    }

    #[tokio::test]
    async fn negotiates_openssh_limits_and_extensions() {
        let s = server().await;
        let l = s.limits();
        assert!(l.max_read > 32 * 1024 && l.max_read <= 261120, "{l:?}");
        assert!(l.max_write <= 261120);
        let p = s.profile();
        for e in [
            Ext::PosixRename,
            Ext::Statvfs,
            Ext::Hardlink,
            Ext::Fsync,
            Ext::Limits,
        ] {
            assert!(p.has(e), "{e:?}");
        }
    }

    #[tokio::test]
    async fn write_read_pipelined_and_non_utf8_names() {
        let s = server().await;
        let d = tmp();
        let path = b(&d.0).into_iter().chain(*b"/caf\xe9").collect::<Vec<u8>>();
        let h = s
            .open(
                &path,
                SSH_FXF_WRITE | SSH_FXF_READ | SSH_FXF_CREAT | SSH_FXF_EXCL,
                &Attrs {
                    permissions: Some(0o600),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let chunk = vec![7u8; s.limits().max_write as usize];
        let writes = (0..8u64).map(|i| s.write(&h, i * chunk.len() as u64, &chunk));
        for r in futures::future::join_all(writes).await {
            r.unwrap();
        }
        // Longer than one READ: served in pieces, whole up to the end of the file.
        let data = s.read(&h, 0, u32::MAX).await.unwrap();
        assert_eq!(data.len(), 8 * chunk.len());
        assert!(s.read(&h, 1 << 40, 10).await.unwrap().is_empty());
        s.fsync(&h).await.unwrap();
        assert_eq!(
            s.fstat(&h).await.unwrap().size,
            Some(8 * chunk.len() as u64)
        );
        s.close(&h).await.unwrap();
        let names: Vec<Vec<u8>> = s
            .read_dir_all(&b(&d.0), &ListingBound::asked(Duration::from_secs(10)))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert!(names.contains(&b"caf\xe9".to_vec()), "{names:?}");
        // O_EXCL on an existing file: OpenSSH says FAILURE.
        let err = s
            .open(
                &path,
                SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_EXCL,
                &Attrs::default(),
            )
            .await
            .unwrap_err();
        assert!(err.is_failure(), "{err:?}");
    }

    #[tokio::test]
    async fn metadata_operations() {
        let s = server().await;
        let d = tmp();
        let p = |n: &str| b(&d.join(n));
        s.mkdir(&p("dir"), &Attrs::default()).await.unwrap();
        assert!(s.lstat(&p("dir")).await.unwrap().is_dir());
        let e = s.mkdir(&p("dir"), &Attrs::default()).await.unwrap_err();
        assert!(e.is_failure());
        assert_eq!(s.lstat(&p("nope")).await.unwrap_err().errno(), libc::ENOENT);
        s.symlink(&p("link"), b"dir").await.unwrap();
        assert_eq!(s.readlink(&p("link")).await.unwrap(), b"dir");
        assert_eq!(
            std::fs::read_link(d.join("link")).unwrap(),
            std::path::Path::new("dir")
        );
        std::fs::write(d.join("a"), b"A").unwrap();
        std::fs::write(d.join("b"), b"B").unwrap();
        s.posix_rename(&p("a"), &p("b")).await.unwrap();
        assert_eq!(std::fs::read(d.join("b")).unwrap(), b"A");
        std::fs::write(d.join("c"), b"C").unwrap();
        assert!(s.rename(&p("c"), &p("b")).await.unwrap_err().is_failure());
        s.hardlink(&p("b"), &p("h")).await.unwrap();
        assert_eq!(
            std::fs::metadata(d.join("h")).unwrap().ino(),
            std::fs::metadata(d.join("b")).unwrap().ino()
        );
        s.setstat(
            &p("b"),
            &Attrs {
                permissions: Some(0o640),
                atime_mtime: Some((1000, 2000)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let m = std::fs::metadata(d.join("b")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(m.mtime(), 2000);
        let v = s.statvfs(&b(&d.0)).await.unwrap();
        assert!(v.blocks > 0 && v.namemax > 0);
        s.remove(&p("h")).await.unwrap();
        s.rmdir(&p("dir")).await.unwrap();
        assert!(!d.join("dir").exists());
        let home = s.realpath(b".").await.unwrap();
        assert!(home.starts_with(b"/"));
    }

    #[tokio::test]
    async fn a_dead_server_fails_requests_instead_of_hanging() {
        let (ours, theirs) = tokio::io::duplex(1024);
        // A "server" that answers VERSION and then never replies again.
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut r, mut w) = tokio::io::split(theirs);
            let mut buf = [0u8; 9];
            r.read_exact(&mut buf).await.unwrap();
            w.write_all(&Packet::new(SSH_FXP_VERSION, 3).finish())
                .await
                .unwrap();
            let mut sink = vec![0u8; 4096];
            while r.read(&mut sink).await.unwrap_or(0) > 0 {}
        });
        let s = Sftp::start(ours, Duration::from_millis(300)).await.unwrap();
        let e = s.lstat(b"/").await.unwrap_err();
        assert_eq!(e.errno(), libc::ETIMEDOUT);
    }

    #[tokio::test]
    async fn oversized_packet_closes_the_session_cleanly() {
        let (ours, theirs) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut r, mut w) = tokio::io::split(theirs);
            let mut buf = [0u8; 9];
            r.read_exact(&mut buf).await.unwrap();
            w.write_all(&Packet::new(SSH_FXP_VERSION, 3).finish())
                .await
                .unwrap();
            // Claims a 4 GiB packet.
            w.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
                .await
                .unwrap();
            let mut sink = vec![0u8; 4096];
            while r.read(&mut sink).await.unwrap_or(0) > 0 {}
        });
        let s = Sftp::start(ours, Duration::from_secs(5)).await.unwrap();
        let e = s.lstat(b"/").await.unwrap_err();
        assert!(e.is_connection(), "{e:?}");
        assert!(s.is_closed());
    }
}
