//! The filesystem core: FUSE-shaped operations in inodes and byte names, answered over SFTP.
//! Async and free of the kernel interface, so it is tested against a real sftp-server alone.

pub mod attr;
pub mod dir;
pub mod error;
pub mod file;
pub mod handle;
pub mod inode;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fuser::FileAttr;

use crate::remote::protocol::*;
use crate::remote::{Attrs, RemoteError, Sftp, StatVfs};
pub use attr::AttrPolicy;
pub use error::{FsError, FsResult};
use handle::{DirListing, HandleTable, OpenFile};
use inode::{join, InodeTable, RelPath};

/// A time given to `setattr`.
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    Now,
    At(SystemTime),
}

/// The changes one `setattr` asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

/// Who is asking, for `access`.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

pub struct Options {
    pub policy: AttrPolicy,
    pub read_only: bool,
}

pub struct Filesystem {
    sftp: Arc<Sftp>,
    /// Absolute remote path of the mount root.
    root: Vec<u8>,
    inodes: Mutex<InodeTable>,
    files: HandleTable<OpenFile>,
    dirs: HandleTable<DirListing>,
    policy: AttrPolicy,
    read_only: bool,
}

impl Filesystem {
    /// `root` must be an absolute remote directory (see `resolve_root`).
    pub fn new(sftp: Arc<Sftp>, root: Vec<u8>, opts: Options) -> Self {
        Filesystem {
            sftp,
            root,
            inodes: Mutex::new(InodeTable::new()),
            files: HandleTable::default(),
            dirs: HandleTable::default(),
            policy: opts.policy,
            read_only: opts.read_only,
        }
    }

    pub fn sftp(&self) -> &Sftp {
        &self.sftp
    }

    /// The absolute remote path for a path below the mount root.
    fn remote(&self, rel: &[u8]) -> Vec<u8> {
        if rel.is_empty() {
            return self.root.clone();
        }
        let mut p = self.root.clone();
        if !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(rel);
        p
    }

    fn path_of(&self, ino: u64) -> FsResult<RelPath> {
        self.inodes
            .lock()
            .unwrap()
            .path(ino)
            .ok_or(FsError::new(libc::ENOENT))
    }

    fn child_path(&self, parent: u64, name: &[u8]) -> FsResult<RelPath> {
        if name.is_empty() || name.contains(&b'/') {
            return Err(FsError::new(libc::EINVAL));
        }
        Ok(join(&self.path_of(parent)?, name))
    }

    fn writable(&self) -> FsResult<()> {
        if self.read_only {
            Err(FsError::new(libc::EROFS))
        } else {
            Ok(())
        }
    }

    fn attr(&self, ino: u64, a: &Attrs) -> FileAttr {
        let nlink = self.inodes.lock().unwrap().get(ino).and_then(|n| n.nlink);
        self.policy.file_attr(ino, a, nlink)
    }

    /// Hands the kernel an entry for `path`: counts the lookup and builds its attributes.
    fn entry(&self, path: &[u8], a: &Attrs) -> FileAttr {
        let ino = self.inodes.lock().unwrap().lookup(path);
        self.attr(ino, a)
    }

    async fn exists(&self, remote: &[u8]) -> Option<Attrs> {
        self.sftp.lstat(remote).await.ok()
    }

    // ---- metadata -------------------------------------------------------------------------

    pub async fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<FileAttr> {
        let path = self.child_path(parent, name)?;
        let a = self.sftp.lstat(&self.remote(&path)).await?;
        Ok(self.entry(&path, &a))
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.lock().unwrap().forget(ino, n);
    }

    pub async fn getattr(&self, ino: u64, fh: Option<u64>) -> FsResult<FileAttr> {
        let a = self.stat_node(ino, fh).await?;
        Ok(self.attr(ino, &a))
    }

