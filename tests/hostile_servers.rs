//! A mounted server that turns hostile or broken while in use: a listing that never ends,
//! a server that stops answering with its socket open, replies to request ids never issued,
//! a 1 MB status message, invalid names in a listing, READ replies longer than asked. The
//! server is OpenSSH's sftp-server behind `hostile_server.py` (a relay that misbehaves on
//! command), reached with `-o directport=PORT`; one stuck sftp-server behind a live sshd too.
//!
//! What must hold: no reply makes the daemon grow without bound, wait a deadline per request
//! or fail a whole `ls`; what fails, fails with EIO within a bound; the daemon survives and
//! works again once the server behaves. Seconds and memory measured are printed
//! (`--nocapture`); the bounds asserted are loose (a loaded 2-core machine, a debug build):
//! they tell a hang or unbounded growth from a fix, they are not performance timings.

mod support;

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// The request deadline of the mounts here (`-o timeout=`): long, so that an operation
/// waiting one deadline stands out against the few seconds the probe of a silent server takes.
const TIMEOUT_S: u64 = 20;
/// How long an operation may take once the connection is known to be silent: well under one
/// deadline, so that it fails when every request waits its own.
const LATER_BOUND: Duration = Duration::from_secs(12);
/// The first operation on a silent server waits at most one deadline (and a margin).
const FIRST_BOUND: Duration = Duration::from_secs(TIMEOUT_S + 8);
/// How long the mount may take to work again once the server answers (polled).
const RECOVER_DEADLINE: Duration = Duration::from_secs(60);

/// `hostile_server.py` running on a temp dir: `root` is what it serves.
struct Hostile {
    tmp: TempDir,
    root: PathBuf,
    control: PathBuf,
    port: u16,
    _server: KillOnDrop,
}

impl Hostile {
    fn start() -> Hostile {
        let tmp = TempDir::new("hostile");
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        let control = tmp.path().join("control");
        fs::write(&control, "").unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(&root)
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        isolate_from_mounts(&mut cmd);
        let mut child = cmd.spawn().expect("start hostile_server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let server = KillOnDrop(child);
        let port = line.trim().parse().expect("the server's port");
        Hostile {
            tmp,
            root,
            control,
            port,
            _server: server,
        }
    }

    /// Switches the misbehaviours `words` on (and every other off), from the next packet.
    fn set(&self, words: &str) {
        let tmp = self.control.with_extension("new");
        fs::write(&tmp, words).unwrap();
        fs::rename(&tmp, &self.control).unwrap();
    }

    /// A count the server keeps (`endless`, `swallowed`).
    fn count(&self, what: &str) -> u64 {
        let p = self.control.with_extension(what);
        fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn mount(&self, extra: &[&str]) -> Mount<'_> {
        let mnt = self.tmp.path().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let mut opts = format!("directport={}", self.port);
        for e in extra.iter().filter(|e| !e.starts_with('-')) {
            opts.push(',');
            opts.push_str(e);
        }
        let mut cmd = command_in(self.tmp.path());
        cmd.arg(format!("127.0.0.1:{}", self.root.display()))
            .arg(&mnt)
            .args(["-o", &opts, "-f"])
            .args(extra.iter().filter(|e| e.starts_with('-')));
        Mount::spawn_in(self.tmp.path(), cmd, mnt, self.root.clone())
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Runs `f` on its own thread and waits at most `deadline` for it: `Err` with the time waited
/// when it did not finish (the thread stays, stuck in the mount, until the mount ends).
fn bounded<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<(T, Duration), Duration> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let r = f();
        let _ = tx.send((r, start.elapsed()));
    });
    rx.recv_timeout(deadline).map_err(|_| start.elapsed())
}

