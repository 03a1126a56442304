//! The asynchronous write mode (`-o async_writes`): creating, writing, closing, changing
//! the mode, owner or times of, making directories, removing and renaming are answered once
//! queued here, and the queue goes to the server pipelined. It is one ordered journal per
//! mount: an operation waits only for earlier ones it depends on (the same path, a path
//! above or below it, the OPEN of its file; a file's CLOSE for that file's writes), so
//! unrelated files travel side by side, and what depends on something travels after it.
//!
//! Nothing is lost silently: a failed operation is logged with its path and errno, counted in
//! `sftpfs status`, and returned by the next `fsync` (and by the close of its own file when
//! that comes later). Every other request to the server waits for the journal first
//! ([`Filesystem::settle`]), so reads, listings and `open` see what was queued before them;
//! so does `opendir` (what `sync -f DIR` does first: Linux does not pass syncfs to FUSE), and
//! unmount waits for the journal to be empty. A write is kept until the server answered
//! it: after a lost connection its file is opened again on a new one and what was not
//! answered is sent again, in order.
//! What a killed daemon held is lost: that is the trade of this mode.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::join;
use futures::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::fs::names::inode::{parent_of, within, AttrChangeGuard, InodeTable, RelPath};
use crate::fs::{Filesystem, FsError, FsResult};
use crate::remote::protocol::*;

/// How long a process asked to go with its mount busy still sends what programs were told
/// was written (systemd waits 90 s before it kills).
pub const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
use crate::remote::{Attrs, Conn, Handle, RemoteError};

/// Operations queued at most; one more waits for room.
const MAX_OPS: usize = 4096;
/// Operations sent and not yet answered at most.
const MAX_RUNNING: usize = 256;
/// Queued operations looked at for one that may go now.
const WINDOW: usize = 128;
/// Handles of asynchronous files are numbered from here, apart from the others.
pub const FH_BASE: u64 = 1 << 62;

/// What a queued operation does on the server.
#[derive(Clone, Debug)]
pub enum Op {
    /// OPEN of the entry's file (create, truncate, write).
    Open {
        pflags: u32,
        attrs: Attrs,
    },
    Write(u64, Bytes),
    FSetStat(Attrs),
    Close,
    Mkdir(Attrs),
    Remove,
    Rmdir,
    /// posix-rename of the entry's path to this one.
    Rename(RelPath),
    SetStat(Attrs),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Open { .. } => "create",
            Op::Write(..) => "write",
            Op::FSetStat(_) | Op::SetStat(_) => "setattr",
            Op::Close => "close",
            Op::Mkdir(_) => "mkdir",
            Op::Remove => "unlink",
            Op::Rmdir => "rmdir",
            Op::Rename(_) => "rename",
        }
    }
}

/// A file created through the mount in this mode, open or still in the journal.
pub struct JFile {
    pub ino: u64,
    id: u64,
    path: Mutex<RelPath>,
    /// Its handle once the OPEN was answered.
    handle: Mutex<Option<(Arc<Conn>, Handle)>>,
    /// The handle may be read through (opened for reading; a re-opened one is not).
    readable: AtomicBool,
    /// The first failure of one of its operations, and whether it was reported.
    error: Mutex<(Option<i32>, bool)>,
    /// Writes and attribute changes sent on the handle and not yet answered, by journal
    /// order, with their share of the byte budget: a new connection gets them again.
    sent: Mutex<BTreeMap<u64, (Op, Option<OwnedSemaphorePermit>)>>,
    /// The last request the latest re-open sent again.
    replayed_upto: AtomicU64,
    recovering: tokio::sync::Mutex<()>,
    /// The OPEN to create it again when the first one's answer was lost.
    create_again: u32,
    /// Its CLOSE is queued (set under the journal's lock): a change found it by its node
    /// before the kernel's release took it away goes by name, after the CLOSE.
    closing: AtomicBool,
}

impl JFile {
    pub fn path(&self) -> RelPath {
        self.path.lock().unwrap().clone()
    }

    /// Its handle on the server, if open (and readable, if `to_read`) on a live connection:
    /// the way to the file once its name is gone.
    pub fn handle(&self, to_read: bool) -> Option<(Arc<Conn>, Handle)> {
        if to_read && !self.readable.load(Ordering::SeqCst) {
            return None;
        }
        self.handle
            .lock()
            .unwrap()
            .clone()
            .filter(|(c, _)| c.is_alive())
    }