    /// Attributes by handle when the caller has one or the node has lost its names
    /// (unlinked while open), else by path.
    async fn stat_node(&self, ino: u64, fh: Option<u64>) -> FsResult<Attrs> {
        if let Some(f) = fh.and_then(|fh| self.files.get(fh)) {
            return Ok(self.sftp.fstat(&f.handle).await?);
        }
        let path = self.inodes.lock().unwrap().path(ino);
        match path {
            Some(p) => Ok(self.sftp.lstat(&self.remote(&p)).await?),
            None => match self.files.find(|f| f.ino == ino) {
                Some(f) => Ok(self.sftp.fstat(&f.handle).await?),
                None => Err(FsError::new(libc::ENOENT)),
            },
        }
    }

    pub async fn setattr(&self, ino: u64, fh: Option<u64>, set: SetAttr) -> FsResult<FileAttr> {
        self.writable()?;
        let file = fh.and_then(|fh| self.files.get(fh)).or_else(|| {
            let unlinked = self.inodes.lock().unwrap().path(ino).is_none();
            unlinked
                .then(|| self.files.find(|f| f.ino == ino))
                .flatten()
        });
        let (uid, gid) = self
            .policy
            .to_remote_owner(set.uid, set.gid)
            .map_err(FsError::new)?;
        let set = SetAttr { uid, gid, ..set };
        let needs_current = (set.uid.is_some() != set.gid.is_some())
            || (set.atime.is_some() != set.mtime.is_some());
        let current = if needs_current {
            Some(self.stat_node(ino, fh).await?)
        } else {
            None
        };
        let mut a = Attrs {
            size: set.size,
            permissions: set.mode.map(|m| m & 0o7777),
            ..Attrs::default()
        };
        // SFTP sets uid and gid (and atime and mtime) together: fill in the one not asked for.
        if set.uid.is_some() || set.gid.is_some() {
            let (cu, cg) = current.as_ref().and_then(|c| c.uid_gid).unwrap_or((0, 0));
            a.uid_gid = Some((set.uid.unwrap_or(cu), set.gid.unwrap_or(cg)));
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let now = SystemTime::now();
            let t = |s: SetTime| match s {
                SetTime::Now => attr::to_secs(now),
                SetTime::At(t) => attr::to_secs(t),
            };
            let (ca, cm) = current
                .as_ref()
                .and_then(|c| c.atime_mtime)
                .unwrap_or((0, 0));
            a.atime_mtime = Some((
                set.atime.map(t).unwrap_or(ca),
                set.mtime.map(t).unwrap_or(cm),
            ));
        }
        match &file {
            Some(f) => self.sftp.fsetstat(&f.handle, &a).await?,
            None => {
                let path = self.path_of(ino)?;
                let is_link = current.as_ref().is_some_and(|c| c.is_symlink());
                if is_link {
                    self.sftp.lsetstat(&self.remote(&path), &a).await?
                } else {
                    self.sftp.setstat(&self.remote(&path), &a).await?
                }
            }
        }
        let fresh = match &file {
            Some(f) => self.sftp.fstat(&f.handle).await?,
            None => self.sftp.lstat(&self.remote(&self.path_of(ino)?)).await?,
        };
        Ok(self.attr(ino, &fresh))
    }

