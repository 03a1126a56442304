//! Read-ahead across files. When a program reads the files of a directory one after another
//! (`grep -r`, `cp -r`, `tar c`, `cat *`, an indexer), the next small files are opened and
//! read in the background, many at once, so that their `open` and first `read` find the
//! data here instead of paying two round trips each.
//!
//! The order is learned, not assumed: two files opened one after the other that are
//! neighbours (no small file between them) in the order the kernel was handed the listing,
//! in name order (shell globs, rsync) or in inode order (coreutils' `cp`) start a run in that
//! order. A run that moves on to another directory carries its order with it, so the first
//! file of the next directory already starts one.
//!
//! A prefetched file is handed to an `open` only while it is young and nothing says it
//! changed: the server answered its OPEN less than [`FRESH`] before, no local change in its
//! directory came since the prefetch began, and the attributes the server gave with its OPEN
//! are the ones the attribute cache still holds, fresh, at that `open` (see the README's
//! consistency rule). Otherwise the `open` asks the server, as any other does.
//! Memory is bounded by the mount's read-ahead budget, and the server's handles by
//! [`MAX_KEPT`]; what is not taken in [`KEEP_FOR`] is closed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{join, join_all, BoxFuture, Shared};
use futures::FutureExt;
use lru::LruCache;
use tokio::time::Instant;

use crate::fs::meta::cache::{Entries, Entry, FRESH};
use crate::fs::names::inode::{join as join_path, parent_of, RelPath};
use crate::fs::Filesystem;
use crate::remote::protocol::SSH_FXF_READ;
use crate::remote::{Attrs, Conn, Handle};

/// Files up to this size are fetched whole.
pub const SMALL_FILE: u64 = 256 * 1024;
/// Small files kept ahead of the reader in a run.
const FILES_AHEAD: usize = 32;
/// Prefetched files held at once (each holds a handle on the server until taken or closed).
const MAX_KEPT: usize = 64;
/// A prefetched file not taken by then is closed.
const KEEP_FOR: Duration = Duration::from_secs(10);
/// How long a run's order carries over to the next directory opened.
const ORDER_CARRIES: Duration = Duration::from_secs(5);
/// Directories whose runs are remembered.
const DIRS: usize = 16;
/// Directories whose [`Snapshot`]s are kept.
const SNAPSHOTS: usize = 4;

/// An order a program reads a directory's files in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The order the kernel was handed the listing (`readdir`: `grep -r`, `find`, `tar c`).
    Listed,
    /// Byte order of the names (shell globs in the C locale, `rsync`, `ls`).
    Name,
    /// Inode order (coreutils sorts a directory by inode before copying it).
    Inode,
}

/// A file opened and read in the background.
pub struct Fetched {
    pub conn: Arc<Conn>,
    pub handle: Handle,
    /// What the server said with the OPEN.
    pub attrs: Attrs,
    /// When the OPEN went out: the answer is no older than this.
    pub asked: Instant,
    /// The whole file, in pieces of `chunk` bytes (the last one shorter).
    pub pieces: Vec<Bytes>,
    pub chunk: u32,
}

type FetchFuture = Shared<BoxFuture<'static, Option<Arc<Fetched>>>>;

/// A prefetch waiting for its `open`.
pub struct Prefetch {
    /// The directory's change generation when it started.
    pub generation: u64,
    started: Instant,
    pub fetched: FetchFuture,
    /// Its share of the read-ahead budget, returned when dropped.
    _budget: Budget,
}

struct Budget {
    bytes: usize,
    total: Arc<AtomicUsize>,
}

