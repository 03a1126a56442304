//! Running processes ([`command_in`], [`run_to_exit`], [`sh`]) and finding them in `/proc`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::mountinfo::is_mounted;
use super::{binary, unique, wait_until, POLL};

/// The binary under test with a clean environment (see [`Sshd::command`]).
pub fn command_in(home: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_AGENT_PID")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// The outcome of a process run with a deadline.
#[derive(Debug)]
pub struct Run {
    /// `None` when it was still running at the deadline (it was killed then).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The one-line error the contract asks for: exits non-zero (not by a signal, not a
    /// timeout), stderr is exactly one line starting with `sftpfs: `. Returns the line,
    /// lower-cased.
    pub fn one_line_error(&self) -> String {
        let status = self
            .status
            .unwrap_or_else(|| panic!("still running after the deadline; stderr: {}", self.stderr));
        assert!(
            status.code().is_some_and(|c| c != 0),
            "expected a non-zero exit code, got {status}; stderr: {:?}",
            self.stderr
        );
        let text = self.stderr.trim_end();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr, got {}:\n{}",
            lines.len(),
            self.stderr
        );
        assert!(
            lines[0].starts_with("sftpfs: "),
            "stderr does not start with 'sftpfs: ': {:?}",
            lines[0]
        );
        lines[0].to_lowercase()
    }
}

/// Runs `cmd` to its exit, with stdout and stderr sent to files in `dir` (a daemon that
/// inherits them can never block the reading), killing it at `deadline`.
pub fn run_to_exit(mut cmd: Command, dir: &Path, deadline: Duration) -> Run {
    let name = unique("run");
    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    let start = Instant::now();
    let mut child = cmd
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() >= deadline {
            let _ = child.kill();
            break None;
        }
        sleep(POLL);
    };
    let _ = child.wait();
    let elapsed = start.elapsed();
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    Run {
        status,
        stdout,
        stderr,
        elapsed,
    }
}

/// Processes (not zombies) with `arg` as one of their command-line arguments.
pub fn processes_with_arg(arg: &OsStr) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if !cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            continue;
        }
        let state = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true);
        if !zombie {
            pids.push(pid);
        }
    }
    pids
}

pub(super) fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The live (not zombie) descendants of `pid`, deepest first.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut children: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("Z");
            let ppid = f.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            if state != "Z" && state != "X" {
                children.push((p, ppid));
            }
        }
    }
    fn walk(of: i32, all: &[(i32, i32)], out: &mut Vec<i32>) {
        for &(p, pp) in all {
            if pp == of {
                walk(p, all, out);
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(pid, &children, &mut out);
    out
}

/// The process exists and is not a zombie.
pub(super) fn is_live(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

/// Runs a shell-less command with `args`, in `cwd`, asserting success; returns stdout.
#[track_caller]
pub fn sh(cwd: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed ({}):\nstdout: {}\nstderr: {}",
        cwd.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A mount attempt that failed left nothing behind: one line of error (returned, lower-cased),
/// no mount, no process still serving the mountpoint.
#[track_caller]
pub fn failed_cleanly(run: &Run, mnt: &Path) -> String {
    let line = run.one_line_error();
    assert!(
        !is_mounted(mnt),
        "{} is mounted after a failure",
        mnt.display()
    );
    let gone = wait_until(Duration::from_secs(5), || {
        processes_with_arg(mnt.as_os_str()).is_empty()
    });
    assert!(
        gone,
        "a process serving {} is still running after the failure: {:?}",
        mnt.display(),
        processes_with_arg(mnt.as_os_str())
    );
    line
}

/// A child process killed (by its pid) and reaped however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
