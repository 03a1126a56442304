//! Everyday tools on a real mount: cp, mv, sed -i, ln, chmod, chown, truncate, touch, git,
//! tar, rm -rf, df. Each result is checked on the server's side of the directory.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

/// Asserts that `server` holds the same tree as `local`: names, types, file contents, symlink
/// targets, and with `meta` also permission bits and mtimes (files and dirs).
#[track_caller]
fn assert_same_tree(local: &Path, server: &Path, meta: bool) {
    let names = |d: &Path| -> std::collections::BTreeSet<std::ffi::OsString> {
        fs::read_dir(d)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display()))
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    let (ln, sn) = (names(local), names(server));
    assert_eq!(
        ln,
        sn,
        "entries of {} vs {}",
        local.display(),
        server.display()
    );
    for name in ln {
        let (l, s) = (local.join(&name), server.join(&name));
        let (lm, sm) = (
            fs::symlink_metadata(&l).unwrap(),
            fs::symlink_metadata(&s).unwrap(),
        );
        assert_eq!(
            lm.mode() & libc::S_IFMT,
            sm.mode() & libc::S_IFMT,
            "type of {}",
            s.display()
        );
        if lm.file_type().is_symlink() {
            assert_eq!(fs::read_link(&l).unwrap(), fs::read_link(&s).unwrap());
            continue;
        }
        if meta {
            assert_eq!(
                lm.mode() & 0o7777,
                sm.mode() & 0o7777,
                "mode of {}",
                s.display()
            );
        }
        if lm.is_dir() {
            assert_same_tree(&l, &s, meta);
        } else {
            assert!(
                fs::read(&l).unwrap() == fs::read(&s).unwrap(),
                "content of {}",
                s.display()
            );
        }
        if meta {
            // Directory mtimes change when entries are added after; check files only.
            if lm.is_file() {
                assert_eq!(lm.mtime(), sm.mtime(), "mtime of {}", s.display());
            }
        }
    }
}

