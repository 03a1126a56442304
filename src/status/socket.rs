//! Where a mount's control socket lives: one per mount, in a directory only its user can
//! enter, named after the mount point (hashed: socket paths are short).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The directory of this user's sockets: `/run/sftpfs` for root, else
/// `$XDG_RUNTIME_DIR/sftpfs` (or `/run/user/UID/sftpfs`), else `/tmp/sftpfs-UID`.
pub fn dir() -> PathBuf {
    let uid = nix::unistd::getuid().as_raw();
    if uid == 0 {
        return PathBuf::from("/run/sftpfs");
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .or_else(|| {
            let p = PathBuf::from(format!("/run/user/{uid}"));
            p.is_dir().then_some(p)
        });
    match runtime {
        Some(r) => r.join("sftpfs"),
        None => std::env::temp_dir().join(format!("sftpfs-{uid}")),
    }
}

/// The socket of the mount at `mountpoint` (an absolute, canonical path).
pub fn path_for(mountpoint: &Path) -> PathBuf {
    let h = Sha256::digest(mountpoint.as_os_str().as_encoded_bytes());
    let name: String = h[..12].iter().map(|b| format!("{b:02x}")).collect();
    dir().join(format!("{name}.sock"))
}

/// Makes the socket directory (mode 0700) if need be, and checks that it is ours and closed
/// to others: a directory someone else made or opened would let them see or fake a socket.
pub fn make_dir() -> Result<PathBuf, String> {
    let d = dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot make {}: {e}", d.display())),
    }
    let m = std::fs::symlink_metadata(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    let uid = nix::unistd::getuid().as_raw();
    if !m.is_dir() || m.uid() != uid {
        return Err(format!(
            "{} is not a directory of user {uid}; remove it",
            d.display()
        ));
    }
    if m.mode() & 0o077 != 0 {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", d.display()))?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mount_point_has_its_own_short_socket() {
        let a = path_for(Path::new("/mnt/a"));
        let b = path_for(Path::new("/mnt/b"));
        assert_ne!(a, b);
        assert_eq!(a, path_for(Path::new("/mnt/a")));
        let long = "/x".repeat(500);
        assert!(path_for(Path::new(&long)).file_name().unwrap().len() < 40);
    }
}
