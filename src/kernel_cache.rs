//! The kernel's caches of a mount (its entries, attributes and pages), kept in step with the
//! server's changes by FUSE notifications: for revalidation, `sftpfs refresh` and SIGHUP.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use fuser::INodeNo;

use crate::fs::names::inode::ROOT_INO;
use crate::fs::names::revalidate::{EntryFate, StaleName};

/// `FUSE_NOTIFY_INVAL_ENTRY`.
const NOTIFY_INVAL_ENTRY: i32 = 3;
/// `FUSE_EXPIRE_ONLY` (Linux 6.2): the entry is marked out of date, not dropped.
const EXPIRE_ONLY: u32 = 1;

pub struct KernelCache {
    notifier: fuser::Notifier,
    /// The mount's /dev/fuse, for the notification fuser cannot send (an entry expired, not
    /// dropped).
    dev: Option<File>,
    /// The kernel refused it (older than 6.2): entries are dropped instead.
    no_expire: AtomicBool,
}

impl KernelCache {
    pub fn new(notifier: fuser::Notifier, dev: Option<OwnedFd>) -> KernelCache {
        KernelCache {
            notifier,
            dev: dev.map(File::from),
            no_expire: AtomicBool::new(false),
        }
    }

    /// Makes the kernel forget the attributes and pages of the files `names` name, their
    /// entries as each says, and the attributes of their directories (and of the root with
    /// `root_too`). Blocking (it writes to /dev/fuse, and the kernel may wait for a request
    /// in flight on the directory): call it off the runtime's workers. A name the kernel no
    /// longer holds is no error.
    pub fn forget(&self, names: &[StaleName], root_too: bool) {
        let mut parents = std::collections::BTreeSet::new();
        for n in names {
            let name = OsStr::from_bytes(&n.name);
            match n.entry {
                EntryFate::Keep => {}
                EntryFate::Expire if self.expire(n.parent, &n.name) => {}
                EntryFate::Expire | EntryFate::Drop => {
                    let _ = self.notifier.inval_entry(INodeNo(n.parent), name);
                }
            }
            let _ = self.notifier.inval_inode(INodeNo(n.ino), 0, 0);
            parents.insert(n.parent);
        }
        // Their directories' own attributes (size, mtime) changed too.
        for p in parents {
            let _ = self.notifier.inval_inode(INodeNo(p), 0, 0);
        }
        if root_too {
            let _ = self.notifier.inval_inode(INodeNo(ROOT_INO), 0, 0);
        }
    }

    /// Marks the entry `name` of `parent` out of date: the kernel looks it up again at its
    /// next use and keeps it if it still holds. False if the kernel cannot.
    fn expire(&self, parent: u64, name: &[u8]) -> bool {
        let Some(dev) = self
            .dev
            .as_ref()
            .filter(|_| !self.no_expire.load(Ordering::Relaxed))
        else {
            return false;
        };
        // fuse_out_header (len, error = the notification's code, unique = 0), then
        // fuse_notify_inval_entry_out (parent, namelen, flags) and the name, NUL-terminated.
        let len = 16 + 16 + name.len() + 1;
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&NOTIFY_INVAL_ENTRY.to_ne_bytes());
        m.extend_from_slice(&0u64.to_ne_bytes());
        m.extend_from_slice(&parent.to_ne_bytes());
        m.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        m.extend_from_slice(&EXPIRE_ONLY.to_ne_bytes());
        m.extend_from_slice(name);
        m.push(0);
        // One write is one message: /dev/fuse takes it whole or not at all.
        match (&*dev).write(&m) {
            Ok(_) => true,
            // Not in the kernel's cache: nothing to expire.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    tracing::debug!("the kernel cannot expire an entry; entries are dropped");
                    self.no_expire.store(true, Ordering::Relaxed);
                }
                false
            }
        }
    }
}
