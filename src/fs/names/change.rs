//! Operations on names: mkdir, mknod, symlink, link, unlink, rmdir, rename. OpenSSH folds
//! most errors into a generic FAILURE; each operation works out the errno a local
//! filesystem would give.

use std::sync::Arc;

use fuser::FileAttr;
use futures::future::join;

use crate::fs::names::inode::InodeTable;
use crate::fs::{Filesystem, FsError, FsResult};
use crate::remote::protocol::SSH_FX_NO_SUCH_FILE;
use crate::remote::{Attrs, RemoteError};

impl Filesystem {
    pub async fn mkdir(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> FsResult<FileAttr> {
        self.writable()?;
        let path = self.new_child_path(parent, name)?;
        if let Some(r) = self.async_mkdir(&path, mode, umask).await {
            return r;
        }
        let r = self.remote(&path);
        let want = mode & !umask & 0o7777;
        let a = Attrs {
            permissions: Some(want),
            ..Attrs::default()
        };
        let (r_, a_) = (&r, &a);
        let made = self
            .call_once(
                |c| async move {
                    let (m, st) = join(c.sftp.mkdir(r_, a_), c.sftp.lstat(r_)).await;
                    m?;
                    st
                },
                || async { self.exists(&path).await.filter(|a| a.is_dir()) },
            )
            .await;
        let mut got = match made {
            Ok(a) => a,
            Err(e) => return Err(self.explain_create_failure(e, &path).await),
        };
        self.fix_mode(&r, want, &mut got).await?;
        if let (Some(j), Some(o)) = (&self.journal, got.uid_gid) {
            j.learn_owner(o);
        }
        self.cache.put_new(&path, &got, None);
        // A new directory is empty: lookups in it need not ask the server.
        self.cache.put_new_dir(&path);
        Ok(self.entry(&path, &got, None))
    }

    /// Applies the permissions asked for when the server's umask took some away; a setgid
    /// bit a directory inherited from its parent stays, as on a local disk.
    pub(in crate::fs) async fn fix_mode(
        &self,
        remote: &[u8],
        want: u32,
        got: &mut Attrs,
    ) -> FsResult<()> {
        let have = got.permissions.unwrap_or(0);
        let want = if got.is_dir() {
            want | (have & libc::S_ISGID)
        } else {
            want
        };
        if have & 0o7777 != want {
            let a = Attrs {
                permissions: Some(want),
                ..Attrs::default()
            };
            let a = &a;
            self.call(|c| async move { c.sftp.setstat(remote, a).await })
                .await?;
            got.permissions = Some((have & libc::S_IFMT) | want);
        }
        Ok(())
    }

    /// OpenSSH reports "already exists" as a generic failure.
    pub(in crate::fs) async fn explain_create_failure(
        &self,
        e: RemoteError,
        rel: &[u8],
    ) -> FsError {
        if e.is_failure() && self.exists(rel).await.is_some() {
            return FsError::new(libc::EEXIST);
        }
        e.into()
    }

    pub async fn mknod(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> FsResult<FileAttr> {
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            // SFTP can create only regular files, directories and symlinks.
            return Err(FsError::new(libc::EPERM));
        }
        let (attr, fh) = self
            .create(parent, name, mode, umask, libc::O_WRONLY | libc::O_EXCL)
            .await?;
        self.release(fh).await?;
        Ok(attr)
    }

    pub async fn symlink(&self, parent: u64, name: &[u8], target: &[u8]) -> FsResult<FileAttr> {
        self.writable()?;
        let path = self.new_child_path(parent, name)?;
        // The target in the server's character set: what the server stores, and the cache
        // keeps (as readlink does).
        let target = match &self.opts.charsets {
            Some(c) => c
                .target_to_server(target)
                .ok_or(FsError::new(libc::EILSEQ))?,
            None => std::borrow::Cow::Borrowed(target),
        };
        let target = &*target;
        let r = self.remote(&path);
        let r_ = &r;
        let made = self
            .call_once(
                |c| async move {
                    let (s, st) = join(c.sftp.symlink(r_, target), c.sftp.lstat(r_)).await;
                    s?;
                    match st {
                        // Made, but its LSTAT follows it (ProFTPD) to a target that is not
                        // there: the attributes of the link we made.
                        Err(e) if e.is_status(crate::remote::protocol::SSH_FX_NO_SUCH_FILE) => {
                            Ok(Attrs::default())
                        }
                        st => st,
                    }
                },
                || async {
                    let t = self
                        .call(|c| async move { c.sftp.readlink(r_).await })
                        .await;
                    match t {
                        Ok(t) if t == target => self.exists(&path).await,
                        _ => None,
                    }
                },
            )
            .await;
        let mut a = match made {
            Ok(a) => a,
            Err(e) => return Err(self.explain_create_failure(e, &path).await),
        };
        if !a.is_symlink() {
            // The link was made (SYMLINK said so); a server whose LSTAT follows links
            // (ProFTPD) shows its target. Trust our own SYMLINK: the kernel asked for a link
            // and gets one, and names on that server are stat'ed from their listings.
            if let Some(p) = self.pool.profile() {
                p.note_lstat_follows();
            }
            a.permissions = Some(libc::S_IFLNK | 0o777);
            a.size = Some(target.len() as u64);
        }
        self.cache.put_new(&path, &a, None);
        if self.follows_symlinks() {
            // The kernel gets the link itself for this reply only (it must: it asked for a
            // link), not to be cached (`follows_symlinks`); every later lookup shows the target.
            self.cache.invalidate(&path);
        } else {
            self.cache.put_link(&path, target);
        }
        Ok(self.entry(&path, &a, None))
    }

    pub async fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> FsResult<FileAttr> {
        self.writable()?;
        if !self.opts.hardlinks {
            // sshfs's disable_hardlink: ENOSYS, as sshfs answers.
            return Err(FsError::new(libc::ENOSYS));
        }
        let from = self.path_of(ino)?;
        let to = self.new_child_path(new_parent, new_name)?;
        if let Some(c) = &self.opts.charsets {
            c.keep_raw(&from, &to);
        }
        let (rf, rt) = (self.remote(&from), self.remote(&to));
        let (rf_, rt_) = (&rf, &rt);
        let _counting = InodeTable::begin_change(&self.inodes, &from);
        let made = self
            .call_once(
                |c| async move {
                    let (l, st) =
                        join(c.sftp.hardlink(rf_, rt_), self.attrs_at(&c.sftp, rt_)).await;
                    l?;
                    st
                },
                || async { self.exists(&to).await },
            )
            .await;
        let a = match made {
            Ok(a) => a,
            Err(RemoteError::Unsupported(_)) => return Err(FsError::new(libc::EPERM)),
            // rclone offers hard links and answers NO_SUCH_FILE for a source that exists:
            // a filesystem without hard links says EPERM.
            Err(e)
                if e.is_status(crate::remote::protocol::SSH_FX_NO_SUCH_FILE)
                    && self.exists(&from).await.is_some()
                    && self.exists(&to).await.is_none() =>
            {
                tracing::debug!("link: the server cannot link an existing file ({e})");
                return Err(FsError::new(libc::EPERM));
            }
            Err(e) => return Err(self.explain_create_failure(e, &to).await),
        };
        let mut nlink = None;
        // In one step with the cache's change: a listing read before the link must not
        // put the old link count back.
        self.cache.invalidate_with(&from, || {
            let mut t = self.inodes.lock().unwrap();
            t.link(ino, &to);
            t.lookup(&to);
            nlink = t.get(ino).and_then(|n| n.nlink);
        });
        self.cache.put_new(&to, &a, nlink);
        Ok(self.attr(ino, &a, nlink))
    }

    pub async fn unlink(self: &Arc<Self>, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove_name(parent, name, false).await
    }

    pub async fn rmdir(self: &Arc<Self>, parent: u64, name: &[u8]) -> FsResult<()> {
        self.remove_name(parent, name, true).await
    }

    /// REMOVE (or RMDIR) of `parent/name`; repeated on a new connection if this one died
    /// before the name was gone. Then the caches and the inode table forget it.
    async fn remove_name(self: &Arc<Self>, parent: u64, name: &[u8], dir: bool) -> FsResult<()> {
        self.writable()?;
        let path = self.child_path(parent, name)?;
        if let Some(r) = self.async_remove(&path, dir).await {
            return r;
        }
        let r = self.remote(&path);
        let r_ = &r;
        let _moving = self.path_changes.read().await;
        let _counting = InodeTable::begin_change(&self.inodes, &path);
        let res = self
            .call_once(
                |c| async move {
                    if dir {
                        c.sftp.rmdir(r_).await
                    } else {
                        c.sftp.remove(r_).await
                    }
                },
                || async { self.exists(&path).await.is_none().then_some(()) },
            )
            .await;
        if let Err(e) = res {
            return Err(if dir {
                self.explain_rmdir_failure(e, &path).await
            } else {
                self.explain_unlink_failure(e, &path).await
            });
        }
        self.cache
            .remove_with(&path, || self.inodes.lock().unwrap().unlink(&path));
        Ok(())
    }

    /// A directory is not a file to REMOVE.
    async fn explain_unlink_failure(&self, e: RemoteError, rel: &[u8]) -> FsError {
        if e.is_failure() && self.exists(rel).await.is_some_and(|a| a.is_dir()) {
            return FsError::new(libc::EISDIR);
        }
        e.into()
    }

    /// OpenSSH folds ENOTDIR into NO_SUCH_FILE and ENOTEMPTY into FAILURE.
    async fn explain_rmdir_failure(&self, e: RemoteError, rel: &[u8]) -> FsError {
        if !e.is_failure() && !e.is_status(SSH_FX_NO_SUCH_FILE) {
            return e.into();
        }
        match self.exists(rel).await {
            Some(a) if !a.is_dir() => FsError::new(libc::ENOTDIR),
            Some(_) if self.has_entries(rel).await => FsError::new(libc::ENOTEMPTY),
            Some(_) => FsError::new(libc::EBUSY),
            None => FsError::new(libc::ENOENT),
        }
    }

    async fn has_entries(&self, rel: &[u8]) -> bool {
        let r = self.remote(rel);
        let r = &r;
        let bound = crate::remote::ListingBound::asked(self.pool.timeout());
        match self
            .call(|c| async move { c.sftp.read_dir_all(r, &bound).await })
            .await
        {
            Ok(v) => v.iter().any(|e| e.name != b"." && e.name != b".."),
            Err(_) => false,
        }
    }

    pub async fn rename(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        self.writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 || flags & libc::RENAME_WHITEOUT != 0 {
            return Err(FsError::new(libc::EINVAL));
        }
        let from = self.child_path(parent, name)?;
        let to = self.new_child_path(new_parent, new_name)?;
        if let Some(r) = self.async_rename(&from, &to, flags).await {
            return r;
        }
        if let Some(c) = &self.opts.charsets {
            c.keep_raw(&from, &to);
        }
        let (rf, rt) = (self.remote(&from), self.remote(&to));
        let (rf_, rt_) = (&rf, &rt);
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let _moving = self.path_changes.read().await;
        // The file replaced at `to`, if any, loses a link.
        let _counting = InodeTable::begin_change(&self.inodes, &to);
        let res = self
            .call_once(
                |c| async move {
                    if noreplace {
                        // Plain SFTP rename never replaces the target.
                        return c.sftp.rename(rf_, rt_).await;
                    }
                    match c.sftp.posix_rename(rf_, rt_).await {
                        Err(RemoteError::Unsupported(_)) => replace_rename(&c.sftp, rf_, rt_).await,
                        other => other,
                    }
                },
                || async {
                    let gone = self.exists(&from).await.is_none();
                    (gone && self.exists(&to).await.is_some()).then_some(())
                },
            )
            .await;
        if let Err(e) = res {
            return Err(self.explain_rename_failure(e, &from, &to, noreplace).await);
        }
        if let Some(c) = &self.opts.charsets {
            c.renamed(&from, &to);
        }
        self.cache.rename_with(&from, &to, || {
            self.inodes.lock().unwrap().rename(&from, &to)
        });
        if let Some(j) = &self.journal {
            j.renamed(&from, &to);
        }
        Ok(())
    }

    async fn explain_rename_failure(
        &self,
        e: RemoteError,
        from: &[u8],
        to: &[u8],
        noreplace: bool,
    ) -> FsError {
        let vague =
            e.is_failure() || e.is_status(crate::remote::protocol::SSH_FX_FILE_ALREADY_EXISTS);
        if !vague {
            return e.into();
        }
        match (self.exists(from).await, self.exists(to).await) {
            (None, _) => FsError::new(libc::ENOENT),
            (Some(_), Some(_)) if noreplace => FsError::new(libc::EEXIST),
            (Some(s), Some(d)) if s.is_dir() && !d.is_dir() => FsError::new(libc::ENOTDIR),
            (Some(s), Some(d)) if !s.is_dir() && d.is_dir() => FsError::new(libc::EISDIR),
            (Some(_), Some(d)) if d.is_dir() && self.has_entries(to).await => {
                FsError::new(libc::ENOTEMPTY)
            }
            // workaround=renamexdev: most likely across the server's filesystems; EXDEV
            // makes mv copy and remove instead.
            _ if self.opts.workarounds.rename_xdev => FsError::new(libc::EXDEV),
            _ => e.into(),
        }
    }
}

/// Without posix-rename (sshfs's `workaround=rename`, always on here): a file in the way is
/// moved aside, the rename made, and the moved file removed, or put back if the rename
/// fails, so that no failure loses it. Not atomic: for a moment the name is missing. A
/// directory in the way must be empty, and is removed first.
async fn replace_rename(
    sftp: &crate::remote::Sftp,
    from: &[u8],
    to: &[u8],
) -> Result<(), RemoteError> {
    // OpenSSH refuses with FAILURE; ProFTPD and v5+ servers say FILE_ALREADY_EXISTS.
    let refused = match sftp.rename(from, to).await {
        Err(e)
            if e.is_failure()
                || e.is_status(crate::remote::protocol::SSH_FX_FILE_ALREADY_EXISTS) =>
        {
            e
        }
        other => return other,
    };
    let Ok(target) = sftp.lstat(to).await else {
        return Err(refused);
    };
    // A directory over a file or a file over a directory: the kernel checked only what it
    // had cached; the caller explains the refusal (ENOTDIR, EISDIR).
    match sftp.lstat(from).await {
        Ok(source) if source.is_dir() == target.is_dir() => {}
        _ => return Err(refused),
    }
    if target.is_dir() {
        sftp.rmdir(to).await?;
        return sftp.rename(from, to).await;
    }
    let aside = aside_name(to);
    if sftp.rename(to, &aside).await.is_err() {
        return Err(refused);
    }
    match sftp.rename(from, to).await {
        Ok(()) => {
            if let Err(e) = sftp.remove(&aside).await {
                tracing::warn!(
                    "rename: the replaced file stays as {}: {e}",
                    String::from_utf8_lossy(&aside)
                );
            }
            Ok(())
        }
        Err(e) => {
            if let Err(back) = sftp.rename(&aside, to).await {
                tracing::warn!(
                    "rename failed and the replaced file stays as {}: {back}",
                    String::from_utf8_lossy(&aside)
                );
            }
            Err(e)
        }
    }
}

/// A short name in `path`'s directory that nothing else uses (a name derived from a long
/// one could exceed the name length limit).
fn aside_name(path: &[u8]) -> Vec<u8> {
    let dir = path
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(&[][..], |i| &path[..=i]);
    let mut p = dir.to_vec();
    p.extend_from_slice(crate::fs::scratch_name("aside").as_bytes());
    p
}