impl Drop for Budget {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// What is known of the reading of one directory.
#[derive(Default)]
struct DirRun {
    /// Names in the order the kernel was last handed them (shared with the listing).
    listed: Arc<Entries>,
    /// The last file opened here.
    last: Option<Vec<u8>>,
    order: Option<Order>,
    /// Files of this run fetched or opened: not fetched again.
    done: HashSet<Vec<u8>>,
}

struct State {
    dirs: LruCache<RelPath, DirRun>,
    /// Of the directories read last (several programs may read at once, each its own).
    snapshots: LruCache<RelPath, Snapshot>,
    kept: HashMap<RelPath, Prefetch>,
    /// `kept`'s paths, oldest first.
    age: VecDeque<RelPath>,
    /// The order of the last run, and when a file of it was last opened.
    recent: Option<(Order, Instant)>,
}

pub struct FileAhead {
    state: Mutex<State>,
}

impl Default for FileAhead {
    fn default() -> Self {
        FileAhead {
            state: Mutex::new(State {
                dirs: LruCache::new(NonZeroUsize::new(DIRS).unwrap()),
                snapshots: LruCache::new(NonZeroUsize::new(SNAPSHOTS).unwrap()),
                kept: HashMap::new(),
                age: VecDeque::new(),
                recent: None,
            }),
        }
    }
}

/// A file a run may fetch.
fn small(e: &Entry) -> bool {
    let regular = e
        .attrs
        .permissions
        .is_some_and(|p| p & libc::S_IFMT == libc::S_IFREG);
    regular && !e.stale && e.attrs.size.is_some_and(|s| s <= SMALL_FILE)
}

/// Marks a name absent from an order.
const ABSENT: u32 = u32::MAX;

/// One order of a [`Snapshot`]'s names: indices in that order, and each index's position.
struct Ordered {
    seq: Vec<u32>,
    pos: Vec<u32>,
}

/// A directory's files as one listing had them, with its orders made when first needed:
/// once per listing, not once per `open` (a directory of n files read through would cost
/// O(n² log n)).
struct Snapshot {
    /// Which listing: its serial and number of entries (a name made or removed here
    /// changes it; a changed file's attributes need not, as a prefetch is checked again
    /// before it is served).
    key: (u64, usize),
    names: Vec<Arc<[u8]>>,
    /// By index: the size of a file a run may fetch (see [`small`]).
    small: Vec<Option<u64>>,
    index: HashMap<Arc<[u8]>, u32>,
    /// By [`Order`] as index.
    orders: [Option<Ordered>; 3],
}

impl Snapshot {
    fn of(key: (u64, usize), entries: &Entries) -> Snapshot {
        let names: Vec<Arc<[u8]>> = entries.names().map(Arc::from).collect();
        let small = (entries.values())
            .map(|e| Some(e).filter(|e| small(e)).and_then(|e| e.attrs.size))
            .collect();
        let index = (names.iter().enumerate())
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        Snapshot {
            key,
            names,
            small,
            index,
            orders: [None, None, None],
        }
    }

    /// Makes the names' `order` if not yet.
    fn make(&mut self, order: Order, listed: &Entries, ino_of: &dyn Fn(&[u8]) -> u64) {
        if self.orders[order as usize].is_some() {
            return;
        }
        let seq: Vec<u32> = match order {
            Order::Listed => (listed.names())
                .filter_map(|n| self.index.get(n).copied())
                .collect(),
            Order::Name => {
                let mut v: Vec<u32> = (0..self.names.len() as u32).collect();
                v.sort_unstable_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
                v
            }
            Order::Inode => {
                let mut v: Vec<(u64, u32)> = (self.names.iter().enumerate())
                    .map(|(i, n)| (ino_of(n), i as u32))
                    .collect();
                v.sort_unstable();
                v.into_iter().map(|(_, i)| i).collect()
            }
        };
        let mut pos = vec![ABSENT; self.names.len()];
        for (p, &i) in seq.iter().enumerate() {
            pos[i as usize] = p as u32;
        }
        self.orders[order as usize] = Some(Ordered { seq, pos });
    }
}

/// A prefetch a run asks for: the name and its size.
type Wanted = (Vec<u8>, u64);

impl DirRun {
    /// `name` was opened: the order the reads follow, if they follow one, and the names to
    /// fetch now.
    fn opened(
        &mut self,
        name: &[u8],
        snap: &mut Snapshot,
        ino_of: &dyn Fn(&[u8]) -> u64,
        recent: Option<Order>,
    ) -> (Option<Order>, Vec<Wanted>) {
        let prev = self.last.replace(name.to_vec());
        // Name order first: two names in a row are neighbours in it by design, in the order
        // of a listing only by chance.
        let mut candidates = vec![Order::Name, Order::Listed, Order::Inode];
        if let Some(o) = self.order.or(recent) {
            // The order seen last is tried first: where orders agree, it is kept.
            candidates.retain(|&c| c != o);
            candidates.insert(0, o);
        }
        let this = snap.index.get(name).copied();
        let before = prev.as_ref().and_then(|p| snap.index.get(&p[..]).copied());
        let mut found = None;
        for o in candidates.into_iter().filter(|_| this.is_some()) {
            snap.make(o, &self.listed, ino_of);
            let ord = snap.orders[o as usize].as_ref().unwrap();
            let at = ord.pos[this.unwrap() as usize];
            if at == ABSENT {
                continue;
            }
            // Neighbours: no small file between the previous one and this one; with no
            // previous one here, this must be the first small file, in the order just seen
            // in another directory.
            let from = match (&prev, before.map(|p| ord.pos[p as usize])) {
                (Some(_), Some(p)) if p < at => p + 1,
                (Some(_), _) => continue,
                (None, _) if recent == Some(o) => 0,
                (None, _) => continue,
            };
            let between = &ord.seq[from as usize..at as usize];
            if between.iter().any(|&i| snap.small[i as usize].is_some()) {
                continue;
            }
            found = Some((o, at));
            break;
        }
        let Some((order, at)) = found else {
            // Not a run (or a new one starting): forget what the last one fetched.
            self.order = None;
            self.done.clear();
            self.done.insert(name.to_vec());
            return (None, Vec::new());
        };
        self.order = Some(order);
        self.done.insert(name.to_vec());
        let ord = snap.orders[order as usize].as_ref().unwrap();
        let next: Vec<Wanted> = ord.seq[at as usize + 1..]
            .iter()
            .filter_map(|&i| Some((&snap.names[i as usize], snap.small[i as usize]?)))
            .take(FILES_AHEAD)
            .filter(|(n, _)| !self.done.contains(&n[..]))
            .map(|(n, size)| (n.to_vec(), size))
            .collect();
        (Some(order), next)
    }
}

impl FileAhead {
    /// The kernel was handed `dir`'s names in this order.
    pub fn listed(&self, dir: &[u8], names: Arc<Entries>) {
        let mut s = self.state.lock().unwrap();
        let run = s.dirs.get_or_insert_mut(dir.to_vec(), DirRun::default);
        run.listed = names;
        if let Some(snap) = s.snapshots.peek_mut(dir) {
            snap.orders[Order::Listed as usize] = None;
        }
    }

