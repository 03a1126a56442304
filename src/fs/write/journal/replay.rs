//! Replay of a journal left behind (a killed daemon, a crash, a power loss), at the next
//! mount of the same source before it serves anything, or by `sftpfs replay`.
//!
//! The segments are read in order, each record checked; a torn or damaged tail is cut there
//! and reported, a file that is no segment is set aside, and every complete record before
//! the damage is kept. What to send: every operation without a `DONE`, less those an
//! answered operation depended on (it went only after they were answered). A file's writes
//! are sent again from its first unanswered one on, in order, so that what overlaps lands
//! as it did; a file whose OPEN was answered is opened again first (`Op::Resume`), if the
//! server's size is what its answered writes made it: a half-sent file resumes where the
//! server's copy ends. Everything goes through the same queue as a live mount's, pipelined,
//! and each kind of operation is safe to send again (`dispatch.rs` recognises one done
//! already); a target someone else changed meanwhile is a conflict (`conflict.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::directory::JournalDir;
use super::dispatch::Outcome;
use super::log::{segment_name, DiskData};
use super::order::{Node, Order};
use super::record::{scan, Base, OpRecord, Record, MAGIC};
use super::{Diversion, Entry, JFile, Journal, Op, Picked, WriteData};
use crate::fs::names::inode::RelPath;
use crate::fs::Filesystem;
use crate::remote::protocol::*;
use crate::remote::{Attrs, Conn, RemoteError};

/// What a replay did, by outcome.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub sent: u64,
    pub already: u64,
    pub conflicts: u64,
    pub failed: u64,
}

/// One operation replay queues.
#[derive(Debug, Clone)]
struct Planned {
    seq: u64,
    /// Its segment, which it keeps until answered (`None`: made up by replay).
    seg: Option<u64>,
    file: u64,
    time_ns: u64,
    path: RelPath,
    base: Base,
    op: Op,
    disk: Option<DiskData>,
    only_if_diverted: bool,
}

/// A journal as found on disk.
#[derive(Debug, Default)]
pub struct Loaded {
    /// (number, size, operations in it still to answer), oldest first.
    pub segments: Vec<(u64, u64, u64)>,
    pub next_seq: u64,
    pub next_file: u64,
    /// What was cut or set aside, one line each.
    pub damage: Vec<String>,
    plan: Vec<Planned>,
    conflicts: Vec<Diversion>,
    /// Operations found, and of them answered before.
    pub found: usize,
    pub answered: usize,
}

impl Loaded {
    /// Operations replay will send (or check).
    pub fn pending(&self) -> usize {
        self.plan
            .iter()
            .filter(|p| !p.only_if_diverted && p.seg.is_some())
            .count()
    }
}

/// An operation's record as found: its segment, the record, and where its data is.
type Found = (u64, OpRecord, Option<(u64, u32)>);

fn node_of(r: &OpRecord) -> Node {
    let mut paths = vec![r.path.clone()];
    if let Op::Rename(to) = &r.op {
        paths.push(to.clone());
    }
    Node {
        file: (r.file != 0).then_some(r.file),
        opens: matches!(r.op, Op::Open { .. }),
        closes: matches!(r.op, Op::Close),
        paths,
    }
}

/// Reads the journal in `dir`: what is left to send, and what was damaged (set aside).
pub fn load(dir: &JournalDir) -> Loaded {
    load_with(dir, true)
}

/// [`load`], changing nothing in `dir` (`sftpfs replay --dry-run`).
pub fn load_untouched(dir: &JournalDir) -> Loaded {
    load_with(dir, false)
}

