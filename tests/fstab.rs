//! fstab and mount(8): both fstab types through `mount -T <test fstab> MOUNTPOINT` (no change
//! to /etc/fstab), mount(8)'s helper conventions, syslog in the background, and a mount by a
//! user who is not root (through fusermount3): each shows as type `fuse.sftpfs`.
//!
//! mount(8) looks for helpers only in /sbin, and `mount.fuse3` runs `sftpfs` with a fixed
//! search path (mount(8) drops PATH). Each test therefore runs on a thread of its own in a
//! private mount namespace, where a directory holding `mount.sftpfs` (or `sftpfs`), a symbolic
//! link to the binary under test, is bound over /sbin (or /usr/local/bin): nothing outside the
//! namespace changes, and an installed sftpfs is never used. The mounts made there are visible
//! only in that namespace (`/proc/thread-self/mountinfo`).

mod support;

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Runs `f` on a new thread that has a private mount namespace of its own.
fn in_private_mount_namespace<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            // SAFETY: plain system calls on constant arguments; only this thread changes.
            unsafe {
                assert_eq!(
                    libc::unshare(libc::CLONE_NEWNS),
                    0,
                    "unshare(CLONE_NEWNS): {}",
                    io::Error::last_os_error()
                );
                assert_eq!(
                    libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ),
                    0,
                    "making / private: {}",
                    io::Error::last_os_error()
                );
            }
            // The copies of other tests' FUSE mounts would keep their connections alive after
            // those tests unmount them (their daemons would never exit): detach them here.
            let text = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
            for line in text.lines() {
                let Some((left, right)) = line.split_once(" - ") else {
                    continue;
                };
                if right.starts_with("fuse") {
                    if let Some(mp) = left.split(' ').nth(4) {
                        let mp = c(&unescape(mp));
                        // SAFETY: a NUL-terminated path.
                        unsafe { libc::umount2(mp.as_ptr(), libc::MNT_DETACH) };
                    }
                }
            }
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A mountinfo path field: `\ooo` octal escapes undone.
fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|o| {
            let o = std::str::from_utf8(o).ok()?;
            u8::from_str_radix(o, 8).ok()
        });
        match (b[i], octal) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Binds `src` over `dst` (in this thread's namespace), with what is mounted below `src`.
fn bind(src: &Path, dst: &Path) {
    let (s, d) = (c(src), c(dst));
    // SAFETY: NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    assert_eq!(
        r,
        0,
        "bind {} over {}: {}",
        src.display(),
        dst.display(),
        io::Error::last_os_error()
    );
}

/// A directory `dir` holding `name`, a symbolic link to the binary under test, bound over
/// `over` (e.g. /sbin, so that mount(8) finds /sbin/mount.sftpfs).
fn provide_binary_as(dir: &Path, name: &str, over: &str) {
    fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::symlink(binary(), dir.join(name)).unwrap();
    bind(dir, Path::new(over));
}

/// The mount at `path` as this thread sees it: (fs type, source, per-mount options, super
/// options).
fn mounted_here(path: &Path) -> Option<(String, String, String, String)> {
    let text = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    text.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        (unescape(l.get(4)?) == path).then(|| {
            (
                r.first().unwrap_or(&"").to_string(),
                r.get(1).unwrap_or(&"").to_string(),
                l.get(5).unwrap_or(&"").to_string(),
                r.get(2).unwrap_or(&"").to_string(),
            )
        })
    })
}

/// The mount made by mount(8) in this namespace: on drop, detaches it if it is still there
/// and makes sure the daemon is gone.
struct NsMount {
    mnt: PathBuf,
}

impl NsMount {
    /// The daemon serving the mount: a process with the mountpoint among its arguments
    /// (`sftpfs SOURCE MNT -o ...` or `/sbin/mount.sftpfs SOURCE MNT -o ...`).
    fn daemon(&self) -> Option<i32> {
        processes_with_arg(self.mnt.as_os_str()).first().copied()
    }

    /// `umount MNT` in this namespace, then waits for the daemon to exit 0.
    fn unmount(&self) {
        self.umount(&[self.mnt.as_os_str()]);
    }

