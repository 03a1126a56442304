//! Commands on a pseudo-terminal (util-linux `script`), for logins where a person types a
//! password or a code: what they print, and typing answers when they ask.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A command on a pseudo-terminal: what it printed so far, and its input.
pub struct OnTty {
    pub child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<Vec<u8>>,
    seen: String,
    /// Unmounted (lazily) when done, however the test ends.
    mnt: Option<PathBuf>,
}

impl OnTty {
    pub fn run(line: &str, mnt: Option<&Path>) -> OnTty {
        let mut child = Command::new("script")
            .args(["-qfec", line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run script (util-linux)");
        let mut out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        OnTty {
            stdin: child.stdin.take(),
            child,
            out: rx,
            seen: String::new(),
            mnt: mnt.map(Path::to_path_buf),
        }
    }

    /// Waits for `prompt`, then types `answer`.
    pub fn answer(&mut self, prompt: &str, answer: &str) {
        while !self.seen.contains(prompt) {
            match self.out.recv_timeout(Duration::from_secs(20)) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {prompt:?}; it said:\n{}", self.seen),
            }
        }
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    }

    pub fn said(&mut self) -> &str {
        while let Ok(b) = self.out.try_recv() {
            self.seen.push_str(&String::from_utf8_lossy(&b));
        }
        &self.seen
    }
}

impl Drop for OnTty {
    fn drop(&mut self) {
        if let Some(m) = &self.mnt {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(m)
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mount's `sftpfs status --json`, or `null` when it does not answer.
pub fn status_json(mnt: &Path) -> serde_json::Value {
    let out = Command::new(super::binary())
        .args(["status", "--json"])
        .arg(mnt)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// `sftpfs sync MOUNTPOINT`: what the mount queued (async_writes) is on the server, or its
/// failures are named.
pub fn sftpfs_sync(mnt: &Path) -> std::process::Output {
    Command::new(super::binary())
        .arg("sync")
        .arg(mnt)
        .output()
        .unwrap()
}

/// How many of a mount's pool members are up, by its status.
pub fn members_up(mnt: &Path) -> usize {
    status_json(mnt)["connections"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|c| c["state"] == "up").count())
}
