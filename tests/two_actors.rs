//! Two programs at once on one mount, or a program on the mount and a change on the server:
//! what single-actor tests cannot see (issue 19). An appender and `cat`s of the same file; a
//! file open for reading whose name goes on the server; `make` with a queued time change.

mod support;

use std::fs;
use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// How the appending program writes.
#[derive(Debug, Clone, Copy)]
enum Appender {
    /// Python, `open(p, 'ab', buffering=0)`: one write(2) a line, a 20 ms pause every 50.
    Python,
    /// bash, `exec 3>>f`, `echo … >&3`: one write(2) a line, no pause.
    Bash,
}

const PYTHON_APPENDER: &str = r#"
import random, sys, time
path, expected, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = random.Random(seed)
lines = []
for i in range(n):
    body = "line %d " % i
    lines.append((body + "x" * (r.randint(40, 80) - len(body) - 1) + "\n").encode())
with open(expected, "wb") as e:
    e.write(b"".join(lines))
f = open(path, "ab", buffering=0)
for i, l in enumerate(lines):
    f.write(l)
    if i % 50 == 49:
        time.sleep(0.02)
f.close()
"#;

const BASH_APPENDER: &str = r#"
path=$1 expected=$2 n=$3 seed=$4
for i in $(seq "$n"); do echo "line $i seed $seed ................................"; done >"$expected"
exec 3>>"$path"
for i in $(seq "$n"); do echo "line $i seed $seed ................................" >&3; done
exec 3>&-
"#;

/// What the readers saw that they must never see.
#[derive(Default, Debug)]
struct Seen {
    snapshots: usize,
    with_nul: usize,
    not_a_prefix: usize,
    first_bad: Option<String>,
}

/// One run: `readers` programs `cat` the file through the mount while `how` appends `lines`
/// lines to it; then the server's file must be exactly what was written, and every
/// snapshot a reader took a prefix of it without NUL bytes.
fn append_while_read(
    m: &Mount,
    name: &str,
    how: Appender,
    lines: usize,
    readers: usize,
    seed: u64,
    mode: &str,
) {
    let path = m.path(name);
    let expected = m.dir.join(format!("{name}.expected"));
    let stop = Arc::new(AtomicBool::new(false));
    let snapshots: Vec<_> = (0..readers)
        .map(|_| {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let out = Command::new("cat").arg(&path).output().unwrap();
                    // Absent until the appender made it.
                    if out.status.success() {
                        got.push(out.stdout);
                    }
                }
                got
            })
        })
        .collect();
    let mut cmd = match how {
        Appender::Python => {
            let mut c = Command::new("python3");
            c.arg("-c").arg(PYTHON_APPENDER);
            c
        }
        Appender::Bash => {
            let mut c = Command::new("bash");
            c.arg("-c").arg(BASH_APPENDER).arg("appender");
            c
        }
    };
    let run = run_to_exit(
        {
            cmd.arg(&path)
                .arg(&expected)
                .arg(lines.to_string())
                .arg(seed.to_string());
            cmd
        },
        m.dir,
        Duration::from_secs(120),
    );
    stop.store(true, Ordering::SeqCst);
    let snapshots: Vec<Vec<u8>> = snapshots
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{how:?} appender failed: {}",
        run.stderr
    );
    let want = fs::read(&expected).unwrap();
    let have = fs::read(m.remote(name)).unwrap();
    if have != want {
        panic!(
            "{how:?} {mode}, {readers} readers, seed {seed}: the server has {} bytes of the {} written; {}",
            have.len(),
            want.len(),
            first_difference(&want, &have)
        );
    }
    let mut seen = Seen::default();
    for s in &snapshots {
        seen.snapshots += 1;
        let nul = s.contains(&0);
        let prefix = want.starts_with(s);
        seen.with_nul += nul as usize;
        seen.not_a_prefix += !prefix as usize;
        if (nul || !prefix) && seen.first_bad.is_none() {
            let zeros = s.iter().filter(|&&b| b == 0).count();
            let first_zero = s.iter().position(|&b| b == 0);
            let last_zero = s.iter().rposition(|&b| b == 0);
            seen.first_bad = Some(format!(
                "{} bytes, {zeros} NUL from {first_zero:?} to {last_zero:?}: {}",
                s.len(),
                first_difference(&want, s)
            ));
        }
    }
    assert!(
        seen.with_nul == 0 && seen.not_a_prefix == 0,
        "{how:?} {mode}, {readers} readers, seed {seed}: readers saw what was never written: {seen:?}"
    );
    fs::remove_file(&expected).unwrap();
}

