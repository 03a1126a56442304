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
