//! [`Mount`]: a live FUSE mount made by the binary under test, and how to end it ([`Stop`]).

use std::fs;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::mountinfo::{detach, is_mounted};
use super::process::{parent_of, processes_with_arg, run_to_exit};
use super::sshd::Sshd;
use super::{binary, unique, EXIT_DEADLINE, MOUNT_DEADLINE, POLL};

/// How to end a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Fusermount,
    Umount,
    Sigterm,
    Sigint,
}

enum Proc {
    /// The foreground process (`-f`), our child.
    Child(Child),
    /// The daemon left by a background mount (re-parented to us: we are a subreaper).
    Daemon(i32),
    /// Already waited for.
    Gone,
}

/// A live mount of the binary under test, unmounted on drop.
pub struct Mount<'a> {
    /// The server's temp dir, where the binary's log goes (and commands run).
    pub dir: &'a Path,
    /// The mountpoint.
    pub mnt: PathBuf,
    /// The server-side directory that is mounted.
    pub server: PathBuf,
    /// The binary's stderr.
    pub log: PathBuf,
    proc_: Proc,
}

impl<'a> Mount<'a> {
    /// Mounts `remote_dir` of `sshd` in the foreground (`-f`) with the usual options plus
    /// `extra`, and waits until the mountpoint shows in /proc/self/mountinfo.
    pub fn new(sshd: &'a Sshd, remote_dir: &str, extra: &[&str]) -> Mount<'a> {
        Mount::try_new(sshd, remote_dir, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Mount::new`], but returns the failure (with the binary's stderr) instead.
    pub fn try_new(sshd: &'a Sshd, remote_dir: &str, extra: &[&str]) -> Result<Mount<'a>, String> {
        let mnt = sshd.mountpoint();
        let mut cmd = sshd.command();
        cmd.args(sshd.mount_args(remote_dir, &mnt, extra)).arg("-f");
        Mount::spawn_foreground(sshd, cmd, mnt, sshd.resolve(remote_dir))
    }

    /// Like [`Mount::new`], but connecting to `port` on 127.0.0.1 (a proxy in front of
    /// `sshd`, see [`proxy::Proxy`](super::proxy::Proxy)) instead of the server's own port.
    /// The server's host key is trusted for that port.
    pub fn via_port(sshd: &'a Sshd, port: u16, remote_dir: &str, extra: &[&str]) -> Mount<'a> {
        sshd.trust_port(port);
        let mnt = sshd.mountpoint();
        let mut args = sshd.mount_args(remote_dir, &mnt, extra);
        assert_eq!(args[2], "-p");
        args[3] = port.to_string().into();
        let mut cmd = sshd.command();
        cmd.args(args).arg("-f");
        Mount::spawn_foreground(sshd, cmd, mnt, sshd.resolve(remote_dir))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `cmd` (the binary with complete arguments including `-f` and `mnt`) and waits for
    /// `mnt` to be mounted.
    pub fn spawn_foreground(
        sshd: &'a Sshd,
        cmd: Command,
        mnt: PathBuf,
        server: PathBuf,
    ) -> Result<Mount<'a>, String> {
        Mount::spawn_in(&sshd.dir, cmd, mnt, server)
    }

    /// Like [`Mount::spawn_foreground`] for any server: the binary's log goes to `dir`
    /// (a temp dir that outlives the mount).
    pub fn spawn_in(
        dir: &'a Path,
        mut cmd: Command,
        mnt: PathBuf,
        server: PathBuf,
    ) -> Result<Mount<'a>, String> {
        let log = dir.join(format!("{}.log", unique("sftpfs")));
        let logfile = fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        let mut m = Mount {
            dir,
            mnt,
            server,
            log,
            proc_: Proc::Child(child),
        };
        let end = Instant::now() + MOUNT_DEADLINE;
        loop {
            if is_mounted(&m.mnt) {
                return Ok(m);
            }
            if let Proc::Child(c) = &mut m.proc_ {
                if let Some(status) = c.try_wait().unwrap() {
                    m.proc_ = Proc::Gone;
                    return Err(format!(
                        "{cmd:?} exited ({status}) without mounting:\n{}",
                        m.stderr()
                    ));
                }
            }
            if Instant::now() >= end {
                return Err(format!(
                    "{cmd:?} did not mount {} within {MOUNT_DEADLINE:?}:\n{}",
                    m.mnt.display(),
                    m.stderr()
                ));
            }
            sleep(POLL);
        }
    }

    /// Mounts without `-f`: the parent must exit 0 within the deadline, with the mount
    /// already live at that moment (checked at once, no polling), and leave a daemon behind.
    pub fn background(sshd: &'a Sshd, remote_dir: &str, extra: &[&str]) -> Mount<'a> {
        let mnt = sshd.mountpoint();
        let log = sshd.dir.join(format!("{}.log", unique("sftpfs")));
        let logfile = fs::File::create(&log).unwrap();
        let mut cmd = sshd.command();
        cmd.args(sshd.mount_args(remote_dir, &mnt, extra))
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile);
        let mut parent = cmd.spawn().expect("spawn the binary");
        let parent_pid = parent.id() as i32;
        let end = Instant::now() + MOUNT_DEADLINE;
        let status = loop {
            if let Some(s) = parent.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = parent.kill();
                let _ = parent.wait();
                let mut m = Mount {
                    dir: &sshd.dir,
                    mnt: mnt.clone(),
                    server: sshd.resolve(remote_dir),
                    log,
                    proc_: Proc::Gone,
                };
                m.adopt_daemon(parent_pid);
                panic!(
                    "background mount: the parent did not exit within {MOUNT_DEADLINE:?}:\n{}",
                    m.stderr()
                );
            }
            sleep(POLL);
        };
        let mounted = is_mounted(&mnt);
        let mut m = Mount {
            dir: &sshd.dir,
            mnt,
            server: sshd.resolve(remote_dir),
            log,
            proc_: Proc::Gone,
        };
        m.adopt_daemon(parent_pid);
        assert!(
            status.success(),
            "background mount: the parent exited with {status}:\n{}",
            m.stderr()
        );
        assert!(
            mounted,
            "background mount: the parent exited 0 but {} was not mounted at that moment:\n{}",
            m.mnt.display(),
            m.stderr()
        );
        assert!(
            matches!(m.proc_, Proc::Daemon(_)),
            "background mount: no daemon process with {} on its command line",
            m.mnt.display()
        );
        m
    }

    /// Finds the daemon (a process other than the parent with our mountpoint among its
    /// arguments, re-parented to us).
    fn adopt_daemon(&mut self, parent_pid: i32) {
        let me = std::process::id() as i32;
        let pids: Vec<i32> = processes_with_arg(self.mnt.as_os_str())
            .into_iter()
            .filter(|p| *p != parent_pid)
            .collect();
        let ours = pids.iter().copied().find(|p| parent_of(*p) == Some(me));
        if let Some(p) = ours.or(pids.first().copied()) {
            self.proc_ = Proc::Daemon(p);
        }
    }

    /// The pid of the process serving the mount (foreground child or daemon).
    pub fn pid(&self) -> Option<i32> {
        match &self.proc_ {
            Proc::Child(c) => Some(c.id() as i32),
            Proc::Daemon(p) => Some(*p),
            Proc::Gone => None,
        }
    }

    /// `mnt/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.mnt.clone()
        } else {
            self.mnt.join(rel)
        }
    }

    /// Server-side `rel` (under the mounted remote dir).
    pub fn remote(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.server.clone()
        } else {
            self.server.join(rel)
        }
    }

