//! The attributes cache: a file's attributes under every name it has, stored after local
//! changes or from the server's answers checked against the directory's change generation.

use std::time::Duration;

use tokio::time::Instant;

use super::{drop_matching, name_of, Entry, MetaCache, Timed};
use crate::fs::names::inode::{parent_of, RelPath};
use crate::remote::Attrs;

impl MetaCache {
    pub fn attrs(&self, path: &[u8]) -> Option<Entry> {
        let found = self.attrs_known(path).filter(|e| !e.stale);
        self.attr_count.note(found)
    }

    /// `attrs_known`, stored less than `age` ago (stale ones too: their owner is right).
    pub fn attrs_known_within(&self, path: &[u8], age: Duration) -> Option<Entry> {
        let e = self.attrs_known(path)?;
        let c = self.attrs.lock().unwrap();
        let t = c.peek(path)?;
        (t.until.checked_sub(self.opts.stat_ttl)?.elapsed() < age).then_some(e)
    }

    /// Like `attrs`, but also when a local write made the size and mtime stale: its owner,
    /// mode and atime are still right.
    pub fn attrs_known(&self, path: &[u8]) -> Option<Entry> {
        if !self.opts.enabled {
            return None;
        }
        // Expired ones stay until a clean (see `attrs_held`).
        let mut c = self.attrs.lock().unwrap();
        c.get(path)
            .filter(|t| self.unexpired(t.until, Instant::now()))
            .map(|t| t.value.clone())
    }

    /// The attributes last known of `path` at any age, not made stale by a local write (a
    /// directory's entries changing here leaves its owner and mode right): what the mount
    /// answers while the server is away.
    pub fn attrs_held(&self, path: &[u8]) -> Option<Entry> {
        if !self.opts.enabled {
            return None;
        }
        let c = self.attrs.lock().unwrap();
        let found = c.peek(path).map(|t| t.value.clone());
        drop(c);
        found.filter(|e| !e.stale || e.attrs.is_dir()).or_else(|| {
            let root = path.is_empty().then(|| self.root.lock().unwrap().clone());
            root.flatten().map(|attrs| Entry {
                attrs,
                nlink: None,
                stale: false,
                server: true,
            })
        })
    }

    /// The root's attributes as the server last gave them (a STAT of it, or with a listing
    /// of it): it is in no listing, and the entry above may be gone when the server is.
    pub(super) fn root_seen(&self, attrs: &Attrs) {
        *self.root.lock().unwrap() = Some(attrs.clone());
    }

    /// Attributes after a local change to `path`: listings still in flight are out of date.
    pub fn put_attrs(&self, path: &[u8], attrs: &Attrs, nlink: Option<u32>) {
        let _change = self.changes.lock().unwrap();
        self.put_local(path, attrs, nlink);
    }

    /// `put_attrs` for a change whose request went out before `still` could be known
    /// (the file may have been renamed meanwhile): stored only if `still` holds.
    pub fn put_attrs_where(
        &self,
        path: &[u8],
        attrs: &Attrs,
        nlink: Option<u32>,
        still: impl FnOnce() -> bool,
    ) {
        let _change = self.changes.lock().unwrap();
        if still() {
            self.put_local(path, attrs, nlink);
        }
    }

    pub(super) fn put_local(&self, path: &[u8], attrs: &Attrs, nlink: Option<u32>) {
        let (names, more) = self.names(path);
        if more {
            self.forget_linked();
        }
        for n in names.iter().filter(|n| !n.is_empty()) {
            self.changed(parent_of(n));
        }
        self.store_attrs_as(&names, attrs, nlink, false);
    }

    /// Stores `attrs`, the server's answer, for the file at `path` under every name it has.
    pub(super) fn store_attrs(&self, path: &[u8], attrs: &Attrs, nlink: Option<u32>) {
        self.store_attrs_as(&self.names(path).0, attrs, nlink, true);
    }

    /// Stores `attrs` under each of `names` (the names of one file); `server`: they are the
    /// server's answer, not a local change's outcome.
    pub(super) fn store_attrs_as(
        &self,
        names: &[RelPath],
        attrs: &Attrs,
        nlink: Option<u32>,
        server: bool,
    ) {
        if !self.opts.enabled {
            return;
        }
        if names.iter().any(|n| n.is_empty()) {
            self.root_seen(attrs);
        }
        let e = Entry {
            attrs: attrs.clone(),
            nlink,
            stale: false,
            server,
        };
        for name in names {
            self.attrs.lock().unwrap().put(
                name.clone(),
                Timed {
                    value: e.clone(),
                    until: Instant::now() + self.opts.stat_ttl,
                },
            );
            // Keep the parent's listing in step, if we have one.
            if !name.is_empty() {
                if let Some(l) = self.peek_listing(parent_of(name)) {
                    l.lock()
                        .unwrap()
                        .entries_mut()
                        .insert(name_of(name), e.clone());
                }
            }
        }
        self.clean_if_due();
    }

    /// A file with links not known by name changed: every cached link count above one may
    /// be wrong now, and every attribute stored with one may belong to that file. The
    /// listings that told them go too: the next stat learns the counts again from one.
    pub(super) fn forget_linked(&self) {
        let linked = |e: &Entry| e.nlink.is_some_and(|l| l > 1);
        let dropped = drop_matching(&mut self.attrs.lock().unwrap(), |_, t| linked(&t.value));
        for k in &dropped {
            self.changed(parent_of(k));
        }
        drop_matching(&mut self.dirs.lock().unwrap(), |_, l| {
            l.value.lock().unwrap().entries.values().any(linked)
        });
        self.inodes.lock().unwrap().forget_unknown_links();
    }