fn load_with(dir: &JournalDir, tidy: bool) -> Loaded {
    let mut out = Loaded::default();
    let mut ops: BTreeMap<u64, Found> = BTreeMap::new();
    let mut done: HashSet<u64> = HashSet::new();
    let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut max_seq = 0;
    let mut max_file = 0;
    for n in dir.segments() {
        let name = segment_name(n);
        let bytes = match std::fs::read(dir.path.join(&name)) {
            Ok(b) => b,
            Err(e) => {
                out.damage
                    .push(format!("{name}: cannot be read ({e}); left as it is"));
                continue;
            }
        };
        if bytes.is_empty() {
            // Made, and the daemon gone before its first bytes: nothing in it.
            if tidy {
                let _ = std::fs::remove_file(dir.path.join(&name));
            }
            continue;
        }
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            if tidy {
                let aside = dir.set_aside(&name);
                out.damage.push(format!(
                    "{name}: not a journal segment; set aside as {}",
                    aside.display()
                ));
            } else {
                out.damage.push(format!("{name}: not a journal segment"));
            }
            continue;
        }
        let s = scan(&bytes, MAGIC.len(), false);
        if let Some((at, len)) = s.cut_at {
            out.damage.push(format!(
                "{name}: {len} bytes from offset {at} cut (a record torn or damaged, as after \
                 a power loss); the {} records before were kept",
                s.records.len()
            ));
        }
        sizes.insert(n, bytes.len() as u64);
        for found in s.records {
            match found.record {
                Record::Op(r) => {
                    max_seq = max_seq.max(r.seq);
                    max_file = max_file.max(r.file);
                    ops.insert(r.seq, (n, r, found.data));
                }
                Record::Done { seq, .. } => {
                    max_seq = max_seq.max(seq);
                    done.insert(seq);
                }
                Record::Conflict {
                    seq,
                    mark,
                    from,
                    to,
                } => {
                    max_seq = max_seq.max(seq).max(mark.saturating_sub(1));
                    out.conflicts.push(Diversion {
                        from,
                        to,
                        seq,
                        mark,
                    });
                }
            }
        }
    }
    out.next_seq = max_seq + 1;
    out.next_file = max_file;
    out.found = ops.len();

    // An answered operation was sent only after those it depended on were answered: they
    // are answered too, whether or not their DONE made it to the disk.
    let mut order = Order::default();
    let mut blockers: HashMap<u64, Vec<u64>> = HashMap::new();
    for (&seq, (_, r, _)) in &ops {
        let node = node_of(r);
        blockers.insert(seq, order.blockers(&node).into_iter().collect());
        order.insert(seq, node);
    }
    let mut answered: HashSet<u64> = done
        .iter()
        .copied()
        .filter(|s| ops.contains_key(s))
        .collect();
    for &seq in ops.keys().rev() {
        if answered.contains(&seq) {
            for &b in &blockers[&seq] {
                answered.insert(b);
            }
        }
    }
    out.answered = answered.len();

    let disk_of = |seg: u64, data: Option<(u64, u32)>| {
        data.map(|(pos, len)| DiskData {
            seg,
            pos,
            len,
            lsn: 0,
        })
    };
    let planned = |seq: u64, only_if_diverted: bool| {
        let (seg, r, data) = &ops[&seq];
        Planned {
            seq,
            seg: Some(*seg),
            file: r.file,
            time_ns: r.time_ns,
            path: r.path.clone(),
            base: r.base,
            op: r.op.clone(),
            disk: disk_of(*seg, *data),
            only_if_diverted,
        }
    };
    let mut plan: Vec<(u64, u8, Planned)> = Vec::new();
    let mut files: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (&seq, (_, r, _)) in &ops {
        if r.file != 0 {
            files.entry(r.file).or_default().push(seq);
        } else if !answered.contains(&seq) {
            plan.push((seq, 1, planned(seq, false)));
        }
    }
    for seqs in files.values() {
        if seqs.iter().all(|s| answered.contains(s)) {
            continue;
        }
        let open = seqs.iter().find(|s| matches!(ops[s].1.op, Op::Open { .. }));
        if open.is_some_and(|s| !answered.contains(s)) {
            // Not opened yet: all of it goes, as queued.
            for &s in seqs {
                plan.push((s, 1, planned(s, false)));
            }
            continue;
        }
        // Opened before the restart: its writes from the first unanswered one on go
        // again; the answered ones before are kept for a conflict copy.
        let mut again = false;
        let (mut done_end, mut total_end) = (0, 0);
        let mut mine = Vec::new();
        for &s in seqs {
            let r = &ops[&s].1;
            match &r.op {
                Op::Open { .. } => continue,
                Op::Write(..) | Op::FSetStat(_) => {
                    again |= !answered.contains(&s);
                    if let (Op::Write(off, _), Some((_, len))) = (&r.op, ops[&s].2) {
                        total_end = total_end.max(off + len as u64);
                        if !again {
                            done_end = done_end.max(off + len as u64);
                        }
                    }
                    mine.push(planned(s, !again));
                }
                _ => mine.push(planned(s, false)),
            }
        }
        let first = &mine[0];
        plan.push((
            first.seq,
            0,
            Planned {
                seg: None,
                op: Op::Resume {
                    done_end,
                    total_end,
                },
                disk: None,
                only_if_diverted: false,
                ..first.clone()
            },
        ));
        for p in mine {
            plan.push((p.seq, 1, p));
        }
    }
    plan.sort_by_key(|(seq, rank, _)| (*seq, *rank));
    out.plan = plan.into_iter().map(|(_, _, p)| p).collect();
    let mut live: BTreeMap<u64, u64> = BTreeMap::new();
    for p in &out.plan {
        if let Some(seg) = p.seg {
            *live.entry(seg).or_default() += 1;
        }
    }
    out.segments = sizes
        .into_iter()
        .map(|(n, size)| (n, size, live.get(&n).copied().unwrap_or(0)))
        .collect();
    out
}

