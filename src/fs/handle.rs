//! Open files and directory listings, by the numbers handed to the kernel.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::names::inode::AttrChangeGuard;
use super::read::readahead::ReadAhead;
use crate::remote::{Conn, Handle};

/// Requests sent but not yet acknowledged, in the order they were made. Kept so that they
/// can be replayed on a new connection (each is idempotent).
#[derive(Default)]
pub struct WriteQueue {
    next_seq: u64,
    /// seq → (the request, its share of the write-behind budget, and the change it makes
    /// to its node, on its way until answered: attributes read meanwhile may predate it).
    /// The change is taken out when it counts as done, just before the request leaves.
    pending: BTreeMap<u64, Pending>,
}

type Pending = (
    Queued,
    Option<OwnedSemaphorePermit>,
    Option<AttrChangeGuard>,
);

/// A request answered before the server did.
#[derive(Clone, Debug)]
pub enum Queued {
    /// WRITE of the data at the offset.
    Write(u64, Bytes),
    /// FSETSTAT of mode and times, on a file this mount created (see `meta/stat.rs`).
    SetStat(crate::remote::Attrs),
}

/// A file opened on the server, pinned to one pool member so its requests stay in order.
pub struct OpenFile {
    pub ino: u64,
    /// SFTP open flags to re-open with after a reconnect (never create, truncate or exclude).
    pub reopen_flags: u32,
    pub writable: bool,
    /// Made by this mount with `O_EXCL`: ours, so a change of its mode or times cannot be
    /// refused for want of permission, and may be answered before the server does.
    pub made_here: std::sync::atomic::AtomicBool,
    /// Set when the kernel released it: its handle is being closed, not to be borrowed.
    pub closing: std::sync::atomic::AtomicBool,
    current: Mutex<(Arc<Conn>, Handle)>,
    /// Held while the file is re-opened on a new connection.
    pub recovering: tokio::sync::Mutex<()>,
    /// When the last re-open failed: those who waited for it fail too.
    pub recover_failed_at: Mutex<Option<tokio::time::Instant>>,
    /// Held while a write is queued on the wire, and while replayed writes are queued on a
    /// new connection: keeps the order of writes on the wire the order they were made.
    pub order: Mutex<()>,
    /// The first write failure, reported by the next write, flush, fsync or close.
    /// The first write failure, and whether a close has reported it already.
    error: Mutex<(Option<i32>, bool)>,
    writes: Mutex<WriteQueue>,
    drained: Notify,
    pub readahead: Mutex<ReadAhead>,
    /// A second handle on another connection for a long sequential read (`read/split.rs`).
    pub second: Mutex<Second>,
    /// Read-ahead chunks the second handle delivered.
    pub second_chunks: AtomicU64,
}

/// The state of an open file's second handle.
pub enum Second {
    Unopened,
    Opening,
    Ready(Arc<Conn>, Handle),
    /// Not to be tried again for this open file.
    Unavailable,
}

impl OpenFile {
    pub fn new(
        ino: u64,
        conn: Arc<Conn>,
        handle: Handle,
        reopen_flags: u32,
        writable: bool,
    ) -> Self {
        OpenFile {
            ino,
            reopen_flags,
            writable,
            made_here: std::sync::atomic::AtomicBool::new(false),
            closing: std::sync::atomic::AtomicBool::new(false),
            current: Mutex::new((conn, handle)),
            recovering: tokio::sync::Mutex::new(()),
            recover_failed_at: Mutex::new(None),
            order: Mutex::new(()),
            error: Mutex::new((None, false)),
            writes: Mutex::new(WriteQueue::default()),
            drained: Notify::new(),
            readahead: Mutex::new(ReadAhead::default()),
            second: Mutex::new(Second::Unopened),
            second_chunks: AtomicU64::new(0),
        }
    }

