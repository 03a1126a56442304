//! The process side of the contract: foreground and background mode, how a mount ends
//! (SIGTERM, SIGINT, `fusermount3 -u`, `umount`), remote dir forms, and accepted option forms.

mod support;

use std::fs;
use std::path::Path;
use support::*;

/// Asserts that the mount shows the server's file `rel` with `content`, and that a file written
/// through the mount lands on the server.
#[track_caller]
fn assert_serves(m: &Mount, rel: &str, content: &str) {
    assert_eq!(
        fs::read_to_string(m.path(rel)).expect("read through the mount"),
        content
    );
    fs::write(m.path("written-through-mount"), "from the mount").unwrap();
    assert_eq!(
        fs::read_to_string(m.remote("written-through-mount")).unwrap(),
        "from the mount"
    );
}

#[test]
fn foreground_mount_of_relative_dir() {
    let s = Sshd::start();
    fs::create_dir(s.remote("work")).unwrap();
    fs::write(s.remote("work/hello.txt"), "hello\n").unwrap();
    let m = Mount::new(&s, "work", &[]);
    assert_eq!(m.remote(""), s.home().join("work"));
    assert_serves(&m, "hello.txt", "hello\n");
}

#[test]
fn foreground_mount_of_absolute_dir() {
    let s = Sshd::start();
    let abs = s.dir.join("elsewhere");
    fs::create_dir(&abs).unwrap();
    fs::write(abs.join("abs.txt"), "absolute\n").unwrap();
    let m = Mount::new(&s, abs.to_str().unwrap(), &[]);
    assert_eq!(m.remote(""), abs);
    assert_serves(&m, "abs.txt", "absolute\n");
}

/// `host:~/dir` is below the SFTP session's home (its start directory: the login directory on
/// an ordinary server, `internal-sftp -d` here) and `host:~user/dir` below that user's home in
/// the server's password database, both through expand-path@openssh.com.
#[test]
fn tilde_dirs_are_expanded_by_the_server() {
    struct RemoveOnDrop(std::path::PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let s = Sshd::start();
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .expect("the test user has a passwd entry");
    let name = format!(".sftpfs-test-tilde-{}", std::process::id());
    let in_session_home = RemoveOnDrop(s.home().join(&name));
    let in_passwd_home = RemoveOnDrop(me.dir.join(&name));
    for (d, text) in [
        (&in_session_home, "session home\n"),
        (&in_passwd_home, "passwd home\n"),
    ] {
        fs::create_dir(&d.0).unwrap();
        fs::write(d.0.join("t.txt"), text).unwrap();
    }
    for (src, dir, text) in [
        (format!("~/{name}"), &in_session_home, "session home\n"),
        (
            format!("~{}/{name}", me.name),
            &in_passwd_home,
            "passwd home\n",
        ),
    ] {
        let mnt = s.mountpoint();
        let mut cmd = s.command();
        cmd.args(s.mount_args(&src, &mnt, &[])).arg("-f");
        let m = Mount::spawn_foreground(&s, cmd, mnt, dir.0.clone())
            .unwrap_or_else(|e| panic!("mount of {src}: {e}"));
        assert_serves(&m, "t.txt", text);
    }
}

#[test]
fn foreground_mount_of_empty_dir_is_the_home() {
    let s = Sshd::start();
    fs::write(s.remote("in-home.txt"), "home\n").unwrap();
    let m = Mount::new(&s, "", &[]);
    assert_eq!(m.remote(""), s.home());
    assert_serves(&m, "in-home.txt", "home\n");
}

#[test]
fn background_mount_is_live_when_the_parent_exits_and_fusermount_ends_the_daemon() {
    let s = Sshd::start();
    fs::create_dir(s.remote("bg")).unwrap();
    fs::write(s.remote("bg/f"), "bg\n").unwrap();
    // Mount::background asserts: parent exit 0, mount present at that very moment, daemon left.
    let mut m = Mount::background(&s, "bg", &[]);
    assert_serves(&m, "f", "bg\n");
    let status = m.stop(Stop::Fusermount);
    assert!(
        status.success(),
        "daemon exit status after fusermount3 -u: {status}"
    );
}

#[test]
fn background_mount_ends_with_umount() {
    let s = Sshd::start();
    fs::create_dir(s.remote("bg")).unwrap();
    fs::write(s.remote("bg/f"), "bg\n").unwrap();
    let mut m = Mount::background(&s, "bg", &[]);
    assert_serves(&m, "f", "bg\n");
    let status = m.stop(Stop::Umount);
    assert!(
        status.success(),
        "daemon exit status after umount: {status}"
    );
}

#[test]
fn background_mount_ends_with_sigterm() {
    let s = Sshd::start();
    fs::create_dir(s.remote("bg")).unwrap();
    let mut m = Mount::background(&s, "bg", &[]);
    let status = m.stop(Stop::Sigterm);
    assert!(
        status.success(),
        "daemon exit status after SIGTERM: {status}"
    );
}

#[test]
fn sigterm_unmounts_and_exits_0() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mut m = Mount::new(&s, "w", &[]);
    fs::write(m.path("f"), "x").unwrap();
    let status = m.stop(Stop::Sigterm);
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert_eq!(fs::read_to_string(s.remote("w/f")).unwrap(), "x");
}

