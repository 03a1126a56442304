//! Many small files over a slow link (issue 12): the round trips and requests each workload
//! costs per file, counted by the mount itself (`sftpfs status --json`) with a delay proxy in
//! front of sshd, so that requests sent together are seen together. Timings are never
//! asserted: a regression in round trips fails here.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::proxy::Proxy;
use support::*;

/// Requests of the mount so far: round trips, and requests by type.
#[derive(Debug, Default, Clone)]
struct Counts {
    round_trips: u64,
    by_type: std::collections::BTreeMap<String, u64>,
}

impl Counts {
    fn of(mnt: &Path) -> Counts {
        let v = status_json(mnt);
        let mut c = Counts::default();
        for conn in v["connections"].as_array().expect("status --json answers") {
            c.round_trips += conn["round_trips"].as_u64().unwrap();
            if let Value::Object(m) = &conn["requests_by_type"] {
                for (k, n) in m {
                    *c.by_type.entry(k.clone()).or_default() += n.as_u64().unwrap();
                }
            }
        }
        c
    }

    fn since(&self, before: &Counts) -> Counts {
        let mut c = self.clone();
        c.round_trips -= before.round_trips;
        for (k, n) in &before.by_type {
            *c.by_type.get_mut(k).unwrap() -= n;
        }
        c.by_type.retain(|_, n| *n > 0);
        c
    }

    fn of_type(&self, t: &str) -> u64 {
        self.by_type.get(t).copied().unwrap_or(0)
    }
}

/// Runs `script` with `sh -c` in `dir`, and what it cost the mount at `mnt`.
fn counted(mnt: &Path, dir: &Path, script: &str) -> Counts {
    let before = Counts::of(mnt);
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Counts::of(mnt).since(&before)
}

const DELAY: Duration = Duration::from_millis(5);

/// A mount of `w` through a proxy adding [`DELAY`] each way, on one connection (its round
/// trips are the ones counted). The mount goes before the proxy.
fn slow_mount<'a>(s: &'a Sshd, extra: &[&str]) -> (Mount<'a>, Proxy) {
    let p = Proxy::start(s.port);
    p.delay(DELAY);
    let mut opts = vec!["max_conns=1"];
    opts.extend_from_slice(extra);
    (Mount::via_port(s, p.port(), "w", &opts), p)
}

/// A tarball of three directories of 60 small files in all, and an empty `w` to unpack it in.
fn tar_setup(s: &Sshd) -> std::path::PathBuf {
    small_files(&s.local("src/t"), 3, 60);
    fs::create_dir(s.remote("w")).unwrap();
    tarball(&s.local("src"), "t")
}

#[test]
fn reading_a_directory_of_small_files_costs_a_fraction_of_a_round_trip_each() {
    let s = Sshd::start();
    small_files(&s.remote("w/flat"), 0, 120);
    small_files(&s.remote("w/tree"), 6, 120);
    for (what, script) in [
        ("cat", "cat flat/* > /dev/null"),
        ("grep -r", "! grep -r needle-not-there tree"),
        ("cp -r", "cp -r tree \"$OUT\""),
    ] {
        let (m, _p) = slow_mount(&s, &[]);
        let out = s.local(&format!("out-{}", what.replace(' ', "")));
        let script = script.replace("\"$OUT\"", out.to_str().unwrap());
        let c = counted(&m.path(""), &m.path(""), &script);
        eprintln!("{what}: {c:?}");
        // Two round trips a file when read one by one; a few for the whole directory when
        // read ahead across files.
        assert!(c.round_trips <= 120 / 4, "{what}: {c:?}");
        // Each file opened and read once, whatever the order the tool reads them in.
        assert!(c.of_type("open") <= 120 + 2, "{what}: {c:?}");
        assert!(c.of_type("read") <= 120 + 2, "{what}: {c:?}");
    }
}

