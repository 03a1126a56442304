//! A long sequential read over two connections. On one connection the server side is a
//! single pipeline (sftp-server reads the file, sshd encrypts), and on a small machine a
//! read at full speed keeps it busy while the rest of the CPU idles: the file gets a second,
//! read-only handle on another pool member, and every other read-ahead chunk goes there.
//! Reads drain the file's writes first, so either handle sees them; any failure of the
//! second handle just sends its chunks back to the first. The other member is one that is
//! not busy; when there is none, the pool grows and a later read of the run takes it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::fs::handle::{OpenFile, Second};
use crate::fs::{pflags, Filesystem};
use crate::remote::{Attrs, Conn, Handle, Other};

/// Smaller files: one pipeline finishes them about as soon.
const MIN_SIZE: u64 = 16 << 20;
/// The most renames wait for the second handle's OPEN (an answer later: no second handle).
const OPEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);
/// How far a sequential run goes before the second handle is opened (a `head` or a
/// `file` reading the start of a big file opens nothing).
const AFTER: u64 = 2 << 20;

impl Filesystem {
    /// For a read that is part of a sequential run: opens the second handle, once, in the
    /// background, when the file is long enough and the pool has (or is growing) another
    /// member.
    pub(in crate::fs) fn maybe_split(self: &Arc<Self>, f: &Arc<OpenFile>, offset: u64) {
        let big = f
            .readahead
            .lock()
            .unwrap()
            .size_hint
            .is_some_and(|s| s >= MIN_SIZE);
        let streams = self.pool.profile().is_some_and(|p| p.reads_as_stream());
        if offset < AFTER || !big || streams {
            return;
        }
        if !matches!(*f.second.lock().unwrap(), Second::Unopened) {
            return;
        }
        let (primary, _) = f.current();
        let other = match self.pool.other(primary.slot) {
            Other::Live(c) => c,
            Other::Soon => return,
            Other::Never => {
                let mut s = f.second.lock().unwrap();
                if matches!(*s, Second::Unopened) {
                    *s = Second::Unavailable;
                }
                return;
            }
        };
        {
            let mut s = f.second.lock().unwrap();
            if !matches!(*s, Second::Unopened) {
                return;
            }
            *s = Second::Opening;
        }
        let (fs, f) = (self.clone(), f.clone());
        tokio::spawn(async move {
            let opened = fs.open_second(&f, other).await;
            let mut s = f.second.lock().unwrap();
            // `release` sets `closing` before it takes the second handle: one of the two
            // closes it.
            *s = match opened {
                Some((c, h)) if !f.closing.load(Ordering::SeqCst) => Second::Ready(c, h),
                Some((c, h)) => {
                    c.sftp.close_nowait(&h);
                    Second::Unavailable
                }
                None => Second::Unavailable,
            };
        });
    }

    async fn open_second(&self, f: &OpenFile, c: Arc<Conn>) -> Option<(Arc<Conn>, Handle)> {
        // As for a re-open, the path must still name this file when the OPEN arrives; but
        // this handle is optional: it neither waits for renames nor holds them up for long.
        let _no_renames = self.path_changes.try_write().ok()?;
        let path = self.inodes.lock().unwrap().path(f.ino)?;
        let (remote, no_attrs) = (self.remote(&path), Attrs::default());
        let open = c.sftp.open(&remote, pflags(libc::O_RDONLY), &no_attrs);
        let h = tokio::time::timeout(OPEN_WITHIN, open).await.ok()?.ok()?;
        tracing::debug!(
            "second handle for a sequential read, on pool member {}",
            c.slot
        );
        Some((c, h))
    }
}

/// The second handle, when the chunk at `offset` (of `len`-byte chunks) is one of its share.
pub(in crate::fs) fn second_for(
    f: &OpenFile,
    offset: u64,
    len: u32,
) -> Option<(Arc<Conn>, Handle)> {
    if len == 0 || (offset / len as u64).is_multiple_of(2) {
        return None;
    }
    match &*f.second.lock().unwrap() {
        Second::Ready(c, h) if c.is_alive() => Some((c.clone(), h.clone())),
        _ => None,
    }
}

/// Gives the second handle up (it failed, or the file is being closed).
pub(in crate::fs) fn drop_second(f: &OpenFile) {
    let old = std::mem::replace(&mut *f.second.lock().unwrap(), Second::Unavailable);
    if let Second::Ready(c, h) = old {
        c.sftp.close_nowait(&h);
    }
}
