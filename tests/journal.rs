//! The journal of the asynchronous mode (issue 22): what a mount answered is on local disk,
//! and reaches the server after anything — a `kill -9` of the daemon at any point, the
//! server gone for a while, a journal torn at its end — or is kept beside a version someone
//! else wrote. Real sshd, real kills (by pid), the server's side checked.

mod support;

use std::fs;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use support::proxy::Proxy;
use support::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// The mount's options: asynchronous, the journal in `dir`.
fn opts(dir: &Path) -> Vec<String> {
    vec![
        "async_writes".into(),
        format!("journal_dir={}", dir.display()),
    ]
}

/// `opts`, and the mount connects again by itself when the server comes back.
fn opts_reconnecting(dir: &Path) -> Vec<String> {
    let mut o = opts(dir);
    o.push("reconnect".into());
    o
}

fn mount<'a>(s: &'a Sshd, p: &Proxy, remote: &str, journal: &Path) -> Mount<'a> {
    let o = opts(journal);
    let o: Vec<&str> = o.iter().map(String::as_str).collect();
    Mount::via_port(s, p.port(), remote, &o)
}

/// The first file is made synchronously (it tells the owner new files get).
fn first_file(m: &Mount) {
    fs::write(m.path("first"), b"1").unwrap();
}

/// A directory made through the mount, landed: the mount knows every name in it, so a name
/// made there needs no lookup on the server (one would wait for a held link, or fail with
/// the server gone).
fn own_dir(m: &Mount, name: &str) {
    fs::create_dir(m.path(name)).unwrap();
    assert!(sftpfs_sync(&m.path("")).status.success());
}

fn queued(m: &Mount) -> u64 {
    status_json(&m.path(""))["async_writes"]["queued_operations"]
        .as_u64()
        .unwrap_or(0)
}

/// `kill -9` of the daemon by its pid; the dead mount is unmounted.
fn kill9(mut m: Mount) {
    let pid = m.pid().expect("the daemon's pid");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(
        m.wait_exit(EXIT).is_some(),
        "the killed daemon did not exit"
    );
    drop(m);
}

const EXIT: Duration = Duration::from_secs(15);

/// The one source directory under `journal_dir`.
fn journal_of(base: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    v.sort();
    v
}

/// The journal holds file data: its directories are the user's alone, its files too.
fn assert_private(base: &Path) {
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(base), 0o700, "{}", base.display());
    let dir = journal_of(base);
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

/// xorshift, for kill points and sizes.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The files a writer makes, in order: (name, data).
fn plan(seed: u64, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..n)
        .map(|i| {
            let len = if i % 40 == 17 {
                (1 << 20) + r.next(1 << 16) as usize
            } else {
                r.next(3000) as usize
            };
            (
                format!("d{}/f{i:04}", i % 3),
                random_bytes(len, seed * 10_000 + i as u64),
            )
        })
        .collect()
}

/// Writes `files` under `root` one after the other (directories first), recording each
/// whose close returned success; stops at the first error (the daemon killed).
fn writer(
    root: PathBuf,
    files: Arc<Vec<(String, Vec<u8>)>>,
) -> (Arc<Mutex<usize>>, JoinHandle<()>) {
    let closed = Arc::new(Mutex::new(0));
    let c = closed.clone();
    let h = std::thread::spawn(move || {
        for d in ["d0", "d1", "d2"] {
            if fs::create_dir(root.join(d)).is_err() {
                return;
            }
        }
        for (name, data) in files.iter() {
            let Ok(mut f) = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(root.join(name))
            else {
                return;
            };
            for chunk in data.chunks(64 << 10) {
                if f.write_all(chunk).is_err() {
                    return;
                }
            }
            // A close's own answer, not the one `drop` throws away.
            if unsafe { libc::close(f.into_raw_fd()) } != 0 {
                return;
            }
            *c.lock().unwrap() += 1;
        }
    });
    (closed, h)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    assert!(wait_until(DEADLINE, &mut cond), "never: {what}");
}

