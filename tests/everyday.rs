//! Everyday programs on a mount, each checked on the server's side too (issue 19): git (a
//! repository of 200 files through commit, branch, rebase, gc and fsck, cloned out of and
//! into the mount, then checked by git on the server's own path), vim in ex mode with each
//! `backupcopy`, `sed -i` and `perl -pi`, rsync `-aH` in and out (a second run transfers
//! nothing), sqlite3 (10 000 rows in a transaction, a reader while another process writes, in
//! rollback and WAL mode, `integrity_check` here and on a copy of the server's file), a
//! Python venv with `compileall`, make, and tar `czf`/`xzf --same-owner -p` against `stat`.
//! Each runs in the default mode and with `-o async_writes` (then `sftpfs sync` before the
//! server's side is looked at).
//!
//! Elsewhere: an appender with `cat`s of the same file, a file open for reading whose name
//! goes on the server, and `make` after a `touch` (also with a queued time change) are in
//! `tests/two_actors.rs`.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::*;

const ASYNC: &[&str] = &["async_writes"];

/// Runs `cmd` (stdin from /dev/null, C locale), which must succeed; its stdout.
#[track_caller]
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the mount queued is on the server (`async_writes`); nothing to do otherwise.
fn settle(m: &Mount, extra: &[&str]) {
    if extra.contains(&"async_writes") {
        let out = sftpfs_sync(&m.mnt);
        assert!(
            out.status.success(),
            "sftpfs sync: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Sets the modification (and access) time of `p` itself, a symlink too, in whole seconds.
fn set_time(p: &Path, secs: i64) {
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cstr(p).as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// Every name under `root` (and `root` itself, as `.`) as `stat` shows it, one line each in
/// name order: type and mode bits, owner, mtime in whole seconds, a file's size, a link's
/// target, and for a file with more than one link the first name (in this order) of the
/// same inode.
fn stat_tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
        let here = root.join(rel);
        let meta = fs::symlink_metadata(&here).unwrap();
        let is_dir = meta.is_dir();
        out.push((rel.to_path_buf(), meta));
        if is_dir {
            let mut names: Vec<_> = fs::read_dir(&here)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), out);
            }
        }
    }
    let mut all = Vec::new();
    walk(root, Path::new(""), &mut all);
    let mut first_of: HashMap<(u64, u64), PathBuf> = HashMap::new();
    all.iter()
        .map(|(rel, m)| {
            let kind = m.file_type();
            let name = if rel.as_os_str().is_empty() {
                ".".to_string()
            } else {
                rel.display().to_string()
            };
            let mut line = format!(
                "{name} {}{:04o} {}:{} {}",
                if kind.is_dir() {
                    'd'
                } else if kind.is_symlink() {
                    'l'
                } else {
                    '-'
                },
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime()
            );
            if kind.is_file() {
                line.push_str(&format!(" {}", m.size()));
                if m.nlink() > 1 {
                    let first = first_of.entry((m.dev(), m.ino())).or_insert(rel.clone());
                    line.push_str(&format!(" ={}", first.display()));
                }
            }
            if kind.is_symlink() {
                let target = fs::read_link(root.join(rel)).unwrap();
                line.push_str(&format!(" -> {}", target.display()));
            }
            line
        })
        .collect()
}

#[track_caller]
fn same_stat(want: &[String], have: &[String], what: &str) {
    if want != have {
        let want_set: BTreeSet<_> = want.iter().collect();
        let have_set: BTreeSet<_> = have.iter().collect();
        panic!(
            "{what} differs from the original:\nonly in the original: {:#?}\nonly in {what}: {:#?}",
            want_set.difference(&have_set).collect::<Vec<_>>(),
            have_set.difference(&want_set).collect::<Vec<_>>()
        );
    }
}

// ---------------------------------------------------------------------------------------
// git

/// git with no user or system configuration, a fixed identity, run in `dir`.
fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE"))
}