    /// `put_attrs` for attributes the server sent in answer to a request made when `dir`'s
    /// generation was `generation`: dropped if a local change in the directory came since.
    pub fn put_attrs_if(&self, path: &[u8], attrs: &Attrs, nlink: Option<u32>, generation: u64) {
        // What the server says is no local change: it leaves the generation alone.
        let _change = self.changes.lock().unwrap();
        if self.generation(parent_of(path)) == generation {
            self.store_attrs(path, attrs, nlink);
        }
    }

    /// Every write to `path` may have landed: `landed` clears the inode's own idea of the
    /// size and says whether it had one. Entries stored while the writes were on their way
    /// can hold the size from before them, and so can answers still travelling: the entry
    /// goes and those answers are refused. `exact` (attributes read after the writes) takes
    /// its place if `still` holds (checked before this change counts as one).
    pub fn writes_landed(
        &self,
        path: &[u8],
        exact: Option<(&Attrs, Option<u32>)>,
        still: impl FnOnce(&Self) -> bool,
        landed: impl FnOnce() -> bool,
    ) {
        let _change = self.changes.lock().unwrap();
        let keep = exact.is_some() && still(self);
        // Exact attributes that cannot be kept (something changed meanwhile) leave nothing
        // older behind either: what is cached may predate the change they saw.
        if landed() || (exact.is_some() && !keep) {
            self.forget_names(path);
        }
        if let (Some((a, nlink)), true) = (exact, keep) {
            self.store_attrs(path, a, nlink);
        }
    }

    /// `path` changed in a way we cannot describe: forget its attributes (the listing keeps
    /// the name, which still exists).
    pub fn invalidate(&self, path: &[u8]) {
        self.invalidate_with(path, || {});
    }

    /// `invalidate`, with `update` (the inode table's side of the change) in the same step.
    pub fn invalidate_with(&self, path: &[u8], update: impl FnOnce()) {
        let _change = self.changes.lock().unwrap();
        update();
        self.forget_names(path);
    }

    /// Drops the attributes of the file at `path` under every name it has.
    pub(super) fn forget_names(&self, path: &[u8]) {
        let (names, more) = self.names(path);
        self.forget_attrs(&names, more);
    }

    /// Drops the attributes stored under `names`, which belong to one file; `more`: it has
    /// links not known by name, whose counts may be anywhere in the cache.
    pub(super) fn forget_attrs(&self, names: &[RelPath], more: bool) {
        if more {
            self.forget_linked();
        }
        for n in names {
            self.attrs.lock().unwrap().pop(n);
            self.changed_entry(n);
        }
    }

    /// The cached attributes of `path` (every name of its file) hold, but their size and
    /// times may be out of date: the next stat asks the server. Nothing else changes.
    pub fn mark_stale(&self, path: &[u8]) {
        let (names, _) = self.names(path);
        let mut attrs = self.attrs.lock().unwrap();
        for n in names {
            if let Some(t) = attrs.get_mut(&n) {
                t.value.stale = true;
            }
        }
    }

    /// A local write changed `path`'s size and mtime (not known here until the server says).
    pub fn mark_written(&self, path: &[u8]) {
        let _change = self.changes.lock().unwrap();
        self.written(path);
    }

    /// `mark_written`, the lock held.
    fn written(&self, path: &[u8]) {
        let (names, more) = self.names(path);
        if more {
            self.forget_linked();
        }
        for n in names {
            if let Some(t) = self.attrs.lock().unwrap().get_mut(&n) {
                t.value.stale = true;
            }
            self.changed_entry(&n);
        }
    }

    /// `mark_written` for a write about to be placed, and in the same step what it extends:
    /// `implied()` (the size the file's queued writes imply) and, when there is none, the size
    /// cached. One step with `writes_landed`, which ends the implied size and replaces the
    /// cached one together: read between the two, the cached size would be from before the
    /// last write, and an append placed there would overwrite it.
    pub fn mark_written_sizing(
        &self,
        path: &[u8],
        implied: impl FnOnce() -> Option<u64>,
    ) -> (Option<u64>, Option<u64>) {
        let _change = self.changes.lock().unwrap();
        let implied = implied();
        let cached = match implied {
            Some(_) => None,
            None => self.attrs_known(path).and_then(|e| e.attrs.size),
        };
        self.written(path);
        (implied, cached)
    }

    /// A write to `path` that `mark_written` announced has landed: a listing asked for
    /// while it travelled may hold the file's size and mtime from before it, so listings in
    /// flight are out of date again and the cached one's entry stale. The attributes stay:
    /// any stored since were read after the write or queued behind it.
    pub fn write_landed(&self, path: &[u8]) {
        let _change = self.changes.lock().unwrap();
        for n in self.names(path).0 {
            self.changed_entry(&n);
        }
    }

    /// `path` still exists but changed: listings in flight are out of date, and the cached
    /// one's entry is stale (a lookup will fetch its attributes).
    pub(super) fn changed_entry(&self, path: &[u8]) {
        if path.is_empty() {
            return;
        }
        self.changed(parent_of(path));
        if let Some(l) = self.peek_listing(parent_of(path)) {
            let mut l = l.lock().unwrap();
            // Not copied from the directory handles sharing it for nothing.
            if l.entries.get(name_of(path)).is_some_and(|e| !e.stale) {
                if let Some(e) = l.entries_mut().get_mut(name_of(path)) {
                    e.stale = true;
                }
            }
        }
    }
}
