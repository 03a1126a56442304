//! sshfs 3.7.6's options through real mounts: each one shows its effect, as sshfs has it.

mod support;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::time::Duration;
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

/// The binary run to its exit with this server's port and options, `args`, then a
/// mountpoint; its one-line error, checked to leave nothing mounted or running.
fn refused(s: &Sshd, args: &[&str]) -> String {
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.args(["-p", &s.port.to_string(), "-o", &s.opts(&[])])
        .args(args)
        .arg(&mnt);
    let r = run_to_exit(cmd, &s.local(""), FAIL_DEADLINE);
    assert!(r.status.is_some_and(|s| !s.success()), "{args:?}: {r:?}");
    failed_cleanly(&r, &mnt)
}

#[test]
fn option_injecting_hosts_are_invalid_hostnames() {
    let s = Sshd::start();
    let marker = s.local("pwned");
    let cmd = format!("-oProxyCommand=touch {}", marker.display());
    for args in [
        vec![format!("[{cmd}]:/dir")],
        vec!["--".to_string(), format!("{cmd}:/dir")],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = refused(&s, &args);
        assert!(line.contains("invalid hostname"), "{args:?}: {line}");
        assert!(!marker.exists(), "{args:?}: the command ran");
    }
}

#[test]
fn disable_hardlink_makes_link_fail_as_in_sshfs() {
    let s = server_with_dir();
    fs::write(s.remote("w/f"), b"x").unwrap();
    let m = Mount::new(&s, "w", &[]);
    fs::hard_link(m.path("f"), m.path("g")).expect("hard links work without the option");
    drop(m);
    let m = Mount::new(&s, "w", &["disable_hardlink"]);
    let e = errno(fs::hard_link(m.path("f"), m.path("h")));
    // sshfs answers ENOSYS, which the kernel (6.x) turns into EPERM for link(2).
    assert!(e == libc::ENOSYS || e == libc::EPERM, "{}", errno_name(e));
    assert!(!s.remote("w/h").exists());
}

#[test]
fn direct_io_bypasses_the_page_cache() {
    use std::os::unix::fs::FileExt;
    let s = server_with_dir();
    let data = random_bytes(1 << 20, 3);
    fs::write(s.remote("w/f"), &data).unwrap();
    let read_twice = |m: &Mount| {
        let f = fs::File::open(m.path("f")).unwrap();
        let mut first = vec![0u8; 4096];
        f.read_exact_at(&mut first, 0).unwrap();
        // Rewritten in place on the server: same size.
        let mut changed = data.clone();
        changed[..4096].fill(0xAB);
        fs::write(s.remote("w/f"), &changed).unwrap();
        let mut again = vec![0u8; 4096];
        f.read_exact_at(&mut again, 0).unwrap();
        fs::write(s.remote("w/f"), &data).unwrap();
        (first, again)
    };
    let m = Mount::new(&s, "w", &[]);
    let (first, again) = read_twice(&m);
    assert_eq!(first, &data[..4096]);
    assert_eq!(again, first, "without direct_io the page cache answers");
    drop(m);
    let m = Mount::new(&s, "w", &["direct_io"]);
    let (first, again) = read_twice(&m);
    assert_eq!(first, &data[..4096]);
    assert!(
        again.iter().all(|&b| b == 0xAB),
        "direct_io: the read went to the server"
    );
    // Writes go through too, and a large copy still arrives whole.
    let big = random_bytes(5 << 20, 4);
    fs::write(m.path("g"), &big).unwrap();
    assert_eq!(fs::read(s.remote("w/g")).unwrap(), big);
    assert_eq!(fs::read(m.path("g")).unwrap(), big);
}

/// A server command (for `sftp_server=`) whose files cannot grow past `limit` bytes: its
/// writes beyond that fail (EFBIG, SIGXFSZ ignored), as on a full disk or a quota.
fn limited_server(s: &Sshd, limit: u64) -> String {
    let wrapper = format!("prlimit --fsize={limit} ");
    s.sftp_server_script("limited", "trap '' XFSZ\n", &wrapper, "")
}

#[test]
fn sshfs_sync_reports_a_failed_write_on_that_write() {
    use std::io::Write;
    let s = server_with_dir();
    let server = limited_server(&s, 64 << 10);
    let chunk = vec![7u8; 16 << 10];
    // Default: write-behind; the writes are answered before the server has them, so the
    // failure comes later: on a following write, or by fsync at the latest.
    let m = Mount::new(&s, "w", &[&server]);
    let mut f = fs::File::create(m.path("a")).unwrap();
    for i in 0..5 {
        f.write_all(&chunk)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    // A process forked meanwhile (any program started, by anyone sharing the descriptor)
    // closes its copy when it exits: the kernel sends a flush for that close, which must not
    // take the error from the writer. (Seen in CI: another test's child processes.)
    // SAFETY: the child only exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe { libc::_exit(0) };
    }
    assert!(child > 0, "fork");
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        f.sync_all().is_err(),
        "the failure shows by fsync at the latest (a child's close came first)"
    );
    drop(f);
    drop(m);
    // sshfs_sync: the write that crosses the limit fails itself, the ones before do not.
    let m = Mount::new(&s, "w", &[&server, "sshfs_sync"]);
    let mut f = fs::File::create(m.path("b")).unwrap();
    for i in 0..4 {
        f.write_all(&chunk)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    assert_eq!(
        fs::metadata(s.remote("w/b")).unwrap().len(),
        64 << 10,
        "on the server at once"
    );
    let e = f.write(&chunk).expect_err("the write past the limit");
    assert_ne!(e.raw_os_error(), None);
    drop(f);
    assert_eq!(fs::read(s.remote("w/b")).unwrap(), vec![7u8; 64 << 10]);
}