/// Asserts that `what` failed with EIO (or ETIMEDOUT) within `bound`; returns its seconds.
#[track_caller]
fn fails_within<T: std::fmt::Debug>(
    what: &str,
    bound: Duration,
    r: Result<(io::Result<T>, Duration), Duration>,
) -> f64 {
    let (res, took) = r.unwrap_or_else(|waited| {
        panic!("{what}: still blocked after {waited:?} (bound {bound:?})")
    });
    assert!(took < bound, "{what}: took {took:?} (bound {bound:?})");
    let e = res.expect_err(&format!("{what}: succeeded"));
    assert!(
        matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ETIMEDOUT)),
        "{what}: expected EIO or ETIMEDOUT, got {e}"
    );
    took.as_secs_f64()
}

/// Polls `op` until it succeeds (each try bounded); returns the seconds it took.
fn wait_works(what: &str, op: impl Fn() -> io::Result<()> + Send + Sync + 'static) -> f64 {
    let op = std::sync::Arc::new(op);
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < RECOVER_DEADLINE {
        let o = op.clone();
        match bounded(Duration::from_secs(TIMEOUT_S * 3), move || o()) {
            Ok((Ok(()), _)) => return start.elapsed().as_secs_f64(),
            Ok((Err(e), _)) => last = e.to_string(),
            Err(waited) => panic!("{what}: a try blocked for {waited:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: did not work again within {RECOVER_DEADLINE:?}; last error: {last}");
}

/// The daemon's resident memory now and at its peak, in KiB (/proc/PID/status).
fn rss_kib(pid: i32) -> (u64, u64) {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `ls ARGS` (an everyday program on the mount), names in ARGS taken below `dir` (`ls` runs
/// outside the mount: its own working directory there could fail it first); bounded: its
/// output, or the time waited when it did not finish.
fn ls(
    args: &[&str],
    dir: &Path,
    deadline: Duration,
) -> Result<(std::process::Output, Duration), Duration> {
    let mut cmd = Command::new("ls");
    for a in args {
        if a.starts_with('-') {
            cmd.arg(a);
        } else {
            cmd.arg(dir.join(a));
        }
    }
    if !args.iter().any(|a| !a.starts_with('-')) {
        cmd.arg(dir);
    }
    bounded(deadline, move || cmd.output().unwrap())
}

// ---------------------------------------------------------------------------------------------
// 4. Nothing a server sends grows the daemon without bound

/// The peak resident memory the daemon may reach while an endless listing is refused: the
/// bound of one listing (1,000,000 entries) and what the daemon holds besides.
const RSS_BOUND_KIB: u64 = 400 * 1024;

#[test]
fn an_endless_listing_fails_with_eio_and_memory_stays_bounded() {
    let h = Hostile::start();
    fs::create_dir(h.root.join("endless")).unwrap();
    fs::create_dir(h.root.join("ok")).unwrap();
    fs::write(h.root.join("ok/f"), b"fine").unwrap();
    h.set("endless");
    let m = h.mount(&[]);
    let pid = m.pid().unwrap();

    // `ls -la` of the root lists it and prefetches its subdirectories, `endless` among them:
    // a prefetch nobody asked for gives up early, without a word.
    let (out, _) = ls(&["-la"], &m.mnt, Duration::from_secs(60)).expect("ls -la of the root hangs");
    assert!(
        out.status.success(),
        "ls -la: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The prefetch has run its course once the server stops being asked for more.
    let mut last = (h.count("endless"), Instant::now());
    let settled = wait_until(Duration::from_secs(60), || {
        let n = h.count("endless");
        assert!(
            n <= 100_000,
            "the prefetch of an endless listing went on: {n} names fetched (daemon at {:?} KiB)",
            rss_kib(pid)
        );
        if n != last.0 {
            last = (n, Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(2)
    });
    assert!(settled);
    let after_prefetch = (h.count("endless"), rss_kib(pid));
    eprintln!(
        "hostile: endless listing: the prefetch fetched {} names; daemon RSS {} KiB, peak {} KiB",
        after_prefetch.0, after_prefetch.1 .0, after_prefetch.1 .1
    );
    assert!(
        !m.stderr().contains("endless"),
        "the prefetch did not give up quietly:\n{}",
        m.stderr()
    );

    // `ls endless` asks for the listing: it fails with EIO once past the bound of a listing,
    // with the daemon's memory bounded all the way; meanwhile another program writes files
    // through the mount, which goes on working.
    let start = Instant::now();
    let dir = m.mnt.clone();
    let ls_endless = std::thread::spawn(move || ls(&["endless"], &dir, Duration::from_secs(600)));
    let mut written = 0;
    while !ls_endless.is_finished() {
        let p = m.path(&format!("ok/w{written}"));
        let w = bounded(Duration::from_secs(60), move || fs::write(p, b"meanwhile"));
        let (res, _) = w.unwrap_or_else(|t| panic!("a write blocked {t:?} during the listing"));
        res.unwrap();
        written += 1;
        let (rss, peak) = rss_kib(pid);
        assert!(
            peak < RSS_BOUND_KIB,
            "the daemon grew to {rss} KiB (peak {peak} KiB) while listing an endless directory \
             ({} names fetched in {:.0} s)",
            h.count("endless"),
            start.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (out, took) = ls_endless
        .join()
        .unwrap()
        .unwrap_or_else(|w| panic!("ls of the endless directory still blocked after {w:?}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ls of an endless directory succeeded"
    );
    assert!(err.contains("Input/output error"), "ls: {err}");
    let (rss, peak) = rss_kib(pid);
    eprintln!(
        "hostile: endless listing: ls failed after {:.1} s, {} names fetched; daemon RSS {rss} \
         KiB, peak {peak} KiB",
        took.as_secs_f64(),
        h.count("endless")
    );
    assert!(peak < RSS_BOUND_KIB, "peak {peak} KiB");

    // One line in the log says why, and not again for a second `ls` soon after.
    let (again, _) = ls(&["endless"], &m.mnt, Duration::from_secs(600)).expect("second ls hangs");
    assert!(!again.status.success());
    let log = m.stderr();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("endless")).collect();
    assert_eq!(
        said.len(),
        1,
        "expected one log line about the listing:\n{log}"
    );
    assert!(
        said[0].contains("1000000"),
        "the line does not name the bound: {}",
        said[0]
    );

    // The daemon survives and serves the rest; what was written meanwhile is on the server.
    assert!(written > 0);
    for i in 0..written {
        assert_eq!(
            fs::read(h.root.join(format!("ok/w{i}"))).unwrap(),
            b"meanwhile"
        );
    }
    assert_eq!(fs::read(m.path("ok/f")).unwrap(), b"fine");
    let (out, _) = ls(&["-la", "ok"], &m.mnt, Duration::from_secs(60)).expect("ls -la ok hangs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(" f\n"));
    eprintln!("hostile: endless listing: {written} files written through the mount meanwhile");
}

#[test]
fn read_replies_longer_than_asked_fail_with_eio() {
    let h = Hostile::start();
    fs::write(h.root.join("f"), vec![7u8; 100_000]).unwrap();
    let m = h.mount(&[&format!("timeout={TIMEOUT_S}")]);
    h.set("long-read");
    let path = m.path("f");
    let r = bounded(FIRST_BOUND, move || fs::read(&path));
    let secs = fails_within("read with replies longer than asked", LATER_BOUND, r);
    eprintln!("hostile: READ replies longer than asked: EIO after {secs:.1} s");
    h.set("");
    let path = m.path("f");
    wait_works("read once the server behaves", move || {
        (fs::read(&path)? == vec![7u8; 100_000])
            .then_some(())
            .ok_or(io::Error::other("wrong bytes"))
    });
}

// ---------------------------------------------------------------------------------------------
// 5. A server that stops answering

#[test]
fn a_silent_server_costs_one_deadline_then_fails_fast_and_recovers() {
    let h = Hostile::start();
    fs::create_dir(h.root.join("w")).unwrap();
    for i in 0..20 {
        fs::write(h.root.join(format!("w/f{i}")), format!("file {i}")).unwrap();
    }
    fs::create_dir(h.root.join("w/sub")).unwrap();
    let m = h.mount(&[&format!("timeout={TIMEOUT_S}")]);
    assert_eq!(fs::read(m.path("w/f0")).unwrap(), b"file 0");

    h.set("silent");
    // Reads of files never opened: their OPEN must reach the server (names and attributes
    // could come from the caches). The first waits its deadline: nothing tells a slow server
    // from a silent one before that.
    let read = |i: usize| {
        let p = m.path(&format!("w/f{i}"));
        bounded(FIRST_BOUND * 2, move || fs::read(&p))
    };
    let first = fails_within("first read", FIRST_BOUND, read(1));
    // Then the connection is suspect, probed, and found dead: what follows fails fast, and a
    // new connection (which the server does not answer either) is no better.
    let mut later = Vec::new();
    for i in 2..=5 {
        later.push(fails_within(&format!("read {i}"), LATER_BOUND, read(i)));
    }
    let t = ls(&["-la", "w/sub"], &m.mnt, FIRST_BOUND * 8)
        .unwrap_or_else(|w| panic!("ls -la hangs: {w:?}"));
    assert!(!t.0.status.success(), "ls -la succeeded on a silent server");
    assert!(t.1 < LATER_BOUND, "ls -la took {:?}", t.1);
    eprintln!(
        "hostile: silent server: first read failed after {first:.1} s, then {later:.1?} s; \
         ls -la failed after {:.1} s ({} requests swallowed)",
        t.1.as_secs_f64(),
        h.count("swallowed")
    );

    // The server answers again: the mount works without a remount.
    h.set("");
    let p = m.path("w/f6");
    let secs = wait_works("read once the server answers", move || {
        (fs::read(&p)? == b"file 6")
            .then_some(())
            .ok_or(io::Error::other("wrong bytes"))
    });
    let (out, _) = ls(&["-la", "w"], &m.mnt, FIRST_BOUND).expect("ls -la hangs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches(" f").count(),
        20
    );
    eprintln!("hostile: silent server: works again {secs:.1} s after it answers");
    let log = m.stderr();
    assert!(
        log.contains("stopped answering"),
        "the log does not say the server stopped answering:\n{log}"
    );
}

#[test]
fn a_stuck_sftp_server_behind_a_live_sshd_is_replaced() {
    // SSH keepalives see a live sshd; only the SFTP probe tells that its sftp-server hangs.
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), b"still here").unwrap();
    fs::write(s.remote("w/g"), b"and here").unwrap();
    fs::write(s.remote("w/h"), b"and there").unwrap();
    let script = s.sftp_server_script("sftp.sh", "", "", "");
    let m = Mount::new(
        &s,
        "w",
        &[
            &script,
            "max_conns=1",
            "ServerAliveInterval=2",
            "ServerAliveCountMax=2",
            &format!("timeout={TIMEOUT_S}"),
        ],
    );
    assert_eq!(fs::read(m.path("f")).unwrap(), b"still here");
    let stuck: Vec<i32> = s
        .connection_pids()
        .into_iter()
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sftp-server")
        })
        .collect();
    assert!(!stuck.is_empty(), "no sftp-server process found");
    let _thaw = Frozen::stop(stuck);

    // The first request waits its deadline (a read of a file never opened: its OPEN must
    // reach the server); then the connection is found dead and replaced by a new one, with a
    // new sftp-server: the mount works again at once.
    let p = m.path("g");
    let r = bounded(FIRST_BOUND * 2, move || fs::read(&p));
    let (res, first) = r.unwrap_or_else(|w| panic!("read still blocked after {w:?}"));
    assert!(first < FIRST_BOUND, "read took {first:?}");
    if let Ok(d) = &res {
        assert_eq!(d, b"and here");
    }
    let p = m.path("h");
    let secs = wait_works("read after the sftp-server got stuck", move || {
        (fs::read(&p)? == b"and there")
            .then_some(())
            .ok_or(io::Error::other("wrong bytes"))
    });
    assert!(
        secs < LATER_BOUND.as_secs_f64(),
        "took {secs:.1} s to work again"
    );
    eprintln!(
        "hostile: stuck sftp-server: first read answered after {:.1} s, reads work {secs:.1} s later",
        first.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. A reply to a request never made

#[test]
fn a_reply_with_an_id_never_issued_breaks_the_connection_at_once() {
    let h = Hostile::start();
    fs::write(h.root.join("f"), b"read me").unwrap();
    let m = h.mount(&[&format!("timeout={TIMEOUT_S}")]);
    h.set("wrong-id");
    let p = m.path("f");
    let secs = fails_within(
        "cat with wrong reply ids",
        LATER_BOUND,
        bounded(FIRST_BOUND * 3, move || {
            let out = Command::new("cat").arg(&p).output().unwrap();
            if out.status.success() {
                Ok(out.stdout)
            } else if String::from_utf8_lossy(&out.stderr).contains("Input/output error") {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                Err(io::Error::other(
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                ))
            }
        }),
    );
    eprintln!("hostile: replies with ids never issued: cat failed after {secs:.1} s");
    let log = m.stderr();
    assert!(
        log.contains("never issued"),
        "the log does not say what was wrong:\n{log}"
    );
    h.set("");
    let p = m.path("f");
    wait_works("cat once the server behaves", move || {
        (fs::read(&p)? == b"read me")
            .then_some(())
            .ok_or(io::Error::other("wrong bytes"))
    });
}

// ---------------------------------------------------------------------------------------------
// 7. Server text in the log, names in a listing, SIGTERM after a lazy unmount

#[test]
fn a_long_status_message_is_cut_in_the_log() {
    let h = Hostile::start();
    fs::write(h.root.join("f"), b"x").unwrap();
    // Every lookup of a name not there asks the server (none is answered from a listing).
    let m = h.mount(&["-d", "negative_timeout=0"]);
    h.set("long-status");
    for i in 0..4 {
        assert!(fs::metadata(m.path(&format!("missing{i}"))).is_err());
    }
    let log = m.stderr();
    assert!(
        log.contains("xxxxxxxxxx"),
        "the status message is not logged at all:\n{log}"
    );
    assert!(
        log.contains("cut"),
        "no mark that the server's text was cut"
    );
    assert!(
        log.len() < 200_000,
        "the log holds {} bytes after 4 lookups",
        log.len()
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2000, "a log line of {longest} bytes");
}

#[test]
fn invalid_names_in_a_listing_are_dropped_with_a_warning() {
    let h = Hostile::start();
    fs::create_dir(h.root.join("badnames")).unwrap();
    for n in ["good1", "good2"] {
        fs::write(h.root.join("badnames").join(n), n).unwrap();
    }
    h.set("bad-names");
    let m = h.mount(&[]);
    let (out, _) = ls(&["-a", "badnames"], &m.mnt, FIRST_BOUND).expect("ls hangs");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ls failed: {}\n{listed}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<&str> = listed.lines().collect();
    assert_eq!(names, [".", "..", "good1", "good2", "twice"], "{listed}");
    let log = m.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("badnames") && l.contains("300")),
        "no warning that names were dropped:\n{log}"
    );
}

#[test]
fn sigterm_after_a_lazy_unmount_with_a_request_pending_ends_the_daemon() {
    let h = Hostile::start();
    fs::write(h.root.join("f"), b"x").unwrap();
    let mut m = h.mount(&[&format!("timeout={}", TIMEOUT_S * 10)]);
    let pid = m.pid().unwrap();
    h.set("silent");
    // A read the server never answers keeps the mount busy.
    let p = m.path("f");
    let _pending = std::thread::spawn(move || fs::read(p));
    assert!(wait_until(Duration::from_secs(20), || h.count("swallowed") > 0));
    let st = Command::new("umount")
        .arg("-l")
        .arg(&m.mnt)
        .status()
        .unwrap();
    assert!(st.success());
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let ended = m.wait_exit(EXIT_DEADLINE);
    assert!(
        ended.is_some(),
        "the daemon still runs {EXIT_DEADLINE:?} after SIGTERM:\n{}",
        m.stderr()
    );
    h.set("");
}