    /// A prefetch of `path` started at `generation` of its directory, if one is kept.
    pub fn take(&self, path: &[u8]) -> Option<Prefetch> {
        let mut s = self.state.lock().unwrap();
        let p = s.kept.remove(path)?;
        s.age.retain(|a| a != path);
        Some(p)
    }

    /// Prefetches held at the moment.
    pub fn kept(&self) -> usize {
        self.state.lock().unwrap().kept.len()
    }
}

impl Filesystem {
    /// `path` is being opened for reading: if the program reads its directory's files in an
    /// order, fetch the next ones.
    pub(in crate::fs) fn read_ahead_files(self: &Arc<Self>, path: &[u8]) {
        if !self.opts.prefetch || !self.cache.enabled() || self.opts.direct_io {
            return;
        }
        let dir = parent_of(path);
        let Some(listing) = self.cache.peek_listing(dir) else {
            return;
        };
        let key = {
            let l = listing.lock().unwrap();
            if !self.cache.trusted(dir, &l) {
                return;
            }
            (l.serial, l.entries.len())
        };
        let ours = |x: &Snapshot| x.key == key;
        if !(self.file_ahead.state.lock().unwrap().snapshots.get(dir)).is_some_and(ours) {
            // Made without the run's lock held: a listing's lock is never taken under it.
            let snap = {
                let l = listing.lock().unwrap();
                Snapshot::of((l.serial, l.entries.len()), &l.entries)
            };
            let mut s = self.file_ahead.state.lock().unwrap();
            s.snapshots.put(dir.to_vec(), snap);
        }
        let ino_of = |n: &[u8]| self.inodes.lock().unwrap().ino_for(&join_path(dir, n));
        let name = crate::fs::meta::cache::name_of(path);
        let now = Instant::now();
        let mut expired = Vec::new();
        let wanted = {
            let mut s = self.file_ahead.state.lock().unwrap();
            let s = &mut *s;
            let recent = s
                .recent
                .filter(|(_, t)| now.duration_since(*t) < ORDER_CARRIES)
                .map(|(o, _)| o);
            // Another open may have put a newer one in between: no run this time.
            let Some(snap) = s.snapshots.get_mut(dir).filter(|x| ours(x)) else {
                return;
            };
            let run = s.dirs.get_or_insert_mut(dir.to_vec(), DirRun::default);
            let (order, next) = run.opened(name, snap, &ino_of, recent);
            if let Some(o) = order {
                s.recent = Some((o, now));
            }
            // What waited too long goes first: its handle is closed.
            while let Some(old) = s.age.front() {
                match s.kept.get(old) {
                    Some(p) if now.duration_since(p.started) < KEEP_FOR => break,
                    _ => {
                        let old = s.age.pop_front().unwrap();
                        expired.extend(s.kept.remove(&old));
                    }
                }
            }
            let mut wanted = Vec::new();
            for (n, size) in next {
                if s.kept.len() >= MAX_KEPT {
                    break;
                }
                let child = join_path(dir, &n);
                if s.kept.contains_key(&child) {
                    continue;
                }
                let size = size as usize;
                let total = &self.readahead_bytes;
                if total.load(Ordering::Relaxed) + size > self.opts.readahead_total {
                    break;
                }
                total.fetch_add(size, Ordering::Relaxed);
                let budget = Budget {
                    bytes: size,
                    total: total.clone(),
                };
                if let Some(run) = s.dirs.get_mut(dir) {
                    run.done.insert(n.clone());
                }
                let fetched = self.fetch_file(&child, size as u64);
                s.kept.insert(
                    child.clone(),
                    Prefetch {
                        generation: self.cache.generation(dir),
                        started: now,
                        fetched,
                        _budget: budget,
                    },
                );
                s.age.push_back(child.clone());
                wanted.push(child);
            }
            wanted
        };
        if !wanted.is_empty() {
            tracing::trace!("read-ahead across files: {} more", wanted.len());
        }
        for p in expired {
            self.discard_prefetch(p);
        }
    }

