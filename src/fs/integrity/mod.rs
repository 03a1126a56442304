//! End-to-end integrity: hashes the server computes of its files (`remote/hash/`), shown as
//! read-only extended attributes `user.sftpfs.<algorithm>` (`xattr.rs`); with
//! `-o verify_writes`, the bytes of a file written whole through the mount hashed as they
//! are sent and checked against the server's hash at close (`verify_writes.rs`); and the
//! daemon's side of `sftpfs verify` (`verify_tree.rs`). What is known is kept per file
//! (`digests.rs`).

mod digests;
pub mod verify_tree;
pub mod verify_writes;
mod xattr;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use digests::{Digests, Sent, Version};
pub use verify_writes::{WriteDigest, WrittenFiles};
pub use xattr::XATTR_PREFIX;

use crate::remote::hash::{Algo, HashStatus, ServerHashes};

/// What the core needs for integrity, given at mount.
#[derive(Debug, Clone, Default)]
pub struct IntegrityOptions {
    /// The means of hashing on the server; `None` in tests without a server's hashes.
    pub hashes: Option<Arc<ServerHashes>>,
    /// `verify_writes`: the algorithm files written whole are checked with (the best the
    /// server computes, chosen at mount); `None`: off.
    pub verify_writes: Option<Algo>,
}

/// Counts of `verify_writes`, for `sftpfs status`.
#[derive(Debug, Default)]
pub struct VerifyCounters {
    /// Closes whose file the server holds as it was sent.
    pub verified: AtomicU64,
    /// Closes whose file the server holds otherwise (each failed with EIO).
    pub mismatched: AtomicU64,
    /// Closes of a file written otherwise than whole and in order: nothing to compare.
    pub unchecked: AtomicU64,
    /// Closes where the server's hash could not be had.
    pub failed: AtomicU64,
    /// Closes of a file another actor changed between its writes and the check.
    pub changed: AtomicU64,
}

#[derive(Debug, Clone, Default)]
pub struct IntegrityStatus {
    pub hashes: Option<HashStatus>,
    /// With `verify_writes`: its algorithm, and verified, mismatched, unchecked, failed,
    /// changed.
    pub verify_writes: Option<(Algo, [u64; 5])>,
}

pub struct Integrity {
    pub opts: IntegrityOptions,
    pub digests: Digests,
    pub counters: VerifyCounters,
    /// `verify_writes`: the files open for writing, with what was sent of them.
    pub written: WrittenFiles,
}

impl Integrity {
    pub fn new(opts: IntegrityOptions) -> Integrity {
        Integrity {
            opts,
            digests: Digests::default(),
            counters: VerifyCounters::default(),
            written: WrittenFiles::default(),
        }
    }

    pub fn status(&self) -> IntegrityStatus {
        let c = &self.counters;
        IntegrityStatus {
            hashes: self.opts.hashes.as_ref().map(|h| h.status()),
            verify_writes: self.opts.verify_writes.map(|a| {
                (
                    a,
                    [
                        c.verified.load(Ordering::Relaxed),
                        c.mismatched.load(Ordering::Relaxed),
                        c.unchecked.load(Ordering::Relaxed),
                        c.failed.load(Ordering::Relaxed),
                        c.changed.load(Ordering::Relaxed),
                    ],
                )
            }),
        }
    }
}