    fn fail(&self, errno: i32) {
        let mut e = self.error.lock().unwrap();
        if e.0.is_none() {
            *e = (Some(errno), false);
        }
    }

    /// An error of this file not reported yet (by a flush or fsync).
    pub fn take_error(&self) -> Option<i32> {
        let mut e = self.error.lock().unwrap();
        match *e {
            (Some(errno), false) => {
                e.1 = true;
                Some(errno)
            }
            _ => None,
        }
    }

    fn failed(&self) -> bool {
        self.error.lock().unwrap().0.is_some()
    }
}

struct Entry {
    op: Op,
    path: RelPath,
    file: Option<Arc<JFile>>,
    running: bool,
    _room: OwnedSemaphorePermit,
    bytes: Option<OwnedSemaphorePermit>,
    /// A change of a file's data or attributes, on its way until answered: attributes read
    /// meanwhile may predate it (see `Filesystem::server_caught_up`).
    change: Option<AttrChangeGuard>,
}

impl Entry {
    fn paths(&self) -> impl Iterator<Item = &[u8]> {
        let to = match &self.op {
            Op::Rename(to) => Some(to.as_slice()),
            _ => None,
        };
        std::iter::once(self.path.as_slice()).chain(to)
    }

    /// Whether this (later) entry must wait for `earlier`.
    fn depends_on(&self, earlier: &Entry) -> bool {
        if let (Some(a), Some(b)) = (&earlier.file, &self.file) {
            if a.id == b.id {
                return matches!(earlier.op, Op::Open { .. }) || matches!(self.op, Op::Close);
            }
        }
        let related = |a: &[u8], b: &[u8]| within(a, b) || within(b, a);
        earlier.paths().any(|p| self.paths().any(|q| related(p, q)))
    }
}

#[derive(Default)]
struct State {
    next_seq: u64,
    ops: BTreeMap<u64, Entry>,
    running: usize,
    /// Failures not yet returned by an fsync or `sftpfs sync`: (operation, path, errno).
    unreported: VecDeque<(&'static str, RelPath, i32)>,
    failures: u64,
    /// The owner the server gives new files (learned from the first one made).
    owner: Option<(u32, u32)>,
}

/// The journal's numbers for `sftpfs status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalStatus {
    pub queued: usize,
    pub queued_bytes: usize,
    pub failures: u64,
}

pub struct Journal {
    state: Mutex<State>,
    /// An operation came or finished: the dispatcher looks again.
    wake: Notify,
    /// An operation finished: those settling look again.
    done: Notify,
    room: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    bytes_max: usize,
    next_file: AtomicU64,
    started: AtomicBool,
    /// The server's largest WRITE, once learned (0 before): a write is queued without
    /// asking the pool for a connection, which may be down.
    pub max_write: std::sync::atomic::AtomicU32,
    pub files: crate::fs::handle::HandleTable<JFile>,
}

impl Journal {
    pub fn new(bytes_max: usize) -> Journal {
        Journal {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            done: Notify::new(),
            room: Arc::new(Semaphore::new(MAX_OPS)),
            bytes: Arc::new(Semaphore::new(bytes_max)),
            bytes_max,
            next_file: AtomicU64::new(1),
            started: AtomicBool::new(false),
            max_write: std::sync::atomic::AtomicU32::new(0),
            files: crate::fs::handle::HandleTable::starting_at(FH_BASE),
        }
    }

    /// A file about to be created at `path` (node `ino`).
    pub fn new_file(&self, ino: u64, path: &[u8]) -> JFile {
        JFile {
            ino,
            id: self.next_file.fetch_add(1, Ordering::Relaxed),
            path: Mutex::new(path.to_vec()),
            handle: Mutex::new(None),
            readable: AtomicBool::new(false),
            error: Mutex::new((None, false)),
            sent: Mutex::new(BTreeMap::new()),
            replayed_upto: AtomicU64::new(0),
            recovering: tokio::sync::Mutex::new(()),
            create_again: SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC,
            closing: AtomicBool::new(false),
        }
    }

    pub fn status(&self) -> JournalStatus {
        let s = self.state.lock().unwrap();
        JournalStatus {
            queued: s.ops.len(),
            queued_bytes: self.bytes_max - self.bytes.available_permits(),
            failures: s.failures,
        }
    }

