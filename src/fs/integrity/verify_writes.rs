//! `-o verify_writes`: a file whose whole content passes through the mount (opened for
//! writing while empty: created, or with `O_TRUNC`) has its bytes hashed as they are sent,
//! in order from offset 0 — no second read. At its close (and at `fsync`), once its writes
//! landed, the server is asked for the same hash (`remote/hash/`): a different one is the
//! transfer failing, as a refused write is: the close or fsync returns EIO, the log names
//! the file and both digests, `sftpfs status` counts it.
//!
//! Not checked (counted as such): a file opened with data in it, written out of order or
//! with holes (a seek, `pwrite` elsewhere, mmap pages written back in another order),
//! written through another descriptor too, truncated to another size, or copied into on
//! the server (`copy_file_range`) while open; nothing to compare there.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::join;

use super::Version;
use crate::fs::handle::OpenFile;
use crate::fs::Filesystem;
use crate::remote::hash::{hex, Algo, Hasher};

/// The running digest of one open file's writes.
pub struct WriteDigest {
    algo: Algo,
    hasher: Hasher,
    /// Bytes hashed: the next write must start here.
    next: u64,
    /// Why this file cannot be checked, once that is known.
    off: Option<&'static str>,
    /// Something was written through this descriptor (a file only opened is not counted).
    wrote: bool,
    /// The last check: at which length, and whether the server matched.
    checked: Option<(u64, Outcome)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Matched,
    Mismatched,
    Unchecked,
    Failed,
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
            checked: None,
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
    /// `data` is being sent at `offset` through `f`: into its digest, and what is known of
    /// the file's digests is out of date.
    pub(in crate::fs) fn feed_write_digest(&self, f: &Arc<OpenFile>, offset: u64, data: &[u8]) {
        self.integrity.digests.data_changed(f.ino);
        if self.integrity.opts.verify_writes.is_none() {
            return;
        }
        for other in self.files.all(|x| x.ino == f.ino && !std::ptr::eq(x, &**f)) {
            if let Some(w) = other.verify.lock().unwrap().as_mut() {
                w.stop("it was written through another descriptor too");
            }
        }
        if let Some(w) = f.verify.lock().unwrap().as_mut() {
            w.feed(offset, data);
        }
    }

    /// The data of `ino` changed otherwise than by a write through an open file (`size`:
    /// truncated to it; `None`: copied into on the server).
    pub(in crate::fs) fn data_changed_otherwise(&self, ino: u64, size: Option<u64>) {
        self.integrity.digests.data_changed(ino);
        if self.integrity.opts.verify_writes.is_none() {
            return;
        }
        for f in self.files.all(|x| x.ino == ino) {
            if let Some(w) = f.verify.lock().unwrap().as_mut() {
                if size != Some(w.next) {
                    w.stop("it was truncated or copied into while open");
                }
            }
        }
    }

    /// Checks what `f` sent against the server's hash, once its writes landed (close,
    /// fsync). `Some(EIO)` when the server holds something else.
    pub(in crate::fs) async fn verify_written(&self, f: &Arc<OpenFile>) -> Option<i32> {
        let (algo, next, local, memo) = {
            let g = f.verify.lock().unwrap();
            let w = g.as_ref()?;
            if !w.wrote && w.next == 0 && w.off.is_some() {
                // Opened with data in it and nothing written: nothing to say.
                return None;
            }
            let memo = w.checked.filter(|(at, _)| *at == w.next).map(|(_, o)| o);
            let local = w.off.is_none().then(|| w.hasher.clone().finish());
            (w.algo, w.next, local, memo)
        };
        if let Some(o) = memo {
            return (o == Outcome::Mismatched).then_some(libc::EIO);
        }
        let outcome = self.check_written(f, algo, next, local).await;
        let c = &self.integrity.counters;
        match outcome {
            Outcome::Matched => &c.verified,
            Outcome::Mismatched => &c.mismatched,
            Outcome::Unchecked => &c.unchecked,
            Outcome::Failed => &c.failed,
        }
        .fetch_add(1, Ordering::Relaxed);
        if let Some(w) = f.verify.lock().unwrap().as_mut() {
            w.checked = Some((next, outcome));
        }
        (outcome == Outcome::Mismatched).then_some(libc::EIO)
    }

    async fn check_written(
        &self,
        f: &Arc<OpenFile>,
        algo: Algo,
        next: u64,
        local: Option<Vec<u8>>,
    ) -> Outcome {
        let path = self.inodes.lock().unwrap().path(f.ino);
        let shown = path
            .as_deref()
            .map_or("(a file unlinked while open)".into(), |p| {
                String::from_utf8_lossy(p).into_owned()
            });
        let why_off = || {
            f.verify
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|w| w.off)
                .unwrap_or("")
        };
        let (Some(local), Some(path)) = (local, path) else {
            tracing::debug!("verify_writes: {shown} not checked: {}", why_off());
            return Outcome::Unchecked;
        };
        let Some(hashes) = self.integrity.opts.hashes.clone() else {
            return Outcome::Unchecked;
        };
        let mark = self.inodes.lock().unwrap().attr_mark(f.ino);
        let (c, h) = f.current();
        let remote = self.remote(&path);
        let server = async {
            if next == 0 {
                // An empty file: its size says it all (check-file refuses empty files).
                Ok(algo.digest(b""))
            } else {
                hashes.hash(&remote, Some((&c, &h)), algo, next).await
            }
        };
        let (st, server) = join(c.sftp.fstat(&h), server).await;
        let size = st.as_ref().ok().and_then(|a| a.size);
        let server = match server {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("verify_writes: {shown} could not be checked: {e}");
                return Outcome::Failed;
            }
        };
        if size == Some(next) && server == local {
            self.integrity.digests.put_sent(
                f.ino,
                super::Sent {
                    algo,
                    digest: local,
                    size: next,
                },
            );
            if let Ok(a) = &st {
                let quiet = self.inodes.lock().unwrap().quiet_since(f.ino, mark);
                if quiet {
                    let version = Version {
                        size: next,
                        mtime: a.atime_mtime.map_or(0, |t| t.1),
                        mark,
                    };
                    self.integrity
                        .digests
                        .put_server(f.ino, version, algo, server);
                }
            }
            return Outcome::Matched;
        }
        tracing::error!(
            "verify_writes: {shown} on the server is not what was written: {algo} of the \
             {next} bytes sent {}, the server's {} ({}); its close fails with EIO",
            hex(&local),
            hex(&server),
            match size {
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
    }
}