/// git on the server's own copy of a work tree, as if the mount were not there.
fn git_on_server(work_tree: &Path, args: &[&str]) -> String {
    let mut all = vec![
        format!("--git-dir={}", work_tree.join(".git").display()),
        format!("--work-tree={}", work_tree.display()),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    git(Path::new("/"), &all)
}

/// A repository of 200 files made on the mount, through commit, branch, rebase and gc, then
/// cloned out of the mount and back into it; git checks each copy, on the mount and on the
/// server's own path.
fn git_workflow(extra: &[&str]) {
    let s = Sshd::start();
    let m = Mount::new(&s, "", extra);
    let repo = m.path("repo");
    git(&m.mnt, &["init", "-q", "-b", "main", "repo"]);
    for i in 0..200 {
        let d = repo.join(format!("d{}", i % 10));
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join(format!("f{i}.txt")),
            format!("file {i}\n{}", "some text\n".repeat(i % 7)),
        )
        .unwrap();
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "200 files"]);
    git(&repo, &["checkout", "-q", "-b", "side"]);
    fs::OpenOptions::new()
        .append(true)
        .open(repo.join("d1/f1.txt"))
        .unwrap()
        .write_all(b"on side\n")
        .unwrap();
    git(&repo, &["commit", "-q", "-a", "-m", "side"]);
    git(&repo, &["checkout", "-q", "main"]);
    fs::write(repo.join("d2/f2.txt"), "rewritten on main\n").unwrap();
    git(&repo, &["commit", "-q", "-a", "-m", "main"]);
    git(&repo, &["checkout", "-q", "side"]);
    git(&repo, &["rebase", "-q", "main"]);
    git(&repo, &["gc", "-q"]);
    git(&repo, &["fsck", "--full", "--strict", "--no-dangling"]);
    assert_eq!(
        git(&repo, &["log", "--format=%s"]),
        "side\nmain\n200 files\n"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    let head = git(&repo, &["rev-parse", "HEAD"]);

    settle(&m, extra);
    let server = m.remote("repo");
    git_on_server(&server, &["fsck", "--full", "--strict", "--no-dangling"]);
    assert_eq!(git_on_server(&server, &["rev-parse", "HEAD"]), head);
    assert_eq!(git_on_server(&server, &["status", "--porcelain"]), "");
    let objects = git_on_server(&server, &["count-objects", "-v"]);
    assert!(
        objects.lines().any(|l| l == "count: 0"),
        "loose objects left on the server after gc:\n{objects}"
    );
    assert_eq!(
        fs::read_to_string(server.join("d1/f1.txt")).unwrap(),
        "file 1\nsome text\non side\n"
    );

    // Out of the mount, and back in.
    let out = s.local("out");
    git(&s.dir, &["clone", "-q", text(&repo), text(&out)]);
    git(&out, &["fsck", "--full", "--strict"]);
    assert_eq!(git(&out, &["rev-parse", "HEAD"]), head);
    let back = m.path("back");
    git(&s.dir, &["clone", "-q", text(&out), text(&back)]);
    git(&back, &["fsck", "--full", "--strict"]);
    assert_eq!(git(&back, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&back, &["status", "--porcelain"]), "");
    settle(&m, extra);
    let server_back = m.remote("back");
    git_on_server(&server_back, &["fsck", "--full", "--strict"]);
    assert_eq!(git_on_server(&server_back, &["rev-parse", "HEAD"]), head);
    assert_eq!(git_on_server(&server_back, &["status", "--porcelain"]), "");
    same_tree(&out.join("d1"), &server_back.join("d1"));
}

#[test]
fn git_init_commit_rebase_gc_fsck_and_clones() {
    git_workflow(&[]);
}

#[test]
fn git_init_commit_rebase_gc_fsck_and_clones_async() {
    git_workflow(ASYNC);
}

// ---------------------------------------------------------------------------------------
// Editors and in-place edits

/// vim in ex mode, writing with a backup (`writebackup`, and `backupskip` emptied: its
/// default skips files under /tmp, where the tests live) in the given `backupcopy` mode.
fn vim_substitute(file: &Path, backupcopy: &str, from: &str, to: &str) {
    run(Command::new("vim").args([
        "-u",
        "NONE",
        "-i",
        "NONE",
        "-es",
        &format!("+set nocompatible writebackup backupskip= backupcopy={backupcopy}"),
        &format!("+%s/{from}/{to}/"),
        "+wq",
        text(file),
    ]));
}

/// The names in the server's directory `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn vim_each_backupcopy(extra: &[&str]) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    for bc in ["yes", "no", "auto"] {
        let dir = format!("vim-{bc}");
        fs::create_dir(m.path(&dir)).unwrap();
        let name = format!("{dir}/notes.txt");
        let f = m.path(&name);
        fs::write(&f, "one\ntwo\nthree\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        lchown(&f, 65534, 1);
        settle(&m, extra);
        let server_ino = fs::metadata(m.remote(&name)).unwrap().ino();
        let mount_ino = fs::metadata(&f).unwrap().ino();

        vim_substitute(&f, bc, "two", "TWO");
        settle(&m, extra);
        let server = fs::metadata(m.remote(&name)).unwrap();
        assert_eq!(
            fs::read_to_string(m.remote(&name)).unwrap(),
            "one\nTWO\nthree\n",
            "backupcopy={bc}: the server's file"
        );
        assert_eq!(fs::read_to_string(&f).unwrap(), "one\nTWO\nthree\n");
        assert_eq!(
            (server.mode() & 0o7777, server.uid(), server.gid()),
            (0o640, 65534, 1),
            "backupcopy={bc}: mode and owner on the server"
        );
        let here = fs::metadata(&f).unwrap();
        assert_eq!(
            (here.mode() & 0o7777, here.uid(), here.gid()),
            (0o640, 65534, 1)
        );
        assert_eq!(
            names(&m.remote(&dir)),
            ["notes.txt"],
            "backupcopy={bc}: backup or swap files left on the server"
        );
        match bc {
            // Written in place: the same file.
            "yes" => {
                assert_eq!(server.ino(), server_ino, "backupcopy=yes replaced the file");
                assert_eq!(here.ino(), mount_ino);
            }
            // The original renamed to the backup, a new file written at the name: a new
            // file on the server, and a new inode here as on a local disk.
            "no" => {
                assert_ne!(server.ino(), server_ino, "backupcopy=no wrote in place");
                assert_ne!(
                    here.ino(),
                    mount_ino,
                    "backupcopy=no: the mount shows the old inode"
                );
            }
            _ => {}
        }
    }

    // A file with a second name: backupcopy=auto must write in place, keeping the link.
    fs::write(m.path("linked.txt"), "one\ntwo\n").unwrap();
    fs::hard_link(m.path("linked.txt"), m.path("other-name.txt")).unwrap();
    vim_substitute(&m.path("linked.txt"), "auto", "one", "ONE");
    settle(&m, extra);
    let (a, b) = (
        fs::metadata(m.remote("linked.txt")).unwrap(),
        fs::metadata(m.remote("other-name.txt")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "vim broke the hard link on the server");
    assert_eq!(
        fs::read_to_string(m.remote("other-name.txt")).unwrap(),
        "ONE\ntwo\n"
    );
}

