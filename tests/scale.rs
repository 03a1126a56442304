//! What a mount costs, for issue 21 ("Scale"): sftpfs beside sshfs against one private sshd.
//! Ignored by default (minutes of work; meaningful with a release binary): `bench/scale`
//! builds it and runs these, see `bench/README.md`. Each writes its part of the table to
//! `SFTPFS_BENCH_TABLE` (and stdout).
//!
//! - `idle_mounts`: `SFTPFS_BENCH_MOUNTS` (20) mounts of one server from this host, each used
//!   once (an `ls`, as autofs mounts on first access) and then left alone; then the daemons'
//!   RSS (sshfs with its `ssh` child), the server's processes (every descendant of the
//!   listening sshd) and the logins the server accepted.
//! - `at_rest`: one mount per tool through a counting proxy, an `ls -la` of its root, then
//!   the bytes each way in the first minute (revalidation of the listed directory runs for 15
//!   periods, 30 s) and per minute after it (`SFTPFS_BENCH_REST_MINUTES`, 2), with the
//!   defaults of each tool.
//! - `names`: 100 000 empty files in one directory and 100 000 one-byte files in 200
//!   directories, made on the server's side; `ls -f` and `ls -l` of the big directory,
//!   `find -type f` and `du -s` of the tree, each on a fresh mount (median of
//!   `SFTPFS_BENCH_RUNS`, 1); then one mount doing all four, and its daemon's peak RSS: the
//!   memory per name (issue 21, items 1 and 3: the baseline for the work on names).
//!
//! sshfs is `SFTPFS_BENCH_SSHFS` (`/usr/bin/sshfs`). Both get the same options as in
//! `bench/run`: identity, known_hosts, `StrictHostKeyChecking=yes`, `BatchMode=yes`.

mod support;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::proxy::{Dir, Proxy};
use support::*;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sshfs_bin() -> PathBuf {
    std::env::var_os("SFTPFS_BENCH_SSHFS")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/usr/bin/sshfs"), PathBuf::from)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

    fn program(self) -> PathBuf {
        match self {
            Tool::Sshfs => sshfs_bin(),
            Tool::Sftpfs => binary(),
        }
    }
}

/// A background mount (the tool daemonizes, as from fstab or autofs), undone on drop.
struct BgMount {
    mnt: PathBuf,
    pid: i32,
}

