//! `sftpfs refresh` and SIGHUP (issue 13) on real mounts: changes made directly on the server
//! show at once afterwards, though every cache (sftpfs's and the kernel's) would have kept
//! the old view for ten minutes.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Output};
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
