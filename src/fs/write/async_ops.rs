//! The operations of the asynchronous write mode (`-o async_writes`): what each answers at
//! once, what it queues in the journal (`journal.rs`), and when it must be done the usual
//! way instead (`None`: the answer must come from the server).

use std::sync::Arc;

use bytes::Bytes;
use fuser::FileAttr;

use crate::fs::names::inode::{parent_of, within};
use crate::fs::write::journal::record::Base;
use crate::fs::write::journal::{JFile, Op};
use crate::fs::{Filesystem, FsError, FsResult, SetAttr};
use crate::remote::protocol::*;
use crate::remote::Attrs;

/// Bytes of a WRITE any server takes.
const SAFE_WRITE: u32 = 32 << 10;

impl Filesystem {
    /// The attributes a new name shows until the server's are known; `None` when its
    /// directory's are not known (its group and setgid bit pass on to what is made in it).
    fn made_attrs(&self, kind: u32, mode: u32, parent: &[u8]) -> Option<Attrs> {
        let now = crate::fs::meta::attr::to_secs(std::time::SystemTime::now());
        // Stale ones too: a write there moved only its size and times. With the server
        // away, what was last known of it.
        let parent = match self.cache.attrs_known(parent) {
            Some(e) => Some(e.attrs),
            None => Some(self.held_while_away(parent)?.ok()?.0),
        };
        let mut owner = self
            .journal()
            .and_then(|j| j.owner())
            .or_else(|| parent.as_ref().and_then(|a| a.uid_gid));
        let mut mode = mode;
        // In a setgid directory (as the server's filesystem does): the directory's group,
        // and a new directory is setgid too.
        if let Some(p) = parent.filter(|a| a.permissions.is_some_and(|m| m & libc::S_ISGID != 0)) {
            if let (Some((u, _)), Some((_, g))) = (owner, p.uid_gid) {
                owner = Some((u, g));
            }
            if kind == libc::S_IFDIR {
                mode |= libc::S_ISGID;
            }
        }
        Some(Attrs {
            size: Some(if kind == libc::S_IFDIR { 4096 } else { 0 }),
            uid_gid: owner,
            permissions: Some(kind | mode),
            atime_mtime: Some((now, now)),
        })
    }

    /// `create` answered once queued; `None` when this one must be made the usual way (the
    /// owner new files get is not known yet: the first file is made synchronously).
    pub(in crate::fs) async fn async_create(
        self: &Arc<Self>,
        path: &[u8],
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Option<FsResult<(FileAttr, u64)>> {
        let j = self.journal()?;
        j.owner()?;
        let want = mode & !umask & 0o7777;
        let attrs = self.made_attrs(libc::S_IFREG, want, parent_of(path))?;
        // The number the kernel will get, taken now and held open while the create is
        // queued: one only worked out now could be another node's by the time the entry is
        // handed over (a FORGET meanwhile frees the number the path hashes to first), and
        // the file would be the journal's under a number the kernel never sees.
        let ino = {
            let mut t = self.inodes.lock().unwrap();
            let ino = t.lookup(path);
            t.open(ino);
            if let Some(n) = t.get_mut(ino) {
                n.kind = libc::S_IFREG;
            }
            ino
        };
        let undo = || {
            self.writer_closed(ino);
            let mut t = self.inodes.lock().unwrap();
            t.forget(ino, 1);
            t.release(ino);
        };
        let create = Attrs {
            permissions: Some(want),
            ..Attrs::default()
        };
        let f = Arc::new(j.new_file(ino, path));
        // `verify_writes`: every byte of a new file passes through here.
        self.writer_opened(ino, true, Some(0));
        let pflags = crate::fs::pflags(flags | libc::O_CREAT) | SSH_FXF_WRITE;
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
            undo();
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
            undo();
            return Some(Err(e));
        }
        self.cache.put_new(path, &attrs, None);
        let attr = self.attr(ino, &attrs, None);
        let fh = j.files.insert_arc(f);
        Some(Ok((attr, fh)))
    }

