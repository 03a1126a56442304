//! The server's hashes of a regular file as read-only extended attributes:
//! `getfattr -n user.sftpfs.sha256 FILE` answers the hex digest the server computes (also
//! `.sha1`, `.md5`, `.sha512`, `.sha224`, `.sha384`, `.blake2b`, as the server can);
//! ENODATA for one it cannot. `listxattr` names only the digests already known for the file
//! as it is now: it never computes one, so `getfattr -d`, `cp -a` or `rsync -X` over a tree
//! do not hash every file. Setting or removing these names is EPERM; other names are
//! EOPNOTSUPP, as SFTP has no extended attributes.

use crate::fs::{Filesystem, FsError, FsResult};
use crate::remote::hash::{hex, Algo, HashError};
use crate::remote::Attrs;

use super::Version;

pub const XATTR_PREFIX: &[u8] = b"user.sftpfs.";

fn err(e: i32) -> FsError {
    FsError::new(e)
}

impl Filesystem {
    /// `getxattr`: the value of `name` on node `ino`.
    pub async fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        let Some(algo) = name.strip_prefix(XATTR_PREFIX) else {
            return Err(err(libc::EOPNOTSUPP));
        };
        let algo = Algo::from_name(algo).ok_or(err(libc::ENODATA))?;
        let hashes = (self.integrity.opts.hashes.clone()).ok_or(err(libc::ENODATA))?;
        // What this mount wrote or queued lands first: the server hashes the file as the
        // mount shows it (not while the server is away: EIO, as every request then).
        self.settle().await?;
        self.drain_inode(ino).await;
        let path = self.path_of(ino)?;
        let mark = self.inodes.lock().unwrap().attr_mark(ino);
        let a = self.lstat_remote(&path).await?;
        let (size, version) = regular(&a, mark).ok_or(err(libc::ENODATA))?;
        if let Some(d) = self.integrity.digests.server(ino, version, algo) {
            return Ok(hex(&d).into_bytes());
        }
        let digest = if size == 0 {
            // Nothing to ask (and ProFTPD's check-file refuses an empty file).
            algo.digest(b"")
        } else {
            let open = self
                .files
                .find(|f| f.ino == ino && f.usable())
                .map(|f| f.current());
            let remote = self.remote(&path);
            let got = hashes
                .hash(&remote, open.as_ref().map(|(c, h)| (c, h)), algo, size)
                .await;
            match got {
                Ok(d) => d,
                Err(e @ HashError::NoMeans(_)) => {
                    tracing::debug!("getxattr {}: {e}", String::from_utf8_lossy(&path));
                    return Err(err(libc::ENODATA));
                }
                Err(e) => {
                    tracing::warn!("hash of {}: {e}", String::from_utf8_lossy(&path));
                    return Err(err(e.errno()));
                }
            }
        };
        // Kept only if the file did not change while it was hashed.
        let after = self.lstat_remote(&path).await.ok();
        let quiet = self.inodes.lock().unwrap().quiet_since(ino, mark);
        if quiet && after.as_ref().and_then(|a| regular(a, mark)) == Some((size, version)) {
            self.integrity
                .digests
                .put_server(ino, version, algo, digest.clone());
        }
        Ok(hex(&digest).into_bytes())
    }

    /// `listxattr`: the digests known for `ino` as it is now, NUL-terminated names.
    pub async fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        if self.integrity.opts.hashes.is_none() {
            return Ok(Vec::new());
        }
        let mark = self.inodes.lock().unwrap().attr_mark(ino);
        let a = self.stat_node(ino, None).await?;
        let Some((_, version)) = regular(&a, mark) else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for algo in self.integrity.digests.known(ino, version) {
            names.extend_from_slice(XATTR_PREFIX);
            names.extend_from_slice(algo.name().as_bytes());
            names.push(0);
        }
        Ok(names)
    }

    /// `setxattr`: SFTP keeps no extended attributes, and the hashes are the server's.
    pub fn setxattr(&self, name: &[u8]) -> FsResult<()> {
        if name.starts_with(XATTR_PREFIX) {
            Err(err(libc::EPERM))
        } else {
            Err(err(libc::EOPNOTSUPP))
        }
    }

    /// `removexattr`: as `setxattr`.
    pub fn removexattr(&self, name: &[u8]) -> FsResult<()> {
        self.setxattr(name)
    }
}

/// A regular file's size and version (with `mark`, the mount's changes when it was read).
fn regular(a: &Attrs, mark: crate::fs::names::inode::AttrMark) -> Option<(u64, Version)> {
    if a.file_type() != Some(libc::S_IFREG) {
        return None;
    }
    let size = a.size?;
    let mtime = a.atime_mtime.map_or(0, |t| t.1);
    Some((size, Version { size, mtime, mark }))
}
