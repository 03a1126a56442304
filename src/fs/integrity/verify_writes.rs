//! `-o verify_writes`: a file whose whole content passes through the mount (opened for
//! writing while empty: created, or with `O_TRUNC`) has its bytes hashed as they are sent,
//! in order from offset 0, whichever of its descriptors on this mount sends them — no
//! second read. At a close (and at `fsync`), once every write of the file landed, the
//! server is asked for the same hash (`remote/hash/`): a different one is the transfer
//! failing, as a refused write is: the close or fsync returns EIO (every later close of the
//! file at that length too), the log names the file and both digests, `sftpfs status`
//! counts it.
//!
//! Another actor is not corruption. The file's size and mtime are taken once its writes
//! have landed and stayed landed a moment (`LANDED_QUIET`), and again around the check: a
//! file that changed on the server after this mount's writes landed, or while its hash was
//! computed, or that this mount wrote more to meanwhile, is counted `changed`, and its
//! close succeeds. What cannot be told apart: another program rewriting the file on the
//! server with as many bytes within the same second the writes landed (SFTP v3 mtimes are
//! whole seconds) shows as a mismatch.
//!
//! With `async_writes`, a file created through the queue is checked the same way once its
//! writes were answered, just before its CLOSE goes: a mismatch fails the queued close
//! (logged, counted, reported by the next `fsync` and by `sftpfs sync`), since the program's
//! own close was answered long before. What a replay sends after a restart is not checked:
//! the digest was in the killed daemon's memory.
//!
//! Not checked (counted `unchecked`): a file opened with data in it and not truncated,
//! written out of order or with holes (a seek, `pwrite` elsewhere, mmap pages written back
//! in another order), truncated to another size, or copied into on the server
//! (`copy_file_range`) while open; nothing to compare there.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join;

use super::Version;
use crate::fs::handle::OpenFile;
use crate::fs::names::inode::RelPath;
use crate::fs::Filesystem;
use crate::remote::hash::{hex, Algo, Hasher};
use crate::remote::protocol::SSH_FX_FAILURE;
use crate::remote::{Attrs, Conn, Handle, RemoteError};

/// How long a file's writes stay landed before its size and mtime are taken: a close right
/// after its writes (the usual case) costs no request for it.
const LANDED_QUIET: Duration = Duration::from_millis(50);

/// The running digest of the bytes written to one file through this mount.
pub struct WriteDigest {
    algo: Algo,
    hasher: Hasher,
    /// Bytes hashed: the next write must start here.
    next: u64,
    /// Why this file cannot be checked, once that is known.
    off: Option<&'static str>,
    /// Something was written (a file only opened is not counted).
    wrote: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Matched,
    Mismatched,
    Unchecked,
    Failed,
    /// Another actor changed the file: not this mount's transfer failing.
    Changed,
}

/// What the server said of the file's size and mtime once `next` bytes had landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Landed {
    next: u64,
    size: Option<u64>,
    mtime: Option<u32>,
}

impl Landed {
    fn of(next: u64, a: &Attrs) -> Landed {
        Landed {
            next,
            size: a.size,
            mtime: a.atime_mtime.map(|t| t.1),
        }
    }

    fn same_file(&self, other: &Landed) -> bool {
        self.size == other.size && self.mtime == other.mtime
    }
}

/// One file open for writing on this mount, with `verify_writes`.
struct Written {
    digest: WriteDigest,
    /// Its descriptors open for writing.
    writers: usize,
    landed: Option<Landed>,
    /// The last check: at which length, and what it found.
    checked: Option<(u64, Outcome)>,
}

/// The files being written, by inode number.
#[derive(Default)]
pub struct WrittenFiles(std::sync::Mutex<HashMap<u64, Written>>);

/// What the queued CLOSE of a file of the asynchronous mode checks: the digest of the bytes
/// queued, if they were written whole and in order.
pub struct QueuedDigest {
    algo: Algo,
    next: u64,
    local: Option<Vec<u8>>,
}

impl WriteDigest {
    /// For a file opened for writing: empty (`size` 0) it can be checked, else not.
    pub fn new(algo: Algo, size: Option<u64>) -> WriteDigest {
        WriteDigest {
            algo,
            hasher: algo.hasher(),
            next: 0,
            off: (size != Some(0)).then_some("it had data in it when opened"),
            wrote: false,
        }
    }