/// Where `have` first departs from `want`, in lines.
fn first_difference(want: &[u8], have: &[u8]) -> String {
    let at = want
        .iter()
        .zip(have)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(have.len()));
    let line = want[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let show = |b: &[u8]| {
        let end = (at + 60).min(b.len());
        String::from_utf8_lossy(&b[at.min(end)..end])
            .escape_debug()
            .to_string()
    };
    format!(
        "first difference at byte {at} (line {line}): wrote {:?}, got {:?}",
        show(want),
        show(have)
    )
}

/// Runs `rounds` appends of each form with 1, 2 and 4 readers on one mount.
fn appends_with_readers(extra: &[&str], rounds: u64) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    for round in 0..rounds {
        for readers in [1, 2, 4] {
            for how in [Appender::Python, Appender::Bash] {
                let seed = round * 100 + readers as u64;
                let name = format!("log-{how:?}-{readers}-{round}");
                let lines = match how {
                    Appender::Python => 2500,
                    Appender::Bash => 3000,
                };
                append_while_read(&m, &name, how, lines, readers, seed, &format!("{extra:?}"));
            }
        }
        if rounds > 1 {
            eprintln!("{extra:?}: round {} of {rounds} passed", round + 1);
        }
    }
}

#[test]
fn appended_lines_all_land_while_others_cat_the_file() {
    appends_with_readers(&[], 1);
}

#[test]
fn appended_lines_all_land_while_others_cat_the_file_async() {
    appends_with_readers(&["async_writes"], 1);
}

/// The goal's count (200 runs of each form and reader count, each mode): by hand,
/// `cargo test --test two_actors -- --ignored`.
#[test]
#[ignore]
fn appended_lines_all_land_many_rounds() {
    let rounds = std::env::var("SFTPFS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    // `SFTPFS_MODES=default` or `=async` runs one mode only (both by default).
    let modes = std::env::var("SFTPFS_MODES").unwrap_or_else(|_| "default,async".into());
    let run = |mode: &str| modes.split(',').any(|m| m == mode);
    std::thread::scope(|t| {
        if run("default") {
            t.spawn(|| appends_with_readers(&[], rounds));
        }
        if run("async") {
            t.spawn(|| appends_with_readers(&["async_writes"], rounds));
        }
    });
}

/// A file written through the mount and opened for reading at once keeps reading to its end
/// after its name goes on the server: the server keeps an open handle's file, as a local disk
/// keeps an unlinked open file.
fn read_after_server_removal(extra: &[&str]) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
    for round in 0..5 {
        let name = format!("f{round}");
        fs::write(m.path(&name), &data).unwrap();
        if extra.contains(&"async_writes") {
            assert!(sftpfs_sync(&m.path("")).status.success());
        }
        let mut f = fs::File::open(m.path(&name)).unwrap();
        let mut first = vec![0u8; 4096];
        f.read_exact(&mut first).unwrap();
        fs::remove_file(m.remote(&name)).unwrap();
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap_or_else(|e| {
            panic!(
                "round {round}: reading on after the server removed the name: {e} (after {} bytes)",
                4096 + rest.len()
            )
        });
        first.extend_from_slice(&rest);
        assert!(
            first == data,
            "round {round}: read {} bytes, not what was written",
            first.len()
        );
    }
}

#[test]
fn a_file_open_for_reading_survives_its_name_going_on_the_server() {
    read_after_server_removal(&[]);
}

#[test]
fn a_file_open_for_reading_survives_its_name_going_on_the_server_async() {
    read_after_server_removal(&["async_writes"]);
}

/// A program writes a file on without pause through a slow link, so that its queue of writes
/// never empties; meanwhile another program stats it by name, and gets an answer once what
/// was written before it asked has landed, not when the writer stops.
#[test]
fn a_stat_beside_a_writer_that_never_pauses_is_answered() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let p = support::proxy::Proxy::start(s.port);
    p.delay(Duration::from_millis(20));
    let m = Mount::via_port(&s, p.port(), "w", &[]);
    const CAP: u64 = 1 << 29;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (m.path("big"), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::File::create(path).unwrap();
            let chunk = vec![7u8; 64 << 10];
            let mut written = 0u64;
            while !stop.load(Ordering::SeqCst) && written < CAP {
                f.write_all(&chunk).unwrap();
                written += chunk.len() as u64;
            }
            f.sync_all().unwrap();
            written
        })
    };
    let remote = s.remote("w/big");
    assert!(
        wait_until(Duration::from_secs(60), || {
            fs::metadata(&remote).is_ok_and(|md| md.len() > 0)
        }),
        "the first writes never landed"
    );
    let run = run_to_exit(
        {
            let mut c = Command::new("stat");
            c.arg(m.path("big"));
            c
        },
        m.dir,
        Duration::from_secs(60),
    );
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(
        run.status.is_some_and(|s| s.success()),
        "stat beside the writer: {:?} {}",
        run.status,
        run.stderr
    );
    assert!(
        written < CAP,
        "the writer stopped on its own before stat answered"
    );
    assert_eq!(fs::metadata(&remote).unwrap().len(), written);
}

