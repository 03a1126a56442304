//! Answers while the server is away (asynchronous mode): what the mount last knew of a name
//! or a directory, at any age, instead of EIO for every lookup once the caches' time is up.
//! Changes go into the journal meanwhile and reach the server when it answers again; one
//! that no longer fits what the server has then is kept beside it as a conflict copy.

use std::sync::{Arc, Mutex};

use super::cache::{name_of, Known, Listing};
use crate::fs::names::inode::parent_of;
use crate::fs::{Filesystem, FsError, FsResult};
use crate::remote::{Attrs, RemoteError};

impl Filesystem {
    /// A request to the server failed with `e`: a lost or silent connection means the
    /// server is away (in asynchronous mode; see `server_away`).
    pub(in crate::fs) fn note_failure(&self, e: &RemoteError) {
        if e.is_connection() && self.journal().is_some() {
            if let Some(fs) = self.me.upgrade() {
                fs.server_away(e);
            }
        }
    }

    /// What the mount last knew of `path` while the server is away: its attributes (and
    /// link count), or ENOENT for a name its directory's last listing lacks. `None` when
    /// the server is not away, the failure was the server's own answer, or nothing is known.
    pub(in crate::fs) fn held(
        &self,
        path: &[u8],
        e: &FsError,
    ) -> Option<FsResult<(Attrs, Option<u32>)>> {
        if !lost(e) {
            return None;
        }
        self.held_while_away(path)
    }

    /// `held`, whatever failed.
    pub(in crate::fs) fn held_while_away(
        &self,
        path: &[u8],
    ) -> Option<FsResult<(Attrs, Option<u32>)>> {
        if !self.away() {
            return None;
        }
        if let Some(a) = self.cache.attrs_held(path) {
            return Some(Ok((a.attrs, a.nlink)));
        }
        // A directory's own attributes come with its listing: the root's only there.
        let listed = self.cache.listing_held(path);
        if let Some(a) = listed.and_then(|l| l.lock().unwrap().stamp.dir_attrs.clone()) {
            return Some(Ok((a, None)));
        }
        if path.is_empty() {
            return None;
        }
        let l = self.cache.listing_held(parent_of(path))?;
        let l = l.lock().unwrap();
        match l.entries.get(name_of(path)) {
            Some(e) if e.stale => None,
            Some(e) => Some(Ok((e.attrs.clone(), e.nlink))),
            None => Some(Err(FsError::new(libc::ENOENT))),
        }
    }

    /// What the parent's listing says of `path` and since when (`MetaCache::known_since`);
    /// with the server away, its last listing at any age, in which a missing name is absent.
    pub(in crate::fs) fn known_now(&self, path: &[u8]) -> (Known, Option<std::time::Instant>) {
        match self.cache.known_since(path) {
            (Known::Unknown, _) if self.away() => {}
            known => return known,
        }
        let Some(l) = self.cache.listing_held(parent_of(path)) else {
            return (Known::Unknown, None);
        };
        let l = l.lock().unwrap();
        let known = match l.entries.get(name_of(path)) {
            Some(e) => Known::Present(e.clone()),
            None => Known::Absent,
        };
        (known, Some(l.fetched.into_std()))
    }

    /// The last listing of `dir` while the server is away.
    pub(in crate::fs) fn held_listing(
        &self,
        dir: &[u8],
        e: &FsError,
    ) -> Option<Arc<Mutex<Listing>>> {
        if !lost(e) || !self.away() {
            return None;
        }
        self.cache.listing_held(dir)
    }
}

/// The request failed for want of a connection, not by the server's answer.
fn lost(e: &FsError) -> bool {
    e.remote.as_ref().is_some_and(RemoteError::is_connection)
}
