//! The operations of the asynchronous write mode (`-o async_writes`): what each answers at
//! once, what it queues in the journal (`journal.rs`), and when it must be done the usual
//! way instead (`None`: the answer must come from the server).

use std::sync::Arc;

use bytes::Bytes;
use fuser::FileAttr;

use super::inode::{parent_of, within};
use super::journal::{JFile, Op};
use super::{Filesystem, FsError, FsResult, SetAttr};
use crate::remote::protocol::*;
use crate::remote::Attrs;

impl Filesystem {
    /// The attributes a new name shows until the server's are known.
    fn made_attrs(&self, kind: u32, mode: u32, parent: &[u8]) -> Attrs {
        let now = super::attr::to_secs(std::time::SystemTime::now());
        let owner = self
            .journal()
            .and_then(|j| j.owner())
            .or_else(|| self.cache.attrs(parent).and_then(|e| e.attrs.uid_gid));
        Attrs {
            size: Some(if kind == libc::S_IFDIR { 4096 } else { 0 }),
            uid_gid: owner,
            permissions: Some(kind | mode),
            atime_mtime: Some((now, now)),
        }
    }

    /// `create` answered once queued; `None` when this one must be made the usual way (the
    /// owner new files get is not known yet: the first file is made synchronously).
    pub(super) async fn async_create(
        self: &Arc<Self>,
        path: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Option<FsResult<(FileAttr, u64)>> {
        let j = self.journal()?;
        j.owner()?;
        let want = mode & !umask & 0o7777;
        let attrs = self.made_attrs(libc::S_IFREG, want, parent_of(path));
        let ino = self.inodes.lock().unwrap().ino_for(path);
        let create = Attrs {
            permissions: Some(want),
            ..Attrs::default()
        };
        let f = Arc::new(j.new_file(ino, path));
        let pflags = super::pflags(flags | libc::O_CREAT) | SSH_FXF_WRITE;
        if let Err(e) = self
            .enqueue(
                path,
                Some(&f),
                Op::Open {
                    pflags,
                    attrs: create,
                },
            )
            .await
        {
            return Some(Err(e));
        }
        // The server's umask may take bits away: the mode asked for, behind the OPEN.
        if let Err(e) = self
            .enqueue(
                path,
                Some(&f),
                Op::FSetStat(Attrs {
                    permissions: Some(want),
                    ..Attrs::default()
                }),
            )
            .await
        {
            return Some(Err(e));
        }
        self.cache.put_new(path, &attrs, None);
        let attr = self.entry(path, &attrs, None);
        self.inodes.lock().unwrap().open(attr.ino.0);
        let fh = j.files.insert_arc(f);
        Some(Ok((attr, fh)))
    }

    fn async_file(&self, fh: u64) -> FsResult<Arc<JFile>> {
        self.journal()
            .and_then(|j| j.files.get(fh))
            .ok_or(FsError::new(libc::EBADF))
    }

    pub(super) async fn async_write(
        self: &Arc<Self>,
        fh: u64,
        offset: u64,
        data: Vec<u8>,
        appends: bool,
    ) -> FsResult<u32> {
        let f = self.async_file(fh)?;
        if let Some(e) = f.take_error() {
            return Err(FsError::new(e));
        }
        let path = f.path();
        let known = self.cache.attrs_known(&path).map(|e| e.attrs);
        let size = known.as_ref().and_then(|a| a.size).unwrap_or(0);
        let offset = if appends { size } else { offset };
        let len = data.len();
        let data = Bytes::from(data);
        let max = self.async_max_write().await? as usize;
        for (i, chunk) in data.chunks(max).enumerate() {
            let from = i * max;
            let bytes = data.slice(from..from + chunk.len());
            self.enqueue(&path, Some(&f), Op::Write(offset + from as u64, bytes))
                .await?;
        }
        if let Some(mut a) = known {
            a.size = Some(size.max(offset + len as u64));
            let now = super::attr::to_secs(std::time::SystemTime::now());
            a.atime_mtime = Some((a.atime_mtime.map_or(now, |t| t.0), now));
            self.cache.put_attrs(&path, &a, None);
        }
        Ok(len as u32)
    }

    /// The server's largest WRITE, asked of a connection only the first time.
    async fn async_max_write(&self) -> FsResult<u32> {
        use std::sync::atomic::Ordering::Relaxed;
        let learned = self.journal().map(|j| &j.max_write);
        if let Some(m) = learned.map(|m| m.load(Relaxed)).filter(|&m| m > 0) {
            return Ok(m);
        }
        let m = self.pool.any().await?.sftp.limits().max_write;
        if let Some(l) = learned {
            l.store(m, Relaxed);
        }
        Ok(m)
    }

    /// close(2): answered at once; a failure already known is reported.
    pub(super) fn async_flush(&self, fh: u64) -> FsResult<()> {
        match self.async_file(fh)?.take_error() {
            Some(e) => Err(FsError::new(e)),
            None => Ok(()),
        }
    }

    pub(super) async fn async_release(self: &Arc<Self>, fh: u64) -> FsResult<()> {
        let f = self.async_file(fh)?;
        let path = f.path();
        self.enqueue(&path, Some(&f), Op::Close).await?;
        if let Some(j) = self.journal() {
            j.files.remove(fh);
        }
        self.inodes.lock().unwrap().release(f.ino);
        Ok(())
    }

    /// fsync: everything queued before it is on the server; any failure is returned.
    pub(super) async fn async_fsync(self: &Arc<Self>, fh: Option<u64>) -> FsResult<()> {
        let Some(j) = self.journal() else {
            return Ok(());
        };
        j.settle().await;
        let own = fh
            .and_then(|fh| self.async_file(fh).ok())
            .and_then(|f| f.take_error());
        match own.or_else(|| j.take_error()) {
            Some(e) => Err(FsError::new(e)),
            None => Ok(()),
        }
    }

    /// A read through an asynchronous file: what was queued lands first, then the server's
    /// bytes are read through a handle of its own.
    pub(super) async fn async_read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let f = self.async_file(fh)?;
        self.settle().await;
        let r = self.remote(&f.path());
        let r = &r;
        Ok(self
            .call(|c| async move {
                let h = c.sftp.open(r, SSH_FXF_READ, &Attrs::default()).await?;
                let data = c.sftp.read(&h, offset, size).await;
                c.sftp.close_nowait(&h);
                data
            })
            .await?)
    }