    fn feed(&mut self, offset: u64, data: &[u8]) {
        self.wrote = true;
        if self.off.is_some() {
            return;
        }
        if offset != self.next {
            self.off = Some("it was not written in order from its start");
            return;
        }
        self.hasher.update(data);
        self.next += data.len() as u64;
    }

    fn stop(&mut self, why: &'static str) {
        self.wrote = true;
        self.off.get_or_insert(why);
    }
}

impl Filesystem {
    /// A descriptor of `ino` opened for writing (`truncated`: with `O_TRUNC`), the file
    /// then `size` bytes long: a file empty at its first open, or truncated, starts a digest.
    pub(in crate::fs) fn writer_opened(&self, ino: u64, truncated: bool, size: Option<u64>) {
        let Some(algo) = self.integrity.opts.verify_writes else {
            return;
        };
        let mut files = self.integrity.written.0.lock().unwrap();
        let w = files.entry(ino).or_insert_with(|| Written {
            digest: WriteDigest::new(algo, size),
            writers: 0,
            landed: None,
            checked: None,
        });
        w.writers += 1;
        if truncated && size == Some(0) {
            w.digest = WriteDigest::new(algo, Some(0));
            w.landed = None;
            w.checked = None;
        }
    }

    /// A descriptor opened for writing was released: the last one ends the record.
    pub(in crate::fs) fn writer_closed(&self, ino: u64) {
        let mut files = self.integrity.written.0.lock().unwrap();
        if let Some(w) = files.get_mut(&ino) {
            w.writers = w.writers.saturating_sub(1);
            if w.writers == 0 {
                files.remove(&ino);
            }
        }
    }

    /// The last descriptor of `ino` opened for writing, one of the asynchronous mode, is
    /// released: what its queued CLOSE is to check (nothing while another is still open:
    /// the last one's close checks).
    pub(in crate::fs) fn writer_closed_queued(&self, ino: u64) -> Option<QueuedDigest> {
        let mut files = self.integrity.written.0.lock().unwrap();
        let w = files.get_mut(&ino)?;
        w.writers = w.writers.saturating_sub(1);
        if w.writers > 0 {
            return None;
        }
        let d = files.remove(&ino)?.digest;
        Some(QueuedDigest {
            algo: d.algo,
            next: d.next,
            local: d.off.is_none().then(|| d.hasher.finish()),
        })
    }

    /// Just before the queued CLOSE of `ino` (its writes all answered), through its handle
    /// `(c, h)`, the file named `path` on the server then (the name it had when its CLOSE
    /// was queued): what the server holds against what was queued. A mismatch is the
    /// close's failure.
    pub(in crate::fs) async fn verify_queued(
        &self,
        ino: u64,
        path: RelPath,
        (c, h): (Arc<Conn>, Handle),
        q: QueuedDigest,
    ) -> Result<(), RemoteError> {
        let outcome = self
            .check_written(ino, Some(path), (c, h), q.algo, q.next, q.local, None)
            .await;
        self.count_check(outcome);
        match outcome {
            Outcome::Mismatched => Err(RemoteError::Status {
                code: SSH_FX_FAILURE,
                message: "verify_writes: the server holds other bytes than were written".into(),
            }),
            _ => Ok(()),
        }
    }