/// A small tree: empty, small and 300 KiB files, nested dirs, a symlink, odd modes.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper/deepest")).unwrap();
    fs::create_dir(root.join("emptydir")).unwrap();
    fs::write(root.join("empty"), "").unwrap();
    fs::write(root.join("small.txt"), "small\n").unwrap();
    fs::write(root.join("sub/big.bin"), random_bytes(300_000, 11)).unwrap();
    fs::write(root.join("sub/deeper/deepest/leaf"), "leaf\n").unwrap();
    fs::write(root.join("sub/script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(
        root.join("sub/script.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::write(root.join("sub/private"), "p").unwrap();
    fs::set_permissions(root.join("sub/private"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("sub/deeper/deepest/leaf", root.join("link-to-leaf")).unwrap();
    std::os::unix::fs::symlink("../small.txt", root.join("sub/uplink")).unwrap();
    for (i, p) in ["empty", "small.txt", "sub/big.bin", "sub/private"]
        .iter()
        .enumerate()
    {
        let f = fs::File::options().write(true).open(root.join(p)).unwrap();
        f.set_modified(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_200_000_000 + i as u64),
        )
        .unwrap();
    }
}

/// The trees here hold a `../` link, which sshfs 3.7.6's default `contain_symlinks` refuses
/// to read (EPERM; `cp -a`, `tar`, `git add` then fail, as on sshfs): the tools run with
/// `no_contain_symlinks`, as sshfs's own test suite does.
const TOOLS: &[&str] = &["no_contain_symlinks"];

macro_rules! setup {
    ($s:ident, $m:ident) => {
        let $s = Sshd::start();
        fs::create_dir($s.remote("w")).unwrap();
        let $m = Mount::new(&$s, "w", TOOLS);
    };
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn cp_and_cp_r_copy_into_the_mount() {
    setup!(s, m);
    let tree = s.local("tree");
    make_tree(&tree);
    sh(&s.dir, "cp", &["-r", p(&tree), p(&m.path("tree"))]);
    assert_same_tree(&tree, &s.remote("w/tree"), false);
    // -p keeps modes and times; -a also symlinks and ownership.
    sh(&s.dir, "cp", &["-a", p(&tree), p(&m.path("tree-a"))]);
    assert_same_tree(&tree, &s.remote("w/tree-a"), true);
    // And back out of the mount.
    sh(
        &s.dir,
        "cp",
        &["-a", p(&m.path("tree-a")), p(&s.local("back"))],
    );
    assert_same_tree(&tree, &s.local("back"), true);
    // A single file over an existing one.
    fs::write(s.local("one"), "one\n").unwrap();
    sh(
        &s.dir,
        "cp",
        &[p(&s.local("one")), p(&m.path("tree/small.txt"))],
    );
    assert_eq!(
        fs::read_to_string(s.remote("w/tree/small.txt")).unwrap(),
        "one\n"
    );
}

#[test]
fn mv_over_a_file_and_into_the_mount() {
    setup!(s, m);
    fs::write(m.path("target"), "old\n").unwrap();
    fs::write(m.path("new"), "new\n").unwrap();
    sh(&m.mnt, "mv", &["new", "target"]);
    assert_eq!(fs::read_to_string(s.remote("w/target")).unwrap(), "new\n");
    assert!(!s.remote("w/new").exists());
    // From outside the mount: a copy then an unlink.
    fs::write(s.local("outside"), "outside\n").unwrap();
    sh(
        &s.dir,
        "mv",
        &[p(&s.local("outside")), p(&m.path("target"))],
    );
    assert_eq!(
        fs::read_to_string(s.remote("w/target")).unwrap(),
        "outside\n"
    );
    assert!(!s.local("outside").exists());
    // A directory.
    fs::create_dir_all(m.path("d1/x")).unwrap();
    fs::write(m.path("d1/x/f"), "f").unwrap();
    sh(&m.mnt, "mv", &["d1", "d2"]);
    assert_eq!(fs::read_to_string(s.remote("w/d2/x/f")).unwrap(), "f");
    assert!(!s.remote("w/d1").exists());
}

#[test]
fn sed_in_place_replaces_the_file_and_keeps_its_mode() {
    setup!(s, m);
    fs::write(m.path("conf"), "alpha=1\nbeta=2\ngamma=3\n").unwrap();
    fs::set_permissions(m.path("conf"), fs::Permissions::from_mode(0o640)).unwrap();
    sh(&m.mnt, "sed", &["-i", "s/beta=2/beta=42/", "conf"]);
    assert_eq!(
        fs::read_to_string(s.remote("w/conf")).unwrap(),
        "alpha=1\nbeta=42\ngamma=3\n"
    );
    assert_eq!(
        fs::metadata(s.remote("w/conf")).unwrap().mode() & 0o7777,
        0o640
    );
    // No temporary file left behind.
    let names: Vec<_> = fs::read_dir(s.remote("w"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("conf")]);
    // Shell redirections: > and >>.
    sh(
        &m.mnt,
        "sh",
        &["-c", "echo first > out; echo second >> out"],
    );
    assert_eq!(
        fs::read_to_string(s.remote("w/out")).unwrap(),
        "first\nsecond\n"
    );
}

#[test]
fn ln_and_ln_s() {
    setup!(s, m);
    fs::write(m.path("file"), "data").unwrap();
    sh(&m.mnt, "ln", &["file", "hard"]);
    sh(&m.mnt, "ln", &["-s", "file", "soft"]);
    sh(&m.mnt, "ln", &["-s", "/nonexistent/abs/target", "abs"]);
    let (a, b) = (
        fs::metadata(s.remote("w/file")).unwrap(),
        fs::metadata(s.remote("w/hard")).unwrap(),
    );
    assert_eq!(
        a.ino(),
        b.ino(),
        "ln did not make a hard link on the server"
    );
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        fs::read_link(s.remote("w/soft")).unwrap(),
        Path::new("file")
    );
    assert_eq!(
        fs::read_link(s.remote("w/abs")).unwrap(),
        Path::new("/nonexistent/abs/target")
    );
    assert_eq!(sh(&m.mnt, "readlink", &["soft"]), "file\n");
    assert_eq!(sh(&m.mnt, "cat", &["soft"]), "data");
    // ln -sf replaces a link.
    sh(&m.mnt, "ln", &["-sfn", "other", "soft"]);
    assert_eq!(
        fs::read_link(s.remote("w/soft")).unwrap(),
        Path::new("other")
    );
}

#[test]
fn chmod_chown_truncate_touch_tools() {
    setup!(s, m);
    fs::write(m.path("f"), "0123456789").unwrap();
    sh(&m.mnt, "chmod", &["640", "f"]);
    assert_eq!(
        fs::metadata(s.remote("w/f")).unwrap().mode() & 0o7777,
        0o640
    );
    sh(&m.mnt, "chmod", &["u+x,g-r", "f"]);
    assert_eq!(
        fs::metadata(s.remote("w/f")).unwrap().mode() & 0o7777,
        0o700
    );
    fs::create_dir_all(m.path("d/e")).unwrap();
    fs::write(m.path("d/e/g"), "g").unwrap();
    sh(&m.mnt, "chmod", &["-R", "go-rwx", "d"]);
    assert_eq!(
        fs::metadata(s.remote("w/d/e/g")).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(s.remote("w/d/e")).unwrap().mode() & 0o777,
        0o700
    );

    sh(&m.mnt, "chown", &["1234:2345", "f"]);
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 2345));
    sh(&m.mnt, "chown", &["-R", "4321", "d"]);
    let md = fs::metadata(s.remote("w/d/e/g")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4321, 0));
    sh(&m.mnt, "chgrp", &["777", "f"]);
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 777));

    sh(&m.mnt, "truncate", &["-s", "4", "f"]);
    assert_eq!(fs::read(s.remote("w/f")).unwrap(), b"0123");
    sh(&m.mnt, "truncate", &["-s", "2M", "f"]);
    assert_eq!(fs::metadata(s.remote("w/f")).unwrap().len(), 2 << 20);
    sh(&m.mnt, "truncate", &["-s", "-1M", "f"]);
    assert_eq!(fs::metadata(s.remote("w/f")).unwrap().len(), 1 << 20);
    assert_eq!(&fs::read(s.remote("w/f")).unwrap()[..6], b"0123\0\0");

    // touch -d (TZ=UTC in `sh`): 2001-02-03 04:05:06 UTC = 981173106.
    sh(&m.mnt, "touch", &["-d", "2001-02-03 04:05:06", "f"]);
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!(md.mtime(), 981_173_106);
    assert_eq!(md.atime(), 981_173_106);
    sh(&m.mnt, "touch", &["-m", "-d", "2002-02-03 04:05:06", "f"]);
    let md = fs::metadata(s.remote("w/f")).unwrap();
    assert_eq!(md.mtime(), 1_012_709_106);
    assert_eq!(md.atime(), 981_173_106, "touch -m changed atime");
    // touch of a new file creates it; touch of a file now sets the current time.
    sh(&m.mnt, "touch", &["created"]);
    assert!(s.remote("w/created").is_file());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    sh(&m.mnt, "touch", &["f"]);
    assert!(fs::metadata(s.remote("w/f")).unwrap().mtime() >= before - 1);
    assert_eq!(
        sh(&m.mnt, "stat", &["-c", "%s %a %u %g", "f"]),
        "1048576 700 1234 777\n"
    );
}

