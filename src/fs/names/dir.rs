//! Directories: listed whole (one READDIR stream), shared by everyone who needs the same
//! listing at the same time, cached, and served to the kernel by offset. When a listing is
//! used, the listings of its subdirectories are fetched in the background, a bounded number
//! at a time, so that a tree walk (`find`, `ls -R`, `git status`) finds the next level ready.
//!
//! A listing is bounded (`remote/bounds.rs`): one somebody asked for by about a million
//! entries, one fetched ahead by far less, past which it gives up quietly; a listing that
//! never ends is refused with EIO and a log line now and then, not held without end.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use fuser::{FileAttr, FileType};
use futures::future::{BoxFuture, Shared};
use futures::FutureExt;

use crate::fs::handle::DirListing;
use crate::fs::meta::attr::file_type;
use crate::fs::meta::cache::{Asked, Listing, Stamp};
use crate::fs::names::inode::{join, parent_of, RelPath, ROOT_INO};
use crate::fs::{Filesystem, FsError, FsResult};
use crate::logging::Rarely;
use crate::remote::bounds::server_text;
use crate::remote::{Attrs, ListingBound, NameEntry, RemoteError};

type ListingFuture = Shared<BoxFuture<'static, Result<Arc<Mutex<Listing>>, RemoteError>>>;

/// Why a listing is fetched, which decides its bound and how fresh it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Somebody needs it now (`opendir`, a lookup that must know).
    Asked,
    /// Beside a request that does not need it (a lookup's or a stat's speculative listing),
    /// used at once: a small bound, past which it gives up without a word.
    Beside,
    /// Ahead of need, for no program yet (the subdirectories of a directory in use): the
    /// small bound, and its first use must come soon after the server's answer.
    Ahead,
}

/// Listings being fetched, by directory, and what for.
#[derive(Default)]
pub struct Inflight(Mutex<HashMap<RelPath, (ListingFuture, Purpose)>>);

/// "A listing was refused", said now and then.
static REFUSED: Rarely = Rarely::new();
/// "Names were dropped from a listing", said now and then.
static DROPPED: Rarely = Rarely::new();

/// One entry handed to the kernel. `offset` is where the listing continues after it.
pub struct DirItem<'a> {
    pub ino: u64,
    pub offset: u64,
    pub kind: FileType,
    pub name: &'a [u8],
    /// Attributes from READDIR, for readdirplus.
    pub attr: FileAttr,
    /// From a snapshot older than a change made here, or than what the kernel was last told
    /// to forget: to be cached by the kernel for no time, or it would bring back a name or
    /// a size the change (or the forgetting) did away with.
    pub outdated: bool,
}

impl Filesystem {
    /// The listing of `dir`: cached, already being fetched, or fetched now for `purpose`.
    pub(in crate::fs) fn listing_shared(
        self: &Arc<Self>,
        dir: &[u8],
        purpose: Purpose,
    ) -> ListingFuture {
        // A prefetch for no program yet must not take a cached listing into use.
        let cached = if purpose == Purpose::Ahead {
            self.cache.peek_listing(dir)
        } else {
            self.cache.listing(dir)
        };
        if let Some(l) = cached {
            return futures::future::ready(Ok(l)).boxed().shared();
        }
        let mut inflight = self.listing_inflight.0.lock().unwrap();
        if let Some((f, fetched_for)) = inflight.get(dir) {
            if purpose != Purpose::Asked || *fetched_for == Purpose::Asked {
                return f.clone();
            }
            // Fetched ahead, within the small bound: past that, listed again within the
            // bound of a listing asked for.
            let (fs, d, f) = (self.clone(), dir.to_vec(), f.clone());
            return async move {
                match f.await {
                    Err(RemoteError::Exceeded(_)) => fs.listing_shared(&d, Purpose::Asked).await,
                    r => r,
                }
            }
            .boxed()
            .shared();
        }
        let (fs, d) = (self.clone(), dir.to_vec());
        let task = tokio::spawn(async move {
            let res = fs.fetch_listing_for(&d, purpose).await;
            fs.listing_inflight.0.lock().unwrap().remove(&d);
            res
        });
        let fut = async move { task.await.unwrap_or(Err(RemoteError::ConnectionLost)) }
            .boxed()
            .shared();
        inflight.insert(dir.to_vec(), (fut.clone(), purpose));
        fut
    }

