//! Sequential throughput against every SFTP server of `other_servers.rs` (issue 11), sftpfs
//! beside sshfs: each server is mounted by both tools in the same run, and each tool writes a
//! new 256 MiB file through its mount and reads a 256 MiB file made on the server's side.
//! Ignored by default (minutes of work, and meaningful only on a quiet machine with a release
//! binary): `bench/servers` builds the release binary and runs it, see `bench/README.md`.
//!
//! What is timed, each on a fresh mount, after `sync` and `echo 3 > /proc/sys/vm/drop_caches`
//! (the server's files are on this machine's disk, so the server reads from disk too):
//!
//! - **write**: `open(O_CREAT|O_EXCL)` of a new file in the mount, 256 writes of 1 MiB (one
//!   random buffer), `close()`; the clock stops when `close` has returned *and* the file on
//!   the server's disk has its full size (rclone writes the end of a file after answering
//!   CLOSE). No fsync. Untimed afterwards: the server's copy is compared with the data.
//!   Every write goes to a new file (rclone without its VFS cache cannot write into an
//!   existing one).
//! - **read**: a 256 MiB file of random data, made on the server's side before the mounts, read
//!   through the mount with a 1 MiB buffer until EOF; the byte count is checked.
//!
//! Each cell is the best of `SFTPFS_BENCH_RUNS` runs (2); within a run the tools take turns
//! (sshfs first), so a drift of the machine affects both. Both tools get the same options as in
//! `other_servers.rs`: identity, known_hosts, `StrictHostKeyChecking=yes`, `BatchMode=yes`,
//! `no_contain_symlinks`.
//!
//! The sftpfs binary is the harness's (`SFTPFS_TEST_BIN`, which `bench/servers` points at
//! `target/release/sftpfs`); sshfs is `SFTPFS_BENCH_SSHFS` (`/usr/bin/sshfs`). Afterwards one
//! more, untimed, sftpfs mount per server with `-o debug` shows what sftpfs learned of the
//! server (its extensions, the request sizes): those lines follow the table.
//!
//! Environment: `SFTPFS_BENCH_MB` (256), `SFTPFS_BENCH_RUNS` (2), `SFTPFS_BENCH_SERVERS`
//! (comma-separated names, default all), `SFTPFS_BENCH_SSHFS`, `SFTPFS_BENCH_TABLE=FILE` (the
//! table and the notes are also written there), `SFTPFS_BENCH_SFTPFS_OPTS=a,b` (`-o a,b` for
//! the sftpfs mounts only, to try a setting; `SFTPFS_TEST_OPTS` goes to both tools).
//!
//! Each run also reports the CPU time used meanwhile by the client's processes (the sftpfs
//! daemon; sshfs and its ssh) and by the server's (the listening process and its sessions):
//! on a small machine a loopback transfer is CPU-bound, and this shows on which side.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::*;

const MIB: usize = 1024 * 1024;
/// The size of one write(2) or read(2) through the mount.
const BUF: usize = MIB;
/// How long one timed operation may take before it counts as failed.
const OP_DEADLINE: Duration = Duration::from_secs(300);
/// How long the server's file may take to reach its full size after `close` returned.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// The mounted directory, under the server's home.
const DIR: &str = "bench";
/// The file the read runs read, in [`DIR`].
const BIG: &str = "big";

const SERVERS: &[&str] = &[
    "openssh",
    "dropbear",
    "proftpd",
    "proftpd-noext",
    "rclone",
    "asyncssh",
    "gesftpserver",
];

fn env_num(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name} must be a positive integer, not {v:?}")),
        _ => default,
    }
}

/// A running server, whichever implementation.
enum Srv {
    OpenSsh(Sshd),
    Other(Server),
}

impl Srv {
    fn start(name: &str) -> Srv {
        match name {
            "openssh" => Srv::OpenSsh(Sshd::start()),
            "dropbear" => Srv::Other(Server::dropbear()),
            "proftpd" => Srv::Other(Server::proftpd(true)),
            "proftpd-noext" => Srv::Other(Server::proftpd(false)),
            "rclone" => Srv::Other(Server::rclone()),
            "asyncssh" => Srv::Other(Server::asyncssh()),
            "gesftpserver" => Srv::Other(Server::gesftpserver()),
            other => panic!("unknown server {other:?}; known: {}", SERVERS.join(", ")),
        }
    }

    /// The temp dir: logs and mountpoints.
    fn dir(&self) -> &Path {
        match self {
            Srv::OpenSsh(s) => &s.dir,
            Srv::Other(s) => &s.dir,
        }
    }

