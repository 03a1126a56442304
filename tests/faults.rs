//! Faults made real: connections killed (SIGKILL of the sshd processes serving the mount),
//! a frozen server (SIGSTOP), a stalled or cut link (the proxy in `support/proxy.rs`), a server
//! restarted on its port, a server gone at unmount, and `noreconnect`.
//!
//! Every mount uses `ServerAliveInterval=2,ServerAliveCountMax=2,timeout=10`: a dead or
//! stalled server must turn into an error within [`ERROR_BOUND`], never a hang. The seconds
//! measured (to the error, to recovery) are printed with `eprintln!` (`--nocapture`).

mod support;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::proxy::Proxy;
use support::*;

/// Keepalive every 2 s, lost after 2 unanswered; every request has a 10 s deadline.
const OPTS: &[&str] = &[
    "ServerAliveInterval=2",
    "ServerAliveCountMax=2",
    "timeout=10",
];
/// What the issue allows between a server going dead or silent and the error.
const ERROR_BOUND: Duration = Duration::from_secs(20);
/// How long a test waits for a blocked call before it calls it a hang (longer than the bound,
/// to measure by how much it was missed).
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// How long the mount may take to work again once the server is back (polled).
const RECOVER_DEADLINE: Duration = Duration::from_secs(60);
/// How long a big copy may take in all (a debug build is slow), faults included.
const COPY_DEADLINE: Duration = Duration::from_secs(180);
/// Size of the files copied while connections are killed.
const BIG: u64 = 64 << 20;

/// Writes `len` pseudo-random bytes (from `seed`) to `path`, in pieces.
fn write_random(path: &Path, len: u64, seed: u64) {
    let mut f = File::create(path).unwrap();
    let piece = 4 << 20;
    let mut done = 0u64;
    let mut i = 0;
    while done < len {
        let n = (len - done).min(piece);
        f.write_all(&random_bytes(
            n as usize,
            seed.wrapping_mul(1000).wrapping_add(i),
        ))
        .unwrap();
        done += n;
        i += 1;
    }
    f.sync_all().unwrap();
}

/// Compares two files byte for byte; the error names the first difference.
fn same_bytes(a: &Path, b: &Path) -> Result<(), String> {
    let (la, lb) = (
        fs::metadata(a)
            .map_err(|e| format!("{}: {e}", a.display()))?
            .len(),
        fs::metadata(b)
            .map_err(|e| format!("{}: {e}", b.display()))?
            .len(),
    );
    if la != lb {
        return Err(format!(
            "sizes differ: {} has {la} bytes, {} has {lb}",
            a.display(),
            b.display()
        ));
    }
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut off = 0u64;
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return Ok(());
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            let i = (0..n).find(|&i| ba[i] != bb[i]).unwrap();
            return Err(format!(
                "{} and {} differ at byte {}",
                a.display(),
                b.display(),
                off + i as u64
            ));
        }
        off += n as u64;
    }
}