    /// A mode, owner or time change of a file of the journal, or of a name whose attributes
    /// are known: queued. `None`: do it the usual way.
    pub(super) async fn async_setattr(
        self: &Arc<Self>,
        ino: u64,
        fh: Option<u64>,
        set: &SetAttr,
    ) -> Option<FsResult<FileAttr>> {
        let j = self.journal()?;
        if set.size.is_some() && fh.is_none_or(|fh| !Self::is_async_fh(fh)) {
            return None;
        }
        let file = fh
            .filter(|&fh| Self::is_async_fh(fh))
            .and_then(|fh| j.files.get(fh))
            .or_else(|| j.files.find(|f| f.ino == ino));
        let path = match &file {
            Some(f) => f.path(),
            None => self.inodes.lock().unwrap().path(ino)?,
        };
        // Writes of this node still travelling through a handle of the usual kind would land
        // after a queued change: the usual way waits for them.
        if !self
            .files
            .all(|f| f.ino == ino && f.has_pending())
            .is_empty()
        {
            return None;
        }
        let known = self.cache.attrs_known(&path)?;
        let (uid, gid) = match self.opts.policy.to_remote_owner(set.uid, set.gid) {
            Ok(o) => o,
            Err(e) => return Some(Err(FsError::new(e))),
        };
        let set = SetAttr { uid, gid, ..*set };
        let change = super::meta::merge(&set, Some(&known.attrs));
        let mut after = known.attrs.clone();
        if let Some(m) = change.permissions {
            let kind = after.permissions.unwrap_or(libc::S_IFREG) & libc::S_IFMT;
            after.permissions = Some(kind | m);
        }
        if change.atime_mtime.is_some() {
            after.atime_mtime = change.atime_mtime;
        }
        if change.uid_gid.is_some() {
            after.uid_gid = change.uid_gid;
        }
        if let Some(s) = change.size {
            after.size = Some(s);
        }
        let symlink = after.is_symlink();
        let op = match (&file, symlink) {
            (Some(_), _) => Op::FSetStat(change),
            // SETSTAT follows links; a link's own mode and times are left to the usual way.
            (None, true) => return None,
            (None, false) => Op::SetStat(change),
        };
        if let Err(e) = self.enqueue(&path, file.as_ref(), op).await {
            return Some(Err(e));
        }
        self.cache.put_attrs(&path, &after, known.nlink);
        Some(Ok(self.attr(ino, &after, known.nlink)))
    }

