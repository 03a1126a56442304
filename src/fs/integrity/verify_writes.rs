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
use crate::fs::Filesystem;
use crate::remote::hash::{hex, Algo, Hasher};
use crate::remote::Attrs;

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

    /// `data` was queued at `offset` through `f`: into its file's digest, and what is known
    /// of the file's digests is out of date. Fed after queueing, so that a check that
    /// counts the bytes (`verify_written`) waits for them to land.
    pub(in crate::fs) fn feed_write_digest(&self, f: &Arc<OpenFile>, offset: u64, data: &[u8]) {
        self.integrity.digests.data_changed(f.ino);
        if let Some(w) = self.integrity.written.0.lock().unwrap().get_mut(&f.ino) {
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
        let outcome = self.check_written(f, algo, next, local, landed).await;
        let c = &self.integrity.counters;
        match outcome {
            Outcome::Matched => &c.verified,
            Outcome::Mismatched => &c.mismatched,
            Outcome::Unchecked => &c.unchecked,
            Outcome::Failed => &c.failed,
            Outcome::Changed => &c.changed,
        }
        .fetch_add(1, Ordering::Relaxed);
        if let Some(w) = self.integrity.written.0.lock().unwrap().get_mut(&f.ino) {
            if w.digest.next == next {
                w.checked = Some((next, outcome));
            }
        }
        (outcome == Outcome::Mismatched).then_some(libc::EIO)
    }

    async fn check_written(
        &self,
        f: &Arc<OpenFile>,
        algo: Algo,
        next: u64,
        local: Option<Vec<u8>>,
        landed: Option<Landed>,
    ) -> Outcome {
        let path = self.inodes.lock().unwrap().path(f.ino);
        let shown = path
            .as_deref()
            .map_or("(a file unlinked while open)".into(), |p| {
                String::from_utf8_lossy(p).into_owned()
            });
        let why_off = || {
            let files = self.integrity.written.0.lock().unwrap();
            files.get(&f.ino).and_then(|w| w.digest.off).unwrap_or("")
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
        let mark = self.inodes.lock().unwrap().attr_mark(f.ino);
        let (c, h) = f.current();
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
            files.get(&f.ino).map(|w| w.digest.next) != Some(next)
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
                f.ino,
                super::Sent {
                    algo,
                    digest: local,
                    size: next,
                },
            );
            if self.inodes.lock().unwrap().quiet_since(f.ino, mark) {
                let version = Version {
                    size: next,
                    mtime: before.atime_mtime.map_or(0, |t| t.1),
                    mark,
                };
                self.integrity
                    .digests
                    .put_server(f.ino, version, algo, server);
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