impl BgMount {
    /// Mounts the server's `w` through `port` (the server's own, or a proxy's).
    fn new(tool: Tool, s: &Sshd, port: u16, extra: &[&str]) -> BgMount {
        if port != s.port {
            s.trust_port(port);
        }
        let mnt = s.mountpoint();
        let mut args = s.mount_args("w", &mnt, extra);
        args[3] = port.to_string().into();
        let out = Command::new(tool.program())
            .args(&args)
            .env("HOME", &s.dir)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success() && is_mounted(&mnt),
            "{} mount failed: {}",
            tool.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = processes_with_arg(mnt.as_os_str())
            .into_iter()
            .find(|&p| {
                fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == tool.name())
            })
            .unwrap_or_else(|| panic!("no {} daemon for {}", tool.name(), mnt.display()));
        BgMount { mnt, pid }
    }

    /// Resident memory of the daemon and its descendants (sshfs's `ssh`), in KiB: now and
    /// at its peak (VmHWM).
    fn rss_kib(&self) -> (u64, u64) {
        let mut pids = descendants(self.pid);
        pids.push(self.pid);
        pids.iter()
            .map(|p| (status_kib(*p, "VmRSS:"), status_kib(*p, "VmHWM:")))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Of the daemon and its descendants, in KiB: the anonymous part of the resident memory
    /// (heap, stacks: what this mount alone holds) and the proportional set size (shared
    /// pages, as the program's code, divided among the processes mapping them).
    fn own_kib(&self) -> (u64, u64) {
        let mut pids = descendants(self.pid);
        pids.push(self.pid);
        pids.iter()
            .map(|p| {
                let pss = fs::read_to_string(format!("/proc/{p}/smaps_rollup"))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("Pss:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                (status_kib(*p, "RssAnon:"), pss)
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    fn threads(&self) -> u64 {
        status_kib(self.pid, "Threads:")
    }
}

impl Drop for BgMount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mnt)
            .status();
        if !wait_until(Duration::from_secs(15), || !alive(self.pid)) {
            // SAFETY: signalling the daemon this mount started.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
    }
}

fn alive(pid: i32) -> bool {
    // Reap it if it was re-parented to us (the harness is a subreaper).
    // SAFETY: plain waitpid on one pid, without blocking.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A `Name: value kB` (or plain number) line of /proc/PID/status.
fn status_kib(pid: i32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn logins(s: &Sshd) -> usize {
    fs::read_to_string(&s.log)
        .unwrap_or_default()
        .matches("Accepted publickey")
        .count()
}

fn ls(dir: &Path) {
    let ok = Command::new("ls")
        .arg("-la")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "ls -la {}", dir.display());
}

#[test]
#[ignore = "a benchmark: bench/scale"]
fn idle_mounts() {
    let n = env_num("SFTPFS_BENCH_MOUNTS", 20);
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), b"x").unwrap();
    let mut out = String::new();
    writeln!(
        out,
        "\n{n} idle mounts of one server from this host (each listed once, then left alone 10 s)\n\n\
         | | per mount: RSS (MiB) | per mount: anonymous / PSS (MiB) | all {n}: RSS (MiB) | server processes | logins at mount | daemon threads |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    for tool in [Tool::Sshfs, Tool::Sftpfs] {
        let logins_before = logins(&s);
        let mounts: Vec<BgMount> = (0..n)
            .map(|_| {
                let m = BgMount::new(tool, &s, s.port, &[]);
                ls(&m.mnt);
                m
            })
            .collect();
        sleep(Duration::from_secs(10));
        let rss: Vec<u64> = mounts.iter().map(|m| m.rss_kib().0).collect();
        let total: u64 = rss.iter().sum();
        let max = *rss.iter().max().unwrap();
        let own: Vec<(u64, u64)> = mounts.iter().map(|m| m.own_kib()).collect();
        let anon: u64 = own.iter().map(|o| o.0).sum();
        let pss: u64 = own.iter().map(|o| o.1).sum();
        let procs = s.connection_pids().len();
        let threads = mounts[0].threads();
        let logged_in = logins(&s) - logins_before;
        writeln!(
            out,
            "| {} | {:.1} (max {:.1}) | {:.1} / {:.1} | {:.1} | {} ({:.1} per mount) | {} ({:.1} per mount) | {threads} |",
            tool.name(),
            mib(total) / n as f64,
            mib(max),
            mib(anon) / n as f64,
            mib(pss) / n as f64,
            mib(total),
            procs,
            procs as f64 / n as f64,
            logged_in,
            logged_in as f64 / n as f64,
        )
        .unwrap();
        drop(mounts);
        assert!(
            wait_until(Duration::from_secs(30), || s.connection_pids().is_empty()),
            "the server still serves connections after the unmounts"
        );
    }
    report(&out);
}

#[test]
#[ignore = "a benchmark: bench/scale"]
fn at_rest() {
    let minutes = env_num("SFTPFS_BENCH_REST_MINUTES", 2).max(1) as u64;
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    for i in 0..10 {
        fs::write(s.remote(&format!("w/f{i}")), b"x").unwrap();
    }
    let tools = [Tool::Sshfs, Tool::Sftpfs];
    let proxies: Vec<Proxy> = tools.iter().map(|_| Proxy::start(s.port)).collect();
    let mounts: Vec<BgMount> = tools
        .iter()
        .zip(&proxies)
        .map(|(t, p)| BgMount::new(*t, &s, p.port(), &[]))
        .collect();
    for m in &mounts {
        ls(&m.mnt);
    }
    let count = |p: &Proxy| {
        [
            p.bytes_to(Dir::Up),
            p.bytes_to(Dir::Down),
            p.reads(Dir::Up) + p.reads(Dir::Down),
        ]
    };
    let start: Vec<[u64; 3]> = proxies.iter().map(count).collect();
    let t0 = Instant::now();
    sleep(Duration::from_secs(60).saturating_sub(t0.elapsed()));
    let first: Vec<[u64; 3]> = proxies.iter().map(count).collect();
    sleep(Duration::from_secs(60 * minutes));
    let last: Vec<[u64; 3]> = proxies.iter().map(count).collect();
    let mut out = format!(
        "\nat rest, one mount each, defaults of each tool (sftpfs: ServerAliveInterval 15, \
         revalidate 2 s for 30 s after a listing; sshfs: ssh's defaults), through a counting \
         proxy: bytes of SSH traffic (TCP payload; add ~66 bytes of TCP/IP per segment)\n\n\
         | | minute after an `ls -la`: up / down bytes (segments) | per minute at rest after it, over {minutes} min: up / down bytes (segments) | connections |\n\
         |---|---:|---:|---:|\n"
    );
    for (i, t) in tools.iter().enumerate() {
        let d = |a: [u64; 3], b: [u64; 3]| [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let f = d(start[i], first[i]);
        let r = d(first[i], last[i]).map(|x| x / minutes);
        writeln!(
            out,
            "| {} | {} / {} ({}) | {} / {} ({}) | {} |",
            t.name(),
            f[0],
            f[1],
            f[2],
            r[0],
            r[1],
            r[2],
            proxies[i].live()
        )
        .unwrap();
    }
    drop(mounts);
    report(&out);
}

/// Runs `cmd` through `sh -c` in `dir`; its wall time in seconds.
fn timed(dir: &Path, cmd: &str) -> f64 {
    sh(Path::new("/"), "sync", &[]);
    fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
    let t = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore = "a benchmark: bench/scale"]
fn names() {
    let runs = env_num("SFTPFS_BENCH_RUNS", 1).max(1);
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/big")).unwrap();
    for i in 0..100_000 {
        fs::File::create(s.remote(&format!("w/big/file{i:06}"))).unwrap();
    }
    for d in 0..200 {
        let dir = s.remote(&format!("w/tree/d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            fs::write(dir.join(format!("f{f:03}")), b"x").unwrap();
        }
    }
    let workloads = [
        ("`ls -f` of the 100 000-entry directory", "ls -f big"),
        ("`ls -l` of it", "ls -l big"),
        (
            "`find -type f` over the tree (100 000 in 200 dirs)",
            "find tree -type f",
        ),
        ("`du -s` of the tree", "du -s tree"),
    ];
    let tools = [Tool::Sshfs, Tool::Sftpfs];
    let mut times = vec![vec![Vec::new(); tools.len()]; workloads.len()];
    for _ in 0..runs {
        for (w, (_, cmd)) in workloads.iter().enumerate() {
            for (t, tool) in tools.iter().enumerate() {
                let m = BgMount::new(*tool, &s, s.port, &[]);
                times[w][t].push(timed(&m.mnt, cmd));
            }
        }
    }
    let mut out = format!(
        "\n100 000 empty files in one directory, 100 000 one-byte files in 200 directories; \
         loopback, a fresh mount each, caches dropped before each; median of {runs} run(s), \
         seconds\n\n| | sshfs | sftpfs | sshfs / sftpfs |\n|---|---:|---:|---:|\n"
    );
    for (w, (label, _)) in workloads.iter().enumerate() {
        let (a, b) = (median(times[w][0].clone()), median(times[w][1].clone()));
        writeln!(out, "| {label} | {a:.2} | {b:.2} | {:.1}× |", a / b).unwrap();
    }
    // Memory: one mount doing all four, its RSS before and at its peak after them.
    let mut rss = Vec::new();
    for tool in tools {
        let m = BgMount::new(tool, &s, s.port, &[]);
        ls(&m.mnt);
        let idle = m.rss_kib().0;
        for (_, cmd) in &workloads {
            timed(&m.mnt, cmd);
        }
        let (now, peak) = m.rss_kib();
        rss.push((idle, now, peak));
    }
    let names = 200_000 + 200;
    writeln!(
        out,
        "| daemon RSS idle → after all four (peak), MiB | {:.1} → {:.1} ({:.1}) | {:.1} → {:.1} ({:.1}) | |\n\
         | memory per name seen ((peak − idle) / {names}), bytes | {} | {} | |",
        mib(rss[0].0),
        mib(rss[0].1),
        mib(rss[0].2),
        mib(rss[1].0),
        mib(rss[1].1),
        mib(rss[1].2),
        (rss[0].2 - rss[0].0) * 1024 / names,
        (rss[1].2 - rss[1].0) * 1024 / names,
    )
    .unwrap();
    report(&out);
}
