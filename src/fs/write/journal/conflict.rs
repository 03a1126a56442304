//! Conflicts keep both versions. When a queued change finds its target changed on the
//! server by someone else (a name the mount saw free is taken, a file it saw has another
//! size or mtime, a file replay resumes is not as this mount left it), the server's version
//! is left alone and this mount's goes beside it, as `NAME.sftpfs-conflict-HOST-UTCTIME`.
//! The operations queued before the conflict was found that name the same target follow it
//! there (a `CONFLICT` record keeps that across a restart); later ones mean what the mount
//! shows from then on, which is the server's file again.

use std::sync::Arc;
use std::time::SystemTime;

use super::record::Record;
use super::{Diversion, JFile, Picked, Unreported, WriteData};
use crate::fs::names::inode::{parent_of, within, RelPath};
use crate::fs::Filesystem;
use crate::remote::protocol::*;
use crate::remote::{Attrs, Conn, RemoteError};

/// Conflict names tried for one target before giving up (same second, same host).
const NAMES_TRIED: u32 = 100;

/// `YYYYmmddTHHMMSSZ` of `t` in UTC.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The conflict copy's name for `path`: beside it, saying where and when.
pub fn conflict_name(path: &[u8], host: &str, when: SystemTime, n: u32) -> RelPath {
    let mut p = path.to_vec();
    p.extend_from_slice(format!(".sftpfs-conflict-{host}-{}", utc_stamp(when)).as_bytes());
    if n > 1 {
        p.extend_from_slice(format!("-{n}").as_bytes());
    }
    p
}

impl Filesystem {
    /// A conflict name for `path` that is free on the server.
    pub(super) async fn free_conflict_name(
        &self,
        c: &Conn,
        path: &[u8],
    ) -> Result<RelPath, RemoteError> {
        let j = self.journal().expect("asynchronous mode");
        let now = SystemTime::now();
        for n in 1..=NAMES_TRIED {
            let name = conflict_name(path, &j.host, now, n);
            match c.sftp.lstat(&self.remote(&name)).await {
                Err(e) if e.is_status(SSH_FX_NO_SUCH_FILE) => return Ok(name),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        Err(RemoteError::Status {
            code: SSH_FX_FAILURE,
            message: "no free name for a conflict copy".into(),
        })
    }

    /// Operation `p` found `from` changed on the server: this mount's version is at `to`
    /// (`None`: nothing of ours to keep, the server's file was left alone). Logged with
    /// both names, counted, reported by `sftpfs sync`, and kept across a restart.
    pub(super) fn record_conflict(&self, p: &Picked, from: &[u8], to: Option<&[u8]>) {
        let j = self.journal().expect("asynchronous mode");
        let shown = String::from_utf8_lossy(from);
        match to {
            Some(to) => tracing::warn!(
                "conflict: {shown} changed on the server while this mount's {} of it was \
                 queued; the server's version stays, this mount's is {}",
                p.op.name(),
                String::from_utf8_lossy(to)
            ),
            None => tracing::warn!(
                "conflict: {shown} changed on the server since this mount saw it; the \
                 server's version stays (this mount's {} of it was not done)",
                p.op.name()
            ),
        }
        {
            let mut s = j.state.lock().unwrap();
            if let Some(to) = to {
                let mark = s.next_seq;
                let _ = j.log.append(
                    &Record::Conflict {
                        seq: p.seq,
                        mark,
                        from: from.to_vec(),
                        to: to.to_vec(),
                    },
                    false,
                );
                s.diversions.push(Diversion {
                    from: from.to_vec(),
                    to: to.to_vec(),
                    seq: p.seq,
                    mark,
                });
            }
            s.conflicts += 1;
            s.last_error = Some(format!("conflict on {shown}"));
            s.unreported.push_back(Unreported {
                op: "conflict",
                path: from.to_vec(),
                errno: 0,
                kept_as: to.map(|t| t.to_vec()),
            });
        }
        // What the mount shows of both names is the server's to say now.
        self.cache.invalidate(from);
        self.cache.drop_listing(parent_of(from));
    }

    /// Where operation `seq` on `path` goes on the server: elsewhere if a conflict found
    /// before it was queued sent its target there.
    pub(super) fn diverted_path(&self, path: &[u8], seq: u64) -> RelPath {
        let Some(j) = self.journal() else {
            return path.to_vec();
        };
        let s = j.state.lock().unwrap();
        let mut p = path.to_vec();
        for d in &s.diversions {
            if d.seq <= seq && seq < d.mark && within(&p, &d.from) {
                let mut q = d.to.clone();
                q.extend_from_slice(&p[d.from.len()..]);
                p = q;
            }
        }
        p
    }

    /// Replay, a file found where a create whose answer was lost would have made it:
    /// whether it holds nothing but what this mount wrote to `f` (then it is ours, its
    /// answer lost; else someone else's). Its bytes must be the start of ours.
    pub(super) async fn holds_only_ours(
        &self,
        c: &Arc<Conn>,
        remote: &[u8],
        there: &Attrs,
        f: &JFile,
    ) -> bool {
        let Some(j) = self.journal() else {
            return false;
        };
        let writes = j.file_writes(f.id);
        let read = |d: &WriteData, skip: u64, len: u64| j.write_bytes(d, skip, len);
        self.server_holds_prefix(c, remote, there, &writes, &read)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_utc_stamp_is_the_calendar_s() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(utc_stamp(at(0)), "19700101T000000Z");
        assert_eq!(utc_stamp(at(951_782_400)), "20000229T000000Z");
        assert_eq!(utc_stamp(at(1_767_225_599)), "20251231T235959Z");
        assert_eq!(utc_stamp(at(4_107_542_400)), "21000301T000000Z");
    }

    #[test]
    fn a_conflict_name_says_host_and_time_beside_the_name() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_599);
        assert_eq!(
            conflict_name(b"d/report.txt", "laptop", at, 1),
            b"d/report.txt.sftpfs-conflict-laptop-20251231T235959Z".to_vec()
        );
        assert_eq!(
            conflict_name(b"f", "h", at, 3),
            b"f.sftpfs-conflict-h-20251231T235959Z-3".to_vec()
        );
    }
}