    /// `umount ARGS` in this namespace, then waits for the daemon to exit 0.
    fn umount(&self, args: &[&OsStr]) {
        let pid = self.daemon().expect("no daemon serving the mount");
        let mut cmd = Command::new("umount");
        cmd.args(args);
        let shown = format!("{cmd:?}");
        let run = run_to_exit(cmd, self.mnt.parent().unwrap(), EXIT_DEADLINE);
        assert!(
            run.status.is_some_and(|s| s.success()),
            "{shown}: {:?} {}",
            run.status,
            run.stderr
        );
        let status = wait_pid(pid, EXIT_DEADLINE).expect("the daemon did not exit after umount");
        assert_eq!(status, Some(0), "the daemon's exit status after umount");
        assert!(mounted_here(&self.mnt).is_none());
    }
}

impl Drop for NsMount {
    fn drop(&mut self) {
        if mounted_here(&self.mnt).is_some() {
            let m = c(&self.mnt);
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(m.as_ptr(), libc::MNT_DETACH) };
        }
        if let Some(pid) = self.daemon() {
            if wait_pid(pid, EXIT_DEADLINE).is_none() {
                // SAFETY: a process this test started (its daemon).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = wait_pid(pid, EXIT_DEADLINE);
            }
        }
    }
}

/// Waits for `pid` (a child, or an orphan re-parented to the test process) to exit: its exit
/// code (`None` when killed by a signal), or `None` at the deadline.
fn wait_pid(pid: i32, deadline: Duration) -> Option<Option<i32>> {
    let end = Instant::now() + deadline;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on a pid with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)));
        }
        if r < 0 {
            // Not our child: wait for it to disappear.
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Some(None);
            }
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The options field for `sshd`'s server, with `extra` first.
fn fstab_options(s: &Sshd, extra: &[&str]) -> String {
    let mut v: Vec<String> = extra.iter().map(|e| e.to_string()).collect();
    v.extend([
        format!("port={}", s.port),
        format!("IdentityFile={}", s.client_key.display()),
        format!("UserKnownHostsFile={}", s.known_hosts.display()),
        "StrictHostKeyChecking=yes".into(),
        "BatchMode=yes".into(),
    ]);
    v.join(",")
}

/// Writes a one-line fstab and returns its path.
fn write_fstab(s: &Sshd, source: &str, mnt: &Path, fstype: &str, options: &str) -> PathBuf {
    let path = s.dir.join(format!("fstab-{fstype}"));
    fs::write(
        &path,
        format!("{source} {} {fstype} {options} 0 0\n", mnt.display()),
    )
    .unwrap();
    path
}

/// `mount [args] -T fstab MNT`, with the environment mount(8) would get from a shell: no
/// agent, HOME left to mount(8) (which drops it).
fn mount_with_fstab(s: &Sshd, fstab: &Path, mnt: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new("mount");
    cmd.args(args)
        .arg("-T")
        .arg(fstab)
        .arg(mnt)
        .env_remove("SSH_AUTH_SOCK")
        .env("LC_ALL", "C");
    run_to_exit(cmd, &s.dir, FAIL_DEADLINE)
}

#[track_caller]
fn assert_success(run: &Run, what: &str) {
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        run.status,
        run.stdout,
        run.stderr
    );
}

#[test]
fn fuse_type_entry_mounts_through_mount_fuse3() {
    let s = Sshd::start();
    fs::create_dir(s.remote("srv")).unwrap();
    fs::write(s.remote("srv/hello.txt"), "hello\n").unwrap();
    in_private_mount_namespace(|| {
        // mount.fuse3 runs `sftpfs` from /usr/local/sbin:/usr/local/bin:/usr/sbin:...
        provide_binary_as(&s.dir.join("bin"), "sftpfs", "/usr/local/bin");
        let mnt = s.mountpoint();
        let options = fstab_options(
            &s,
            &[
                "_netdev",
                "nofail",
                "users",
                "x-systemd.automount",
                "x-systemd.idle-timeout=600",
                "exec",
            ],
        );
        let fstab = write_fstab(&s, &s.target("srv"), &mnt, "fuse.sftpfs", &options);
        let guard = NsMount { mnt: mnt.clone() };
        let run = mount_with_fstab(&s, &fstab, &mnt, &[]);
        assert_success(&run, "mount -T (fuse.sftpfs)");
        // mount returned: the mount is live already, served by a daemon in the background,
        // of the type of the entry, with the source as its name
        let (fstype, source, _, _) =
            mounted_here(&mnt).expect("not mounted when mount(8) returned");
        assert_eq!((fstype.as_str(), source), ("fuse.sftpfs", s.target("srv")));
        let pid = guard.daemon().expect("no daemon in the background");
        // mount.fuse3 ran `sftpfs SOURCE MOUNTPOINT -o OPTIONS` from the fixed search path
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.starts_with(b"sftpfs\0"),
            "{:?}",
            String::from_utf8_lossy(&cmdline)
        );
        assert_eq!(
            fs::read_to_string(mnt.join("hello.txt")).unwrap(),
            "hello\n"
        );
        fs::write(mnt.join("from-fstab.txt"), "written").unwrap();
        assert_eq!(
            fs::read_to_string(s.remote("srv/from-fstab.txt")).unwrap(),
            "written"
        );
        // Selected by type, as sshfs's mounts are by `fuse.sshfs` (-t is ignored when a
        // mountpoint is named: -a, this namespace holds only this mount).
        guard.umount(&["-a", "-t", "fuse.sftpfs"].map(OsStr::new));
    });
}

