//! Background revalidation of what is in use (`-o revalidate=SECONDS`). Every period each
//! directory in use whose listing is cached is checked by its attributes (one STAT: bytes
//! independent of its size) and listed again only when they say it may have changed; each
//! file open here for reading is checked with FSTAT (`tail -f` on a file the server appends
//! to). What changed on the server is handed back for the kernel to forget. A mount nobody
//! touches sends nothing; one in use sends a few small requests a period while nothing
//! changes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fs::meta::cache::{Entry, Listing};
use crate::fs::names::inode::{join, parent_of, RelPath};
use crate::fs::Filesystem;
use crate::remote::{Attrs, RemoteError, Tally};

/// The most directories listed again per period: each costs its whole listing.
pub const MAX_PER_ROUND: usize = 16;
/// The most directories checked by their attributes per period (all in one round trip).
pub const MAX_CHECKED: usize = 256;
/// The most open files checked with FSTAT per period.
pub const MAX_OPEN_CHECKED: usize = 64;

/// SFTP gives a directory's mtime in whole seconds: a change later in the second its
/// listing was taken leaves the mtime as the listing saw it. A listing taken no later than
/// this many seconds after that mtime may have missed such a change. The listing's time is
/// this machine's clock: the slack covers it running up to a second ahead of the server's;
/// further ahead, such a change shows only when the listing expires (`dcache_timeout`).
const SAME_SECOND_SLACK: i64 = 1;

/// Directories used lately (a lookup in them, a listing of them), with when.
#[derive(Default)]
pub struct InUse(Mutex<HashMap<RelPath, Instant>>);

impl InUse {
    pub fn touch(&self, dir: &[u8]) {
        let mut m = self.0.lock().unwrap();
        if let Some(t) = m.get_mut(dir) {
            *t = Instant::now();
            return;
        }
        // Bounded: the oldest half goes when it grows large.
        if m.len() >= 4096 {
            let mut ages: Vec<Instant> = m.values().copied().collect();
            ages.sort();
            let cut = ages[ages.len() / 2];
            m.retain(|_, t| *t > cut);
        }
        m.insert(dir.to_vec(), Instant::now());
    }

    /// Directories used within `window`, most recent first; forgets the others.
    fn recent(&self, window: Duration) -> Vec<RelPath> {
        let mut m = self.0.lock().unwrap();
        m.retain(|_, t| t.elapsed() < window);
        let mut v: Vec<(RelPath, Instant)> = m.iter().map(|(p, t)| (p.clone(), *t)).collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v.into_iter().map(|(p, _)| p).collect()
    }
}

/// What revalidation keeps between rounds: what it cost, and what each open file looked
/// like at its last check.
#[derive(Default)]
pub struct Revalidation {
    pub tally: Arc<Tally>,
    open_seen: Mutex<HashMap<u64, Looks>>,
    /// The last open file checked: the next round goes on after it, so that past
    /// [`MAX_OPEN_CHECKED`] open files each still gets its turn.
    open_cursor: std::sync::atomic::AtomicU64,
}

/// What revalidation has sent and received since the mount: (requests, bytes out, bytes in).
pub type RevalidationCost = (u64, u64, u64);

/// A name the kernel may hold whose cached state is out of date: the file's attributes and
/// pages go, and its entry as `entry` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleName {
    pub parent: u64,
    pub name: Vec<u8>,
    pub ino: u64,
    pub entry: EntryFate,
}

/// What becomes of the kernel's entry of a [`StaleName`]. Dropping the entry of a directory
/// a process is in (or has just entered) leaves the process without a working directory
/// (getcwd fails with ENOENT), so it is dropped only when the name surely went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryFate {
    /// Still the same file (changed, or just made: the kernel caches no absent names).
    Keep,
    /// Perhaps changed: asked about again at its next use, kept if it still holds.
    Expire,
    /// Gone from the server, or now another kind of file.
    Drop,
}

/// What a listing entry says that a user would see change (not the access time: reading a
/// file changes it).
type Looks = (Option<u64>, Option<u32>, Option<u32>, Option<(u32, u32)>);

fn looks(e: &Entry) -> Looks {
    looks_of(&e.attrs)
}

fn looks_of(a: &Attrs) -> Looks {
    (a.size, a.atime_mtime.map(|t| t.1), a.permissions, a.uid_gid)
}

/// Whether the directory whose attributes are `now` may have changed since `l` was listed.
fn maybe_changed(l: &Listing, now: &Attrs) -> bool {
    let Some(then) = &l.stamp.dir_attrs else {
        return true;
    };
    let mtime = |a: &Attrs| a.atime_mtime.map(|t| t.1);
    if mtime(then) != mtime(now) || then.size != now.size || then.permissions != now.permissions {
        return true;
    }
    mtime(now).is_none_or(|m| m as i64 + SAME_SECOND_SLACK >= l.stamp.taken_secs)
}

