//! The asynchronous write mode (`-o async_writes`): creating, writing, closing, changing
//! the mode, owner or times of, making directories, removing and renaming are answered once
//! the operation is durable in a journal on local disk, and the journal goes to the server
//! pipelined. It is one ordered queue per mount: an operation waits only for earlier ones it
//! depends on (`order.rs`), so unrelated files travel side by side, and what depends on
//! something travels after it.
//!
//! Durable before answered: each operation is a record appended to a segment on local disk
//! (`record.rs`, `log.rs`) and the caller is answered once an `fdatasync` covered it; many
//! callers share one (group commit). A record stays until the server answered; a killed
//! daemon, a crash or a power loss leaves the journal behind, and the next mount of the same
//! source replays it before it serves anything (`replay.rs`), as does `sftpfs replay`.
//! Each operation's target is checked at send time against what the mount based it on: a
//! file someone else changed on the server is left alone, and this mount's version goes
//! beside it (`conflict.rs`). With the server away, operations wait and are tried again with
//! backoff; what needs the server fails fast meanwhile (`dispatch.rs`).
//!
//! Nothing is lost silently: a failed operation is logged with its path and errno, counted in
//! `sftpfs status`, and returned by the next `fsync` (and by the close of its own file when
//! that comes later). Every other request to the server waits for the journal first
//! ([`Filesystem::settle`]), so reads, listings and `open` see what was queued before them;
//! so does `opendir` (what `sync -f DIR` does first: Linux does not pass syncfs to FUSE), and
//! unmount waits for the journal to be empty (or, with the server away, leaves it on disk).

pub mod conflict;
pub mod directory;
mod dispatch;
pub mod log;
pub mod order;
pub mod record;
pub mod replay;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::fs::integrity::verify_writes::QueuedDigest;
use crate::fs::names::inode::{within, AttrChangeGuard, InodeTable, RelPath};
use crate::fs::{Filesystem, FsError, FsResult};
use crate::remote::protocol::*;
use crate::remote::{Attrs, Conn, Handle, RemoteError};

use directory::JournalDir;
use log::{DiskData, Log};
use record::{Base, OpRecord, Record};