#[test]
fn subdir_mounts_a_directory_below_the_remote_one() {
    let s = server_with_dir();
    fs::create_dir_all(s.remote("w/sub/d")).unwrap();
    fs::write(s.remote("w/sub/d/f"), b"in sub").unwrap();
    fs::write(s.remote("w/outside"), b"not shown").unwrap();
    let root = s.resolve("w");
    symlink(root.join("sub/x/y"), s.remote("w/sub/d/abs")).unwrap();
    symlink(root.join("outside"), s.remote("w/sub/out")).unwrap();
    let m = Mount::new(&s, "w", &["subdir=/sub", "no_contain_symlinks", "rellinks"]);
    let mut names: Vec<String> = fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["d", "out"]);
    assert_eq!(fs::read(m.path("d/f")).unwrap(), b"in sub");
    fs::write(m.path("new"), b"made").unwrap();
    assert_eq!(fs::read(s.remote("w/sub/new")).unwrap(), b"made");
    // rellinks: absolute targets below the subdirectory become relative; others stay.
    assert_eq!(
        fs::read_link(m.path("d/abs")).unwrap().to_str(),
        Some("../x/y")
    );
    assert_eq!(fs::read_link(m.path("out")).unwrap(), root.join("outside"));
    drop(m);
    // norellinks (the default), and the form fstab lines use.
    let m = Mount::new(
        &s,
        "w",
        &["modules=subdir", "subdir=sub", "no_contain_symlinks"],
    );
    assert_eq!(
        fs::read_link(m.path("d/abs")).unwrap(),
        root.join("sub/x/y")
    );
    drop(m);
    // A subdirectory that does not exist fails the mount, naming it.
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.args(s.mount_args("w", &mnt, &["subdir=nope"]));
    let r = run_to_exit(cmd, &s.local(""), FAIL_DEADLINE);
    let line = failed_cleanly(&r, &mnt);
    assert!(line.contains("nope") && line.contains("subdir"), "{line}");
}

#[test]
fn dcache_clean_interval_drops_expired_entries() {
    let s = server_with_dir();
    for d in ["a", "b"] {
        fs::create_dir(s.remote(&format!("w/{d}"))).unwrap();
        fs::write(s.remote(&format!("w/{d}/f")), b"x").unwrap();
    }
    let m = Mount::new(
        &s,
        "w",
        &[
            "debug",
            "dcache_timeout=0.2",
            "dcache_clean_interval=0.5",
            "dcache_min_clean_interval=0.1",
        ],
    );
    fs::read_dir(m.path("a")).unwrap().count();
    // The next store after the interval drops what expired.
    let dropped = wait_until(Duration::from_secs(10), || {
        fs::read_dir(m.path("b")).unwrap().count();
        fs::read_dir(m.path("a")).unwrap().count();
        m.stderr()
            .lines()
            .any(|l| l.contains("cache: dropped") && !l.contains("dropped 0 expired"))
    });
    assert!(dropped, "no cleaning in the log:\n{}", m.stderr());
}

#[test]
fn workaround_renamexdev_lets_mv_copy_across_server_filesystems() {
    let s = server_with_dir();
    // A directory of another filesystem (tmpfs), reached through a link the server follows.
    let other = TempDir::in_dir("/dev/shm", "xdev");
    symlink(other.path(), s.remote("w/shm")).unwrap();
    fs::write(s.remote("w/f"), b"moved").unwrap();
    let m = Mount::new(&s, "w", &["follow_symlinks"]);
    let e = errno(fs::rename(m.path("f"), m.path("shm/f")));
    assert_ne!(e, libc::EXDEV, "without the workaround");
    drop(m);
    let m = Mount::new(&s, "w", &["follow_symlinks", "workaround=renamexdev"]);
    assert_errno(
        fs::rename(m.path("f"), m.path("shm/f")),
        libc::EXDEV,
        "rename(2)",
    );
    let out = std::process::Command::new("mv")
        .arg(m.path("f"))
        .arg(m.path("shm/f"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(other.path().join("f")).unwrap(), b"moved");
    assert!(!s.remote("w/f").exists());
}

#[test]
fn workaround_createmode_creates_then_sets_the_mode() {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let s = server_with_dir();
    let m = Mount::new(&s, "w", &["workaround=createmode"]);
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(m.path("f"))
        .unwrap();
    drop(f);
    let mode = fs::metadata(s.remote("w/f")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640 & !current_umask());
}

fn current_umask() -> u32 {
    // SAFETY: umask is process-wide; set back at once.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

#[test]
fn workaround_truncate_changes_sizes_by_rewriting() {
    let s = server_with_dir();
    let data = random_bytes(200_000, 8);
    fs::write(s.remote("w/f"), &data).unwrap();
    let m = Mount::new(&s, "w", &["workaround=truncate"]);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.set_len(70_000).unwrap();
    assert_eq!(fs::read(s.remote("w/f")).unwrap(), &data[..70_000]);
    f.set_len(90_000).unwrap();
    let mut want = data[..70_000].to_vec();
    want.resize(90_000, 0);
    assert_eq!(fs::read(s.remote("w/f")).unwrap(), want);
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), 90_000);
    drop(f);
    // O_TRUNC and truncate(1) to nothing.
    let out = std::process::Command::new("truncate")
        .args(["-s", "0"])
        .arg(m.path("f"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(fs::metadata(s.remote("w/f")).unwrap().len(), 0);
}
