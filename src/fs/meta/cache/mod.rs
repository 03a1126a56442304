//! Metadata caches: attributes (`attrs.rs`), directory listings (`listings.rs`) and symlink
//! targets (`links.rs`) by path, each with a
//! time-to-live and an LRU bound. Fed by READDIR's attributes; every local change updates or
//! drops what it touches, so a local change is visible at once and a change made on the
//! server after the time-out.
//!
//! Attributes belong to the file, not to the name: a change through one name of a
//! hard-linked file reaches every name the inode table knows for it, and a change of a
//! directory's entries drops the directory's own attributes (its mtime moved).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::fs::names::inode::{parent_of, InodeTable, RelPath};
use crate::remote::Attrs;

mod attrs;
mod entries;
mod links;
mod listings;

pub use entries::Entries;
pub use listings::{Asked, Known, Listing, Stamp, FRESH};

#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    pub enabled: bool,
    pub stat_ttl: Duration,
    pub dir_ttl: Duration,
    pub link_ttl: Duration,
    /// How long the absence of a name from a listing fetched from the server is believed
    /// (libfuse's `negative_timeout`). Listings of directories created through the mount
    /// are believed for `dir_ttl`: they started empty, and every change went through here.
    pub negative_ttl: Duration,
    /// Entries per cache.
    pub max_size: usize,
    /// sshfs's cleaning: when something is stored, expired entries are dropped if the last
    /// clean was `clean_interval` ago, or `min_clean_interval` ago and a cache is full.
    pub clean_interval: Duration,
    pub min_clean_interval: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            enabled: true,
            stat_ttl: Duration::from_secs(20),
            dir_ttl: Duration::from_secs(20),
            link_ttl: Duration::from_secs(20),
            negative_ttl: Duration::ZERO,
            max_size: 10_000,
            clean_interval: Duration::from_secs(60),
            min_clean_interval: Duration::from_secs(5),
        }
    }
}

/// An entry of a cached listing.
#[derive(Debug, Clone)]
pub struct Entry {
    pub attrs: Attrs,
    pub nlink: Option<u32>,
    /// The name exists but its attributes changed locally in a way not known here.
    pub stale: bool,
    /// Its size and mtime are the server's answer, not worked out here after a local change:
    /// what a queued removal or rename over the file is based on (a conflict if the server's
    /// file no longer matches when it is sent).
    pub server: bool,
}

struct Timed<T> {
    value: T,
    until: Instant,
}

/// Names the server said are absent, kept (each for [`FRESH`] at most).
const ABSENT_KEPT: usize = 1024;

/// Buckets of per-directory change counters (directories hash into them; a collision only
/// makes the cache more careful).
const GENERATIONS: usize = 1024;

