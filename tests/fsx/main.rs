//! A randomized operation test in the style of fsx. Every operation is done twice: through the
//! mount, and on a reference directory on the local disk (ext4 like the server's files). Every
//! answer is compared: return values and errnos, data read, and the stat fields that mean the
//! same on both (type, permission bits, link count, owner, group, size; mtimes as "unchanged"
//! versus "changed to about now"). Data is also checked against an in-memory model, against the
//! server's files after every fsync, and everything at the end. Once on a quiet connection,
//! once with the connections killed every so many operations.
//!
//! The operations: writes, reads, `O_APPEND` writes, truncates (by path and descriptor),
//! fsync, close, whole-file reads through new descriptors, `copy_file_range` (within one file,
//! overlapping or not, across files, past EOF, between hard-linked names), `mmap` writes and
//! reads, `link`, `unlink`, `rename` (over files, across directories, directories), `mkdir`,
//! `rmdir`, `symlink`, `chmod`, `chown`, `utimensat`, `stat`/`fstat` (also of open unlinked
//! files) and `readdir`, on a few names in the mount's root and in two subdirectories. Before a
//! namespace change the parents' mtimes are set to an old time, and checked afterwards; after
//! a change of an inode every name it has is checked.
//!
//! Seeded and reproducible: `FSX_SEED=N` replays a run (`FSX_SEED=random` picks a new seed),
//! `FSX_OPS=N` changes the number of operations, `FSX_SKIP=family,...` switches families of
//! operations or checks off for diagnosis (see [`rng::FAMILIES`]). A failure prints the seed,
//! the operation number and the last operations.

#[path = "../support/mod.rs"]
mod support;

mod check;
mod data;
mod meta;
mod names;
mod regress;
mod rng;
mod sys;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File};
use std::path::PathBuf;
use std::time::Instant;

use rng::{ops_from_env, seed_from_env, skip_from_env, Rng};
use support::*;

/// The names operations pick from: files, symlinks or anything else may live at any of them.
const PATHS: &[&str] = &[
    "a", "b", "c", "l", "d1/a", "d1/b", "d1/l", "d2/a", "d2/c", "d1/x/a",
];
/// Directories (made at the start; `rmdir`, `rename` and `mkdir` change that).
const DIRS: &[&str] = &["d1", "d2", "d1/x"];
/// Files stay below this size (a write may start up to here).
const MAX_SIZE: u64 = 1 << 20;
/// Descriptors kept open at most.
const MAX_OPEN: usize = 6;
/// Operations remembered for the failure report.
const HISTORY: usize = 200;

/// A file open twice: through the mount and in the reference.
pub struct Handle {
    m: File,
    r: File,
    /// The reference's inode number: the key of the model's contents.
    ino: u64,
    append: bool,
    /// The name it was opened by (for messages; it may be renamed or unlinked since).
    name: String,
    /// A number for the history (`h7`).
    id: usize,
}

impl Handle {
    fn label(&self) -> String {
        format!("h{}({})", self.id, self.name)
    }
}

pub struct Fsx<'a> {
    m: &'a Mount<'a>,
    reference: PathBuf,
    rng: Rng,
    seed: u64,
    op: usize,
    /// When the current operation began (mtimes set by it are no earlier).
    t0: i64,
    /// Expected contents of every regular file, by the reference's inode number.
    content: BTreeMap<u64, Vec<u8>>,
    handles: Vec<Handle>,
    next_handle: usize,
    history: VecDeque<String>,
    counts: BTreeMap<&'static str, usize>,
    skip: BTreeSet<String>,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl<'a> Fsx<'a> {
    /// The mount's `rel`.
    fn mp(&self, rel: &str) -> PathBuf {
        self.m.path(rel)
    }

    /// The reference's `rel`.
    fn rp(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.reference.clone()
        } else {
            self.reference.join(rel)
        }
    }

    fn skips(&self, family: &str) -> bool {
        self.skip.contains(family)
    }

    fn note(&mut self, kind: &'static str, what: String) {
        *self.counts.entry(kind).or_default() += 1;
        self.log(what);
    }

    /// A line in the history without counting an operation.
    fn log(&mut self, what: String) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(format!("{:6}: {what}", self.op));
    }

    fn fail(&self, why: String) -> ! {
        let recent: Vec<&str> = self.history.iter().map(|s| s.as_str()).collect();
        panic!(
            "fsx failed at operation {} (seed {}; replay with FSX_SEED={}{}): {why}\nlast \
             operations:\n{}",
            self.op,
            self.seed,
            self.seed,
            if self.skip.is_empty() {
                String::new()
            } else {
                format!(
                    " FSX_SKIP={}",
                    self.skip.iter().cloned().collect::<Vec<_>>().join(",")
                )
            },
            recent.join("\n")
        );
    }

    fn step(&mut self) {
        self.t0 = now();
        match self.rng.below(100) {
            0..=16 => self.write(),
            17..=29 => self.read(),
            30..=33 => self.append(),
            34..=38 => self.truncate(),
            39..=41 => self.fsync(),
            42..=48 => self.close(),
            49..=52 => self.read_fresh(),
            53..=57 => self.stat(),
            58..=63 => self.copy_range(),
            64..=67 => self.mmap(),
            68..=71 => self.link(),
            72..=74 => self.unlink(),
            75..=80 => self.rename(),
            81..=84 => self.create(),
            85..=87 => self.mkdir_rmdir(),
            88..=89 => self.symlink(),
            90..=93 => self.chmod(),
            94..=96 => self.chown(),
            _ => self.utimens(),
        }
        self.gc();
    }
}