#[test]
fn sigint_unmounts_and_exits_0() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mut m = Mount::new(&s, "w", &[]);
    let status = m.stop(Stop::Sigint);
    assert!(status.success(), "exit status after SIGINT: {status}");
}

#[test]
fn fusermount_ends_the_foreground_process_with_0() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mut m = Mount::new(&s, "w", &[]);
    let status = m.stop(Stop::Fusermount);
    assert!(
        status.success(),
        "exit status after fusermount3 -u: {status}"
    );
}

#[test]
fn umount_ends_the_foreground_process_with_0() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mut m = Mount::new(&s, "w", &[]);
    let status = m.stop(Stop::Umount);
    assert!(status.success(), "exit status after umount: {status}");
    // An unmount from outside is the normal end: nothing to warn about.
    let log = fs::read_to_string(&m.log).unwrap();
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "warnings after a clean umount: {log}"
    );
}

#[test]
fn sigterm_with_a_file_open_still_ends_the_process() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let mut m = Mount::new(&s, "w", &[]);
    let f = fs::File::create(m.path("held-open")).unwrap();
    // The mount is busy: the process must still stop (it may unmount lazily).
    let status = m.stop(Stop::Sigterm);
    assert!(status.success(), "exit status after SIGTERM: {status}");
    drop(f);
}

/// `systemctl stop` of an asynchronous mount that a program still uses: the unmount is
/// busy, the mount is detached, and what programs were told was written still reaches the
/// server before the process exits.
#[test]
fn sigterm_with_a_file_open_lands_what_was_queued_first() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let p = support::proxy::Proxy::start(s.port);
    let mut m = Mount::via_port(&s, p.port(), "w", &["async_writes"]);
    let mut held = fs::File::create(m.path("held-open")).unwrap();
    std::io::Write::write_all(&mut held, b"held").unwrap();
    fs::create_dir(m.path("new")).unwrap();
    // The link stops for a while: what follows waits in the queue when the signal comes.
    p.stall();
    let body = |i: usize| random_bytes(64 << 10, i as u64);
    for i in 0..50 {
        fs::write(m.path(&format!("new/f{i}")), body(i)).unwrap();
    }
    let log = m.log.clone();
    let status = std::thread::scope(|t| {
        t.spawn(|| {
            // The link comes back once the process was asked to go and found the mount busy.
            wait_until(EXIT_DEADLINE, || {
                fs::read_to_string(&log).is_ok_and(|l| l.contains("detaching the busy mount"))
            });
            p.resume();
        });
        m.stop(Stop::Sigterm)
    });
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let lost: Vec<usize> = (0..50)
        .filter(|&i| fs::read(s.remote(&format!("w/new/f{i}"))).ok() != Some(body(i)))
        .collect();
    assert!(
        lost.is_empty(),
        "not on the server after the exit: {lost:?}"
    );
    assert_eq!(fs::read(s.remote("w/held-open")).unwrap(), b"held");
    drop(held);
}