#[test]
fn sftpfs_type_entry_mounts_through_the_mount_helper_read_only() {
    let s = Sshd::start();
    fs::create_dir(s.remote("data")).unwrap();
    fs::write(s.remote("data/file.txt"), "content\n").unwrap();
    in_private_mount_namespace(|| {
        provide_binary_as(&s.dir.join("sbin"), "mount.sftpfs", "/sbin");
        let mnt = s.mountpoint();
        let options = fstab_options(&s, &["ro", "_netdev", "noauto", "nofail"]);
        let fstab = write_fstab(&s, &s.target("data"), &mnt, "sftpfs", &options);
        let guard = NsMount { mnt: mnt.clone() };
        let run = mount_with_fstab(&s, &fstab, &mnt, &[]);
        assert_success(&run, "mount -T (sftpfs)");
        let (fstype, _, opts, sopts) =
            mounted_here(&mnt).expect("not mounted when mount(8) returned");
        assert_eq!(
            fstype, "fuse.sftpfs",
            "the type of an `sftpfs` entry's mount"
        );
        assert!(
            opts.split(',').any(|o| o == "ro") || sopts.split(',').any(|o| o == "ro"),
            "not read-only: {opts} / {sopts}"
        );
        let pid = guard.daemon().expect("no daemon in the background");
        // the helper's name is what mount(8) ran, and it went to the background
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.starts_with(b"/sbin/mount.sftpfs\0"),
            "{:?}",
            String::from_utf8_lossy(&cmdline)
        );
        assert_eq!(
            fs::read_to_string(mnt.join("file.txt")).unwrap(),
            "content\n"
        );
        assert_errno(
            fs::write(mnt.join("new.txt"), "x"),
            libc::EROFS,
            "create on a read-only fstab mount",
        );
        assert!(!s.remote("data/new.txt").exists());
        guard.unmount();
    });
}

#[test]
fn mount_helper_fake_and_errors() {
    let s = Sshd::start();
    fs::create_dir(s.remote("data")).unwrap();
    in_private_mount_namespace(|| {
        provide_binary_as(&s.dir.join("sbin"), "mount.sftpfs", "/sbin");
        let mnt = s.mountpoint();
        let guard = NsMount { mnt: mnt.clone() };
        // mount -f: "fake", nothing is mounted and nothing stays behind
        let fstab = write_fstab(
            &s,
            &s.target("data"),
            &mnt,
            "sftpfs",
            &fstab_options(&s, &[]),
        );
        let run = mount_with_fstab(&s, &fstab, &mnt, &["-f"]);
        assert_success(&run, "mount -f -T (sftpfs)");
        assert!(mounted_here(&mnt).is_none());
        assert!(guard.daemon().is_none());
        // the helper itself with -f checks the options
        let helper = || {
            let mut c = Command::new("/sbin/mount.sftpfs");
            c.arg(s.target("data")).arg(&mnt);
            c
        };
        let mut fake = helper();
        fake.args(["-f", "-o", &fstab_options(&s, &[])]);
        assert_success(&run_to_exit(fake, &s.dir, FAIL_DEADLINE), "mount.sftpfs -f");
        let mut bad = helper();
        bad.args(["-f", "-o", "bogus"]);
        let line = run_to_exit(bad, &s.dir, FAIL_DEADLINE).one_line_error();
        assert!(line.contains("unknown option 'bogus'"), "{line}");
        // a failing mount: mount(8) shows sftpfs's one-line error and fails
        let fstab = write_fstab(
            &s,
            &s.target("missing"),
            &mnt,
            "sftpfs",
            &fstab_options(&s, &[]),
        );
        let run = mount_with_fstab(&s, &fstab, &mnt, &[]);
        assert!(
            run.status.is_some_and(|st| !st.success()),
            "mount of a missing remote dir succeeded: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("sftpfs: ") && run.stderr.contains("missing"),
            "mount did not show the error: {}",
            run.stderr
        );
        assert!(mounted_here(&mnt).is_none());
        assert!(guard.daemon().is_none());
    });
}