    /// The owner new files get on the server, once known.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.state.lock().unwrap().owner
    }

    pub fn learn_owner(&self, owner: (u32, u32)) {
        self.state.lock().unwrap().owner.get_or_insert(owner);
    }

    /// The oldest failure no fsync returned yet.
    pub fn take_error(&self) -> Option<i32> {
        self.state
            .lock()
            .unwrap()
            .unreported
            .pop_front()
            .map(|(_, _, e)| e)
    }

    /// Every failure not reported yet (`sftpfs sync`).
    pub fn take_failures(&self) -> Vec<(&'static str, RelPath, i32)> {
        self.state.lock().unwrap().unreported.drain(..).collect()
    }

    /// A journal file's path changed (a rename through the mount).
    pub fn renamed(&self, from: &[u8], to: &[u8]) {
        for f in self.files.all(|_| true) {
            let mut p = f.path.lock().unwrap();
            if within(&p, from) {
                let mut new = to.to_vec();
                new.extend_from_slice(&p[from.len()..]);
                *p = new;
            }
        }
    }

    /// Waits until every operation queued before this call was answered.
    pub async fn settle(&self) {
        let last = {
            let s = self.state.lock().unwrap();
            if s.ops.is_empty() {
                return;
            }
            s.next_seq
        };
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .state
                .lock()
                .unwrap()
                .ops
                .range(..last)
                .next()
                .is_none()
            {
                return;
            }
            notified.await;
        }
    }

    /// The entries that may go now, marked running.
    fn pick(&self) -> Vec<(u64, Op, RelPath, Option<Arc<JFile>>)> {
        let mut s = self.state.lock().unwrap();
        let mut ready = Vec::new();
        let mut running = s.running;
        let keys: Vec<u64> = s
            .ops
            .iter()
            .filter(|(_, e)| !e.running)
            .take(WINDOW)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if running >= MAX_RUNNING {
                break;
            }
            let e = &s.ops[&k];
            let blocked = s.ops.range(..k).any(|(_, x)| e.depends_on(x));
            if blocked {
                continue;
            }
            ready.push((k, e.op.clone(), e.path.clone(), e.file.clone()));
            running += 1;
        }
        for (k, ..) in &ready {
            s.ops.get_mut(k).unwrap().running = true;
        }
        s.running = running;
        ready
    }

    /// The share of the byte budget `seq` holds, for its file to keep.
    fn take_bytes(&self, seq: u64) -> Option<OwnedSemaphorePermit> {
        self.state.lock().unwrap().ops.get_mut(&seq)?.bytes.take()
    }

    /// `seq` was answered (or failed with `err`): it leaves the journal.
    fn finish(&self, seq: u64, err: Option<(&'static str, RelPath, i32)>) {
        // Its change counts as done before it leaves: whoever waited for the journal then
        // takes a mark that shows it done (see `OpenFile::ack`). Counting takes the inode
        // table's lock: not under the journal's.
        let change = (self.state.lock().unwrap().ops.get_mut(&seq)).and_then(|e| e.change.take());
        drop(change);
        let mut s = self.state.lock().unwrap();
        s.running -= 1;
        let e = s.ops.remove(&seq);
        if let Some(err) = err {
            s.failures += 1;
            s.unreported.push_back(err);
        }
        drop(s);
        drop(e);
        self.wake.notify_one();
        self.done.notify_waiters();
    }
}

impl Filesystem {
    pub(in crate::fs) fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// Whether `fh` is a file of the asynchronous mode.
    pub(in crate::fs) fn is_async_fh(fh: u64) -> bool {
        fh >= FH_BASE
    }

    /// Waits for what the journal holds (asynchronous mode): every request to the server
    /// that is not itself queued comes after what was queued before it.
    pub(in crate::fs) async fn settle(&self) {
        if let Some(j) = self.journal() {
            j.settle().await;
        }
    }

    /// `f`'s handle on a live connection, re-opened (with what was unanswered sent again)
    /// when its connection died; `None` if it has none (not opened, or its name is gone).
    pub(in crate::fs) async fn live_handle(&self, f: &Arc<JFile>) -> Option<(Arc<Conn>, Handle)> {
        let (c, h) = f.handle.lock().unwrap().clone()?;
        if c.is_alive() {
            return Some((c, h));
        }
        self.remake(f, &c).await.ok()?;
        f.handle(false)
    }

    /// Everything queued lands (at unmount).
    pub async fn settle_all(&self) {
        if let Some(j) = self.journal() {
            if j.status().queued > 0 {
                tracing::info!("waiting for {} queued operations", j.status().queued);
            }
            j.settle().await;
        }
    }

