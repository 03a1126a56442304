//! The errors the mount answered since it started, for `sftpfs status`: a count per errno
//! and the last few with their time, call and path.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

/// How many recent errors are kept.
const RECENT: usize = 10;

#[derive(Debug, Clone)]
pub struct SeenError {
    pub at: SystemTime,
    pub op: &'static str,
    /// Below the mount point; empty for the mount's root or an inode no longer known.
    pub path: Vec<u8>,
    pub errno: i32,
}

#[derive(Default)]
pub struct ErrorsSeen {
    inner: Mutex<(BTreeMap<i32, u64>, VecDeque<SeenError>)>,
}

impl ErrorsSeen {
    /// Whether an answer is an error a user would want counted: a lookup of a name that is
    /// not there, an attribute the file does not have, or an `access()` check that answers
    /// no (`test -x` on a file without the bit; `test -w` on a read-only mount) is the
    /// everyday answer.
    pub fn worth_noting(op: &str, errno: i32) -> bool {
        !matches!(
            (op, errno),
            ("lookup", libc::ENOENT)
                | ("access", libc::EACCES | libc::EROFS)
                | (
                    "getxattr" | "listxattr" | "removexattr" | "setxattr",
                    libc::ENODATA | libc::ENOTSUP
                )
        )
    }

    pub fn note(&self, e: SeenError) {
        let mut g = self.inner.lock().unwrap();
        *g.0.entry(e.errno).or_default() += 1;
        if g.1.len() == RECENT {
            g.1.pop_front();
        }
        g.1.push_back(e);
    }

    /// Count per errno, and the recent ones, oldest first.
    pub fn snapshot(&self) -> (BTreeMap<i32, u64>, Vec<SeenError>) {
        let g = self.inner.lock().unwrap();
        (g.0.clone(), g.1.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_error_and_keeps_the_last_few() {
        let seen = ErrorsSeen::default();
        for i in 0..15 {
            seen.note(SeenError {
                at: SystemTime::now(),
                op: "open",
                path: format!("f{i}").into_bytes(),
                errno: if i % 3 == 0 { libc::EACCES } else { libc::EIO },
            });
        }
        let (counts, recent) = seen.snapshot();
        assert_eq!(counts[&libc::EACCES], 5);
        assert_eq!(counts[&libc::EIO], 10);
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent.last().unwrap().path, b"f14");
        assert!(!ErrorsSeen::worth_noting("lookup", libc::ENOENT));
        assert!(ErrorsSeen::worth_noting("open", libc::ENOENT));
        assert!(!ErrorsSeen::worth_noting("access", libc::EACCES));
        assert!(ErrorsSeen::worth_noting("open", libc::EACCES));
    }
}