impl Journal {
    /// Replay's word on one operation it sent.
    pub(super) fn replayed(&self, p: &Picked, r: &Result<Outcome, RemoteError>) {
        let mut s = self.state.lock().unwrap();
        let what = match r {
            Ok(Outcome::Skipped) => return,
            Ok(Outcome::Sent) => {
                s.replay_counts.sent += 1;
                "sent".to_string()
            }
            Ok(Outcome::AlreadyThere) => {
                s.replay_counts.already += 1;
                "already there".to_string()
            }
            Ok(Outcome::Conflict(Some(to))) => {
                s.replay_counts.conflicts += 1;
                format!(
                    "conflict (the server's version stays; this mount's is {})",
                    String::from_utf8_lossy(to)
                )
            }
            Ok(Outcome::Conflict(None)) => {
                s.replay_counts.conflicts += 1;
                "conflict (the server's version stays; not done)".to_string()
            }
            Err(e) => {
                s.replay_counts.failed += 1;
                format!("failed ({e})")
            }
        };
        if let Some(lines) = s.replay_lines.as_mut() {
            lines.push(format!(
                "{what}: {}{} {}",
                p.op.name(),
                match &p.op {
                    Op::Write(off, d) => format!(" of {} bytes at {off}", d.len()),
                    _ => String::new(),
                },
                String::from_utf8_lossy(&p.path)
            ));
        }
    }
}

impl JFile {
    fn replayed(id: u64, ino: u64, path: &[u8]) -> JFile {
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
            from_replay: true,
            diverted: Mutex::new(None),
            closing: AtomicBool::new(false),
            verify: Mutex::new(None),
        }
    }
}

impl Filesystem {
    /// Sends what the journal left behind held, and waits until all of it was answered
    /// (however long the server is away). With `lines`, one line per operation comes back
    /// (for `sftpfs replay`).
    pub async fn replay(self: &Arc<Self>, lines: bool) -> (Counts, Vec<String>) {
        let Some(j) = self.journal() else {
            return Default::default();
        };
        let Some(loaded) = j.loaded.lock().unwrap().take() else {
            return Default::default();
        };
        for d in &loaded.damage {
            tracing::warn!("journal {}: {d}", j.path.display());
        }
        if loaded.plan.is_empty() {
            return Default::default();
        }
        tracing::info!(
            "replaying the journal {} left by an earlier mount: {} operations to send ({} of \
             {} found were answered before)",
            j.path.display(),
            loaded.pending(),
            loaded.answered,
            loaded.found
        );
        {
            let mut s = j.state.lock().unwrap();
            if lines {
                s.replay_lines = Some(Vec::new());
            }
            s.diversions.extend(loaded.conflicts.iter().cloned());
            let mut files: HashMap<u64, Arc<JFile>> = HashMap::new();
            for p in loaded.plan {
                let file = (p.file != 0).then(|| {
                    files
                        .entry(p.file)
                        .or_insert_with(|| {
                            let ino = self.inodes.lock().unwrap().ino_for(&p.path);
                            Arc::new(JFile::replayed(p.file, ino, &p.path))
                        })
                        .clone()
                });
                let e = Entry {
                    seq: p.seq,
                    seg: p.seg,
                    op: p.op,
                    disk: p.disk,
                    path: p.path,
                    file,
                    base: p.base,
                    time: SystemTime::UNIX_EPOCH + Duration::from_nanos(p.time_ns),
                    seen: None,
                    running: false,
                    only_if_diverted: p.only_if_diverted,
                    replayed: true,
                    _room: None,
                    bytes: None,
                    change: None,
                };
                s.queued_bytes += e.data_len();
                let key = s.next_key;
                s.next_key += 1;
                s.order.insert(key, e.node());
                s.ops.insert(key, e);
            }
        }
        self.start_dispatcher();
        j.wake.notify_one();
        j.drain().await;
        let mut s = j.state.lock().unwrap();
        let c = s.replay_counts;
        tracing::info!(
            "replay done: {} sent, {} already on the server, {} conflicts, {} failed",
            c.sent,
            c.already,
            c.conflicts,
            c.failed
        );
        (c, s.replay_lines.take().unwrap_or_default())
    }