    /// Lists `dir` from the server, for a program.
    pub(in crate::fs) async fn fetch_listing(
        &self,
        dir: &[u8],
    ) -> Result<Arc<Mutex<Listing>>, RemoteError> {
        self.fetch_listing_for(dir, Purpose::Asked).await
    }

    async fn fetch_listing_for(
        &self,
        dir: &[u8],
        purpose: Purpose,
    ) -> Result<Arc<Mutex<Listing>>, RemoteError> {
        let generation = self.cache.generation(dir);
        let changes = self.inodes.lock().unwrap().change_seq();
        let at = tokio::time::Instant::now();
        let mut stamp = Stamp::now(None);
        let r = self.remote(dir);
        let r = &r;
        let timeout = self.pool.timeout();
        let bound = match purpose {
            Purpose::Asked => ListingBound::asked(timeout),
            Purpose::Ahead | Purpose::Beside => ListingBound::ahead(timeout),
        };
        let bound = &bound;
        // The directory's attributes first, on the same session, so that they are no newer
        // than the listing: what revalidation later compares with (names/revalidate.rs).
        let listed = self
            .call(|c| async move {
                let (st, list) =
                    futures::future::join(c.sftp.stat(r), c.sftp.read_dir_all(r, bound)).await;
                Ok((st.ok(), list?))
            })
            .await;
        let (dir_attrs, mut entries) = match listed {
            Err(RemoteError::Exceeded(e)) if purpose == Purpose::Asked => {
                // Said here, now and then; the EIO of each refusal is not logged again.
                if let Some(held) = REFUSED.due() {
                    tracing::warn!("{e}{}", held_back(held));
                }
                return Err(RemoteError::Exceeded(e));
            }
            Err(RemoteError::Exceeded(e)) => {
                tracing::debug!("prefetch given up: {e}");
                return Err(RemoteError::Exceeded(e));
            }
            r => r?,
        };
        stamp.dir_attrs = dir_attrs;
        drop_unshowable(r, &mut entries);
        if let Some(cs) = &self.opts.charsets {
            // The server's names as shown locally; from here on the core knows only these.
            let local = cs.listed(dir, entries.iter().map(|e| e.name.as_slice()));
            entries = entries
                .into_iter()
                .zip(local)
                .filter_map(|(mut e, name)| {
                    e.name = name?;
                    Some(e)
                })
                .collect();
        }
        if self.opts.symlinks.follow {
            self.follow_links(dir, &mut entries).await;
        }
        // Link counts only from a listing no local change overtook (a link made meanwhile).
        let learn_links = || {
            let mut t = self.inodes.lock().unwrap();
            // Only nodes the table has learn: found in the directory's node, if it has one.
            let Some(d) = t.path_ino(dir) else {
                return;
            };
            for e in &entries {
                let Some(child) = t.existing_child(d, &e.name) else {
                    continue;
                };
                if !t.learns_links(child) {
                    continue;
                }
                if let (Some(n), Some(l)) = (t.get_mut(child), e.nlink) {
                    n.nlink = Some(l);
                    n.relist = false;
                }
            }
        };
        let asked = Asked {
            generation,
            at,
            stamp,
            ahead: purpose == Purpose::Ahead,
            changes,
        };
        Ok(self
            .cache
            .put_listing_asked(dir, &entries, asked, learn_links))
    }

