//! Open files: open/create, read, write, flush, fsync, release.

use bytes::{Bytes, BytesMut};
use fuser::FileAttr;
use futures::future::join_all;

use super::handle::OpenFile;
use super::{pflags, FsError, FsResult};
use crate::remote::{Attrs, RemoteError};

impl super::Filesystem {
    fn file(&self, fh: u64) -> FsResult<std::sync::Arc<OpenFile>> {
        self.files.get(fh).ok_or(FsError::new(libc::EBADF))
    }

    fn register(&self, ino: u64, handle: crate::remote::Handle, flags: i32) -> u64 {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        self.inodes.lock().unwrap().open(ino);
        self.files.insert(OpenFile::new(ino, handle, writable))
    }

    pub async fn open(&self, ino: u64, flags: i32) -> FsResult<u64> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            self.writable()?;
        }
        let path = self.path_of(ino)?;
        let remote = self.remote(&path);
        // Never create on open: the kernel sends `create` for that.
        let p = pflags(flags & !(libc::O_CREAT | libc::O_EXCL));
        match self.sftp.open(&remote, p, &Attrs::default()).await {
            Ok(h) => Ok(self.register(ino, h, flags)),
            Err(e) => Err(self.explain_open_failure(e, &remote).await),
        }
    }

    async fn explain_open_failure(&self, e: RemoteError, remote: &[u8]) -> FsError {
        if e.is_failure() {
            if let Some(a) = self.exists(remote).await {
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
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> FsResult<(FileAttr, u64)> {
        self.writable()?;
        let path = self.child_path(parent, name)?;
        let remote = self.remote(&path);
        let want = mode & !umask & 0o7777;
        let a = Attrs {
            permissions: Some(want),
            ..Attrs::default()
        };
        let h = match self
            .sftp
            .open(&remote, pflags(flags | libc::O_CREAT), &a)
            .await
        {
            Ok(h) => h,
            Err(e) => return Err(self.explain_open_failure(e, &remote).await),
        };
        let mut got = match self.sftp.fstat(&h).await {
            Ok(a) => a,
            Err(e) => {
                let _ = self.sftp.close(&h).await;
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
            if self.sftp.fsetstat(&h, &fix).await.is_ok() {
                got.permissions = Some((have & libc::S_IFMT) | want);
            }
        }
        let attr = self.entry(&path, &got);
        let fh = self.register(attr.ino.0, h, flags);
        Ok((attr, fh))
    }

    /// Reads up to `size` bytes at `offset`: many SFTP READs in flight at once; fewer bytes
    /// only at end of file.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let f = self.file(fh)?;
        let max = self.sftp.limits().max_read as u64;
        let end = offset + size as u64;
        let chunks: Vec<(u64, u32)> = (offset..end)
            .step_by(max as usize)
            .map(|o| (o, (end - o).min(max) as u32))
            .collect();
        let replies = join_all(chunks.iter().map(|&(o, n)| self.sftp.read(&f.handle, o, n))).await;
        let mut out = BytesMut::with_capacity(size as usize);
        for (&(o, n), r) in chunks.iter().zip(replies) {
            let data = r?;
            out.extend_from_slice(&data);
            if data.len() < n as usize {
                // A short read: finish this range one request at a time (EOF ends it).
                let mut pos = o + data.len() as u64;
                while pos < end {
                    let more = self
                        .sftp
                        .read(&f.handle, pos, (end - pos).min(max) as u32)
                        .await?;
                    if more.is_empty() {
                        return Ok(out.freeze());
                    }
                    pos += more.len() as u64;
                    out.extend_from_slice(&more);
                }
                break;
            }
        }
        Ok(out.freeze())
    }

    /// Writes all of `data` at `offset`, split to the server's limit and sent together.
    /// A failure is also latched for the file's next flush or close.
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let f = self.file(fh)?;
        if let Some(e) = f.peek_error() {
            return Err(FsError::new(e));
        }
        let max = self.sftp.limits().max_write as usize;
        let sends = data
            .chunks(max)
            .enumerate()
            .map(|(i, c)| self.sftp.write(&f.handle, offset + (i * max) as u64, c));
        for r in join_all(sends).await {
            if let Err(e) = r {
                let err = self.explain_write_failure(e).await;
                f.latch(err.errno);
                return Err(err);
            }
        }
        Ok(data.len() as u32)
    }

    /// OpenSSH reports a full disk as a generic failure.
    async fn explain_write_failure(&self, e: RemoteError) -> FsError {
        if e.is_failure() {
            if let Ok(v) = self.sftp.statvfs(&self.root).await {
                if v.bavail == 0 {
                    return FsError::new(libc::ENOSPC);
                }
            }
        }
        e.into()
    }

    /// close(2) of one descriptor: reports a write failure not yet reported.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let f = self.file(fh)?;
        match f.take_error() {
            Some(e) => Err(FsError::new(e)),
            None => Ok(()),
        }
    }

    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        let f = self.file(fh)?;
        if let Some(e) = f.take_error() {
            return Err(FsError::new(e));
        }
        if !f.writable {
            return Ok(());
        }
        match self.sftp.fsync(&f.handle).await {
            // Nothing more we can ask of a server without the extension.
            Ok(()) | Err(RemoteError::Unsupported(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The last close of an open file: the remote handle goes, and with it, for an unlinked
    /// file, the node.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let Some(f) = self.files.remove(fh) else {
            return Err(FsError::new(libc::EBADF));
        };
        let closed = self.sftp.close(&f.handle).await;
        self.inodes.lock().unwrap().release(f.ino);
        if let Some(e) = f.take_error() {
            return Err(FsError::new(e));
        }
        closed.map_err(FsError::from)
    }
}