    /// Server-side `rel` under the server's home.
    fn remote(&self, rel: &str) -> PathBuf {
        match self {
            Srv::OpenSsh(s) => s.remote(rel),
            Srv::Other(s) => s.remote(rel),
        }
    }

    fn mountpoint(&self) -> PathBuf {
        match self {
            Srv::OpenSsh(s) => s.mountpoint(),
            Srv::Other(s) => s.mountpoint(),
        }
    }

    fn mount_args(&self, mnt: &Path, extra: &[&str]) -> Vec<OsString> {
        match self {
            Srv::OpenSsh(s) => s.mount_args(DIR, mnt, extra),
            Srv::Other(s) => s.mount_args(DIR, mnt, extra),
        }
    }

    /// The listening server process (its sessions are its descendants).
    fn pid(&self) -> Option<i32> {
        match self {
            Srv::OpenSsh(s) => Some(s.pid()),
            Srv::Other(s) => s.pid(),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Srv::OpenSsh(s) => s.port,
            Srv::Other(s) => s.port,
        }
    }

    fn log_text(&self) -> String {
        match self {
            Srv::OpenSsh(s) => fs::read_to_string(&s.log).unwrap_or_default(),
            Srv::Other(s) => s.log_text(),
        }
    }

    /// Mounts [`DIR`] with `bin` in the foreground, the options of `other_servers.rs` plus
    /// `extra`.
    fn mount(&self, bin: &Path, extra: &[&str]) -> Result<Mount<'_>, String> {
        let mnt = self.mountpoint();
        let mut cmd = Command::new(bin);
        cmd.env("HOME", self.dir())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_AGENT_PID")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .args(self.mount_args(&mnt, extra))
            .arg("-f");
        Mount::spawn_in(self.dir(), cmd, mnt, self.remote(DIR))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Sshfs,
    Sftpfs,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Sshfs => "sshfs",
            Tool::Sftpfs => "sftpfs",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Write,
    Read,
}

/// `sync`, then drop the page cache, dentries and inodes (no mount of ours is live then).
fn drop_caches() {
    unsafe { libc::sync() };
    fs::write("/proc/sys/vm/drop_caches", "3\n").expect("write /proc/sys/vm/drop_caches");
}

/// Runs `f` in a thread; its error, or a timeout, as `Err`. A thread still stuck in the mount
/// at the deadline is freed when the caller drops the mount.
fn with_deadline(
    f: impl FnOnce() -> Result<Duration, String> + Send + 'static,
) -> Result<Duration, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(OP_DEADLINE)
        .unwrap_or_else(|_| Err(format!("no result after {OP_DEADLINE:?}")))
}

/// The timed write: a new file `mnt_file`, `data` in [`BUF`] writes, close, then until
/// `server_file` has the full size.
fn timed_write(
    mnt_file: PathBuf,
    server_file: PathBuf,
    data: Arc<Vec<u8>>,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&mnt_file)
        .map_err(|e| format!("create {}: {e}", mnt_file.display()))?;
    for chunk in data.chunks(BUF) {
        f.write_all(chunk).map_err(|e| format!("write: {e}"))?;
    }
    let fd = f.into_raw_fd();
    if unsafe { libc::close(fd) } != 0 {
        return Err(format!("close: {}", std::io::Error::last_os_error()));
    }
    let closed = start.elapsed();
    let want = data.len() as u64;
    let end = Instant::now() + SETTLE_DEADLINE;
    loop {
        let len = fs::metadata(&server_file).map(|m| m.len()).unwrap_or(0);
        if len == want {
            break;
        }
        if Instant::now() >= end {
            return Err(format!(
                "the server's file has {len} bytes {SETTLE_DEADLINE:?} after close (want {want}; \
                 close returned after {closed:?})"
            ));
        }
        sleep(Duration::from_millis(2));
    }
    Ok(start.elapsed())
}

/// The timed read: `mnt_file` to EOF with a [`BUF`] buffer; must be `want` bytes.
fn timed_read(mnt_file: PathBuf, want: u64) -> Result<Duration, String> {
    let start = Instant::now();
    let mut f =
        fs::File::open(&mnt_file).map_err(|e| format!("open {}: {e}", mnt_file.display()))?;
    let mut buf = vec![0u8; BUF];
    let mut got = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read at {got}: {e}")),
        }
    }
    drop(f);
    let took = start.elapsed();
    if got != want {
        return Err(format!("read {got} bytes, want {want}"));
    }
    Ok(took)
}

