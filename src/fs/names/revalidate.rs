//! Background revalidation of the directories in use (`-o revalidate=SECONDS`): each is
//! listed again every period while programs use it, and what changed on the server is
//! handed back for the kernel to forget. A mount nobody touches sends nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fs::meta::cache::Entry;
use crate::fs::names::dir::Purpose;
use crate::fs::names::inode::{join, RelPath};
use crate::fs::Filesystem;
use crate::remote::RemoteError;

/// The most directories listed again per period: a tree walk touches thousands.
pub const MAX_PER_ROUND: usize = 16;

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
    (
        e.attrs.size,
        e.attrs.atime_mtime.map(|t| t.1),
        e.attrs.permissions,
        e.attrs.uid_gid,
    )
}

impl Filesystem {
    /// How long a directory counts as in use after it was last used: fifteen periods, and
    /// at least as long as its listing may be served from the cache, so that every cached
    /// listing is either revalidated or expired.
    fn in_use_window(&self, period: Duration) -> Duration {
        self.opts.cache.dir_ttl.max(period * 15)
    }

    /// One round: lists again the directories in use whose listing is cached (at most
    /// [`MAX_PER_ROUND`], most recently used first; the cached listings of the others are
    /// dropped, so none is served older than a round), and returns the names that changed
    /// on the server, for the kernel to forget.
    pub async fn revalidate_round(self: &Arc<Self>, period: Duration) -> Vec<StaleName> {
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
                .filter_map(|&ino| t.get(ino))
                .flat_map(|n| {
                    n.paths
                        .iter()
                        .map(|p| crate::fs::names::inode::parent_of(p).to_vec())
                })
                .collect()
        };
        let mut changed = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            // A directory made here, being filled (tar x, cp -r into the mount), keeps its
            // listing until it expires: dropped, each new name would cost a round trip.
            let made_here = || {
                self.cache
                    .peek_listing(dir)
                    .is_some_and(|l| l.lock().unwrap().made_here)
            };
            if busy.contains(dir) && made_here() {
                continue;
            }
            if i >= MAX_PER_ROUND || busy.contains(dir) {
                self.cache.drop_listing(dir);
                continue;
            }
            match self.revalidate_dir(dir).await {
                Ok(c) => changed.extend(c),
                Err(e) => {
                    tracing::debug!("revalidating {}: {e}", String::from_utf8_lossy(dir));
                    self.cache.drop_listing(dir);
                }
            }
        }
        changed
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
                .map(|(n, e)| (n.clone(), looks(e)))
                .collect()
        };
        let before = looks_all(&old);
        let after = looks_all(&*self.fetch_listing(dir, Purpose::Asked).await?);
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
