//! Open files: open/create (and taking a file read ahead across files), flush, fsync,
//! release, and re-opening a file on a new connection after a reconnect. Reading and
//! writing are in `read/file_read.rs` and `write/write_behind.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fuser::FileAttr;
use futures::future::join;

use super::handle::OpenFile;
use super::names::inode::{InodeTable, Version};
use super::read::split;
use super::write::write_behind::send_queued;
use super::{pflags, Filesystem, FsError, FsResult};
use crate::remote::{Attrs, Conn, Handle, RemoteError};

/// What `open` hands the kernel.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    /// The file did not change since the kernel last cached it: keep its pages.
    pub keep_cache: bool,
}

/// Opens answered, and those that let the kernel keep the pages it held of the file: what
/// the keep-or-drop decision did, counted here since the kernel may evict pages at will.
#[derive(Debug, Default)]
pub struct OpenCounts {
    total: AtomicU64,
    kept_pages: AtomicU64,
}

impl OpenCounts {
    fn count(&self, kept_pages: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if kept_pages {
            self.kept_pages.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (opens, opens that kept the kernel's pages)
    pub fn get(&self) -> (u64, u64) {
        (
            self.total.load(Ordering::Relaxed),
            self.kept_pages.load(Ordering::Relaxed),
        )
    }
}

impl Filesystem {
    pub(super) fn file(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        self.files.get(fh).ok_or(FsError::new(libc::EBADF))
    }

    fn register(&self, ino: u64, conn: Arc<Conn>, h: Handle, flags: i32, a: &Attrs) -> u64 {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let reopen = pflags(flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC));
        self.inodes.lock().unwrap().open(ino);
        let f = OpenFile::new(ino, conn, h, reopen, writable);
        f.readahead.lock().unwrap().size_hint = a.size;
        if writable {
            // The LSTAT sent with the OPEN (after any truncation it made): empty, the whole
            // file will pass through here (`verify_writes`).
            self.writer_opened(ino, flags & libc::O_TRUNC != 0, a.size);
        }
        self.files.insert(f)
    }

    pub async fn open(self: &Arc<Self>, ino: u64, flags: i32) -> FsResult<Opened> {
        let o = self.open_file(ino, flags).await?;
        self.opens.count(o.keep_cache && !self.opts.direct_io);
        Ok(o)
    }

    async fn open_file(self: &Arc<Self>, ino: u64, flags: i32) -> FsResult<Opened> {
        let reads_only = flags & libc::O_ACCMODE == libc::O_RDONLY && flags & libc::O_TRUNC == 0;
        if !reads_only {
            self.writable()?;
        }
        // Asynchronous mode: what was queued lands before a file is opened.
        self.settle().await?;
        let path = self.path_of(ino)?;
        if reads_only && !self.opts.direct_io {
            self.read_ahead_files(&path);
            if let Some(f) = self.take_prefetched(&path).await {
                return Ok(self.adopt(ino, f, flags));
            }
        }
        let r = self.remote(&path);
        // The LSTAT below must see every write made through other descriptors.
        self.drain_inode(ino).await;
        let writes_in = flags & libc::O_ACCMODE != libc::O_RDONLY && flags & libc::O_TRUNC == 0;
        if writes_in && self.write_open_would_empty(&path).await {
            // After the drain, from the server: what this open would destroy.
            let size = self.lstat_remote(&path).await.ok().and_then(|a| a.size);
            if size != Some(0) {
                return Err(FsError::new(libc::EOPNOTSUPP));
            }
        }
        let generation = self.cache.generation(super::names::inode::parent_of(&path));
        // A truncation is a change the other handles' answers may predate.
        let _truncating =
            (flags & libc::O_TRUNC != 0).then(|| InodeTable::begin_attr_change(&self.inodes, ino));
        // Where the file's changes stood when the LSTAT was asked: a write answered while it
        // travelled (another descriptor's, on another connection) may not be in its answer.
        let (mark, written) = {
            let t = self.inodes.lock().unwrap();
            (t.attr_mark(ino), t.written(ino))
        };
        if flags & libc::O_TRUNC != 0 {
            self.size_changing(ino, 0);
        }
        // Never create on open: the kernel sends `create` for that.
        let p = pflags(flags & !(libc::O_CREAT | libc::O_EXCL));
        // OPEN and LSTAT travel together: one round trip for the handle and the attributes.
        let r_ = &r;
        let opened = self
            .open_on_pool(|c| async move {
                let (h, st) = join(
                    c.sftp.open(r_, p, &Attrs::default()),
                    self.attrs_at(&c.sftp, r_),
                )
                .await;
                (c, h, st)
            })
            .await;
        let h = match opened {
            Ok((conn, Ok(h), st)) => Ok((conn, h, st)),
            Ok((_, Err(e), _)) => Err(self.explain_open_failure(e, &path).await),
            Err(e) => Err(e.into()),
        };
        let (conn, h, st) = match h {
            Ok(opened) => opened,
            Err(e) => {
                if flags & libc::O_TRUNC != 0 {
                    self.size_unknown(ino);
                }
                return Err(e);
            }
        };
        let st = st.ok();
        let a = st.clone().unwrap_or_default();
        if flags & libc::O_TRUNC != 0 {
            self.truncated_by_open(ino, st.as_ref(), mark, generation);
        } else if let Some(a) = &st {
            // Read after the drain, and current if no write came meanwhile: then the
            // server's size is the file's again, also for an O_APPEND write (the file may
            // have grown on the server since).
            self.server_caught_up(ino, Some((a, None)), mark, false, |c, p| {
                c.generation(super::names::inode::parent_of(p)) == generation
            });
        }
        let version = Version::of(&a);
        let keep_cache = {
            let mut t = self.inodes.lock().unwrap();
            let current = t.quiet_since(ino, mark);
            let ours = t.pages_still_hold(ino, written, a.size);
            if current {
                t.pages_checked(ino);
            }
            match t.get_mut(ino) {
                Some(n) => {
                    // An answer a write may have overtaken proves nothing about the pages;
                    // this mount's own writes are in them already.
                    let same = (current && n.version == Some(version) || ours)
                        && flags & libc::O_TRUNC == 0;
                    n.version = Some(version);
                    same
                }
                None => false,
            }
        };
        Ok(Opened {
            fh: self.register(ino, conn, h, flags, &a),
            keep_cache,
        })
    }

    /// Opens with a file read ahead across files (`read/file_ahead.rs`): its handle becomes the
    /// open file's, its data the start of its read-ahead.
    fn adopt(&self, ino: u64, f: Arc<super::read::file_ahead::Fetched>, flags: i32) -> Opened {
        let version = Version::of(&f.attrs);
        let keep_cache = {
            let mut t = self.inodes.lock().unwrap();
            match t.get_mut(ino) {
                Some(n) => {
                    let same = n.version == Some(version);
                    n.version = Some(version);
                    same
                }
                None => false,
            }
        };
        let fh = self.register(ino, f.conn.clone(), f.handle.clone(), flags, &f.attrs);
        if let Some(of) = self.files.get(fh) {
            let mark = self.inodes.lock().unwrap().attr_mark(ino);
            let mut ra = of.readahead.lock().unwrap();
            ra.seed(f.chunk, &f.pieces, &self.readahead_bytes);
            ra.mark = mark;
        }
        Opened { fh, keep_cache }
    }

    /// An OPEN with `O_TRUNC` emptied the file after every earlier write of it landed
    /// (drained before the OPEN went out): like a truncate, it ends the size those writes
    /// implied and what read-ahead holds. `st` is the LSTAT sent after the OPEN.
    fn truncated_by_open(
        &self,
        ino: u64,
        st: Option<&Attrs>,
        mark: super::names::inode::AttrMark,
        generation: u64,
    ) {
        self.drop_readahead(ino);
        match st {
            Some(a) => self.exact_after_writes(ino, a, mark, |c, p| {
                c.generation(super::names::inode::parent_of(p)) == generation
            }),
            None => {
                if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
                    n.local_size = n.local_size.map(|_| 0);
                }
            }
        }
    }

    /// Runs an OPEN (with its LSTAT) on a pooled session, once more on a new connection
    /// when the connection died under it.
    async fn open_on_pool<F, Fut>(
        &self,
        op: F,
    ) -> Result<
        (
            Arc<Conn>,
            Result<Handle, RemoteError>,
            Result<Attrs, RemoteError>,
        ),
        RemoteError,
    >
    where
        F: Fn(Arc<Conn>) -> Fut,
        Fut: Future<
            Output = (
                Arc<Conn>,
                Result<Handle, RemoteError>,
                Result<Attrs, RemoteError>,
            ),
        >,
    {
        self.settle().await?;
        let c = self.pool.any().await?;
        let (c, h, st) = op(c).await;
        match h {
            Err(e) if e.is_dead() => {
                let c = self.pool.get_or_live(c.slot).await?;
                Ok(op(c).await)
            }
            h => Ok((c, h, st)),
        }
    }

    async fn explain_open_failure(&self, e: RemoteError, rel: &[u8]) -> FsError {
        if e.is_failure() {
            if let Some(a) = self.exists(rel).await {
                return FsError::new(if a.is_dir() {
                    libc::EISDIR
                } else {
                    libc::EEXIST
                });
            }
        }
        e.into()
    }

    pub async fn create(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> FsResult<(FileAttr, u64)> {
        self.writable()?;
        let path = self.new_child_path(parent, name)?;
        if let Some(r) = self.async_create(&path, mode, umask, flags).await {
            return r;
        }
        let r = self.remote(&path);
        let want = mode & !umask & 0o7777;
        // workaround=createmode: no mode in the OPEN (servers that refuse one); the fix-up
        // below sets it.
        let a = Attrs {
            permissions: (!self.opts.workarounds.create_mode).then_some(want),
            ..Attrs::default()
        };
        let (r_, a_) = (&r, &a);
        // Repeated on a new connection if this one died under it (with O_EXCL the repeat may
        // then say EEXIST for our own file: the safe side for lock files).
        let (conn, h, st) = self
            .open_on_pool(|c| async move {
                let (h, st) = join(
                    c.sftp.open(r_, pflags(flags | libc::O_CREAT), a_),
                    self.attrs_at(&c.sftp, r_),
                )
                .await;
                (c, h, st)
            })
            .await?;
        let h = match h {
            Ok(h) => h,
            Err(e) => return Err(self.explain_open_failure(e, &path).await),
        };
        let mut got = match st {
            Ok(a) => a,
            Err(e) => {
                let _ = conn.sftp.close(&h).await;
                return Err(e.into());
            }
        };
        let have = got.permissions.unwrap_or(0);
        if have & 0o7777 != want {
            // The server's umask took bits away that the caller asked for.
            let fix = Attrs {
                permissions: Some(want),
                ..Attrs::default()
            };
            if conn.sftp.fsetstat(&h, &fix).await.is_ok() {
                got.permissions = Some((have & libc::S_IFMT) | want);
            }
        }
        if let (Some(j), Some(o)) = (&self.journal, got.uid_gid) {
            j.learn_owner(o);
        }
        self.cache.put_new(&path, &got, None);
        let attr = self.entry(&path, &got, None);
        if let Some(n) = self.inodes.lock().unwrap().get_mut(attr.ino.0) {
            n.version = Some(Version::of(&got));
        }
        let fh = self.register(attr.ino.0, conn, h, flags, &got);
        if flags & libc::O_EXCL != 0 {
            if let Some(f) = self.files.get(fh) {
                f.made_here.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Ok((attr, fh))
    }

    /// Runs a request on the file's handle; if the connection died, re-opens the file on a
    /// new one and runs it once more.
    pub(super) async fn with_file<T, F, Fut>(
        &self,
        f: &Arc<OpenFile>,
        op: F,
    ) -> Result<T, RemoteError>
    where
        F: Fn(Arc<Conn>, Handle) -> Fut,
        Fut: Future<Output = Result<T, RemoteError>>,
    {
        let (c, h) = f.current();
        match op(c.clone(), h).await {
            Err(e) if e.is_dead() => {
                self.recover(f, &c).await?;
                let (c, h) = f.current();
                op(c, h).await
            }
            r => r,
        }
    }

    /// Makes sure `f` lives on a live connection, re-opening it if its connection died:
    /// for requests that do not go through [`Self::with_file`].
    pub(super) async fn ensure_live(&self, f: &Arc<OpenFile>) -> Result<(), RemoteError> {
        let (c, _) = f.current();
        if c.is_alive() {
            return Ok(());
        }
        self.recover(f, &c).await
    }

    /// Re-opens `f` by path on a new connection after `failed` died, and replays its
    /// unacknowledged writes in order before anything else may use the new handle.
    pub(super) async fn recover(
        &self,
        f: &Arc<OpenFile>,
        failed: &Arc<Conn>,
    ) -> Result<(), RemoteError> {
        let arrived = tokio::time::Instant::now();
        let _g = f.recovering.lock().await;
        let (cur, _) = f.current();
        if !Arc::ptr_eq(&cur, failed) && cur.is_alive() {
            return Ok(());
        }
        if f.recover_failed_at
            .lock()
            .unwrap()
            .is_some_and(|t| t > arrived)
        {
            // It was just tried, and failed, while we waited: do not wait a second deadline.
            return Err(RemoteError::ConnectionLost);
        }
        let res = self.reopen(f).await;
        if res.is_err() {
            *f.recover_failed_at.lock().unwrap() = Some(tokio::time::Instant::now());
        }
        if let Err(e) = &res {
            tracing::warn!("could not re-open a file after reconnecting: {e}");
            // What cannot be replayed is an error on this file, never silent loss.
            if !f.pending().is_empty() || f.writable {
                self.inodes.lock().unwrap().note_write_failed(f.ino);
                f.latch(libc::EIO);
            }
            for (seq, _) in f.pending() {
                f.ack(seq);
            }
        }
        res
    }

    async fn reopen(&self, f: &Arc<OpenFile>) -> Result<(), RemoteError> {
        let conn = self.pool.get_or_live(f.slot()).await?;
        // A rename finishing between reading the path and the OPEN would make it fail, and
        // the writes to replay would be lost.
        let _no_renames = self.path_changes.write().await;
        let path =
            self.inodes.lock().unwrap().path(f.ino).ok_or_else(|| {
                RemoteError::Protocol("file was removed while disconnected".into())
            })?;
        let h = conn
            .sftp
            .open(&self.remote(&path), f.reopen_flags, &Attrs::default())
            .await?;
        let replay = {
            // Under the file's lock, as `write` queues under it: no newer write can reach the
            // new handle before the replayed ones.
            let _order = f.order.lock().unwrap();
            let replay: Vec<_> = f
                .pending()
                .into_iter()
                .map(|(seq, op)| (seq, send_queued(&conn, &h, &op)))
                .collect();
            f.set_current(conn.clone(), h);
            replay
        };
        tracing::info!("re-opened a file, replaying {} writes", replay.len());
        for (seq, sent) in replay {
            self.await_write(f, conn.clone(), seq, sent);
        }
        Ok(())
    }

    /// close(2) of one descriptor: waits for the file's writes (close-to-open consistency)
    /// and reports a write failure not yet reported by fsync. It stays latched: every
    /// descriptor of the open file closes with it, and a later fsync reports it too. The
    /// kernel sends a flush for every close of a shared descriptor, also the one a forked
    /// child makes at exec (O_CLOEXEC): taking the error there would hide it from the
    /// program that wrote.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        if Self::is_async_fh(fh) {
            return self.async_flush(fh);
        }
        let f = self.file(fh)?;
        f.drain().await;
        if f.peek_error().is_none() {
            if let Some(e) = self.verify_written(&f).await {
                f.latch(e);
            }
        }
        match f.report_error() {
            Some(e) => Err(FsError::new(e)),
            None => Ok(()),
        }
    }

    pub async fn fsync(self: &Arc<Self>, fh: u64) -> FsResult<()> {
        // Asynchronous mode: everything queued before it, and its failures.
        self.async_fsync(Some(fh)).await?;
        if Self::is_async_fh(fh) {
            return Ok(());
        }
        let f = self.file(fh)?;
        // The file's data, whichever descriptor wrote it (this one too), as on a local disk.
        self.settle().await?;
        self.drain_inode(f.ino).await;
        if let Some(e) = f.take_error() {
            return Err(FsError::new(e));
        }
        if !f.writable {
            return Ok(());
        }
        if let Some(e) = self.verify_written(&f).await {
            return Err(FsError::new(e));
        }
        match self
            .with_file(&f, |c, h| async move { c.sftp.fsync(&h).await })
            .await
        {
            // Nothing more we can ask of a server without the extension.
            Ok(()) | Err(RemoteError::Unsupported(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The last close of an open file: its writes land, the remote handle goes, and with
    /// it, for an unlinked file, the node.
    pub async fn release(self: &Arc<Self>, fh: u64) -> FsResult<()> {
        if Self::is_async_fh(fh) {
            return self.async_release(fh).await;
        }
        let Some(f) = self.files.get(fh) else {
            return Err(FsError::new(libc::EBADF));
        };
        f.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        split::drop_second(&f);
        f.drain().await;
        let (generation, mark) = {
            let t = self.inodes.lock().unwrap();
            let generation = match t.path(f.ino) {
                Some(p) => self.cache.generation(super::names::inode::parent_of(&p)),
                None => 0,
            };
            (generation, t.attr_mark(f.ino))
        };
        let (c, h) = f.current();
        // With another descriptor writing the file, this handle's last word on its size is
        // not the file's: leave the caches to that one.
        let others_writing = !self
            .files
            .all(|x| x.ino == f.ino && x.writable && !std::ptr::eq(x, &*f))
            .is_empty();
        let closed = if f.writable && !others_writing {
            // Learn the final size and time, for the caches and the next open's keep_cache.
            let (st, cl) = join(c.sftp.fstat(&h), c.sftp.close(&h)).await;
            if let Ok(a) = st {
                let mut t = self.inodes.lock().unwrap();
                if let Some(n) = t.get_mut(f.ino) {
                    n.version = Some(Version::of(&a));
                }
                drop(t);
                // Another connection may have changed it since (a chmod right after close,
                // an open with O_TRUNC, as the kernel sends RELEASE after close returns):
                // the cache keeps the newer word.
                self.server_caught_up(f.ino, Some((&a, None)), mark, false, |c, p| {
                    c.generation(super::names::inode::parent_of(p)) == generation
                });
            }
            cl
        } else {
            c.sftp.close(&h).await
        };
        self.files.remove(fh);
        if f.writable {
            self.writer_closed(f.ino);
        }
        self.inodes.lock().unwrap().release(f.ino);
        if let Some(e) = f.take_unreported_error() {
            return Err(FsError::new(e));
        }
        match closed {
            // The handle died with its connection: nothing is left open on the server.
            Err(e) if e.is_dead() => Ok(()),
            other => other.map_err(FsError::from),
        }
    }
}
