//! The listings cache: whole directories as the server listed them, kept current by local
//! changes, and what they say about a name (present, absent while believed, unknown).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{name_of, Entries, Entry, MetaCache, Timed};
use crate::fs::names::inode::{join, parent_of};
use crate::remote::NameEntry;

/// A whole directory as the server listed it, kept current by local changes.
#[derive(Debug)]
pub struct Listing {
    /// Shared with the directory handles listing it: changed through `entries_mut`.
    pub entries: Arc<Entries>,
    /// The directory's change generation when the listing was requested.
    pub generation: u64,
    /// Until when a name missing from the listing is taken as absent (`negative_timeout`,
    /// NFS's `lookupcache=all`; by default never).
    pub negative_until: Option<Instant>,
    /// A directory made here and being filled here: every change since it was made went
    /// through the mount, so a name missing is absent, for as long as the mount keeps
    /// changing it (each change here extends this by [`FRESH`]).
    pub local_until: Option<Instant>,
    /// Set once the subdirectories' listings were prefetched for it.
    pub prefetched: bool,
    /// No local change came while it was read (one kept in the cache is then updated by
    /// every later change); otherwise it may be out of date.
    pub current: bool,
    /// The directory was made through the mount: it started empty, and every change since
    /// went through here.
    pub made_here: bool,
    /// Tells this listing from any other, of any directory.
    pub serial: u64,
    /// Fetched before any program asked (a prefetch): the first use takes it only while it
    /// is [`FRESH`]; from then on the directory is in use and revalidation checks it.
    pub ahead: bool,
    /// When the server last vouched for the names: the listing was asked for then, or a
    /// check of the directory's attributes found them unchanged.
    pub vouched: Instant,
    /// What the listing was taken against (see [`Stamp`]).
    pub stamp: Stamp,
    /// When it was asked for: its entries' sizes and mtimes are no older (a check of the
    /// directory's own attributes vouches for names, not for what the files hold).
    pub fetched: Instant,
}

/// How long an answer fetched ahead of its use (a prefetched listing, a file read ahead
/// across files) may still serve it: "about a second after the server gave it".
pub const FRESH: Duration = Duration::from_secs(1);

/// The directory as it was when its listing was asked for: its attributes (read just
/// before the READDIR, on the same session) and the second, on this machine's clock, the
/// listing was taken in. A later check compares against them (see `names/revalidate.rs`).
#[derive(Debug, Clone, Default)]
pub struct Stamp {
    pub dir_attrs: Option<crate::remote::Attrs>,
    pub taken_secs: i64,
}

impl Stamp {
    /// Now, with the directory's attributes read just before.
    pub fn now(dir_attrs: Option<crate::remote::Attrs>) -> Stamp {
        let taken_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Stamp {
            dir_attrs,
            taken_secs,
        }
    }
}

impl Listing {
    /// The entries, to change: copied first if a directory handle still lists them.
    pub fn entries_mut(&mut self) -> &mut Entries {
        Arc::make_mut(&mut self.entries)
    }

    /// What the listing says about `name`; absence only while it is believed.
    pub fn known(&self, name: &[u8]) -> Known {
        let now = Instant::now();
        let believed = |t: Option<Instant>| t.is_some_and(|t| t > now);
        match self.entries.get(name) {
            Some(e) => Known::Present(e.clone()),
            None if believed(self.negative_until) || believed(self.local_until) => Known::Absent,
            None => Known::Unknown,
        }
    }
}

/// How a listing was asked for.
pub struct Asked {
    /// The directory's change generation then.
    pub generation: u64,
    /// When the request went out.
    pub at: Instant,
    pub stamp: Stamp,
    /// For no program yet (a prefetch).
    pub ahead: bool,
    /// The inode table's count of changes begun when the request went out.
    pub changes: u64,
}

/// Entries of all cached listings together, past which the least recently used listings
/// go: a server's directories of 10,000 names each, a thousand of them, are not all held.
pub const LISTED_ENTRIES_KEPT: usize = 500_000;

/// Drops the least recently used listings until those left hold at most `most` entries
/// (the newest one stays, whatever its size: it was just asked for).
pub(super) fn keep_within(
    dirs: &mut lru::LruCache<Vec<u8>, Timed<Arc<Mutex<Listing>>>>,
    most: usize,
) {
    let mut held: usize = dirs
        .iter()
        .map(|(_, t)| t.value.lock().unwrap().entries.len())
        .sum();
    while held > most && dirs.len() > 1 {
        match dirs.pop_lru() {
            Some((_, t)) => held -= t.value.lock().unwrap().entries.len().min(held),
            None => break,
        }
    }
}