    /// With `follow_symlinks`, symlinks show as what they point to (when it exists).
    async fn follow_links(&self, dir: &[u8], entries: &mut [NameEntry]) {
        let links: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].attrs.is_symlink())
            .collect();
        let paths: Vec<Vec<u8>> = links
            .iter()
            .map(|&i| self.remote(&join(dir, &entries[i].name)))
            .collect();
        let stats = futures::future::join_all(
            paths
                .iter()
                .map(|p| async move { self.call(|c| async move { c.sftp.stat(p).await }).await }),
        )
        .await;
        for (&i, st) in links.iter().zip(stats) {
            if let Ok(a) = st {
                entries[i].attrs = a;
            }
        }
    }

    /// Fetches, in the background, the listings of `dir`'s subdirectories not yet cached.
    fn prefetch_children(self: &Arc<Self>, dir: &[u8], listing: &Arc<Mutex<Listing>>) {
        if !self.opts.prefetch || !self.cache.enabled() || self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let subdirs: Vec<RelPath> = {
            let mut l = listing.lock().unwrap();
            if l.prefetched {
                return;
            }
            l.prefetched = true;
            l.entries
                .iter()
                .filter(|(_, e)| e.attrs.is_dir())
                .map(|(n, _)| join(dir, n))
                .collect()
        };
        // One task walks the subdirectories and starts a fetch as a slot frees: however many
        // a listing names, no more tasks than slots (and this one) exist at once.
        let fs = self.clone();
        tokio::spawn(async move {
            for sub in subdirs {
                if fs.cache.peek_listing(&sub).is_some() {
                    continue;
                }
                // Bounded parallelism; closed at unmount, which ends the walk.
                let Ok(slot) = fs.prefetch_slots.clone().acquire_owned().await else {
                    return;
                };
                if fs.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if fs.cache.peek_listing(&sub).is_some() {
                    continue;
                }
                let fs = fs.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = fs.listing_shared(&sub, Purpose::Ahead).await;
                });
            }
        });
    }

    pub async fn opendir(self: &Arc<Self>, ino: u64) -> FsResult<u64> {
        // Asynchronous mode: a listing shows what was queued (and `sync -f DIR`, which
        // opens DIR first, waits for the queue: Linux does not pass syncfs on to FUSE).
        let settled = self.settle().await.map_err(FsError::from);
        let path = self.path_of(ino)?;
        self.in_use.touch(&path);
        let fetched = match settled {
            Ok(()) => self
                .listing_shared(&path, Purpose::Asked)
                .await
                .map_err(FsError::from),
            Err(e) => Err(e),
        };
        // With the server away, the last listing (and what was changed here since).
        let mut listing = match fetched {
            Ok(l) => l,
            Err(e) => self.held_listing(&path, &e).ok_or(e)?,
        };
        let (current, stale) = {
            let l = listing.lock().unwrap();
            let stale = l.entries.values().any(|e| e.stale);
            (l.current, stale)
        };
        // Not with the server away: the listing held is all there is.
        if (!current || stale) && !self.away() {
            // Read while something here changed (`rm x; ls` must not show x), or with
            // attributes a local change made stale (readdirplus would hand the kernel an old
            // size): read again.
            listing = self.fetch_listing(&path).await?;
        }
        // Shared with the cached listing, not copied: a change to it copies it then.
        let (entries, generation, serial) = {
            let l = listing.lock().unwrap();
            (l.entries.clone(), l.generation, l.serial)
        };
        self.prefetch_children(&path, &listing);
        self.file_ahead.listed(&path, entries.clone());
        Ok(self.dirs.insert(DirListing {
            ino,
            entries,
            outdated: Default::default(),
            generation,
            serial,
        }))
    }

    /// Feeds entries from `offset` to `sink` until it returns false (the kernel's buffer is
    /// full). With `plus`, each entry accepted counts as a lookup, as the kernel takes one.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut sink: impl FnMut(DirItem) -> bool,
    ) -> FsResult<()> {
        let d = self.dirs.get(fh).ok_or(FsError::new(libc::EBADF))?;
        let mut t = self.inodes.lock().unwrap();
        let named = t.path(d.ino);
        let has_path = named.is_some();
        let path = named.unwrap_or_default();
        // Changed here since the listing was asked for: its entries may say what was before
        // the change (a name since renamed away, a size since rewritten). Handed to the
        // kernel for no time, so that its next use asks (lookup, getattr), answered by what
        // the mount knows now.
        let outdated =
            d.outdated.load(Ordering::SeqCst) || self.cache.generation(&path) != d.generation;
        // The listing the snapshot was taken from, if still cached: local changes kept it in
        // step, so a name it lost since was removed or renamed away here.
        let live = if outdated {
            self.cache
                .peek_listing(&path)
                .filter(|l| l.lock().unwrap().serial == d.serial)
        } else {
            None
        };
        let dir_attrs = Attrs {
            permissions: Some(libc::S_IFDIR | 0o755),
            ..Attrs::default()
        };
        for i in offset as usize..d.entries.len() + 2 {
            let accepted = match i {
                0 | 1 => {
                    let ino = if i == 0 {
                        d.ino
                    } else if d.ino == ROOT_INO {
                        ROOT_INO
                    } else {
                        t.ino_for(parent_of(&path))
                    };
                    sink(DirItem {
                        ino,
                        offset: i as u64 + 1,
                        kind: FileType::Directory,
                        name: if i == 0 { b"." } else { b".." },
                        attr: self.opts.policy.file_attr(ino, &dir_attrs, None),
                        outdated,
                    })
                }
                _ => {
                    let Some((name, e)) = d.entries.at(i - 2) else {
                        break;
                    };
                    if live
                        .as_ref()
                        .is_some_and(|l| !l.lock().unwrap().entries.contains(name))
                    {
                        continue;
                    }
                    let child = join(&path, name);
                    let ino = match has_path {
                        true => t.ino_for_child(d.ino, name, &child),
                        false => t.ino_for(&child),
                    };
                    // Outdated: what the mount knows of the file now, where it knows it (even
                    // an entry for no time is the kernel's for the jiffy it is handed over).
                    let now = outdated
                        .then(|| self.cache.attrs_known(&child).filter(|e| !e.stale))
                        .flatten();
                    let e = now.as_ref().unwrap_or(e);
                    let mode = e.attrs.permissions.unwrap_or(libc::S_IFREG);
                    let nlink = e.nlink.or_else(|| t.get(ino).and_then(|n| n.nlink));
                    let ok = sink(DirItem {
                        ino,
                        offset: i as u64 + 1,
                        kind: file_type(mode),
                        name,
                        attr: self.attr_in(&t, ino, &e.attrs, nlink),
                        // A write still on its way, or one that overtook the listing: the
                        // server's mtime is from before it.
                        outdated: outdated || e.stale || t.change_on_its_way(ino),
                    });
                    if ok && plus {
                        match has_path {
                            true => t.lookup_child(d.ino, name, &child),
                            false => t.lookup(&child),
                        };
                    }
                    ok
                }
            };
            if !accepted {
                break;
            }
        }
        Ok(())
    }

    /// Marks the open listings of the directories `pick` names as older than what the kernel
    /// is about to be told to forget (see [`DirItem::outdated`]). Call it before telling.
    pub(in crate::fs) fn outdate_listings(&self, pick: impl Fn(&[u8]) -> bool) {
        let t = self.inodes.lock().unwrap();
        for d in self.dirs.all(|_| true) {
            if t.path(d.ino).is_some_and(|p| pick(&p)) {
                d.outdated.store(true, Ordering::SeqCst);
            }
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }
}