const TIME_WRITER: &str = r#"
import os, sys, time
path, rounds = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR)
for i in range(rounds):
    os.utime(path, (1000000000, 1000000000))
    before = time.time()
    os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
    # The write moved the mtime to about now: a stat must never show the time set before it.
    m = os.stat(path).st_mtime
    if m < before - 5:
        print("round %d: mtime %d after a write at %d" % (i, m, before))
        sys.exit(1)
os.close(fd)
"#;

/// A write moves a file's mtime to now; a listing asked for while the write travelled (an
/// `ls -l` of its directory by another program, through a slow link) still carries the time
/// from before it, and must not be what `stat` shows afterwards.
#[test]
fn a_listing_racing_a_write_never_brings_back_the_older_time() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    for i in 0..20 {
        fs::write(s.remote(&format!("w/d/f{i}")), b"x").unwrap();
    }
    let p = support::proxy::Proxy::start(s.port);
    p.delay(Duration::from_millis(15));
    let m = Mount::via_port(&s, p.port(), "w", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let lister = {
        let (dir, stop) = (m.path("d"), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let _ = Command::new("ls").arg("-l").arg(&dir).output();
            }
        })
    };
    let run = run_to_exit(
        {
            let mut c = Command::new("python3");
            c.arg("-c").arg(TIME_WRITER).arg(m.path("d/f3")).arg("150");
            c
        },
        m.dir,
        Duration::from_secs(120),
    );
    stop.store(true, Ordering::SeqCst);
    lister.join().unwrap();
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{}{}",
        run.stdout,
        run.stderr
    );
}

/// `make` after `tar x`, a no-op `make`, then a source touched a second later: the next
/// `make` rebuilds that object and only it, in each of `rounds` rounds.
fn make_sees_a_touch(extra: &[&str], rounds: usize) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let tar = c_project(&s.dir, 10);
    let m = Mount::new(&s, "w", extra);
    for round in 0..rounds {
        let dir = m.path(&format!("r{round}"));
        fs::create_dir(&dir).unwrap();
        sh(&dir, "tar", &["-xf", tar.to_str().unwrap()]);
        let proj = dir.join("proj");
        make(&proj, &["-j2"]);
        let again = make(&proj, &[]);
        assert!(
            compiled(&again).is_empty(),
            "round {round}: a make right after a full build rebuilt {:?}",
            compiled(&again)
        );
        // The touch must land in a later second than the build.
        let src = proj.join("src/f07.c");
        let before = fs::metadata(&src).unwrap().modified().unwrap();
        wait_for_a_later_second(fs::metadata(proj.join("prog")).unwrap().modified().unwrap());
        sh(&proj, "touch", &["src/f07.c"]);
        let touched = fs::metadata(&src).unwrap().modified().unwrap();
        assert!(
            touched > before,
            "round {round}: touch did not move the time"
        );
        let out = make(&proj, &[]);
        let after = fs::metadata(&src).unwrap().modified().unwrap();
        assert!(
            after >= touched,
            "round {round}: the time went back from {touched:?} to {after:?} after make"
        );
        assert_eq!(
            compiled(&out),
            vec!["src/f07.o".to_string()],
            "round {round}: make after touching src/f07.c rebuilt the wrong objects:\n{out}"
        );
    }
}

#[test]
fn make_rebuilds_a_touched_source() {
    make_sees_a_touch(&[], 2);
}

#[test]
fn make_rebuilds_a_touched_source_async() {
    make_sees_a_touch(&["async_writes"], 4);
}

/// The goal's count: by hand, `cargo test --test two_actors -- --ignored make`.
#[test]
#[ignore]
fn make_rebuilds_a_touched_source_many_rounds() {
    make_sees_a_touch(&["async_writes"], 100);
}

/// (opens since the mount, opens that let the kernel keep the pages it held).
fn opens(mnt: &std::path::Path) -> (u64, u64) {
    let v = status_json(mnt);
    let n = |k: &str| v["opens"][k].as_u64().expect("status --json counts opens");
    (n("total"), n("kept_pages"))
}

