//! Write-behind: a write is answered once its WRITE is queued, the server's answer is
//! awaited in the background, bytes in flight are bounded, and a failure is latched for the
//! next write, flush, fsync or close.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;

use crate::fs::handle::{OpenFile, Queued};
use crate::fs::names::inode::InodeTable;
use crate::fs::{Filesystem, FsError, FsResult};
use crate::remote::{Conn, Handle, RemoteError};

/// `write_flags` bit of a write from the page cache (writeback, mmap), not from `write(2)`.
pub const FUSE_WRITE_CACHE: u32 = 1;

impl Filesystem {
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
        self.settle().await?;
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
        // Begun before any size is read: an answer asked from now on cannot end the size
        // the writes imply while this one is placed (see `server_caught_up`).
        let _placing = InodeTable::begin_attr_change(&self.inodes, f.ino);
        let path = self.inodes.lock().unwrap().path(f.ino);
        let implied = || {
            let t = self.inodes.lock().unwrap();
            t.get(f.ino).and_then(|n| n.local_size)
        };
        // Without an implied size, no write of this mount is unaccounted for: the server's
        // size (cached) is the file's.
        let (implied, mut known) = match &path {
            Some(p) => self.cache.mark_written_sizing(p, implied),
            None => (implied(), None),
        };
        if implied.is_none() && known.is_none() {
            // The size this write extends must be the file's, not 0: ask the handle.
            known = self
                .with_file(&f, |c, h| async move { c.sftp.fstat(&h).await })
                .await
                .ok()
                .and_then(|a| a.size);
        }
        let offset = {
            let mut t = self.inodes.lock().unwrap();
            match t.get_mut(f.ino) {
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
                    let size = n.local_size;
                    t.note_written(f.ino, size);
                    offset
                }
                None => offset,
            }
        };
        let len = data.len();
        // What was hashed of this file is not the file any more.
        self.integrity.digests.data_changed(f.ino);
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
        // Once queued: a check that counts these bytes waits for them to land.
        self.feed_write_digest(f.ino, offset, &data);
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
    pub(in crate::fs) fn queue(
        &self,
        f: &Arc<OpenFile>,
        op: Queued,
        budget: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        // Begun before it is sent: an answer about the file asked for from here on may
        // predate it (see `server_caught_up`).
        let change = InodeTable::begin_attr_change(&self.inodes, f.ino);
        let (seq, conn, sent) = {
            let _order = f.order.lock().unwrap();
            let (conn, h) = f.current();
            let sent = send_queued(&conn, &h, &op);
            (f.push(op, budget, change), conn, sent)
        };
        self.await_write(f, conn, seq, sent);
    }

    /// Waits for one queued write in the background: acknowledged → done; connection died →
    /// re-open and replay; refused → latched.
    pub(in crate::fs) fn await_write(
        &self,
        f: &Arc<OpenFile>,
        conn: Arc<Conn>,
        seq: u64,
        sent: impl Future<Output = Result<(), RemoteError>> + Send + 'static,
    ) {
        let Some(fs) = self.me.upgrade() else { return };
        let f = f.clone();
        tokio::spawn(async move {
            let r = sent.await;
            if !matches!(&r, Err(e) if e.is_dead()) {
                // Landed (or refused): what a listing said of the file meanwhile is old.
                let path = fs.inodes.lock().unwrap().path(f.ino);
                if let Some(p) = path {
                    fs.cache.write_landed(&p);
                }
            }
            match r {
                Ok(()) => {
                    f.ack(seq);
                    fs.write_landed(&f);
                }
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
                    fs.inodes.lock().unwrap().note_write_failed(f.ino);
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
    pub(in crate::fs) async fn drain_inode(&self, ino: u64) {
        for f in self.files.all(|f| f.ino == ino && f.has_pending()) {
            f.drain().await;
        }
    }
}

/// Sends a queued request on `h`; the returned future waits for its answer.
pub(in crate::fs) fn send_queued(
    conn: &Conn,
    h: &Handle,
    op: &Queued,
) -> impl Future<Output = Result<(), RemoteError>> + Send + 'static {
    match op {
        Queued::Write(off, data) => conn.sftp.write_send(h, *off, data).boxed(),
        Queued::SetStat(a) => conn.sftp.fsetstat_send(h, a).boxed(),
    }
}
