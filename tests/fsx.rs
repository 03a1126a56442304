//! A randomized operation test in the style of fsx: thousands of random writes, truncates,
//! reads, renames, fsyncs, closes and re-opens on a few files in the mount, checked against an
//! in-memory model after every read, against the server's files after every fsync, and at the
//! end. Once on a quiet connection, once with the connections killed every so many operations.
//!
//! Seeded and reproducible: `FSX_SEED=N` replays a run (`FSX_SEED=random` picks a new seed),
//! `FSX_OPS=N` changes the number of operations. A failure prints the seed, the operation
//! number and the last operations.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use support::*;

const NAMES: &[&str] = &["a", "b", "c", "d"];
/// Files stay below this size (a write may start up to here).
const MAX_SIZE: u64 = 1 << 20;
/// Operations remembered for the failure report.
const HISTORY: usize = 40;

/// xorshift64*: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

fn seed_from_env(default: u64) -> u64 {
    match std::env::var("FSX_SEED") {
        Ok(s) if s == "random" => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        Ok(s) => s.parse().expect("FSX_SEED: a number or `random`"),
        Err(_) => default,
    }
}

fn ops_from_env(default: usize) -> usize {
    std::env::var("FSX_OPS")
        .ok()
        .map(|s| s.parse().expect("FSX_OPS: a number"))
        .unwrap_or(default)
}

struct Fsx<'a> {
    m: &'a Mount<'a>,
    rng: Rng,
    seed: u64,
    op: usize,
    /// Expected contents by name: what the server must hold once everything is flushed.
    model: BTreeMap<String, Vec<u8>>,
    /// Descriptors open on the files, by the file's current name.
    open: BTreeMap<String, File>,
    history: VecDeque<String>,
    counts: BTreeMap<&'static str, usize>,
}

impl<'a> Fsx<'a> {
    fn path(&self, name: &str) -> PathBuf {
        self.m.path(name)
    }

    fn note(&mut self, kind: &'static str, what: String) {
        *self.counts.entry(kind).or_default() += 1;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(format!("{:6}: {what}", self.op));
    }

    fn fail(&self, why: String) -> ! {
        let recent: Vec<&str> = self.history.iter().map(|s| s.as_str()).collect();
        panic!(
            "fsx failed at operation {} (seed {}; replay with FSX_SEED={}): {why}\nlast \
             operations:\n{}",
            self.op,
            self.seed,
            self.seed,
            recent.join("\n")
        );
    }

    fn ok<T>(&self, what: &str, r: io::Result<T>) -> T {
        r.unwrap_or_else(|e| self.fail(format!("{what}: {e}")))
    }

