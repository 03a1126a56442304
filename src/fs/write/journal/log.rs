//! The journal's segments on disk and their group commit.
//!
//! Records are appended to the current segment (`NNNNNNNN.seg`) in memory; one committer
//! thread writes what was appended and `fdatasync`s it, then wakes every caller whose record
//! it made durable: operations that arrive while a sync runs share the next one. `DONE` and
//! `CONFLICT` records need no sync of their own (losing one makes replay send an idempotent
//! operation again, or keep a conflict copy twice); they are written at once, so that a
//! killed daemon (as opposed to a machine that lost power) keeps them.
//!
//! A segment whose operations were all answered is deleted, oldest first (a `DONE` in a later
//! segment may be the only word that an older segment's operation was answered). The live
//! segments' size is bounded (`journal_max`): an append past it waits until one is deleted.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::record::{Record, MAGIC};

/// A segment is closed for appends past this size (or a quarter of the bound, if less).
const SEGMENT_MAX: u64 = 64 << 20;

/// Where an appended record went.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub seg: u64,
    /// The log position just past the record: durable once `durable()` reaches it.
    pub lsn: u64,
    /// Where a write's data starts in the segment file.
    pub data_at: Option<u64>,
}

/// Where a queued write's data is, in a segment file.
#[derive(Debug, Clone, Copy)]
pub struct DiskData {
    pub seg: u64,
    pub pos: u64,
    pub len: u32,
    /// Readable once the log's written position reaches this.
    pub lsn: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Durable {
    lsn: u64,
    broken: bool,
}

#[derive(Debug)]
struct Seg {
    size: u64,
    /// Operations recorded in it and not answered yet.
    live: u64,
}

#[derive(Default)]
struct State {
    /// Appended, not yet written: bytes per segment, in order.
    pending: Vec<(u64, Vec<u8>)>,
    needs_sync: bool,
    appended: u64,
    cur: u64,
    segs: BTreeMap<u64, Seg>,
    /// Bytes of the segments that exist or will (pending included).
    total: u64,
    deletes: Vec<u64>,
    closed: bool,
    broken: Option<String>,
    said_full: bool,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    work: Condvar,
    durable: watch::Sender<Durable>,
    written: AtomicU64,
    /// A segment was deleted: appends waiting for room look again.
    room: Notify,
    /// The committer wrote something: data kept only on disk may be read now.
    on_written: Mutex<Option<Arc<Notify>>>,
    max: u64,
    seg_max: u64,
    readers: Mutex<HashMap<u64, Arc<File>>>,
    /// fdatasyncs made, and records they made durable (for the status and the bench).
    syncs: AtomicU64,
    synced_records: AtomicU64,
    pending_records: AtomicU64,
}

/// The journal's log: append, wait until durable, mark answered.
pub struct Log {
    shared: Arc<Shared>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the log costs, for `sftpfs status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    pub bytes: u64,
    pub segments: usize,
    pub syncs: u64,
    pub synced_records: u64,
}

pub fn segment_name(n: u64) -> String {
    format!("{n:08}.seg")
}

/// The number of a segment file's name, if it is one.
pub fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

impl Log {
    /// A log appending to segments after `existing` (those replay found: (number, size,
    /// operations still to answer)) in `dir`, bounded to `max` bytes.
    pub fn start(dir: &Path, max: u64, existing: &[(u64, u64, u64)]) -> std::io::Result<Log> {
        let mut segs = BTreeMap::new();
        let mut total = 0;
        for &(n, size, live) in existing {
            segs.insert(n, Seg { size, live });
            total += size;
        }
        let cur = existing.iter().map(|e| e.0).max().unwrap_or(0) + 1;
        segs.insert(
            cur,
            Seg {
                size: MAGIC.len() as u64,
                live: 0,
            },
        );
        total += MAGIC.len() as u64;
        let state = State {
            pending: vec![(cur, MAGIC.to_vec())],
            appended: MAGIC.len() as u64,
            cur,
            segs,
            total,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            work: Condvar::new(),
            durable: watch::channel(Durable::default()).0,
            written: AtomicU64::new(0),
            room: Notify::new(),
            on_written: Mutex::new(None),
            max,
            seg_max: SEGMENT_MAX.min(max / 4).max(1 << 20),
            readers: Mutex::new(HashMap::new()),
            syncs: AtomicU64::new(0),
            synced_records: AtomicU64::new(0),
            pending_records: AtomicU64::new(0),
        });
        let s = shared.clone();
        let committer = std::thread::Builder::new()
            .name("sftpfs-journal".into())
            .spawn(move || commit_loop(&s))?;
        let log = Log {
            shared,
            committer: Mutex::new(Some(committer)),
        };
        // Segments replay found with nothing left to answer go at once.
        log.shared.state.lock().unwrap().collect_deletable();
        log.shared.work.notify_one();
        Ok(log)
    }

    /// Who to wake when data kept only on disk becomes readable.
    pub fn notify_written(&self, n: Arc<Notify>) {
        *self.shared.on_written.lock().unwrap() = Some(n);
    }

    /// Waits until `len` more bytes fit within the bound (at once when they do).
    pub async fn wait_room(&self, len: u64) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.shared.state.lock().unwrap();
                let s = &mut *s;
                // A record larger than the whole bound goes alone.
                let empty = s.total <= MAGIC.len() as u64;
                if s.total + len <= self.shared.max || empty || s.broken.is_some() || s.closed {
                    return;
                }
                // What is answered in the current segment can go only with it.
                if s.segs.len() == 1 && s.segs[&s.cur].live == 0 {
                    s.rotate();
                    s.collect_deletable();
                    self.shared.work.notify_one();
                    continue;
                }
                if !s.said_full {
                    s.said_full = true;
                    tracing::warn!(
                        "the journal is full ({} MiB, journal_max): writers wait for the \
                         server to take what it holds",
                        self.shared.max >> 20
                    );
                }
            }
            notified.await;
        }
    }

    /// Appends `rec`; `op` when it is an operation to answer (it keeps its segment until
    /// [`Log::done`]) and must be durable before it is answered ([`Log::durable`]).
    pub fn append(&self, rec: &Record, op: bool) -> Result<Appended, String> {
        let mut s = self.shared.state.lock().unwrap();
        if let Some(e) = &s.broken {
            return Err(e.clone());
        }
        if s.closed {
            return Err("the journal is closed".into());
        }
        let mut bytes = Vec::new();
        let data_at = rec.encode_into(&mut bytes);
        let len = bytes.len() as u64;
        if s.segs[&s.cur].size + len > self.shared.seg_max
            && s.segs[&s.cur].size > MAGIC.len() as u64
        {
            s.rotate();
        }
        let cur = s.cur;
        let seg = s.segs.get_mut(&cur).unwrap();
        let offset = seg.size;
        seg.size += len;
        if op {
            seg.live += 1;
        }
        s.total += len;
        s.appended += len;
        match s.pending.last_mut() {
            Some((n, buf)) if *n == cur => buf.extend_from_slice(&bytes),
            _ => s.pending.push((cur, bytes)),
        }
        s.needs_sync |= op;
        let lsn = s.appended;
        drop(s);
        if op {
            self.shared.pending_records.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.work.notify_one();
        Ok(Appended {
            seg: cur,
            lsn,
            data_at: data_at.map(|d| offset + d as u64),
        })
    }

    /// Waits until the log is durable up to `lsn`; an error if it cannot be made so.
    pub async fn durable(&self, lsn: u64) -> Result<(), String> {
        let mut rx = self.shared.durable.subscribe();
        let d = rx
            .wait_for(|d| d.lsn >= lsn || d.broken)
            .await
            .map(|d| *d)
            .unwrap_or(Durable {
                lsn: 0,
                broken: true,
            });
        if d.lsn >= lsn {
            return Ok(());
        }
        let s = self.shared.state.lock().unwrap();
        Err(s.broken.clone().unwrap_or("the journal is closed".into()))
    }

    /// Operation `seq` of segment `seg` was answered: its `DONE` is written (without a sync)
    /// and its segment may go.
    pub fn done(&self, seq: u64, seg: u64, failed: bool) {
        let _ = self.append(&Record::Done { seq, failed }, false);
        let mut s = self.shared.state.lock().unwrap();
        let mut emptied = false;
        if let Some(g) = s.segs.get_mut(&seg) {
            g.live = g.live.saturating_sub(1);
            emptied = g.live == 0;
        }
        if s.collect_deletable() {
            self.shared.work.notify_one();
        }
        // The current segment has nothing left to answer: a writer waiting for room rotates
        // it away (nothing else would wake it when it is the only segment, as in a journal
        // smaller than four segments).
        if emptied && seg == s.cur {
            self.shared.room.notify_waiters();
        }
    }

    /// A write's data, kept only in its segment.
    pub fn read(&self, d: &DiskData) -> std::io::Result<Bytes> {
        let file = {
            let mut r = self.shared.readers.lock().unwrap();
            match r.get(&d.seg) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(self.shared.dir.join(segment_name(d.seg)))?);
                    r.insert(d.seg, f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0; d.len as usize];
        file.read_exact_at(&mut buf, d.pos)?;
        Ok(Bytes::from(buf))
    }

    /// Whether data appended up to `lsn` is in its file (readable).
    pub fn written(&self, lsn: u64) -> bool {
        self.shared.written.load(Ordering::SeqCst) >= lsn
    }

    pub fn stats(&self) -> LogStats {
        let s = self.shared.state.lock().unwrap();
        LogStats {
            bytes: s.total,
            segments: s.segs.len(),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            synced_records: self.shared.synced_records.load(Ordering::Relaxed),
        }
    }

    /// Writes what is appended and stops the committer. With `remove`, every segment goes
    /// (nothing is left to answer).
    pub fn close(&self, remove: bool) {
        {
            let mut s = self.shared.state.lock().unwrap();
            s.closed = true;
            if remove {
                s.pending.clear();
                let all: Vec<u64> = s.segs.keys().copied().collect();
                s.deletes.extend(all);
                s.segs.clear();
            }
        }
        self.shared.work.notify_one();
        self.shared.room.notify_waiters();
        if let Some(t) = self.committer.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close(false);
    }
}

impl State {
    /// Starts a new segment.
    fn rotate(&mut self) {
        self.cur += 1;
        let n = self.cur;
        self.segs.insert(
            n,
            Seg {
                size: MAGIC.len() as u64,
                live: 0,
            },
        );
        self.total += MAGIC.len() as u64;
        self.appended += MAGIC.len() as u64;
        self.pending.push((n, MAGIC.to_vec()));
    }

    /// Marks for deletion the oldest segments with nothing left to answer (never the
    /// current one). Whether there are any.
    fn collect_deletable(&mut self) -> bool {
        let mut any = false;
        while let Some((&n, g)) = self.segs.iter().next() {
            if n == self.cur || g.live > 0 {
                break;
            }
            self.total -= g.size;
            self.segs.remove(&n);
            self.deletes.push(n);
            any = true;
        }
        any
    }
}

fn commit_loop(shared: &Shared) {
    let mut files: BTreeMap<u64, File> = BTreeMap::new();
    loop {
        let (chunks, sync, lsn, deletes, closing) = {
            let mut s = shared.state.lock().unwrap();
            while s.pending.is_empty() && s.deletes.is_empty() && !s.closed {
                s = shared.work.wait(s).unwrap();
            }
            let chunks = std::mem::take(&mut s.pending);
            let sync = std::mem::take(&mut s.needs_sync);
            let deletes = std::mem::take(&mut s.deletes);
            (chunks, sync, s.appended, deletes, s.closed)
        };
        let records = shared.pending_records.swap(0, Ordering::Relaxed);
        match write_chunks(&shared.dir, &mut files, &chunks, sync) {
            Ok(()) => {
                if sync {
                    shared.syncs.fetch_add(1, Ordering::Relaxed);
                    shared.synced_records.fetch_add(records, Ordering::Relaxed);
                }
                shared.written.store(lsn, Ordering::SeqCst);
                shared.durable.send_modify(|d| d.lsn = d.lsn.max(lsn));
            }
            Err(e) => {
                // After a failed write or fsync nothing says what the file holds: no
                // operation may be answered as durable from now on.
                let msg = format!("the journal in {} failed: {e}", shared.dir.display());
                tracing::error!("{msg}; queued operations are refused from now on");
                shared.state.lock().unwrap().broken = Some(msg);
                shared.durable.send_modify(|d| d.broken = true);
                shared.room.notify_waiters();
            }
        }
        if let Some(n) = shared.on_written.lock().unwrap().as_ref() {
            n.notify_one();
        }
        if !deletes.is_empty() {
            for n in &deletes {
                files.remove(n);
                shared.readers.lock().unwrap().remove(n);
                let _ = std::fs::remove_file(shared.dir.join(segment_name(*n)));
            }
            shared.room.notify_waiters();
        }
        // Only the newest segment is appended to.
        while files.len() > 1 {
            files.pop_first();
        }
        if closing && shared.state.lock().unwrap().pending.is_empty() {
            return;
        }
    }
}

fn write_chunks(
    dir: &Path,
    files: &mut BTreeMap<u64, File>,
    chunks: &[(u64, Vec<u8>)],
    sync: bool,
) -> std::io::Result<()> {
    let mut touched = Vec::new();
    for (n, bytes) in chunks {
        if !files.contains_key(n) {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(dir.join(segment_name(*n)))?;
            // The new name must survive a power loss as much as the records in it.
            File::open(dir)?.sync_all()?;
            files.insert(*n, f);
        }
        files.get_mut(n).unwrap().write_all(bytes)?;
        if !touched.contains(n) {
            touched.push(*n);
        }
    }
    if sync {
        for n in touched {
            files[&n].sync_data()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::record::{scan, Base, OpRecord};
    use super::super::Op;
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sftpfs-log-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&d).unwrap();
        d
    }

    fn op(seq: u64, data: &[u8]) -> Record {
        Record::Op(OpRecord {
            seq,
            file: 1,
            time_ns: 0,
            path: b"f".to_vec(),
            base: Base::Unchecked,
            op: Op::Write(seq * 10, Bytes::copy_from_slice(data)),
        })
    }

    fn segments(dir: &Path) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| segment_number(e.unwrap().file_name().to_str()?))
            .collect();
        v.sort();
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_callers_share_fdatasyncs_and_every_record_is_durable_when_told() {
        let dir = tmp();
        let log = Arc::new(Log::start(&dir, 1 << 30, &[]).unwrap());
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50u64 {
                    let a = log.append(&op(t * 1000 + i, b"x"), true).unwrap();
                    log.durable(a.lsn).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let st = log.stats();
        assert_eq!(st.synced_records, 800);
        assert!(
            st.syncs < 800,
            "16 callers at once never shared an fdatasync: {st:?}"
        );
        log.close(false);
        let bytes = std::fs::read(dir.join(segment_name(1))).unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        let s = scan(&bytes, 8, false);
        assert_eq!(s.records.len(), 800);
        assert!(s.cut_at.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_segment_goes_once_all_its_operations_and_those_before_were_answered() {
        let dir = tmp();
        // 4 MiB bound: segments of 1 MiB.
        let log = Log::start(&dir, 4 << 20, &[]).unwrap();
        let big = vec![7u8; 300 << 10];
        let mut placed = Vec::new();
        for i in 0..7 {
            let a = log.append(&op(i, &big), true).unwrap();
            log.durable(a.lsn).await.unwrap();
            placed.push(a);
        }
        let segs: Vec<u64> = placed.iter().map(|a| a.seg).collect();
        assert!(segs.windows(2).all(|w| w[0] <= w[1]));
        assert!(segs.last() > segs.first(), "never rotated: {segs:?}");
        // The data of a write reads back from where the append said.
        let d = DiskData {
            seg: placed[3].seg,
            pos: placed[3].data_at.unwrap(),
            len: big.len() as u32,
            lsn: placed[3].lsn,
        };
        assert_eq!(&log.read(&d).unwrap()[..], &big[..]);
        // Answered out of order: the first segment's last operation comes last.
        let first = segs[0];
        let last_of_first = segs.iter().rposition(|&s| s == first).unwrap();
        for (i, a) in placed.iter().enumerate() {
            if i != last_of_first && a.seg != first {
                log.done(i as u64, a.seg, false);
            }
        }
        let on_disk = || {
            log.append(
                &Record::Done {
                    seq: 0,
                    failed: false,
                },
                true,
            )
            .map(|a| a.lsn)
            .unwrap()
        };
        log.durable(on_disk()).await.unwrap();
        assert!(
            segments(&dir).contains(&first),
            "later segments answered must not take the first"
        );
        for (i, a) in placed.iter().enumerate() {
            if a.seg == first {
                log.done(i as u64, a.seg, false);
            }
        }
        log.durable(on_disk()).await.unwrap();
        // Deleted by the committer after its next write.
        let cur = log.shared.state.lock().unwrap().cur;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while segments(&dir) != vec![cur] {
            assert!(std::time::Instant::now() < deadline, "{:?}", segments(&dir));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        log.close(true);
        assert!(segments(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_full_journal_makes_the_writer_wait_until_a_segment_goes() {
        let dir = tmp();
        let log = Arc::new(Log::start(&dir, 4 << 20, &[]).unwrap());
        let big = vec![1u8; 256 << 10];
        let mut placed = Vec::new();
        while log.stats().bytes + (260 << 10) <= 4 << 20 {
            let a = log.append(&op(placed.len() as u64, &big), true).unwrap();
            placed.push(a);
        }
        let waiting = {
            let log = log.clone();
            tokio::spawn(async move { log.wait_room(260 << 10).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "a full journal took more");
        for (i, a) in placed.iter().enumerate() {
            log.done(i as u64, a.seg, false);
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room never came")
            .unwrap();
        log.close(true);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