/// What the server holds under `dir` is what the writer made: every file it closed whole,
/// the one it was writing (if any) a start of its data, and nothing else (no temporary or
/// conflict names).
fn check_server(dir: &Path, files: &[(String, Vec<u8>)], closed: usize, round: &str) {
    for (name, data) in &files[..closed] {
        let got = fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{round}: closed {name} is not on the server: {e}"));
        assert!(
            got == *data,
            "{round}: {name} differs on the server ({} bytes, {} written)",
            got.len(),
            data.len()
        );
    }
    let mut names = Vec::new();
    for d in ["d0", "d1", "d2"] {
        if let Ok(rd) = fs::read_dir(dir.join(d)) {
            names.extend(rd.map(|e| format!("{d}/{}", e.unwrap().file_name().to_string_lossy())));
        }
    }
    for n in &names {
        let i = files
            .iter()
            .position(|(f, _)| f == n)
            .unwrap_or_else(|| panic!("{round}: {n} on the server was never written"));
        assert!(
            i <= closed,
            "{round}: {n} on the server, but its writer never opened it"
        );
        if i == closed {
            let got = fs::read(dir.join(n)).unwrap();
            assert!(
                files[i].1.starts_with(&got),
                "{round}: {n} (not closed) is not a start of what was written"
            );
        }
    }
    for e in fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            ["first", "d0", "d1", "d2"].contains(&n.as_str()),
            "{round}: unexpected {n} on the server"
        );
    }
}

/// One round: write through a slow link, `kill -9` at a point `seed` picks, mount again,
/// check the server. Returns how many closes were recorded before the kill, and how many
/// operations the replay sent.
fn kill_round(s: &Sshd, p: &Proxy, base: &Path, seed: u64) -> (usize, u64) {
    let mut r = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let remote = format!("w{seed}");
    let journal = base.join(format!("j{seed}"));
    fs::create_dir(s.remote(&remote)).unwrap();
    let files = Arc::new(plan(seed, 120));
    let m = mount(s, p, &remote, &journal);
    first_file(&m);
    let (closed, writer) = writer(m.path(""), files.clone());
    let at = r.next(100) as usize;
    let how = seed % 3;
    wait_for("the writer got to the kill point", || {
        *closed.lock().unwrap() >= at || writer.is_finished()
    });
    match how {
        // While operations travel over the slow link.
        0 => {}
        // With the link held: a burst answered from the journal alone, and much in flight.
        1 => {
            p.stall();
            let more = at + 1 + r.next(30) as usize;
            wait_for("closes answered while the link is held", || {
                *closed.lock().unwrap() >= more || writer.is_finished()
            });
        }
        // A moment later, wherever that falls (mid-write of a large file, mid-fdatasync).
        _ => std::thread::sleep(Duration::from_millis(r.next(300))),
    }
    let recorded = *closed.lock().unwrap();
    kill9(m);
    writer.join().unwrap();
    let recorded = recorded.max(*closed.lock().unwrap());
    p.resume();
    assert_private(&journal);
    let round = format!("seed {seed} (kill kind {how}, {recorded} closed)");
    let mut m = mount(s, p, &remote, &journal);
    // Replay came before the mount answered anything: all of it is there now.
    check_server(&s.remote(&remote), &files, recorded, &round);
    let v = status_json(&m.path(""));
    assert_eq!(v["async_writes"]["conflicts"], 0, "{round}: {v}");
    assert_eq!(v["async_writes"]["failed_operations"], 0, "{round}: {v}");
    let out = sftpfs_sync(&m.path(""));
    assert!(
        out.status.success(),
        "{round}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = &v["async_writes"]["replayed"];
    let replayed = replayed["sent"].as_u64().unwrap() + replayed["already_there"].as_u64().unwrap();
    m.stop(Stop::Fusermount);
    assert!(
        segments(&journal_of_or_none(&journal)).is_empty(),
        "{round}: segments left after a clean unmount"
    );
    (recorded, replayed)
}

fn journal_of_or_none(base: &Path) -> PathBuf {
    fs::read_dir(base)
        .ok()
        .and_then(|mut d| d.next())
        .map_or(base.join("gone"), |e| e.unwrap().path())
}

fn kill_rounds(seeds: std::ops::Range<u64>) {
    let s = Sshd::start();
    let p = Proxy::start(s.port);
    p.delay(Duration::from_millis(15));
    let base = TempDir::new("journals");
    let (mut closes, mut replayed, mut rounds_replaying) = (0, 0, 0);
    for seed in seeds.clone() {
        let (c, r) = kill_round(&s, &p, base.path(), seed);
        closes += c;
        replayed += r;
        rounds_replaying += usize::from(r > 0);
    }
    eprintln!(
        "{} kill rounds, {closes} closes recorded before the kills, all on the server; \
         {rounds_replaying} rounds replayed {replayed} operations",
        seeds.clone().count()
    );
    // The kills came while operations waited: most rounds had something to replay.
    assert!(
        rounds_replaying * 2 > seeds.count(),
        "only {rounds_replaying} rounds had anything to replay"
    );
}

#[test]
fn kill_9_at_random_points_loses_no_closed_file() {
    kill_rounds(1..21);
}

#[test]
#[ignore = "long: 100 more kill points"]
fn kill_9_at_random_points_many_seeds() {
    kill_rounds(100..200);
}

/// The journal directory one mount made (for tests that look inside it).
fn only_segment(journal: &Path) -> PathBuf {
    let segs = segments(&journal_of(journal));
    assert!(!segs.is_empty(), "no segment in the journal");
    segs.last().unwrap().clone()
}

#[test]
fn a_torn_journal_tail_and_a_garbage_file_are_cut_reported_and_the_rest_replayed() {
    let s = Sshd::start();
    let p = Proxy::start(s.port);
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    fs::create_dir(s.remote("w")).unwrap();
    let m = mount(&s, &p, "w", &journal);
    first_file(&m);
    own_dir(&m, "sub");
    // Nothing reaches the server: all of it stays in the journal at the kill.
    p.stall();
    for i in 0..5 {
        fs::write(
            m.path(&format!("sub/f{i}")),
            format!("file {i}").repeat(100),
        )
        .unwrap();
    }
    kill9(m);
    p.resume();
    // The last record cut mid-way, as a power loss leaves it; and a file that is no segment.
    let seg = only_segment(&journal);
    let len = fs::metadata(&seg).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let dir = journal_of(&journal);
    let garbage = dir.join("00000099.seg");
    fs::write(&garbage, random_bytes(5000, 3)).unwrap();
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o600)).unwrap();

    let m = mount(&s, &p, "w", &journal);
    // Every complete record landed: files 0..4 whole (the torn record belongs to f4's
    // last operation, its close, or attributes: its data is whole before it).
    for i in 0..4 {
        assert_eq!(
            fs::read_to_string(s.remote(&format!("w/sub/f{i}"))).unwrap(),
            format!("file {i}").repeat(100),
            "f{i}"
        );
    }
    let log = m.stderr();
    assert!(log.contains("cut (a record torn"), "{log}");
    assert!(log.contains("not a journal segment"), "{log}");
    let v = status_json(&m.path(""));
    let damage = v["async_writes"]["replay_damage"].as_array().unwrap();
    assert_eq!(damage.len(), 2, "{v}");
    assert!(!garbage.exists(), "the garbage file was not set aside");
    assert!(
        fs::read_dir(&dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".corrupt")),
        "no .corrupt file"
    );
    // And the mount works on.
    fs::write(m.path("after"), b"after").unwrap();
    assert!(sftpfs_sync(&m.path("")).status.success());
    assert_eq!(fs::read(s.remote("w/after")).unwrap(), b"after");
}