    /// The descriptor of `name`, opened read-write (never truncating) if there is none.
    fn handle(&mut self, name: &str) -> &File {
        if !self.open.contains_key(name) {
            let r = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.path(name));
            let f = self.ok(&format!("open {name}"), r);
            self.open.insert(name.to_string(), f);
        }
        &self.open[name]
    }

    fn existing(&mut self) -> Option<String> {
        let names: Vec<&str> = self.model.keys().map(|s| s.as_str()).collect();
        if names.is_empty() {
            None
        } else {
            Some(self.rng.pick(&names).to_string())
        }
    }

    fn compare(&self, what: &str, name: &str, off: u64, got: &[u8], want: &[u8]) {
        if got.len() != want.len() {
            self.fail(format!(
                "{what} of {name} at {off}: {} bytes, expected {}",
                got.len(),
                want.len()
            ));
        }
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            self.fail(format!(
                "{what} of {name} at {off}: byte {} is {:#04x}, expected {:#04x} ({} bytes read)",
                off + i as u64,
                got[i],
                want[i],
                got.len()
            ));
        }
    }

    fn step(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=29 => self.write(),
            30..=54 => self.read(),
            55..=61 => self.truncate(),
            62..=68 => self.rename(),
            69..=73 => self.fsync(),
            74..=83 => self.close(),
            84..=88 => self.read_fresh(),
            89..=91 => self.unlink(),
            _ => self.stat(),
        }
    }

    fn write(&mut self) {
        let name = match self.existing() {
            Some(n) if self.model.len() >= 3 || self.rng.chance(80) => n,
            _ => {
                // A new file: create (O_CREAT|O_TRUNC) through a fresh descriptor.
                let free: Vec<&str> = NAMES
                    .iter()
                    .copied()
                    .filter(|n| !self.model.contains_key(*n))
                    .collect();
                let Some(n) = free.first().map(|s| s.to_string()) else {
                    return self.read();
                };
                let r = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(self.path(&n));
                let f = self.ok(&format!("create {n}"), r);
                self.open.insert(n.clone(), f);
                self.model.insert(n.clone(), Vec::new());
                self.note("create", format!("create {n}"));
                n
            }
        };
        let size = self.model[&name].len() as u64;
        let off = if self.rng.chance(30) {
            size // append
        } else {
            self.rng.below((size + (64 << 10)).min(MAX_SIZE))
        }
        .min(MAX_SIZE - 1);
        // Mostly small; sometimes more than one SFTP write (255 KiB).
        let max_len = if self.rng.chance(10) {
            400 << 10
        } else {
            64 << 10
        };
        let len = 1 + self.rng.below(max_len).min(MAX_SIZE - off - 1);
        let data = random_bytes(len as usize, self.rng.next());
        self.note(
            "write",
            format!("write {name} [{off}, {}) ({len} bytes)", off + len),
        );
        let r = self.handle(&name).write_all_at(&data, off);
        self.ok(&format!("write {name} at {off}"), r);
        let m = self.model.get_mut(&name).unwrap();
        let end = (off + len) as usize;
        if m.len() < end {
            m.resize(end, 0);
        }
        m[off as usize..end].copy_from_slice(&data);
    }

    fn read(&mut self) {
        let Some(name) = self.existing() else {
            return;
        };
        let size = self.model[&name].len() as u64;
        let off = self.rng.below(size + 4096);
        let max_len = if self.rng.chance(20) {
            512 << 10
        } else {
            32 << 10
        };
        let len = 1 + self.rng.below(max_len);
        self.note("read", format!("read {name} [{off}, {})", off + len));
        let mut buf = vec![0u8; len as usize];
        let mut got = 0usize;
        while got < buf.len() {
            let r = self
                .handle(&name)
                .read_at(&mut buf[got..], off + got as u64);
            match self.ok(&format!("read {name} at {off}"), r) {
                0 => break,
                n => got += n,
            }
        }
        let m = &self.model[&name];
        let want = if off >= size {
            &[][..]
        } else {
            &m[off as usize..(off + len).min(size) as usize]
        };
        self.compare("read", &name, off, &buf[..got], want);
    }

    fn truncate(&mut self) {
        let Some(name) = self.existing() else {
            return;
        };
        let size = self.model[&name].len() as u64;
        let to = match self.rng.below(4) {
            0 => 0,
            1 => self.rng.below(size + 1),
            _ => self.rng.below(MAX_SIZE),
        };
        if self.rng.chance(50) {
            self.note("truncate", format!("ftruncate {name} to {to}"));
            let r = self.handle(&name).set_len(to);
            self.ok(&format!("ftruncate {name}"), r);
        } else {
            self.note("truncate", format!("truncate {name} to {to} by path"));
            let c = CString::new(self.path(&name).as_os_str().as_bytes()).unwrap();
            let r = if unsafe { libc::truncate(c.as_ptr(), to as libc::off_t) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            };
            self.ok(&format!("truncate {name}"), r);
        }
        self.model.get_mut(&name).unwrap().resize(to as usize, 0);
    }

    fn rename(&mut self) {
        let Some(from) = self.existing() else {
            return;
        };
        let to = self.rng.pick(NAMES).to_string();
        if to == from {
            return;
        }
        // A replaced file goes away; its descriptor is closed first (an open unlinked file
        // is another test).
        if let Some(f) = self.open.remove(&to) {
            self.note("close", format!("close {to} (rename target)"));
            drop(f);
        }
        let replaced = self.model.contains_key(&to);
        self.note(
            "rename",
            format!(
                "rename {from} -> {to}{}",
                if replaced { " (replacing)" } else { "" }
            ),
        );
        let r = fs::rename(self.path(&from), self.path(&to));
        self.ok(&format!("rename {from} -> {to}"), r);
        let data = self.model.remove(&from).unwrap();
        self.model.insert(to.clone(), data);
        // An open descriptor follows its file.
        if let Some(f) = self.open.remove(&from) {
            self.open.insert(to, f);
        }
    }

    fn fsync(&mut self) {
        let Some(name) = self.existing() else {
            return;
        };
        self.note("fsync", format!("fsync {name}"));
        let r = self.handle(&name).sync_all();
        self.ok(&format!("fsync {name}"), r);
        // After fsync the server holds exactly the model's bytes.
        let server = self.m.remote(&name);
        let got = self.ok(&format!("server read of {name}"), fs::read(server));
        self.compare(
            "server copy after fsync",
            &name,
            0,
            &got,
            &self.model[&name],
        );
    }

    fn close(&mut self) {
        let names: Vec<String> = self.open.keys().cloned().collect();
        if names.is_empty() {
            return;
        }
        let name = names[self.rng.below(names.len() as u64) as usize].clone();
        self.note("close", format!("close {name}"));
        drop(self.open.remove(&name));
    }

    fn read_fresh(&mut self) {
        let Some(name) = self.existing() else {
            return;
        };
        self.note(
            "read_fresh",
            format!("read {name} whole through a new descriptor"),
        );
        let got = self.ok(&format!("read {name}"), fs::read(self.path(&name)));
        self.compare("whole read", &name, 0, &got, &self.model[&name]);
    }

    fn unlink(&mut self) {
        let Some(name) = self.existing() else {
            return;
        };
        if let Some(f) = self.open.remove(&name) {
            drop(f);
        }
        self.note("unlink", format!("unlink {name}"));
        let r = fs::remove_file(self.path(&name));
        self.ok(&format!("unlink {name}"), r);
        self.model.remove(&name);
    }

    fn stat(&mut self) {
        let Some(name) = self.existing() else {
            return;
        };
        self.note("stat", format!("stat {name}"));
        let len = self
            .ok(&format!("stat {name}"), fs::metadata(self.path(&name)))
            .len();
        let want = self.model[&name].len() as u64;
        if len != want {
            self.fail(format!("stat {name}: size {len}, expected {want}"));
        }
    }

    /// Closes everything and compares the server's directory with the model.
    fn finish(&mut self) {
        let names: Vec<String> = self.open.keys().cloned().collect();
        for n in names {
            let f = self.open.remove(&n).unwrap();
            let r = f.sync_all();
            self.ok(&format!("final fsync {n}"), r);
        }
        let mut on_server: Vec<String> = fs::read_dir(self.m.remote(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_server.sort();
        let expected: Vec<String> = self.model.keys().cloned().collect();
        if on_server != expected {
            self.fail(format!(
                "the server has {on_server:?}, the model {expected:?}"
            ));
        }
        for (name, want) in &self.model {
            let got = fs::read(self.m.remote(name)).unwrap();
            self.compare("final server copy", name, 0, &got, want);
            let through = fs::read(self.m.path(name)).unwrap();
            self.compare("final read through the mount", name, 0, &through, want);
        }
    }
}

/// Runs `ops` operations with `seed`; with `kill_every`, kills the connections serving the
/// mount every that many operations (between two operations; writes may be in flight).
fn run(seed: u64, ops: usize, kill_every: Option<usize>, extra: &[&str]) {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    let mut fsx = Fsx {
        m: &m,
        rng: Rng::new(seed),
        seed,
        op: 0,
        model: BTreeMap::new(),
        open: BTreeMap::new(),
        history: VecDeque::new(),
        counts: BTreeMap::new(),
    };
    eprintln!("fsx: seed {seed}, {ops} operations, kill every {kill_every:?}");
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
    run(seed_from_env(0x5eed_0001), ops_from_env(4000), None, &[]);
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
    );
}

