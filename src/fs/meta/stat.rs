//! Metadata operations: lookup, getattr, setattr, readlink, statfs, access.

use std::sync::Arc;
use std::time::SystemTime;

use fuser::FileAttr;
use futures::future::join;

use crate::fs::meta::attr;
use crate::fs::meta::cache::Known;
use crate::fs::names::dir::Purpose;
use crate::fs::names::inode::InodeTable;
use crate::fs::{in_group, Caller, Filesystem, FsError, FsResult, SetAttr, SetTime};
use crate::remote::protocol::SSH_FX_NO_SUCH_FILE;
use crate::remote::{Attrs, RemoteError, StatVfs};

impl Filesystem {
    /// Answers from the cache or the parent's listing when they know; otherwise races a
    /// single LSTAT against a listing of the whole parent, so that the lookups that follow
    /// (`git status`, `find`, `tar`) cost no round trip.
    pub async fn lookup(self: &Arc<Self>, parent: u64, name: &[u8]) -> FsResult<FileAttr> {
        self.lookup_entry(parent, name).await.map(|(a, _)| a)
    }

    /// `lookup`, and whether the attributes are exact: a directory whose entries changed
    /// here is answered with the attributes it had (its mtime and link count moved), for
    /// the kernel to use as an entry and fetch the attributes again.
    pub async fn lookup_entry(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
    ) -> FsResult<(FileAttr, bool)> {
        let path = self.child_path(parent, name)?;
        self.in_use.touch(crate::fs::names::inode::parent_of(&path));
        // Writes queued here land first, as for getattr: the server's answer (or a listing
        // read before them) has the mtime from before them, and the kernel would keep it.
        let ino = self.inodes.lock().unwrap().ino_for(&path);
        self.drain_inode(ino).await;
        if let Some(e) = self.cache.attrs(&path) {
            return Ok((self.entry(&path, &e.attrs, e.nlink), true));
        }
        if let Some(e) = self.cache.attrs_known(&path).filter(|e| e.attrs.is_dir()) {
            return Ok((self.entry(&path, &e.attrs, e.nlink), false));
        }
        match self.lookup_remote(parent, name, &path).await {
            Ok(a) => Ok((a, true)),
            Err(e) => match self.held(&path, &e) {
                Some(held) => held.map(|(a, nlink)| (self.entry(&path, &a, nlink), true)),
                None => Err(e),
            },
        }
    }

    async fn lookup_remote(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        path: &[u8],
    ) -> FsResult<FileAttr> {
        let path = path.to_vec();
        match self.cache.known(&path) {
            Known::Present(e) if !e.stale => return Ok(self.entry(&path, &e.attrs, e.nlink)),
            Known::Absent => return Err(FsError::new(libc::ENOENT)),
            _ => {}
        }
        if self.cache.absent_just_now(&path) {
            return Err(FsError::new(libc::ENOENT));
        }
        if self
            .opts
            .charsets
            .as_ref()
            .is_some_and(|c| c.might_be_raw(&path))
        {
            // The name may be a raw server name of this directory (one not in the server's
            // character set): its listing tells, before the name is sent converted.
            let dir = self.path_of(parent)?;
            let _ = self.listing_shared(&dir, Purpose::Asked).await;
        }
        let asked = (
            tokio::time::Instant::now(),
            self.cache
                .generation(crate::fs::names::inode::parent_of(&path)),
        );
        let lstat = async {
            let r = self.lstat_remote(&path).await;
            if matches!(&r, Err(e) if e.is_status(SSH_FX_NO_SUCH_FILE)) {
                self.cache.put_absent(&path, asked.0, asked.1);
            }
            r
        };
        if self.opts.prefetch && self.cache.enabled() {
            let dir = self.path_of(parent)?;
            let listing = self.listing_shared(&dir, Purpose::Beside);
            tokio::pin!(lstat);
            tokio::select! {
                biased;
                r = &mut lstat => {
                    let a = r?;
                    return Ok(self.entry(&path, &a, None));
                }
                Ok(l) = listing => {
                    let l = l.lock().unwrap();
                    // Not if the directory changed here since the listing was asked for.
                    let trusted = self.cache.trusted(&dir, &l);
                    let known = l.known(name);
                    drop(l);
                    match known {
                        _ if !trusted => {}
                        Known::Present(e) if !e.stale => {
                            return Ok(self.entry(&path, &e.attrs, e.nlink))
                        }
                        Known::Absent => return Err(FsError::new(libc::ENOENT)),
                        _ => {}
                    }
                }
            }
            let a = lstat.await?;
            return Ok(self.entry(&path, &a, None));
        }
        let a = lstat.await?;
        Ok(self.entry(&path, &a, None))
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.lock().unwrap().forget(ino, n);
    }