/// What a cached listing says about one name.
pub enum Known {
    Present(Entry),
    Absent,
    Unknown,
}

impl MetaCache {
    /// Whether a listing still tells the truth about `dir` (no local change since it was
    /// requested).
    pub fn trusted(&self, dir: &[u8], l: &Listing) -> bool {
        self.generation(dir) == l.generation
    }

    /// An entry of `dir` came or went: its times and link count changed on the server.
    /// Its entry stays, stale: the owner, mode and atime it holds are still right (a time
    /// change that keeps the atime, as tar makes on every directory, need not ask first).
    pub(super) fn entries_changed(&self, dir: &[u8]) {
        if let Some(t) = self.attrs.lock().unwrap().get_mut(dir) {
            t.value.stale = true;
        }
        self.changed_entry(dir);
        // A directory being filled here stays known while the filling goes on.
        if let Some(l) = self.peek_listing(dir) {
            let mut l = l.lock().unwrap();
            let now = Instant::now();
            if l.local_until.is_some_and(|t| t > now) {
                l.local_until = Some(now + FRESH);
            }
        }
    }

    /// The cached listing of `dir`, if fresh, for a program's use (a lookup in it, a
    /// listing of it). One fetched ahead of any use serves only while [`FRESH`]; from then
    /// on it counts as in use.
    pub fn listing(&self, dir: &[u8]) -> Option<Arc<Mutex<Listing>>> {
        if !self.opts.enabled {
            return None;
        }
        let mut c = self.dirs.lock().unwrap();
        let now = Instant::now();
        let usable = |l: &Arc<Mutex<Listing>>| {
            let mut l = l.lock().unwrap();
            if l.ahead {
                if now.saturating_duration_since(l.vouched) >= FRESH {
                    return false;
                }
                l.ahead = false;
            }
            true
        };
        // Expired ones stay until a clean (see `listing_held`).
        let found = match c.get(dir) {
            Some(t) if self.unexpired(t.until, now) && usable(&t.value) => Some(t.value.clone()),
            _ => None,
        };
        self.dir_count.note(found)
    }

    /// The listing of `dir` last fetched, at any age: what the mount answers while the
    /// server is away.
    pub fn listing_held(&self, dir: &[u8]) -> Option<Arc<Mutex<Listing>>> {
        if !self.opts.enabled {
            return None;
        }
        let c = self.dirs.lock().unwrap();
        c.peek(dir).map(|t| t.value.clone())
    }

    /// The cached listing of `dir`, if fresh, without counting a hit or a miss and without
    /// taking it into use (for keeping it in step with local changes, and for checks).
    /// One fetched ahead and never used is not, once older than [`FRESH`].
    pub fn peek_listing(&self, dir: &[u8]) -> Option<Arc<Mutex<Listing>>> {
        let c = self.dirs.lock().unwrap();
        let now = Instant::now();
        c.peek(dir)
            .filter(|t| self.unexpired(t.until, now))
            .filter(|t| {
                let l = t.value.lock().unwrap();
                !l.ahead || now.saturating_duration_since(l.vouched) < FRESH
            })
            .map(|t| t.value.clone())
    }

    /// Forgets the listing of `dir` (not the attributes of its entries).
    pub fn drop_listing(&self, dir: &[u8]) {
        self.dirs.lock().unwrap().pop(dir);
    }

    /// Stores a listing read from the server (requested at `generation`) and the attributes
    /// of its entries — unless the directory changed locally meanwhile: then it is returned
    /// but not kept, and `trusted` says no.
    pub fn put_listing(
        &self,
        dir: &[u8],
        entries: &[NameEntry],
        generation: u64,
        on_current: impl FnOnce(),
    ) -> Arc<Mutex<Listing>> {
        let asked = Asked {
            generation,
            at: Instant::now(),
            stamp: Stamp::now(None),
            ahead: false,
            changes: self.inodes.lock().unwrap().change_seq(),
        };
        self.put_listing_asked(dir, entries, asked, on_current)
    }

