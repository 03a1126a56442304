//! Server-side copy_file_range (`copy-data@openssh.com`).

use std::sync::Arc;

use crate::fs::handle::OpenFile;
use crate::fs::{Filesystem, FsError, FsResult};
use crate::remote::{Attrs, RemoteError};

impl Filesystem {
    /// Server-side copy (`copy-data`): no file data crosses the network. What the server
    /// cannot copy (no extension; source and destination one file, which OpenSSH refuses;
    /// any other refusal) is EOPNOTSUPP, on which the kernel copies through read and write
    /// for this call alone (ENOSYS would turn server-side copies off for the whole mount).
    pub async fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> FsResult<u64> {
        if Self::is_async_fh(fh_in) || Self::is_async_fh(fh_out) {
            // The kernel copies through read and write instead.
            return Err(FsError::new(libc::EOPNOTSUPP));
        }
        let (fi, fo) = (self.file(fh_in)?, self.file(fh_out)?);
        if fi.ino == fo.ino {
            return Err(FsError::new(libc::EOPNOTSUPP));
        }
        self.settle().await?;
        self.drain_inode(fi.ino).await;
        fo.drain().await;
        let _copying = crate::fs::names::inode::InodeTable::begin_attr_change(&self.inodes, fo.ino);
        let mark = self.inodes.lock().unwrap().attr_mark(fo.ino);
        // Bytes the mount does not see: `verify_writes` cannot check this file.
        self.data_changed_otherwise(fo.ino, None);
        let copied = match self.copy_once(&fi, off_in, &fo, off_out, len).await {
            // A handle died with its connection: both files on live ones, and once more.
            Err(e) if e.is_dead() => {
                self.ensure_live(&fi).await?;
                self.ensure_live(&fo).await?;
                self.copy_once(&fi, off_in, &fo, off_out, len).await
            }
            r => r,
        };
        let n = match copied {
            Err(e) if e.is_failure() || matches!(e, RemoteError::Unsupported(_)) => {
                return Err(FsError::new(libc::EOPNOTSUPP))
            }
            r => r?,
        };
        if n == 0 {
            return Ok(0);
        }
        self.drop_readahead(fo.ino);
        if let Some(node) = self.inodes.lock().unwrap().get_mut(fo.ino) {
            // At least this long now, whatever the writes before implied.
            node.local_size = node.local_size.map(|s| s.max(off_out + n));
        }
        // Its writes were drained first: the size they implied is the server's to say now,
        // unless another write came while the copy travelled.
        self.server_caught_up(fo.ino, None, mark, true, |_, _| false);
        // The inode table's lock is let go first: the cache's change lock comes before it.
        let path = self.inodes.lock().unwrap().path(fo.ino);
        if let Some(p) = path {
            self.cache.invalidate(&p);
        }
        Ok(n)
    }

    /// One `copy-data` of up to `len` bytes on the files' current handles; how many it copied.
    async fn copy_once(
        &self,
        fi: &OpenFile,
        off_in: u64,
        fo: &OpenFile,
        off_out: u64,
        len: u64,
    ) -> Result<u64, RemoteError> {
        let (cin, hin) = fi.current();
        let (cout, hout) = fo.current();
        if !cout.sftp.profile().has(crate::remote::Ext::CopyData) {
            return Err(RemoteError::Unsupported("copy-data"));
        }
        // How much there is to copy: copy-data does not say.
        let size = cin.sftp.fstat(&hin).await?.size.unwrap_or(0);
        let n = len.min(size.saturating_sub(off_in));
        if n == 0 {
            return Ok(0);
        }
        // Both handles must live in one session: the source is opened again on the
        // destination's, by its path (an unlinked source has none: the kernel copies).
        let (src, temp) = if Arc::ptr_eq(&cin, &cout) {
            (hin, None)
        } else {
            // An unlinked source cannot be opened again here: the kernel copies it instead.
            let path = self
                .path_of(fi.ino)
                .map_err(|_| RemoteError::Unsupported("copy-data from an unlinked file"))?;
            let p = crate::remote::protocol::SSH_FXF_READ;
            let h = match cout
                .sftp
                .open(&self.remote(&path), p, &Attrs::default())
                .await
            {
                Err(e) if !e.is_dead() => return Err(RemoteError::Unsupported("copy-data source")),
                h => h?,
            };
            (h.clone(), Some(h))
        };
        let res = cout.sftp.copy_data(&src, off_in, n, &hout, off_out).await;
        if let Some(h) = temp {
            let _ = cout.sftp.close(&h).await;
        }
        res.map(|()| n)
    }
}