    /// Opens `path` and reads its `size` bytes, in the background.
    fn fetch_file(self: &Arc<Self>, path: &[u8], size: u64) -> FetchFuture {
        let fs = self.clone();
        let r = self.remote(path);
        let task = tokio::spawn(async move {
            if fs.stopping.load(Ordering::SeqCst) {
                return None;
            }
            fs.settle().await.ok()?;
            let conn = fs.pool.any().await.ok()?;
            let asked = Instant::now();
            let (h, attrs) = join(
                conn.sftp.open(&r, SSH_FXF_READ, &Attrs::default()),
                fs.attrs_at(&conn.sftp, &r),
            )
            .await;
            let handle = h.ok()?;
            let keep = |attrs: Attrs, pieces: Vec<Bytes>, chunk: u32| {
                Some(Arc::new(Fetched {
                    conn: conn.clone(),
                    handle: handle.clone(),
                    attrs,
                    asked,
                    pieces,
                    chunk,
                }))
            };
            let Ok(attrs) = attrs else {
                conn.sftp.close_nowait(&handle);
                return None;
            };
            let chunk = conn.sftp.limits().max_read;
            // The size the OPEN saw, if it still is a small file.
            let size = attrs.size.filter(|&s| s <= SMALL_FILE).unwrap_or(size);
            let reads = (0..size).step_by(chunk as usize).map(|o| {
                conn.sftp
                    .read(&handle, o, (size - o).min(chunk as u64) as u32)
            });
            let pieces: Result<Vec<Bytes>, _> = join_all(reads).await.into_iter().collect();
            match pieces {
                Ok(p) => keep(attrs, p, chunk),
                Err(_) => {
                    conn.sftp.close_nowait(&handle);
                    None
                }
            }
        });
        async move { task.await.ok().flatten() }.boxed().shared()
    }

    /// Closes a prefetched file nobody took.
    pub(in crate::fs) fn discard_prefetch(&self, p: Prefetch) {
        tokio::spawn(async move {
            if let Some(f) = p.fetched.await {
                f.conn.sftp.close_nowait(&f.handle);
            }
        });
    }