#[test]
fn vim_writes_with_each_backupcopy() {
    vim_each_backupcopy(&[]);
}

#[test]
fn vim_writes_with_each_backupcopy_async() {
    vim_each_backupcopy(ASYNC);
}

/// `sed -i` and `perl -pi` write a temp file and rename it over the original: the server
/// has the edit, in a new file with the original's mode and owner, and no temp file.
fn sed_and_perl_in_place(extra: &[&str]) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    let f = m.path("config");
    fs::write(&f, "alpha=1\nbeta=2\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o604)).unwrap();
    lchown(&f, 65534, 1);
    settle(&m, extra);
    let mut ino = fs::metadata(m.remote("config")).unwrap().ino();
    let edits: [(&str, &[&str], &str); 2] = [
        ("sed", &["-i", "s/alpha=1/alpha=10/"], "alpha=10\nbeta=2\n"),
        (
            "perl",
            &["-pi", "-e", "s/beta=2/beta=20/"],
            "alpha=10\nbeta=20\n",
        ),
    ];
    for (program, args, want) in edits {
        run(Command::new(program).args(args).arg(&f));
        assert_eq!(
            fs::read_to_string(&f).unwrap(),
            want,
            "{program} on the mount"
        );
        settle(&m, extra);
        assert_eq!(
            fs::read_to_string(m.remote("config")).unwrap(),
            want,
            "{program}: the server's file"
        );
        let meta = fs::metadata(m.remote("config")).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o604, 65534, 1),
            "{program}: mode and owner on the server"
        );
        assert_ne!(meta.ino(), ino, "{program} did not replace the file");
        ino = meta.ino();
        assert_eq!(
            names(&m.remote("")),
            ["config"],
            "{program} left a temp file"
        );
    }
}

#[test]
fn sed_i_and_perl_pi_replace_the_file() {
    sed_and_perl_in_place(&[]);
}

#[test]
fn sed_i_and_perl_pi_replace_the_file_async() {
    sed_and_perl_in_place(ASYNC);
}

// ---------------------------------------------------------------------------------------
// rsync

