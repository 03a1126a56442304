//! Test support: a real OpenSSH sftp-server over stdio, and throwaway directories.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::Sftp;

const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// A real sftp-server child speaking on its stdin/stdout: the server's semantics, no network.
pub async fn server() -> Sftp {
    assert!(
        Path::new(SFTP_SERVER).exists(),
        "{SFTP_SERVER} missing: install openssh-sftp-server"
    );
    let mut child = tokio::process::Command::new(SFTP_SERVER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let io = tokio::io::join(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    // The child ends when its stdin closes with the session.
    tokio::spawn(async move { child.wait().await });
    Sftp::start(io, Duration::from_secs(10)).await.unwrap()
}

/// A directory removed on drop, even when the test fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "sftpfs-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A transport whose connections are sftp-server children; tests kill them to make a
/// connection die under the filesystem.
#[derive(Default)]
pub struct ChildTransport {
    pids: std::sync::Mutex<Vec<u32>>,
    pub opened: std::sync::atomic::AtomicUsize,
    /// Extensions taken out of the server's VERSION packet: a server without them.
    pub hidden: Vec<&'static str>,
    /// Requests the server refuses though it offers them (sftp-server `-P`): an extension
    /// offered but not working.
    pub denied: Vec<&'static str>,
    /// READs are served at most this long (as Go's pkg/sftp caps them), without saying so.
    pub read_cap: Option<u32>,
    /// Every OPEN for writing truncates, as `rclone serve sftp` without its cache does.
    pub write_opens_truncate: bool,
    /// Where each READ's offset is noted, in the order the server gets them.
    pub reads: Option<std::sync::Arc<std::sync::Mutex<Vec<u64>>>>,
    /// Refuses connections beyond this many at the same time (a server's `MaxStartups` or
    /// per-user limit).
    pub max_live: Option<usize>,
}

/// Our requests to the server, each READ's length cut to `cap` and its offset noted in
/// `reads`, each OPEN for writing made truncating with `truncate`.
fn requests_rewritten(
    mut to: tokio::process::ChildStdin,
    cap: u32,
    truncate: bool,
    reads: Option<std::sync::Arc<std::sync::Mutex<Vec<u64>>>>,
) -> tokio::io::DuplexStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        loop {
            let mut len = [0u8; 4];
            if theirs.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut p = vec![0u8; u32::from_be_bytes(len) as usize];
            if theirs.read_exact(&mut p).await.is_err() {
                return;
            }
            use super::protocol::*;
            match p.first() {
                Some(&SSH_FXP_READ) => {
                    let at = p.len() - 4;
                    if let Some(r) = &reads {
                        let off = u64::from_be_bytes(p[at - 8..at].try_into().unwrap());
                        r.lock().unwrap().push(off);
                    }
                    let asked = u32::from_be_bytes(p[at..].try_into().unwrap());
                    p[at..].copy_from_slice(&asked.min(cap).to_be_bytes());
                }
                Some(&SSH_FXP_OPEN) if truncate => {
                    let name = u32::from_be_bytes(p[5..9].try_into().unwrap()) as usize;
                    let at = 9 + name;
                    let flags = u32::from_be_bytes(p[at..at + 4].try_into().unwrap());
                    if flags & SSH_FXF_WRITE != 0 {
                        p[at..at + 4].copy_from_slice(&(flags | SSH_FXF_TRUNC).to_be_bytes());
                    }
                }
                _ => {}
            }
            if to.write_all(&len).await.is_err() || to.write_all(&p).await.is_err() {
                return;
            }
        }
    });
    ours
}

/// The server's output with `hidden` extensions dropped from its VERSION packet.
fn without_extensions(
    mut from: tokio::process::ChildStdout,
    hidden: Vec<&'static str>,
) -> tokio::io::DuplexStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let mut len = [0u8; 4];
        if from.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut p = vec![0u8; u32::from_be_bytes(len) as usize];
        if from.read_exact(&mut p).await.is_err() {
            return;
        }
        let mut out = p[..5].to_vec();
        let mut rest = &p[5..];
        let string = |rest: &mut &[u8]| {
            let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let s = rest[..4 + n].to_vec();
            *rest = &rest[4 + n..];
            s
        };
        while !rest.is_empty() {
            let (name, data) = (string(&mut rest), string(&mut rest));
            if !hidden.iter().any(|h| &name[4..] == h.as_bytes()) {
                out.extend_from_slice(&name);
                out.extend_from_slice(&data);
            }
        }
        let mut packet = (out.len() as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&out);
        if theirs.write_all(&packet).await.is_ok() {
            let _ = tokio::io::copy(&mut from, &mut theirs).await;
        }
    });
    ours
}

impl ChildTransport {
    /// Servers of which at most `max` run at once: one more is refused (a server's
    /// `MaxStartups` or per-user limit).
    pub fn at_most(max: usize) -> Self {
        ChildTransport {
            max_live: Some(max),
            ..ChildTransport::default()
        }
    }

    /// Servers that offer every extension but refuse the `denied` requests.
    pub fn denying(denied: Vec<&'static str>) -> Self {
        ChildTransport {
            denied,
            ..ChildTransport::default()
        }
    }

    /// Servers without the `hidden` extensions.
    pub fn hiding(hidden: Vec<&'static str>) -> Self {
        ChildTransport {
            hidden,
            ..ChildTransport::default()
        }
    }

    /// Kills the `n`-th server started (0: the first), if it is still in the list.
    pub fn kill_nth(&self, n: usize) {
        if let Some(&pid) = self.pids.lock().unwrap().get(n) {
            // SAFETY: signalling a child we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }

    /// Sends `sig` to every server started so far and still in the list.
    pub fn signal_all(&self, sig: i32) {
        for &pid in self.pids.lock().unwrap().iter() {
            // SAFETY: signalling a child we started.
            unsafe { libc::kill(pid as i32, sig) };
        }
    }

    /// The server processes still running (not yet exited, or not yet reaped).
    pub fn live_children(&self) -> usize {
        let pids = self.pids.lock().unwrap();
        pids.iter()
            .filter(|&&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
                })
            })
            .count()
    }

    /// Kills every server started so far.
    pub fn kill_all(&self) {
        for pid in self.pids.lock().unwrap().drain(..) {
            // SAFETY: signalling a child we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

#[async_trait::async_trait]
impl super::Transport for ChildTransport {
    async fn open(&self) -> Result<super::Opened, String> {
        if let Some(max) = self.max_live {
            if self.live_children() >= max {
                return Err("connection refused by the test's server".into());
            }
        }
        let mut cmd = tokio::process::Command::new(SFTP_SERVER);
        if !self.denied.is_empty() {
            cmd.arg("-P").arg(self.denied.join(","));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(pid) = child.id() {
            self.pids.lock().unwrap().push(pid);
        }
        self.opened.fetch_add(1, Ordering::SeqCst);
        let out = without_extensions(child.stdout.take().unwrap(), self.hidden.clone());
        let stdin = child.stdin.take().unwrap();
        let rewritten =
            self.read_cap.is_some() || self.write_opens_truncate || self.reads.is_some();
        let stream: Box<dyn super::SftpIo> = if rewritten {
            let cap = self.read_cap.unwrap_or(u32::MAX);
            let to = requests_rewritten(stdin, cap, self.write_opens_truncate, self.reads.clone());
            Box::new(tokio::io::join(out, to))
        } else {
            Box::new(tokio::io::join(out, stdin))
        };
        Ok(super::Opened {
            stream,
            keep_alive: Box::new(std::sync::Mutex::new(child)),
            banner: None,
        })
    }
}