impl Filesystem {
    /// How long a directory counts as in use after it was last used: fifteen periods, and
    /// at least as long as its listing may be served from the cache, so that every cached
    /// listing is either revalidated or expired.
    fn in_use_window(&self, period: Duration) -> Duration {
        self.opts.cache.dir_ttl.max(period * 15)
    }

    /// One round (see the module): returns the names that changed on the server, for the
    /// kernel to forget. What it sends is counted in [`Revalidation::tally`].
    pub async fn revalidate_round(self: &Arc<Self>, period: Duration) -> Vec<StaleName> {
        // Nothing can be checked, and what is held is what answers meanwhile (meta/offline.rs).
        if self.away() {
            return Vec::new();
        }
        let tally = self.revalidation.tally.clone();
        Tally::count(tally, async {
            let mut changed = self.check_open_files().await;
            changed.extend(self.check_directories(period).await);
            changed
        })
        .await
    }

    /// What revalidation cost since the mount.
    pub fn revalidation_cost(&self) -> RevalidationCost {
        self.revalidation.tally.get()
    }

    /// Checks the directories in use whose listing is cached by their attributes (at most
    /// [`MAX_CHECKED`], most recently used first), lists again those that may have changed
    /// (at most [`MAX_PER_ROUND`]), and drops the cached listings of the others, so that none
    /// is served unchecked for longer than a round.
    async fn check_directories(self: &Arc<Self>, period: Duration) -> Vec<StaleName> {
        if !self.cache.enabled() {
            return Vec::new();
        }
        let dirs: Vec<RelPath> = self
            .in_use
            .recent(self.in_use_window(period))
            .into_iter()
            .filter(|d| self.cache.peek_listing(d).is_some())
            .collect();
        // Directories holding a file open for writing (under any of its names): a listing
        // answered while a write is on its way would carry the file's old size and mtime
        // into the cache after the write's own update. Their cached listings are dropped
        // instead, as for those past the limit.
        let busy: std::collections::HashSet<RelPath> = {
            let writing: Vec<u64> = self
                .files
                .all(|f| f.writable)
                .iter()
                .map(|f| f.ino)
                .collect();
            let t = self.inodes.lock().unwrap();
            writing
                .iter()
                .flat_map(|&ino| t.paths(ino))
                .map(|p| parent_of(&p).to_vec())
                .collect()
        };
        let mut checked = Vec::new();
        for dir in dirs {
            // A directory made here, being filled (tar x, cp -r into the mount), keeps its
            // listing until it expires: dropped, each new name would cost a round trip.
            let made_here = || {
                self.cache
                    .peek_listing(&dir)
                    .is_some_and(|l| l.lock().unwrap().made_here)
            };
            if busy.contains(&dir) && made_here() {
                continue;
            }
            if checked.len() >= MAX_CHECKED || busy.contains(&dir) {
                self.cache.drop_listing(&dir);
                continue;
            }
            checked.push(dir);
        }
        // Every directory's attributes in one round trip.
        let answers =
            futures::future::join_all(checked.iter().map(|d| self.dir_attrs_now(d))).await;
        let mut changed = Vec::new();
        let mut relisted = 0;
        for (dir, (asked, answer)) in checked.iter().zip(answers) {
            let Some(l) = self.cache.peek_listing(dir) else {
                continue;
            };
            let again = match &answer {
                Ok(a) => {
                    let mut l = l.lock().unwrap();
                    let again = maybe_changed(&l, a);
                    if !again && asked > l.vouched.into_std() {
                        l.vouched = asked.into();
                    }
                    again
                }
                // With the server away, what is held answers meanwhile.
                Err(_) if self.away() => continue,
                Err(e) => {
                    tracing::debug!("checking {}: {e}", String::from_utf8_lossy(dir));
                    self.cache.drop_listing(dir);
                    continue;
                }
            };
            if !again {
                continue;
            }
            if relisted >= MAX_PER_ROUND {
                self.cache.drop_listing(dir);
                continue;
            }
            relisted += 1;
            match self.revalidate_dir(dir).await {
                Ok(c) => changed.extend(c),
                Err(_) if self.away() => {}
                Err(e) => {
                    tracing::debug!("revalidating {}: {e}", String::from_utf8_lossy(dir));
                    self.cache.drop_listing(dir);
                }
            }
        }
        changed
    }

    /// The attributes of directory `dir` on the server, and when they were asked for.
    async fn dir_attrs_now(&self, dir: &[u8]) -> (Instant, Result<Attrs, RemoteError>) {
        let r = self.remote(dir);
        let r = &r;
        let asked = Instant::now();
        let a = self.call(|c| async move { c.sftp.stat(r).await }).await;
        (asked, a)
    }