    /// Before the process exits with the mount still busy: what the asynchronous queue and
    /// the open files' write-behind hold lands, for at most [`EXIT_GRACE`]; what could not
    /// is named in the log.
    pub async fn land_before_exit(&self) {
        let all = async {
            self.settle_all().await;
            for f in self.files.all(|f| f.has_pending()) {
                f.drain().await;
            }
        };
        if tokio::time::timeout(EXIT_GRACE, all).await.is_err() {
            let queued = self.journal().map_or(0, |j| j.status().queued);
            let files = self.files.all(|f| f.has_pending()).len();
            tracing::error!(
                "exiting with writes not on the server after {} s: {queued} queued operations, \
                 {files} open files with writes unanswered",
                EXIT_GRACE.as_secs()
            );
        }
    }

    /// `sftpfs sync`: everything queued lands; the failures not reported yet.
    pub async fn sync_all(&self) -> Vec<(&'static str, RelPath, i32)> {
        self.settle_all().await;
        self.journal()
            .map(|j| j.take_failures())
            .unwrap_or_default()
    }

    /// `sftpfs status` numbers of the journal, if this mount has one.
    pub fn journal_status(&self) -> Option<JournalStatus> {
        self.journal().map(|j| j.status())
    }

    /// Queues `op` on `path` (of `file`), waiting for room when the journal is full.
    pub(in crate::fs) async fn enqueue(
        self: &Arc<Self>,
        path: &[u8],
        file: Option<&Arc<JFile>>,
        op: Op,
    ) -> FsResult<()> {
        let j = self.journal().expect("asynchronous mode");
        let closed = || FsError::new(libc::EIO);
        let room = j.room.clone().acquire_owned().await.map_err(|_| closed())?;
        let bytes = match &op {
            Op::Write(_, d) => Some(
                j.bytes
                    .clone()
                    .acquire_many_owned((d.len().min(j.bytes_max)) as u32)
                    .await
                    .map_err(|_| closed())?,
            ),
            _ => None,
        };
        let changes_file = matches!(
            op,
            Op::Open { .. } | Op::Write(..) | Op::FSetStat(_) | Op::SetStat(_)
        );
        let change = changes_file.then(|| {
            let ino = match file {
                Some(f) => f.ino,
                None => self.inodes.lock().unwrap().ino_for(path),
            };
            InodeTable::begin_attr_change(&self.inodes, ino)
        });
        {
            let mut s = j.state.lock().unwrap();
            let (op, file) = match (op, file) {
                // Its handle is closed, or about to be (a chmod by name racing the release
                // of its last descriptor, as git's filemode probe does): SETSTAT by name,
                // which waits for the CLOSE (same path).
                (Op::FSetStat(a), Some(f)) if f.closing.load(Ordering::SeqCst) => {
                    (Op::SetStat(a), None)
                }
                (op, file) => {
                    if let (Op::Close, Some(f)) = (&op, file) {
                        f.closing.store(true, Ordering::SeqCst);
                    }
                    (op, file)
                }
            };
            let seq = s.next_seq;
            s.next_seq += 1;
            s.ops.insert(
                seq,
                Entry {
                    op,
                    path: path.to_vec(),
                    file: file.cloned(),
                    running: false,
                    _room: room,
                    bytes,
                    change,
                },
            );
        }
        if !j.started.swap(true, Ordering::SeqCst) {
            let fs = self.clone();
            tokio::spawn(async move { fs.dispatch().await });
        }
        j.wake.notify_one();
        Ok(())
    }

    /// Sends what may go, for as long as the mount lives.
    async fn dispatch(self: Arc<Self>) {
        let j = self.journal().expect("asynchronous mode");
        loop {
            let notified = j.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            for (seq, op, path, file) in j.pick() {
                self.start(seq, op, path, file);
            }
            notified.await;
        }
    }