fn len_of(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn signal(child: &Child, sig: i32) {
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Waits for `child` with a deadline; kills it at the deadline and panics.
fn wait_child(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (and reaped) on drop, so that a failing test leaves none behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        signal(&self.0, libc::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` on its own thread and waits at most `deadline` for it: `Err` with the time
/// waited when it did not finish (the thread is left behind, stuck in the mount; the mount's
/// cleanup ends it). `Ok` with the result and the time it took otherwise.
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

/// Asserts that an operation on a dead or silent server failed (EIO or ETIMEDOUT) within
/// [`ERROR_BOUND`]; returns the seconds it took.
#[track_caller]
fn assert_error_in_bound<T: std::fmt::Debug>(
    what: &str,
    r: Result<(io::Result<T>, Duration), Duration>,
) -> f64 {
    let (res, took) = r.unwrap_or_else(|waited| {
        panic!("{what}: still blocked after {waited:?} (bound {ERROR_BOUND:?})")
    });
    assert!(took < ERROR_BOUND, "{what}: took {took:?}");
    let e = match res {
        Ok(v) => panic!("{what}: succeeded ({v:?}) although the server cannot answer"),
        Err(e) => e,
    };
    assert!(
        matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ETIMEDOUT)),
        "{what}: expected EIO or ETIMEDOUT, got {e}"
    );
    took.as_secs_f64()
}

/// Polls `probe` until it succeeds; returns the seconds it took, or panics at
/// [`RECOVER_DEADLINE`]. Each probe runs bounded, so a hang fails the test too.
fn wait_recovered(what: &str, probe: impl Fn() -> io::Result<()> + Send + Sync + 'static) -> f64 {
    let probe = std::sync::Arc::new(probe);
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < RECOVER_DEADLINE {
        let p = probe.clone();
        match bounded(ERROR_BOUND, move || p()) {
            Ok((Ok(()), _)) => return start.elapsed().as_secs_f64(),
            Ok((Err(e), _)) => last = e.to_string(),
            Err(waited) => panic!("{what}: a probe blocked for {waited:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: the mount did not work again within {RECOVER_DEADLINE:?}; last error: {last}");
}

/// A server with `w/` made, `files` written into it (name, content).
fn server_with(files: &[(&str, &[u8])]) -> Sshd {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    for (name, data) in files {
        fs::write(s.remote(&format!("w/{name}")), data).unwrap();
    }
    s
}

/// Reads and checks a small file through the mount, so that connections are up.
#[track_caller]
fn warm_up(m: &Mount, name: &str, expect: &[u8]) {
    assert_eq!(fs::read(m.path(name)).unwrap(), expect);
}

// ---------------------------------------------------------------------------------------------
// Connections killed while data flows

#[test]
fn kill_mid_read_the_read_completes_with_the_right_bytes() {
    let s = server_with(&[]);
    write_random(&s.remote("w/big"), BIG, 11);
    let m = Mount::new(&s, "w", OPTS);
    let out = s.local("big.copy");
    let mut cat = Reaped(
        Command::new("cat")
            .arg(m.path("big"))
            .stdout(File::create(&out).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();

    // First kill: with `cat` stopped between two reads, a quarter of the way in; it must go
    // on from where it was on new connections.
    assert!(
        wait_until(COPY_DEADLINE, || len_of(&out) >= BIG / 4),
        "cat made no progress"
    );
    signal(&cat.0, libc::SIGSTOP);
    let killed = s.kill_connections();
    assert!(killed > 0, "no sshd process was serving the mount");
    let at = len_of(&out);
    assert!(at < BIG, "cat had already read everything before the kill");
    signal(&cat.0, libc::SIGCONT);

    // Second kill: while it runs.
    let mut second = false;
    if wait_until(COPY_DEADLINE, || {
        len_of(&out) >= BIG * 3 / 4 || cat.0.try_wait().unwrap().is_some()
    }) && len_of(&out) < BIG
    {
        second = s.kill_connections() > 0;
    }

    let status = wait_child(&mut cat.0, COPY_DEADLINE, "cat");
    let mut err = String::new();
    cat.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "cat failed ({status}): {err}");
    same_bytes(&s.remote("w/big"), &out).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "faults: kill mid-read: {killed} processes killed at byte {at}{}; cat of {} MiB \
         completed correctly in {:.1} s",
        if second { ", and again at 3/4" } else { "" },
        BIG >> 20,
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn kill_mid_write_cp_succeeds_with_identical_bytes_or_fails() {
    let s = server_with(&[]);
    let src = s.local("big.src");
    write_random(&src, BIG, 12);
    let m = Mount::new(&s, "w", OPTS);
    let dst = m.remote("big");
    let mut cp = Reaped(
        Command::new("cp")
            .arg(&src)
            .arg(m.path("big"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();

    assert!(
        wait_until(COPY_DEADLINE, || len_of(&dst) >= BIG / 4),
        "cp made no progress"
    );
    signal(&cp.0, libc::SIGSTOP);
    let killed = s.kill_connections();
    assert!(killed > 0, "no sshd process was serving the mount");
    let at = len_of(&dst);
    signal(&cp.0, libc::SIGCONT);

    let mut second = false;
    if wait_until(COPY_DEADLINE, || {
        len_of(&dst) >= BIG * 3 / 4 || cp.0.try_wait().unwrap().is_some()
    }) && cp.0.try_wait().unwrap().is_none()
    {
        second = s.kill_connections() > 0;
    }

    let status = wait_child(&mut cp.0, COPY_DEADLINE, "cp");
    let mut err = String::new();
    cp.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    if status.success() {
        // Never exit 0 with different bytes.
        same_bytes(&src, &dst).unwrap_or_else(|e| panic!("cp exited 0 but {e}"));
        eprintln!(
            "faults: kill mid-write: {killed} processes killed at server size {at}{}; cp of {} \
             MiB completed, server file identical, in {took:.1} s",
            if second { ", and again at 3/4" } else { "" },
            BIG >> 20
        );
    } else {
        eprintln!(
            "faults: kill mid-write: cp FAILED ({status}) after {took:.1} s (allowed, but the \
             issue wants it to complete): {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A silent server: errors within the bound, then recovery

/// Starts, at the same time, a read through a descriptor opened before the fault (at an
/// offset not read yet, so not in the page cache) and an open + read of a file never opened
/// (its name may be known from a cached listing, but OPEN must reach the server); both must
/// fail within the bound. Metadata alone (`stat`) could be answered from the caches.
fn reads_fail_in_bound(m: &Mount, case: &str, opened: File, never_opened: &str) -> f64 {
    let path = m.path(never_opened);
    let open = std::thread::spawn(move || bounded(HANG_LIMIT, move || fs::read(&path)));
    let read = bounded(HANG_LIMIT, move || {
        let mut buf = vec![0u8; 4096];
        opened.read_at(&mut buf, 0).map(|_| ())
    });
    let open = open.join().unwrap().map(|(r, d)| (r.map(|_| ()), d));
    let secs = |r: &Result<(io::Result<()>, Duration), Duration>| match r {
        Ok((_, d)) => format!("{:.1} s", d.as_secs_f64()),
        Err(d) => format!("> {:.0} s (still blocked)", d.as_secs_f64()),
    };
    eprintln!(
        "faults: {case}: open+read of a new file answered after {}, read of an open file after {}",
        secs(&open),
        secs(&read)
    );
    let t_open = assert_error_in_bound(&format!("{case}: open+read"), open);
    let t_read = assert_error_in_bound(&format!("{case}: read of an open file"), read);
    t_open.max(t_read)
}

/// The mount works again: the file never opened reads right, and so does the descriptor
/// opened before the fault. Returns the seconds until then.
fn wait_reads_recover(m: &Mount, case: &str, g: &File, g_data: &[u8], h_data: &[u8]) -> f64 {
    let path = m.path("h");
    let want = h_data.to_vec();
    let t = wait_recovered(case, move || {
        if fs::read(&path)? == want {
            Ok(())
        } else {
            Err(io::Error::other("wrong bytes"))
        }
    });
    let mut buf = vec![0u8; g_data.len()];
    g.read_exact_at(&mut buf, 0)
        .unwrap_or_else(|e| panic!("{case}: the file opened before the fault: {e}"));
    assert!(buf == g_data, "{case}: wrong bytes from the re-opened file");
    t
}

#[test]
fn stalled_link_errors_within_the_bound_then_recovers() {
    let (g_data, h_data) = (random_bytes(1 << 20, 21), random_bytes(1 << 20, 121));
    let s = server_with(&[("f", b"warm"), ("g", &g_data), ("h", &h_data)]);
    let p = Proxy::start(s.port);
    let m = Mount::via_port(&s, p.port(), "w", OPTS);
    warm_up(&m, "f", b"warm");
    let g = File::open(m.path("g")).unwrap();

    p.stall();
    let t_err = reads_fail_in_bound(&m, "proxy stall", g.try_clone().unwrap(), "h");
    p.resume();
    let t_rec = wait_reads_recover(&m, "proxy stall", &g, &g_data, &h_data);
    eprintln!("faults: proxy stall: error after {t_err:.1} s, recovered {t_rec:.1} s after resume");
}

#[test]
fn frozen_server_errors_within_the_bound_then_recovers() {
    let (g_data, h_data) = (random_bytes(1 << 20, 22), random_bytes(1 << 20, 122));
    let s = server_with(&[("f", b"warm"), ("g", &g_data), ("h", &h_data)]);
    let m = Mount::new(&s, "w", OPTS);
    warm_up(&m, "f", b"warm");
    let g = File::open(m.path("g")).unwrap();

    // The listener too: new connections get no answer either.
    let frozen = s.freeze(true);
    let t_err = reads_fail_in_bound(&m, "SIGSTOP of sshd", g.try_clone().unwrap(), "h");
    frozen.thaw();
    let t_rec = wait_reads_recover(&m, "SIGSTOP of sshd", &g, &g_data, &h_data);
    eprintln!(
        "faults: SIGSTOP of sshd: error after {t_err:.1} s, recovered {t_rec:.1} s after SIGCONT"
    );
}

#[test]
fn frozen_connections_with_the_listener_alive_do_not_hang() {
    // Only the processes serving the connections stop; new connections would work. Whatever
    // the answer (an error, or success on a new connection), it comes within the bound.
    let s = server_with(&[("f", b"warm"), ("g", b"still here")]);
    let m = Mount::new(&s, "w", OPTS);
    warm_up(&m, "f", b"warm");
    let frozen = s.freeze(false);
    let path = m.path("g");
    let r = bounded(HANG_LIMIT, move || fs::read(&path));
    let (res, took) = r.unwrap_or_else(|w| panic!("read still blocked after {w:?}"));
    assert!(took < ERROR_BOUND, "read took {took:?}");
    match &res {
        Ok(d) => assert_eq!(d, b"still here"),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ETIMEDOUT)),
            "expected EIO or ETIMEDOUT, got {e}"
        ),
    }
    drop(frozen);
    let path = m.path("g");
    let t_rec = wait_recovered("frozen connections", move || fs::read(&path).map(|_| ()));
    eprintln!(
        "faults: frozen connections, listener alive: read {} after {:.1} s; works {t_rec:.1} s \
         after SIGCONT",
        if res.is_ok() { "succeeded" } else { "failed" },
        took.as_secs_f64()
    );
}

#[test]
fn cut_link_recovers_and_open_files_keep_working() {
    let data = random_bytes(3 << 20, 23);
    let s = server_with(&[("f", b"warm"), ("g", &data)]);
    let p = Proxy::start(s.port);
    let m = Mount::via_port(&s, p.port(), "w", OPTS);
    warm_up(&m, "f", b"warm");
    let g = File::open(m.path("g")).unwrap();
    let mut head = vec![0u8; 1000];
    g.read_exact_at(&mut head, 0).unwrap();
    let w = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(m.path("out"))
        .unwrap();
    w.write_all_at(b"before the cut|", 0).unwrap();
    w.sync_all().unwrap();
    let before = p.accepted();

    p.cut();
    let start = Instant::now();
    let mut tail = vec![0u8; 1 << 20];
    g.read_exact_at(&mut tail, 2 << 20)
        .expect("read of an open file after the cut");
    assert!(tail == data[2 << 20..3 << 20], "wrong bytes after the cut");
    w.write_all_at(b"after the cut", 15).unwrap();
    w.sync_all().expect("fsync after the cut");
    let took = start.elapsed().as_secs_f64();
    assert!(p.accepted() > before, "no new connection was made");
    assert_eq!(
        fs::read(m.remote("out")).unwrap(),
        b"before the cut|after the cut"
    );
    eprintln!("faults: proxy cut: open files read and wrote again after {took:.1} s");
}

#[test]
fn latency_is_not_a_fault() {
    // 2 x 50 ms each way: everything works, only slower.
    let data = random_bytes(4 << 20, 24);
    let s = server_with(&[("g", &data)]);
    let p = Proxy::start(s.port);
    p.delay(Duration::from_millis(50));
    let m = Mount::via_port(&s, p.port(), "w", OPTS);
    assert!(fs::read(m.path("g")).unwrap() == data);
    fs::write(m.path("h"), &data).unwrap();
    assert!(fs::read(m.remote("h")).unwrap() == data);
}

// ---------------------------------------------------------------------------------------------
// The server restarted, or gone

#[test]
fn server_restarted_on_the_same_port_mount_and_open_files_recover() {
    let data = random_bytes(4 << 20, 31);
    let s = server_with(&[("f", b"warm"), ("g", &data), ("h", b"never opened before")]);
    let m = Mount::new(&s, "w", OPTS);
    warm_up(&m, "f", b"warm");
    let g = File::open(m.path("g")).unwrap();
    let mut head = vec![0u8; 100];
    g.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(head, data[..100]);
    let w = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(m.path("out"))
        .unwrap();
    w.write_all_at(b"before|", 0).unwrap();
    w.sync_all().unwrap();

    s.restart();
    let start = Instant::now();
    // Open descriptors keep working: a read far from what was read before (not cached),
    // a write and its fsync.
    let mut tail = vec![0u8; 1 << 20];
    g.read_exact_at(&mut tail, 3 << 20)
        .expect("read of a file opened before the restart");
    assert!(tail == data[3 << 20..], "wrong bytes after the restart");
    let t_fd = start.elapsed().as_secs_f64();
    w.write_all_at(b"after", 7).unwrap();
    w.sync_all()
        .expect("fsync of a file opened before the restart");
    drop(w);
    assert_eq!(fs::read(m.remote("out")).unwrap(), b"before|after");
    assert_eq!(fs::read(m.path("h")).unwrap(), b"never opened before");
    eprintln!(
        "faults: server restarted: open file read again {t_fd:.1} s after the restart; all \
         checks done after {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn server_restarted_while_idle_then_used() {
    // The restart happens while nothing is asked; the next uses find dead connections.
    let s = server_with(&[("f", b"warm"), ("h", b"never opened before")]);
    let m = Mount::new(&s, "w", OPTS);
    warm_up(&m, "f", b"warm");
    s.restart();
    let path = m.path("h");
    let t = wait_recovered("restart", move || {
        (fs::read(&path)? == b"never opened before")
            .then_some(())
            .ok_or_else(|| io::Error::other("wrong content"))
    });
    // Recovery should be at once: the server was back before the first request.
    eprintln!("faults: server restarted while idle: the mount works after {t:.1} s");
    fs::write(m.path("written"), "w").unwrap();
    assert_eq!(fs::read(m.remote("written")).unwrap(), b"w");
}

/// Ends the mount with `fusermount3 -u` while the server is gone and checks the process exits.
fn unmount_while_gone(m: &mut Mount, case: &str) {
    let start = Instant::now();
    let status = m.stop(Stop::Fusermount);
    eprintln!(
        "faults: {case}: fusermount3 -u done and the process exited ({status}) after {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn unmount_works_while_the_server_is_killed() {
    let s = server_with(&[("f", b"warm"), ("h", b"never opened")]);
    let mut m = Mount::new(&s, "w", OPTS);
    warm_up(&m, "f", b"warm");
    s.kill_server();
    let path = m.path("h");
    let r = bounded(HANG_LIMIT, move || fs::read(&path));
    let t = assert_error_in_bound("open+read with the server killed", r);
    eprintln!("faults: server killed: open+read failed after {t:.1} s");
    unmount_while_gone(&mut m, "server killed");
}

#[test]
fn unmount_works_while_the_proxy_refuses_with_a_request_in_flight() {
    let s = server_with(&[("f", b"warm"), ("g", b"open file"), ("h", b"never opened")]);
    let p = Proxy::start(s.port);
    let mut m = Mount::via_port(&s, p.port(), "w", OPTS);
    warm_up(&m, "f", b"warm");
    let g = File::open(m.path("g")).unwrap();
    p.refuse();
    p.cut();
    // An open in flight (waiting for a reconnect that is refused) and a file held open: only
    // a lazy unmount can take the mount away now; the process ends once the file is closed.
    let path = m.path("h");
    let opening = std::thread::spawn(move || bounded(HANG_LIMIT, move || fs::read(&path)));
    let start = Instant::now();
    let run = run_to_exit(
        {
            let mut c = Command::new("umount");
            c.arg("-l").arg(&m.mnt);
            c
        },
        &s.dir,
        EXIT_DEADLINE,
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "umount -l: {:?} {}",
        run.status,
        run.stderr
    );
    assert!(!is_mounted(&m.mnt), "still mounted after umount -l");
    let r = opening.join().unwrap();
    let (res, took) = r.unwrap_or_else(|w| panic!("open+read still blocked after {w:?}"));
    assert!(
        res.is_err(),
        "open+read succeeded with the server unreachable"
    );
    assert!(took < ERROR_BOUND, "open+read took {took:?}");
    drop(g);
    let status = m
        .wait_exit(EXIT_DEADLINE)
        .unwrap_or_else(|| panic!("the process did not exit after umount -l:\n{}", m.stderr()));
    assert!(p.refused() > 0, "no reconnect was tried");
    eprintln!(
        "faults: proxy refusing: umount -l done, open+read failed after {:.1} s ({}), process \
         exited ({status}) {:.1} s after the unmount began",
        took.as_secs_f64(),
        res.unwrap_err(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn unmount_works_while_the_server_is_frozen() {
    // SIGSTOP: nothing answers and nothing closes; unmounting must not wait for the server.
    let s = server_with(&[("f", b"warm")]);
    let mut m = Mount::new(&s, "w", OPTS);
    warm_up(&m, "f", b"warm");
    let frozen = s.freeze(true);
    unmount_while_gone(&mut m, "server frozen");
    drop(frozen);
}

#[test]
fn unmount_works_while_the_link_is_stalled_after_closing_files() {
    // Files closed just before: their CLOSE (and the written data) cannot reach the server;
    // the unmount and the exit of the process must not wait for it beyond the bound.
    let s = server_with(&[("f", b"warm"), ("g", b"read")]);
    let p = Proxy::start(s.port);
    let mut m = Mount::via_port(&s, p.port(), "w", OPTS);
    warm_up(&m, "f", b"warm");
    let g = File::open(m.path("g")).unwrap();
    let mut buf = [0u8; 4];
    g.read_exact_at(&mut buf, 0).unwrap();
    let w = File::create(m.path("written")).unwrap();
    w.write_all_at(b"never flushed", 0).unwrap();
    p.stall();
    let start = Instant::now();
    drop(g);
    // close(2) of a written file reports (at the latest) the write's fate: wait for it, bounded.
    let closed = bounded(HANG_LIMIT, move || drop(w));
    let t_close = closed
        .unwrap_or_else(|w| panic!("close of a written file still blocked after {w:?}"))
        .1;
    assert!(t_close < ERROR_BOUND, "close took {t_close:?}");
    unmount_while_gone(&mut m, "link stalled, files just closed");
    eprintln!(
        "faults: link stalled: close of a written file returned after {:.1} s; unmounted and \
         exited {:.1} s after the stall",
        t_close.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn unmount_works_while_the_link_is_stalled_with_a_read_in_flight() {
    let s = server_with(&[("f", b"warm"), ("g", &random_bytes(1 << 20, 41))]);
    let p = Proxy::start(s.port);
    let mut m = Mount::via_port(&s, p.port(), "w", OPTS);
    warm_up(&m, "f", b"warm");
    let g = File::open(m.path("g")).unwrap();
    p.stall();
    let start = Instant::now();
    let reading = std::thread::spawn(move || {
        bounded(HANG_LIMIT, move || {
            let mut buf = vec![0u8; 4096];
            g.read_at(&mut buf, 0).map(|_| ())
        })
    });
    let run = run_to_exit(
        {
            let mut c = Command::new("umount");
            c.arg("-l").arg(&m.mnt);
            c
        },
        &s.dir,
        EXIT_DEADLINE,
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "umount -l: {:?} {}",
        run.status,
        run.stderr
    );
    assert!(!is_mounted(&m.mnt), "still mounted after umount -l");
    // The read (and with it the last descriptor) ends within the bound; then the process.
    let r = reading.join().unwrap();
    let t_read = r.as_ref().map(|(_, d)| d.as_secs_f64()).unwrap_or(f64::NAN);
    let exited = m.wait_exit(ERROR_BOUND);
    let t_exit = start.elapsed().as_secs_f64();
    eprintln!(
        "faults: link stalled, read in flight, umount -l: read answered after {t_read:.1} s, \
         process {} {t_exit:.1} s after the stall",
        if exited.is_some() {
            "exited"
        } else {
            "STILL RUNNING"
        }
    );
    assert_error_in_bound("read in flight at umount -l", r);
    assert!(
        exited.is_some(),
        "the process did not exit within {ERROR_BOUND:?} of its last file being closed:\n{}",
        m.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// noreconnect

#[test]
fn noreconnect_fails_with_eio_after_a_kill_and_never_hangs() {
    let names: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    let mut files: Vec<(&str, &[u8])> = vec![("f", b"warm"), ("g", b"open file")];
    files.extend(names.iter().map(|n| (n.as_str(), &b"never opened"[..])));
    let s = server_with(&files);
    let mut opts = OPTS.to_vec();
    opts.push("noreconnect");
    let m = Mount::new(&s, "w", &opts);
    warm_up(&m, "f", b"warm");
    let g = File::open(m.path("g")).unwrap();
    let killed = s.kill_connections();
    assert!(killed > 0);

    let mut worst = 0f64;
    // Several opens (OPEN must reach the server), so that every member of the pool is asked,
    // also those that had not connected yet.
    for n in &names {
        let path = m.path(n);
        let r = bounded(HANG_LIMIT, move || fs::read(&path));
        let (res, took) = r.unwrap_or_else(|w| panic!("open {n} still blocked after {w:?}"));
        assert!(took < ERROR_BOUND, "open {n} took {took:?}");
        assert_errno(
            res,
            libc::EIO,
            &format!("open+read of {n} after the kill with noreconnect"),
        );
        worst = worst.max(took.as_secs_f64());
    }
    let r = bounded(HANG_LIMIT, move || {
        let mut buf = [0u8; 9];
        g.read_exact_at(&mut buf, 0)
    });
    let (res, took) = r.unwrap_or_else(|w| panic!("read still blocked after {w:?}"));
    assert_errno(res, libc::EIO, "read of an open file with noreconnect");
    // No new connection was made.
    assert!(
        s.connection_pids().is_empty(),
        "noreconnect, yet the server serves connections again: {:?}",
        s.connection_pids()
    );
    eprintln!(
        "faults: noreconnect: opens failed with EIO within {worst:.2} s, the open file's read \
         within {:.2} s",
        took.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// The proxy itself (no sshd): what the tests above rely on

/// An echo server on 127.0.0.1; returns its port. Its threads end with their connections.
fn echo_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = io::copy(&mut r, &mut w);
            });
        }
    });
    port
}

fn echo_once(c: &mut std::net::TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
    c.write_all(data)?;
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn proxy_delays_each_direction_and_keeps_order_and_bytes() {
    let p = Proxy::start(echo_server());
    p.delay(Duration::from_millis(40));
    let mut c = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    let start = Instant::now();
    assert_eq!(echo_once(&mut c, b"ping").unwrap(), b"ping");
    let rtt = start.elapsed();
    assert!(
        rtt >= Duration::from_millis(80),
        "round trip {rtt:?} < 2 x 40 ms"
    );
    // Many chunks in flight at once, written from one thread and read from another: all
    // arrive, in order.
    let data = random_bytes(8 << 20, 77);
    let mut w = c.try_clone().unwrap();
    let send = data.clone();
    let writer = std::thread::spawn(move || {
        for piece in send.chunks(100_000) {
            w.write_all(piece).unwrap();
        }
    });
    let mut got = vec![0u8; data.len()];
    c.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == data, "bytes changed or reordered through the proxy");
}

#[test]
fn proxy_stall_holds_bytes_and_resume_delivers_them() {
    let p = Proxy::start(echo_server());
    let mut c = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    assert_eq!(echo_once(&mut c, b"before").unwrap(), b"before");
    p.stall();
    c.write_all(b"held").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4];
    let r = c.read(&mut buf);
    assert!(
        r.as_ref().is_err_and(|e| matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )),
        "bytes came through a stalled proxy: {r:?}"
    );
    p.resume();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"held");
}

#[test]
fn proxy_cut_closes_current_connections_and_refuse_closes_new_ones() {
    let p = Proxy::start(echo_server());
    let mut c = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    assert_eq!(echo_once(&mut c, b"x").unwrap(), b"x");
    assert_eq!(p.live(), 1);
    p.cut();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1];
    assert!(
        matches!(c.read(&mut buf), Ok(0) | Err(_)),
        "a cut connection still delivers"
    );
    // New connections still work.
    let mut c2 = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    assert_eq!(echo_once(&mut c2, b"y").unwrap(), b"y");
    p.refuse();
    let mut c3 = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    c3.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(
        matches!(c3.read(&mut buf), Ok(0) | Err(_)),
        "a refused connection was served"
    );
    assert!(p.refused() >= 1);
    p.admit();
    let mut c4 = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
    assert_eq!(echo_once(&mut c4, b"z").unwrap(), b"z");
}

#[test]
fn proxy_drop_is_bounded_with_stalled_connections() {
    let p = Proxy::start(echo_server());
    p.delay(Duration::from_millis(20));
    let mut conns = Vec::new();
    for _ in 0..5 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", p.port())).unwrap();
        assert_eq!(echo_once(&mut c, b"a").unwrap(), b"a");
        conns.push(c);
    }
    p.stall();
    for c in &mut conns {
        c.write_all(&[0u8; 100_000]).unwrap();
    }
    let start = Instant::now();
    let dropped = bounded(Duration::from_secs(20), move || drop(p));
    assert!(dropped.is_ok(), "dropping the proxy blocked");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "dropping the proxy took {took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Open files after a kill, once the pool has reconnected

/// `pwrite` of all of `data`, as one system call: its own count, not a loop's.
fn pwrite_once(f: &File, data: &[u8], off: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor and buffer.
    let n = unsafe {
        libc::pwrite(
            f.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            off as libc::off_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// After a kill, every request on a file opened before it works on the new connections
/// (copy_file_range failed with EIO); and a write that spans a page boundary at an unaligned
/// offset (the kernel sends it as two WRITEs) to a file that cannot be re-opened (renamed
/// over while open) fails whole or reports its loss, never as a short count of lost bytes.
#[test]
fn after_a_kill_open_files_copy_and_write_and_no_write_is_cut_short() {
    let data = random_bytes(200_000, 31);
    let s = server_with(&[("f", b"warm"), ("src", &data), ("other", b"new")]);
    let m = Mount::new(&s, "w", OPTS);
    warm_up(&m, "f", b"warm");
    let rw = |name: &str| {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(m.path(name))
            .unwrap()
    };
    let src = File::open(m.path("src")).unwrap();
    let dst = rw("dst");
    let victim = rw("victim");
    victim.write_all_at(&[1; 20_000], 0).unwrap();
    victim.sync_all().unwrap();
    fs::rename(m.path("other"), m.path("victim")).unwrap();

    assert!(
        s.kill_connections() > 0,
        "no sshd process was serving the mount"
    );
    wait_recovered("read of a file after the kill", {
        let p = m.path("f");
        move || fs::read(&p).map(drop)
    });

    use std::os::fd::AsRawFd;
    let (mut off_in, mut off_out) = (1000i64, 0i64);
    // SAFETY: valid descriptors and offsets.
    let copied = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            &mut off_in,
            dst.as_raw_fd(),
            &mut off_out,
            100_000,
            0,
        )
    };
    assert_eq!(
        copied,
        100_000,
        "copy_file_range after the kill: {}",
        io::Error::last_os_error()
    );
    // At an offset inside a page not in the page cache, longer than the rest of the page.
    let piece = random_bytes(60_000, 32);
    let at = 10 * 4096 + 1000;
    assert_eq!(pwrite_once(&dst, &piece, 100_000).unwrap(), piece.len());
    dst.sync_all().unwrap();
    let mut want = data[1000..101_000].to_vec();
    want.extend_from_slice(&piece);
    assert!(fs::read(m.remote("dst")).unwrap() == want, "dst differs");

    match pwrite_once(&victim, &piece, at) {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        // Whole (a mount that can keep an unlinked file across connections).
        Ok(n) => assert_eq!(n, piece.len(), "a short write after the kill"),
    }
    assert_eq!(fs::read(m.remote("victim")).unwrap(), b"new");
}
