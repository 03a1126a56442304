//! Open files: open/create, read (with read-ahead), write (write-behind), flush, fsync,
//! release, copy_file_range, and re-opening a file on a new connection after a reconnect.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fuser::FileAttr;
use futures::future::{join, join_all};
use futures::FutureExt;

use super::handle::{OpenFile, Queued};
use super::inode::InodeTable;
use super::readahead::{ChunkFuture, Window};
use super::split;
use super::{pflags, Filesystem, FsError, FsResult};
use crate::remote::{Attrs, Conn, Handle, RemoteError};

/// `write_flags` bit of a write from the page cache (writeback, mmap), not from `write(2)`.
pub const FUSE_WRITE_CACHE: u32 = 1;

/// What `open` hands the kernel.
#[derive(Debug)]
pub struct Opened {
    pub fh: u64,
    /// The file did not change since the kernel last cached it: keep its pages.
    pub keep_cache: bool,
}

impl Filesystem {
    fn file(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        self.files.get(fh).ok_or(FsError::new(libc::EBADF))
    }

    fn register(&self, ino: u64, conn: Arc<Conn>, h: Handle, flags: i32, a: &Attrs) -> u64 {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let reopen = pflags(flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC));
        self.inodes.lock().unwrap().open(ino);
        let f = OpenFile::new(ino, conn, h, reopen, writable);
        f.readahead.lock().unwrap().size_hint = a.size;
        self.files.insert(f)
    }

    pub async fn open(self: &Arc<Self>, ino: u64, flags: i32) -> FsResult<Opened> {
        let reads_only = flags & libc::O_ACCMODE == libc::O_RDONLY && flags & libc::O_TRUNC == 0;
        if !reads_only {
            self.writable()?;
        }
        // Asynchronous mode: what was queued lands before a file is opened.
        self.settle().await;
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
        let generation = self.cache.generation(super::inode::parent_of(&path));
        // A truncation is a change the other handles' answers may predate.
        let _truncating =
            (flags & libc::O_TRUNC != 0).then(|| InodeTable::begin_attr_change(&self.inodes, ino));
        // Never create on open: the kernel sends `create` for that.
        let p = pflags(flags & !(libc::O_CREAT | libc::O_EXCL));
        // OPEN and LSTAT travel together: one round trip for the handle and the attributes.
        let r_ = &r;
        let (conn, h, st) = self
            .open_on_pool(|c| async move {
                let (h, st) = join(
                    c.sftp.open(r_, p, &Attrs::default()),
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
        let st = st.ok();
        let a = st.clone().unwrap_or_default();
        if flags & libc::O_TRUNC != 0 {
            self.truncated_by_open(ino, st.as_ref(), generation);
        } else if let Some(a) = &st {
            // Read after the drain: the server's size is the file's again, and a size that
            // landed writes implied must not outlive it (an O_APPEND write is placed at the
            // end this mount knows, and the file may have grown on the server since).
            self.server_caught_up(ino, Some((a, None)), |c, p| {
                c.generation(super::inode::parent_of(p)) == generation
            });
        }
        let version = (a.size, a.atime_mtime.map(|t| t.1));
        let keep_cache = {
            let mut t = self.inodes.lock().unwrap();
            match t.get_mut(ino) {
                Some(n) => {
                    let same = n.version == Some(version) && flags & libc::O_TRUNC == 0;
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

    /// Opens with a file read ahead across files (`file_ahead.rs`): its handle becomes the
    /// open file's, its data the start of its read-ahead.
    fn adopt(&self, ino: u64, f: Arc<super::file_ahead::Fetched>, flags: i32) -> Opened {
        let version = (f.attrs.size, f.attrs.atime_mtime.map(|t| t.1));
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
            of.readahead
                .lock()
                .unwrap()
                .seed(f.chunk, &f.pieces, &self.readahead_bytes);
        }
        Opened { fh, keep_cache }
    }

    /// An OPEN with `O_TRUNC` emptied the file after every earlier write of it landed
    /// (drained before the OPEN went out): like a truncate, it ends the size those writes
    /// implied and what read-ahead holds. `st` is the LSTAT sent after the OPEN.
    fn truncated_by_open(&self, ino: u64, st: Option<&Attrs>, generation: u64) {
        self.drop_readahead(ino);
        match st {
            Some(a) => self.exact_after_writes(ino, a, |c, p| {
                c.generation(super::inode::parent_of(p)) == generation
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
        self.settle().await;
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
            n.version = Some((got.size, got.atime_mtime.map(|t| t.1)));
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
    async fn ensure_live(&self, f: &Arc<OpenFile>) -> Result<(), RemoteError> {
        let (c, _) = f.current();
        if c.is_alive() {
            return Ok(());
        }
        self.recover(f, &c).await
    }

    /// Re-opens `f` by path on a new connection after `failed` died, and replays its
    /// unacknowledged writes in order before anything else may use the new handle.
    async fn recover(&self, f: &Arc<OpenFile>, failed: &Arc<Conn>) -> Result<(), RemoteError> {
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

    /// Reads up to `size` bytes at `offset`; fewer only at end of file.
    pub async fn read(self: &Arc<Self>, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        if Self::is_async_fh(fh) {
            return self.async_read(fh, offset, size).await;
        }
        let f = self.file(fh)?;
        // A read sees every write made before it.
        self.drain_inode(f.ino).await;
        let (c, _) = f.current();
        let w = Window {
            chunk: c.sftp.limits().max_read,
            max: self.opts.readahead_max as u64,
            total: self.readahead_bytes.clone(),
            total_max: self.opts.readahead_total,
        };
        // direct_io: every read asks the server (its chunks pipelined), never the window.
        let plan = if self.opts.direct_io {
            None
        } else {
            let mut ra = f.readahead.lock().unwrap();
            ra.plan(offset, size, &w, |o, l| self.fetch(&f, o, l))
        };
        tracing::trace!(offset, size, planned = plan.is_some(), "read");
        let Some(chunks) = plan else {
            return Ok(self.read_direct(&f, offset, size).await?);
        };
        self.maybe_split(&f, offset);
        let end = offset + size as u64;
        let eof = f.readahead.lock().unwrap().size_hint;
        if let [p] = &chunks[..] {
            // Within one chunk: a slice of it, no copy.
            if let Ok(data) = p.data.clone().await {
                let from = (offset - p.offset) as usize;
                if from + size as usize <= data.len()
                    || eof.is_some_and(|s| p.offset + data.len() as u64 >= s)
                {
                    let to = (from + size as usize).min(data.len());
                    return Ok(data.slice(from.min(to)..to));
                }
            }
        }
        // All the data first, then one buffer for the answer: no buffer waits on the network.
        let mut parts = Vec::with_capacity(chunks.len());
        for p in &chunks {
            match p.data.clone().await {
                Ok(d) => {
                    let short = (d.len() as u64) < w.chunk as u64;
                    parts.push((p.offset, d));
                    if short {
                        break;
                    }
                }
                Err(e) => {
                    f.readahead.lock().unwrap().clear();
                    // The chunk already waited out the connection: report, do not wait again.
                    if e.is_connection() {
                        return Err(e.into());
                    }
                    return Ok(self.read_direct(&f, offset, size).await?);
                }
            }
        }
        let mut out = BytesMut::with_capacity(size as usize);
        for (o, data) in parts {
            let from = (offset.max(o) - o) as usize;
            let to = (end.min(o + data.len() as u64)).saturating_sub(o) as usize;
            if from < to {
                out.extend_from_slice(&data[from..to]);
            }
            if (data.len() as u64) < w.chunk as u64 {
                // A short chunk: the end of the file, unless the size we knew says otherwise.
                let pos = offset + out.len() as u64;
                if pos < end && eof.is_some_and(|s| pos < s) {
                    out.extend_from_slice(&self.read_direct(&f, pos, (end - pos) as u32).await?);
                }
                break;
            }
        }
        Ok(out.freeze())
    }

    fn fetch(self: &Arc<Self>, f: &Arc<OpenFile>, off: u64, len: u32) -> ChunkFuture {
        let (fs, f) = (self.clone(), f.clone());
        let second = split::second_for(&f, off, len);
        let mut task = async move {
            if let Some((c, h)) = second {
                match c.sftp.read(&h, off, len).await {
                    Ok(data) => {
                        f.second_chunks
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Ok(data);
                    }
                    Err(e) => {
                        tracing::debug!("second handle failed ({e}): back to one");
                        split::drop_second(&f);
                    }
                }
            }
            fs.with_file(&f, |c, h| async move { c.sftp.read(&h, off, len).await })
                .await
        }
        .boxed();
        // The READ goes out now, in the order the window asks for its chunks; a spawned task
        // may run after one spawned later, and servers that read a file as a stream (rclone's
        // VFS) pay for every jump back. The task then drives it with a real waker.
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        if let std::task::Poll::Ready(r) = task.poll_unpin(&mut cx) {
            return futures::future::ready(r).boxed().shared();
        }
        let task = tokio::spawn(task);
        async move { task.await.unwrap_or(Err(RemoteError::ConnectionLost)) }
            .boxed()
            .shared()
    }

    /// Many READs in flight at once for one range.
    async fn read_direct(
        &self,
        f: &Arc<OpenFile>,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, RemoteError> {
        let (c, _) = f.current();
        let max = c.sftp.limits().max_read as u64;
        let end = offset + size as u64;
        let chunks: Vec<(u64, u32)> = (offset..end)
            .step_by(max as usize)
            .map(|o| (o, (end - o).min(max) as u32))
            .collect();
        let read = |o: u64, n: u32| {
            self.with_file(f, move |c, h| async move { c.sftp.read(&h, o, n).await })
        };
        let replies = join_all(chunks.iter().map(|&(o, n)| read(o, n))).await;
        let mut out = BytesMut::with_capacity(size as usize);
        for (&(o, n), r) in chunks.iter().zip(replies) {
            let data = r?;
            out.extend_from_slice(&data);
            if data.len() < n as usize {
                // A short read: finish this range one request at a time (EOF ends it).
                let mut pos = o + data.len() as u64;
                while pos < end {
                    let more = read(pos, (end - pos).min(max) as u32).await?;
                    if more.is_empty() {
                        break;
                    }
                    pos += more.len() as u64;
                    out.extend_from_slice(&more);
                }
                break;
            }
        }
        Ok(out.freeze())
    }

    /// Queues `data` at `offset` and answers at once (write-behind). Bytes in flight are
    /// bounded; a failure is latched and reported by the next write, flush, fsync or close.
    /// `flags` (the descriptor's open flags) and `write_flags` are the kernel's: a
    /// `write(2)` through an `O_APPEND` descriptor goes at the file's end as this mount
    /// knows it, whatever `offset` says.
    pub async fn write(
        self: &Arc<Self>,
        fh: u64,
        offset: u64,
        data: Vec<u8>,
        flags: i32,
        write_flags: u32,
    ) -> FsResult<u32> {
        if Self::is_async_fh(fh) {
            let appends = flags & libc::O_APPEND != 0 && write_flags & FUSE_WRITE_CACHE == 0;
            return self.async_write(fh, offset, data, appends).await;
        }
        let f = self.file(fh)?;
        // The kernel's writeback of (mmap) pages may borrow an O_APPEND handle: those stay at
        // their offset.
        let appends = flags & libc::O_APPEND != 0 && write_flags & FUSE_WRITE_CACHE == 0;
        // A file whose connection died is re-opened before this write is answered: one that
        // cannot be (unlinked on the server meanwhile) then fails this request whole. Answered
        // first, it would fail only the next one, and the kernel, which splits a write(2) at
        // the first page boundary, would report a short write of bytes that never landed.
        let revived = self.ensure_live(&f).await;
        if let Some(e) = f.peek_error() {
            return Err(FsError::new(e));
        }
        revived?;
        // Another descriptor's writes travel in their own queue, maybe on another
        // connection: they land first, so that the later write wins, as on a local disk.
        for other in self
            .files
            .all(|x| x.ino == f.ino && !std::ptr::eq(x, &*f) && x.has_pending())
        {
            other.drain().await;
        }
        self.drop_readahead(f.ino);
        let path = self.inodes.lock().unwrap().path(f.ino);
        let mut known = path
            .as_ref()
            .and_then(|p| self.cache.attrs_known(p))
            .and_then(|e| e.attrs.size);
        let size_unknown = || {
            let t = self.inodes.lock().unwrap();
            t.get(f.ino).is_some_and(|n| n.local_size.is_none())
        };
        if known.is_none() && size_unknown() {
            // The size this write extends must be the file's, not 0: ask the handle (every
            // earlier write landed, or the size would be known here).
            known = self
                .with_file(&f, |c, h| async move { c.sftp.fstat(&h).await })
                .await
                .ok()
                .and_then(|a| a.size);
        }
        if let Some(p) = &path {
            self.cache.mark_written(p);
        }
        let offset = match self.inodes.lock().unwrap().get_mut(f.ino) {
            Some(n) => {
                // The kernel offers its own idea of the size, which open does not refresh (a
                // file grown on the server stays short). The end the queued writes imply
                // comes first, else the server's (the open's LSTAT, the cache or FSTAT); the
                // server's own end (SSH_FXF_APPEND) would miss writes still travelling.
                let size = n.local_size.or(known);
                let offset = match size {
                    Some(end) if appends => end,
                    _ => offset,
                };
                let end = offset + data.len() as u64;
                n.local_size = Some(size.unwrap_or(0).max(end));
                offset
            }
            None => offset,
        };
        let len = data.len();
        let data = Bytes::from(data);
        let max = f.current().0.sftp.limits().max_write as usize;
        let budget_max = self.opts.write_behind_bytes;
        for (i, chunk) in data.chunks(max).enumerate() {
            let n = chunk.len().min(budget_max) as u32;
            let permit = self
                .write_budget
                .clone()
                .acquire_many_owned(n)
                .await
                .map_err(|_| FsError::new(libc::EIO))?;
            let off = offset + (i * max) as u64;
            let bytes = data.slice(i * max..i * max + chunk.len());
            self.queue(&f, Queued::Write(off, bytes), Some(permit));
        }
        if self.opts.sync_writes {
            // sshfs_sync: answered once the server has it, with its error, reported here
            // once (not again at close).
            f.drain().await;
            if let Some(e) = f.take_error() {
                return Err(FsError::new(e));
            }
        }
        Ok(len as u32)
    }

    /// Queues a request behind the file's writes (write-behind), answered by the server
    /// later: its failure is latched like a write's, a reconnect replays it. `budget` is a
    /// write's share of the bytes in flight, held until the server acknowledges it.
    pub(super) fn queue(
        &self,
        f: &Arc<OpenFile>,
        op: Queued,
        budget: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let (seq, conn, sent) = {
            let _order = f.order.lock().unwrap();
            let (conn, h) = f.current();
            let sent = send_queued(&conn, &h, &op);
            (f.push(op, budget), conn, sent)
        };
        self.await_write(f, conn, seq, sent);
    }

    /// Waits for one queued write in the background: acknowledged → done; connection died →
    /// re-open and replay; refused → latched.
    fn await_write(
        &self,
        f: &Arc<OpenFile>,
        conn: Arc<Conn>,
        seq: u64,
        sent: impl Future<Output = Result<(), RemoteError>> + Send + 'static,
    ) {
        let Some(fs) = self.me.upgrade() else { return };
        let f = f.clone();
        tokio::spawn(async move {
            match sent.await {
                Ok(()) => f.ack(seq),
                Err(e) if e.is_dead() => {
                    // The replay in `recover` sends this write again.
                    let _ = fs.recover(&f, &conn).await;
                }
                Err(e) if f.is_attribute_change(seq) => {
                    // The data is safe: a mode or time change must not fail close. What the
                    // cache was told it would be is not what the file has.
                    tracing::warn!("a mode or time change queued behind writes failed: {e}");
                    let path = fs.inodes.lock().unwrap().path(f.ino);
                    if let Some(p) = path {
                        fs.cache.invalidate(&p);
                    }
                    let refusal =
                        matches!(e.errno(), libc::EACCES | libc::EPERM | libc::EOPNOTSUPP);
                    if let Some(p) = fs.pool.profile().filter(|_| refusal) {
                        p.note_setstat_refused();
                    }
                    f.ack(seq);
                }
                Err(e) => {
                    let err = fs.explain_write_failure(e).await;
                    tracing::warn!("write failed: {err}");
                    f.latch(err.errno);
                    f.ack(seq);
                }
            }
        });
    }

    /// OpenSSH reports a full disk as a generic failure.
    async fn explain_write_failure(&self, e: RemoteError) -> FsError {
        if e.is_failure() {
            let root = &self.root;
            if let Ok(v) = self
                .call(|c| async move { c.sftp.statvfs(root).await })
                .await
            {
                if v.bavail == 0 {
                    return FsError::new(libc::ENOSPC);
                }
            }
        }
        e.into()
    }

    /// Waits for every write in flight on any open file of `ino`.
    pub(super) async fn drain_inode(&self, ino: u64) {
        for f in self.files.all(|f| f.ino == ino && f.has_pending()) {
            f.drain().await;
        }
    }

    pub(super) fn drop_readahead(&self, ino: u64) {
        for f in self.files.all(|f| f.ino == ino) {
            f.readahead.lock().unwrap().clear();
        }
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
        self.drain_inode(f.ino).await;
        if let Some(e) = f.take_error() {
            return Err(FsError::new(e));
        }
        if !f.writable {
            return Ok(());
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
                Some(p) => self.cache.generation(super::inode::parent_of(&p)),
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
                    n.version = Some((a.size, a.atime_mtime.map(|t| t.1)));
                }
                drop(t);
                // Another connection may have changed it since (a chmod right after close,
                // an open with O_TRUNC, as the kernel sends RELEASE after close returns):
                // the cache keeps the newer word.
                self.server_caught_up(f.ino, Some((&a, None)), |c, p| {
                    c.generation(super::inode::parent_of(p)) == generation
                        && self.inodes.lock().unwrap().quiet_since(f.ino, mark)
                });
            }
            cl
        } else {
            c.sftp.close(&h).await
        };
        self.files.remove(fh);
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

    /// Server-side copy (`copy-data`): no file data crosses the network. What the server
    /// cannot copy (no extension; source and destination one file, which OpenSSH refuses;
    /// any other refusal) is EOPNOTSUPP, on which the kernel copies through read and write
    /// for this call alone (ENOSYS would turn server-side copies off for the whole mount).
    pub async fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> FsResult<u64> {
        if Self::is_async_fh(fh_in) || Self::is_async_fh(fh_out) {
            // The kernel copies through read and write instead.
            return Err(FsError::new(libc::EOPNOTSUPP));
        }
        let (fi, fo) = (self.file(fh_in)?, self.file(fh_out)?);
        if fi.ino == fo.ino {
            return Err(FsError::new(libc::EOPNOTSUPP));
        }
        self.drain_inode(fi.ino).await;
        fo.drain().await;
        let copied = match self.copy_once(&fi, off_in, &fo, off_out, len).await {
            // A handle died with its connection: both files on live ones, and once more.
            Err(e) if e.is_dead() => {
                self.ensure_live(&fi).await?;
                self.ensure_live(&fo).await?;
                self.copy_once(&fi, off_in, &fo, off_out, len).await
            }
            r => r,
        };
        let n = match copied {
            Err(e) if e.is_failure() || matches!(e, RemoteError::Unsupported(_)) => {
                return Err(FsError::new(libc::EOPNOTSUPP))
            }
            r => r?,
        };
        if n == 0 {
            return Ok(0);
        }
        self.drop_readahead(fo.ino);
        // Its writes were drained first: the size they implied is the server's to say now.
        self.server_caught_up(fo.ino, None, |_, _| false);
        // The inode table's lock is let go first: the cache's change lock comes before it.
        let path = self.inodes.lock().unwrap().path(fo.ino);
        if let Some(p) = path {
            self.cache.invalidate(&p);
        }
        Ok(n)
    }

    /// One `copy-data` of up to `len` bytes on the files' current handles; how many it copied.
    async fn copy_once(
        &self,
        fi: &OpenFile,
        off_in: u64,
        fo: &OpenFile,
        off_out: u64,
        len: u64,
    ) -> Result<u64, RemoteError> {
        let (cin, hin) = fi.current();
        let (cout, hout) = fo.current();
        if !cout.sftp.profile().has(crate::remote::Ext::CopyData) {
            return Err(RemoteError::Unsupported("copy-data"));
        }
        // How much there is to copy: copy-data does not say.
        let size = cin.sftp.fstat(&hin).await?.size.unwrap_or(0);
        let n = len.min(size.saturating_sub(off_in));
        if n == 0 {
            return Ok(0);
        }
        // Both handles must live in one session: the source is opened again on the
        // destination's, by its path (an unlinked source has none: the kernel copies).
        let (src, temp) = if Arc::ptr_eq(&cin, &cout) {
            (hin, None)
        } else {
            // An unlinked source cannot be opened again here: the kernel copies it instead.
            let path = self
                .path_of(fi.ino)
                .map_err(|_| RemoteError::Unsupported("copy-data from an unlinked file"))?;
            let p = crate::remote::protocol::SSH_FXF_READ;
            let h = match cout
                .sftp
                .open(&self.remote(&path), p, &Attrs::default())
                .await
            {
                Err(e) if !e.is_dead() => return Err(RemoteError::Unsupported("copy-data source")),
                h => h?,
            };
            (h.clone(), Some(h))
        };
        let res = cout.sftp.copy_data(&src, off_in, n, &hout, off_out).await;
        if let Some(h) = temp {
            let _ = cout.sftp.close(&h).await;
        }
        res.map(|()| n)
    }
}

/// Sends a queued request on `h`; the returned future waits for its answer.
fn send_queued(
    conn: &Conn,
    h: &Handle,
    op: &Queued,
) -> impl Future<Output = Result<(), RemoteError>> + Send + 'static {
    match op {
        Queued::Write(off, data) => conn.sftp.write_send(h, *off, data).boxed(),
        Queued::SetStat(a) => conn.sftp.fsetstat_send(h, a).boxed(),
    }
}