/// How long a process asked to go with its mount busy still sends what programs were told
/// was written (systemd waits 90 s before it kills).
pub const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Operations queued at most; one more waits for room. The journal's bytes are bounded by
/// `journal_max`; this bounds the daemon's memory (an entry is about 200 bytes).
const MAX_OPS: usize = 1 << 15;
/// Operations sent and not yet answered at most.
const MAX_RUNNING: usize = 256;
/// Bytes of writes sent and not yet answered at most (at least one write goes).
const MAX_RUNNING_BYTES: u64 = 16 << 20;
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
    /// Replay only, never recorded: a file whose OPEN was answered before the restart is
    /// opened again (without creating or truncating it) for the rest of its operations, if
    /// the server's size is what its answered writes made it (at least `done_end`, at most
    /// `total_end`); otherwise it is a conflict.
    Resume {
        done_end: u64,
        total_end: u64,
    },
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
            Op::Resume { .. } => "reopen",
        }
    }

    /// It goes on its file's handle, not by name.
    fn on_handle(&self) -> bool {
        matches!(self, Op::Write(..) | Op::FSetStat(_))
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
    /// Made again from a journal left behind: it has no node, its name is its recorded path.
    from_replay: bool,
    /// Its server name when a conflict sent it elsewhere.
    diverted: Mutex<Option<RelPath>>,
    /// Its CLOSE is queued (set under the journal's lock): a change found it by its node
    /// before the kernel's release took it away goes by name, after the CLOSE.
    closing: AtomicBool,
    /// What its CLOSE checks first (`verify_writes`), set by its release.
    pub(in crate::fs) verify: Mutex<Option<QueuedDigest>>,
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

/// An operation in the queue.
struct Entry {
    /// Its number in the journal (replay's synthetic re-opens take the one they precede).
    seq: u64,
    /// The segment its record is in, while it counts there as unanswered: `None` for what
    /// replay only re-sends to a conflict copy, or makes up.
    seg: Option<u64>,
    op: Op,
    /// A write's data when it is kept only in the journal (the op's is then empty).
    disk: Option<DiskData>,
    path: RelPath,
    file: Option<Arc<JFile>>,
    base: Base,
    /// When it was queued (for the oldest waiting age; replay: when first queued).
    time: SystemTime,
    /// When the server gave what `base` holds (not kept in the journal: replay checks
    /// every base).
    seen: Option<Instant>,
    running: bool,
    /// Replay: answered before the restart, sent again only to a conflict copy.
    only_if_diverted: bool,
    /// Replay: the server may have it already.
    replayed: bool,
    _room: Option<OwnedSemaphorePermit>,
    bytes: Option<OwnedSemaphorePermit>,
    /// A change of a file's data or attributes, on its way until answered: attributes read
    /// meanwhile may predate it (see `Filesystem::server_caught_up`).
    change: Option<AttrChangeGuard>,
}

impl Entry {
    fn data_len(&self) -> u64 {
        match (&self.op, &self.disk) {
            (_, Some(d)) => d.len as u64,
            (Op::Write(_, d), None) => d.len() as u64,
            _ => 0,
        }
    }

    fn node(&self) -> order::Node {
        let mut paths = vec![self.path.clone()];
        if let Op::Rename(to) = &self.op {
            paths.push(to.clone());
        }
        order::Node {
            file: self.file.as_ref().map(|f| f.id),
            opens: matches!(self.op, Op::Open { .. } | Op::Resume { .. }),
            closes: matches!(self.op, Op::Close),
            paths,
        }
    }
}

/// A queued operation's path went elsewhere on the server: a conflict, found by operation
/// `seq`, sent it and what was queued after it and before `mark` for `from` to `to`.
#[derive(Debug, Clone)]
struct Diversion {
    from: RelPath,
    to: RelPath,
    seq: u64,
    mark: u64,
}

/// A queued write's data, wherever it is kept.
#[derive(Debug, Clone)]
enum WriteData {
    Mem(Bytes),
    Disk(DiskData),
}

/// A failure or conflict not yet returned by an fsync or `sftpfs sync`.
#[derive(Debug, Clone)]
pub struct Unreported {
    pub op: &'static str,
    pub path: RelPath,
    pub errno: i32,
    /// For a conflict: where this mount's version went (errno is then 0).
    pub kept_as: Option<RelPath>,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    next_key: u64,
    ops: BTreeMap<u64, Entry>,
    order: order::Order,
    running: usize,
    running_bytes: u64,
    queued_bytes: u64,
    unreported: VecDeque<Unreported>,
    failures: u64,
    conflicts: u64,
    diversions: Vec<Diversion>,
    /// The owner the server gives new files (learned from the first one made).
    owner: Option<(u32, u32)>,
    /// The server cannot be reached: since when, and why.
    offline: Option<(SystemTime, String)>,
    last_error: Option<String>,
    /// What replay found damaged in the journal it read.
    damage: Vec<String>,
    /// Replay: one line per operation replayed (for `sftpfs replay`).
    replay_lines: Option<Vec<String>>,
    replay_counts: replay::Counts,
    next_file: u64,
}

/// The journal's numbers for `sftpfs status`.
#[derive(Debug, Clone, Default)]
pub struct JournalStatus {
    pub path: PathBuf,
    pub queued: usize,
    pub queued_bytes: u64,
    pub failures: u64,
    pub conflicts: u64,
    pub oldest: Option<Duration>,
    pub offline_since: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Bytes of the journal's segments on disk.
    pub disk_bytes: u64,
    pub syncs: u64,
    pub synced_records: u64,
    /// What replay cut from the journal it found (a torn tail, a damaged file).
    pub damage: Vec<String>,
    /// What replay did with what an earlier mount left.
    pub replayed: replay::Counts,
}

/// Where a journal goes and how large it may grow (`journal_dir`, `journal_max`).
#[derive(Debug, Clone)]
pub struct JournalOptions {
    pub dir: PathBuf,
    pub max: u64,
}

pub struct Journal {
    state: Mutex<State>,
    dir: Mutex<Option<JournalDir>>,
    path: PathBuf,
    log: Log,
    /// An operation came or finished, or data reached the disk: the dispatcher looks again.
    wake: Arc<Notify>,
    /// An operation finished: those settling look again.
    done: Notify,
    /// The server answers again: operations waiting for it go.
    online: Notify,
    room: Arc<Semaphore>,
    /// Memory for the data of queued writes; past it, data is kept only in the journal.
    bytes: Arc<Semaphore>,
    started: AtomicBool,
    closed: AtomicBool,
    /// The server's largest WRITE, once learned (0 before): a write is queued without
    /// asking the pool for a connection, which may be down.
    pub max_write: std::sync::atomic::AtomicU32,
    pub files: crate::fs::handle::HandleTable<JFile>,
    /// What replay will send, until it is queued.
    loaded: Mutex<Option<replay::Loaded>>,
    /// This machine's name, for conflict copies.
    host: String,
}

impl Journal {
    /// The journal of `dir`: what a mount left there is read (to be replayed with
    /// `Filesystem::replay`), and new operations are appended after it.
    pub fn open(dir: JournalDir, max: u64, memory: usize) -> Result<Journal, String> {
        let loaded = replay::load(&dir);
        let existing = loaded.segments.clone();
        let log = Log::start(&dir.path, max, &existing)
            .map_err(|e| format!("cannot start the journal in {}: {e}", dir.path.display()))?;
        let wake = Arc::new(Notify::new());
        log.notify_written(wake.clone());
        let state = State {
            next_seq: loaded.next_seq,
            next_file: loaded.next_file,
            damage: loaded.damage.clone(),
            ..State::default()
        };
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Ok(Journal {
            state: Mutex::new(state),
            path: dir.path.clone(),
            dir: Mutex::new(Some(dir)),
            log,
            wake,
            done: Notify::new(),
            online: Notify::new(),
            room: Arc::new(Semaphore::new(MAX_OPS)),
            bytes: Arc::new(Semaphore::new(memory)),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            max_write: std::sync::atomic::AtomicU32::new(0),
            files: crate::fs::handle::HandleTable::starting_at(FH_BASE),
            loaded: Mutex::new(Some(loaded)),
            host,
        })
    }

    /// A file about to be created at `path` (node `ino`).
    pub fn new_file(&self, ino: u64, path: &[u8]) -> JFile {
        let id = {
            let mut s = self.state.lock().unwrap();
            s.next_file += 1;
            s.next_file
        };
        JFile {
            ino,
            id,
            path: Mutex::new(path.to_vec()),
            handle: Mutex::new(None),
            readable: AtomicBool::new(false),
            error: Mutex::new((None, false)),
            sent: Mutex::new(BTreeMap::new()),
            replayed_upto: AtomicU64::new(0),
            recovering: tokio::sync::Mutex::new(()),
            create_again: SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC,
            closing: AtomicBool::new(false),
            from_replay: false,
            diverted: Mutex::new(None),
            verify: Mutex::new(None),
        }
    }

    pub fn status(&self) -> JournalStatus {
        let s = self.state.lock().unwrap();
        let st = self.log.stats();
        JournalStatus {
            path: self.path.clone(),
            queued: s.ops.len(),
            queued_bytes: s.queued_bytes,
            failures: s.failures,
            conflicts: s.conflicts,
            oldest: s.ops.values().next().and_then(|e| e.time.elapsed().ok()),
            offline_since: s.offline.as_ref().map(|o| o.0),
            last_error: s.last_error.clone(),
            disk_bytes: st.bytes,
            syncs: st.syncs,
            synced_records: st.synced_records,
            damage: s.damage.clone(),
            replayed: s.replay_counts,
        }
    }

    /// The owner new files get on the server, once known.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.state.lock().unwrap().owner
    }

    pub fn learn_owner(&self, owner: (u32, u32)) {
        self.state.lock().unwrap().owner.get_or_insert(owner);
    }

    /// The oldest failure no fsync returned yet (conflicts are not failures of the call).
    pub fn take_error(&self) -> Option<i32> {
        let mut s = self.state.lock().unwrap();
        let i = s.unreported.iter().position(|u| u.errno != 0)?;
        s.unreported.remove(i).map(|u| u.errno)
    }

    /// Every failure and conflict not reported yet (`sftpfs sync`).
    pub fn take_failures(&self) -> Vec<Unreported> {
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

    /// The server cannot be reached.
    pub(in crate::fs) fn offline(&self) -> bool {
        self.state.lock().unwrap().offline.is_some()
    }

    /// Waits until every operation queued before this call was answered; a lost connection
    /// (`EIO`) at once while the server cannot be reached (what waits for it would wait
    /// that long).
    pub async fn settle(&self) -> Result<(), RemoteError> {
        let last = {
            let s = self.state.lock().unwrap();
            if s.ops.is_empty() {
                return Ok(());
            }
            s.next_key
        };
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.state.lock().unwrap();
                if s.ops.range(..last).next().is_none() {
                    return Ok(());
                }
                if s.offline.is_some() {
                    return Err(RemoteError::ConnectionLost);
                }
            }
            notified.await;
        }
    }

    /// Waits until everything queued was answered, however long the server is away.
    async fn drain(&self) {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.lock().unwrap().ops.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// The entries that may go now, marked running; a write kept only on disk gets its
    /// data back.
    fn pick(&self) -> Vec<Picked> {
        let mut s = self.state.lock().unwrap();
        let State {
            ops,
            order,
            running,
            running_bytes,
            ..
        } = &mut *s;
        let keys = order.take_ready(|k| {
            if *running >= MAX_RUNNING {
                return None;
            }
            let e = &ops[&k];
            if e.disk.is_some_and(|d| !self.log.written(d.lsn)) {
                return Some(false);
            }
            let len = e.data_len();
            if len > 0 && *running_bytes > 0 && *running_bytes + len > MAX_RUNNING_BYTES {
                return None;
            }
            *running += 1;
            *running_bytes += len;
            Some(true)
        });
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let e = ops.get_mut(&k).unwrap();
            e.running = true;
            let op = match (&e.op, e.disk) {
                (Op::Write(off, _), Some(d)) => match self.log.read(&d) {
                    Ok(data) => Op::Write(*off, data),
                    Err(err) => {
                        tracing::error!(
                            "cannot read a queued write of {} back from the journal: {err}",
                            String::from_utf8_lossy(&e.path)
                        );
                        // Sent as a failure: the data is not there to send.
                        out.push(Picked {
                            key: k,
                            seq: e.seq,
                            op: e.op.clone(),
                            path: e.path.clone(),
                            file: e.file.clone(),
                            base: e.base,
                            replayed: e.replayed,
                            only_if_diverted: e.only_if_diverted,
                            queued: e.time,
                            seen: e.seen,
                            unreadable: true,
                        });
                        continue;
                    }
                },
                (op, _) => op.clone(),
            };
            out.push(Picked {
                key: k,
                seq: e.seq,
                op,
                path: e.path.clone(),
                file: e.file.clone(),
                base: e.base,
                replayed: e.replayed,
                only_if_diverted: e.only_if_diverted,
                queued: e.time,
                seen: e.seen,
                unreadable: false,
            });
        }
        out
    }

    /// The writes queued for file `id`, in order: (offset, length, data).
    fn file_writes(&self, id: u64) -> Vec<(u64, u64, WriteData)> {
        let s = self.state.lock().unwrap();
        s.ops
            .values()
            .filter(|e| e.file.as_ref().is_some_and(|f| f.id == id))
            .filter_map(|e| match (&e.op, e.disk) {
                (Op::Write(off, _), Some(d)) => Some((*off, d.len as u64, WriteData::Disk(d))),
                (Op::Write(off, b), None) => {
                    Some((*off, b.len() as u64, WriteData::Mem(b.clone())))
                }
                _ => None,
            })
            .collect()
    }

    /// `len` bytes of a write's data from `skip` on.
    fn write_bytes(&self, d: &WriteData, skip: u64, len: u64) -> Option<Bytes> {
        match d {
            WriteData::Mem(b) => Some(b.slice(skip as usize..(skip + len) as usize)),
            WriteData::Disk(d) => self
                .log
                .read(&DiskData {
                    pos: d.pos + skip,
                    len: len as u32,
                    ..*d
                })
                .ok(),
        }
    }

    /// The share of the byte budget `key` holds, for its file to keep.
    fn take_bytes(&self, key: u64) -> Option<OwnedSemaphorePermit> {
        self.state.lock().unwrap().ops.get_mut(&key)?.bytes.take()
    }

    /// `key` was answered (or failed with `err`): it leaves the queue and its record is
    /// marked answered.
    fn finish(&self, key: u64, err: Option<Unreported>) {
        // Its change counts as done before it leaves: whoever waited for the queue then takes
        // a mark that shows it done (see `OpenFile::ack`). Counting takes the inode table's
        // lock: not under the queue's.
        let change = (self.state.lock().unwrap().ops.get_mut(&key)).and_then(|e| e.change.take());
        drop(change);
        let mut s = self.state.lock().unwrap();
        s.running -= 1;
        let e = s.ops.remove(&key);
        s.order.finish(key);
        if let Some(e) = &e {
            let len = e.data_len();
            s.running_bytes -= len;
            s.queued_bytes -= len;
        }
        let failed = err.is_some();
        if let Some(err) = err {
            s.failures += 1;
            s.last_error = Some(format!(
                "{} of {}: {}",
                err.op,
                String::from_utf8_lossy(&err.path),
                std::io::Error::from_raw_os_error(err.errno)
            ));
            s.unreported.push_back(err);
        }
        drop(s);
        if let Some(e) = &e {
            if let Some(seg) = e.seg {
                self.log.done(e.seq, seg, failed);
            }
        }
        drop(e);
        self.wake.notify_one();
        self.done.notify_waiters();
    }

    /// Stops the dispatcher and the log; the journal's directory goes if nothing is left
    /// in it to send.
    fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let empty = self.state.lock().unwrap().ops.is_empty();
        self.log.close(empty);
        let dir = self.dir.lock().unwrap().take();
        if let Some(dir) = dir {
            if empty {
                dir.remove();
            } else {
                tracing::warn!(
                    "{} queued operations stay in the journal {}: they are sent at the next \
                     mount of this source, or by `sftpfs replay {}`",
                    self.state.lock().unwrap().ops.len(),
                    self.path.display(),
                    dir.source.describe()
                );
            }
        }
        self.wake.notify_one();
        self.online.notify_waiters();
    }
}