fn conflict_copies(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!("{name}.sftpfs-conflict-");
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect()
}

#[test]
fn a_file_made_on_the_server_while_ours_waits_keeps_both_mounted_and_across_a_kill() {
    let s = Sshd::start();
    let p = Proxy::start(s.port);
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    fs::create_dir(s.remote("w")).unwrap();
    let m = mount(&s, &p, "w", &journal);
    first_file(&m);
    own_dir(&m, "sub");

    // While mounted: ours queued behind a held link, theirs made on the server meanwhile.
    p.stall();
    fs::write(m.path("sub/a"), b"ours, written through the mount").unwrap();
    fs::write(s.remote("w/sub/a"), b"theirs").unwrap();
    p.resume();
    let out = sftpfs_sync(&m.path(""));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "sftpfs sync did not report the conflict"
    );
    assert!(said.contains("conflict"), "{said}");
    assert_eq!(fs::read(s.remote("w/sub/a")).unwrap(), b"theirs");
    let copies = conflict_copies(&s.remote("w/sub"), "a");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        fs::read(&copies[0]).unwrap(),
        b"ours, written through the mount"
    );
    let host = nix_hostname();
    let copy_name = copies[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        copy_name.contains(&host),
        "{copy_name} does not name {host}"
    );
    assert!(
        m.stderr().contains("conflict: sub/a changed on the server"),
        "{}",
        m.stderr()
    );
    assert_eq!(status_json(&m.path(""))["async_writes"]["conflicts"], 1);

    // Across a kill: ours queued, the daemon killed, theirs made before the next mount.
    own_dir(&m, "sub2");
    p.stall();
    fs::write(m.path("sub2/b"), b"ours again").unwrap();
    kill9(m);
    p.resume();
    fs::write(s.remote("w/sub2/b"), b"theirs again, longer than ours").unwrap();
    let m = mount(&s, &p, "w", &journal);
    assert_eq!(
        fs::read(s.remote("w/sub2/b")).unwrap(),
        b"theirs again, longer than ours"
    );
    let copies = conflict_copies(&s.remote("w/sub2"), "b");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(fs::read(&copies[0]).unwrap(), b"ours again");
    assert_eq!(status_json(&m.path(""))["async_writes"]["conflicts"], 1);
    let out = sftpfs_sync(&m.path(""));
    assert!(
        !out.status.success(),
        "sftpfs sync did not report the replay's conflict"
    );
    // A file whose answer was lost but which holds only our bytes is not a conflict: that
    // one is covered by the kill rounds (no conflict names may appear there).
}