#[test]
fn options_may_come_before_the_positionals() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "before\n").unwrap();
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.arg("-f")
        .args(["-p", &s.port.to_string()])
        .args(["-o", &s.opts(&[])])
        .arg(s.target("w"))
        .arg(&mnt);
    let m = Mount::spawn_foreground(&s, cmd, mnt, s.remote("w")).unwrap_or_else(|e| panic!("{e}"));
    assert_serves(&m, "f", "before\n");
}

#[test]
fn port_as_an_o_option_and_repeated_o() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "port\n").unwrap();
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.arg(s.target("w"))
        .arg(&mnt)
        .args(["-o", &format!("port={}", s.port)])
        .args(["-o", &s.opts(&[])])
        .arg("-f");
    let m = Mount::spawn_foreground(&s, cmd, mnt, s.remote("w")).unwrap_or_else(|e| panic!("{e}"));
    assert_serves(&m, "f", "port\n");
}

#[test]
fn fstab_only_options_are_accepted_and_ignored() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "fstab\n").unwrap();
    let m = Mount::new(
        &s,
        "w",
        &["_netdev", "noauto", "nofail", "x-systemd.automount"],
    );
    assert_serves(&m, "f", "fstab\n");
}

#[test]
fn ssh_config_file_given_with_capital_f() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "via config\n").unwrap();
    let cfg = s.local("ssh_config");
    fs::write(
        &cfg,
        format!(
            "Host sftpfs-test-alias\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  \
             IdentityFile {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n",
            s.port,
            s.user,
            s.client_key.display(),
            s.known_hosts.display()
        ),
    )
    .unwrap();
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.arg("sftpfs-test-alias:w")
        .arg(&mnt)
        .arg("-F")
        .arg(&cfg)
        .arg("-f");
    let m = Mount::spawn_foreground(&s, cmd, mnt, s.remote("w")).unwrap_or_else(|e| panic!("{e}"));
    assert_serves(&m, "f", "via config\n");
}

fn known_hosts_after(s: &Sshd, policy: &str) -> String {
    fs::create_dir_all(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "new host\n").unwrap();
    let empty = s.local(&format!("known_hosts_{policy}"));
    fs::write(&empty, "").unwrap();
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.arg(s.target("w"))
        .arg(&mnt)
        .args(["-p", &s.port.to_string()])
        .args([
            "-o",
            &format!(
                "IdentityFile={},UserKnownHostsFile={},StrictHostKeyChecking={policy},BatchMode=yes",
                s.client_key.display(),
                empty.display()
            ),
        ])
        .arg("-f");
    let m = Mount::spawn_foreground(s, cmd, mnt, s.remote("w")).unwrap_or_else(|e| panic!("{e}"));
    assert_serves(&m, "f", "new host\n");
    drop(m);
    fs::read_to_string(&empty).unwrap()
}

#[test]
fn accept_new_mounts_and_records_the_host_key() {
    let s = Sshd::start();
    let recorded = known_hosts_after(&s, "accept-new");
    let key_data = s.host_key_pub.split_whitespace().nth(1).unwrap();
    let line = recorded
        .lines()
        .find(|l| l.contains(key_data))
        .unwrap_or_else(|| panic!("host key not recorded; known_hosts holds:\n{recorded}"));
    // Either the plain `[127.0.0.1]:PORT` form or a hashed `|1|...` entry.
    assert!(
        line.starts_with(&format!("[127.0.0.1]:{} ", s.port)) || line.starts_with("|1|"),
        "unexpected known_hosts line: {line}"
    );
}

#[test]
fn strict_host_key_checking_no_mounts_an_unknown_host() {
    let s = Sshd::start();
    known_hosts_after(&s, "no");
}

