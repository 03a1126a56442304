//! Background revalidation (`-o revalidate=SECONDS`, issue 13) on real mounts: a change made
//! directly on the server shows in `ls`, `stat`, `cat` and `tail -f` within a few periods,
//! though sftpfs's and the kernel's caches alone would hide it for ten minutes; and a mount
//! nobody uses sends no requests at all.

mod support;

use std::fs;
use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Caches that would hide the server's changes for the whole test without revalidation.
const LONG: &[&str] = &[
    "dcache_timeout=600",
    "entry_timeout=600",
    "attr_timeout=600",
];

/// Generous: the promise is a few periods; a loaded CI machine gets slack.
const DEADLINE: Duration = Duration::from_secs(20);

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn changes_on_the_server_show_while_the_directory_is_in_use() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    fs::write(s.remote("w/d/a"), b"old").unwrap();
    fs::write(s.remote("w/d/b"), b"b").unwrap();
    let mut opts = LONG.to_vec();
    opts.push("revalidate=0.5");
    let m = Mount::new(&s, "w", &opts);
    assert_eq!(names(&m.path("d")), ["a", "b"]);
    assert_eq!(fs::read(m.path("d/a")).unwrap(), b"old");

    fs::write(s.remote("w/d/a"), b"new and longer contents").unwrap();
    fs::remove_file(s.remote("w/d/b")).unwrap();
    fs::write(s.remote("w/d/c"), b"c").unwrap();
    let t = Instant::now();
    assert!(
        wait_until(DEADLINE, || names(&m.path("d")) == ["a", "c"]),
        "ls still shows {:?}",
        names(&m.path("d"))
    );
    assert!(
        wait_until(DEADLINE, || fs::metadata(m.path("d/a"))
            .is_ok_and(|md| md.size() == 23)),
        "stat still shows the old size"
    );
    assert_eq!(fs::read(m.path("d/a")).unwrap(), b"new and longer contents");
    assert!(
        fs::metadata(m.path("d/b")).is_err(),
        "the removed file still stats"
    );
    eprintln!("the server's changes showed after {:?}", t.elapsed());
}

#[test]
fn tail_f_follows_a_file_growing_on_the_server() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    fs::write(s.remote("w/log"), b"first\n").unwrap();
    let mut opts = LONG.to_vec();
    opts.push("revalidate=0.5");
    let m = Mount::new(&s, "w", &opts);
    let mut tail = KillOnDrop(
        Command::new("tail")
            .arg("-f")
            .arg(m.path("log"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = tail.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), "first");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(s.remote("w/log"))
        .unwrap();
    f.write_all(b"second\n").unwrap();
    drop(f);
    assert_eq!(
        rx.recv_timeout(DEADLINE)
            .expect("tail -f showed no new line"),
        "second"
    );
}

fn requests(m: &Path) -> u64 {
    status_json(m)["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["requests"].as_u64().unwrap())
        .sum()
}

#[test]
fn an_idle_mount_sends_no_requests() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    fs::write(s.remote("w/d/a"), b"a").unwrap();
    // In use for fifteen periods (3 s) after the last look.
    let m = Mount::new(&s, "w", &["revalidate=0.2", "dcache_timeout=1"]);
    let mp = m.path("");
    let base = requests(&mp);
    assert_eq!(names(&m.path("d")), ["a"]);
    // While the directory is in use it is listed again, period after period...
    assert!(
        wait_until(DEADLINE, || requests(&mp) > base + 6),
        "no revalidation while in use: {base} → {}",
        requests(&mp)
    );
    // ...and once nobody uses the mount, nothing at all. (An assertion that nothing happens
    // over a time: the one place a wait is the point.)
    let quiet = |span: Duration| {
        let before = requests(&mp);
        std::thread::sleep(span);
        requests(&mp) == before
    };
    assert!(
        wait_until(DEADLINE, || quiet(Duration::from_millis(600))),
        "the mount kept sending requests after it was left alone"
    );
    assert!(
        quiet(Duration::from_secs(2)),
        "requests again on an idle mount"
    );
}

/// Not a test: how long until a change made on the server shows through the mount, with the
/// binary's defaults (`SFTPFS_TEST_BIN=/usr/bin/sshfs` measures sshfs). Prints the times.
///
///     cargo test --test revalidate -- --ignored --nocapture visibility
#[test]
#[ignore]
fn visibility_times() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    fs::write(s.remote("w/d/a"), b"old").unwrap();
    let m = Mount::new(&s, "w", &[]);
    let poll = |what: &str, cond: &dyn Fn() -> bool| {
        let t = Instant::now();
        let seen = wait_until(Duration::from_secs(60), cond);
        eprintln!(
            "{}: {what}: {}",
            binary().display(),
            if seen {
                format!("{:.1} s", t.elapsed().as_secs_f64())
            } else {
                "not within 60 s".into()
            }
        );
    };
    // Each: the directory and the file were just looked at, then the server changes.
    for round in 0..3 {
        assert!(!names(&m.path("d")).is_empty());
        let name = format!("new{round}");
        fs::write(s.remote(&format!("w/d/{name}")), b"x").unwrap();
        poll("a new file in ls", &|| names(&m.path("d")).contains(&name));
        let body = format!("contents {round} and more");
        let _ = fs::read(m.path("d/a"));
        fs::write(s.remote("w/d/a"), &body).unwrap();
        poll("new contents in cat", &|| {
            fs::read(m.path("d/a")).is_ok_and(|b| b == body.as_bytes())
        });
    }
}