/// A tree with what rsync `-aH` keeps: modes (setgid directory, a mode-0 file), owners, hard
/// links, symlinks (relative, climbing, absolute, dangling), an empty directory, a file of
/// several SFTP writes, and times in whole seconds.
fn rsync_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    let files: [(&str, usize, u32); 6] = [
        ("run.sh", 3000, 0o751),
        ("secret", 6000, 0o600),
        ("shared", 9000, 0o644),
        ("big.bin", 700_000, 0o644),
        ("sub/deeper/ro", 10, 0o444),
        ("sub/none", 5, 0o000),
    ];
    for (i, (name, len, mode)) in files.into_iter().enumerate() {
        let p = root.join(name);
        fs::write(&p, random_bytes(len, i as u64 + 1)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::hard_link(root.join("shared"), root.join("sub/shared-link")).unwrap();
    fs::hard_link(root.join("shared"), root.join("sub/deeper/shared-2")).unwrap();
    std::os::unix::fs::symlink("run.sh", root.join("to-run")).unwrap();
    std::os::unix::fs::symlink("../secret", root.join("sub/up")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("absolute")).unwrap();
    std::os::unix::fs::symlink("../nowhere", root.join("sub/dangling")).unwrap();
    lchown(&root.join("secret"), 65534, 1);
    lchown(&root.join("sub/up"), 65534, 65534);
    fs::set_permissions(root.join("sub"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
    // Deepest first, so that setting a name's time does not move its directory's.
    let mut all = vec![root.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if fs::symlink_metadata(&all[i]).unwrap().is_dir() {
            let mut more: Vec<PathBuf> = fs::read_dir(&all[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            more.sort();
            all.extend(more);
        }
        i += 1;
    }
    for (n, p) in all.iter().enumerate().rev() {
        set_time(p, 1_600_000_000 + 1000 * n as i64);
    }
}

fn rsync(from: &Path, to: &Path, extra: &[&str]) -> String {
    let from = format!("{}/", from.display());
    let to = format!("{}/", to.display());
    run(Command::new("rsync")
        .args(["-aH", "--stats"])
        .args(extra)
        .args([&from, &to]))
}

/// The number rsync `--stats` gives for "Number of regular files transferred".
fn transferred(stats: &str) -> usize {
    stats
        .lines()
        .find_map(|l| l.strip_prefix("Number of regular files transferred: "))
        .unwrap_or_else(|| panic!("no count of transferred files in:\n{stats}"))
        .replace(',', "")
        .parse()
        .unwrap()
}

/// rsync's `--itemize-changes` lines of a run: what it changed.
fn itemized(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.len() > 12 && l.as_bytes()[11] == b' ' && !l.starts_with("Number"))
        .filter(|l| l.starts_with(['<', '>', 'c', 'h', '.', '*']))
        .collect()
}

#[track_caller]
fn nothing_to_do(out: &str, what: &str) {
    assert_eq!(transferred(out), 0, "{what}: files sent again:\n{out}");
    let changes = itemized(out);
    assert!(changes.is_empty(), "{what} changed: {changes:#?}");
}

/// rsync `-aH` of a tree into the mount and back out: the server and the copy back have
/// every mode, owner, time, link and hard link of the original, and a second run each way
/// has nothing to do. Climbing and absolute links need `no_contain_symlinks` (README).
fn rsync_in_and_out(extra: &[&str]) {
    let s = Sshd::start();
    let src = s.local("src");
    rsync_tree(&src);
    let original = stat_tree(&src);
    fs::create_dir_all(s.remote("w")).unwrap();
    let mut opts = vec!["no_contain_symlinks"];
    opts.extend(extra);
    let m = Mount::new(&s, "w", &opts);

    let dst = m.path("dst");
    let first = rsync(&src, &dst, &[]);
    assert_eq!(
        transferred(&first),
        6,
        "the first run into the mount:\n{first}"
    );
    settle(&m, extra);
    same_stat(&original, &stat_tree(&m.remote("dst")), "the server's copy");
    same_stat(&original, &stat_tree(&dst), "the mount's view");
    nothing_to_do(
        &rsync(&src, &dst, &["--itemize-changes"]),
        "a second run into the mount",
    );

    let back = s.local("back");
    let out = rsync(&dst, &back, &[]);
    assert_eq!(
        transferred(&out),
        6,
        "the first run out of the mount:\n{out}"
    );
    same_stat(&original, &stat_tree(&back), "the copy out of the mount");
    nothing_to_do(
        &rsync(&dst, &back, &["--itemize-changes"]),
        "a second run out of the mount",
    );
    settle(&m, extra);
    same_stat(
        &original,
        &stat_tree(&m.remote("dst")),
        "the server's copy at the end",
    );
}

#[test]
fn rsync_in_and_out_keeps_everything_and_second_runs_do_nothing() {
    rsync_in_and_out(&[]);
}

#[test]
fn rsync_in_and_out_keeps_everything_and_second_runs_do_nothing_async() {
    rsync_in_and_out(ASYNC);
}

/// On a mount that did not make the tree, rsync cannot see which names are links of one
/// file: SFTP (v3) gives no inode numbers, so each name has its own inode here until a link
/// is made through this mount. rsync then links the names again, each through a temp name
/// renamed over the old one; the server's rename(2) of two links of one file does nothing,
/// so every such temp name (`sub/.shared-link.XXXXXX`) stays on the server, one per hard link
/// per run. sshfs does the same on every run. Left for the lead: telling such names apart
/// needs identity the protocol does not carry.
#[test]
#[ignore = "SFTP has no inode numbers: rsync -aH on a fresh mount re-links hard links and leaves temp names on the server"]
fn rsync_again_on_a_fresh_mount_does_nothing() {
    let s = Sshd::start();
    let src = s.local("src");
    rsync_tree(&src);
    fs::create_dir_all(s.remote("w")).unwrap();
    {
        let m = Mount::new(&s, "w", &["no_contain_symlinks"]);
        rsync(&src, &m.path("dst"), &[]);
    }
    let m = Mount::new(&s, "w", &["no_contain_symlinks"]);
    let out = rsync(&src, &m.path("dst"), &["--itemize-changes"]);
    same_stat(
        &stat_tree(&src),
        &stat_tree(&m.remote("dst")),
        "the server's copy after a run on a fresh mount",
    );
    nothing_to_do(&out, "a run on a fresh mount");
}

// ---------------------------------------------------------------------------------------
// sqlite3

/// sqlite3 (the command-line shell) on `db`, with `script` on its stdin.
fn sqlite3(db: &Path, script: &str) -> std::process::Output {
    let mut child = Command::new("sqlite3")
        .arg("-bail")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sqlite3");
    let mut stdin = child.stdin.take().unwrap();
    let script = script.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(script.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

#[track_caller]
fn sqlite3_ok(db: &Path, script: &str) -> String {
    let out = sqlite3(db, script);
    assert!(
        out.status.success(),
        "sqlite3 {}: {}\n{}",
        db.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows a writer commits per transaction, and its transactions.
const BATCH: usize = 25;
const BATCHES: usize = 40;

/// A reader with one connection open all along (Python's sqlite3 module, the same library):
/// each count it reads must be whole transactions; once it has seen the writer half-way it
/// says so (the writer waits for that, so the two overlap for sure), and it ends when it
/// reads the final count.
const READER: &str = r#"
import os, sqlite3, sys, time
db, batch, final, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = sqlite3.connect(db, timeout=30)
seen = set()
end = time.time() + 90
while time.time() < end:
    n = c.execute("select count(*) from t").fetchone()[0]
    if n % batch:
        sys.exit("read %d rows: not whole transactions of %d" % (n, batch))
    seen.add(n)
    if 0 < n < final and not os.path.exists(marker):
        open(marker, "w").close()
    if n == final and os.path.exists(marker):
        print(len(seen))
        sys.exit(0)
    time.sleep(0.005)
sys.exit("did not see %d rows in time; saw %s" % (final, sorted(seen)))
"#;

fn sqlite_on_the_mount(extra: &[&str], journal_mode: &str) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    let db = m.path("app.db");

    // 10 000 rows in one transaction.
    let mut script = format!(
        "pragma journal_mode={journal_mode};\n\
         create table big(id integer primary key, v text);\n\
         create table t(id integer primary key, batch int);\nbegin;\n"
    );
    for i in 0..10_000 {
        script.push_str(&format!(
            "insert into big(v) values('row {i:05} {}');\n",
            "x".repeat(i % 50)
        ));
    }
    script.push_str("commit;\n");
    let mode = sqlite3_ok(&db, &script);
    assert_eq!(mode.trim(), journal_mode);

    // A writer and a reader at once.
    let marker = s.local("reader-saw-half");
    let mut writes = ".timeout 30000\n".to_string();
    for b in 0..BATCHES {
        if b == BATCHES / 2 {
            writes.push_str(&format!(
                ".shell for i in $(seq 3000); do [ -e {} ] && break; sleep 0.01; done\n",
                marker.display()
            ));
        }
        writes.push_str("begin;\n");
        for _ in 0..BATCH {
            writes.push_str(&format!("insert into t(batch) values({b});\n"));
        }
        writes.push_str("commit;\n");
    }
    let reader = Command::new("python3")
        .arg("-c")
        .arg(READER)
        .arg(&db)
        .arg(BATCH.to_string())
        .arg((BATCH * BATCHES).to_string())
        .arg(&marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = KillOnDrop(reader);
    let writer = sqlite3(&db, &writes);
    let read = run_to_end(&mut reader.0);
    assert!(
        writer.status.success(),
        "the writer failed: {}",
        String::from_utf8_lossy(&writer.stderr)
    );
    assert!(read.0, "the reader failed: {}", read.1);
    assert!(marker.exists(), "the reader never saw the writer half-way");

    let want = format!("ok\n10000\n{}\n", BATCH * BATCHES);
    let check = "pragma integrity_check;\nselect count(*) from big;\nselect count(*) from t;\n";
    assert_eq!(sqlite3_ok(&db, check), want, "on the mount");
    settle(&m, extra);
    // The last connection closed: a WAL was checkpointed and removed, as a journal was.
    assert_eq!(
        names(&m.remote("")),
        ["app.db"],
        "files left beside the database"
    );
    let copy = s.local("copy.db");
    fs::copy(m.remote("app.db"), &copy).unwrap();
    assert_eq!(
        sqlite3_ok(&copy, check),
        want,
        "on a copy of the server's file"
    );
}

/// Waits for a child that was spawned with piped output: (success, stderr).
fn run_to_end(child: &mut std::process::Child) -> (bool, String) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.success(), err)
}

#[test]
fn sqlite_transaction_concurrent_reader_and_integrity() {
    sqlite_on_the_mount(&[], "delete");
    sqlite_on_the_mount(&[], "wal");
}

#[test]
fn sqlite_transaction_concurrent_reader_and_integrity_async() {
    sqlite_on_the_mount(ASYNC, "delete");
    sqlite_on_the_mount(ASYNC, "wal");
}

/// WAL needs the `-shm` file mapped shared; with `direct_io` the kernel maps no file of the
/// mount, so sqlite fails with an I/O error, and what was committed before stays intact on
/// the server (README, "sqlite").
#[test]
fn sqlite_wal_without_shared_mappings_fails_cleanly() {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &["direct_io"]);
    let db = m.path("app.db");
    sqlite3_ok(
        &db,
        "create table t(v);\ninsert into t values(1),(2),(3);\n",
    );
    let out = sqlite3(&db, "pragma journal_mode=wal;\ninsert into t values(4);\n");
    assert!(
        !out.status.success(),
        "WAL without shared mappings: sqlite3 succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disk I/O error"), "sqlite3 said: {err}");
    let copy = s.local("copy.db");
    fs::copy(m.remote("app.db"), &copy).unwrap();
    assert_eq!(
        sqlite3_ok(&copy, "pragma integrity_check;\nselect count(*) from t;\n"),
        "ok\n3\n"
    );
}

// ---------------------------------------------------------------------------------------
// Python

/// A package with a module that says where it was loaded from.
fn python_package(root: &Path) {
    fs::create_dir_all(root.join("app/sub")).unwrap();
    fs::write(root.join("app/__init__.py"), "").unwrap();
    fs::write(root.join("app/sub/__init__.py"), "").unwrap();
    for i in 0..20 {
        fs::write(
            root.join(format!("app/sub/m{i:02}.py")),
            format!("def f():\n    return {i}\n\nif __name__ == '__main__':\n    print('m{i:02}', f())\n"),
        )
        .unwrap();
    }
    fs::write(
        root.join("app/main.py"),
        "import app.sub.m07 as m\n\nif __name__ == '__main__':\n    print('main', m.f())\n",
    )
    .unwrap();
}

/// `python3 -m venv --copies` on the mount (without pip: ensurepip installs some 1600
/// files, too slow for CI), `compileall` of a package by the venv's python, which then runs
/// it; on the server the venv's interpreter runs and the compiled files load.
fn venv_and_compileall(extra: &[&str]) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    let venv = m.path("venv");
    run(Command::new("python3").args(["-m", "venv", "--copies", "--without-pip", text(&venv)]));
    let python = venv.join("bin/python");
    let prefix = run(Command::new(&python).args(["-c", "import sys; print(sys.prefix)"]));
    assert_eq!(prefix.trim(), text(&venv));
    python_package(&m.path("pkg"));
    run(Command::new(&python).args(["-m", "compileall", "-q", text(&m.path("pkg"))]));
    let out = run(Command::new(&python)
        .args([
            "-c",
            "import app.sub.m07 as m, sys; print(m.f(), m.__cached__ is not None)",
        ])
        .current_dir(m.path("pkg")));
    assert_eq!(out, "7 True\n");

    settle(&m, extra);
    // The same interpreter as a venv made on a local disk, executable, and it runs there.
    let local = s.local("venv");
    run(Command::new("python3").args(["-m", "venv", "--copies", "--without-pip", text(&local)]));
    let server_python = m.remote("venv/bin/python");
    assert_eq!(
        fs::read(&server_python).unwrap(),
        fs::read(local.join("bin/python")).unwrap(),
        "the venv's python on the server"
    );
    assert_eq!(fs::metadata(&server_python).unwrap().mode() & 0o777, 0o755);
    let prefix = run(Command::new(&server_python).args(["-c", "import sys; print(sys.prefix)"]));
    assert_eq!(prefix.trim(), text(&m.remote("venv")));
    // One compiled file beside each source, and they load on the server without the source.
    let cache = m.remote("pkg/app/sub/__pycache__");
    let compiled: Vec<String> = names(&cache);
    assert_eq!(
        compiled.len(),
        21,
        "compiled files on the server: {compiled:?}"
    );
    let m07 = compiled.iter().find(|n| n.starts_with("m07.")).unwrap();
    let out = run(Command::new("python3").arg(cache.join(m07)));
    assert_eq!(out, "m07 7\n");
}

#[test]
fn python_venv_copies_and_compileall() {
    venv_and_compileall(&[]);
}

#[test]
fn python_venv_copies_and_compileall_async() {
    venv_and_compileall(ASYNC);
}

// ---------------------------------------------------------------------------------------
// make

/// A project built on the mount: the program runs here and on the server, a second `make`
/// does nothing, and after one source is edited (in a later second: SFTP keeps whole
/// seconds) only its object is compiled again and the program linked again. (`touch` of a
/// source, many rounds, and a queued time change: `tests/two_actors.rs`.)
/// The mtimes of `names` as the mount and the server show them, for a failure's message.
fn times(m: &Mount, names: &[&str]) -> String {
    let mtime = |p: &Path| {
        fs::metadata(p)
            .and_then(|m| m.modified())
            .map(|t| format!("{t:?}"))
            .unwrap_or_else(|e| e.to_string())
    };
    names
        .iter()
        .map(|n| {
            format!(
                "{n}: mount {}, server {}\n",
                mtime(&m.path(n)),
                mtime(&m.remote(n))
            )
        })
        .collect()
}

fn make_builds_and_rebuilds(extra: &[&str]) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w")).unwrap();
    let tar = c_project(&s.dir, 12);
    let m = Mount::new(&s, "w", extra);
    sh(&m.mnt, "tar", &["-xf", text(&tar)]);
    let proj = m.path("proj");
    let all = make(&proj, &["-j2"]);
    assert_eq!(compiled(&all).len(), 13, "the first build:\n{all}");
    run(&mut Command::new(proj.join("prog")));
    let again = make(&proj, &[]);
    assert!(
        compiled(&again).is_empty() && !linked(&again),
        "a make right after the build did something:\n{again}"
    );
    settle(&m, extra);
    run(&mut Command::new(m.remote("proj/prog")));

    wait_for_a_later_second(fs::metadata(proj.join("prog")).unwrap().modified().unwrap());
    fs::write(
        proj.join("src/f03.c"),
        "int f03(int x) { return x * 3 + 1; }\n",
    )
    .unwrap();
    let out = make(&proj, &[]);
    assert_eq!(
        compiled(&out),
        ["src/f03.o"],
        "after editing src/f03.c:\n{out}\n{}",
        times(&m, &["proj/src/f03.c", "proj/src/f03.o", "proj/prog"])
    );
    assert!(linked(&out), "the program was not linked again:\n{out}");
    run(&mut Command::new(proj.join("prog")));
    let again = make(&proj, &[]);
    assert!(
        compiled(&again).is_empty() && !linked(&again),
        "a make right after the rebuild did something:\n{again}"
    );
    settle(&m, extra);
    assert_eq!(
        fs::read(m.remote("proj/src/f03.o")).unwrap(),
        fs::read(proj.join("src/f03.o")).unwrap()
    );
    run(&mut Command::new(m.remote("proj/prog")));
}

#[test]
fn make_builds_then_rebuilds_only_what_changed() {
    make_builds_and_rebuilds(&[]);
}

#[test]
fn make_builds_then_rebuilds_only_what_changed_async() {
    make_builds_and_rebuilds(ASYNC);
}

// ---------------------------------------------------------------------------------------
// tar

/// A tree with special mode bits, other owners and symlinks (with their own owners and
/// times), in whole-second times.
fn tar_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deep")).unwrap();
    let files: [(&str, u32); 4] = [
        ("setuid", 0o4755),
        ("sub/setgid", 0o2640),
        ("sub/deep/plain", 0o644),
        ("sub/deep/private", 0o400),
    ];
    for (i, (name, mode)) in files.into_iter().enumerate() {
        let p = root.join(name);
        fs::write(&p, random_bytes(1000 + 70_000 * i, i as u64)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    lchown(&root.join("sub/setgid"), 65534, 1);
    lchown(&root.join("sub/deep/private"), 1, 65534);
    std::os::unix::fs::symlink("setuid", root.join("link")).unwrap();
    std::os::unix::fs::symlink("deep/plain", root.join("sub/link")).unwrap();
    lchown(&root.join("sub/link"), 65534, 65534);
    fs::set_permissions(root.join("sub"), fs::Permissions::from_mode(0o1777)).unwrap();
    lchown(&root.join("sub/deep"), 65534, 65534);
    for (i, p) in [
        "setuid",
        "sub/setgid",
        "sub/deep/plain",
        "sub/deep/private",
        "link",
        "sub/link",
        "sub/deep",
        "sub",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_time(&root.join(p), 1_000_000_000 + 86_400 * i as i64);
    }
}

/// `tar czf` of a local tree into the mount and `tar xzf --same-owner -p` of it on the
/// mount: the extracted tree, here and on the server, is the original by `stat`; then the
/// way back, archived from the mount and extracted on a local disk.
fn tar_round_trip(extra: &[&str]) {
    let s = Sshd::start();
    let orig = s.local("orig");
    tar_tree(&orig.join("tree"));
    let original = stat_tree(&orig.join("tree"));
    fs::create_dir_all(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", extra);
    let archive = m.path("tree.tgz");
    sh(&orig, "tar", &["-czf", text(&archive), "tree"]);
    fs::create_dir(m.path("x")).unwrap();
    sh(
        &m.path("x"),
        "tar",
        &["-xzf", text(&archive), "--same-owner", "-p"],
    );
    same_stat(&original, &stat_tree(&m.path("x/tree")), "the mount's view");
    settle(&m, extra);
    same_stat(
        &original,
        &stat_tree(&m.remote("x/tree")),
        "the server's copy",
    );
    run(Command::new("gzip").arg("-t").arg(m.remote("tree.tgz")));

    let back = s.local("back");
    fs::create_dir(&back).unwrap();
    let archive_back = s.local("back.tgz");
    sh(&m.path("x"), "tar", &["-czf", text(&archive_back), "tree"]);
    sh(
        &back,
        "tar",
        &["-xzf", text(&archive_back), "--same-owner", "-p"],
    );
    same_stat(&original, &stat_tree(&back.join("tree")), "the copy back");
}

#[test]
fn tar_czf_and_xzf_same_owner_keep_what_stat_shows() {
    tar_round_trip(&[]);
}

#[test]
fn tar_czf_and_xzf_same_owner_keep_what_stat_shows_async() {
    tar_round_trip(ASYNC);
}

// ---------------------------------------------------------------------------------------
// A directory listing fetched while a file of it changes here (written, truncated, renamed,
// removed) says what the server had before the change. Handed to the kernel as it was
// (readdirplus), it showed the old size (0 after an O_TRUNC) for a second, a read stopped
// short, and a name renamed away came back, so that the next open(O_CREAT) of it failed with
// ENOENT. The listing comes from another process (`ls -l`, a file manager, an IDE), or in
// async_writes mode from the mount's own revalidation of a directory in use. Fixed: such
// entries go to the kernel for no time (`DirItem::outdated`).

/// Rewrites files of one directory, or writes temp files renamed over them, as scripts and
/// editors do; `lister`: another thread lists the directory meanwhile (`os.scandir` and
/// `lstat`, as `ls -l` does). Prints the failures it saw, one line each.
const REWRITER: &str = r#"
import os, sys, threading
d, how, rounds, lister = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "lister"
stop = False
def listing():
    while not stop:
        try:
            for e in os.scandir(d):
                e.stat(follow_symlinks=False)
        except FileNotFoundError:
            pass
t = threading.Thread(target=listing)
if lister:
    t.start()
for i in range(rounds):
    for k in range(10):
        p = os.path.join(d, "f%d" % k)
        data = b"x" * (10 + (i % 2) * 7 + k)
        try:
            if how == "rename":
                fd = os.open(p + ".tmp", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
            else:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
                fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, data)
            os.close(fd)
            if how == "rename":
                os.rename(p + ".tmp", p)
        except OSError as e:
            print("round %d, f%d: %s" % (i, k, e))
            continue
    for k in range(10):
        p = os.path.join(d, "f%d" % k)
        want = 10 + (i % 2) * 7 + k
        size = os.lstat(p).st_size
        if size != want:
            with open(p, "rb") as f:
                got = len(f.read())
            print("round %d, f%d: wrote %d bytes, lstat says %d, read %d" % (i, k, want, size, got))
stop = True
if lister:
    t.join()
"#;

fn rewrite_files(extra: &[&str], how: &str, lister: bool) {
    let s = Sshd::start();
    fs::create_dir_all(s.remote("w/d")).unwrap();
    let m = Mount::new(&s, "w", extra);
    let out = run(Command::new("python3").args([
        "-c",
        REWRITER,
        text(&m.path("d")),
        how,
        "100",
        if lister { "lister" } else { "alone" },
    ]));
    let failures: Vec<&str> = out.lines().collect();
    assert!(
        failures.is_empty(),
        "{} failures, the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Seen: 18 of 1000 sizes wrong (0, or the size before), reads short, in the default mode;
/// sshfs: none.
#[test]
fn files_rewritten_while_another_process_lists_them() {
    rewrite_files(&[], "unlink", true);
}

/// Seen: 821 to 905 of 1000 open(O_CREAT) of `fN.tmp` failed with ENOENT; sshfs: none.
#[test]
fn temp_files_renamed_over_while_another_process_lists_them() {
    rewrite_files(&[], "rename", true);
}

/// Seen: 28 of 1000 sizes wrong with no other process: the mount's own revalidation lists
/// the directory while the queue writes (`git rebase` in the async git test above hit it in
/// about one run of 15: "Your local changes ... would be overwritten by checkout").
#[test]
fn files_rewritten_alone_async() {
    rewrite_files(ASYNC, "unlink", false);
}

/// `git commit -am` while two `ls -la .git` loops run: git writes `.git/COMMIT_EDITMSG` and
/// reads it back, empty (the listing's size 0 from after the O_TRUNC open): "Aborting commit
/// due to empty commit message" in 5 to 7 of 100-150 commits, in both modes; sshfs: none.
#[test]
fn git_commits_while_another_process_lists_dot_git() {
    let s = Sshd::start();
    let m = Mount::new(&s, "", &[]);
    let repo = m.path("repo");
    git(&m.mnt, &["init", "-q", "-b", "main", "repo"]);
    fs::write(repo.join("f"), "0\n").unwrap();
    git(&repo, &["add", "f"]);
    git(&repo, &["commit", "-q", "-m", "0"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listers: Vec<_> = (0..2)
        .map(|_| {
            let (dot_git, stop) = (repo.join(".git"), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = Command::new("ls")
                        .arg("-la")
                        .arg(&dot_git)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            })
        })
        .collect();
    let mut failed = Vec::new();
    for i in 1..=100 {
        fs::write(repo.join("f"), format!("{i}\n")).unwrap();
        let out = Command::new("git")
            .args(["commit", "-q", "-a", "-m", &format!("commit {i}")])
            .current_dir(&repo)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .output()
            .unwrap();
        if !out.status.success() {
            failed.push(format!(
                "{i}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for l in listers {
        l.join().unwrap();
    }
    assert!(
        failed.is_empty(),
        "{} commits failed: {failed:#?}",
        failed.len()
    );
}
