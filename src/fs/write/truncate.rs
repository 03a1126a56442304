//! sshfs's `workaround=truncate`, for servers that cannot change a size with SETSTAT: the
//! file is rewritten instead. To nothing: OPEN with TRUNC. Longer: one zero byte written
//! at the new end. Shorter: the part that stays is read, the file opened with TRUNC and the
//! part written back (held in memory meanwhile, so that a connection lost in between
//! loses nothing: the write-back is repeated on the new connection).

use bytes::{Bytes, BytesMut};

use crate::fs::Filesystem;
use crate::remote::protocol::*;
use crate::remote::{Attrs, RemoteError, Sftp};

impl Filesystem {
    pub(in crate::fs) async fn truncate_by_rewrite(
        &self,
        path: &[u8],
        size: u64,
    ) -> Result<(), RemoteError> {
        let r = self.remote(path);
        let r = &r;
        // The file's size, through a link if the path is one (follow_symlinks).
        let current = self
            .call(|c| async move { c.sftp.stat(r).await })
            .await?
            .size
            .unwrap_or(0);
        if size == current {
            return Ok(());
        }
        if size > current {
            let zero = [Bytes::from_static(&[0])];
            let zero = &zero;
            return self
                .call(|c| async move { write_at(&c.sftp, r, 0, size - 1, zero).await })
                .await;
        }
        let kept = if size == 0 {
            Vec::new()
        } else {
            self.call(|c| async move { read_prefix(&c.sftp, r, size).await })
                .await?
        };
        let kept = &kept;
        self.call(|c| async move { write_at(&c.sftp, r, SSH_FXF_TRUNC, 0, kept).await })
            .await
    }
}

/// The first `size` bytes of the file at `r`.
async fn read_prefix(sftp: &Sftp, r: &[u8], size: u64) -> Result<Vec<Bytes>, RemoteError> {
    let h = sftp.open(r, SSH_FXF_READ, &Attrs::default()).await?;
    let max = sftp.limits().max_read as u64;
    let mut parts = Vec::new();
    let mut pos = 0;
    let read = async {
        while pos < size {
            let d = sftp.read(&h, pos, (size - pos).min(max) as u32).await?;
            if d.is_empty() {
                break;
            }
            pos += d.len() as u64;
            parts.push(d);
        }
        Ok(())
    };
    let res: Result<(), RemoteError> = read.await;
    let closed = sftp.close(&h).await;
    res.and(closed)?;
    Ok(parts)
}

/// Opens `r` for writing (with `extra` open flags) and writes `parts` one after another
/// from `offset`, pipelined.
async fn write_at(
    sftp: &Sftp,
    r: &[u8],
    extra: u32,
    offset: u64,
    parts: &[Bytes],
) -> Result<(), RemoteError> {
    let h = sftp
        .open(r, SSH_FXF_WRITE | extra, &Attrs::default())
        .await?;
    let max = sftp.limits().max_write as usize;
    let mut chunks = Vec::new();
    let mut pos = offset;
    for p in parts {
        for c in p.chunks(max) {
            let mut b = BytesMut::with_capacity(c.len());
            b.extend_from_slice(c);
            chunks.push((pos, b.freeze()));
            pos += c.len() as u64;
        }
    }
    // A bounded number in flight: each has its own deadline.
    let mut written = Ok(());
    for batch in chunks.chunks(WRITES_IN_FLIGHT) {
        let writes = futures::future::join_all(batch.iter().map(|(o, d)| sftp.write(&h, *o, d)));
        if let Err(e) = writes.await.into_iter().collect::<Result<Vec<()>, _>>() {
            written = Err(e);
            break;
        }
    }
    let closed = sftp.close(&h).await;
    written?;
    closed
}

/// WRITEs of the rewrite in flight at once (8 MiB at OpenSSH's size, as write-behind).
const WRITES_IN_FLIGHT: usize = 32;