fn nix_hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn with_the_server_gone_writes_go_into_the_journal_and_land_when_it_is_back() {
    let s = Sshd::start();
    small_files(&s.local("src/t"), 3, 60);
    let archive = tarball(&s.local("src"), "t");
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/unread"), b"never read through the mount").unwrap();
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    let o = opts_reconnecting(&journal);
    let o: Vec<&str> = o.iter().map(String::as_str).collect();
    let m = Mount::new(&s, "w", &o);
    first_file(&m);
    own_dir(&m, "x");
    s.kill_server();
    // tar completes into the journal with the server gone.
    let out = Command::new("tar")
        .args(["-xf", archive.to_str().unwrap()])
        .current_dir(m.path("x"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.remote("w/x/t").exists());
    let v = status_json(&m.path(""));
    let q = &v["async_writes"];
    assert!(q["queued_operations"].as_u64().unwrap() > 180, "{v}");
    eprintln!(
        "tar x of 180 files into the journal: {} operations made durable by {} fdatasyncs",
        q["operations_synced"], q["fdatasyncs"]
    );
    wait_for("status says offline", || {
        !status_json(&m.path(""))["async_writes"]["offline_since"].is_null()
    });
    let text = Command::new(binary())
        .arg("status")
        .arg(m.path(""))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("offline since"), "{text}");
    // What needs the server fails (EIO), it does not hang.
    let (tx, rx) = std::sync::mpsc::channel();
    let unread = m.path("unread");
    std::thread::spawn(move || {
        let _ = tx.send(fs::read(unread).map_err(|e| e.raw_os_error()));
    });
    let r = rx
        .recv_timeout(DEADLINE)
        .expect("a read with the server gone hung");
    assert_eq!(r.unwrap_err(), Some(libc::EIO));
    // Back: it drains by itself, no command from the user.
    s.restart();
    wait_for("the journal drained", || queued(&m) == 0);
    same_tree(&s.local("src/t"), &s.remote("w/x/t"));
    assert!(sftpfs_sync(&m.path("")).status.success());
}

/// What an editor does offline, in a directory listed long before the server went away
/// (its listing and attributes past their time here and in the kernel): `stat` answers what
/// the mount last knew, a name the last listing lacks is absent, `ls` shows the listing with
/// what was changed here since, and a save (swap file made and removed, the file replaced by
/// a rename), a removal and new files go into the journal and land when the server is back.
#[test]
fn with_the_server_gone_names_listed_long_before_are_answered_from_what_was_known() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    fs::write(s.remote("w/d/notes.txt"), b"first draft\n").unwrap();
    fs::write(s.remote("w/d/old.txt"), b"old\n").unwrap();
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    let mut o = opts_reconnecting(&journal);
    o.push("dcache_timeout=1".into());
    let o: Vec<&str> = o.iter().map(String::as_str).collect();
    let m = Mount::new(&s, "w", &o);
    first_file(&m);
    let listed = Command::new("ls").arg(m.path("d")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "notes.txt\nold.txt\n"
    );
    s.kill_server();
    // Past every cache's time (1 s here, the kernel's entries and attributes as long): what
    // follows is answered from what the mount holds, or not at all.
    std::thread::sleep(Duration::from_millis(2500));
    let script = r#"