/// Makes /dev/fuse in this namespace a node open to all users, as udev makes it on Debian
/// (in some containers, this machine's among them, it is root's only, and fusermount3 is never
/// reached: sshfs fails the same way).
fn dev_fuse_open_to_all(dir: &Path) {
    fs::create_dir(dir).unwrap();
    let d = c(dir);
    // SAFETY: NUL-terminated strings that outlive the calls.
    unsafe {
        let r = libc::mount(
            c"none".as_ptr(),
            d.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"mode=755".as_ptr().cast(),
        );
        assert_eq!(
            r,
            0,
            "tmpfs on {}: {}",
            dir.display(),
            io::Error::last_os_error()
        );
        let node = c(&dir.join("fuse"));
        let dev = libc::makedev(10, 229);
        assert_eq!(
            libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, dev),
            0,
            "mknod: {}",
            io::Error::last_os_error()
        );
        libc::chmod(node.as_ptr(), 0o666);
    }
    bind(&dir.join("fuse"), Path::new("/dev/fuse"));
}

/// A user who is not root mounts through fusermount3, and the mount shows as root's does:
/// of type `fuse.sftpfs` (as sshfs's `fuse.sshfs`), the source as its name (a comma in it
/// too, which fusermount3 reads among its options).
#[test]
fn mount_by_a_user_goes_through_fusermount3_and_shows_as_sftpfs() {
    use std::os::unix::process::CommandExt;
    let s = Sshd::start();
    fs::create_dir(s.remote("w,x")).unwrap();
    fs::write(s.remote("w,x/f"), "for nobody\n").unwrap();
    let (uid, gid) = user_ids("nobody");
    // The user's own home, key and mountpoint: the server's are root's.
    let home = s.dir.join("nobody-home");
    fs::create_dir(&home).unwrap();
    let key = home.join("key");
    fs::copy(&s.client_key, &key).unwrap();
    let as_user = |cmd: &mut Command| {
        cmd.uid(uid).gid(gid).env("HOME", &home).current_dir(&home);
    };
    in_private_mount_namespace(|| {
        dev_fuse_open_to_all(&s.dir.join("dev"));
        let mnt = s.mountpoint();
        for p in [&home, &key, &mnt] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
        // The binary where the user may run it: target/ may be in root's home (mode 0700).
        let bin = s.dir.join("sftpfs");
        fs::File::create(&bin).unwrap();
        bind(&binary(), &bin);
        let guard = NsMount { mnt: mnt.clone() };
        let log = s.dir.join("user-mount.log");
        let mut cmd = Command::new(&bin);
        cmd.args(s.mount_args_with("w,x", &mnt, "IdentityFile", &key))
            .arg("-f")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(&log).unwrap());
        as_user(&mut cmd);
        let mut daemon = KillOnDrop(cmd.spawn().unwrap());
        let mounted = wait_until(MOUNT_DEADLINE, || {
            mounted_here(&mnt).is_some() || daemon.0.try_wait().unwrap().is_some()
        });
        let (fstype, source, _, _) = mounted_here(&mnt).unwrap_or_else(|| {
            panic!(
                "not mounted (waited: {mounted}): {}",
                fs::read_to_string(&log).unwrap()
            )
        });
        assert_eq!((fstype.as_str(), source), ("fuse.sftpfs", s.target("w,x")));
        let mut findmnt = Command::new("findmnt");
        findmnt
            .args(["-n", "-o", "SOURCE", "-t", "fuse.sftpfs", "--mountpoint"])
            .arg(&mnt);
        let run = run_to_exit(findmnt, &s.dir, EXIT_DEADLINE);
        assert_eq!(run.stdout.trim(), s.target("w,x"), "findmnt: {run:?}");
        let mut cat = Command::new("cat");
        cat.arg(mnt.join("f"));
        as_user(&mut cat);
        let run = run_to_exit(cat, &s.dir, EXIT_DEADLINE);
        assert_eq!(run.stdout, "for nobody\n", "cat as the user: {run:?}");
        // The user unmounts it, and the daemon ends.
        let mut unmount = Command::new("fusermount3");
        unmount.arg("-u").arg(&mnt);
        as_user(&mut unmount);
        let run = run_to_exit(unmount, &s.dir, EXIT_DEADLINE);
        assert!(run.status.is_some_and(|st| st.success()), "{run:?}");
        let exited = wait_until(EXIT_DEADLINE, || daemon.0.try_wait().unwrap().is_some());
        assert!(exited, "the daemon did not exit after fusermount3 -u");
        assert!(
            daemon.0.wait().unwrap().success(),
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        drop(guard);
    });
}

