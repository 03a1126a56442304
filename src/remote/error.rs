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
                _ => libc::EIO,
            },
            RemoteError::Timeout(_) => libc::ETIMEDOUT,
            RemoteError::ConnectionLost => libc::EIO,
            RemoteError::Protocol(_) => libc::EIO,
            RemoteError::Unsupported(_) => libc::EOPNOTSUPP,
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
        matches!(self, RemoteError::ConnectionLost | RemoteError::Protocol(_))
    }

    /// True when the connection, not the request, failed.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            RemoteError::Timeout(_) | RemoteError::ConnectionLost | RemoteError::Protocol(_)
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
}