/// CPU time (user + system, clock ticks) of each of `roots` and their live descendants.
fn cpu_ticks(roots: &[i32]) -> BTreeMap<i32, u64> {
    let mut pids = Vec::new();
    for &r in roots {
        pids.extend(descendants(r));
        pids.push(r);
    }
    pids.into_iter()
        .filter_map(|p| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            // Fields 14 and 15 of stat(5), counted after the command name (field 2).
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((p, utime + stime))
        })
        .collect()
}

/// Seconds of CPU the processes of `after` used since `before`.
fn cpu_used(before: &BTreeMap<i32, u64>, after: &BTreeMap<i32, u64>) -> f64 {
    let ticks: u64 = after
        .iter()
        .map(|(p, t)| t.saturating_sub(before.get(p).copied().unwrap_or(0)))
        .sum();
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// What one timed run measured.
#[derive(Clone, Copy)]
struct Measured {
    mib_s: f64,
    /// CPU seconds of the mount's process tree (sshfs: with its ssh).
    client_cpu: f64,
    /// CPU seconds of the server's process tree.
    server_cpu: f64,
}

/// One timed run of `dir` with `tool`, on a fresh mount.
fn one_run(
    srv: &Srv,
    bin: &Path,
    tool: Tool,
    dir: Dir,
    run: usize,
    data: &Arc<Vec<u8>>,
) -> Result<Measured, String> {
    drop_caches();
    let mut extra = vec!["no_contain_symlinks".to_string()];
    if tool == Tool::Sftpfs {
        extra.extend(
            std::env::var("SFTPFS_BENCH_SFTPFS_OPTS")
                .ok()
                .filter(|o| !o.is_empty()),
        );
    }
    let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
    let m = srv.mount(bin, &extra)?;
    // sshfs starts its ssh in a double fork: that ssh is no descendant of the mount's process,
    // it is found by its `-oPort=PORT` argument (one mount at a time here).
    let port_arg = format!("-oPort={}", srv.port());
    let client = || -> Vec<i32> {
        let mut v: Vec<i32> = m.pid().into_iter().collect();
        v.extend(processes_with_arg(port_arg.as_ref()));
        v
    };
    let server = || -> Vec<i32> { srv.pid().into_iter().collect() };
    let (client0, server0) = (cpu_ticks(&client()), cpu_ticks(&server()));
    let took = match dir {
        Dir::Write => {
            let name = format!("w-{}-{run}", tool.name());
            let (mf, sf, d) = (m.path(&name), m.remote(&name), data.clone());
            let r = with_deadline(move || timed_write(mf, sf, d));
            // Untimed: what arrived is what was written. Then the file goes, to keep the disk.
            let r = r.and_then(|t| {
                let got = fs::read(m.remote(&name)).map_err(|e| format!("server's copy: {e}"))?;
                match got == **data {
                    true => Ok(t),
                    false => Err("the server's copy differs from what was written".to_string()),
                }
            });
            let _ = fs::remove_file(m.remote(&name));
            r
        }
        Dir::Read => {
            let (mf, want) = (m.path(BIG), data.len() as u64);
            with_deadline(move || timed_read(mf, want))
        }
    };
    // The untimed check of a write only reads the server's disk: no process of either.
    let cpu = (
        cpu_used(&client0, &cpu_ticks(&client())),
        cpu_used(&server0, &cpu_ticks(&server())),
    );
    let took = took.map_err(|e| format!("{e}\n---- {} log:\n{}", tool.name(), m.stderr()))?;
    drop(m);
    Ok(Measured {
        mib_s: data.len() as f64 / MIB as f64 / took.as_secs_f64(),
        client_cpu: cpu.0,
        server_cpu: cpu.1,
    })
}

/// Best (highest MiB/s) of the runs, or the first failure.
#[derive(Clone, Default)]
struct Cell {
    runs: Vec<Measured>,
    failed: Option<String>,
}

impl Cell {
    fn best(&self) -> Option<f64> {
        match self.failed {
            Some(_) => None,
            None => self.runs.iter().map(|m| m.mib_s).reduce(f64::max),
        }
    }

    fn shown(&self) -> String {
        self.best()
            .map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "failed".to_string())
    }
}

fn ratio(sftpfs: &Cell, sshfs: &Cell) -> String {
    match (sftpfs.best(), sshfs.best()) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_string(),
    }
}

