//! Reading open files: read through the file's read-ahead window (or straight from the
//! server with `direct_io`), the READs that fill the window, and dropping it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use futures::FutureExt;

use crate::fs::handle::OpenFile;
use crate::fs::read::readahead::{ChunkFuture, Window};
use crate::fs::read::split;
use crate::fs::write::arrivals::Arrival;
use crate::fs::{Filesystem, FsResult};
use crate::remote::RemoteError;

impl Filesystem {
    /// A write of `ino` arrives from the kernel: note it, in the order the kernel sent its
    /// requests, until it is queued (the returned note is dropped then).
    pub fn write_arriving(&self, ino: u64) -> Arrival {
        self.arrivals.write(ino)
    }

    /// Where the kernel's requests stand: a read arriving now, for `read_after`.
    pub fn arrived_now(&self) -> u64 {
        self.arrivals.now()
    }

    /// `read`, for a read that arrived at `arrived` (see `arrived_now`): after every write of
    /// its file that arrived before it is queued, so that it sees them.
    pub async fn read_after(
        self: &Arc<Self>,
        arrived: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> FsResult<Bytes> {
        let ino = match self.files.get(fh) {
            Some(f) => Some(f.ino),
            None => self.journal().and_then(|j| j.files.get(fh)).map(|f| f.ino),
        };
        if let Some(ino) = ino {
            self.arrivals.placed_before(ino, arrived).await;
        }
        self.read(fh, offset, size).await
    }

    /// Reads up to `size` bytes at `offset`; fewer only at end of file.
    pub async fn read(self: &Arc<Self>, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        if Self::is_async_fh(fh) {
            return self.async_read(fh, offset, size).await;
        }
        let f = self.file(fh)?;
        // A read sees every write made before it.
        self.settle().await?;
        self.drain_inode(f.ino).await;
        let (c, _) = f.current();
        let w = Window {
            chunk: c.sftp.limits().max_read,
            max: self.opts.readahead_max as u64,
            total: self.readahead_bytes.clone(),
            total_max: self.opts.readahead_total,
        };
        // direct_io: every read asks the server (its chunks pipelined), never the window.
        let mark = self.inodes.lock().unwrap().attr_mark(f.ino);
        let plan = if self.opts.direct_io {
            None
        } else {
            let mut ra = f.readahead.lock().unwrap();
            ra.keep_only_since(mark);
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

    pub(in crate::fs) fn drop_readahead(&self, ino: u64) {
        for f in self.files.all(|f| f.ino == ino) {
            f.readahead.lock().unwrap().clear();
        }
    }
}
