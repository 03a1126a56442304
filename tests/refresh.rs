//! `sftpfs refresh` and SIGHUP (issue 13) on real mounts: changes made directly on the server
//! show at once afterwards, though every cache (sftpfs's and the kernel's) would have kept
//! the old view for ten minutes.

mod support;

use std::fs;
use std::io::{BufRead, Read};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

/// Caches that would hide the server's changes for the whole test.
const LONG: &[&str] = &[
    "dcache_timeout=600",
    "entry_timeout=600",
    "attr_timeout=600",
];

fn refresh(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(binary())
        .arg("refresh")
        .args(args)
        .output()
        .expect("run sftpfs refresh")
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The server's changes under `w/`: a file rewritten longer, one removed, one added.
fn change_on_server(s: &Sshd) {
    fs::write(s.remote("w/d/a"), b"new and longer contents").unwrap();
    fs::remove_file(s.remote("w/d/b")).unwrap();
    fs::write(s.remote("w/d/c"), b"c").unwrap();
}

fn cached_view_then_fresh(how: &dyn Fn(&Mount)) {
    cached_view_then_fresh_in(false, how)
}

/// `daemon`: mounted in the background (SIGHUP refreshes only a daemon's caches).
fn cached_view_then_fresh_in(daemon: bool, how: &dyn Fn(&Mount)) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    fs::write(s.remote("w/d/a"), b"old").unwrap();
    fs::write(s.remote("w/d/b"), b"b").unwrap();
    let m = if daemon {
        Mount::background(&s, "w", LONG)
    } else {
        Mount::new(&s, "w", LONG)
    };
    assert_eq!(names(&m.path("d")), ["a", "b"]);
    assert_eq!(fs::read(m.path("d/a")).unwrap(), b"old");
    change_on_server(&s);
    // Cached: the old view.
    assert_eq!(names(&m.path("d")), ["a", "b"]);
    assert_eq!(fs::metadata(m.path("d/a")).unwrap().size(), 3);
    how(&m);
    assert_eq!(names(&m.path("d")), ["a", "c"], "ls after the refresh");
    assert_eq!(
        fs::metadata(m.path("d/a")).unwrap().size(),
        23,
        "stat after the refresh"
    );
    assert_eq!(fs::read(m.path("d/a")).unwrap(), b"new and longer contents");
    assert!(
        fs::metadata(m.path("d/b")).is_err(),
        "the removed file is gone"
    );
}

#[test]
fn refresh_of_the_mount_shows_the_servers_changes() {
    cached_view_then_fresh(&|m| {
        let out = refresh(&[m.path("").as_os_str()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn refresh_of_a_path_shows_the_changes_below_it() {
    cached_view_then_fresh(&|m| {
        let out = refresh(&[m.path("").as_os_str(), "d".as_ref()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn sighup_refreshes_and_does_not_end_the_daemon() {
    cached_view_then_fresh_in(true, &|m| {
        let pid = m.pid().expect("the daemon's pid");
        // SAFETY: signalling the daemon this test started.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        // It refreshes in the background. Polled by stat alone: a listing read meanwhile
        // (an `ls` whose opendir came before the refresh) may hand the kernel the old
        // entries again, as on any mount while another program lists.
        assert!(
            wait_until(Duration::from_secs(10), || fs::metadata(m.path("d/b"))
                .is_err()),
            "the daemon did not refresh on SIGHUP"
        );
        // SAFETY: signal 0 only asks whether the process exists.
        assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "SIGHUP ended the daemon");
    });
}

/// A program sitting in a directory of the mount keeps its working directory through a
/// refresh (the kernel's entries are marked out of date, not dropped: a dropped one leaves
/// getcwd failing with ENOENT), and still sees the server's changes there.
#[test]
fn a_refresh_keeps_the_working_directory_of_a_program_in_the_mount() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d/sub")).unwrap();
    let m = Mount::new(&s, "w", LONG);
    let go = s.local("go");
    let program = "import os, sys, time\n\
                   print('ready', flush=True)\n\
                   while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n\
                   print(os.getcwd()); print(sorted(os.listdir('.')))";
    let mut py = KillOnDrop(
        Command::new("python3")
            .args(["-c", program])
            .arg(&go)
            .current_dir(m.path("d/sub"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = std::io::BufReader::new(py.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // Listed while the program is in it: the new name shows only after the refresh.
    assert!(names(&m.path("d/sub")).is_empty());
    fs::write(s.remote("w/d/sub/new"), b"x").unwrap();
    assert!(names(&m.path("d/sub")).is_empty());
    let out = refresh(&[m.path("").as_os_str()]);
    assert!(out.status.success());
    fs::write(&go, b"").unwrap();
    let mut said = String::new();
    stdout.read_to_string(&mut said).unwrap();
    let mut err = String::new();
    py.0.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(py.0.wait().unwrap().success(), "after a refresh: {err}");
    let sub = fs::canonicalize(m.path("d/sub")).unwrap();
    assert_eq!(
        said,
        format!("{}\n['new']\n", sub.display()),
        "getcwd and the listing"
    );
}

#[test]
fn refresh_of_what_is_not_a_mount_or_outside_it_is_one_clear_line() {
    let tmp = TempDir::new("refresh");
    let t = tmp.path().as_os_str();
    for (args, want) in [
        (vec![t], "is not an sftpfs mount of yours"),
        (vec![], "refresh: which mount?"),
        (vec![t, "../x".as_ref()], "without '..'"),
        (
            vec!["--bogus".as_ref()],
            "refresh: unknown option '--bogus'",
        ),
    ] {
        let out = refresh(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