/// Polls `mnt`'s status until `files_read_ahead` reaches `n` with nothing in flight.
fn wait_read_ahead(mnt: &Path, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = status_json(mnt);
        let kept = v["files_read_ahead"].as_u64().unwrap_or(0);
        let busy: u64 = v["connections"].as_array().map_or(1, |a| {
            a.iter()
                .map(|c| c["requests_in_flight"].as_u64().unwrap_or(0))
                .sum()
        });
        if kept >= n && busy == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "read-ahead did not reach {n} files: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_file_read_ahead_is_not_served_once_a_change_is_known_or_made_here() {
    let s = Sshd::start();
    small_files(&s.remote("w/d"), 0, 40);
    // Older than any change below: a change shows in the mtime, and the kernel drops its
    // pages of a changed file at open.
    for e in fs::read_dir(s.remote("w/d")).unwrap() {
        let p = e.unwrap().path();
        sh(
            Path::new("/"),
            "touch",
            &["-d", "@999999999", p.to_str().unwrap()],
        );
    }
    let m = Mount::new(&s, "w", &[]);
    let d = m.path("d");
    assert_eq!(fs::read_dir(&d).unwrap().count(), 40);
    let file = |i: usize| format!("f{i:03}.txt");
    for i in 0..2 {
        assert_eq!(
            fs::read(d.join(file(i))).unwrap(),
            fs::read(s.remote(&format!("w/d/{}", file(i)))).unwrap()
        );
    }
    // Two neighbours in name order: the next files are read ahead.
    wait_read_ahead(&m.path(""), 30);

    // Written through the mount (same size, other bytes): the next open sees the write,
    // not what was read ahead.
    let seven = s.remote(&format!("w/d/{}", file(7)));
    let written = random_bytes(fs::metadata(&seven).unwrap().len() as usize, 707);
    fs::write(d.join(file(7)), &written).unwrap();
    assert_eq!(fs::read(d.join(file(7))).unwrap(), written);
    assert_eq!(fs::read(&seven).unwrap(), written);

    // Changed on the server after it was read ahead (same size, other bytes, other mtime):
    // once the mount knows (a refresh), the server's new bytes.
    let five = s.remote(&format!("w/d/{}", file(5)));
    let changed = random_bytes(fs::metadata(&five).unwrap().len() as usize, 505);
    fs::write(&five, &changed).unwrap();
    sh(
        Path::new("/"),
        "touch",
        &["-d", "@1000000000", five.to_str().unwrap()],
    );
    let out = Command::new(binary())
        .arg("refresh")
        .arg(m.path(""))
        .arg("d")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(d.join(file(5))).unwrap(), changed);
    // The others are as on the server.
    for i in 2..12 {
        assert_eq!(
            fs::read(d.join(file(i))).unwrap(),
            fs::read(s.remote(&format!("w/d/{}", file(i)))).unwrap(),
            "{}",
            file(i)
        );
    }
}

/// A file read ahead across files is served only while young: rewritten on the server in
/// place after it was read ahead (its directory unchanged, nothing told the mount) and opened
/// more than a second later, it shows the server's new bytes.
#[test]
fn a_file_read_ahead_is_served_only_while_young() {
    let s = Sshd::start();
    small_files(&s.remote("w/d"), 0, 40);
    // No revalidation: only the age of what was read ahead can tell.
    let m = Mount::new(&s, "w", &["revalidate=0"]);
    let d = m.path("d");
    assert_eq!(fs::read_dir(&d).unwrap().count(), 40);
    let file = |i: usize| format!("f{i:03}.txt");
    for i in 0..2 {
        fs::read(d.join(file(i))).unwrap();
    }
    wait_read_ahead(&m.path(""), 30);
    let five = s.remote(&format!("w/d/{}", file(5)));
    let changed = random_bytes(fs::metadata(&five).unwrap().len() as usize, 555);
    fs::write(&five, &changed).unwrap();
    // Older than "about a second": the one place a span of time is the point.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        fs::read(d.join(file(5))).unwrap() == changed,
        "served what was read ahead before the server's change"
    );
}

#[test]
fn writing_and_removing_small_files_costs_at_most_two_round_trips_each() {
    let s = Sshd::start();
    let tarball = tar_setup(&s);
    let (m, _p) = slow_mount(&s, &[]);
    let root = m.path("");
    // Per new file: OPEN (with an LSTAT), then its WRITEs and FSETSTATs (owner, mode, times)
    // sent together and waited for by close; the release's FSTAT and CLOSE travel with the
    // next file's OPEN. Directories: MKDIR, and tar's mode and times at the end.
    let c = counted(&root, &root, &format!("tar -xf '{}'", tarball.display()));
    eprintln!("tar x: {c:?}");
    assert!(c.round_trips <= 2 * 60 + 4 * 4 + 6, "tar x: {c:?}");
    assert_eq!(c.of_type("open"), 60, "tar x: {c:?}");
    same_tree(&s.local("src/t"), &s.remote("w/t"));

    // A mode or time change of a listed name: one round trip, no lookup of its own (its
    // LSTAT goes with its SETSTAT; on a loaded machine a few pairs go out apart, as CI saw:
    // 24 for 20 files, where a lookup of each would make it 40).
    let slack = 8;
    let c = counted(&root, &root, "chmod 600 t/d00/*");
    eprintln!("chmod: {c:?}");
    assert!(c.round_trips <= 20 + slack, "chmod: {c:?}");
    assert!(c.of_type("lstat") <= 20 + 2, "chmod: {c:?}");
    let c = counted(&root, &root, "touch -h -d @1000000000 t/d02/*");
    eprintln!("touch -h: {c:?}");
    assert!(c.round_trips <= 20 + slack, "touch -h: {c:?}");
    assert_eq!(
        fs::symlink_metadata(s.remote("w/t/d02/f002.txt"))
            .unwrap()
            .mtime(),
        1_000_000_000
    );

    // Removing a tree: a round trip per name, none for lookups.
    let c = counted(&root, &root, "rm -rf t");
    eprintln!("rm -rf: {c:?}");
    assert!(c.round_trips <= 60 + 2 * 4 + 6, "rm -rf: {c:?}");
    assert!(c.of_type("lstat") <= 4, "rm -rf: {c:?}");
    assert!(!s.remote("w/t").exists());
}

