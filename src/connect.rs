//! Checks before mounting: the local mount point, the remote root directory, and the
//! journal of the asynchronous mode (what an earlier mount left there is sent before the
//! mount serves anything).

use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::MountConfig;
use crate::fs::write::journal::directory::{JournalDir, Source};
use crate::fs::write::journal::Journal;
use crate::fs::{Filesystem, Options};
use crate::remote::{Pool, RemoteError, Sftp};

/// The absolute remote path of the mount root, checked to be a directory.
pub async fn resolve_root(sftp: &Sftp, cfg: &MountConfig) -> Result<Vec<u8>, String> {
    let dir = &cfg.fs.remote_dir;
    let shown = String::from_utf8_lossy(if dir.is_empty() { b"~" } else { dir });
    let host = &cfg.ssh.host;
    let asked: &[u8] = if dir.is_empty() { b"." } else { dir };
    let resolved = if asked.starts_with(b"~") {
        sftp.expand_path(asked).await
    } else {
        sftp.realpath(asked).await
    };
    let root = match resolved {
        Ok(p) => p,
        Err(e) if !e.is_connection() => {
            return Err(format!(
                "remote directory '{shown}' does not exist on {host}; create it or check the path"
            ))
        }
        Err(e) => return Err(format!("cannot resolve remote directory '{shown}': {e}")),
    };
    match sftp.stat(&root).await {
        Ok(a) if a.is_dir() => Ok(root),
        Ok(_) => Err(format!(
            "remote path '{shown}' on {host} is not a directory; mount a directory"
        )),
        Err(RemoteError::Status { .. }) => Err(format!(
            "remote directory '{shown}' does not exist on {host}; create it or check the path"
        )),
        Err(e) => Err(format!("cannot check remote directory '{shown}': {e}")),
    }
}

/// With `subdir=`, the directory below the remote one must be a directory too (libfuse's
/// module would mount anything and fail every access).
pub async fn check_subdir(sftp: &Sftp, root: &[u8], cfg: &MountConfig) -> Result<(), String> {
    let sub = &cfg.fs.subdir;
    if sub.is_empty() {
        return Ok(());
    }
    let path = crate::fs::subdir_of(root, sub);
    let shown = String::from_utf8_lossy(&path);
    let host = &cfg.ssh.host;
    match sftp.stat(&path).await {
        Ok(a) if a.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "-o subdir: '{shown}' on {host} is not a directory; give a directory"
        )),
        Err(RemoteError::Status { .. }) => Err(format!(
            "-o subdir: '{shown}' does not exist on {host}; create it or fix -o subdir"
        )),
        Err(e) => Err(format!("-o subdir: cannot check '{shown}': {e}")),
    }
}

/// The source a journal belongs to: user, host, port and the mount root (`root`, the
/// absolute remote directory, with `subdir=` below it).
pub fn journal_source(cfg: &MountConfig, root: &[u8]) -> Source {
    Source {
        user: cfg.ssh.user.clone(),
        host: cfg.ssh.host.clone(),
        port: cfg.ssh.port,
        dir: crate::fs::subdir_of(root, &cfg.fs.subdir),
    }
}

/// The journal of an asynchronous mount, opened (and locked) with what an earlier mount
/// left in it read, to be replayed before the mount serves anything. A mount without
/// `async_writes` sends what one left behind now, and goes on without a journal.
pub async fn open_journal(
    cfg: &MountConfig,
    pool: &Arc<Pool>,
    root: &[u8],
    opts: &Options,
) -> Result<Option<Journal>, String> {
    let source = journal_source(cfg, root);
    let Some(base) = cfg.fs.journal_dir.as_deref() else {
        if cfg.fs.async_writes {
            return Err(
                "-o async_writes: cannot tell where to keep the journal (HOME is unset); give \
                 -o journal_dir=PATH"
                    .into(),
            );
        }
        return Ok(None);
    };
    if cfg.fs.async_writes {
        let dir = JournalDir::open(base, &source).map_err(|e| format!("-o async_writes: {e}"))?;
        let journal = Journal::open(dir, cfg.fs.journal_max, opts.write_behind_bytes)?;
        // Learned now, while the server is there: writes are queued without asking it.
        if let Ok(c) = pool.get(0).await {
            (journal.max_write).store(c.sftp.limits().max_write, Ordering::Relaxed);
        }
        return Ok(Some(journal));
    }
    if !JournalDir::left_behind(base, &source) {
        return Ok(None);
    }
    let dir = match JournalDir::open(base, &source) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("a journal of this source was left behind, not replayed: {e}");
            return Ok(None);
        }
    };
    let journal = Journal::open(dir, cfg.fs.journal_max, opts.write_behind_bytes)?;
    let replaying = Options {
        async_writes: true,
        ..opts.clone()
    };
    let fs = Filesystem::with_journal(pool.clone(), root.to_vec(), replaying, Some(journal));
    fs.replay(false).await;
    fs.settle_all().await;
    Ok(None)
}

/// One-line problem with the local mount point, if any.
pub fn check_mountpoint(cfg: &MountConfig) -> Result<(), String> {
    let mp = &cfg.mountpoint;
    let shown = mp.display();
    match std::fs::metadata(mp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "mountpoint {shown} does not exist; create it with: mkdir -p {shown}"
            ))
        }
        Err(e) => return Err(format!("mountpoint {shown}: {e}")),
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "mountpoint {shown} is not a directory; give an empty directory"
            ))
        }
        Ok(_) => {}
    }
    if let Ok(canon) = std::fs::canonicalize(mp) {
        if is_mount_point(canon.as_os_str().as_bytes()) {
            return Err(format!(
                "mountpoint {shown} is already a mount point; unmount it first (fusermount3 -u {shown})"
            ));
        }
    }
    Ok(())
}

/// Whether `path` (canonical) is listed in /proc/self/mountinfo.
pub fn is_mount_point(path: &[u8]) -> bool {
    mount_device(path).is_some()
}

/// The `major:minor` of the last mount on `path` (canonical), from /proc/self/mountinfo.
pub fn mount_device(path: &[u8]) -> Option<String> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    info.split(|&b| b == b'\n').rev().find_map(|line| {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let on = fields.get(4).is_some_and(|m| unescape_mountinfo(m) == path);
        on.then(|| String::from_utf8_lossy(fields[2]).into_owned())
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal `\ooo`.
fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && i + 3 < s.len()
            && s[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (s[i + 1] - b'0') * 64 + (s[i + 2] - b'0') * 8 + (s[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescaping() {
        assert_eq!(unescape_mountinfo(b"/a\\040b"), b"/a b");
        assert_eq!(unescape_mountinfo(b"/plain"), b"/plain");
        assert!(is_mount_point(b"/proc"));
        assert!(!is_mount_point(b"/proc/self"));
    }
}