    /// `sftpfs replay --dry-run`: what replay would do with `loaded`, asked of the server
    /// without changing anything there or in the journal. One line per operation.
    pub async fn replay_dry_run(&self, dir: &Path, loaded: &Loaded) -> Vec<String> {
        let c = match self.pool.any().await {
            Ok(c) => c,
            Err(e) => return vec![format!("cannot reach the server: {e}")],
        };
        let mut lines = Vec::new();
        for batch in loaded.plan.chunks(64) {
            let checks = batch.iter().map(|p| self.dry_check(&c, dir, loaded, p));
            for (p, verdict) in batch.iter().zip(futures::future::join_all(checks).await) {
                let Some(verdict) = verdict else { continue };
                lines.push(format!(
                    "{verdict}: {}{} {}",
                    p.op.name(),
                    match (&p.op, p.disk) {
                        (Op::Write(off, _), Some(d)) => format!(" of {} bytes at {off}", d.len),
                        _ => String::new(),
                    },
                    String::from_utf8_lossy(&p.path)
                ));
            }
        }
        lines
    }

    async fn dry_check(
        &self,
        c: &Arc<Conn>,
        dir: &Path,
        loaded: &Loaded,
        p: &Planned,
    ) -> Option<String> {
        if p.only_if_diverted {
            return None;
        }
        let st = |rel: &[u8]| {
            let r = self.remote(rel);
            async move { c.sftp.lstat(&r).await.ok() }
        };
        let verdict = match &p.op {
            Op::Open { .. } => match st(&p.path).await {
                None => "would send".into(),
                Some(there) => {
                    let writes: Vec<(u64, u64, WriteData)> = (loaded.plan.iter())
                        .filter(|q| q.file == p.file)
                        .filter_map(|q| match (&q.op, q.disk) {
                            (Op::Write(off, _), Some(d)) => {
                                Some((*off, d.len as u64, WriteData::Disk(d)))
                            }
                            _ => None,
                        })
                        .collect();
                    let read = |d: &WriteData, skip: u64, len: u64| match d {
                        WriteData::Disk(d) => read_segment(dir, d, skip, len),
                        WriteData::Mem(b) => Some(b.slice(skip as usize..(skip + len) as usize)),
                    };
                    if self
                        .server_holds_prefix(c, &self.remote(&p.path), &there, &writes, &read)
                        .await
                    {
                        "already there (its answer was lost; written again)".into()
                    } else {
                        "conflict (someone else's file is there: this mount's would go beside it)"
                            .into()
                    }
                }
            },
            Op::Resume {
                done_end,
                total_end,
            } => match st(&p.path).await.and_then(|a| a.size) {
                Some(s) if *done_end <= s && s <= (*total_end).max(*done_end) => {
                    format!("would resume at byte {done_end} of {total_end}")
                }
                s => format!(
                    "conflict (the server's file is {}, not as this mount left it)",
                    s.map_or("gone".into(), |s| format!("{s} bytes"))
                ),
            },
            Op::Mkdir(_) if st(&p.path).await.is_some_and(|a| a.is_dir()) => "already there".into(),
            Op::Remove | Op::Rmdir => match (st(&p.path).await, p.base) {
                (None, _) => "already there".into(),
                (Some(a), Base::Seen { size, mtime })
                    if a.size != Some(size) || a.atime_mtime.map(|t| t.1) != Some(mtime) =>
                {
                    "conflict (changed on the server since this mount saw it)".into()
                }
                _ => "would send".into(),
            },
            Op::Rename(to) => {
                let (from_there, to_there) = (st(&p.path).await, st(to).await);
                match (from_there, &to_there, p.base) {
                    (None, Some(_), _) => "already there".into(),
                    (_, None, Base::Seen { .. }) | (_, Some(_), Base::Absent) => {
                        "conflict (the target changed on the server)".into()
                    }
                    (_, Some(a), Base::Seen { size, mtime })
                        if a.size != Some(size) || a.atime_mtime.map(|t| t.1) != Some(mtime) =>
                    {
                        "conflict (the target changed on the server)".into()
                    }
                    _ => "would send".into(),
                }
            }
            _ => "would send".into(),
        };
        Some(verdict)
    }