fn git(cwd: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=sftpfs test",
            "-c",
            "user.email=test@sftpfs.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "gc.auto=0",
        ])
        .args(args)
        .current_dir(cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed ({}):\n{}{}",
        cwd.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn git_init_add_commit_status() {
    setup!(s, m);
    let home = s.dir.clone();
    git(&m.mnt, &home, &["init", "-q", "repo"]);
    let repo = m.path("repo");
    make_tree(&repo.join("src"));
    fs::remove_dir(repo.join("src/emptydir")).unwrap(); // git does not track empty dirs
    fs::write(repo.join("README"), "readme\n").unwrap();
    git(&repo, &home, &["add", "-A"]);
    git(&repo, &home, &["commit", "-q", "-m", "first"]);
    assert_eq!(git(&repo, &home, &["status", "--porcelain"]), "");
    fs::write(repo.join("README"), "readme, changed\n").unwrap();
    assert_eq!(git(&repo, &home, &["status", "--porcelain"]), " M README\n");
    git(&repo, &home, &["commit", "-q", "-am", "second"]);
    git(&repo, &home, &["mv", "README", "README.md"]);
    git(&repo, &home, &["commit", "-q", "-m", "third"]);
    git(&repo, &home, &["gc", "-q"]);
    assert_eq!(git(&repo, &home, &["status", "--porcelain"]), "");
    let log = git(&repo, &home, &["log", "--format=%s"]);
    assert_eq!(log, "third\nsecond\nfirst\n");
    // The server's copy is a sound repository with the same history and a clean work tree.
    let srv = s.remote("w/repo");
    git(&srv, &home, &["fsck", "--strict", "--no-progress"]);
    assert_eq!(git(&srv, &home, &["log", "--format=%s"]), log);
    assert_eq!(git(&srv, &home, &["status", "--porcelain"]), "");
    assert_eq!(
        fs::read_to_string(srv.join("README.md")).unwrap(),
        "readme, changed\n"
    );
    // And a clone made on the server checks out through the mount.
    git(&s.remote("w"), &home, &["clone", "-q", p(&srv), "clone"]);
    wait_visible(&m.path("clone"));
    assert_eq!(git(&m.path("clone"), &home, &["status", "--porcelain"]), "");
    assert_same_tree(&srv.join("src"), &m.path("clone/src"), false);
}

#[test]
fn tar_extracts_into_the_mount_with_modes_times_owners_and_links() {
    setup!(s, m);
    let tree = s.local("tree");
    make_tree(&tree);
    fs::hard_link(tree.join("small.txt"), tree.join("sub/hardlink")).unwrap();
    std::os::unix::fs::chown(tree.join("sub/big.bin"), Some(1234), Some(2345)).unwrap();
    let archive = s.local("tree.tar");
    sh(&s.local(""), "tar", &["-cf", p(&archive), "tree"]);
    sh(&m.mnt, "tar", &["-xf", p(&archive)]);
    assert_same_tree(&tree, &s.remote("w/tree"), true);
    let big = fs::metadata(s.remote("w/tree/sub/big.bin")).unwrap();
    assert_eq!(
        (big.uid(), big.gid()),
        (1234, 2345),
        "tar (as root) keeps owners"
    );
    let (a, b) = (
        fs::metadata(s.remote("w/tree/small.txt")).unwrap(),
        fs::metadata(s.remote("w/tree/sub/hardlink")).unwrap(),
    );
    assert_eq!(
        a.ino(),
        b.ino(),
        "tar's hard link is not a hard link on the server"
    );
    // tar's own comparison, through the mount.
    sh(&s.local(""), "tar", &["-df", p(&archive), "-C", p(&m.mnt)]);
}

#[test]
fn rm_rf_removes_a_deep_tree() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mut dir = s.remote("w/tree");
    for depth in 0..5 {
        dir = dir.join(format!("level{depth}"));
        fs::create_dir_all(&dir).unwrap();
        for i in 0..60 {
            fs::write(dir.join(format!("f{i}")), "x").unwrap();
        }
        std::os::unix::fs::symlink("f0", dir.join("link")).unwrap();
        fs::create_dir(dir.join(format!("empty{depth}"))).unwrap();
    }
    // Read-only files and dirs do not stop root's rm -rf.
    fs::set_permissions(
        s.remote("w/tree/level0/f1"),
        fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    let m = Mount::new(&s, "w", &[]);
    sh(&m.mnt, "rm", &["-rf", "tree"]);
    assert!(
        !s.remote("w/tree").exists(),
        "the tree is still on the server"
    );
    assert_eq!(fs::read_dir(s.remote("w")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(m.path("")).unwrap().count(), 0);
}

#[test]
fn df_shows_the_servers_numbers() {
    setup!(s, m);
    let field = |path: &Path, what: &str| -> u128 {
        let out = sh(&s.dir, "df", &["-B1", &format!("--output={what}"), p(path)]);
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    };
    assert_eq!(
        field(&m.mnt, "size"),
        field(&s.remote("w"), "size"),
        "df size of the mount vs the server's dir"
    );
    let (a, b) = (field(&m.mnt, "avail"), field(&s.remote("w"), "avail"));
    assert!(
        a.abs_diff(b) < 256 << 20,
        "df avail of the mount {a} vs the server's {b}"
    );
    let out = sh(&s.dir, "df", &["-h", p(&m.mnt)]);
    assert!(out.contains(p(&m.mnt)), "{out}");
}

#[test]
fn find_walks_the_tree() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    make_tree(&s.remote("w/tree"));
    let m = Mount::new(&s, "w", TOOLS);
    let list = |root: &Path| -> Vec<String> {
        let out = sh(root, "find", &[".", "-printf", "%y %m %s %P %l\n"]);
        let mut v: Vec<String> = out
            .lines()
            // Directory sizes differ between filesystems.
            .map(|l| {
                if l.starts_with("d ") {
                    let f: Vec<&str> = l.splitn(4, ' ').collect();
                    format!("d {} - {}", f[1], f[3])
                } else {
                    l.to_string()
                }
            })
            .collect();
        v.sort();
        v
    };
    let listed = list(&m.path("tree"));
    assert_eq!(listed.len(), 13, "{listed:#?}");
    assert_eq!(listed, list(&s.remote("w/tree")));
}