    /// Sends one operation. A file's writes and attribute changes are put on the wire here,
    /// in journal order (they share its handle); the rest go from their own tasks.
    fn start(self: &Arc<Self>, seq: u64, op: Op, path: RelPath, file: Option<Arc<JFile>>) {
        let fs = self.clone();
        if let (Some(f), Op::Write(..) | Op::FSetStat(_)) = (&file, &op) {
            if f.failed() {
                fs.finished(seq, &op, &path, Ok(()));
                return;
            }
            let (conn, h) = f.handle.lock().unwrap().clone().expect("opened first");
            // Kept, with its bytes, until answered: a new connection gets it again.
            let bytes = self.journal().and_then(|j| j.take_bytes(seq));
            f.sent.lock().unwrap().insert(seq, (op.clone(), bytes));
            let sent = send_on(&conn, &h, &op);
            let f = f.clone();
            tokio::spawn(async move {
                let mut r = sent.await;
                if matches!(&r, Err(e) if e.is_dead()) {
                    r = fs.send_again(&f, &conn, seq, &op).await;
                }
                f.sent.lock().unwrap().remove(&seq);
                fs.finished(seq, &op, &path, r.map_err(|e| (e, Some(&f))));
            });
            return;
        }
        tokio::spawn(async move {
            let r = fs.run(&op, &path, file.as_ref()).await;
            fs.finished(seq, &op, &path, r.map_err(|e| (e, file.as_ref())));
        });
    }

    /// An operation's answer: a failure is logged, counted and kept for the next fsync (and
    /// the file's own flush); the caches forget what it would have made true.
    fn finished(
        &self,
        seq: u64,
        op: &Op,
        path: &[u8],
        r: Result<(), (RemoteError, Option<&Arc<JFile>>)>,
    ) {
        let j = self.journal().expect("asynchronous mode");
        let err = match r {
            Ok(()) => None,
            Err((e, file)) => {
                let errno = FsError::from(e.clone()).errno;
                tracing::warn!(
                    "queued {} of {} failed: {e}",
                    op.name(),
                    String::from_utf8_lossy(path)
                );
                self.errors_seen.note(crate::fs::errors_seen::SeenError {
                    at: std::time::SystemTime::now(),
                    op: op.name(),
                    path: path.to_vec(),
                    errno,
                });
                if let Some(f) = file {
                    f.fail(errno);
                }
                self.cache.invalidate(path);
                self.cache.drop_listing(parent_of(path));
                Some((op.name(), path.to_vec(), errno))
            }
        };
        j.finish(seq, err);
    }

    /// Runs an operation that is not a write on a file's handle.
    async fn run(
        &self,
        op: &Op,
        path: &[u8],
        file: Option<&Arc<JFile>>,
    ) -> Result<(), RemoteError> {
        let r = self.remote(path);
        match (op, file) {
            (Op::Open { pflags, attrs }, Some(f)) => {
                self.open_journal_file(f, &r, *pflags, attrs).await
            }
            (Op::Close, Some(f)) => {
                let handle = f.handle.lock().unwrap().clone();
                let res = match handle {
                    Some((c, h)) => match c.sftp.close(&h).await {
                        Err(e) if e.is_dead() => {
                            // Re-opened on a new connection (what was unanswered sent
                            // again), then closed there.
                            self.remake(f, &c).await?;
                            let (c, h) = f.handle.lock().unwrap().clone().expect("recovered");
                            c.sftp.close(&h).await
                        }
                        r => r,
                    },
                    None => Ok(()),
                };
                res
            }
            _ => {
                let once = |c: Arc<Conn>| {
                    let r = &r;
                    async move {
                        match op {
                            Op::Mkdir(a) => c.sftp.mkdir(r, a).await,
                            Op::Remove => c.sftp.remove(r).await,
                            Op::Rmdir => c.sftp.rmdir(r).await,
                            Op::Rename(to) => c.sftp.posix_rename(r, &self.remote(to)).await,
                            Op::SetStat(a) => c.sftp.setstat(r, a).await,
                            _ => Ok(()),
                        }
                    }
                };
                let c = self.pool.any().await?;
                match once(c.clone()).await {
                    Err(e) if e.is_dead() => {
                        tracing::debug!("queued {}: connection lost ({e}); once more", op.name());
                        let c = self.pool.get(c.slot).await?;
                        match once(c).await {
                            // The first attempt may have done it before its answer was lost.
                            Err(e2) if !e2.is_dead() && self.took_effect(op, path).await => Ok(()),
                            r => r.map_err(|e2| if e2.is_dead() { e } else { e2 }),
                        }
                    }
                    r => r,
                }
            }
        }
    }

