//! The listings cache: whole directories as the server listed them, kept current by local
//! changes, and what they say about a name (present, absent while believed, unknown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{name_of, Entry, MetaCache, Timed};
use crate::fs::names::inode::{join, parent_of};
use crate::remote::NameEntry;

/// A whole directory as the server listed it, kept current by local changes.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: HashMap<Vec<u8>, Entry>,
    /// The directory's change generation when the listing was requested.
    pub generation: u64,
    /// Until when a name missing from the listing is taken as absent.
    pub negative_until: Option<Instant>,
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
}

impl Listing {
    /// What the listing says about `name`; absence only while it is believed.
    pub fn known(&self, name: &[u8]) -> Known {
        match self.entries.get(name) {
            Some(e) => Known::Present(e.clone()),
            None if self.negative_until.is_some_and(|t| t > Instant::now()) => Known::Absent,
            None => Known::Unknown,
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
    }

    /// The cached listing of `dir`, if fresh.
    pub fn listing(&self, dir: &[u8]) -> Option<Arc<Mutex<Listing>>> {
        if !self.opts.enabled {
            return None;
        }
        let mut c = self.dirs.lock().unwrap();
        let found = match c.get(dir) {
            Some(t) if t.until > Instant::now() => Some(t.value.clone()),
            Some(_) => {
                c.pop(dir);
                None
            }
            None => None,
        };
        self.dir_count.note(found)
    }

    /// The cached listing of `dir`, if fresh, without counting a hit or a miss.
    pub fn peek_listing(&self, dir: &[u8]) -> Option<Arc<Mutex<Listing>>> {
        let c = self.dirs.lock().unwrap();
        c.peek(dir)
            .filter(|t| t.until > Instant::now())
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
        self.store_listing(dir, entries, generation, self.opts.negative_ttl, on_current)
    }

    /// The listing of a directory just created here: empty, and believed for `dir_ttl`.
    pub fn put_new_dir(&self, dir: &[u8]) {
        let l = self.store_listing(dir, &[], self.generation(dir), self.opts.dir_ttl, || {});
        l.lock().unwrap().made_here = true;
    }

    pub(super) fn store_listing(
        &self,
        dir: &[u8],
        entries: &[NameEntry],
        generation: u64,
        negative_ttl: Duration,
        on_current: impl FnOnce(),
    ) -> Arc<Mutex<Listing>> {
        let _change = self.changes.lock().unwrap();
        let current = self.generation(dir) == generation;
        if current {
            on_current();
        }
        let keep = self.opts.enabled && current;
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut l = Listing {
            serial: SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            generation,
            current,
            negative_until: Some(Instant::now() + negative_ttl),
            ..Listing::default()
        };
        let now = Instant::now();
        {
            let mut attrs = self.attrs.lock().unwrap();
            for e in entries {
                let entry = Entry {
                    attrs: e.attrs.clone(),
                    nlink: e.nlink,
                    stale: false,
                };
                if keep {
                    attrs.put(
                        join(dir, &e.name),
                        Timed {
                            value: entry.clone(),
                            until: now + self.opts.stat_ttl,
                        },
                    );
                }
                l.entries.insert(e.name.clone(), entry);
            }
        }
        if keep {
            // Listed again with no change in between: as exact as the one it replaces.
            let was = self.dirs.lock().unwrap().peek(dir).map(|t| t.value.clone());
            l.made_here = was.is_some_and(|w| w.lock().unwrap().made_here);
        }
        let l = Arc::new(Mutex::new(l));
        if keep {
            self.dirs.lock().unwrap().put(
                dir.to_vec(),
                Timed {
                    value: l.clone(),
                    until: now + self.opts.dir_ttl,
                },
            );
            self.clean_if_due();
        }
        l
    }

    /// What the parent's cached listing says about `path`.
    pub fn known(&self, path: &[u8]) -> Known {
        match self.listing(parent_of(path)) {
            Some(l) => l.lock().unwrap().known(name_of(path)),
            None => Known::Unknown,
        }
    }
}