    /// What the binary wrote on stdout and stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ends the mount `how`, then waits (with a deadline) for the process to exit and returns
    /// its exit status. Panics if it does not exit or the mount stays.
    pub fn stop(&mut self, how: Stop) -> ExitStatus {
        match how {
            Stop::Fusermount | Stop::Umount => {
                let (prog, args): (&str, &[&str]) = if how == Stop::Fusermount {
                    ("fusermount3", &["-u"])
                } else {
                    ("umount", &[])
                };
                // Busy only for a moment: a process another test forks holds copies of this
                // test's descriptors until it execs (they are close-on-exec).
                let end = Instant::now() + EXIT_DEADLINE;
                let run = loop {
                    let mut c = Command::new(prog);
                    c.args(args).arg(&self.mnt);
                    let run = run_to_exit(c, self.dir, EXIT_DEADLINE);
                    let busy = run.stderr.contains("Device or resource busy")
                        || run.stderr.contains("target is busy");
                    if run.status.is_some_and(|s| s.success()) || !busy || Instant::now() > end {
                        break run;
                    }
                    sleep(POLL);
                };
                assert!(
                    run.status.is_some_and(|s| s.success()),
                    "{how:?} of {} failed ({:?}): {}",
                    self.mnt.display(),
                    run.status,
                    run.stderr
                );
            }
            Stop::Sigterm | Stop::Sigint => {
                let pid = self.pid().expect("no process to signal");
                let sig = if how == Stop::Sigterm {
                    libc::SIGTERM
                } else {
                    libc::SIGINT
                };
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
        let status = self.wait_exit(EXIT_DEADLINE);
        let status = status.unwrap_or_else(|| {
            panic!(
                "the process did not exit within {EXIT_DEADLINE:?} after {how:?}:\n{}",
                self.stderr()
            )
        });
        assert!(
            !is_mounted(&self.mnt),
            "{} is still mounted after {how:?} and the exit of the process",
            self.mnt.display()
        );
        status
    }

    /// Waits for the serving process to exit; `None` at the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            match &mut self.proc_ {
                Proc::Child(c) => {
                    if let Some(s) = c.try_wait().unwrap() {
                        self.proc_ = Proc::Gone;
                        return Some(s);
                    }
                }
                Proc::Daemon(pid) => {
                    let mut status = 0;
                    let r = unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
                    if r == *pid {
                        self.proc_ = Proc::Gone;
                        return Some(ExitStatus::from_raw(status));
                    }
                    if r < 0 {
                        panic!(
                            "daemon {pid} is not a child of the test process: {}",
                            io::Error::last_os_error()
                        );
                    }
                }
                Proc::Gone => panic!("the process was already waited for"),
            }
            if Instant::now() >= end {
                return None;
            }
            sleep(POLL);
        }
    }

    fn kill_hard(&mut self) {
        match &mut self.proc_ {
            Proc::Child(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Proc::Daemon(pid) => unsafe {
                libc::kill(*pid, libc::SIGKILL);
                let mut st = 0;
                libc::waitpid(*pid, &mut st, 0);
            },
            Proc::Gone => {}
        }
        self.proc_ = Proc::Gone;
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if is_mounted(&self.mnt) {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                detach(&self.mnt);
            }
        }
        if !matches!(self.proc_, Proc::Gone) && self.wait_exit(EXIT_DEADLINE).is_none() {
            eprintln!(
                "harness: the process serving {} did not exit after unmount; killing it",
                self.mnt.display()
            );
            self.kill_hard();
        }
        if panicking {
            eprintln!(
                "---- {} log ({}):\n{}",
                binary().display(),
                self.mnt.display(),
                self.stderr()
            );
        }
    }
}

/// Waits until a name made on the server's side shows through the mount at `path`. By name
/// it shows at once (tests/freshness.rs); kept for tests that only need it to be there, and
/// for other binaries run through the harness (`SFTPFS_TEST_BIN`).
pub fn wait_visible(path: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::symlink_metadata(path).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not show through the mount within 20 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