/// An entry the dispatcher took, with what sending it needs.
struct Picked {
    key: u64,
    seq: u64,
    op: Op,
    path: RelPath,
    file: Option<Arc<JFile>>,
    base: Base,
    replayed: bool,
    only_if_diverted: bool,
    queued: SystemTime,
    seen: Option<Instant>,
    /// Its data could not be read back from the journal.
    unreadable: bool,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
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
    /// that is not itself queued comes after what was queued before it. A lost connection
    /// (`EIO`) while the server is away.
    pub(in crate::fs) async fn settle(&self) -> Result<(), RemoteError> {
        match self.journal() {
            Some(j) => j.settle().await,
            None => Ok(()),
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

    /// At unmount: everything queued lands, unless the server is away; what stays in the
    /// journal is sent at the next mount. The journal closes.
    pub async fn settle_all(&self) {
        if let Some(j) = self.journal() {
            let queued = j.status().queued;
            if queued > 0 && !j.offline() {
                tracing::info!("waiting for {queued} queued operations");
                let waited = async {
                    loop {
                        let notified = j.done.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        if j.state.lock().unwrap().ops.is_empty() || j.offline() {
                            return;
                        }
                        notified.await;
                    }
                };
                waited.await;
            }
            j.close();
        }
    }

    /// Before the process exits with the mount still busy: what the journal and the open
    /// files' write-behind hold lands, for at most [`EXIT_GRACE`]; what could not is named in
    /// the log (the journal's part is sent at the next mount).
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
                "exiting with writes not on the server after {} s: {queued} queued operations \
                 (kept in the journal for the next mount), {files} open files with writes \
                 unanswered",
                EXIT_GRACE.as_secs()
            );
        }
    }

    /// `sftpfs sync`: everything queued lands (however long the server is away); the
    /// failures and conflicts not reported yet.
    pub async fn sync_all(&self) -> Vec<Unreported> {
        match self.journal() {
            Some(j) => {
                j.drain().await;
                j.take_failures()
            }
            None => Vec::new(),
        }
    }

    /// `sftpfs status` numbers of the journal, if this mount has one.
    pub fn journal_status(&self) -> Option<JournalStatus> {
        self.journal().map(|j| j.status())
    }

    /// Queues `op` on `path` (of `file`), waiting for room when the journal is full, and
    /// returns once its record is durable.
    pub(in crate::fs) async fn enqueue(
        self: &Arc<Self>,
        path: &[u8],
        file: Option<&Arc<JFile>>,
        op: Op,
    ) -> FsResult<()> {
        self.enqueue_based(path, file, op, Base::Unchecked, None)
            .await
    }

    /// [`Self::enqueue`], with what the operation is based on, as the server gave it at
    /// `seen` (checked at send time once that is old, see `dispatch.rs`).
    pub(in crate::fs) async fn enqueue_based(
        self: &Arc<Self>,
        path: &[u8],
        file: Option<&Arc<JFile>>,
        op: Op,
        base: Base,
        seen: Option<Instant>,
    ) -> FsResult<()> {
        let j = self.journal().expect("asynchronous mode");
        let closed = || FsError::new(libc::EIO);
        let room = j.room.clone().acquire_owned().await.map_err(|_| closed())?;
        let data_len = match &op {
            Op::Write(_, d) => d.len(),
            _ => 0,
        };
        // In memory if there is room for it there, else only in the journal.
        let bytes = (data_len > 0)
            .then(|| j.bytes.clone().try_acquire_many_owned(data_len as u32).ok())
            .flatten();
        j.log.wait_room((data_len + path.len() + 128) as u64).await;
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
        let lsn = {
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
            let rec = Record::Op(OpRecord {
                seq,
                file: file.map_or(0, |f| f.id),
                time_ns: now_ns(),
                path: path.to_vec(),
                base,
                op,
            });
            // Appended under the queue's lock: the journal's order is the queue's.
            let a = j.log.append(&rec, true).map_err(|e| {
                tracing::warn!("queued operation refused: {e}");
                closed()
            })?;
            let Record::Op(rec) = rec else { unreachable!() };
            let (op, disk) = match (rec.op, bytes.is_none() && data_len > 0) {
                (Op::Write(off, _), true) => (
                    Op::Write(off, Bytes::new()),
                    Some(DiskData {
                        seg: a.seg,
                        pos: a.data_at.expect("a write's data"),
                        len: data_len as u32,
                        lsn: a.lsn,
                    }),
                ),
                (op, _) => (op, None),
            };
            s.next_seq += 1;
            let key = s.next_key;
            s.next_key += 1;
            let e = Entry {
                seq,
                seg: Some(a.seg),
                op,
                disk,
                path: rec.path,
                file: file.cloned(),
                base,
                time: SystemTime::now(),
                seen,
                running: false,
                only_if_diverted: false,
                replayed: false,
                _room: Some(room),
                bytes,
                change,
            };
            s.queued_bytes += e.data_len();
            s.order.insert(key, e.node());
            s.ops.insert(key, e);
            a.lsn
        };
        self.start_dispatcher();
        j.wake.notify_one();
        j.log.durable(lsn).await.map_err(|e| {
            tracing::warn!("queued operation not made durable: {e}");
            closed()
        })
    }

    /// The dispatcher runs from the first operation queued until the journal closes.
    fn start_dispatcher(self: &Arc<Self>) {
        let j = self.journal().expect("asynchronous mode");
        if !j.started.swap(true, Ordering::SeqCst) {
            let fs = self.clone();
            tokio::spawn(async move { fs.dispatch().await });
        }
    }
}