    /// Checks the files open here for reading with FSTAT (at most [`MAX_OPEN_CHECKED`]): one
    /// that changed since its last check (or since the cache took its attributes) has its
    /// attributes and read-ahead forgotten, and is named for the kernel.
    async fn check_open_files(&self) -> Vec<StaleName> {
        // A file open for writing here changes by this mount's own writes.
        let writing: std::collections::HashSet<u64> = self
            .files
            .all(|f| f.writable)
            .iter()
            .map(|f| f.ino)
            .collect();
        let mut files = self
            .files
            .all(|f| !f.writable && f.usable() && !writing.contains(&f.ino));
        files.sort_by_key(|f| f.ino);
        files.dedup_by_key(|f| f.ino);
        let open: std::collections::HashSet<u64> = files.iter().map(|f| f.ino).collect();
        let cursor = &self.revalidation.open_cursor;
        let after = files.partition_point(|f| f.ino <= cursor.load(Ordering::Relaxed));
        files.rotate_left(after);
        files.truncate(MAX_OPEN_CHECKED);
        if let Some(last) = files.last() {
            cursor.store(last.ino, Ordering::Relaxed);
        }
        let answers = futures::future::join_all(files.iter().map(|f| async move {
            let (c, h) = f.current();
            if !c.is_alive() {
                return None;
            }
            c.sftp.fstat(&h).await.ok()
        }))
        .await;
        let mut stale = Vec::new();
        {
            let mut seen = self.revalidation.open_seen.lock().unwrap();
            seen.retain(|ino, _| open.contains(ino));
            for (f, a) in files.iter().zip(answers) {
                let Some(a) = a else { continue };
                let Some(path) = self.inodes.lock().unwrap().path(f.ino) else {
                    continue;
                };
                let now = looks_of(&a);
                let before = seen
                    .insert(f.ino, now)
                    .or_else(|| self.cache.attrs_known(&path).map(|e| looks(&e)));
                if before.is_some_and(|b| b != now) {
                    stale.push((f.ino, path));
                }
            }
        }
        let mut out = Vec::new();
        for (ino, path) in stale {
            tracing::debug!("{} changed on the server", String::from_utf8_lossy(&path));
            self.cache.invalidate(&path);
            self.drop_readahead(ino);
            let parent = self.inodes.lock().unwrap().ino_for(parent_of(&path));
            out.push(StaleName {
                parent,
                name: crate::fs::meta::cache::name_of(&path).to_vec(),
                ino,
                entry: EntryFate::Keep,
            });
        }
        out
    }

    /// Lists `dir` again; the names whose entry differs from the cached listing's.
    async fn revalidate_dir(self: &Arc<Self>, dir: &[u8]) -> Result<Vec<StaleName>, RemoteError> {
        let Some(old) = self.cache.peek_listing(dir) else {
            return Ok(Vec::new());
        };
        let looks_all = |l: &Mutex<crate::fs::meta::cache::Listing>| -> HashMap<Vec<u8>, Looks> {
            let l = l.lock().unwrap();
            l.entries
                .iter()
                .map(|(n, e)| (n.to_vec(), looks(e)))
                .collect()
        };
        let before = looks_all(&old);
        let after = looks_all(&*self.fetch_listing(dir).await?);
        let kind = |l: &Looks| l.2.map(|p| p & 0o170000);
        // Gone, changed, then new on the server.
        let mut names: Vec<(&Vec<u8>, EntryFate)> = before
            .iter()
            .filter_map(|(n, l)| match after.get(n) {
                None => Some((n, EntryFate::Drop)),
                Some(a) if kind(a) != kind(l) => Some((n, EntryFate::Drop)),
                Some(a) if a != l => Some((n, EntryFate::Keep)),
                Some(_) => None,
            })
            .collect();
        // Gone from the server: its attributes are cached apart from the listing.
        for (n, _) in names.iter().filter(|(n, _)| !after.contains_key(*n)) {
            self.cache.invalidate(&join(dir, n));
        }
        // The kernel holds no entry for a name it was told is absent (a negative lookup is
        // answered with ENOENT, which it does not cache): only the directory needs telling.
        names.extend(
            after
                .keys()
                .filter(|n| !before.contains_key(*n))
                .map(|n| (n, EntryFate::Keep)),
        );
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.outdate_listings(|p| p == dir);
        tracing::debug!(
            "{} changed on the server in {}",
            names.len(),
            String::from_utf8_lossy(dir)
        );
        let out: Vec<StaleName> = {
            let t = self.inodes.lock().unwrap();
            let parent = t.ino_for(dir);
            names
                .into_iter()
                .map(|(n, entry)| StaleName {
                    parent,
                    name: n.clone(),
                    ino: t.ino_for(&join(dir, n)),
                    entry,
                })
                .collect()
        };
        // A file changed under its open handles: their read-ahead is old.
        for n in &out {
            self.drop_readahead(n.ino);
        }
        Ok(out)
    }
}