    /// Whether the server's file at `remote` (`there`) holds only a start of what `writes`
    /// make: nothing of anyone else's would be lost by writing ours over it.
    pub(super) async fn server_holds_prefix(
        &self,
        c: &Arc<Conn>,
        remote: &[u8],
        there: &Attrs,
        writes: &[(u64, u64, WriteData)],
        read: &(dyn Fn(&WriteData, u64, u64) -> Option<Bytes> + Sync),
    ) -> bool {
        let Some(size) = there.size else {
            return false;
        };
        let ours_end = writes.iter().map(|w| w.0 + w.1).max().unwrap_or(0);
        if there.is_dir() || size > ours_end {
            return false;
        }
        if size == 0 {
            return true;
        }
        let Ok(h) = c.sftp.open(remote, SSH_FXF_READ, &Attrs::default()).await else {
            return false;
        };
        let chunk = c.sftp.limits().max_read.clamp(4096, 256 << 10) as u64;
        let mut at = 0;
        let mut same = true;
        while at < size && same {
            let n = chunk.min(size - at);
            let got = match c.sftp.read(&h, at, n as u32).await {
                Ok(b) if !b.is_empty() => b,
                _ => {
                    same = false;
                    break;
                }
            };
            let mut want = vec![0u8; got.len()];
            let end = at + got.len() as u64;
            for (off, len, data) in writes {
                let (a, b) = ((*off).max(at), (off + len).min(end));
                if a >= b {
                    continue;
                }
                match read(data, a - off, b - a) {
                    Some(bytes) => {
                        want[(a - at) as usize..(b - at) as usize].copy_from_slice(&bytes)
                    }
                    None => same = false,
                }
            }
            same &= want[..] == got[..];
            at = end;
        }
        c.sftp.close_nowait(&h);
        same
    }
}