struct Row {
    server: String,
    /// [write sftpfs, write sshfs, read sftpfs, read sshfs]
    cells: [Cell; 4],
    notes: Vec<String>,
}

fn index(tool: Tool, dir: Dir) -> usize {
    match (dir, tool) {
        (Dir::Write, Tool::Sftpfs) => 0,
        (Dir::Write, Tool::Sshfs) => 1,
        (Dir::Read, Tool::Sftpfs) => 2,
        (Dir::Read, Tool::Sshfs) => 3,
    }
}

/// One untimed sftpfs mount with `-o debug`: a 1 MiB write and a 4 MiB read, then the lines
/// of its log that say what it learned of the server.
fn sftpfs_view(srv: &Srv, bin: &Path, data: &[u8]) -> Vec<String> {
    let m = match srv.mount(bin, &["no_contain_symlinks", "debug"]) {
        Ok(m) => m,
        Err(e) => return vec![format!("debug mount failed: {e}")],
    };
    let name = "w-debug";
    let w = fs::write(m.path(name), &data[..MIB]);
    let r = fs::File::open(m.path(BIG)).and_then(|f| {
        let mut buf = vec![0u8; 4 * MIB];
        f.take(4 * MIB as u64).read_exact(&mut buf)
    });
    let log = m.stderr();
    drop(m);
    let _ = fs::remove_file(srv.remote(DIR).join(name));
    // Without the timestamps and levels; each distinct line once (every pool member logs its
    // session's limits).
    let mut notes: Vec<String> = Vec::new();
    for l in log.lines() {
        let note = if let Some(i) = l.find("limits Limits {") {
            format!("session {}", &l[i..])
        } else if let Some(i) = l.find("the server answers READs") {
            l[i..].to_string()
        } else if let Some(i) = l.find("server SSH-") {
            l[i..].to_string()
        } else {
            continue;
        };
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
    if let Err(e) = w {
        notes.push(format!("debug mount: write failed: {e}"));
    }
    if let Err(e) = r {
        notes.push(format!("debug mount: read failed: {e}"));
    }
    notes
}

fn measure(name: &str, bin: &Path, sshfs: &Path, runs: usize, data: &Arc<Vec<u8>>) -> Row {
    let srv = Srv::start(name);
    fs::create_dir(srv.remote(DIR)).unwrap();
    let big = srv.remote(DIR).join(BIG);
    {
        let mut f = fs::File::create(&big).unwrap();
        f.write_all(data).unwrap();
        f.sync_all().unwrap();
    }
    let mut row = Row {
        server: name.to_string(),
        cells: Default::default(),
        notes: Vec::new(),
    };
    for run in 1..=runs {
        for dir in [Dir::Write, Dir::Read] {
            for tool in [Tool::Sshfs, Tool::Sftpfs] {
                let cell = &mut row.cells[index(tool, dir)];
                if cell.failed.is_some() {
                    continue;
                }
                let b = match tool {
                    Tool::Sshfs => sshfs,
                    Tool::Sftpfs => bin,
                };
                let what = match dir {
                    Dir::Write => "write",
                    Dir::Read => "read",
                };
                match one_run(&srv, b, tool, dir, run, data) {
                    Ok(v) => {
                        eprintln!(
                            "bench: {name:<13} {what:<5} {:<6} run {run}/{runs}: {:8.1} MiB/s, \
                             CPU s: client {:.2}, server {:.2}",
                            tool.name(),
                            v.mib_s,
                            v.client_cpu,
                            v.server_cpu
                        );
                        cell.runs.push(v);
                    }
                    Err(e) => {
                        eprintln!(
                            "bench: {name:<13} {what:<5} {:<6} run {run}/{runs}: FAILED: {e}\n\
                             ---- server logs:\n{}",
                            tool.name(),
                            srv.log_text()
                        );
                        cell.failed = Some(e);
                    }
                }
            }
        }
    }
    row.notes = sftpfs_view(&srv, bin, data);
    row
}

fn table(rows: &[Row], size_mb: usize, runs: usize) -> String {
    let mut t = format!(
        "sequential {size_mb} MiB through the mount, 1 MiB buffers, best of {runs} run(s), fresh \
         mount and caches dropped before each; MiB/s; ratio = sftpfs / sshfs\n\n\
         | server | sftpfs write MiB/s | sshfs write MiB/s | ratio | sftpfs read MiB/s | \
         sshfs read MiB/s | ratio |\n\
         |---|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        let c = &r.cells;
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.server,
            c[0].shown(),
            c[1].shown(),
            ratio(&c[0], &c[1]),
            c[2].shown(),
            c[3].shown(),
            ratio(&c[2], &c[3]),
        ));
    }
    let mut below = Vec::new();
    for r in rows {
        for (what, a, b) in [("write", 0, 1), ("read", 2, 3)] {
            if let (Some(x), Some(y)) = (r.cells[a].best(), r.cells[b].best()) {
                if x < y {
                    below.push(format!("{} {what} ({:.2}×)", r.server, x / y));
                }
            }
        }
    }
    t.push('\n');
    match below.is_empty() {
        true => t.push_str("sftpfs at or above sshfs everywhere.\n"),
        false => t.push_str(&format!("sftpfs below sshfs: {}.\n", below.join(", "))),
    }
    for r in rows {
        for (i, what) in ["sftpfs write", "sshfs write", "sftpfs read", "sshfs read"]
            .iter()
            .enumerate()
        {
            if let Some(e) = &r.cells[i].failed {
                let first = e.lines().next().unwrap_or("");
                t.push_str(&format!("failed: {} {what}: {first}\n", r.server));
            }
        }
    }
    t.push_str(
        "\nper run, in order: MiB/s (CPU seconds of the client's processes + the server's; \
         sshfs's client includes its ssh):\n\n",
    );
    for r in rows {
        let runs = |c: &Cell| {
            let mut s: Vec<String> = c
                .runs
                .iter()
                .map(|v| format!("{:.1} ({:.1}+{:.1})", v.mib_s, v.client_cpu, v.server_cpu))
                .collect();
            if c.failed.is_some() {
                s.push("failed".to_string());
            }
            s.join(", ")
        };
        let c = &r.cells;
        t.push_str(&format!(
            "    {:<13} write sftpfs {} / sshfs {}; read sftpfs {} / sshfs {}\n",
            r.server,
            runs(&c[0]),
            runs(&c[1]),
            runs(&c[2]),
            runs(&c[3])
        ));
    }
    t.push_str("\nwhat sftpfs learned of each server (-o debug, untimed mount):\n\n");
    for r in rows {
        for n in &r.notes {
            t.push_str(&format!("    {:<13} {n}\n", r.server));
        }
    }
    t
}