    pub async fn getattr(&self, ino: u64, fh: Option<u64>) -> FsResult<FileAttr> {
        let a = self.stat_node(ino, fh).await?;
        Ok(self.attr(ino, &a, None))
    }

    /// Current attributes: pending writes first (so the size is right), then the cache,
    /// the path, or — for a node unlinked while open — an open handle. Not the cache first:
    /// an entry stored while writes were being replayed can be fresh and still too short
    /// (fsx with connections killed caught it).
    pub(in crate::fs) async fn stat_node(&self, ino: u64, fh: Option<u64>) -> FsResult<Attrs> {
        match self.stat_node_asked(ino, fh).await {
            Err(e) => {
                let path = self.inodes.lock().unwrap().path(ino);
                match path.and_then(|p| self.held(&p, &e)) {
                    Some(held) => held.map(|(a, _)| a),
                    None => Err(e),
                }
            }
            ok => ok,
        }
    }

    async fn stat_node_asked(&self, ino: u64, fh: Option<u64>) -> FsResult<Attrs> {
        self.drain_inode(ino).await;
        let path = self.inodes.lock().unwrap().path(ino);
        match path {
            Some(p) => {
                self.in_use.touch(crate::fs::names::inode::parent_of(&p));
                if let Some(e) = self.cache.attrs(&p) {
                    return Ok(e.attrs);
                }
                let parent = crate::fs::names::inode::parent_of(&p);
                let generation = self.cache.generation(parent);
                let mark = self.inodes.lock().unwrap().attr_mark(ino);
                let relist = self
                    .inodes
                    .lock()
                    .unwrap()
                    .get(ino)
                    .is_some_and(|n| n.relist);
                // fstat(2), or a read's check of the size: through the file's own handle,
                // which reaches the file the program has open even once the server removed
                // or replaced its name.
                let open_file = fh
                    .filter(|_| !self.opts.workarounds.fstat)
                    .and_then(|fh| self.files.get(fh))
                    .filter(|f| f.ino == ino && f.usable());
                let relist = self.me.upgrade().filter(|_| relist);
                // An open file's attributes are not its name's to cache: the name may be
                // another file's by now.
                let by_handle = open_file.is_some();
                let a = match (open_file, relist) {
                    (Some(f), _) => {
                        self.with_file(&f, |c, h| async move { c.sftp.fstat(&h).await })
                            .await
                    }
                    // In the same round trip, a listing to learn the link count from.
                    (None, Some(me)) => {
                        join(
                            self.lstat_remote(&p),
                            me.listing_shared(parent, Purpose::Beside),
                        )
                        .await
                        .0
                    }
                    (None, None) => self.lstat_remote(&p).await,
                }?;
                let nlink = self.inodes.lock().unwrap().get(ino).and_then(|n| n.nlink);
                self.server_caught_up(ino, Some((&a, nlink)), mark, false, |c, p| {
                    !by_handle && c.generation(crate::fs::names::inode::parent_of(p)) == generation
                });
                Ok(a)
            }
            None => {
                // What the journal holds for it (async_writes) lands first.
                self.settle().await?;
                let f = fh
                    .and_then(|fh| self.files.get(fh))
                    .or_else(|| self.files.find(|f| f.ino == ino && f.usable()));
                let Some(f) = f else {
                    return match self.async_fstat(ino).await {
                        Some(r) => r,
                        None => Err(FsError::new(libc::ENOENT)),
                    };
                };
                Ok(self
                    .with_file(&f, |c, h| async move { c.sftp.fstat(&h).await })
                    .await?)
            }
        }
    }