/// `len` bytes of a write's data from `skip` on, read from its segment in `dir`.
fn read_segment(dir: &Path, d: &DiskData, skip: u64, len: u64) -> Option<Bytes> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(dir.join(segment_name(d.seg))).ok()?;
    let mut buf = vec![0; len as usize];
    f.read_exact_at(&mut buf, d.pos + skip).ok()?;
    Some(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::super::directory::Source;
    use super::super::log::Log;
    use super::*;

    fn tmp() -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "sftpfs-replay-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ))
    }

    fn rec(seq: u64, file: u64, path: &str, op: Op) -> Record {
        Record::Op(OpRecord {
            seq,
            file,
            time_ns: 0,
            path: path.as_bytes().to_vec(),
            base: Base::Unchecked,
            op,
        })
    }

    fn write(off: u64, n: usize) -> Op {
        Op::Write(off, Bytes::from(vec![b'x'; n]))
    }

    /// Writes `records` through a log (as a mount does) into a fresh journal directory,
    /// then loads it.
    fn journal_of(records: &[Record]) -> (JournalDir, Loaded, std::path::PathBuf) {
        let base = tmp();
        let src = Source {
            user: "u".into(),
            host: "h".into(),
            port: 1,
            dir: b"/d".to_vec(),
        };
        let dir = JournalDir::open(&base, &src).unwrap();
        {
            let log = Log::start(&dir.path, 1 << 30, &[]).unwrap();
            for r in records {
                log.append(r, matches!(r, Record::Op(_))).unwrap();
            }
            log.close(false);
        }
        let loaded = load(&dir);
        (dir, loaded, base)
    }

    fn planned(l: &Loaded) -> Vec<(u64, &'static str, bool)> {
        l.plan
            .iter()
            .map(|p| (p.seq, p.op.name(), p.only_if_diverted))
            .collect()
    }

    #[test]
    fn what_an_answered_operation_depended_on_is_not_sent_again() {
        let (_d, l, base) = journal_of(&[
            rec(1, 0, "a", Op::Mkdir(Attrs::default())),
            rec(2, 0, "a/b", Op::Mkdir(Attrs::default())),
            rec(3, 0, "c", Op::Mkdir(Attrs::default())),
            rec(4, 0, "a/b", Op::SetStat(Attrs::default())),
            // Only the last one's DONE made it: 1 and 2 came before it by name.
            Record::Done {
                seq: 4,
                failed: false,
            },
        ]);
        assert_eq!(planned(&l), vec![(3, "mkdir", false)]);
        assert_eq!(l.answered, 3);
        assert_eq!(l.next_seq, 5);
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_file_opened_before_resumes_at_its_first_unanswered_write() {
        let (_d, l, base) = journal_of(&[
            rec(
                1,
                7,
                "big",
                Op::Open {
                    pflags: 0x1a,
                    attrs: Attrs::default(),
                },
            ),
            rec(2, 7, "big", write(0, 100)),
            rec(3, 7, "big", write(100, 100)),
            rec(4, 7, "big", write(200, 100)),
            rec(5, 7, "big", write(300, 100)),
            rec(6, 7, "big", Op::Close),
            Record::Done {
                seq: 2,
                failed: false,
            },
            Record::Done {
                seq: 3,
                failed: false,
            },
            // Answered out of order: 5 goes again with 4, after it.
            Record::Done {
                seq: 5,
                failed: false,
            },
        ]);
        assert_eq!(
            planned(&l),
            vec![
                (2, "reopen", false),
                (2, "write", true),
                (3, "write", true),
                (4, "write", false),
                (5, "write", false),
                (6, "close", false),
            ]
        );
        match &l.plan[0].op {
            Op::Resume {
                done_end,
                total_end,
            } => assert_eq!((*done_end, *total_end), (200, 400)),
            op => panic!("{op:?}"),
        }
        // The write's data is read back from its segment.
        let d = l.plan[3].disk.unwrap();
        assert_eq!(d.len, 100);
        assert_eq!(
            read_segment(&_d.path, &d, 0, 100).unwrap(),
            Bytes::from(vec![b'x'; 100])
        );
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_file_whose_open_was_not_answered_goes_whole_and_a_closed_one_not_at_all() {
        let (_d, l, base) = journal_of(&[
            rec(
                1,
                1,
                "f",
                Op::Open {
                    pflags: 0x1a,
                    attrs: Attrs::default(),
                },
            ),
            rec(2, 1, "f", write(0, 10)),
            rec(3, 1, "f", Op::Close),
            rec(
                4,
                2,
                "g",
                Op::Open {
                    pflags: 0x1a,
                    attrs: Attrs::default(),
                },
            ),
            rec(5, 2, "g", write(0, 10)),
            rec(6, 2, "g", Op::Close),
            Record::Done {
                seq: 3,
                failed: false,
            },
        ]);
        assert_eq!(
            planned(&l),
            vec![
                (4, "create", false),
                (5, "write", false),
                (6, "close", false)
            ]
        );
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_torn_last_record_is_cut_and_reported_and_a_foreign_file_set_aside() {
        let (d, _, base) = journal_of(&[
            rec(1, 0, "a", Op::Mkdir(Attrs::default())),
            rec(2, 0, "b", Op::Mkdir(Attrs::default())),
        ]);
        let seg = d.path.join(segment_name(1));
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 3).unwrap();
        std::fs::write(d.path.join(segment_name(2)), b"garbage, not a segment").unwrap();
        let l = load(&d);
        assert_eq!(planned(&l), vec![(1, "mkdir", false)]);
        assert_eq!(l.damage.len(), 2, "{:?}", l.damage);
        assert!(l.damage[0].contains("cut"), "{:?}", l.damage);
        assert!(l.damage[1].contains("set aside"), "{:?}", l.damage);
        assert!(d.path.join("00000002.seg.corrupt").exists());
        assert!(!d.path.join(segment_name(2)).exists());
        std::fs::remove_dir_all(base).unwrap();
    }
}