    /// `put_listing`, for a listing asked for as `asked` says.
    pub fn put_listing_asked(
        &self,
        dir: &[u8],
        entries: &[NameEntry],
        asked: Asked,
        on_current: impl FnOnce(),
    ) -> Arc<Mutex<Listing>> {
        let negative_ttl = self.opts.negative_ttl;
        self.store_listing(dir, entries, asked, negative_ttl, on_current)
    }

    /// The listing of a directory just created here: empty; a name missing from it is
    /// absent while the mount keeps changing the directory (see [`Listing::local_until`]).
    pub fn put_new_dir(&self, dir: &[u8]) {
        let asked = Asked {
            generation: self.generation(dir),
            at: Instant::now(),
            stamp: Stamp::now(None),
            ahead: false,
            changes: self.inodes.lock().unwrap().change_seq(),
        };
        let l = self.store_listing(dir, &[], asked, Duration::ZERO, || {});
        let mut l = l.lock().unwrap();
        l.made_here = true;
        l.local_until = Some(Instant::now() + FRESH);
    }

    pub(super) fn store_listing(
        &self,
        dir: &[u8],
        entries: &[NameEntry],
        asked: Asked,
        negative_ttl: Duration,
        on_current: impl FnOnce(),
    ) -> Arc<Mutex<Listing>> {
        let generation = asked.generation;
        if let (true, Some(a)) = (dir.is_empty(), &asked.stamp.dir_attrs) {
            self.root_seen(a);
        }
        let _change = self.changes.lock().unwrap();
        let current = self.generation(dir) == generation;
        if current {
            on_current();
        }
        let keep = self.opts.enabled && current;
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut l = Listing {
            entries: Default::default(),
            serial: SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            generation,
            current,
            negative_until: Some(asked.at + negative_ttl),
            local_until: None,
            prefetched: false,
            made_here: false,
            ahead: asked.ahead,
            vouched: asked.at,
            stamp: asked.stamp,
            fetched: asked.at,
        };
        let now = Instant::now();
        {
            // A file with a write on its way, or one that began (and maybe landed) while the
            // listing travelled: the server may have answered with its size and mtime from
            // before it, which no later landing would take back from the attributes.
            let changing: Vec<bool> = {
                let t = self.inodes.lock().unwrap();
                // Looked up name by name only when some change may have overtaken it.
                let any = t.change_seq() != asked.changes || t.any_change_on_its_way();
                entries
                    .iter()
                    .map(|e| any && t.changed_since(t.ino_for(&join(dir, &e.name)), asked.changes))
                    .collect()
            };
            let mut attrs = self.attrs.lock().unwrap();
            let mut listed = Entries::with_capacity(entries.len());
            for (e, changing) in entries.iter().zip(changing) {
                let entry = Entry {
                    attrs: e.attrs.clone(),
                    nlink: e.nlink,
                    stale: changing,
                    server: true,
                };
                if keep && !changing {
                    attrs.put(
                        join(dir, &e.name),
                        Timed {
                            value: entry.clone(),
                            until: now + self.opts.stat_ttl,
                        },
                    );
                }
                listed.insert(&e.name, entry);
            }
            l.entries = Arc::new(listed);
        }
        if keep {
            // Listed again with no change in between: as exact as the one it replaces.
            let was = self
                .dirs
                .lock()
                .unwrap()
                .peek(dir)
                .filter(|t| t.until > now)
                .map(|t| t.value.clone());
            if let Some(w) = was {
                let w = w.lock().unwrap();
                l.made_here = w.made_here;
                l.local_until = w.local_until;
            }
        }
        let l = Arc::new(Mutex::new(l));
        if keep {
            let mut dirs = self.dirs.lock().unwrap();
            dirs.put(
                dir.to_vec(),
                Timed {
                    value: l.clone(),
                    until: now + self.opts.dir_ttl,
                },
            );
            keep_within(&mut dirs, LISTED_ENTRIES_KEPT);
            drop(dirs);
            self.clean_if_due();
        }
        l
    }

    /// What the parent's cached listing says about `path`.
    pub fn known(&self, path: &[u8]) -> Known {
        self.known_since(path).0
    }

    /// `known`, and since when the server's answer it comes from is old (when its listing
    /// was asked for).
    pub fn known_since(&self, path: &[u8]) -> (Known, Option<std::time::Instant>) {
        match self.listing(parent_of(path)) {
            Some(l) => {
                let l = l.lock().unwrap();
                (l.known(name_of(path)), Some(l.fetched.into_std()))
            }
            None => (Known::Unknown, None),
        }
    }
}