/// Runs `ops` operations with `seed`; with `kill_every`, kills the connections serving the
/// mount every that many operations (between two operations; writes may be in flight).
fn run(seed: u64, ops: usize, kill_every: Option<usize>, extra: &[&str], skip: &[&str]) {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    // The reference: a directory on the local disk, removed on drop.
    let reference = TempDir::new("fsx-reference");
    let mut fsx = Fsx {
        m: &m,
        reference: reference.path().to_path_buf(),
        rng: Rng::new(seed),
        seed,
        op: 0,
        t0: now(),
        content: BTreeMap::new(),
        handles: Vec::new(),
        next_handle: 0,
        history: VecDeque::new(),
        counts: BTreeMap::new(),
        skip: skip_from_env(skip),
    };
    eprintln!(
        "fsx: seed {seed}, {ops} operations, kill every {kill_every:?}, skipping {:?}",
        fsx.skip
    );
    for d in DIRS {
        let (a, b) = (sys::mkdir(&fsx.mp(d), 0o755), sys::mkdir(&fsx.rp(d), 0o755));
        fsx.both(&format!("mkdir {d}"), a, b);
    }
    let start = Instant::now();
    let mut kills = 0;
    for i in 0..ops {
        fsx.op = i;
        if kill_every.is_some_and(|k| i > 0 && i % k == 0) {
            let n = s.kill_connections();
            fsx.note("kill", format!("killed {n} sshd processes"));
            kills += 1;
        }
        fsx.step();
    }
    fsx.op = ops;
    fsx.finish();
    eprintln!(
        "fsx: seed {seed}: {ops} operations, {kills} kills, in {:.1} s: {:?}",
        start.elapsed().as_secs_f64(),
        fsx.counts
    );
}

#[test]
fn fsx_random_operations_match_the_model() {
    run(
        seed_from_env(0x5eed_0001),
        ops_from_env(4000),
        None,
        &[],
        &[],
    );
}

#[test]
fn fsx_random_operations_match_the_model_with_connections_killed() {
    run(
        seed_from_env(0x5eed_0002),
        ops_from_env(3000),
        Some(150),
        &[
            "ServerAliveInterval=2",
            "ServerAliveCountMax=2",
            "timeout=10",
        ],
        // A file with no name left cannot be opened again on a new connection (SFTP has
        // only paths), so an open file unlinked or renamed over does not survive a kill.
        &["unlinked"],
    );
}

#[test]
fn fsx_random_operations_match_the_model_with_direct_io_and_sync_writes() {
    // sshfs's direct_io (no page cache: mmap of shared writable maps is refused, as on
    // sshfs) and sshfs_sync (each write acknowledged before it returns).
    run(
        seed_from_env(0x5eed_0003),
        ops_from_env(2000),
        None,
        &["direct_io", "sshfs_sync"],
        &["mmap"],
    );
}

/// `-o async_writes`: creates, writes, closes, attribute changes, mkdir, unlink and rename
/// answered once queued, the rest waiting for the queue; the mount must still answer as the
/// local disk does (it found: an unlinked open file unreadable, a truncate answered before
/// the server refused it, a chown keeping setuid, an O_APPEND write placed at a stale end,
/// a hard link's other name showing old attributes, a setgid bit not passed on by mkdir).
#[test]
fn fsx_random_operations_match_the_model_with_async_writes() {
    run(
        seed_from_env(0x5eed_0004),
        ops_from_env(3000),
        None,
        &["async_writes"],
        &[],
    );
}