/// " (and N more like it since)" after a line said now and then, when some were held back.
fn held_back(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(
            " ({n} more like it in the last {} s)",
            Rarely::EVERY.as_secs()
        ),
    }
}

/// Drops from a listing of `remote_dir` what no local directory can show: the server's own
/// `.` and `..` (the kernel is given ours), and names that are empty, longer than 255 bytes
/// or hold a `/`, any of which would make the kernel fail the whole `readdir`. The invalid
/// ones are named in a warning (now and then).
fn drop_unshowable(remote_dir: &[u8], entries: &mut Vec<NameEntry>) {
    let mut dropped = Vec::new();
    entries.retain(|e| {
        let why = match e.name.as_slice() {
            b"." | b".." => return false,
            [] => "empty".to_string(),
            n if n.len() > 255 => format!("{} bytes", n.len()),
            n if n.contains(&b'/') => "holds a /".to_string(),
            _ => return true,
        };
        dropped.push(format!("\"{}\" ({why})", server_text(&e.name)));
        false
    });
    if dropped.is_empty() {
        return;
    }
    if let Some(held) = DROPPED.due() {
        let more = dropped.len().saturating_sub(3);
        dropped.truncate(3);
        tracing::warn!(
            "the listing of {} holds names no local directory can show, left out: {}{}{}",
            server_text(remote_dir),
            dropped.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            held_back(held)
        );
    }
}