/// Replaces /dev in this namespace by a directory with the few devices sftpfs uses and a
/// datagram socket at /dev/log, which receives what syslog(3) sends.
fn catch_syslog(dir: &Path) -> UnixDatagram {
    let dev = dir.join("dev");
    fs::create_dir(&dev).unwrap();
    for name in ["null", "zero", "full", "random", "urandom", "tty", "fuse"] {
        let real = Path::new("/dev").join(name);
        if real.exists() {
            fs::File::create(dev.join(name)).unwrap();
            bind(&real, &dev.join(name));
        }
    }
    let sock = UnixDatagram::bind(dev.join("log")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    bind(&dev, Path::new("/dev"));
    sock
}

/// The datagrams received until none came for a while.
fn received(sock: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[test]
fn background_errors_and_warnings_go_to_syslog() {
    let s = Sshd::start();
    fs::create_dir(s.remote("data")).unwrap();
    in_private_mount_namespace(|| {
        let sock = catch_syslog(&s.dir);
        let mnt = s.mountpoint();
        let guard = NsMount { mnt: mnt.clone() };

        // The failure of a background mount (what an automount does) reaches syslog as
        // daemon.err from "sftpfs[pid]", besides the one line on stderr.
        let mut cmd = s.command();
        cmd.args(s.mount_args("missing", &mnt, &[]));
        let line = run_to_exit(cmd, &s.dir, FAIL_DEADLINE).one_line_error();
        let got = received(&sock);
        let daemon_err = format!("<{}>", libc::LOG_DAEMON | libc::LOG_ERR);
        assert!(
            got.iter().any(|m| m.starts_with(&daemon_err)
                && m.contains("sftpfs[")
                && m.to_lowercase()
                    .contains(line.trim_start_matches("sftpfs: "))),
            "the error {line:?} is not in syslog: {got:?}"
        );

        // The same failure in the foreground stays on stderr.
        let mut cmd = s.command();
        cmd.args(s.mount_args("missing", &mnt, &[])).arg("-f");
        let _ = run_to_exit(cmd, &s.dir, FAIL_DEADLINE).one_line_error();
        assert_eq!(
            received(&sock),
            Vec::<String>::new(),
            "foreground logged to syslog"
        );

        // A warning of a background mount (a new host key recorded) goes to syslog too.
        let kh = s.dir.join("known_hosts.new");
        fs::write(&kh, "").unwrap();
        let mut cmd = s.command();
        cmd.args([
            s.target("data").into(),
            mnt.clone().into_os_string(),
            "-p".into(),
            s.port.to_string().into(),
            "-o".into(),
            format!(
                "IdentityFile={},UserKnownHostsFile={},StrictHostKeyChecking=accept-new,BatchMode=yes",
                s.client_key.display(),
                kh.display()
            )
            .into(),
        ]);
        let run = run_to_exit(cmd, &s.dir, MOUNT_DEADLINE);
        assert!(
            run.status.is_some_and(|st| st.success()),
            "{:?} {}",
            run.status,
            run.stderr
        );
        assert!(mounted_here(&mnt).is_some());
        let got = received(&sock);
        let daemon_warning = format!("<{}>", libc::LOG_DAEMON | libc::LOG_WARNING);
        assert!(
            got.iter()
                .any(|m| m.starts_with(&daemon_warning) && m.contains("known hosts")),
            "no warning about the recorded host key in syslog: {got:?}"
        );
        guard.unmount();
    });
}
