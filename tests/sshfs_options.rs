//! sshfs 3.7.6's options through real mounts: each one shows its effect, as sshfs has it.

mod support;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use support::*;

fn server_with_dir() -> Sshd {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    s
}

#[test]
fn follow_symlinks_shows_targets_everywhere() {
    let s = server_with_dir();
    fs::write(s.remote("w/t"), b"target data").unwrap();
    fs::create_dir(s.remote("w/d")).unwrap();
    symlink("t", s.remote("w/l")).unwrap();
    symlink("d", s.remote("w/ld")).unwrap();
    symlink("missing", s.remote("w/dangling")).unwrap();
    let m = Mount::new(&s, "w", &["follow_symlinks"]);
    // readdirplus first (ls -l), then lookup/getattr, open and read.
    let listed = sh(&m.path(""), "ls", &["-l"]);
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
            .unwrap_or_else(|| panic!("{name} not in ls -l:\n{listed}"))
            .to_string()
    };
    assert!(line("l").starts_with('-'), "ls -l: {listed}");
    assert!(line("ld").starts_with('d'), "ls -l: {listed}");
    assert!(line("dangling").starts_with('l'), "ls -l: {listed}");
    let md = fs::symlink_metadata(m.path("l")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.size(), 11);
    assert_eq!(fs::read(m.path("l")).unwrap(), b"target data");
    assert!(fs::symlink_metadata(m.path("ld")).unwrap().is_dir());
    assert!(fs::symlink_metadata(m.path("dangling"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_link(m.path("dangling")).unwrap().to_str(),
        Some("missing")
    );
    // A fresh mount, first touching the link by name (lookup, open, read).
    let m2 = Mount::new(&s, "w", &["follow_symlinks"]);
    assert_eq!(fs::read(m2.path("l")).unwrap(), b"target data");
    assert!(fs::symlink_metadata(m2.path("l")).unwrap().is_file());
    // A link made through the mount: created as a link on the server, and from then on
    // shown as its target, without EIO (sshfs answers EIO to the symlink call itself).
    symlink("t", m2.path("new")).unwrap();
    assert!(fs::symlink_metadata(m2.remote("new"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(m2.path("new")).unwrap(), b"target data");
    assert!(fs::symlink_metadata(m2.path("new")).unwrap().is_file());
    let listed = sh(&m2.path(""), "ls", &["-l"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with('-') && l.ends_with(" new")),
        "{listed}"
    );
}
