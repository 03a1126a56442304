//! Open files and directory listings, by the numbers handed to the kernel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::remote::{Handle, NameEntry};

/// A file opened on the server.
#[derive(Debug)]
pub struct OpenFile {
    pub ino: u64,
    pub handle: Handle,
    pub writable: bool,
    /// The first write failure, reported by the next write, flush, fsync or close.
    error: Mutex<Option<i32>>,
}

impl OpenFile {
    pub fn new(ino: u64, handle: Handle, writable: bool) -> Self {
        OpenFile {
            ino,
            handle,
            writable,
            error: Mutex::new(None),
        }
    }

    pub fn latch(&self, errno: i32) {
        self.error.lock().unwrap().get_or_insert(errno);
    }

    /// The latched error, cleared: like a local filesystem, one close reports it once.
    pub fn take_error(&self) -> Option<i32> {
        self.error.lock().unwrap().take()
    }

    pub fn peek_error(&self) -> Option<i32> {
        *self.error.lock().unwrap()
    }
}

/// A directory's entries read whole at `opendir`, served to the kernel by offset.
#[derive(Debug)]
pub struct DirListing {
    pub ino: u64,
    pub entries: Vec<NameEntry>,
}

/// Objects by number, never reusing a number during the mount.
#[derive(Debug)]
pub struct HandleTable<T> {
    map: Mutex<HashMap<u64, Arc<T>>>,
    next: AtomicU64,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        HandleTable {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> HandleTable<T> {
    pub fn insert(&self, v: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map.lock().unwrap().insert(fh, Arc::new(v));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<T>> {
        self.map.lock().unwrap().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.map.lock().unwrap().remove(&fh)
    }

    /// The first object matching `pred`.
    pub fn find(&self, pred: impl Fn(&T) -> bool) -> Option<Arc<T>> {
        self.map.lock().unwrap().values().find(|v| pred(v)).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