    /// A size the node's writes of the usual kind imply (still travelling, or not known to
    /// have landed) follows a queued change of the size: `to` from the one it was.
    fn local_size_is(&self, ino: u64, to: impl FnOnce(u64) -> u64) {
        if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
            n.local_size = n.local_size.map(to);
        }
    }

    /// The name a file of the journal has now; `None` once it has none (unlinked or renamed
    /// over while open): its recorded path may name another file by then.
    fn async_path(&self, f: &JFile) -> Option<crate::fs::names::inode::RelPath> {
        self.inodes.lock().unwrap().path(f.ino)
    }

    /// The attributes of a file of the journal whose name is gone (unlinked or renamed over
    /// while open), through its handle once what was queued landed.
    pub(in crate::fs) async fn async_fstat(&self, ino: u64) -> Option<FsResult<Attrs>> {
        let f = self.journal()?.files.find(|f| f.ino == ino)?;
        if let Err(e) = self.settle().await {
            return Some(Err(e.into()));
        }
        let (c, h) = self.live_handle(&f).await?;
        Some(c.sftp.fstat(&h).await.map_err(FsError::from))
    }

    fn async_file(&self, fh: u64) -> FsResult<Arc<JFile>> {
        self.journal()
            .and_then(|j| j.files.get(fh))
            .ok_or(FsError::new(libc::EBADF))
    }

    pub(in crate::fs) async fn async_write(
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
        // Writes of the usual kind to the file, still travelling, land first.
        self.drain_inode(f.ino).await;
        // Begun before any size is read: an answer asked from now on cannot end the size
        // the writes imply while this one is placed (see `server_caught_up`).
        let _placing = crate::fs::names::inode::InodeTable::begin_attr_change(&self.inodes, f.ino);
        let path = f.path();
        // The name the caches know it by (its own may be gone: then another file's).
        let name = self.async_path(&f);
        let fresh = (name.as_ref())
            .and_then(|n| self.cache.attrs_known(n))
            .filter(|e| !e.stale)
            .map(|e| e.attrs);
        let implied = self
            .inodes
            .lock()
            .unwrap()
            .get(f.ino)
            .and_then(|n| n.local_size);
        let size = match (implied, &fresh) {
            (Some(s), _) => Some(s),
            (None, Some(a)) => a.size,
            (None, None) => None,
        };
        let offset = match (appends, size) {
            (false, _) => offset,
            (true, Some(s)) => s,
            // Where the end is, only the server knows: what is queued lands, then it says.
            (true, None) => {
                let a = self.async_fstat(f.ino).await;
                a.ok_or(FsError::new(libc::EIO))??.size.unwrap_or(0)
            }
        };
        let len = data.len();
        let data = Bytes::from(data);
        let max = self.async_max_write().await? as usize;
        for (i, chunk) in data.chunks(max).enumerate() {
            let from = i * max;
            let bytes = data.slice(from..from + chunk.len());
            self.enqueue(&path, Some(&f), Op::Write(offset + from as u64, bytes))
                .await?;
        }
        self.feed_write_digest(f.ino, offset, &data);
        self.local_size_is(f.ino, |s| s.max(offset + len as u64));
        let written = size.map(|s| s.max(offset + len as u64));
        self.inodes.lock().unwrap().note_written(f.ino, written);
        // What other descriptors of the file read ahead is old now.
        self.drop_readahead(f.ino);
        match fresh {
            // Every name of the file shows the write at once.
            Some(mut a) => {
                a.size = Some(size.unwrap_or(0).max(offset + len as u64));
                let now = crate::fs::meta::attr::to_secs(std::time::SystemTime::now());
                a.atime_mtime = Some((a.atime_mtime.map_or(now, |t| t.0), now));
                self.cache
                    .put_attrs(name.as_deref().unwrap_or(&path), &a, None);
            }
            // Its size and time are not known here: no name serves old ones.
            None => {
                if let Some(n) = &name {
                    self.cache.mark_written(n);
                }
            }
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
        match self.pool.any().await {
            Ok(c) => {
                let m = c.sftp.limits().max_write;
                if let Some(l) = learned {
                    l.store(m, Relaxed);
                }
                Ok(m)
            }
            // The server away: writes go into the journal in pieces every server takes
            // (SFTP servers must take packets of 34000 bytes).
            Err(_) => Ok(SAFE_WRITE),
        }
    }

    /// close(2): answered at once; a failure already known is reported.
    pub(in crate::fs) fn async_flush(&self, fh: u64) -> FsResult<()> {
        match self.async_file(fh)?.take_error() {
            Some(e) => Err(FsError::new(e)),
            None => Ok(()),
        }
    }

    pub(in crate::fs) async fn async_release(self: &Arc<Self>, fh: u64) -> FsResult<()> {
        let f = self.async_file(fh)?;
        let path = f.path();
        *f.verify.lock().unwrap() = self.writer_closed_queued(f.ino);
        self.enqueue(&path, Some(&f), Op::Close).await?;
        if let Some(j) = self.journal() {
            j.files.remove(fh);
        }
        self.inodes.lock().unwrap().release(f.ino);
        Ok(())
    }

    /// fsync: everything queued before it is on the server; any failure is returned.
    pub(in crate::fs) async fn async_fsync(self: &Arc<Self>, fh: Option<u64>) -> FsResult<()> {
        let Some(j) = self.journal() else {
            return Ok(());
        };
        j.settle().await?;
        let own = fh
            .and_then(|fh| self.async_file(fh).ok())
            .and_then(|f| f.take_error());
        match own.or_else(|| j.take_error()) {
            Some(e) => Err(FsError::new(e)),
            None => Ok(()),
        }
    }

    /// A read through an asynchronous file: what was queued lands first, then the server's
    /// bytes are read through the file's handle if it was opened for reading (it reaches the
    /// file also once its name is gone), else through a handle of its own.
    pub(in crate::fs) async fn async_read(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> FsResult<Bytes> {
        let f = self.async_file(fh)?;
        self.settle().await?;
        // And what other descriptors of the usual kind wrote to it (write-behind).
        self.drain_inode(f.ino).await;
        if let Some((c, h)) = f.handle(true) {
            match c.sftp.read(&h, offset, size).await {
                Err(e) if e.is_dead() => {}
                r => return Ok(r?),
            }
        }
        // No readable handle: through its name, if it still has one.
        let path = self.async_path(&f).ok_or(FsError::new(libc::EIO))?;
        let r = self.remote(&path);
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
    pub(in crate::fs) async fn async_setattr(
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
        if set.size.is_some() {
            // The server's answer is the answer (a size too large is refused: EFBIG).
            return match &file {
                Some(f) if set.only_size() => Some(self.async_truncate(f, ino, set).await),
                _ => None,
            };
        }
        // Writes of this node still travelling through a handle of the usual kind would land
        // after a queued change: the usual way waits for them.
        if !self
            .files
            .all(|f| f.ino == ino && f.has_pending())
            .is_empty()
        {
            return None;
        }
        let name = self.inodes.lock().unwrap().path(ino);
        let known = match &name {
            // A file a write made stale: its size and time are the server's to say. A
            // directory is stale when a name was made or removed in it here: its mtime
            // moved to about now (kept stale below, for the next stat to ask).
            Some(n) => Some(self.cache.attrs_known(n)?).filter(|e| !e.stale || e.attrs.is_dir())?,
            // Its old name's entry is another file's, if any: the server's word instead.
            None => crate::fs::meta::cache::Entry {
                attrs: match self.async_fstat(ino).await? {
                    Ok(a) => a,
                    Err(e) => return Some(Err(e)),
                },
                nlink: Some(0),
                stale: false,
                server: true,
            },
        };
        let (uid, gid) = match self.opts.policy.to_remote_owner(set.uid, set.gid) {
            Ok(o) => o,
            Err(e) => return Some(Err(FsError::new(e))),
        };
        let set = SetAttr { uid, gid, ..*set };
        let change = crate::fs::meta::stat::merge(&set, Some(&known.attrs));
        let mut after = known.attrs.clone();
        if let Some(m) = change.permissions {
            let kind = after.permissions.unwrap_or(libc::S_IFREG) & libc::S_IFMT;
            after.permissions = Some(kind | m);
        }
        if change.atime_mtime.is_some() {
            after.atime_mtime = change.atime_mtime;
        } else if known.stale {
            let now = crate::fs::meta::attr::to_secs(std::time::SystemTime::now());
            after.atime_mtime = Some((after.atime_mtime.map_or(now, |t| t.0), now));
        }
        if change.uid_gid.is_some() {
            after.uid_gid = change.uid_gid;
            // As the server's chown (after its chmod) does: FUSE_HANDLE_KILLPRIV leaves it
            // to the filesystem.
            if let Some(p) = after
                .permissions
                .as_mut()
                .filter(|p| **p & libc::S_IFMT != libc::S_IFDIR)
            {
                *p &= !libc::S_ISUID;
                if *p & libc::S_IXGRP != 0 {
                    *p &= !libc::S_ISGID;
                }
            }
        }

        let symlink = after.is_symlink();
        let sets_time = change.atime_mtime.is_some();
        let op = match (&file, symlink) {
            (Some(_), _) => Op::FSetStat(change),
            // SETSTAT follows links; a link's own mode and times are left to the usual way.
            (None, true) => return None,
            (None, false) => Op::SetStat(change),
        };
        if let Err(e) = self.enqueue(&path, file.as_ref(), op).await {
            return Some(Err(e));
        }
        if let Some(n) = &name {
            self.cache.put_attrs(n, &after, known.nlink);
            // A time set here is exact (a directory's size is of no account).
            if known.stale && !sets_time {
                self.cache.mark_stale(n);
            }
        }
        Some(Ok(self.attr(ino, &after, known.nlink)))
    }

    /// A size change of a file of the journal, through its own handle once what was queued
    /// landed, waited for.
    async fn async_truncate(&self, f: &Arc<JFile>, ino: u64, set: &SetAttr) -> FsResult<FileAttr> {
        self.settle().await?;
        self.drain_inode(ino).await;
        let (c, h) = (self.live_handle(f).await).ok_or(FsError::new(libc::EIO))?;
        self.data_changed_otherwise(ino, set.size);
        let change = Attrs {
            size: set.size,
            ..Attrs::default()
        };
        let r = c.sftp.fsetstat(&h, &change).await;
        r.map_err(|e| crate::fs::meta::stat::setattr_error(set, e))?;
        let a = c.sftp.fstat(&h).await?;
        self.local_size_is(ino, |_| a.size.unwrap_or(0));
        self.drop_readahead(ino);
        if let Some(p) = self.async_path(f) {
            self.cache.put_attrs(&p, &a, None);
        }
        Ok(self.attr(ino, &a, None))
    }

    pub(in crate::fs) async fn async_mkdir(
        self: &Arc<Self>,
        path: &[u8],
        mode: u32,
        umask: u32,
    ) -> Option<FsResult<FileAttr>> {
        let j = self.journal()?;
        j.owner()?;
        let want = mode & !umask & 0o7777;
        let attrs = self.made_attrs(libc::S_IFDIR, want, parent_of(path))?;
        let a = Attrs {
            permissions: Some(want),
            ..Attrs::default()
        };
        if let Err(e) = self.enqueue(path, None, Op::Mkdir(a)).await {
            return Some(Err(e));
        }
        // The server's umask may take bits away (the setgid bit it passed on stays).
        let a = Attrs {
            permissions: attrs.permissions.map(|p| p & 0o7777),
            ..Attrs::default()
        };
        if let Err(e) = self.enqueue(path, None, Op::SetStat(a)).await {
            return Some(Err(e));
        }
        self.cache.put_new(path, &attrs, None);
        self.cache.put_new_dir(path);
        Some(Ok(self.entry(path, &attrs, None)))
    }

    /// unlink or rmdir of a name whose kind (and, for a directory, emptiness) the caches
    /// know: queued. `None`: do it the usual way (the errno must come from the server).
    pub(in crate::fs) async fn async_remove(
        self: &Arc<Self>,
        path: &[u8],
        dir: bool,
    ) -> Option<FsResult<()>> {
        self.journal()?;
        let (known, seen) = match self.known_now(path) {
            (crate::fs::meta::cache::Known::Present(e), seen) => (e, seen),
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
        // A directory the server still holds names in is not removed there: nothing to lose.
        let (op, base) = match dir {
            true => (Op::Rmdir, Base::Unchecked),
            false => (Op::Remove, base_of(&known)),
        };
        if let Err(e) = self.enqueue_based(path, None, op, base, seen).await {
            return Some(Err(e));
        }
        self.cache
            .remove_with(path, || self.inodes.lock().unwrap().unlink(path));
        Some(Ok(()))
    }

    /// A rename the server does atomically (posix-rename) of names the caches know, over
    /// nothing or over a file: queued. `None`: do it the usual way.
    pub(in crate::fs) async fn async_rename(
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
        let source = match self.known_now(from).0 {
            crate::fs::meta::cache::Known::Present(e) => e,
            _ => return None,
        };
        // What the name it replaces was, for a rename that waited to tell whether someone
        // else made or changed it meanwhile.
        let (known, seen) = self.known_now(to);
        let base = match known {
            crate::fs::meta::cache::Known::Absent => Base::Absent,
            crate::fs::meta::cache::Known::Present(t)
                if !t.attrs.is_dir() && !source.attrs.is_dir() =>
            {
                base_of(&t)
            }
            _ => return None,
        };
        if let Err(e) = self
            .enqueue_based(from, None, Op::Rename(to.to_vec()), base, seen)
            .await
        {
            return Some(Err(e));
        }
        self.cache
            .rename_with(from, to, || self.inodes.lock().unwrap().rename(from, to));
        j.renamed(from, to);
        Some(Ok(()))
    }
}

/// What a queued change to a file is based on: its size and mtime as the server last gave
/// them, or nothing to check when the mount only knows them from its own changes.
fn base_of(e: &crate::fs::meta::cache::Entry) -> Base {
    match (e.server && !e.stale, e.attrs.size, e.attrs.atime_mtime) {
        (true, Some(size), Some((_, mtime))) => Base::Seen { size, mtime },
        _ => Base::Unchecked,
    }
}