    pub(super) async fn async_mkdir(
        self: &Arc<Self>,
        path: &[u8],
        mode: u32,
        umask: u32,
    ) -> Option<FsResult<FileAttr>> {
        let j = self.journal()?;
        j.owner()?;
        let want = mode & !umask & 0o7777;
        let a = Attrs {
            permissions: Some(want),
            ..Attrs::default()
        };
        if let Err(e) = self.enqueue(path, None, Op::Mkdir(a.clone())).await {
            return Some(Err(e));
        }
        // The server's umask may take bits away.
        if let Err(e) = self.enqueue(path, None, Op::SetStat(a)).await {
            return Some(Err(e));
        }
        let attrs = self.made_attrs(libc::S_IFDIR, want, parent_of(path));
        self.cache.put_new(path, &attrs, None);
        self.cache.put_new_dir(path);
        Some(Ok(self.entry(path, &attrs, None)))
    }

    /// unlink or rmdir of a name whose kind (and, for a directory, emptiness) the caches
    /// know: queued. `None`: do it the usual way (the errno must come from the server).
    pub(super) async fn async_remove(
        self: &Arc<Self>,
        path: &[u8],
        dir: bool,
    ) -> Option<FsResult<()>> {
        self.journal()?;
        let known = match self.cache.known(path) {
            super::cache::Known::Present(e) => e,
            _ => return None,
        };
        if known.attrs.is_dir() != dir {
            return None;
        }
        if dir {
            let l = self.cache.peek_listing(path)?;
            let l = l.lock().unwrap();
            if !self.cache.trusted(path, &l) || !l.entries.is_empty() {
                return None;
            }
        }
        let op = if dir { Op::Rmdir } else { Op::Remove };
        if let Err(e) = self.enqueue(path, None, op).await {
            return Some(Err(e));
        }
        self.cache
            .remove_with(path, || self.inodes.lock().unwrap().unlink(path));
        Some(Ok(()))
    }

    /// A rename the server does atomically (posix-rename) of names the caches know, over
    /// nothing or over a file: queued. `None`: do it the usual way.
    pub(super) async fn async_rename(
        self: &Arc<Self>,
        from: &[u8],
        to: &[u8],
        flags: u32,
    ) -> Option<FsResult<()>> {
        let j = self.journal()?;
        let posix = self
            .pool
            .profile()
            .is_some_and(|p| p.has(crate::remote::Ext::PosixRename));
        if flags != 0 || !posix || self.opts.charsets.is_some() || within(to, from) {
            return None;
        }
        let source = match self.cache.known(from) {
            super::cache::Known::Present(e) => e,
            _ => return None,
        };
        match self.cache.known(to) {
            super::cache::Known::Absent => {}
            super::cache::Known::Present(t) if !t.attrs.is_dir() && !source.attrs.is_dir() => {}
            _ => return None,
        }
        if let Err(e) = self.enqueue(from, None, Op::Rename(to.to_vec())).await {
            return Some(Err(e));
        }
        self.cache
            .rename_with(from, to, || self.inodes.lock().unwrap().rename(from, to));
        j.renamed(from, to);
        Some(Ok(()))
    }
}