#[test]
#[ignore = "a benchmark of minutes: run by bench/servers (see bench/README.md)"]
fn throughput_per_server() {
    require_environment();
    let size_mb = env_num("SFTPFS_BENCH_MB", 256);
    let runs = env_num("SFTPFS_BENCH_RUNS", 2);
    let sshfs = PathBuf::from(
        std::env::var_os("SFTPFS_BENCH_SSHFS")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "/usr/bin/sshfs".into()),
    );
    assert!(
        sshfs.exists(),
        "{} is missing: apt-get install sshfs",
        sshfs.display()
    );
    let bin = binary();
    assert_ne!(
        bin.file_name(),
        sshfs.file_name(),
        "SFTPFS_TEST_BIN names sshfs: this test compares the two itself"
    );
    let servers: Vec<String> = match std::env::var("SFTPFS_BENCH_SERVERS") {
        Ok(v) if !v.is_empty() => v.split(',').map(|s| s.trim().to_string()).collect(),
        _ => SERVERS.iter().map(|s| s.to_string()).collect(),
    };
    for s in &servers {
        assert!(
            SERVERS.contains(&s.as_str()),
            "unknown server {s:?}; known: {}",
            SERVERS.join(", ")
        );
    }
    eprintln!(
        "bench: sftpfs {}, sshfs {}, {size_mb} MiB, {runs} run(s), servers {}",
        bin.display(),
        sshfs.display(),
        servers.join(" ")
    );
    let data = Arc::new(random_bytes(size_mb * MIB, 0x5eed_0011));
    let rows: Vec<Row> = servers
        .iter()
        .map(|s| measure(s, &bin, &sshfs, runs, &data))
        .collect();
    let t = table(&rows, size_mb, runs);
    println!("\n{t}");
    if let Some(f) = std::env::var_os("SFTPFS_BENCH_TABLE").filter(|v| !v.is_empty()) {
        fs::write(&f, &t).unwrap();
    }
    let failed: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.cells
                .iter()
                .filter_map(|c| c.failed.as_ref())
                .map(move |e| format!("{}: {}", r.server, e.lines().next().unwrap_or("")))
        })
        .collect();
    assert!(failed.is_empty(), "failed runs:\n  {}", failed.join("\n  "));
}