    /// After a lost answer: whether `op` on `path` is done on the server.
    async fn took_effect(&self, op: &Op, path: &[u8]) -> bool {
        let st = |p: Vec<u8>| async move {
            let c = self.pool.any().await.ok()?;
            c.sftp.lstat(&p).await.ok()
        };
        match op {
            Op::Mkdir(_) => st(self.remote(path)).await.is_some_and(|a| a.is_dir()),
            Op::Remove | Op::Rmdir => st(self.remote(path)).await.is_none(),
            Op::Rename(to) => {
                st(self.remote(path)).await.is_none() && st(self.remote(to)).await.is_some()
            }
            _ => false,
        }
    }

    /// The file's OPEN (with an LSTAT to learn the owner new files get).
    async fn open_journal_file(
        &self,
        f: &Arc<JFile>,
        r: &[u8],
        pflags: u32,
        attrs: &Attrs,
    ) -> Result<(), RemoteError> {
        let mut flags = pflags;
        loop {
            let c = self.pool.any().await?;
            let (h, st) = join(c.sftp.open(r, flags, attrs), c.sftp.lstat(r)).await;
            match h {
                Ok(h) => {
                    if let (
                        Ok(Attrs {
                            uid_gid: Some(o), ..
                        }),
                        Some(j),
                    ) = (st, self.journal())
                    {
                        j.learn_owner(o);
                    }
                    f.readable
                        .store(flags & SSH_FXF_READ != 0, Ordering::SeqCst);
                    *f.handle.lock().unwrap() = Some((c, h));
                    return Ok(());
                }
                // Once more on a new connection; made by the first try, it is ours to
                // truncate, not to refuse.
                Err(e) if e.is_dead() && flags == pflags => {
                    tracing::debug!("queued create: connection lost ({e}); once more");
                    flags = f.create_again
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Request `seq` (`op`) of `f` died with connection `failed`: the file is re-opened on a
    /// new one (once, by whoever comes first), and the request sent again there unless that
    /// re-open already did.
    async fn send_again(
        &self,
        f: &Arc<JFile>,
        failed: &Arc<Conn>,
        seq: u64,
        op: &Op,
    ) -> Result<(), RemoteError> {
        self.remake(f, failed).await?;
        if seq <= f.replayed_upto.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (c, h) = f.handle.lock().unwrap().clone().expect("re-opened");
        send_on(&c, &h, op).await
    }

    /// Re-opens `f` on a new connection after `failed` died, and sends again, in order,
    /// every request of it not answered yet (those answered are in the server's file).
    async fn remake(&self, f: &Arc<JFile>, failed: &Arc<Conn>) -> Result<(), RemoteError> {
        let _g = f.recovering.lock().await;
        if let Some((c, _)) = f.handle.lock().unwrap().as_ref() {
            if !Arc::ptr_eq(c, failed) && c.is_alive() {
                return Ok(());
            }
        }
        // A file whose name is gone cannot be opened again (SFTP has only paths); its old
        // name may be another file's by now.
        let Some(path) = self.inodes.lock().unwrap().path(f.ino) else {
            return Err(RemoteError::Status {
                code: SSH_FX_NO_SUCH_FILE,
                message: "the file's name was removed while it was open".into(),
            });
        };
        let c = self.pool.get_or_live(failed.slot).await?;
        let r = self.remote(&path);
        let h = c.sftp.open(&r, SSH_FXF_WRITE, &Attrs::default()).await?;
        let replay: Vec<_> = {
            let sent = f.sent.lock().unwrap();
            if let Some((&last, _)) = sent.iter().next_back() {
                f.replayed_upto.store(last, Ordering::SeqCst);
            }
            sent.values().map(|(op, _)| send_on(&c, &h, op)).collect()
        };
        f.readable.store(false, Ordering::SeqCst);
        *f.handle.lock().unwrap() = Some((c, h));
        tracing::info!(
            "re-made {} on a new connection, replaying {} requests",
            String::from_utf8_lossy(&f.path()),
            replay.len()
        );
        for r in futures::future::join_all(replay).await {
            r?;
        }
        Ok(())
    }
}

/// Puts a write or an attribute change on `h` now; the future waits for its answer.
fn send_on(
    conn: &Conn,
    h: &Handle,
    op: &Op,
) -> futures::future::BoxFuture<'static, Result<(), RemoteError>> {
    match op {
        Op::Write(off, data) => conn.sftp.write_send(h, *off, data).boxed(),
        Op::FSetStat(a) => conn.sftp.fsetstat_send(h, a).boxed(),
        _ => futures::future::ready(Ok(())).boxed(),
    }
}