/// Found by the fsx test (seed 0x5eed0001, operation 19): bytes written through one
/// descriptor and not yet flushed must be seen by a read through a second descriptor opened
/// afterwards (POSIX: a read after a write returns the new data, whatever the descriptor).
#[test]
fn a_second_descriptor_sees_unflushed_writes_of_the_first() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &[]);
    for round in 0..20 {
        let name = format!("f{round}");
        let data = random_bytes(61530 + round * 1000, round as u64);
        let w = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.path(&name))
            .unwrap();
        w.write_all_at(&data, 0).unwrap();
        let got = fs::read(m.path(&name)).unwrap();
        assert_eq!(
            got.len(),
            data.len(),
            "round {round}: a new descriptor read {} bytes of the {} written (not yet closed)",
            got.len(),
            data.len()
        );
        assert!(got == data, "round {round}: wrong bytes");
        let size = fs::metadata(m.path(&name)).unwrap().len();
        assert_eq!(size, data.len() as u64, "round {round}: stat size");
        drop(w);
    }
}

/// Found by the fsx test: `stat` right after a write that grew the file (not yet flushed)
/// must report the new size; a stale size from the server would also cut later reads short.
#[test]
fn stat_after_an_unflushed_write_reports_the_new_size() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &[]);
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(m.path("grow"))
            .unwrap()
    };
    let mut f = open();
    let mut size = 0u64;
    for round in 0..300u64 {
        if round % 2 == 1 {
            // Closed and opened again: the open fetches the server's attributes.
            drop(f);
            f = open();
        }
        let data = random_bytes(10000 + (round as usize * 997) % 50000, round);
        f.write_all_at(&data, size).unwrap();
        size += data.len() as u64;
        let by_path = fs::metadata(m.path("grow")).unwrap().len();
        let by_fd = f.metadata().unwrap().len();
        assert_eq!(by_path, size, "round {round}: stat by path after a write");
        assert_eq!(by_fd, size, "round {round}: fstat after a write");
    }
    f.sync_all().unwrap();
    assert_eq!(fs::metadata(m.remote("grow")).unwrap().len(), size);
}