    fn count_check(&self, outcome: Outcome) {
        let c = &self.integrity.counters;
        match outcome {
            Outcome::Matched => &c.verified,
            Outcome::Mismatched => &c.mismatched,
            Outcome::Unchecked => &c.unchecked,
            Outcome::Failed => &c.failed,
            Outcome::Changed => &c.changed,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// `data` was queued at `offset` to `ino`, through a descriptor open for writing: into
    /// its file's digest, and what is known of the file's digests is out of date. Fed after
    /// queueing, so that a check that counts the bytes (`verify_written`) waits for them to
    /// land.
    pub(in crate::fs) fn feed_write_digest(&self, ino: u64, offset: u64, data: &[u8]) {
        self.integrity.digests.data_changed(ino);
        if let Some(w) = self.integrity.written.0.lock().unwrap().get_mut(&ino) {
            w.digest.feed(offset, data);
            w.landed = None;
        }
    }

    /// The data of `ino` changed otherwise than by a write through an open file (`size`:
    /// truncated to it; `None`: copied into on the server).
    pub(in crate::fs) fn data_changed_otherwise(&self, ino: u64, size: Option<u64>) {
        self.integrity.digests.data_changed(ino);
        if let Some(w) = self.integrity.written.0.lock().unwrap().get_mut(&ino) {
            w.landed = None;
            match (self.integrity.opts.verify_writes, size) {
                // Truncated to nothing: what follows is the whole file again.
                (Some(algo), Some(0)) => {
                    w.digest = WriteDigest::new(algo, Some(0));
                    w.digest.wrote = true;
                    w.checked = None;
                }
                (_, s) if s == Some(w.digest.next) => {}
                _ => w.digest.stop("it was truncated or copied into while open"),
            }
        }
    }

    /// A write of `f` was acknowledged: once all of its file's writes stay landed for
    /// [`LANDED_QUIET`], its size and mtime are taken, to tell later whether another
    /// actor changed it on the server.
    pub(in crate::fs) fn write_landed(&self, f: &Arc<OpenFile>) {
        if self.integrity.opts.verify_writes.is_none() || f.has_pending() {
            return;
        }
        let Some(fs) = self.me.upgrade() else { return };
        let f = f.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LANDED_QUIET).await;
            let next = |fs: &Filesystem| {
                let files = fs.integrity.written.0.lock().unwrap();
                files
                    .get(&f.ino)
                    .filter(|w| w.landed.is_none() && w.digest.off.is_none())
                    .map(|w| w.digest.next)
            };
            let quiet = |fs: &Filesystem| {
                fs.files
                    .all(|x| x.ino == f.ino && x.has_pending())
                    .is_empty()
            };
            let Some(before) = next(&fs).filter(|_| quiet(&fs) && f.usable()) else {
                return;
            };
            let (c, h) = f.current();
            let Ok(a) = c.sftp.fstat(&h).await else {
                return;
            };
            if next(&fs) == Some(before) && quiet(&fs) {
                if let Some(w) = fs.integrity.written.0.lock().unwrap().get_mut(&f.ino) {
                    w.landed = Some(Landed::of(before, &a));
                    tracing::debug!(
                        "verify_writes: inode {} landed: {before} bytes sent, the server's {:?} \
                         bytes, mtime {:?}",
                        f.ino,
                        a.size,
                        a.atime_mtime.map(|t| t.1)
                    );
                }
            }
        });
    }

    /// Checks what this mount sent of `f`'s file against the server's hash, once its writes
    /// landed (close, fsync). `Some(EIO)` when the server holds something else.
    pub(in crate::fs) async fn verify_written(&self, f: &Arc<OpenFile>) -> Option<i32> {
        if self.integrity.opts.verify_writes.is_none() || !f.writable {
            return None;
        }
        let (algo, next, local, landed, memo) = {
            let files = self.integrity.written.0.lock().unwrap();
            let w = files.get(&f.ino)?;
            let d = &w.digest;
            if !d.wrote && d.next == 0 && d.off.is_some() {
                // Opened with data in it and nothing written: nothing to say.
                return None;
            }
            let memo = w.checked.filter(|(at, _)| *at == d.next).map(|(_, o)| o);
            let local = d.off.is_none().then(|| d.hasher.clone().finish());
            (d.algo, d.next, local, w.landed, memo)
        };
        if let Some(o) = memo {
            return (o == Outcome::Mismatched).then_some(libc::EIO);
        }
        // Every descriptor's writes counted above were queued before this: the file as this
        // mount wrote it, once they land.
        self.drain_inode(f.ino).await;
        let path = self.inodes.lock().unwrap().path(f.ino);
        let outcome = self
            .check_written(f.ino, path, f.current(), algo, next, local, landed)
            .await;
        self.count_check(outcome);
        if let Some(w) = self.integrity.written.0.lock().unwrap().get_mut(&f.ino) {
            if w.digest.next == next {
                w.checked = Some((next, outcome));
            }
        }
        (outcome == Outcome::Mismatched).then_some(libc::EIO)
    }

    /// `ino`'s file, named `path` on the server and open there as `handle`, against
    /// `local`, the digest of the `next` bytes this mount sent.
    #[allow(clippy::too_many_arguments)]
    async fn check_written(
        &self,
        ino: u64,
        path: Option<RelPath>,
        handle: (Arc<Conn>, Handle),
        algo: Algo,
        next: u64,
        local: Option<Vec<u8>>,
        landed: Option<Landed>,
    ) -> Outcome {
        let shown = path
            .as_deref()
            .map_or("(a file unlinked while open)".into(), |p| {
                String::from_utf8_lossy(p).into_owned()
            });
        let why_off = || {
            let files = self.integrity.written.0.lock().unwrap();
            files.get(&ino).and_then(|w| w.digest.off).unwrap_or("")
        };
        let (Some(local), Some(path)) = (local, path) else {
            tracing::debug!("verify_writes: {shown} not checked: {}", why_off());
            return Outcome::Unchecked;
        };
        let Some(hashes) = self.integrity.opts.hashes.clone() else {
            return Outcome::Unchecked;
        };
        let changed = |when: &str| {
            tracing::warn!(
                "verify_writes: {shown} changed {when}; not checked (another actor, not a \
                 failed transfer)"
            );
            Outcome::Changed
        };
        let mark = self.inodes.lock().unwrap().attr_mark(ino);
        let (c, h) = handle;
        let remote = self.remote(&path);
        // The open file, and what its name names now: a hash by name (a command on the
        // server) is of the latter.
        let stat = || async {
            let (by_handle, by_name) = join(c.sftp.fstat(&h), c.sftp.lstat(&remote)).await;
            let by_handle = by_handle.ok()?;
            let by_name = by_name.ok().map(|a| Landed::of(next, &a));
            Some((by_handle, by_name))
        };
        let Some((before, by_name)) = stat().await else {
            tracing::warn!("verify_writes: {shown} could not be checked: no FSTAT answer");
            return Outcome::Failed;
        };
        let now = Landed::of(next, &before);
        if landed.is_some_and(|l| l.next == next && !l.same_file(&now)) {
            return changed("on the server after this mount's writes landed");
        }
        if by_name.is_none_or(|n| !n.same_file(&now)) {
            return changed("on the server: its name names another file now");
        }
        let server = if next == 0 && before.size == Some(0) {
            // An empty file: its size says it all (check-file refuses empty files).
            Ok(algo.digest(b""))
        } else {
            let size = before.size.unwrap_or(next);
            hashes.hash(&remote, Some((&c, &h)), algo, size).await
        };
        let server = match server {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("verify_writes: {shown} could not be checked: {e}");
                return Outcome::Failed;
            }
        };
        let after = stat().await;
        let more = {
            let files = self.integrity.written.0.lock().unwrap();
            // Gone: its last writer was released (an asynchronous file's is, by its CLOSE).
            files.get(&ino).is_some_and(|w| w.digest.next != next)
        };
        if more {
            return changed("through this mount while it was checked (checked at a later close)");
        }
        let same = |(a, n): (Attrs, Option<Landed>)| {
            Landed::of(next, &a).same_file(&now) && n.is_some_and(|n| n.same_file(&now))
        };
        if !after.is_some_and(same) {
            return changed("on the server while its hash was computed");
        }
        if before.size == Some(next) && server == local {
            self.integrity.digests.put_sent(
                ino,
                super::Sent {
                    algo,
                    digest: local,
                    size: next,
                },
            );
            if self.inodes.lock().unwrap().quiet_since(ino, mark) {
                let version = Version {
                    size: next,
                    mtime: before.atime_mtime.map_or(0, |t| t.1),
                    mark,
                };
                self.integrity
                    .digests
                    .put_server(ino, version, algo, server);
            }
            return Outcome::Matched;
        }
        tracing::error!(
            "verify_writes: {shown} on the server is not what was written: {algo} of the \
             {next} bytes sent {}, the server's {} ({}); its close fails with EIO",
            hex(&local),
            hex(&server),
            match before.size {
                Some(s) => format!("{s} bytes"),
                None => "size unknown".into(),
            }
        );
        Outcome::Mismatched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_writes_in_order_from_the_start_are_checked() {
        let mut w = WriteDigest::new(Algo::Sha256, Some(0));
        w.feed(0, b"ab");
        w.feed(2, b"c");
        assert!(w.off.is_none());
        assert_eq!(w.hasher.clone().finish(), Algo::Sha256.digest(b"abc"));
        w.feed(1, b"x");
        assert!(w.off.is_some(), "a rewrite");
        let mut w = WriteDigest::new(Algo::Sha256, Some(0));
        w.feed(4096, b"x");
        assert!(w.off.is_some(), "a hole");
        let w = WriteDigest::new(Algo::Md5, Some(10));
        assert!(w.off.is_some(), "data before");
        assert!(!w.wrote);
        let _ = WrittenFiles::default();
    }
}
