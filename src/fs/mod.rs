//! The filesystem core: FUSE-shaped operations in inodes and byte names, answered over SFTP.
//! Async and free of the kernel interface, so it is tested against a real sftp-server alone.

pub mod error;
pub mod errors_seen;
pub mod file;
pub mod handle;
pub mod integrity;
pub mod meta;
pub mod names;
mod probe;
pub mod read;
pub mod write;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fuser::FileAttr;
use tokio::sync::Semaphore;

use crate::remote::protocol::*;
use crate::remote::{Attrs, Conn, Pool, RemoteError, Sftp};
use meta::{attr, cache};
use names::{charset, dir, inode, revalidate, symlink};
use read::file_ahead;
use write::journal;

pub use attr::AttrPolicy;
pub use cache::CacheOptions;
use cache::MetaCache;
pub use error::{FsError, FsResult};
use handle::{DirListing, HandleTable, OpenFile};
use inode::{join, InodeTable, RelPath};
pub use symlink::SymlinkPolicy;

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

impl SetAttr {
    /// A time change that leaves the mtime as it is (`UTIME_OMIT`): SFTP sets both times
    /// together, so the current one must be sent back.
    pub fn keeps_mtime(&self) -> bool {
        self.atime.is_some() && self.mtime.is_none()
    }

    /// Nothing besides the size is asked for.
    pub fn only_size(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
    }
}

/// Who is asking, for `access`.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// Tunables of the core; the defaults are what a mount gets without options.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: AttrPolicy,
    pub read_only: bool,
    pub symlinks: SymlinkPolicy,
    pub cache: CacheOptions,
    /// Prefetch subdirectory listings when a directory is used.
    pub prefetch: bool,
    /// Directory listings fetched at once by prefetch.
    pub prefetch_parallel: usize,
    /// Bytes of unacknowledged writes, over all files (write-behind).
    pub write_behind_bytes: usize,
    /// Largest read-ahead window of one file, and of all files together.
    pub readahead_max: usize,
    pub readahead_total: usize,
    /// `link` makes hard links where the server can (not with sshfs's `disable_hardlink`).
    pub hardlinks: bool,
    /// sshfs's `sshfs_sync`: a write is answered once the server acknowledged it.
    pub sync_writes: bool,
    /// sshfs's `direct_io`: the kernel's page cache is bypassed.
    pub direct_io: bool,
    pub workarounds: crate::config::Workarounds,
    /// `attr_refusals=ignore`: a mode or time change the server refuses succeeds.
    pub ignore_attr_refusals: bool,
    /// `async_writes`: changes are answered once queued (`write/journal.rs`).
    pub async_writes: bool,
    /// File names in another character set on the server (`from_code=`/`to_code=`); `None`:
    /// names pass as they are.
    pub charsets: Option<Arc<charset::NameCharsets>>,
    /// Hashes on the server, and `verify_writes` (`integrity/`).
    pub integrity: integrity::IntegrityOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: AttrPolicy::default(),
            read_only: false,
            symlinks: SymlinkPolicy::sshfs_default(),
            cache: CacheOptions::default(),
            prefetch: true,
            prefetch_parallel: 16,
            // Together with the caches these keep the daemon near 40 MiB resident.
            write_behind_bytes: 8 << 20,
            readahead_max: 8 << 20,
            readahead_total: 16 << 20,
            hardlinks: true,
            sync_writes: false,
            direct_io: false,
            workarounds: crate::config::Workarounds::default(),
            ignore_attr_refusals: false,
            async_writes: false,
            charsets: None,
            integrity: integrity::IntegrityOptions::default(),
        }
    }
}

