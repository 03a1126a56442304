//! The status document: one JSON object per mount, the same for `--json`, the text screen
//! and the Prometheus text.

use std::time::UNIX_EPOCH;

use serde_json::{json, Value};

use super::server::MountInfo;
use crate::fs::FsStatus;

pub fn build(s: &FsStatus, info: &MountInfo) -> Value {
    let connections: Vec<Value> = s
        .pool
        .members
        .iter()
        .map(|m| {
            let files = s.open_files_by_member.get(m.slot).copied().unwrap_or(0);
            let cur = m.current.clone().unwrap_or_default();
            let all = m.earlier.plus(&cur);
            let by_type: serde_json::Map<String, Value> = all
                .requests_by_type()
                .into_iter()
                .map(|(k, n)| (k.to_string(), json!(n)))
                .collect();
            json!({
                "member": m.slot,
                "state": m.state.name(),
                "rtt_seconds": m.current.as_ref().and_then(|c| c.rtt).map(|d| d.as_secs_f64()),
                "bytes_in": m.earlier.bytes_in + cur.bytes_in,
                "bytes_out": m.earlier.bytes_out + cur.bytes_out,
                "requests": all.requests,
                "requests_by_type": by_type,
                "round_trips": all.round_trips,
                "requests_in_flight": cur.in_flight,
                "reconnects": m.reconnects,
                "open_files": files,
            })
        })
        .collect();
    let cache = |c: &crate::fs::meta::cache::CacheStats| json!({ "entries": c.entries, "hits": c.hits, "misses": c.misses, "bytes": c.bytes });
    let recent: Vec<Value> = s
        .recent_errors
        .iter()
        .map(|e| {
            json!({
                "time": e.at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
                "op": e.op,
                "path": String::from_utf8_lossy(&e.path),
                "errno": errno_name(e.errno),
            })
        })
        .collect();
    let by_errno: serde_json::Map<String, Value> = s
        .errors_by_errno
        .iter()
        .map(|(e, n)| (errno_name(*e), json!(n)))
        .collect();
    json!({
        "mountpoint": info.mountpoint.to_string_lossy(),
        "source": info.source,
        "user": info.user,
        "host": info.host,
        "port": info.port,
        "remote_dir": info.remote_dir,
        "transport": info.transport,
        "pid": info.pid,
        "started": info.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "uptime_seconds": info.started_at.elapsed().as_secs_f64(),
        "server": s.server,
        "sftp_version": s.sftp_version,
        "needs_authentication": s.needs_authentication,
        "connections": connections,
        "pool": {
            "idle_seconds": s.pool.idle.as_secs_f64(),
            "sessions_opened": s.pool.sessions_opened,
            "closed_at_rest": s.pool.closed_at_rest,
            "refused": s.pool.refused.as_ref().map(|r| json!({
                "time": r.at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
                "count": r.count,
                "reason": r.reason,
            })),
        },
        "open_files": s.open_files,
        "opens": { "total": s.opens.0, "kept_pages": s.opens.1 },
        "unacknowledged_write_bytes": s.unacked_write_bytes,
        "readahead_bytes": s.readahead_bytes,
        "files_read_ahead": s.files_read_ahead,
        "async_writes": s.journal.as_ref().map(|j| json!({
            "journal": j.path.display().to_string(),
            "journal_bytes": j.disk_bytes,
            "queued_operations": j.queued,
            "queued_bytes": j.queued_bytes,
            "oldest_queued_seconds": j.oldest.map(|d| d.as_secs_f64()),
            "failed_operations": j.failures,
            "conflicts": j.conflicts,
            "offline_since": j.offline_since
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            "last_error": j.last_error,
            "fdatasyncs": j.syncs,
            "operations_synced": j.synced_records,
            "replay_damage": j.damage,
            "replayed": {
                "sent": j.replayed.sent,
                "already_there": j.replayed.already,
                "conflicts": j.replayed.conflicts,
                "failed": j.replayed.failed,
            },
        })),
        "revalidation": {
            "period_seconds": info.revalidate.as_secs_f64(),
            "requests": s.revalidation.0,
            "bytes_out": s.revalidation.1,
            "bytes_in": s.revalidation.2,
        },
        "inodes": s.inodes,
        "caches": {
            "attributes": cache(&s.caches[0]),
            "listings": cache(&s.caches[1]),
            "links": cache(&s.caches[2]),
        },
        "hashes": s.integrity.hashes.as_ref().map(|h| json!({
            "means": h.means,
            "missing": h.missing,
            "computed": h.computed,
            "failed": h.failed,
            "exec_runs": h.exec_runs,
        })),
        "verify_writes": s.integrity.verify_writes.map(|(a, [ok, bad, unchecked, failed, changed])| json!({
            "algorithm": a.name(),
            "verified": ok,
            "mismatched": bad,
            "unchecked": unchecked,
            "failed": failed,
            "changed": changed,
        })),
        "errors": {
            "total": s.errors_by_errno.values().sum::<u64>(),
            "by_errno": by_errno,
            "recent": recent,
        },
    })
}

/// `EACCES` for 13: what users search for; the number for the rare ones.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EILSEQ => "EILSEQ",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EDQUOT => "EDQUOT",
        libc::ENOTCONN => "ENOTCONN",
        libc::ENODEV => "ENODEV",
        libc::ETXTBSY => "ETXTBSY",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}