    /// Whether another operation on the node may use this file's handle.
    pub fn usable(&self) -> bool {
        !self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The pool member the file lives on now.
    pub fn slot(&self) -> usize {
        self.current.lock().unwrap().0.slot
    }

    /// The session and handle to use now.
    pub fn current(&self) -> (Arc<Conn>, Handle) {
        self.current.lock().unwrap().clone()
    }

    pub fn set_current(&self, conn: Arc<Conn>, handle: Handle) {
        *self.current.lock().unwrap() = (conn, handle);
    }

    pub fn latch(&self, errno: i32) {
        self.error.lock().unwrap().0.get_or_insert(errno);
    }

    /// The latched error, cleared: like a local filesystem, one fsync reports it once.
    pub fn take_error(&self) -> Option<i32> {
        std::mem::take(&mut *self.error.lock().unwrap()).0
    }

    pub fn peek_error(&self) -> Option<i32> {
        self.error.lock().unwrap().0
    }

    /// The latched error for a close, kept (see `Filesystem::flush`).
    pub fn report_error(&self) -> Option<i32> {
        let mut e = self.error.lock().unwrap();
        e.1 |= e.0.is_some();
        e.0
    }

    /// The latched error, cleared, if no close reported it (the last close's leftovers).
    pub fn take_unreported_error(&self) -> Option<i32> {
        let (e, reported) = std::mem::take(&mut *self.error.lock().unwrap());
        e.filter(|_| !reported)
    }

    /// Records a request about to be sent; returns its sequence number.
    pub fn push(
        &self,
        op: Queued,
        budget: Option<OwnedSemaphorePermit>,
        change: AttrChangeGuard,
    ) -> u64 {
        let mut q = self.writes.lock().unwrap();
        let seq = q.next_seq;
        q.next_seq += 1;
        q.pending.insert(seq, (op, budget, Some(change)));
        seq
    }

    /// The write is done (acknowledged, or failed and latched).
    pub fn ack(&self, seq: u64) {
        // Its change counts as done before the write leaves the queue: whoever waited for the
        // queue (`drain`) then takes a mark that shows it done. Shown on its way still, the
        // mark would equal one taken while the write travelled, and read-ahead fetched then,
        // without the write, would pass for current (a short read the kernel trusts, and an
        // O_APPEND write placed by it at the old end). Counting takes the inode table's lock:
        // not under the queue's.
        let change = (self.writes.lock().unwrap().pending.get_mut(&seq)).and_then(|e| e.2.take());
        drop(change);
        let done = self.writes.lock().unwrap().pending.remove(&seq);
        // Each waiter waits for the writes made before it asked: any may be done now.
        self.drained.notify_waiters();
        drop(done);
    }

    pub fn is_pending(&self, seq: u64) -> bool {
        self.writes.lock().unwrap().pending.contains_key(&seq)
    }

    /// Whether queued request `seq` is a mode or time change (not data).
    pub fn is_attribute_change(&self, seq: u64) -> bool {
        let q = self.writes.lock().unwrap();
        matches!(q.pending.get(&seq), Some((Queued::SetStat(_), ..)))
    }

    /// Bytes of data written and not yet acknowledged by the server.
    pub fn unacked_bytes(&self) -> u64 {
        let q = self.writes.lock().unwrap();
        q.pending
            .values()
            .map(|(op, ..)| match op {
                Queued::Write(_, data) => data.len() as u64,
                Queued::SetStat(_) => 0,
            })
            .sum()
    }

    pub fn has_pending(&self) -> bool {
        !self.writes.lock().unwrap().pending.is_empty()
    }

    /// Every unacknowledged request, oldest first.
    pub fn pending(&self) -> Vec<(u64, Queued)> {
        let q = self.writes.lock().unwrap();
        q.pending
            .iter()
            .map(|(&s, (op, ..))| (s, op.clone()))
            .collect()
    }

    /// Waits until every write made so far is acknowledged or failed. Not for the writes
    /// made after the call: with another program writing on, the queue may never be empty.
    pub async fn drain(&self) {
        let upto = self.writes.lock().unwrap().next_seq;
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .writes
                .lock()
                .unwrap()
                .pending
                .range(..upto)
                .next()
                .is_none()
            {
                return;
            }
            notified.await;
        }
    }
}

/// A directory's entries, snapshotted at `opendir`, served to the kernel by offset.
#[derive(Debug)]
pub struct DirListing {
    pub ino: u64,
    /// The listing's entries when opened (shared with the cache until it changes).
    pub entries: Arc<crate::fs::meta::cache::Entries>,
    /// The kernel was told to forget names here after the snapshot was taken (refresh,
    /// revalidation): entries it hands out now must not outlive a moment in the kernel.
    pub outdated: std::sync::atomic::AtomicBool,
    /// The directory's change generation when the snapshot's listing was asked for: a
    /// change made here since (a name renamed away, a file rewritten) makes every entry
    /// possibly older than the change.
    pub generation: u64,
    /// The cached listing it was taken from (`Listing::serial`), kept in step with local
    /// changes since.
    pub serial: u64,
}

/// Objects by number, never reusing a number during the mount.
pub struct HandleTable<T> {
    map: Mutex<HashMap<u64, Arc<T>>>,
    next: AtomicU64,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        HandleTable {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> HandleTable<T> {
    /// A table whose numbers start at `first` (apart from another table's).
    pub fn starting_at(first: u64) -> Self {
        HandleTable {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(first),
        }
    }

    pub fn insert_arc(&self, v: Arc<T>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.lock().unwrap().insert(fh, v);
        fh
    }

    pub fn insert(&self, v: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.lock().unwrap().insert(fh, Arc::new(v));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<T>> {
        self.map.lock().unwrap().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.map.lock().unwrap().remove(&fh)
    }

    /// The first object matching `pred`.
    pub fn find(&self, pred: impl Fn(&T) -> bool) -> Option<Arc<T>> {
        self.map.lock().unwrap().values().find(|v| pred(v)).cloned()
    }

    /// Every object matching `pred`.
    pub fn all(&self, pred: impl Fn(&T) -> bool) -> Vec<Arc<T>> {
        self.map
            .lock()
            .unwrap()
            .values()
            .filter(|v| pred(v))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
