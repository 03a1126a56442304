//! Reading and writing open files: read (with read-ahead), write (write-behind, its
//! answers awaited in the background), and server-side copy_file_range.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use futures::FutureExt;

use super::handle::{OpenFile, Queued};
use super::readahead::{ChunkFuture, Window};
use super::{split, Filesystem, FsError, FsResult};
use crate::remote::{Attrs, Conn, Handle, RemoteError};

/// `write_flags` bit of a write from the page cache (writeback, mmap), not from `write(2)`.
pub const FUSE_WRITE_CACHE: u32 = 1;

impl Filesystem {
    /// Reads up to `size` bytes at `offset`; fewer only at end of file.
    pub async fn read(self: &Arc<Self>, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        if Self::is_async_fh(fh) {
            return self.async_read(fh, offset, size).await;
        }
        let f = self.file(fh)?;
        // A read sees every write made before it.
        self.settle().await;
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
        self.settle().await;
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
    pub(super) fn await_write(
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
        self.settle().await;
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
pub(super) fn send_queued(
    conn: &Conn,
    h: &Handle,
    op: &Queued,
) -> impl Future<Output = Result<(), RemoteError>> + Send + 'static {
    match op {
        Queued::Write(off, data) => conn.sftp.write_send(h, *off, data).boxed(),
        Queued::SetStat(a) => conn.sftp.fsetstat_send(h, a).boxed(),
    }
}
