//! Errors of the remote layer and the errno each one becomes.

use std::time::Duration;

use super::protocol::*;

#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The server answered with a non-OK status.
    #[error("{}", status_text(*.code, .message))]
    Status { code: u32, message: String },
    #[error("no reply from the server within {0:?}")]
    Timeout(Duration),
    #[error("connection to the server lost")]
    ConnectionLost,
    #[error("the server broke the SFTP protocol ({0})")]
    Protocol(String),
    #[error("the server does not support {0}")]
    Unsupported(&'static str),
    /// A reply stream past one of the bounds of `bounds.rs` (a listing that never ends).
    #[error("{0}")]
    Exceeded(String),
    /// A request outlived its deadline and the probe that followed got no sign of life: the
    /// connection was declared dead (`health.rs`).
    #[error("the server stopped answering (no reply within {0:?}, nor to a probe after it)")]
    Silent(Duration),
}

fn status_text(code: u32, message: &str) -> String {
    if message.is_empty() {
        format!("SFTP status {code}")
    } else {
        format!("{message} (SFTP status {code})")
    }
}

impl RemoteError {
    /// The errno a local filesystem would give for this failure. OpenSSH folds many errors
    /// into `SSH_FX_FAILURE`; callers that can tell them apart do so per operation.
    pub fn errno(&self) -> i32 {
        match self {
            RemoteError::Status { code, .. } => match *code {
                SSH_FX_EOF => libc::EIO,
                SSH_FX_NO_SUCH_FILE => libc::ENOENT,
                SSH_FX_PERMISSION_DENIED => libc::EACCES,
                SSH_FX_FAILURE => libc::EIO,
                SSH_FX_BAD_MESSAGE => libc::EBADMSG,
                SSH_FX_NO_CONNECTION => libc::ENOTCONN,
                SSH_FX_CONNECTION_LOST => libc::ECONNABORTED,
                SSH_FX_OP_UNSUPPORTED => libc::EOPNOTSUPP,
                SSH_FX_INVALID_HANDLE => libc::EBADF,
                SSH_FX_NO_SUCH_PATH => libc::ENOENT,
                SSH_FX_FILE_ALREADY_EXISTS => libc::EEXIST,
                SSH_FX_WRITE_PROTECT => libc::EROFS,
                SSH_FX_NO_MEDIA => libc::ENOMEDIUM,
                SSH_FX_NO_SPACE_ON_FILESYSTEM => libc::ENOSPC,
                SSH_FX_QUOTA_EXCEEDED => libc::EDQUOT,
                SSH_FX_UNKNOWN_PRINCIPAL
                | SSH_FX_INVALID_FILENAME
                | SSH_FX_INVALID_PARAMETER
                | SSH_FX_OWNER_INVALID
                | SSH_FX_GROUP_INVALID => libc::EINVAL,
                SSH_FX_LOCK_CONFLICT | SSH_FX_BYTE_RANGE_LOCK_CONFLICT => libc::EAGAIN,
                SSH_FX_BYTE_RANGE_LOCK_REFUSED | SSH_FX_NO_MATCHING_BYTE_RANGE_LOCK => libc::ENOLCK,
                SSH_FX_DIR_NOT_EMPTY => libc::ENOTEMPTY,
                SSH_FX_NOT_A_DIRECTORY => libc::ENOTDIR,
                SSH_FX_LINK_LOOP => libc::ELOOP,
                SSH_FX_CANNOT_DELETE => libc::EPERM,
                SSH_FX_FILE_IS_A_DIRECTORY => libc::EISDIR,
                SSH_FX_DELETE_PENDING => libc::EBUSY,
                _ => libc::EIO,
            },
            RemoteError::Timeout(_) => libc::ETIMEDOUT,
            RemoteError::ConnectionLost => libc::EIO,
            RemoteError::Protocol(_) => libc::EIO,
            RemoteError::Unsupported(_) => libc::EOPNOTSUPP,
            RemoteError::Exceeded(_) => libc::EIO,
            RemoteError::Silent(_) => libc::EIO,
        }
    }