    /// The prefetched `path`, if one is kept and may be served: young, and nothing changed it
    /// since (see the module's rule). Otherwise its handle is closed and `None` says to open
    /// it.
    pub(in crate::fs) async fn take_prefetched(&self, path: &[u8]) -> Option<Arc<Fetched>> {
        let p = self.file_ahead.take(path)?;
        let dir = parent_of(path);
        let unchanged = |f: &Fetched| {
            let cached = self.cache.attrs(path)?;
            let same = cached.attrs.size == f.attrs.size
                && cached.attrs.atime_mtime.map(|t| t.1) == f.attrs.atime_mtime.map(|t| t.1)
                && f.attrs.size == Some(f.pieces.iter().map(|b| b.len() as u64).sum())
                && f.conn.is_alive()
                && f.asked.elapsed() < FRESH
                && self.cache.generation(dir) == p.generation;
            same.then_some(())
        };
        let f = p.fetched.clone().await;
        match f {
            Some(f) if unchanged(&f).is_some() => Some(f),
            _ => {
                self.discard_prefetch(p);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(names: &[(&str, u64)]) -> Entries {
        let mut es = Entries::with_capacity(names.len());
        for (n, size) in names {
            let attrs = Attrs {
                size: Some(*size),
                permissions: Some(libc::S_IFREG | 0o644),
                ..Attrs::default()
            };
            let e = Entry {
                attrs,
                nlink: None,
                stale: false,
                server: true,
            };
            es.insert(n.as_bytes(), e);
        }
        es
    }

    fn names(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    /// A listing of `v`, in this order.
    fn listed(v: &[&str]) -> Arc<Entries> {
        Arc::new(entries(&v.iter().map(|n| (*n, 0)).collect::<Vec<_>>()))
    }

    /// `name` opened in `run`: the order it follows and the names to fetch.
    fn open(
        run: &mut DirRun,
        snap: &mut Snapshot,
        name: &str,
        ino: &dyn Fn(&[u8]) -> u64,
        recent: Option<Order>,
    ) -> (Option<Order>, Vec<Vec<u8>>) {
        let (o, next) = run.opened(name.as_bytes(), snap, ino, recent);
        (o, next.into_iter().map(|(n, _)| n).collect())
    }

    #[test]
    fn a_run_is_two_neighbours_in_one_order_and_fetches_what_follows() {
        let e = entries(&[("c", 10), ("a", 10), ("b", 10), ("big", 1 << 30), ("d", 10)]);
        let ino = |n: &[u8]| n[0] as u64;
        let mut snap = Snapshot::of((1, e.len()), &e);
        let mut run = DirRun {
            listed: listed(&["c", "a", "big", "b", "d"]),
            ..DirRun::default()
        };
        assert_eq!(open(&mut run, &mut snap, "c", &ino, None), (None, vec![]));
        // c then a: neighbours in the listed order.
        let (o, next) = open(&mut run, &mut snap, "a", &ino, None);
        assert_eq!(o, Some(Order::Listed));
        assert_eq!(next, names(&["b", "d"]), "the big file is skipped");
        run.done.extend(next);
        // b was fetched: not again.
        let (o, next) = open(&mut run, &mut snap, "b", &ino, None);
        assert_eq!((o, next), (Some(Order::Listed), vec![]));
    }

    #[test]
    fn name_order_is_learned_and_random_opens_fetch_nothing() {
        let e = entries(&[("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]);
        let ino = |n: &[u8]| 200 - n[0] as u64;
        let mut snap = Snapshot::of((1, e.len()), &e);
        let mut run = DirRun {
            listed: listed(&["e", "c", "a", "d", "b"]),
            ..DirRun::default()
        };
        open(&mut run, &mut snap, "a", &ino, None);
        let (o, next) = open(&mut run, &mut snap, "b", &ino, None);
        assert_eq!(o, Some(Order::Name));
        assert_eq!(next, names(&["c", "d", "e"]));
        // A jump is not the run.
        assert_eq!(open(&mut run, &mut snap, "e", &ino, None), (None, vec![]));
        // Inode order: e, d, c, b, a.
        let mut snap = Snapshot::of((1, e.len()), &e);
        let mut run = DirRun::default();
        open(&mut run, &mut snap, "d", &ino, None);
        let (o, next) = open(&mut run, &mut snap, "c", &ino, None);
        assert_eq!(o, Some(Order::Inode));
        assert_eq!(next, names(&["b", "a"]));
    }

    #[test]
    fn an_order_seen_in_another_directory_starts_at_the_first_file() {
        let e = entries(&[("a", 1), ("b", 1), ("c", 1)]);
        let ino = |n: &[u8]| n[0] as u64;
        let mut snap = Snapshot::of((1, e.len()), &e);
        let mut run = DirRun::default();
        let (o, next) = open(&mut run, &mut snap, "a", &ino, Some(Order::Name));
        assert_eq!(o, Some(Order::Name));
        assert_eq!(next, names(&["b", "c"]));
        // Not the first file: no run yet.
        let mut run = DirRun::default();
        assert_eq!(
            open(&mut run, &mut snap, "b", &ino, Some(Order::Name)),
            (None, vec![])
        );
    }

    #[test]
    fn orders_are_made_once_per_listing_not_once_per_open() {
        let list: Vec<(String, u64)> = (0..200).map(|i| (format!("f{i:03}"), 1)).collect();
        let e = entries(
            &list
                .iter()
                .map(|(n, s)| (n.as_str(), *s))
                .collect::<Vec<_>>(),
        );
        let asked = std::cell::Cell::new(0);
        // Inode order: the reverse of name order.
        let ino = |n: &[u8]| {
            asked.set(asked.get() + 1);
            1000 - std::str::from_utf8(&n[1..])
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let mut snap = Snapshot::of((1, e.len()), &e);
        let mut run = DirRun::default();
        for i in (0..200).rev() {
            open(&mut run, &mut snap, &format!("f{i:03}"), &ino, None);
        }
        assert_eq!(run.order, Some(Order::Inode));
        assert_eq!(asked.get(), 200, "inode numbers asked for once per name");
    }
}