    pub async fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let path = self.path_of(ino)?;
        Ok(self.sftp.readlink(&self.remote(&path)).await?)
    }

    pub async fn statfs(&self) -> FsResult<StatVfs> {
        match self.sftp.statvfs(&self.root).await {
            Ok(v) => Ok(v),
            // Without the extension, report an empty filesystem rather than fail `df`.
            Err(RemoteError::Unsupported(_)) => Ok(StatVfs {
                bsize: 4096,
                frsize: 4096,
                namemax: 255,
                ..StatVfs::default()
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn access(&self, ino: u64, mask: i32, caller: Caller) -> FsResult<()> {
        let a = self.stat_node(ino, None).await?;
        if mask == libc::F_OK {
            return Ok(());
        }
        if mask & libc::W_OK != 0 && self.read_only {
            return Err(FsError::new(libc::EROFS));
        }
        let f = self.attr(ino, &a);
        let perm = f.perm as u32;
        let granted = if caller.uid == 0 {
            // root may read and write anything, and execute what anyone may execute.
            let x = if perm & 0o111 != 0 || a.is_dir() {
                1
            } else {
                0
            };
            6 | x
        } else if caller.uid == f.uid {
            (perm >> 6) & 7
        } else if caller.gid == f.gid || in_group(caller.pid, f.gid) {
            (perm >> 3) & 7
        } else {
            perm & 7
        };
        if (mask as u32) & !granted & 7 != 0 {
            return Err(FsError::new(libc::EACCES));
        }
        Ok(())
    }

    // ---- names ----------------------------------------------------------------------------

    /// Applies the permissions asked for when the server's umask took some away.
    async fn fix_mode(&self, remote: &[u8], want: u32, got: &mut Attrs) -> FsResult<()> {
        let have = got.permissions.unwrap_or(0);
        if have & 0o7777 != want {
            let a = Attrs {
                permissions: Some(want),
                ..Attrs::default()
            };
            self.sftp.setstat(remote, &a).await?;
            got.permissions = Some((have & libc::S_IFMT) | want);
        }
        Ok(())
    }

    pub async fn mkdir(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        umask: u32,
    ) -> FsResult<FileAttr> {
        self.writable()?;
        let path = self.child_path(parent, name)?;
        let remote = self.remote(&path);
        let want = mode & !umask & 0o7777;
        let a = Attrs {
            permissions: Some(want),
            ..Attrs::default()
        };
        if let Err(e) = self.sftp.mkdir(&remote, &a).await {
            return Err(self.explain_create_failure(e, &remote).await);
        }
        let mut got = self.sftp.lstat(&remote).await?;
        self.fix_mode(&remote, want, &mut got).await?;
        Ok(self.entry(&path, &got))
    }

    /// OpenSSH reports "already exists" as a generic failure.
    async fn explain_create_failure(&self, e: RemoteError, remote: &[u8]) -> FsError {
        if e.is_failure() && self.exists(remote).await.is_some() {
            return FsError::new(libc::EEXIST);
        }
        e.into()
    }

    pub async fn mknod(
        &self,
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
        let path = self.child_path(parent, name)?;
        let remote = self.remote(&path);
        if let Err(e) = self.sftp.symlink(&remote, target).await {
            return Err(self.explain_create_failure(e, &remote).await);
        }
        let a = self.sftp.lstat(&remote).await?;
        Ok(self.entry(&path, &a))
    }

    pub async fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> FsResult<FileAttr> {
        self.writable()?;
        let from = self.path_of(ino)?;
        let to = self.child_path(new_parent, new_name)?;
        let remote_to = self.remote(&to);
        match self.sftp.hardlink(&self.remote(&from), &remote_to).await {
            Ok(()) => {}
            Err(RemoteError::Unsupported(_)) => return Err(FsError::new(libc::EPERM)),
            Err(e) => return Err(self.explain_create_failure(e, &remote_to).await),
        }
        let a = self.sftp.lstat(&remote_to).await?;
        let mut t = self.inodes.lock().unwrap();
        t.link(ino, &to);
        t.lookup(&to);
        let nlink = t.get(ino).and_then(|n| n.nlink);
        drop(t);
        Ok(self.policy.file_attr(ino, &a, nlink))
    }

    pub async fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        let path = self.child_path(parent, name)?;
        let remote = self.remote(&path);
        if let Err(e) = self.sftp.remove(&remote).await {
            if e.is_failure() && self.exists(&remote).await.is_some_and(|a| a.is_dir()) {
                return Err(FsError::new(libc::EISDIR));
            }
            return Err(e.into());
        }
        self.inodes.lock().unwrap().unlink(&path);
        Ok(())
    }

    pub async fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        let path = self.child_path(parent, name)?;
        let remote = self.remote(&path);
        if let Err(e) = self.sftp.rmdir(&remote).await {
            return Err(self.explain_rmdir_failure(e, &remote).await);
        }
        self.inodes.lock().unwrap().unlink(&path);
        Ok(())
    }

    /// OpenSSH folds ENOTDIR into NO_SUCH_FILE and ENOTEMPTY into FAILURE.
    async fn explain_rmdir_failure(&self, e: RemoteError, remote: &[u8]) -> FsError {
        if !e.is_failure() && !e.is_status(SSH_FX_NO_SUCH_FILE) {
            return e.into();
        }
        match self.exists(remote).await {
            Some(a) if !a.is_dir() => FsError::new(libc::ENOTDIR),
            Some(_) if self.has_entries(remote).await => FsError::new(libc::ENOTEMPTY),
            Some(_) => FsError::new(libc::EBUSY),
            None => FsError::new(libc::ENOENT),
        }
    }

    async fn has_entries(&self, remote: &[u8]) -> bool {
        match self.sftp.read_dir_all(remote).await {
            Ok(v) => v.iter().any(|e| e.name != b"." && e.name != b".."),
            Err(_) => false,
        }
    }

    pub async fn rename(
        &self,
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
        let to = self.child_path(new_parent, new_name)?;
        let (rf, rt) = (self.remote(&from), self.remote(&to));
        let res = if flags & libc::RENAME_NOREPLACE != 0 {
            // Plain SFTP rename never replaces; OpenSSH makes it link+unlink for files.
            self.sftp.rename(&rf, &rt).await
        } else {
            match self.sftp.posix_rename(&rf, &rt).await {
                Err(RemoteError::Unsupported(_)) => self.replace_rename(&rf, &rt).await,
                other => other,
            }
        };
        if let Err(e) = res {
            return Err(self.explain_rename_failure(e, &rf, &rt, flags).await);
        }
        self.inodes.lock().unwrap().rename(&from, &to);
        Ok(())
    }

    /// Without posix-rename: remove the target first (not atomic, the best SFTP v3 allows).
    async fn replace_rename(&self, from: &[u8], to: &[u8]) -> Result<(), RemoteError> {
        match self.sftp.rename(from, to).await {
            Err(e) if e.is_failure() => {
                if let Some(a) = self.exists(to).await {
                    if a.is_dir() {
                        self.sftp.rmdir(to).await?;
                    } else {
                        self.sftp.remove(to).await?;
                    }
                }
                self.sftp.rename(from, to).await
            }
            other => other,
        }
    }

    async fn explain_rename_failure(
        &self,
        e: RemoteError,
        from: &[u8],
        to: &[u8],
        flags: u32,
    ) -> FsError {
        if !e.is_failure() {
            return e.into();
        }
        let (src, dst) = (self.exists(from).await, self.exists(to).await);
        match (src, dst) {
            (None, _) => FsError::new(libc::ENOENT),
            (Some(_), Some(_)) if flags & libc::RENAME_NOREPLACE != 0 => FsError::new(libc::EEXIST),
            (Some(s), Some(d)) if s.is_dir() && !d.is_dir() => FsError::new(libc::ENOTDIR),
            (Some(s), Some(d)) if !s.is_dir() && d.is_dir() => FsError::new(libc::EISDIR),
            (Some(_), Some(d)) if d.is_dir() && self.has_entries(to).await => {
                FsError::new(libc::ENOTEMPTY)
            }
            _ => e.into(),
        }
    }
}

/// Whether process `pid` has `gid` among its supplementary groups.
fn in_group(pid: u32, gid: u32) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

/// SFTP open flags for open(2) flags.
pub fn pflags(flags: i32) -> u32 {
    let mut p = match flags & libc::O_ACCMODE {
        libc::O_WRONLY => SSH_FXF_WRITE,
        libc::O_RDWR => SSH_FXF_READ | SSH_FXF_WRITE,
        _ => SSH_FXF_READ,
    };
    if flags & libc::O_APPEND != 0 {
        p |= SSH_FXF_APPEND;
    }
    if flags & libc::O_CREAT != 0 {
        p |= SSH_FXF_CREAT;
    }
    if flags & libc::O_TRUNC != 0 {
        p |= SSH_FXF_TRUNC;
    }
    if flags & libc::O_EXCL != 0 {
        p |= SSH_FXF_EXCL;
    }
    p
}

#[cfg(test)]
mod tests;