set -e
cd d
stat -c %s notes.txt
if test -e missing.txt; then echo "missing.txt exists"; exit 1; fi
printf swap > .notes.txt.swp
printf 'second draft\n' > notes.txt.new
mv notes.txt.new notes.txt
rm .notes.txt.swp
rm old.txt
mkdir sub
echo hi > sub/new.txt
ls -A
ls -l sub > /dev/null
"#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(m.path(""));
    let run = run_to_exit(cmd, &s.dir, DEADLINE);
    assert!(
        run.status.is_some_and(|st| st.success()),
        "offline edits: {:?}\n{}{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert_eq!(run.stdout, "12\nnotes.txt\nsub\n", "{}", run.stderr);
    assert!(!s.remote("w/d/sub").exists(), "the server was away");
    // Back: it all lands by itself, as the journal held it, with no conflict.
    s.restart();
    wait_for("the journal drained", || queued(&m) == 0);
    assert_eq!(
        fs::read(s.remote("w/d/notes.txt")).unwrap(),
        b"second draft\n"
    );
    assert_eq!(fs::read(s.remote("w/d/sub/new.txt")).unwrap(), b"hi\n");
    let mut left: Vec<String> = fs::read_dir(s.remote("w/d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["notes.txt", "sub"]);
    assert!(sftpfs_sync(&m.path("")).status.success());
}

/// The remount replays the missing half before it shows: 64 MiB keeps that within the
/// harness's mount deadline on a loaded machine; the issue's 200 MiB is the ignored test.
#[test]
fn a_large_file_killed_half_way_resumes_where_the_server_is() {
    large_file_resumes(64 << 20);
}

#[test]
#[ignore = "long: 200 MiB through the journal"]
fn a_200_mib_file_killed_half_way_resumes_where_the_server_is() {
    large_file_resumes(200 << 20);
}

fn large_file_resumes(total: usize) {
    let s = Sshd::start();
    let p = Proxy::start(s.port);
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    fs::create_dir(s.remote("w")).unwrap();
    let data = random_bytes(total, 77);
    let m = mount(&s, &p, "w", &journal);
    first_file(&m);
    own_dir(&m, "sub");
    // All of it in the journal first (the link held), then half of it to the server.
    p.stall();
    let mut f = fs::File::create(m.path("sub/big")).unwrap();
    for c in data.chunks(1 << 20) {
        f.write_all(c).unwrap();
    }
    assert_eq!(unsafe { libc::close(f.into_raw_fd()) }, 0);
    p.resume();
    let size = || fs::metadata(s.remote("w/sub/big")).map_or(0, |m| m.len()) as usize;
    wait_for("half of it on the server", || size() >= total / 2);
    kill9(m);
    let had = size();
    assert!(had < total, "all of it landed before the kill");
    let m = mount(&s, &p, "w", &journal);
    assert!(
        fs::read(s.remote("w/sub/big")).unwrap() == data,
        "the server's copy differs"
    );
    let v = status_json(&m.path(""));
    let sent: u64 = (v["connections"].as_array().unwrap().iter())
        .map(|c| c["bytes_out"].as_u64().unwrap())
        .sum();
    let missing = (total - had) as u64;
    eprintln!("missing {missing} bytes at the kill, {sent} sent after the remount");
    assert!(
        sent <= missing + total as u64 / 10,
        "{sent} bytes sent after the remount for {missing} missing"
    );
}

#[test]
fn sftpfs_replay_sends_what_a_killed_mount_left_without_mounting_and_dry_run_only_says() {
    let s = Sshd::start();
    let p = Proxy::start(s.port);
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    fs::create_dir(s.remote("w")).unwrap();
    let m = mount(&s, &p, "w", &journal);
    first_file(&m);
    own_dir(&m, "sub");
    p.stall();
    fs::write(m.path("sub/new"), b"queued when the daemon died").unwrap();
    fs::create_dir(m.path("sub/dir")).unwrap();
    fs::write(m.path("sub/taken"), b"ours").unwrap();
    kill9(m);
    p.resume();
    fs::write(s.remote("w/sub/taken"), b"someone else's").unwrap();
    // The mount's command line, without a mountpoint; through the proxy's port (the
    // source is user, host, port and directory).
    s.trust_port(p.port());
    let replay = |dry: bool| {
        let o = s.opts(&[&format!("journal_dir={}", journal.display())]);
        let mut cmd = s.command();
        cmd.arg("replay");
        if dry {
            cmd.arg("--dry-run");
        }
        cmd.args([&s.target("w"), "-p", &p.port().to_string(), "-o", &o]);
        run_to_exit(cmd, &s.dir, DEADLINE)
    };
    let dry = replay(true);
    assert_eq!(
        dry.status.map(|s| s.success()),
        Some(true),
        "{}{}",
        dry.stdout,
        dry.stderr
    );
    assert!(
        dry.stdout
            .contains("would send: write of 27 bytes at 0 sub/new"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("conflict (someone else's file is there"),
        "{}",
        dry.stdout
    );
    // The bytes the proxy held reach the server after the kill: the create may be there
    // already, empty; nothing more.
    assert!(
        fs::read(s.remote("w/sub/new"))
            .unwrap_or_default()
            .is_empty(),
        "--dry-run sent something"
    );
    assert!(
        !segments(&journal_of(&journal)).is_empty(),
        "--dry-run emptied the journal"
    );

    let run = replay(false);
    // A conflict: exit 1, both versions kept.
    assert_eq!(
        run.status.and_then(|s| s.code()),
        Some(1),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("sent: write of 27 bytes at 0 sub/new"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("conflict"), "{}", run.stdout);
    assert_eq!(
        fs::read(s.remote("w/sub/new")).unwrap(),
        b"queued when the daemon died"
    );
    assert!(s.remote("w/sub/dir").is_dir());
    assert_eq!(
        fs::read(s.remote("w/sub/taken")).unwrap(),
        b"someone else's"
    );
    let copies = conflict_copies(&s.remote("w/sub"), "taken");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(fs::read(&copies[0]).unwrap(), b"ours");
    // Nothing left: a second replay has nothing to do.
    let again = replay(false);
    assert_eq!(
        again.status.map(|s| s.success()),
        Some(true),
        "{}{}",
        again.stdout,
        again.stderr
    );
    assert!(
        again.stdout.contains("nothing to replay"),
        "{}",
        again.stdout
    );
}

/// With the server gone, a writer fills the journal to `journal_max` and then waits (it is
/// not refused, and the journal does not grow past its bound); the server back, what was
/// held lands, the writer goes on, and the file arrives whole.
#[test]
fn a_full_journal_with_the_server_gone_makes_the_writer_wait_until_it_is_back() {
    const MAX: u64 = 4 << 20;
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    let o = opts(&journal);
    let mut o: Vec<&str> = o.iter().map(String::as_str).collect();
    o.extend(["reconnect", "journal_max=4M"]);
    let m = Mount::new(&s, "w", &o);
    first_file(&m);
    own_dir(&m, "x");
    s.kill_server();
    let data = random_bytes(10 << 20, 22);
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, written) = (m.path("x/big"), data.clone());
    std::thread::spawn(move || {
        let _ = tx.send(fs::write(path, written).map_err(|e| e.to_string()));
    });
    // Full: the journal holds about its bound, and the writer waits.
    wait_for("the journal to fill", || {
        status_json(&m.path(""))["async_writes"]["journal_bytes"]
            .as_u64()
            .unwrap_or(0)
            > MAX / 2
    });
    let on_disk = || -> u64 {
        segments(&journal_of(&journal))
            .iter()
            .map(|p| fs::metadata(p).map_or(0, |m| m.len()))
            .sum()
    };
    let mut most = 0;
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        most = most.max(on_disk());
        assert!(
            rx.try_recv().is_err(),
            "the writer was answered with the server gone and the journal full"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // One record may go past the bound (a write of the server's largest size, and headers).
    assert!(
        most <= MAX + (256 << 10),
        "the journal grew to {most} bytes"
    );
    s.restart();
    let r = rx
        .recv_timeout(DEADLINE)
        .expect("the writer still waits with the server back");
    r.unwrap();
    assert!(sftpfs_sync(&m.path("")).status.success());
    assert!(
        fs::read(s.remote("w/x/big")).unwrap() == data,
        "the server's copy differs"
    );
}

const FIRST: &[u8] = b"the server's first version";
const THEIRS: &[u8] = b"theirs, changed on the server while ours waited";

/// With the server gone: `rm` of two listed files and `mv` of files made here over two
/// listed ones, then someone else changes one of each on the server (`{tag}gone`,
/// `{tag}target`); the other two (`{tag}same`, `{tag}target2`) nobody touches.
fn remove_and_rename_over_while_away(s: &Sshd, m: &Mount, tag: &str) {
    fs::write(m.path(&format!("d/{tag}new")), b"ours").unwrap();
    fs::write(m.path(&format!("d/{tag}new2")), b"ours too").unwrap();
    assert!(sftpfs_sync(&m.path("")).status.success());
    // Listed: the mount knows each file's size and mtime as the server gave them.
    assert!(fs::read_dir(m.path("d")).unwrap().count() >= 6);
    s.kill_server();
    fs::remove_file(m.path(&format!("d/{tag}gone"))).unwrap();
    fs::remove_file(m.path(&format!("d/{tag}same"))).unwrap();
    fs::rename(
        m.path(&format!("d/{tag}new")),
        m.path(&format!("d/{tag}target")),
    )
    .unwrap();
    fs::rename(
        m.path(&format!("d/{tag}new2")),
        m.path(&format!("d/{tag}target2")),
    )
    .unwrap();
    assert_eq!(queued(m), 4);
    for n in ["gone", "target"] {
        fs::write(s.remote(&format!("w/d/{tag}{n}")), THEIRS).unwrap();
    }
}

/// The changed files are theirs, ours is beside the one it would have replaced, and the
/// untouched ones went as asked.
fn theirs_kept(s: &Sshd, tag: &str) {
    let at = |n: &str| s.remote(&format!("w/d/{tag}{n}"));
    assert_eq!(fs::read(at("gone")).unwrap(), THEIRS, "{tag}gone");
    assert!(!at("same").exists(), "{tag}same was not removed");
    assert_eq!(fs::read(at("target")).unwrap(), THEIRS, "{tag}target");
    let copies = conflict_copies(&s.remote("w/d"), &format!("{tag}target"));
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(fs::read(&copies[0]).unwrap(), b"ours");
    assert_eq!(fs::read(at("target2")).unwrap(), b"ours too");
    assert!(conflict_copies(&s.remote("w/d"), &format!("{tag}target2")).is_empty());
    assert!(!at("new").exists() && !at("new2").exists());
}

/// A queued removal, or rename over a file, that waited (the server away) or is replayed
/// after a kill checks the server's file first: changed by someone else since the mount saw
/// it, theirs stays (a conflict, reported; a renamed file of ours goes beside theirs);
/// unchanged, it goes ahead.
#[test]
fn a_removal_or_rename_over_a_file_changed_on_the_server_meanwhile_keeps_theirs() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    for tag in ["m-", "r-"] {
        for n in ["gone", "same", "target", "target2"] {
            fs::write(s.remote(&format!("w/d/{tag}{n}")), FIRST).unwrap();
        }
    }
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    let o = opts_reconnecting(&journal);
    let o: Vec<&str> = o.iter().map(String::as_str).collect();
    let m = Mount::new(&s, "w", &o);
    first_file(&m);

    // Mounted: the changes wait past the age at which they are checked.
    remove_and_rename_over_while_away(&s, &m, "m-");
    wait_for("the queued changes waited 10 s", || {
        status_json(&m.path(""))["async_writes"]["oldest_queued_seconds"]
            .as_f64()
            .is_some_and(|age| age > 10.5)
    });
    s.restart();
    wait_for("the journal drained", || queued(&m) == 0);
    theirs_kept(&s, "m-");
    assert_eq!(status_json(&m.path(""))["async_writes"]["conflicts"], 2);
    let out = sftpfs_sync(&m.path(""));
    assert!(!out.status.success(), "sftpfs sync did not report them");
    // The mount shows the server's files again.
    assert_eq!(fs::read(m.path("d/m-gone")).unwrap(), THEIRS);
    assert_eq!(fs::read(m.path("d/m-target")).unwrap(), THEIRS);

    // Across a kill: checked at replay, however young.
    remove_and_rename_over_while_away(&s, &m, "r-");
    kill9(m);
    s.restart();
    let m = Mount::new(&s, "w", &o);
    theirs_kept(&s, "r-");
    assert_eq!(status_json(&m.path(""))["async_writes"]["conflicts"], 2);
    assert!(
        m.stderr()
            .contains("conflict: d/r-gone changed on the server"),
        "{}",
        m.stderr()
    );
}

/// The server up all along: `rm` of a file and `mv` over another that the mount listed more
/// than 10 s before, each changed on the server since (a different size): the queued
/// operation checks its base before it is sent, however briefly it waited, and theirs
/// stays. Files listed as long ago but unchanged go as asked. (Two directories: a conflict
/// found in one makes the mount list it again, and the other's check must not depend on
/// which was sent first.)
#[test]
fn a_removal_or_rename_based_on_an_old_listing_checks_the_server_first() {
    let s = Sshd::start();
    let files = [
        ("a/gone", FIRST),
        ("a/same", FIRST),
        ("b/target", FIRST),
        ("b/target2", FIRST),
        ("b/new", b"ours".as_slice()),
        ("b/new2", b"ours too".as_slice()),
    ];
    for (n, body) in files {
        fs::create_dir_all(s.remote(&format!("w/{n}")).parent().unwrap()).unwrap();
        fs::write(s.remote(&format!("w/{n}")), body).unwrap();
    }
    // A directory changed in the second it is listed is listed again (its time cannot tell
    // a later change in that second): these are from long ago.
    for d in ["a", "b"] {
        fs::File::open(s.remote(&format!("w/{d}")))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
    }
    let base = TempDir::new("journals");
    let o = opts(&base.path().join("j"));
    let o: Vec<&str> = o.iter().map(String::as_str).collect();
    let m = Mount::new(&s, "w", &o);
    let listed = std::time::Instant::now();
    assert_eq!(fs::read_dir(m.path("a")).unwrap().count(), 2);
    assert_eq!(fs::read_dir(m.path("b")).unwrap().count(), 4);
    // Their change leaves the directories' times as they were: nothing tells the mount.
    for n in ["a/gone", "b/target"] {
        fs::write(s.remote(&format!("w/{n}")), THEIRS).unwrap();
    }
    // What is waited for is the listings' age itself.
    let old = listed + Duration::from_millis(10_500);
    std::thread::sleep(old.saturating_duration_since(std::time::Instant::now()));
    fs::remove_file(m.path("a/gone")).unwrap();
    fs::remove_file(m.path("a/same")).unwrap();
    fs::rename(m.path("b/new"), m.path("b/target")).unwrap();
    fs::rename(m.path("b/new2"), m.path("b/target2")).unwrap();
    let out = sftpfs_sync(&m.path(""));
    assert!(
        !out.status.success(),
        "sftpfs sync did not report the conflicts"
    );
    let at = |n: &str| s.remote(&format!("w/{n}"));
    assert_eq!(fs::read(at("a/gone")).unwrap(), THEIRS, "a/gone");
    assert!(!at("a/same").exists(), "a/same was not removed");
    assert_eq!(fs::read(at("b/target")).unwrap(), THEIRS, "b/target");
    let copies = conflict_copies(&s.remote("w/b"), "target");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(fs::read(&copies[0]).unwrap(), b"ours");
    assert_eq!(fs::read(at("b/target2")).unwrap(), b"ours too");
    assert!(!at("b/new").exists() && !at("b/new2").exists());
    assert_eq!(status_json(&m.path(""))["async_writes"]["conflicts"], 2);
}

/// The benchmark of replay (`bench/journal`; a release binary through `SFTPFS_TEST_BIN`):
/// `tar x` of `SFTPFS_BENCH_FILES` (2000) small files at 40 ms RTT, until `sftpfs sync`
/// returns, mounted; then the same `tar x` into the journal with the server gone, the daemon
/// killed, the server back, and the next mount timed: it replays everything before it
/// shows. Both trees are checked on the server's side.
#[test]
#[ignore = "a benchmark: bench/journal"]
fn replay_of_a_tar_x_against_its_drain_when_mounted() {
    let files = std::env::var("SFTPFS_BENCH_FILES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let s = Sshd::start();
    small_files(&s.local("src/t"), 20, files);
    let archive = tarball(&s.local("src"), "t");
    fs::create_dir(s.remote("w")).unwrap();
    let p = Proxy::start(s.port);
    p.delay(Duration::from_millis(20));
    let base = TempDir::new("journals");
    let journal = base.path().join("j");
    let o = opts_reconnecting(&journal);
    let o: Vec<&str> = o.iter().map(String::as_str).collect();
    let tar_into = |dir: &Path| {
        let out = Command::new("tar")
            .args(["-xf", archive.to_str().unwrap()])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "tar: {:?}", out);
    };
    let m = Mount::via_port(&s, p.port(), "w", &o);
    first_file(&m);
    own_dir(&m, "mounted");
    let t = std::time::Instant::now();
    tar_into(&m.path("mounted"));
    let tar_time = t.elapsed();
    assert!(sftpfs_sync(&m.path("")).status.success());
    let mounted = t.elapsed();
    same_tree(&s.local("src/t"), &s.remote("w/mounted/t"));

    // Made just before: the mount believes a name absent there only for a while (the server
    // is not asked, being gone).
    own_dir(&m, "replayed");
    s.kill_server();
    let t = std::time::Instant::now();
    tar_into(&m.path("replayed"));
    let offline = t.elapsed();
    let v = status_json(&m.path(""));
    let ops = v["async_writes"]["queued_operations"].as_u64().unwrap();
    kill9(m);
    s.restart();
    let t = std::time::Instant::now();
    let m = Mount::via_port(&s, p.port(), "w", &o);
    let replay = t.elapsed();
    assert_eq!(queued(&m), 0, "the mount showed before its replay ended");
    same_tree(&s.local("src/t"), &s.remote("w/replayed/t"));
    assert_eq!(status_json(&m.path(""))["async_writes"]["conflicts"], 0);
    let secs = |d: Duration| format!("{:.2}", d.as_secs_f64());
    report(&format!(
        "\n| {files} small files, 40 ms RTT, -o async_writes | seconds |\n|---|---:|\n\
         | tar x, mounted (until tar returns) | {} |\n\
         | tar x, mounted, until `sftpfs sync` returns | {} |\n\
         | tar x into the journal, the server gone | {} |\n\
         | the next mount, replaying its {ops} operations before it shows | {} |\n\
         | replay / mounted drain | {:.2} |",
        secs(tar_time),
        secs(mounted),
        secs(offline),
        secs(replay),
        replay.as_secs_f64() / mounted.as_secs_f64()
    ));
}
