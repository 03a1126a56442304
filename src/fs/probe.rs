//! Servers that cannot write into an existing file (`rclone serve sftp` without its VFS
//! cache): they empty a file opened for writing even without truncation, so `>>`, `touch`
//! or writing into the middle of a file would lose its data. Found out once per mount, on
//! a scratch file of our own, before the first such open on a server that is not OpenSSH's
//! sftp-server; the open is then refused (EOPNOTSUPP) rather than the data lost.

use super::names::inode::{join, parent_of};
use super::Filesystem;
use crate::remote::protocol::*;
use crate::remote::{Attrs, RemoteError, Sftp};

impl Filesystem {
    /// Whether opening the existing, non-empty file at `path` for writing (without
    /// O_TRUNC) would empty it on this server.
    pub(super) async fn write_open_would_empty(&self, path: &[u8]) -> bool {
        let Some(profile) = self.pool.profile() else {
            return false;
        };
        if let Some(known) = profile.write_open_truncates() {
            return known;
        }
        if profile.is_openssh_sftp_server() {
            profile.note_write_open_truncates(false);
            return false;
        }
        let _once = self.probe_lock.lock().await;
        if let Some(known) = profile.write_open_truncates() {
            return known;
        }
        let name = super::scratch_name("probe");
        let scratch = self.remote(&join(parent_of(path), name.as_bytes()));
        let s = &scratch;
        match self.call(|c| async move { probe(&c.sftp, s).await }).await {
            Ok(empties) => {
                profile.note_write_open_truncates(empties);
                empties
            }
            // Could not find out (a read-only directory): go ahead, as before.
            Err(e) => {
                tracing::debug!("cannot find out whether the server writes at offsets: {e}");
                false
            }
        }
    }
}

/// Writes two bytes to a new file, opens it for writing again without truncation, and says
/// whether that emptied it. The file is removed whatever happens.
async fn probe(sftp: &Sftp, path: &[u8]) -> Result<bool, RemoteError> {
    let made = async {
        let create = SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_EXCL;
        let h = sftp.open(path, create, &Attrs::default()).await?;
        let wrote = sftp.write(&h, 0, b"ok").await;
        sftp.close(&h).await?;
        wrote?;
        let h = sftp.open(path, SSH_FXF_WRITE, &Attrs::default()).await?;
        sftp.close(&h).await?;
        Ok(sftp.lstat(path).await?.size.unwrap_or(0) < 2)
    };
    let r = made.await;
    let _ = sftp.remove(path).await;
    r
}