pub struct Filesystem {
    /// Ourselves, for background tasks (write-behind, prefetch) that outlive a call.
    me: std::sync::Weak<Filesystem>,
    pool: Arc<Pool>,
    /// Absolute remote path of the mount root: the remote directory, and below it `subdir=`.
    root: Vec<u8>,
    /// The remote directory without `subdir=`, what sshfs's symlink rules see as the base.
    base: Vec<u8>,
    inodes: Arc<Mutex<InodeTable>>,
    files: HandleTable<OpenFile>,
    dirs: HandleTable<DirListing>,
    cache: MetaCache,
    opts: Options,
    write_budget: Arc<Semaphore>,
    /// Bytes held by read-ahead over all files.
    readahead_bytes: Arc<AtomicUsize>,
    opens: file::OpenCounts,
    prefetch_slots: Arc<Semaphore>,
    /// Listings being fetched, shared by everyone who needs them.
    listing_inflight: dir::Inflight,
    /// Shared by renames and removals for their round trip and inode-table update; taken
    /// alone by a re-open after a reconnect, so the path it opens cannot move under it.
    path_changes: tokio::sync::RwLock<()>,
    /// One probe of the server at a time (see `probe.rs`).
    probe_lock: tokio::sync::Mutex<()>,
    /// The log said that refused attribute changes are ignored.
    attr_refusal_said: AtomicBool,
    stopping: AtomicBool,
    errors_seen: errors_seen::ErrorsSeen,
    in_use: revalidate::InUse,
    revalidation: revalidate::Revalidation,
    file_ahead: file_ahead::FileAhead,
    /// The queue of the asynchronous write mode, when it is on.
    journal: Option<journal::Journal>,
    /// Writes the kernel sent and the core has not queued yet, for reads sent after them.
    arrivals: Arc<write::arrivals::Arrivals>,
    /// Hashes: digests known, `verify_writes` and its counts.
    integrity: integrity::Integrity,
}

/// What the core is doing, at one moment, for `sftpfs status`.
#[derive(Debug, Clone)]
pub struct FsStatus {
    pub open_files: usize,
    /// Open files by the pool member their handle lives on.
    pub open_files_by_member: Vec<usize>,
    /// Data written through the mount that the server has not acknowledged yet.
    pub unacked_write_bytes: u64,
    pub readahead_bytes: usize,
    /// Opens answered since the mount, and those that kept the kernel's pages of the file.
    pub opens: (u64, u64),
    /// Files read ahead across files, waiting for their `open`.
    pub files_read_ahead: usize,
    /// The asynchronous mode's queue, when it is on.
    pub journal: Option<journal::JournalStatus>,
    /// Attributes, listings, link targets.
    pub caches: [cache::CacheStats; 3],
    /// Nodes in the inode table: the names the kernel holds and the directories above them.
    pub inodes: usize,
    /// What background revalidation sent and received since the mount.
    pub revalidation: revalidate::RevalidationCost,
    pub errors_by_errno: std::collections::BTreeMap<i32, u64>,
    pub recent_errors: Vec<errors_seen::SeenError>,
    pub pool: crate::remote::PoolStatus,
    /// The connection is lost and logging in again needs a person (`sftpfs reauth`).
    pub needs_authentication: bool,
    /// The server and what is degraded on it (the mount's log line).
    pub server: Option<String>,
    pub sftp_version: Option<u32>,
    /// Hashes on the server and `verify_writes`.
    pub integrity: integrity::IntegrityStatus,
}

impl Filesystem {
    /// `base` must be an absolute remote directory (see `connect::resolve_root`); the mount
    /// shows it, or its `opts.symlinks.subdir` below it.
    pub fn new(pool: Arc<Pool>, base: Vec<u8>, opts: Options) -> Arc<Self> {
        Self::with_journal(pool, base, opts, None)
    }