/// Hits and misses of one cache, since mount.
#[derive(Default)]
struct HitCount {
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl HitCount {
    fn note<T>(&self, found: Option<T>) -> Option<T> {
        let n = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        found
    }

    fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

/// One cache at one moment, for `sftpfs status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
    /// The heap it holds, estimated from its entries (what malloc gives for each).
    pub bytes: usize,
}

pub struct MetaCache {
    opts: CacheOptions,
    attr_count: HitCount,
    dir_count: HitCount,
    link_count: HitCount,
    generations: Vec<std::sync::atomic::AtomicU64>,
    attrs: Mutex<LruCache<RelPath, Timed<Entry>>>,
    dirs: Mutex<LruCache<RelPath, Timed<Arc<Mutex<Listing>>>>>,
    links: Mutex<LruCache<RelPath, Timed<Vec<u8>>>>,
    /// Names the server just said are absent: when the LSTAT went out and the directory's
    /// change generation then (see [`MetaCache::absent_just_now`]).
    absent: Mutex<LruCache<RelPath, (Instant, u64)>>,
    /// Held by each local change (its generation bump with what it stores or drops) and by
    /// each store of a server answer checked against a generation: the check and the store
    /// are then one step, and no answer can land between a change's bump and its removals.
    changes: Mutex<()>,
    /// Which names share a file. Locked after `changes`, never while a cache map is held.
    inodes: Arc<Mutex<InodeTable>>,
    last_cleaned: Mutex<Instant>,
    /// Looks through the caches for the names below a removed path.
    tree_scans: std::sync::atomic::AtomicU64,
    /// The server is away (asynchronous mode): expired entries are kept, as what the mount
    /// last knew is what it answers from meanwhile.
    away: std::sync::atomic::AtomicBool,
    /// See [`MetaCache::root_seen`].
    root: Mutex<Option<Attrs>>,
}

impl MetaCache {
    pub fn new(opts: CacheOptions, inodes: Arc<Mutex<InodeTable>>) -> Self {
        let n = NonZeroUsize::new(opts.max_size.max(1)).unwrap();
        // Listings are larger than single entries: keep fewer of them.
        let d = NonZeroUsize::new((opts.max_size / 10).max(1)).unwrap();
        MetaCache {
            attr_count: HitCount::default(),
            dir_count: HitCount::default(),
            link_count: HitCount::default(),
            opts,
            generations: (0..GENERATIONS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            attrs: Mutex::new(LruCache::new(n)),
            dirs: Mutex::new(LruCache::new(d)),
            links: Mutex::new(LruCache::new(n)),
            absent: Mutex::new(LruCache::new(NonZeroUsize::new(ABSENT_KEPT).unwrap())),
            changes: Mutex::new(()),
            inodes,
            last_cleaned: Mutex::new(Instant::now()),
            tree_scans: Default::default(),
            away: Default::default(),
            root: Default::default(),
        }
    }

    /// Whether an entry good `until` still serves at `now`: while the server is away,
    /// whatever is held does (nothing could be checked, and the journal takes the changes).
    fn unexpired(&self, until: Instant, now: Instant) -> bool {
        until > now || self.away.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// See [`MetaCache::away`]: while it holds, nothing expired is dropped.
    pub fn set_away(&self, away: bool) {
        self.away.store(away, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops expired entries when due (see [`CacheOptions::clean_interval`]); called after a
    /// store, with no cache map held.
    fn clean_if_due(&self) {
        if self.away.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let full = || {
            let a = self.attrs.lock().unwrap();
            let l = self.links.lock().unwrap();
            let d = self.dirs.lock().unwrap();
            a.len() >= a.cap().get() || l.len() >= l.cap().get() || d.len() >= d.cap().get()
        };
        {
            let mut last = self.last_cleaned.lock().unwrap();
            let since = now.saturating_duration_since(*last);
            if since <= self.opts.min_clean_interval
                || (since <= self.opts.clean_interval && !full())
            {
                return;
            }
            *last = now;
        }
        let dropped = drop_expired(&self.attrs, now)
            + drop_expired(&self.dirs, now)
            + drop_expired(&self.links, now);
        tracing::debug!("cache: dropped {dropped} expired entries");
    }

    /// Every name of the file at `path` (itself first), and whether it has links not known
    /// by name (see [`InodeTable::names`]).
    fn names(&self, path: &[u8]) -> (Vec<RelPath>, bool) {
        self.inodes.lock().unwrap().names(path)
    }

    pub fn enabled(&self) -> bool {
        self.opts.enabled
    }

    fn bucket(&self, dir: &[u8]) -> &std::sync::atomic::AtomicU64 {
        let h = dir.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        &self.generations[(h % GENERATIONS as u64) as usize]
    }

    /// The change generation of `dir`: read it before asking the server for a listing.
    pub fn generation(&self, dir: &[u8]) -> u64 {
        self.bucket(dir).load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A local change in `dir`: listings requested before it are out of date.
    fn changed(&self, dir: &[u8]) {
        self.bucket(dir)
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Attributes, listings and link targets: how many are kept, how often they answered,
    /// and the memory they hold.
    pub fn stats(&self) -> [CacheStats; 3] {
        let one = |(entries, bytes): (usize, usize), c: &HitCount| {
            let (hits, misses) = c.get();
            CacheStats {
                entries,
                hits,
                misses,
                bytes,
            }
        };
        let attrs = {
            let a = self.attrs.lock().unwrap();
            let each = lru_entry::<Timed<Entry>>();
            (a.len(), a.iter().map(|(k, _)| each + chunk(k.len())).sum())
        };
        let dirs = {
            let d = self.dirs.lock().unwrap();
            let listed = |l: &Listing| {
                chunk(std::mem::size_of::<Mutex<Listing>>() + 16)
                    + chunk(std::mem::size_of::<Entries>() + 16)
                    + l.entries.heap_bytes(chunk)
            };
            let each = lru_entry::<Timed<Arc<Mutex<Listing>>>>();
            let bytes = d
                .iter()
                .map(|(k, t)| each + chunk(k.len()) + listed(&t.value.lock().unwrap()))
                .sum();
            (d.len(), bytes)
        };
        let links = {
            let l = self.links.lock().unwrap();
            let each = lru_entry::<Timed<Vec<u8>>>();
            let bytes = l
                .iter()
                .map(|(k, t)| each + chunk(k.len()) + chunk(t.value.len()))
                .sum();
            (l.len(), bytes)
        };
        [
            one(attrs, &self.attr_count),
            one(dirs, &self.dir_count),
            one(links, &self.link_count),
        ]
    }

    /// A file created here at `path` (mkdir, create, symlink, link): its attributes, and
    /// the parent's are no longer known (its mtime moved).
    pub fn put_new(&self, path: &[u8], attrs: &Attrs, nlink: Option<u32>) {
        let _change = self.changes.lock().unwrap();
        self.put_local(path, attrs, nlink);
        self.entries_changed(parent_of(path));
    }

    /// `path` is gone (unlink, rmdir, renamed away), and everything below it.
    pub fn remove(&self, path: &[u8]) {
        self.remove_with(path, || {});
    }

    /// `remove`, with `update` (the inode table's side of the change) in the same step.
    pub fn remove_with(&self, path: &[u8], update: impl FnOnce()) {
        let _change = self.changes.lock().unwrap();
        let names = self.names(path);
        update();
        self.remove_local(path);
        self.lost_a_name(names);
    }

    /// The file that had `names` lost the first of them: the others' link count changed.
    fn lost_a_name(&self, (names, more): (Vec<RelPath>, bool)) {
        self.forget_attrs(&names[1..], more);
    }

    fn remove_local(&self, path: &[u8]) {
        self.forget_tree(path);
        self.changed(path);
        if !path.is_empty() {
            self.changed(parent_of(path));
            if let Some(l) = self.peek_listing(parent_of(path)) {
                l.lock().unwrap().entries_mut().remove(name_of(path));
            }
            self.entries_changed(parent_of(path));
        }
    }

    fn forget_tree(&self, path: &[u8]) {
        // A file has nothing below it: its own entries go, with no look through the caches
        // (which, name by name, made `rm` of a big directory cost its size times theirs).
        if !self.may_hold_names(path) {
            self.attrs.lock().unwrap().pop(path);
            self.links.lock().unwrap().pop(path);
            return;
        }
        self.tree_scans
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        let under = |p: &RelPath| p.as_slice() == path || p.starts_with(&prefix);
        drop_matching(&mut self.attrs.lock().unwrap(), |k, _| under(k));
        drop_matching(&mut self.dirs.lock().unwrap(), |k, _| under(k));
        drop_matching(&mut self.links.lock().unwrap(), |k, _| under(k));
    }

    /// Whether names below `path` may be cached: unless what is known of it (its
    /// attributes, else its parent's listing) says it is no directory, and it has no
    /// listing of its own.
    fn may_hold_names(&self, path: &[u8]) -> bool {
        if path.is_empty() || self.dirs.lock().unwrap().peek(path).is_some() {
            return true;
        }
        let kind = |e: &Entry| e.attrs.file_type();
        let cached = (self.attrs.lock().unwrap().peek(path)).and_then(|t| kind(&t.value));
        let listed = || {
            let l = self.peek_listing(parent_of(path))?;
            let l = l.lock().unwrap();
            l.entries.get(name_of(path)).and_then(kind)
        };
        cached.or_else(listed).is_none_or(|k| k == libc::S_IFDIR)
    }

    /// `from` was renamed to `to`.
    #[cfg(test)]
    pub fn rename(&self, from: &[u8], to: &[u8]) {
        self.rename_with(from, to, || {});
    }

    /// `rename`, with `update` (the inode table's side of the change) in the same step.
    pub fn rename_with(&self, from: &[u8], to: &[u8], update: impl FnOnce()) {
        let _change = self.changes.lock().unwrap();
        // The file replaced at `to`, if any, loses that name.
        let replaced = self.names(to);
        update();
        let moved = self.attrs(from);
        self.remove_local(to);
        self.remove_local(from);
        self.lost_a_name(replaced);
        match moved {
            Some(e) if !e.attrs.is_dir() => self.put_local(to, &e.attrs, e.nlink),
            _ => {
                // Unknown attributes: the new parent's listing no longer tells the truth.
                self.changed(parent_of(to));
                self.dirs.lock().unwrap().pop(parent_of(to));
            }
        }
    }

    /// The server answered that `path` does not exist to a request sent at `asked`, when
    /// its directory's generation was `generation`.
    pub fn put_absent(&self, path: &[u8], asked: Instant, generation: u64) {
        if self.opts.enabled {
            self.absent
                .lock()
                .unwrap()
                .put(path.to_vec(), (asked, generation));
        }
    }

    /// Whether the server said `path` is absent less than [`FRESH`] ago, with no change of
    /// its directory made here since: the same name asked about again at once (`git` looks
    /// for `.git/packed-refs` a dozen times in one `git status`) is answered so.
    pub fn absent_just_now(&self, path: &[u8]) -> bool {
        let mut a = self.absent.lock().unwrap();
        match a.get(path) {
            Some(&(asked, generation))
                if asked.elapsed() < FRESH && self.generation(parent_of(path)) == generation =>
            {
                true
            }
            Some(_) => {
                a.pop(path);
                false
            }
            None => false,
        }
    }

    /// Drops everything (e.g. after a reconnect to a server that may have changed).
    /// Forgets everything known at or below `path` ("" for everything), and keeps no
    /// listing already on its way (`sftpfs refresh`).
    pub fn forget_under(&self, path: &[u8]) {
        let _change = self.changes.lock().unwrap();
        for g in &self.generations {
            g.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.absent.lock().unwrap().clear();
        if path.is_empty() {
            self.attrs.lock().unwrap().clear();
            self.dirs.lock().unwrap().clear();
            self.links.lock().unwrap().clear();
        } else {
            self.forget_tree(path);
            // The parent's listing holds the entry's attributes too.
            self.dirs.lock().unwrap().pop(parent_of(path));
        }
    }

    pub fn clear(&self) {
        let _change = self.changes.lock().unwrap();
        self.absent.lock().unwrap().clear();
        self.attrs.lock().unwrap().clear();
        self.dirs.lock().unwrap().clear();
        self.links.lock().unwrap().clear();
    }
}

/// The heap malloc gives for `n` bytes asked: an 8-byte header, 16-byte steps, 32 at least.
fn chunk(n: usize) -> usize {
    ((n + 8 + 15) & !15).max(32)
}

/// One entry of an LRU map by path holding `V`: its node (key, value, two links) and the
/// map's slot (two pointers and a control byte, at 7/8 load).
fn lru_entry<V>() -> usize {
    chunk(std::mem::size_of::<RelPath>() + std::mem::size_of::<V>() + 16) + 19
}

/// Drops the entries `pred` picks; returns their keys.
fn drop_matching<V>(
    c: &mut LruCache<RelPath, V>,
    pred: impl Fn(&RelPath, &V) -> bool,
) -> Vec<RelPath> {
    let keys: Vec<RelPath> = c
        .iter()
        .filter(|(k, v)| pred(k, v))
        .map(|(k, _)| k.clone())
        .collect();
    for k in &keys {
        c.pop(k);
    }
    keys
}

/// Drops the entries whose time is up; returns how many.
fn drop_expired<V>(c: &Mutex<LruCache<RelPath, Timed<V>>>, now: Instant) -> usize {
    drop_matching(&mut c.lock().unwrap(), |_, t| t.until <= now).len()
}

pub fn name_of(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::names::inode;
    use crate::remote::NameEntry;

    fn entry(name: &str, size: u64) -> NameEntry {
        NameEntry {
            name: name.as_bytes().to_vec(),
            nlink: None,
            attrs: Attrs {
                size: Some(size),
                permissions: Some(libc::S_IFREG | 0o644),
                ..Attrs::default()
            },
        }
    }

    #[tokio::test]
    async fn listings_answer_lookups_and_follow_local_changes() {
        let c = MetaCache::new(
            CacheOptions {
                negative_ttl: Duration::from_secs(20),
                ..CacheOptions::default()
            },
            Default::default(),
        );
        c.put_listing(
            b"d",
            &[entry("a", 1), entry("b", 2)],
            c.generation(b"d"),
            || {},
        );
        assert!(matches!(c.known(b"d/a"), Known::Present(e) if e.attrs.size == Some(1)));
        assert!(matches!(c.known(b"d/zz"), Known::Absent));
        assert!(matches!(c.known(b"other/a"), Known::Unknown));
        assert_eq!(c.attrs(b"d/b").unwrap().attrs.size, Some(2));
        c.put_attrs(b"d/new", &entry("new", 5).attrs, None);
        assert!(matches!(c.known(b"d/new"), Known::Present(_)));
        c.rename(b"d/a", b"d/c");
        assert!(matches!(c.known(b"d/a"), Known::Absent));
        assert!(matches!(c.known(b"d/c"), Known::Present(e) if e.attrs.size == Some(1)));
        c.remove(b"d/c");
        assert!(matches!(c.known(b"d/c"), Known::Absent));
        assert!(c.attrs(b"d/c").is_none());
        c.invalidate(b"d/b");
        assert!(c.attrs(b"d/b").is_none());
    }

    #[tokio::test]
    async fn a_listing_requested_before_a_local_change_is_not_kept() {
        let c = MetaCache::new(CacheOptions::default(), Default::default());
        c.put_new_dir(b"fresh");
        assert!(
            matches!(c.known(b"fresh/x"), Known::Absent),
            "a new dir is known empty"
        );
        c.put_listing(b"old", &[], c.generation(b"old"), || {});
        assert!(
            matches!(c.known(b"old/x"), Known::Unknown),
            "negative_timeout 0 by default"
        );
        let g = c.generation(b"d");
        // While the READDIR is on its way, a file is created here.
        c.put_attrs(b"d/new", &entry("new", 5).attrs, None);
        let mut learned = false;
        let l = c.put_listing(b"d", &[entry("old", 1)], g, || learned = true);
        assert!(!c.trusted(b"d", &l.lock().unwrap()));
        assert!(!l.lock().unwrap().current, "opendir must read it again");
        assert!(!learned, "link counts from a stale listing");
        assert!(
            matches!(c.known(b"d/new"), Known::Unknown),
            "stale listing not cached"
        );
        let l = c.put_listing(
            b"d",
            &[entry("old", 1), entry("new", 5)],
            c.generation(b"d"),
            || {},
        );
        assert!(c.trusted(b"d", &l.lock().unwrap()));
        assert!(matches!(c.known(b"d/new"), Known::Present(_)));
    }

    /// A write that began and landed while a listing travelled: nothing is on its way when
    /// the listing comes, yet its size and mtime may be from before the write.
    #[tokio::test]
    async fn a_listing_overtaken_by_a_landed_write_does_not_vouch_for_the_file() {
        let inodes: Arc<Mutex<InodeTable>> = Default::default();
        let c = MetaCache::new(CacheOptions::default(), inodes.clone());
        let ino = inodes.lock().unwrap().ino_for(b"d/f");
        let asked = |c: &MetaCache| Asked {
            generation: c.generation(b"d"),
            at: Instant::now(),
            stamp: Stamp::default(),
            ahead: false,
            changes: inodes.lock().unwrap().change_seq(),
        };
        let before = asked(&c);
        drop(InodeTable::begin_attr_change(&inodes, ino));
        let l = c.put_listing_asked(b"d", &[entry("f", 1), entry("g", 2)], before, || {});
        assert!(l.lock().unwrap().entries.get(b"f").unwrap().stale);
        assert!(!l.lock().unwrap().entries.get(b"g").unwrap().stale);
        assert!(c.attrs(b"d/f").is_none(), "the old attributes were kept");
        assert_eq!(c.attrs(b"d/g").unwrap().attrs.size, Some(2));
        // Asked after the write landed: the server's word again.
        let after = asked(&c);
        c.put_listing_asked(b"d", &[entry("f", 3)], after, || {});
        assert_eq!(c.attrs(b"d/f").unwrap().attrs.size, Some(3));
    }

    /// An answer asked for before a removal must never outlive it, however the two
    /// interleave (found by fsx: a listing stored between a rename's bump and its removal
    /// left the old name behind).
    #[test]
    fn an_answer_racing_a_removal_never_outlives_it() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
        let c = Arc::new(MetaCache::new(CacheOptions::default(), Default::default()));
        let on_server = Arc::new(AtomicBool::new(false));
        let (rounds, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let reader = {
            let (c, on_server, rounds, stop) =
                (c.clone(), on_server.clone(), rounds.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    // A lookup and a listing: the generation first, then the server's answer.
                    let g = c.generation(b"d");
                    if on_server.load(SeqCst) {
                        c.put_attrs_if(b"d/a", &entry("a", 1).attrs, None, g);
                        c.put_listing(b"d", &[entry("a", 1)], g, || {});
                    } else {
                        c.put_listing(b"d", &[], g, || {});
                    }
                    rounds.fetch_add(1, SeqCst);
                }
            })
        };
        for _ in 0..3000 {
            on_server.store(true, SeqCst);
            c.put_attrs(b"d/a", &entry("a", 1).attrs, None);
            on_server.store(false, SeqCst);
            c.remove(b"d/a");
            // Every answer asked for before the removal has landed (or been dropped) once
            // the reader has finished two more rounds.
            let r = rounds.load(SeqCst);
            while rounds.load(SeqCst) < r + 2 {
                std::thread::yield_now();
            }
            assert!(c.attrs(b"d/a").is_none(), "stale attributes survived");
            assert!(
                !matches!(c.known(b"d/a"), Known::Present(_)),
                "stale listing survived"
            );
        }
        stop.store(true, SeqCst);
        reader.join().unwrap();
    }

    /// fsx with connections killed: a lookup answered while a file's writes were being
    /// replayed cached its old size as fresh; once the writes landed, `stat` showed it.
    #[test]
    fn sizes_seen_while_writes_travelled_do_not_outlive_them() {
        let c = MetaCache::new(CacheOptions::default(), Default::default());
        let (short, long) = (entry("a", 100).attrs, entry("a", 300).attrs);
        // A write is queued, then a lookup asks the server (which has not applied it yet).
        c.put_attrs(b"d/a", &short, None);
        c.mark_written(b"d/a");
        let asked_at = c.generation(b"d");
        c.put_attrs_if(b"d/a", &short, None, asked_at);
        let late_answer_asked_at = c.generation(b"d");
        assert_eq!(c.attrs(b"d/a").unwrap().attrs.size, Some(100));
        // The writes land, nothing exact to put in place: the entry goes...
        c.writes_landed(b"d/a", None, |_| true, || true);
        assert!(c.attrs(b"d/a").is_none());
        // ...and an answer that was still on its way is refused.
        c.put_attrs_if(b"d/a", &short, None, late_answer_asked_at);
        assert!(c.attrs(b"d/a").is_none());
        // With attributes read after the writes, those are kept.
        c.put_attrs_if(b"d/a", &short, None, c.generation(b"d"));
        c.writes_landed(b"d/a", Some((&long, None)), |_| true, || true);
        assert_eq!(c.attrs(b"d/a").unwrap().attrs.size, Some(300));
        // Unless a local change came since they were asked for.
        c.put_attrs_if(b"d/a", &short, None, c.generation(b"d"));
        c.writes_landed(b"d/a", Some((&long, None)), |_| false, || true);
        assert!(c.attrs(b"d/a").is_none());
        // Writes still pending elsewhere: the size they imply still counts, entry stays.
        c.put_attrs(b"d/a", &short, None);
        c.writes_landed(b"d/a", None, |_| true, || false);
        assert_eq!(c.attrs(b"d/a").unwrap().attrs.size, Some(100));
    }

    /// `ls -l` beside a program writing a file it keeps open: the listing is asked for and
    /// answered while the write is queued, with the file's mtime from before it. Kept as
    /// the file's attributes, `stat` showed that mtime after the write had landed.
    #[test]
    fn a_listing_answered_while_a_write_is_queued_keeps_no_attributes_of_that_file() {
        let inodes: Arc<Mutex<InodeTable>> = Default::default();
        let c = MetaCache::new(CacheOptions::default(), inodes.clone());
        let ino = inodes.lock().unwrap().lookup(b"d/a");
        let write = InodeTable::begin_attr_change(&inodes, ino);
        c.mark_written(b"d/a");
        let l = c.put_listing(
            b"d",
            &[entry("a", 100), entry("b", 2)],
            c.generation(b"d"),
            || {},
        );
        assert!(l.lock().unwrap().entries.get(b"a").unwrap().stale);
        drop(write);
        c.write_landed(b"d/a");
        assert!(
            c.attrs(b"d/a").is_none(),
            "the size and mtime from before the write"
        );
        assert_eq!(c.attrs(b"d/b").unwrap().attrs.size, Some(2));
    }

    /// A server with a thousand directories of 10,000 names each: the listings kept hold a
    /// bounded number of entries together, the least recently used going first.
    #[test]
    fn listings_kept_hold_a_bounded_number_of_entries() {
        let c = MetaCache::new(CacheOptions::default(), Default::default());
        let names: Vec<NameEntry> = (0..100).map(|i| entry(&format!("n{i}"), 1)).collect();
        for d in ["a", "b", "c", "d"] {
            c.put_listing(d.as_bytes(), &names, c.generation(d.as_bytes()), || {});
        }
        let _ = c.listing(b"a");
        let mut dirs = c.dirs.lock().unwrap();
        listings::keep_within(&mut dirs, 250);
        let kept: Vec<Vec<u8>> = dirs.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            kept,
            vec![b"a".to_vec(), b"d".to_vec()],
            "most recently used first"
        );
        listings::keep_within(&mut dirs, 10);
        assert_eq!(dirs.len(), 1, "the newest stays, whatever its size");
    }

    /// A directory handle shares the listing's entries instead of copying them (100 000
    /// names cost 12 MB more per `ls` before), and keeps them as they were when a change
    /// comes while it is open.
    #[test]
    fn an_open_directory_shares_its_listing_until_it_changes() {
        let c = MetaCache::new(CacheOptions::default(), Default::default());
        c.put_listing(
            b"d",
            &[entry("a", 1), entry("b", 2)],
            c.generation(b"d"),
            || {},
        );
        let l = c.listing(b"d").unwrap();
        let opened = l.lock().unwrap().entries.clone();
        let before = crate::alloc_count::held();
        let again = l.lock().unwrap().entries.clone();
        assert_eq!(crate::alloc_count::held(), before, "nothing copied");
        assert!(Arc::ptr_eq(&opened, &again));
        c.remove(b"d/a");
        c.put_attrs(b"d/b", &entry("b", 7).attrs, None);
        let now = c.listing(b"d").unwrap().lock().unwrap().entries.clone();
        assert!(now.get(b"a").is_none());
        assert_eq!(now.get(b"b").unwrap().attrs.size, Some(7));
        assert!(opened.get(b"a").is_some(), "the open handle's entries stay");
        assert_eq!(opened.get(b"b").unwrap().attrs.size, Some(2));
    }

    /// 50 000 files of one directory listed, looked up and removed one by one (`ls -l`
    /// then `rm`): no step looks through all that is cached (before, each removal looked
    /// through every entry of the three caches for names below the file: 200 000 looks
    /// of 20 000 entries).
    #[test]
    fn files_of_a_big_directory_are_removed_without_looking_through_the_caches() {
        let inodes: Arc<Mutex<InodeTable>> = Default::default();
        // Nothing expires while the test runs, however loaded the machine: an expired
        // listing says nothing of its names, and a removal then has to look.
        let hour = Duration::from_secs(3600);
        let opts = CacheOptions {
            stat_ttl: hour,
            dir_ttl: hour,
            link_ttl: hour,
            ..CacheOptions::default()
        };
        let c = MetaCache::new(opts, inodes.clone());
        let n = 50_000;
        let names: Vec<NameEntry> = (0..n).map(|i| entry(&format!("f{i:06}"), 1)).collect();
        c.put_listing(b"big", &names, c.generation(b"big"), || {});
        c.put_listing(b"big/sub", &names[..10], c.generation(b"big/sub"), || {});
        for e in &names {
            let p = inode::join(b"big", &e.name);
            inodes.lock().unwrap().lookup(&p);
            assert!(matches!(c.known(&p), Known::Present(_)));
        }
        let scans = || c.tree_scans.load(std::sync::atomic::Ordering::Relaxed);
        for e in &names {
            let p = inode::join(b"big", &e.name);
            c.remove_with(&p, || inodes.lock().unwrap().unlink(&p));
        }
        assert_eq!(scans(), 0, "a file has nothing below it");
        assert!(c
            .listing(b"big")
            .unwrap()
            .lock()
            .unwrap()
            .entries
            .is_empty());
        // A directory's names go with it.
        c.remove(b"big/sub");
        assert_eq!(scans(), 1);
        assert!(c.listing(b"big/sub").is_none());
    }

    /// What `sftpfs status` says the caches hold is near what they do hold.
    #[test]
    fn the_memory_estimate_is_near_the_heap_held() {
        let c = MetaCache::new(CacheOptions::default(), Default::default());
        let names: Vec<NameEntry> = (0..5000).map(|i| entry(&format!("n{i}"), 1)).collect();
        let before = crate::alloc_count::held();
        for d in ["a", "b"] {
            c.put_listing(d.as_bytes(), &names, c.generation(d.as_bytes()), || {});
        }
        c.put_link(b"l", b"target");
        let held = (crate::alloc_count::held() - before) as f64;
        let estimate = c.stats().iter().map(|s| s.bytes).sum::<usize>() as f64;
        assert!(
            (0.7..1.3).contains(&(estimate / held)),
            "estimated {estimate} bytes, {held} held"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_fetched_ahead_serves_its_first_use_only_while_young() {
        let c = MetaCache::new(CacheOptions::default(), Default::default());
        let ahead = |c: &MetaCache, dir: &[u8]| {
            let asked = Asked {
                generation: c.generation(dir),
                at: Instant::now(),
                stamp: Stamp::default(),
                ahead: true,
                changes: 0,
            };
            c.put_listing_asked(dir, &[entry("a", 1)], asked, || {});
        };
        ahead(&c, b"old");
        ahead(&c, b"young");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(c.listing(b"young").is_some(), "young: taken into use");
        tokio::time::advance(Duration::from_millis(700)).await;
        assert!(
            c.listing(b"old").is_none(),
            "never used, and older than FRESH"
        );
        assert!(
            matches!(c.known(b"old/a"), Known::Unknown),
            "its names are not answered either"
        );
        assert!(c.listing(b"young").is_some(), "in use: kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_directory_made_here_is_known_empty_while_the_mount_fills_it() {
        let c = MetaCache::new(CacheOptions::default(), Default::default());
        c.put_new_dir(b"d");
        assert!(matches!(c.known(b"d/x"), Known::Absent));
        for i in 0..5 {
            tokio::time::advance(Duration::from_millis(600)).await;
            c.put_new(format!("d/f{i}").as_bytes(), &entry("f", 1).attrs, None);
            assert!(
                matches!(c.known(b"d/x"), Known::Absent),
                "still being filled here"
            );
        }
        tokio::time::advance(FRESH).await;
        assert!(
            matches!(c.known(b"d/x"), Known::Unknown),
            "left alone: another client may have made x since"
        );
        assert!(matches!(c.known(b"d/f3"), Known::Present(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let c = MetaCache::new(
            CacheOptions {
                stat_ttl: Duration::from_secs(1),
                dir_ttl: Duration::from_secs(2),
                ..CacheOptions::default()
            },
            Default::default(),
        );
        c.put_listing(b"", &[entry("a", 1)], c.generation(b""), || {});
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(c.attrs(b"a").is_none());
        assert!(matches!(c.known(b"a"), Known::Present(_)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(c.known(b"a"), Known::Unknown));
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let c = MetaCache::new(
            CacheOptions {
                enabled: false,
                ..CacheOptions::default()
            },
            Default::default(),
        );
        c.put_listing(b"", &[entry("a", 1)], c.generation(b""), || {});
        assert!(matches!(c.known(b"a"), Known::Unknown));
        assert!(c.attrs(b"a").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_dropped_as_sshfs_cleans() {
        let c = MetaCache::new(
            CacheOptions {
                stat_ttl: Duration::from_secs(1),
                max_size: 4,
                clean_interval: Duration::from_secs(60),
                min_clean_interval: Duration::from_secs(5),
                ..CacheOptions::default()
            },
            Default::default(),
        );
        let a = entry("x", 1).attrs;
        let count = |c: &MetaCache| c.attrs.lock().unwrap().len();
        c.put_attrs(b"a", &a, None);
        c.put_attrs(b"b", &a, None);
        tokio::time::advance(Duration::from_secs(6)).await;
        // Expired, not full, not an interval yet: kept (never served, though).
        c.put_attrs(b"c", &a, None);
        assert_eq!(count(&c), 3);
        // Full, and the minimum interval has passed: the expired ones go.
        c.put_attrs(b"d", &a, None);
        assert_eq!(count(&c), 2, "a and b dropped once the cache filled up");
        // Not full: the full interval.
        tokio::time::advance(Duration::from_secs(30)).await;
        c.put_attrs(b"e", &a, None);
        assert_eq!(count(&c), 3);
        tokio::time::advance(Duration::from_secs(31)).await;
        c.put_attrs(b"f", &a, None);
        assert_eq!(
            count(&c),
            1,
            "every expired entry dropped after clean_interval"
        );
    }

    /// While the server is away, what is held serves at any age and nothing is dropped;
    /// back, the times count again.
    #[tokio::test(start_paused = true)]
    async fn while_the_server_is_away_nothing_expires() {
        let c = MetaCache::new(
            CacheOptions {
                stat_ttl: Duration::from_secs(1),
                dir_ttl: Duration::from_secs(1),
                max_size: 40,
                clean_interval: Duration::from_secs(60),
                min_clean_interval: Duration::from_secs(5),
                ..CacheOptions::default()
            },
            Default::default(),
        );
        c.put_listing(b"d", &[entry("a", 1)], c.generation(b"d"), || {});
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(c.attrs(b"d/a").is_none() && c.listing(b"d").is_none());
        c.set_away(true);
        assert_eq!(c.attrs(b"d/a").unwrap().attrs.size, Some(1));
        assert!(c.listing(b"d").is_some());
        // A clean when due drops nothing meanwhile, and a name made here joins the listing.
        tokio::time::advance(Duration::from_secs(120)).await;
        c.put_new(b"d/b", &entry("b", 2).attrs, None);
        assert!(matches!(c.known(b"d/b"), Known::Present(_)));
        assert_eq!(c.attrs(b"d/a").unwrap().attrs.size, Some(1));
        c.set_away(false);
        assert!(c.attrs(b"d/a").is_none() && c.listing(b"d").is_none());
        assert!(
            c.attrs_held(b"d/a").is_some(),
            "held for the next time it is away"
        );
    }
}