#[test]
fn git_status_after_a_remount_costs_no_round_trips_per_file() {
    let s = Sshd::start();
    small_files(&s.remote("w/repo"), 3, 60);
    let git = |dir: &Path, args: &[&str]| {
        let mut a = vec!["-c", "user.name=t", "-c", "user.email=t@localhost"];
        a.extend_from_slice(args);
        sh(dir, "git", &a)
    };
    // Older than the index: not "racily clean", which git would read again to be sure.
    sh(
        &s.remote("w/repo"),
        "sh",
        &["-c", "find . -type f -exec touch -d @999999999 {} +"],
    );
    git(&s.remote("w/repo"), &["init", "-q"]);
    git(&s.remote("w/repo"), &["add", "-A"]);
    git(&s.remote("w/repo"), &["commit", "-qm", "60 files"]);
    {
        // An earlier session: the index learns this mount's inode numbers and times.
        let m = Mount::new(&s, "w", &[]);
        git(&m.path("repo"), &["status", "--porcelain"]);
    }
    // 62 and 40 measured on a quiet machine; on one loaded far past its cores a second-long
    // freshness window can lapse between git's repeated questions about a missing name.
    for (extra, most) in [(None, 70), (Some("negative_timeout=20"), 55)] {
        let (m, _p) = slow_mount(&s, extra.as_slice());
        let c = counted(
            &m.path(""),
            &m.path("repo"),
            "test -z \"$(git status --porcelain)\"",
        );
        eprintln!("git status ({extra:?}): {c:?}");
        // The listings of the directories, the index, and (by default) the names git looks
        // for that do not exist, each once; no file is read again.
        assert!(c.round_trips <= most, "git status ({extra:?}): {c:?}");
        assert!(c.of_type("open") <= 30, "git status ({extra:?}): {c:?}");
    }
}

/// A name missing from a listing: asked of the server by default, once however often it is
/// asked for at once; believed absent from the listing with `-o negative_timeout=` (NFS's
/// `lookupcache=all`), at no request at all.
#[test]
fn names_missing_from_a_listed_directory_cost_a_lookup_each_unless_negative_timeout_says() {
    let s = Sshd::start();
    small_files(&s.remote("w/d"), 0, 10);
    let distinct = "for i in $(seq 20); do ! test -e d/missing$i; done";
    let same = "for i in $(seq 20); do ! test -e d/missing; done";
    let (m, _p) = slow_mount(&s, &[]);
    counted(&m.path(""), &m.path(""), "ls d >/dev/null");
    let c = counted(&m.path(""), &m.path(""), distinct);
    eprintln!("distinct missing names, default: {c:?}");
    assert!(c.of_type("lstat") >= 20, "each asked of the server: {c:?}");
    let c = counted(&m.path(""), &m.path(""), same);
    eprintln!("one missing name 20 times, default: {c:?}");
    assert!(
        c.of_type("lstat") <= 2,
        "the same name asked at once: {c:?}"
    );
    drop(m);
    let (m, _p) = slow_mount(&s, &["negative_timeout=20"]);
    counted(&m.path(""), &m.path(""), "ls d >/dev/null");
    let c = counted(&m.path(""), &m.path(""), distinct);
    eprintln!("distinct missing names, negative_timeout=20: {c:?}");
    assert_eq!(c.round_trips, 0, "answered from the listing: {c:?}");
}

#[test]
fn asynchronous_mode_sends_small_files_pipelined_and_sync_waits_for_them() {
    let s = Sshd::start();
    let tarball = tar_setup(&s);
    let (m, _p) = slow_mount(&s, &["async_writes"]);
    let root = m.path("");
    // The first file is made synchronously: the owner new files get is learned from it.
    fs::write(m.path("first"), b"1").unwrap();
    let c = counted(
        &root,
        &root,
        &format!("tar -xf '{}' && sync -f t", tarball.display()),
    );
    eprintln!("tar x + sync -f: {c:?}");
    same_tree(&s.local("src/t"), &s.remote("w/t"));
    assert!(c.round_trips <= 60 / 2, "tar x: {c:?}");
    let c = counted(&root, &root, "rm -rf t && sync -f .");
    eprintln!("rm -rf + sync -f: {c:?}");
    assert!(!s.remote("w/t").exists());
    assert!(c.round_trips <= 60 / 4, "rm -rf: {c:?}");
}