    /// [`Filesystem::new`] with the journal of the asynchronous mode (`opts.async_writes`),
    /// opened on its directory; without one, changes are answered the usual way.
    pub fn with_journal(
        pool: Arc<Pool>,
        base: Vec<u8>,
        opts: Options,
        journal: Option<journal::Journal>,
    ) -> Arc<Self> {
        let inodes = Arc::new(Mutex::new(InodeTable::new()));
        let root = subdir_of(&base, &opts.symlinks.subdir);
        Arc::new_cyclic(|me| Filesystem {
            me: me.clone(),
            pool,
            root,
            base,
            inodes: inodes.clone(),
            files: HandleTable::default(),
            dirs: HandleTable::default(),
            cache: MetaCache::new(opts.cache, inodes),
            write_budget: Arc::new(Semaphore::new(opts.write_behind_bytes)),
            readahead_bytes: Arc::new(AtomicUsize::new(0)),
            opens: Default::default(),
            prefetch_slots: Arc::new(Semaphore::new(opts.prefetch_parallel.max(1))),
            listing_inflight: dir::Inflight::default(),
            path_changes: tokio::sync::RwLock::new(()),
            probe_lock: tokio::sync::Mutex::new(()),
            attr_refusal_said: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            errors_seen: Default::default(),
            in_use: Default::default(),
            revalidation: Default::default(),
            file_ahead: Default::default(),
            journal,
            arrivals: Default::default(),
            integrity: integrity::Integrity::new(opts.integrity.clone()),
            opts,
        })
    }

    /// Notes an error answered to the kernel for `op` on `ino` (and `name` in it, for calls
    /// about a name in a directory), if it is worth counting.
    pub fn note_error(&self, op: &'static str, ino: u64, name: &[u8], errno: i32) {
        if errors_seen::ErrorsSeen::worth_noting(op, errno) {
            let dir = self.inodes.lock().unwrap().path(ino).unwrap_or_default();
            let path = match name {
                [] => dir,
                _ => inode::join(&dir, name),
            };
            self.errors_seen.note(errors_seen::SeenError {
                at: std::time::SystemTime::now(),
                op,
                path,
                errno,
            });
        }
    }

    /// Forgets what is cached at or below `path` (relative to the mount root, "" for all):
    /// attributes, listings, link targets, and the read-ahead of files open there. Returns
    /// the names the kernel may hold there, for it to forget too.
    pub fn refresh(&self, path: &[u8]) -> Vec<revalidate::StaleName> {
        // Files read ahead there are not served any more: their attributes are forgotten.
        self.cache.forget_under(path);
        self.outdate_listings(|p| inode::within(p, path));
        let names: Vec<revalidate::StaleName> = (self.inodes.lock().unwrap().names_under(path))
            .into_iter()
            .map(|(parent, name, ino)| revalidate::StaleName {
                parent,
                name,
                ino,
                // A refresh does not know what changed: each is looked up again when used.
                entry: revalidate::EntryFate::Expire,
            })
            .collect();
        let inos: std::collections::HashSet<u64> = names.iter().map(|n| n.ino).collect();
        for f in self.files.all(|f| path.is_empty() || inos.contains(&f.ino)) {
            f.readahead.lock().unwrap().clear();
        }
        tracing::info!(
            "refresh of {}: cached attributes and listings dropped",
            if path.is_empty() {
                "the whole mount".into()
            } else {
                String::from_utf8_lossy(path)
            }
        );
        names
    }

    /// `sftpfs reauth`: a person logs in again through `asker`.
    pub async fn reauth(&self, asker: Arc<dyn crate::ssh::Asker>) -> Result<(), String> {
        self.pool.reauth(asker).await
    }

    pub fn status(&self) -> FsStatus {
        let files = self.files.all(|_| true);
        let (errors_by_errno, recent_errors) = self.errors_seen.snapshot();
        let profile = self.pool.profile();
        let mut by_member = vec![0; self.pool.size()];
        for f in &files {
            if let Some(n) = by_member.get_mut(f.slot()) {
                *n += 1;
            }
        }
        FsStatus {
            open_files: files.len(),
            open_files_by_member: by_member,
            unacked_write_bytes: files.iter().map(|f| f.unacked_bytes()).sum(),
            readahead_bytes: self.readahead_bytes.load(Ordering::Relaxed),
            opens: self.opens.get(),
            files_read_ahead: self.file_ahead.kept(),
            journal: self.journal_status(),
            caches: self.cache.stats(),
            inodes: self.inodes.lock().unwrap().len(),
            revalidation: self.revalidation_cost(),
            errors_by_errno,
            recent_errors,
            pool: self.pool.status(),
            needs_authentication: self.pool.needs_person(),
            server: profile.as_ref().map(|p| p.describe()),
            sftp_version: profile.map(|p| p.version),
            integrity: self.integrity.status(),
        }
    }

