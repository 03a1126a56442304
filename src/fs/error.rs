//! The core's error: an errno for the kernel plus, for the log, what went wrong.

use crate::remote::RemoteError;

#[derive(Debug, Clone)]
pub struct FsError {
    pub errno: i32,
    pub remote: Option<RemoteError>,
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    pub fn new(errno: i32) -> Self {
        FsError {
            errno,
            remote: None,
        }
    }

    /// Expected outcomes (a missing file, an existing name) are not worth more than debug;
    /// failures of the server or the connection are, except what the core says itself, now
    /// and then (a listing refused past its bound, which a server can make happen at will).
    pub fn is_noteworthy(&self) -> bool {
        if matches!(self.remote, Some(RemoteError::Exceeded(_))) {
            return false;
        }
        !matches!(
            self.errno,
            libc::ENOENT
                | libc::EEXIST
                | libc::ENOTEMPTY
                | libc::ENOTDIR
                | libc::EISDIR
                | libc::EACCES
                | libc::EPERM
                | libc::EROFS
                | libc::EINVAL
                | libc::ENOSYS
                | libc::EOPNOTSUPP
                | libc::ENODATA
                | libc::ENAMETOOLONG
                | libc::EFBIG
        )
    }
}

impl From<RemoteError> for FsError {
    fn from(e: RemoteError) -> Self {
        FsError {
            errno: e.errno(),
            remote: Some(e),
        }
    }
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.errno);
        match &self.remote {
            Some(r) => write!(f, "{text}: {r}"),
            None => write!(f, "{text}"),
        }
    }
}