    pub fn is_status(&self, want: u32) -> bool {
        matches!(self, RemoteError::Status { code, .. } if *code == want)
    }

    /// OpenSSH's catch-all status, which needs per-operation disambiguation.
    pub fn is_failure(&self) -> bool {
        self.is_status(SSH_FX_FAILURE)
    }

    /// True when the connection died: the request may be repeated on a new one.
    pub fn is_dead(&self) -> bool {
        matches!(
            self,
            RemoteError::ConnectionLost | RemoteError::Protocol(_) | RemoteError::Silent(_)
        )
    }

    /// True when the connection, not the request, failed.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            RemoteError::Timeout(_)
                | RemoteError::ConnectionLost
                | RemoteError::Protocol(_)
                | RemoteError::Silent(_)
        )
    }
}

pub type Result<T> = std::result::Result<T, RemoteError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn st(code: u32) -> RemoteError {
        RemoteError::Status {
            code,
            message: String::new(),
        }
    }

    #[test]
    fn status_codes_map_to_local_errnos() {
        assert_eq!(st(SSH_FX_NO_SUCH_FILE).errno(), libc::ENOENT);
        assert_eq!(st(SSH_FX_PERMISSION_DENIED).errno(), libc::EACCES);
        assert_eq!(st(SSH_FX_OP_UNSUPPORTED).errno(), libc::EOPNOTSUPP);
        assert_eq!(st(SSH_FX_FAILURE).errno(), libc::EIO);
        assert_eq!(
            RemoteError::Timeout(Duration::from_secs(1)).errno(),
            libc::ETIMEDOUT
        );
        assert!(st(SSH_FX_FAILURE).is_failure());
        assert!(RemoteError::ConnectionLost.is_connection());
    }

    #[test]
    fn status_codes_of_later_versions_map_too() {
        // ProFTPD, Go and other servers send them, some in version 3 too.
        for (code, errno) in [
            (SSH_FX_INVALID_HANDLE, libc::EBADF),
            (SSH_FX_NO_SUCH_PATH, libc::ENOENT),
            (SSH_FX_FILE_ALREADY_EXISTS, libc::EEXIST),
            (SSH_FX_WRITE_PROTECT, libc::EROFS),
            (SSH_FX_NO_MEDIA, libc::ENOMEDIUM),
            (SSH_FX_NO_SPACE_ON_FILESYSTEM, libc::ENOSPC),
            (SSH_FX_QUOTA_EXCEEDED, libc::EDQUOT),
            (SSH_FX_UNKNOWN_PRINCIPAL, libc::EINVAL),
            (SSH_FX_LOCK_CONFLICT, libc::EAGAIN),
            (SSH_FX_DIR_NOT_EMPTY, libc::ENOTEMPTY),
            (SSH_FX_NOT_A_DIRECTORY, libc::ENOTDIR),
            (SSH_FX_INVALID_FILENAME, libc::EINVAL),
            (SSH_FX_LINK_LOOP, libc::ELOOP),
            (SSH_FX_CANNOT_DELETE, libc::EPERM),
            (SSH_FX_INVALID_PARAMETER, libc::EINVAL),
            (SSH_FX_FILE_IS_A_DIRECTORY, libc::EISDIR),
            (SSH_FX_BYTE_RANGE_LOCK_CONFLICT, libc::EAGAIN),
            (SSH_FX_BYTE_RANGE_LOCK_REFUSED, libc::ENOLCK),
            (SSH_FX_DELETE_PENDING, libc::EBUSY),
            (SSH_FX_FILE_CORRUPT, libc::EIO),
            (SSH_FX_OWNER_INVALID, libc::EINVAL),
            (SSH_FX_GROUP_INVALID, libc::EINVAL),
            (SSH_FX_NO_MATCHING_BYTE_RANGE_LOCK, libc::ENOLCK),
            (99, libc::EIO),
        ] {
            assert_eq!(st(code).errno(), errno, "status {code}");
        }
    }
}
