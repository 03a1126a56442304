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

use support::proxy::Proxy;
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

/// A directory made on the server and entered the moment it shows keeps working as the
/// process's working directory: the kernel is not told to drop the entry it has just handed
/// out (getcwd would fail with ENOENT, and git with it). Other directories in use are listed
/// after it in each round, over a slow link, so the process is in before the round ends.
#[test]
fn a_directory_entered_as_soon_as_it_shows_keeps_a_working_directory() {
    let s = Sshd::start();
    let busy: Vec<String> = (0..6).map(|i| format!("busy{i}")).collect();
    for b in &busy {
        fs::create_dir_all(s.remote(&format!("w/{b}"))).unwrap();
    }
    fs::create_dir_all(s.remote("w/d")).unwrap();
    let p = Proxy::start(s.port);
    p.delay(Duration::from_millis(10));
    let mut opts = LONG.to_vec();
    opts.extend(["revalidate=0.2", "max_conns=1"]);
    let m = Mount::via_port(&s, p.port(), "w", &opts);
    for round in 0..2 {
        for b in &busy {
            names(&m.path(b));
        }
        names(&m.path("d"));
        let name = format!("d/new{round}");
        fs::create_dir(s.remote(&format!("w/{name}"))).unwrap();
        let end = Instant::now() + DEADLINE;
        while fs::metadata(m.path(&name)).is_err() {
            assert!(Instant::now() < end, "{name} did not show");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Asks for its working directory for a while: several rounds (the one place where
        // a span of time is the point).
        let out = Command::new("python3")
            .args([
                "-c",
                "import os, time\n\
                 end = time.time() + 1.5\n\
                 while time.time() < end:\n    os.getcwd(); time.sleep(0.01)",
            ])
            .current_dir(m.path(&name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: getcwd in a directory just made on the server failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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

/// The bytes that crossed the link (counted by a proxy between the mount and sshd) in three
/// revalidation rounds after `ls -l` of a directory of `n` files, with nobody using the mount
/// meanwhile, and the mount's own count of what revalidation sent and received.
fn idle_bytes_after_ls_l(n: usize) -> (u64, u64) {
    let s = Sshd::start();
    let dir = s.remote("w/big");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        fs::write(
            dir.join(format!("a-file-with-a-longer-name-{i:06}.txt")),
            b"x",
        )
        .unwrap();
    }
    // Last changed a while ago. (A directory changed in the very second it is listed is
    // listed once more: its mtime is in whole seconds.)
    for d in [&dir, &s.remote("w")] {
        sh(
            Path::new("/"),
            "touch",
            &["-d", "@1000000000", d.to_str().unwrap()],
        );
    }
    let p = Proxy::start(s.port);
    let m = Mount::via_port(&s, p.port(), "w", &["revalidate=0.3"]);
    let out = Command::new("ls")
        .arg("-l")
        .arg(m.path("big"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout.split(|&b| b == b'\n').count(),
        n + 2,
        "ls -l saw every file"
    );
    let mp = m.path("");
    let cost = |v: &serde_json::Value| {
        let r = &v["revalidation"];
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        (n("requests"), n("bytes_out") + n("bytes_in"))
    };
    let (bytes, (requests, own)) = (p.bytes(), cost(&status_json(&mp)));
    // Three rounds: each checks the listed directory and the root.
    assert!(
        wait_until(DEADLINE, || cost(&status_json(&mp)).0 >= requests + 6),
        "no revalidation rounds: {}",
        status_json(&mp)
    );
    let crossed = p.bytes() - bytes;
    let counted = cost(&status_json(&mp)).1 - own;
    eprintln!("{n} files: {crossed} bytes crossed the link in three idle rounds ({counted} B of SFTP counted as revalidation)");
    (crossed, counted)
}

/// After `ls -l` of 1000 files, an idle mount's revalidation checks the directory by its
/// attributes instead of listing it again (a listing of 1000 files is about 115 KiB).
#[test]
fn revalidation_of_an_unchanged_directory_costs_bytes_independent_of_its_size() {
    let (crossed, counted) = idle_bytes_after_ls_l(1000);
    assert!(crossed < 64 * 1024, "{crossed} bytes crossed the link");
    assert!(counted < 8 * 1024, "revalidation counted {counted} bytes");
}

/// The same with 100 000 files (a listing of about 11 MiB); slow to set up, so not in CI:
///
///     cargo test --test revalidate -- --ignored --nocapture hundred_thousand
#[test]
#[ignore]
fn revalidation_of_an_unchanged_directory_of_a_hundred_thousand_files_is_cheap() {
    let (crossed, counted) = idle_bytes_after_ls_l(100_000);
    assert!(crossed < 64 * 1024, "{crossed} bytes crossed the link");
    assert!(counted < 8 * 1024, "revalidation counted {counted} bytes");
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
