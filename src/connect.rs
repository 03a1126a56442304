//! Checks before mounting: the local mount point, and the remote root directory.

use std::os::unix::ffi::OsStrExt;

use crate::config::MountConfig;
use crate::remote::{RemoteError, Sftp};

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