#[test]
fn mount_is_listed_with_the_source_and_mode() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &[]);
    // As sshfs's shows `fuse.sshfs`, with the source as its name, so that tools select it by
    // type. As root, fuser makes the mount with mount(2) itself, not through fusermount3
    // (tests/fstab.rs has a user's mount).
    let info = mount_at(&m.mnt).unwrap();
    assert_eq!(
        (info.fs_type.as_str(), info.source.as_str()),
        ("fuse.sftpfs", s.target("w").as_str()),
        "type and source in /proc/self/mountinfo"
    );
    for (prog, args) in [
        (
            "findmnt",
            &["-n", "-o", "SOURCE", "-t", "fuse.sftpfs", "--mountpoint"][..],
        ),
        ("df", &["--output=source", "-t", "fuse.sftpfs"][..]),
    ] {
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args).arg(&m.mnt);
        let run = run_to_exit(cmd, m.dir, EXIT_DEADLINE);
        assert!(
            run.stdout.lines().any(|l| l.trim() == s.target("w")),
            "{prog} -t fuse.sftpfs: {run:?}"
        );
    }
    assert!(
        info.options.split(',').any(|o| o == "rw"),
        "not mounted rw: {}",
        info.options
    );
    assert!(Path::new(&m.mnt).is_dir());
}

/// Programs ask every file they write to or read from whether it is a terminal (isatty(),
/// an ioctl): the answer is ENOTTY, and the foreground log says nothing about it (sshfs's
/// test suite fails a run whose stderr says "warning").
#[test]
fn isatty_of_a_mounted_file_is_answered_quietly() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "not a terminal\n").unwrap();
    let m = Mount::new(&s, "w", &[]);
    let file = m.path("f");
    for _ in 0..3 {
        let mut test_t = std::process::Command::new("sh");
        test_t.args(["-c", "test -t 0 < \"$1\"", "sh"]).arg(&file);
        let run = run_to_exit(test_t, m.dir, EXIT_DEADLINE);
        assert_eq!(run.status.and_then(|st| st.code()), Some(1), "{run:?}");
    }
    let python = "import fcntl, os, sys, termios\n\
                  try:\n    fcntl.ioctl(os.open(sys.argv[1], os.O_RDONLY), termios.TCGETS, bytes(64))\n\
                  except OSError as e:\n    print(e.errno)\n";
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", python]).arg(&file);
    let run = run_to_exit(cmd, m.dir, EXIT_DEADLINE);
    assert_eq!(
        run.stdout.trim(),
        libc::ENOTTY.to_string(),
        "TCGETS: {run:?}"
    );
    let log = m.stderr();
    assert!(
        !log.contains("Not Implemented") && !log.to_lowercase().contains("warn"),
        "the foreground log speaks of the ioctls:\n{log}"
    );
}

#[test]
fn debug_flag_stays_in_the_foreground_and_logs() {
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    fs::write(s.remote("w/f"), "debug\n").unwrap();
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.args(s.mount_args("w", &mnt, &[])).arg("-d");
    let mut m =
        Mount::spawn_foreground(&s, cmd, mnt, s.remote("w")).unwrap_or_else(|e| panic!("{e}"));
    assert_serves(&m, "f", "debug\n");
    assert!(
        m.wait_exit(std::time::Duration::from_millis(300)).is_none(),
        "with -d the process went to the background"
    );
    assert!(!m.stderr().trim().is_empty(), "-d printed nothing");
    let status = m.stop(Stop::Fusermount);
    assert!(status.success(), "{status}");
}

#[test]
fn the_test_sshd_cannot_see_the_mount() {
    // The harness's own guarantee (FACTS.md): the server runs in a private mount namespace.
    let s = Sshd::start();
    fs::create_dir(s.remote("w")).unwrap();
    let m = Mount::new(&s, "w", &[]);
    let theirs = fs::read_to_string(format!("/proc/{}/mountinfo", s.pid())).unwrap();
    assert!(
        !theirs.contains(m.mnt.to_str().unwrap()),
        "sshd sees the mount:\n{theirs}"
    );
    // A second server started while the mount is live must not see it either.
    let s2 = Sshd::start();
    let theirs = fs::read_to_string(format!("/proc/{}/mountinfo", s2.pid())).unwrap();
    assert!(
        !theirs.contains(m.mnt.to_str().unwrap()),
        "a later sshd sees the mount:\n{theirs}"
    );
}