    /// With `follow_symlinks` the kernel must not cache the entry `symlink` answers: a link
    /// shows as its target from the next lookup on.
    pub fn follows_symlinks(&self) -> bool {
        self.opts.symlinks.follow
    }

    /// With `direct_io` open files bypass the kernel's page cache (FOPEN_DIRECT_IO).
    pub fn direct_io(&self) -> bool {
        self.opts.direct_io
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Stops background work (prefetch) at unmount.
    pub fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.prefetch_slots.close();
    }

    /// The absolute remote path for a path below the mount root. The one place where local
    /// names become the server's (the root, as given, is not converted).
    fn remote(&self, rel: &[u8]) -> Vec<u8> {
        if rel.is_empty() {
            return self.root.clone();
        }
        let mut p = self.root.clone();
        if !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(&self.server_rel(rel));
        p
    }

    /// A local path below the mount root in the server's character set.
    fn server_rel<'a>(&self, rel: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match &self.opts.charsets {
            Some(c) => c.server_path(rel),
            None => std::borrow::Cow::Borrowed(rel),
        }
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
        if name.len() > 255 {
            return Err(FsError::new(libc::ENAMETOOLONG));
        }
        Ok(join(&self.path_of(parent)?, name))
    }

    /// `child_path` for a name about to be made: one the server's character set can hold
    /// (EILSEQ otherwise, as libfuse's iconv module says), so that it lists as itself.
    fn new_child_path(&self, parent: u64, name: &[u8]) -> FsResult<RelPath> {
        let path = self.child_path(parent, name)?;
        match &self.opts.charsets {
            Some(c) if !c.creatable(&path) => Err(FsError::new(libc::EILSEQ)),
            _ => Ok(path),
        }
    }

    fn writable(&self) -> FsResult<()> {
        if self.opts.read_only {
            Err(FsError::new(libc::EROFS))
        } else {
            Ok(())
        }
    }

    /// The attributes the kernel sees: the server's, with what this mount knows better
    /// (link count, and the size of a file whose writes the server has not all applied).
    fn attr(&self, ino: u64, a: &Attrs, nlink: Option<u32>) -> FileAttr {
        let t = self.inodes.lock().unwrap();
        self.attr_in(&t, ino, a, nlink)
    }

    fn attr_in(&self, t: &InodeTable, ino: u64, a: &Attrs, nlink: Option<u32>) -> FileAttr {
        let node = t.get(ino);
        let mut f = self
            .opts
            .policy
            .file_attr(ino, a, node.and_then(|n| n.nlink).or(nlink));
        if let Some(size) = node.and_then(|n| n.local_size) {
            f.size = size;
            f.blocks = size.div_ceil(512);
        }
        f
    }

    /// `exact` was read by a request asked at `mark` (see [`InodeTable::attr_mark`]), the
    /// request of a change (`by_change`) or a plain question. If it is the file's state now
    /// ([`InodeTable::answer_current`]), the size local writes implied gives way to it, and
    /// it is cached if `still` holds. Otherwise it may predate a write (another descriptor's,
    /// answered while this request travelled): it is not used, and the size the writes imply
    /// stays — an append must never go where an older size says.
    fn server_caught_up(
        &self,
        ino: u64,
        exact: Option<(&Attrs, Option<u32>)>,
        mark: inode::AttrMark,
        by_change: bool,
        still: impl FnOnce(&cache::MetaCache, &[u8]) -> bool,
    ) {
        let settled = || {
            self.inodes
                .lock()
                .unwrap()
                .answer_current(ino, mark, by_change)
        };
        let landed = || {
            let mut t = self.inodes.lock().unwrap();
            t.answer_current(ino, mark, by_change)
                && t.get_mut(ino).and_then(|n| n.local_size.take()).is_some()
        };
        let path = self.inodes.lock().unwrap().path(ino);
        match path {
            Some(p) => self
                .cache
                .writes_landed(&p, exact, |c| settled() && still(c, &p), landed),
            None => {
                landed();
            }
        }
    }

    /// `fresh` was read by the request of a change to `ino` (asked at `mark`, the change
    /// itself on its way) after every earlier write landed, or queued behind them on one
    /// handle: its size is the file's now (say, after a truncate), unless another write
    /// came meanwhile.
    fn exact_after_writes(
        &self,
        ino: u64,
        fresh: &Attrs,
        mark: inode::AttrMark,
        still: impl FnOnce(&cache::MetaCache, &[u8]) -> bool,
    ) {
        {
            let mut t = self.inodes.lock().unwrap();
            // With a write queued while the change travelled, the size it implies (set by
            // `size_changing` and extended by the write) stays.
            if t.answer_current(ino, mark, true) {
                if let Some(n) = t.get_mut(ino).filter(|n| n.local_size.is_some()) {
                    n.local_size = fresh.size;
                }
            }
        }
        self.server_caught_up(ino, Some((fresh, None)), mark, true, still);
    }

    /// A change of `ino`'s size to `size` goes out now (a truncate): a write queued while it
    /// travels extends this size, not the one from before.
    fn size_changing(&self, ino: u64, size: u64) {
        if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
            n.local_size = Some(size);
        }
        self.data_changed_otherwise(ino, Some(size));
    }

    /// A change of `ino`'s size failed: what the size is, only the server can say now.
    fn size_unknown(&self, ino: u64) {
        let path = {
            let mut t = self.inodes.lock().unwrap();
            if let Some(n) = t.get_mut(ino) {
                n.local_size = None;
            }
            t.path(ino)
        };
        if let Some(p) = path {
            self.cache.invalidate(&p);
        }
    }

    /// Hands the kernel an entry for `path`: counts the lookup and builds its attributes.
    fn entry(&self, path: &[u8], a: &Attrs, nlink: Option<u32>) -> FileAttr {
        let ino = {
            let mut t = self.inodes.lock().unwrap();
            let ino = t.lookup(path);
            if let Some(n) = t.get_mut(ino) {
                n.nlink = nlink.or(n.nlink);
                n.kind = a.file_type().unwrap_or(n.kind);
            }
            ino
        };
        self.attr(ino, a, nlink)
    }

    /// Runs an idempotent request on a pooled session; when the connection died under it,
    /// once more on its replacement (the pool reconnects, within the request deadline).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, RemoteError>
    where
        F: Fn(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, RemoteError>>,
    {
        // Idempotent: whether a first attempt took effect matters not, the second's answer
        // stands.
        self.call_once(f, || async { None }).await
    }

    /// Runs `request` unless the server is away (the probe finds when it is back; until then
    /// nothing waits for a connection), and marks it away when `request` found none.
    async fn while_reachable<T>(
        &self,
        request: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        if self.away() {
            return Err(RemoteError::ConnectionLost);
        }
        let r = request.await;
        if let Err(e) = &r {
            self.note_failure(e);
        }
        r
    }

    /// Like `call`, for a request that is not idempotent: if the second attempt fails,
    /// `took_effect` says whether the first one did its work before its reply was lost.
    async fn call_once<T, F, Fut, D, DFut>(&self, f: F, took_effect: D) -> Result<T, RemoteError>
    where
        F: Fn(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, RemoteError>>,
        D: FnOnce() -> DFut,
        DFut: Future<Output = Option<T>>,
    {
        self.while_reachable(async {
            self.settle().await?;
            let c = self.pool.any().await?;
            match f(c.clone()).await {
                Err(e) if e.is_dead() => {
                    let c = self.pool.get(c.slot).await?;
                    match f(c).await {
                        Err(e2) if !e2.is_dead() => took_effect().await.ok_or(e2),
                        r => r,
                    }
                }
                r => r,
            }
        })
        .await
    }

    /// The attributes a name shows: LSTAT, or with `follow_symlinks` STAT, so that a link
    /// shows as what it points to, and as itself when that is missing (a dangling link).
    /// Every request that tells the kernel about a name goes through here: one answer of
    /// another file type for the same inode is EIO to the kernel.
    async fn attrs_at(&self, sftp: &Sftp, r: &[u8]) -> Result<Attrs, RemoteError> {
        if !self.opts.symlinks.follow {
            return sftp.lstat(r).await;
        }
        match sftp.stat(r).await {
            Err(e) if e.is_status(SSH_FX_NO_SUCH_FILE) => sftp.lstat(r).await,
            other => other,
        }
    }

    /// Fresh attributes of a remote path, bypassing the cache; stored in it.
    async fn lstat_remote(&self, rel: &[u8]) -> Result<Attrs, RemoteError> {
        if let Some(a) = self.listed_if_lstat_follows(rel).await {
            return Ok(a);
        }
        let r = self.remote(rel);
        let r = &r;
        let generation = self.cache.generation(inode::parent_of(rel));
        let a = self
            .call(|c| async move { self.attrs_at(&c.sftp, r).await })
            .await?;
        let nlink = {
            let t = self.inodes.lock().unwrap();
            t.get(t.ino_for(rel)).and_then(|n| n.nlink)
        };
        // Not over a local change made while the request travelled (another connection).
        self.cache.put_attrs_if(rel, &a, nlink, generation);
        Ok(a)
    }

    /// On a server whose LSTAT follows links (ProFTPD) but whose listings show them as they
    /// are, a name's attributes come from its directory's listing.
    async fn listed_if_lstat_follows(&self, rel: &[u8]) -> Option<Attrs> {
        if rel.is_empty() || self.opts.symlinks.follow {
            return None;
        }
        if !self.pool.profile().is_some_and(|p| p.lstat_follows()) {
            return None;
        }
        let me = self.me.upgrade()?;
        let listing = me
            .listing_shared(inode::parent_of(rel), dir::Purpose::Asked)
            .await
            .ok()?;
        let known = listing.lock().unwrap().known(cache::name_of(rel));
        // Only to tell links apart: other names are as LSTAT says, and fresh.
        match known {
            cache::Known::Present(e) if e.attrs.is_symlink() => Some(e.attrs),
            _ => None,
        }
    }

    /// Caches what a change to node `ino` left at `path`, unless the node was renamed or
    /// removed while the request travelled: `path` then names another file, or none.
    fn put_attrs_if_still_at(&self, ino: u64, path: &[u8], a: &Attrs) {
        self.cache.put_attrs_where(path, a, None, || {
            self.inodes.lock().unwrap().path(ino).as_deref() == Some(path)
        });
    }

    async fn exists(&self, rel: &[u8]) -> Option<Attrs> {
        self.lstat_remote(rel).await.ok()
    }
}

/// A name of our own that nothing else uses: `.sftpfs-WHAT-PID-N`.
fn scratch_name(what: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".sftpfs-{what}-{}-{n}", std::process::id())
}

/// The absolute remote path of `subdir` (relative, as libfuse's subdir module prepends it)
/// below `base`.
pub fn subdir_of(base: &[u8], subdir: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    let sub = subdir.strip_prefix(b"/").unwrap_or(subdir);
    let sub = sub.strip_suffix(b"/").unwrap_or(sub);
    if !sub.is_empty() {
        if !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(sub);
    }
    p
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

/// SFTP open flags for open(2) flags. `O_APPEND` is not among them: with SSH_FXF_APPEND
/// every WRITE on the handle lands at the server's end of file, also the kernel's writeback
/// of mmap pages (which must stay where they are) and writes replayed after a reconnect;
/// and the server's end is not the file's while writes of other descriptors travel. The
/// core places `O_APPEND` writes itself (`write/write_behind.rs`, `write`).
pub fn pflags(flags: i32) -> u32 {
    let mut p = match flags & libc::O_ACCMODE {
        libc::O_WRONLY => SSH_FXF_WRITE,
        libc::O_RDWR => SSH_FXF_READ | SSH_FXF_WRITE,
        _ => SSH_FXF_READ,
    };
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