/// A reader's open beside a writer on the same mount leaves the kernel the pages the
/// writes went through: dropping them can land between a write's copy into a page and its
/// WRITE, and a READ that overtakes the WRITE then leaves zeros in the page (the NUL bytes
/// of issue 19, seen once in 500 runs of the loop above). Counted in the mount's own tally
/// of its answers, as that race is too rare to wait for and the kernel may evict pages at
/// will (bytes read again are no measure: this machine drops cached pages of idle files);
/// a change on the server's side is still seen by the next open.
fn pages_kept_beside_own_writes(extra: &[&str]) {
    use std::io::Write;
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    let body: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(m.path("f"), &body).unwrap();
    let mut want = body.clone();
    let before = opens(&m.path(""));
    let mut w = fs::OpenOptions::new()
        .append(true)
        .open(m.path("f"))
        .unwrap();
    let after = opens(&m.path(""));
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 1),
        "the writer's open dropped the pages its own write made"
    );
    for i in 0..3 {
        let line = format!("appended line {i}\n");
        w.write_all(line.as_bytes()).unwrap();
        want.extend_from_slice(line.as_bytes());
        let before = opens(&m.path(""));
        let got = fs::read(m.path("f")).unwrap();
        let after = opens(&m.path(""));
        assert!(
            got == want,
            "line {i}: read {} bytes, not what was written",
            got.len()
        );
        assert_eq!(after.0 - before.0, 1, "line {i}: one open");
        assert_eq!(
            after.1 - before.1,
            1,
            "line {i}: a reader's open beside the writer dropped the pages"
        );
    }
    // Someone else changes bytes on the server, the size unchanged: the next open sees it.
    if extra.contains(&"async_writes") {
        assert!(sftpfs_sync(&m.path("")).status.success());
    }
    {
        use std::os::unix::fs::FileExt;
        let theirs = fs::OpenOptions::new()
            .write(true)
            .open(m.remote("f"))
            .unwrap();
        theirs.write_all_at(b"THEIRS", 1000).unwrap();
        // A time of its own: SFTP's seconds cannot tell two changes in one second apart.
        theirs
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
    }
    want[1000..1006].copy_from_slice(b"THEIRS");
    let before = opens(&m.path(""));
    let got = fs::read(m.path("f")).unwrap();
    let after = opens(&m.path(""));
    assert!(
        got == want,
        "their change on the server not seen by the next open"
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 0),
        "the open after their change kept the pages"
    );
    drop(w);
    assert_eq!(fs::read(m.remote("f")).unwrap(), want);
}

#[test]
fn a_readers_open_beside_the_writer_keeps_the_pages_its_writes_made() {
    pages_kept_beside_own_writes(&[]);
}

#[test]
fn a_readers_open_beside_the_writer_keeps_the_pages_its_writes_made_async() {
    pages_kept_beside_own_writes(&["async_writes"]);
}

/// The same contract as `append_while_read`, with readers that open, read and close the file
/// in a loop in this process (hundreds of opens a second, where `cat` makes tens): every open
/// is a chance for the kernel to drop the file's pages while a write is between its page copy
/// and its WRITE. By hand: `SFTPFS_ROUNDS=N cargo test --test two_actors -- --ignored
/// appended_lines_with_fast_readers --nocapture`.
#[test]
#[ignore]
fn appended_lines_with_fast_readers() {
    let rounds: u64 = std::env::var("SFTPFS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let extra: Vec<&str> = match std::env::var("SFTPFS_MODES").as_deref() {
        Ok("async") => vec!["async_writes"],
        _ => vec![],
    };
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &extra);
    let mut bad = 0;
    for round in 0..rounds {
        let name = format!("fast-{round}");
        let path = m.path(&name);
        fs::write(&path, b"").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (path, stop) = (path.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (mut n, mut nul) = (0usize, 0usize);
                    while !stop.load(Ordering::SeqCst) {
                        let s = fs::read(&path).unwrap();
                        n += 1;
                        if s.contains(&0) {
                            nul += 1;
                        }
                    }
                    (n, nul)
                })
            })
            .collect();
        let mut want = Vec::new();
        {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            for i in 0..3000 {
                let l = format!("line {i} round {round} ................................\n");
                f.write_all(l.as_bytes()).unwrap();
                want.extend_from_slice(l.as_bytes());
            }
        }
        stop.store(true, Ordering::SeqCst);
        let (mut n, mut nul) = (0, 0);
        for r in readers {
            let (a, b) = r.join().unwrap();
            n += a;
            nul += b;
        }
        let have = fs::read(m.remote(&name)).unwrap();
        let lost = have != want;
        eprintln!(
            "round {round}: {n} reads, {nul} with NUL, server {}",
            if lost { "DIFFERS" } else { "ok" }
        );
        bad += (nul > 0 || lost) as usize;
    }
    assert_eq!(
        bad, 0,
        "rounds where a reader saw NUL or the server differs"
    );
}