    pub async fn setattr(
        self: &Arc<Self>,
        ino: u64,
        fh: Option<u64>,
        set: SetAttr,
    ) -> FsResult<FileAttr> {
        let r = self.setattr_asked(ino, fh, set).await;
        if r.is_err() && set.size.is_some() {
            self.size_unknown(ino);
        }
        match r {
            // `attr_refusals=ignore`: a server that refuses mode or time changes (object
            // stores, attribute policies) does not fail `tar x`, `cp -p` or `rsync -t`.
            Err(e)
                if self.opts.ignore_attr_refusals
                    && set.size.is_none()
                    && matches!(e.errno, libc::EACCES | libc::EPERM | libc::EOPNOTSUPP) =>
            {
                // An owner change is ignored only when it changes nothing (tar and cp -p
                // chown every file to the owner it already has).
                let now = self.getattr(ino, fh).await?;
                let owner_kept =
                    set.uid.is_none_or(|u| u == now.uid) && set.gid.is_none_or(|g| g == now.gid);
                if !owner_kept {
                    return Err(e);
                }
                if !self
                    .attr_refusal_said
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        "the server refuses a mode or time change ({e}); ignored, as \
                         attr_refusals=ignore asks (said once)"
                    );
                }
                Ok(now)
            }
            r => r,
        }
    }

    async fn setattr_asked(
        self: &Arc<Self>,
        ino: u64,
        fh: Option<u64>,
        set: SetAttr,
    ) -> FsResult<FileAttr> {
        self.writable()?;
        if let Some(r) = self.async_setattr(ino, fh, &set).await {
            return r;
        }
        self.settle().await?;
        let (uid, gid) = self
            .opts
            .policy
            .to_remote_owner(set.uid, set.gid)
            .map_err(FsError::new)?;
        let mut set = SetAttr { uid, gid, ..set };
        let path = self.inodes.lock().unwrap().path(ino);
        if let (Some(size), Some(p), true) = (set.size, &path, self.opts.workarounds.truncate) {
            // Every write lands first: the rewrite reads and replaces what the server has.
            self.drain_inode(ino).await;
            let _changing = InodeTable::begin_attr_change(&self.inodes, ino);
            let mark = self.inodes.lock().unwrap().attr_mark(ino);
            self.size_changing(ino, size);
            self.truncate_by_rewrite(p, size)
                .await
                .map_err(|e| setattr_error(&set, e))?;
            self.drop_readahead(ino);
            set.size = None;
            let fresh = self.lstat_remote(p).await?;
            self.exact_after_writes(ino, &fresh, mark, |_, q| {
                self.inodes.lock().unwrap().path(ino).as_deref() == Some(q)
            });
            if set.only_size() {
                return Ok(self.attr(ino, &fresh, None));
            }
        }
        // Through an open file of the node when there is one: on its connection the request
        // queues behind that file's writes, so they need not be waited for.
        let file = fh
            .and_then(|fh| self.files.get(fh))
            .or_else(|| {
                self.files
                    .find(|f| f.ino == ino && f.writable && f.usable())
            })
            .or_else(|| {
                path.is_none()
                    .then(|| self.files.find(|f| f.ino == ino && f.usable()))
                    .flatten()
            });
        // Writes in flight through other handles must land before a truncate or a time change.
        for other in self.files.all(|f| f.ino == ino && f.has_pending()) {
            if !file.as_ref().is_some_and(|f| Arc::ptr_eq(f, &other)) {
                other.drain().await;
            }
        }
        // A change to what the server said a moment ago it already is costs nothing: tar,
        // cp -a and rsync chown every file they make to the owner it already has.
        if let Some(p) = &path {
            if let Some(e) = self.cache.attrs_known_within(p, NOOP_EVIDENCE_AGE) {
                // A write (or a mode or time change queued behind writes) leaves the owner
                // as it was; the answer's size then comes from the writes.
                let local_size = self
                    .inodes
                    .lock()
                    .unwrap()
                    .get(ino)
                    .and_then(|n| n.local_size);
                let owner_only = set.mode.is_none() && set.atime.is_none() && set.mtime.is_none();
                let usable = !e.stale || (owner_only && local_size.is_some());
                if usable && changes_nothing(&set, &e.attrs) {
                    let a = if e.stale {
                        written_now(&e.attrs)
                    } else {
                        e.attrs
                    };
                    return Ok(self.attr(ino, &a, e.nlink));
                }
            }
        }
        let _changing = InodeTable::begin_attr_change(&self.inodes, ino);
        let mark = self.inodes.lock().unwrap().attr_mark(ino);
        if let Some(size) = set.size {
            self.size_changing(ino, size);
        }
        if let (Some(f), Some(p)) = (&file, &path) {
            if let Some(a) = self.set_mode_times_behind(ino, f, p, &set) {
                return Ok(a);
            }
        }
        let needs_current = (set.uid.is_some() != set.gid.is_some())
            || (set.atime.is_some() != set.mtime.is_some());
        // A write since the cache was filled moved the mtime: one kept as it is must be read.
        let current = if !needs_current {
            None
        } else if let Some(e) = path
            .as_ref()
            .and_then(|p| self.cache.attrs_known(p))
            .filter(|e| !(e.stale && set.keeps_mtime()))
        {
            // Owner and atime: a local write does not change them.
            Some(e.attrs)
        } else {
            Some(self.stat_node(ino, fh).await?)
        };
        let a = merge(&set, current.as_ref());
        let mut via_file = None;
        if let Some(f) = &file {
            let a = &a;
            // workaround=fstat: the attributes by path, on the same connection (in order).
            let by_path = path
                .as_ref()
                .filter(|_| self.opts.workarounds.fstat)
                .map(|p| self.remote(p));
            let by_path = &by_path;
            let r = self
                .with_file(f, |c, h| async move {
                    let stat = async {
                        match by_path {
                            Some(r) => self.attrs_at(&c.sftp, r).await,
                            None => c.sftp.fstat(&h).await,
                        }
                    };
                    let (s, st) = join(c.sftp.fsetstat(&h, a), stat).await;
                    s?;
                    st
                })
                .await;
            match r {
                // A handle found here (not the caller's) may have been closed under us by
                // a release that came just after the lookup: by path instead.
                Err(e) if fh.is_none() && !f.usable() && path.is_some() && e.is_failure() => {}
                r => via_file = Some(r.map_err(|e| setattr_error(&set, e))?),
            }
        }
        let fresh = match (via_file, &path) {
            (Some(fresh), _) => {
                if let Some(p) = &path {
                    // Exact even with writes in flight: the FSTAT queued behind them.
                    self.put_attrs_if_still_at(ino, p, &fresh);
                }
                fresh
            }
            (None, Some(p)) => {
                let r = self.remote(p);
                let (r, a) = (&r, &a);
                let symlink = self
                    .inodes
                    .lock()
                    .unwrap()
                    .get(ino)
                    .is_some_and(|n| n.kind == libc::S_IFLNK);
                let fresh = self
                    .call(|c| async move {
                        let set = async {
                            if symlink {
                                c.sftp.lsetstat(r, a).await
                            } else {
                                c.sftp.setstat(r, a).await
                            }
                        };
                        let stat = async {
                            if symlink {
                                c.sftp.lstat(r).await
                            } else {
                                self.attrs_at(&c.sftp, r).await
                            }
                        };
                        let (s, st) = join(set, stat).await;
                        s?;
                        st
                    })
                    .await
                    .map_err(|e| setattr_error(&set, e))?;
                self.put_attrs_if_still_at(ino, p, &fresh);
                fresh
            }
            (None, None) => return Err(FsError::new(libc::ENOENT)),
        };
        if set.size.is_some() {
            self.drop_readahead(ino);
        }
        // The answer is exact (queued behind the file's writes, or after they landed).
        self.exact_after_writes(ino, &fresh, mark, |_, p| {
            self.inodes.lock().unwrap().path(ino).as_deref() == Some(p)
        });
        Ok(self.attr(ino, &fresh, None))
    }

    /// The target as the server has it (and the cache keeps it), shown through the symlink
    /// policy and then in the local character set.
    pub async fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let path = self.path_of(ino)?;
        let t = match self.cache.link(&path) {
            Some(t) => t,
            None => {
                let r = self.remote(&path);
                let r = &r;
                let t = self
                    .call(|c| async move { c.sftp.readlink(r).await })
                    .await?;
                self.cache.put_link(&path, &t);
                t
            }
        };
        let shown = self.shown_target(&path, t)?;
        Ok(match &self.opts.charsets {
            Some(c) => c.target_to_local(&shown).into_owned(),
            None => shown,
        })
    }

    /// The symlink policy works in the server's names: the root and the target are the
    /// server's, and so must the link's path be.
    fn shown_target(&self, link: &[u8], target: Vec<u8>) -> FsResult<Vec<u8>> {
        // A server whose READLINK answers the resolved absolute path (ProFTPD) loses the
        // relative target the link holds: sshfs's transform gives it back inside the mount.
        let resolves = self.pool.profile().is_some_and(|p| p.readlink_resolves());
        let policy = if resolves && !self.opts.symlinks.transform {
            std::borrow::Cow::Owned(crate::fs::SymlinkPolicy {
                transform: true,
                ..self.opts.symlinks.clone()
            })
        } else {
            std::borrow::Cow::Borrowed(&self.opts.symlinks)
        };
        policy
            .show(&self.base, &self.server_rel(link), &target)
            .ok_or_else(|| {
                tracing::debug!(
                    "symlink target leads out of the mount; refused (contain_symlinks)"
                );
                FsError::new(libc::EPERM)
            })
    }

    pub async fn statfs(&self) -> FsResult<StatVfs> {
        let root = &self.root;
        match self
            .call(|c| async move { c.sftp.statvfs(root).await })
            .await
        {
            Ok(v) => Ok(v),
            Err(RemoteError::Unsupported(_)) => {
                let made_up = made_up_statvfs();
                match self
                    .call(|c| async move { c.sftp.space_available(root).await })
                    .await
                {
                    Ok(v) => Ok(StatVfs {
                        files: made_up.files,
                        ffree: made_up.ffree,
                        favail: made_up.favail,
                        ..v
                    }),
                    // Without either extension (or with ones that do not work), a large
                    // filesystem, as sshfs reports: programs and file managers refuse to copy
                    // onto a full one.
                    Err(RemoteError::Unsupported(_)) => Ok(made_up),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn access(&self, ino: u64, mask: i32, caller: Caller) -> FsResult<()> {
        let a = self.stat_node(ino, None).await?;
        if mask == libc::F_OK {
            return Ok(());
        }
        if mask & libc::W_OK != 0 && self.opts.read_only {
            return Err(FsError::new(libc::EROFS));
        }
        let f = self.attr(ino, &a, None);
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
}

/// How recent the server's word must be to answer a no-op change without asking it.
const NOOP_EVIDENCE_AGE: std::time::Duration = std::time::Duration::from_secs(1);

impl Filesystem {
    /// The mode and times of a file this mount made with `O_EXCL` and has open for writing
    /// (tar, cp and rsync set them on every file they make): the FSETSTAT is queued behind
    /// the file's writes and answered at once, like a write. The owner cannot be refused
    /// them; should the server fail anyway, the next write, flush, fsync or close says so.
    /// `None`: not such a change, or not enough known to answer; do it the usual way.
    fn set_mode_times_behind(
        &self,
        ino: u64,
        f: &Arc<crate::fs::handle::OpenFile>,
        path: &[u8],
        set: &SetAttr,
    ) -> Option<FileAttr> {
        let refusing = self.pool.profile().is_some_and(|p| p.setstat_refused());
        let eligible = f.made_here.load(std::sync::atomic::Ordering::SeqCst)
            && !refusing
            && f.writable
            && f.usable()
            && f.peek_error().is_none()
            && set.size.is_none()
            && set.uid.is_none()
            && set.gid.is_none()
            && (set.mode.is_some() || set.atime.is_some() || set.mtime.is_some());
        if !eligible {
            return None;
        }
        let known = self.cache.attrs_known(path)?;
        let local_size = self.inodes.lock().unwrap().get(ino)?.local_size;
        // The size in the answer must be right: the cache's, or the one the writes imply;
        // and an mtime kept as it is must be the one the writes gave it, not the cache's.
        if known.stale && (local_size.is_none() || set.keeps_mtime()) {
            return None;
        }
        let change = merge(set, Some(&known.attrs));
        let mut after = if known.stale {
            written_now(&known.attrs)
        } else {
            known.attrs.clone()
        };
        after.size = local_size.or(known.attrs.size);
        if let Some(m) = change.permissions {
            let kind = after.permissions.unwrap_or(libc::S_IFREG) & libc::S_IFMT;
            after.permissions = Some(kind | m);
        }
        if change.atime_mtime.is_some() {
            after.atime_mtime = change.atime_mtime;
        }
        // What the file will be once the queue lands: exact, unless a write since the last
        // time change left its mtime to the server.
        let exact = change.atime_mtime.is_some() || !known.stale;
        self.queue(f, crate::fs::handle::Queued::SetStat(change), None);
        self.cache.put_attrs(path, &after, known.nlink);
        if !exact {
            self.cache.mark_written(path);
        }
        Some(self.attr(ino, &after, known.nlink))
    }
}

/// Cached attributes of a file written since they were read: the server stamps its mtime
/// when the writes land; until it says, the time of this answer is nearer than the old one.
fn written_now(a: &Attrs) -> Attrs {
    let mut a = a.clone();
    if let Some((atime, _)) = a.atime_mtime {
        a.atime_mtime = Some((atime, attr::to_secs(SystemTime::now())));
    }
    a
}

/// OpenSSH folds the EFBIG of a size the server's filesystem cannot hold into a generic
/// FAILURE; nothing else a client can ask makes a size change fail that way.
pub(in crate::fs) fn setattr_error(set: &SetAttr, e: RemoteError) -> FsError {
    if set.size.is_some() && e.is_failure() {
        FsError::new(libc::EFBIG)
    } else {
        e.into()
    }
}

/// Whether `set` asks only for owner and mode values `a` already has.
fn changes_nothing(set: &SetAttr, a: &Attrs) -> bool {
    let owner_same = match (set.uid, set.gid, a.uid_gid) {
        (None, None, _) => true,
        (u, g, Some((cu, cg))) => u.is_none_or(|u| u == cu) && g.is_none_or(|g| g == cg),
        _ => false,
    };
    let mode_same = match (set.mode, a.permissions) {
        (None, _) => true,
        (Some(m), Some(p)) => m & 0o7777 == p & 0o7777,
        _ => false,
    };
    // The kernel leaves clearing setuid and setgid on chown to us (FUSE_HANDLE_KILLPRIV): the
    // server's chown does it, so such a chown is never a no-op.
    let kills_privileges = (set.uid.is_some() || set.gid.is_some())
        && !a.is_dir()
        && a.permissions.is_some_and(|p| {
            p & libc::S_ISUID != 0
                || p & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP
        });
    set.size.is_none()
        && set.atime.is_none()
        && set.mtime.is_none()
        && owner_same
        && mode_same
        && !kills_privileges
}

/// The SETSTAT attributes for a change. SFTP sets uid and gid (and atime and mtime) only
/// together: the one not asked for comes from `current`.
pub(in crate::fs) fn merge(set: &SetAttr, current: Option<&Attrs>) -> Attrs {
    let mut a = Attrs {
        size: set.size,
        permissions: set.mode.map(|m| m & 0o7777),
        ..Attrs::default()
    };
    if set.uid.is_some() || set.gid.is_some() {
        let (cu, cg) = current.and_then(|c| c.uid_gid).unwrap_or((0, 0));
        a.uid_gid = Some((set.uid.unwrap_or(cu), set.gid.unwrap_or(cg)));
    }
    if set.atime.is_some() || set.mtime.is_some() {
        let now = SystemTime::now();
        let t = |s: SetTime| match s {
            SetTime::Now => attr::to_secs(now),
            SetTime::At(t) => attr::to_secs(t),
        };
        let (ca, cm) = current.and_then(|c| c.atime_mtime).unwrap_or((0, 0));
        a.atime_mtime = Some((
            set.atime.map(t).unwrap_or(ca),
            set.mtime.map(t).unwrap_or(cm),
        ));
    }
    a
}

/// What `df` shows of a server that cannot say: 1000 GiB free of 1000 GiB, a billion
/// inodes (sshfs's numbers).
fn made_up_statvfs() -> StatVfs {
    const BLOCK: u64 = 4096;
    const BLOCKS: u64 = (1000 << 30) / BLOCK;
    const FILES: u64 = 1_000_000_000;
    StatVfs {
        bsize: BLOCK,
        frsize: BLOCK,
        blocks: BLOCKS,
        bfree: BLOCKS,
        bavail: BLOCKS,
        files: FILES,
        ffree: FILES,
        favail: FILES,
        namemax: 255,
        ..StatVfs::default()
    }
}
