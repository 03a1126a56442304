//! Comparisons: answers of the mount against the reference's, data against the model, the
//! reference's tree (which names exist, which inode each file is), and the final check.

use std::fmt::Debug;
use std::path::Path;

use crate::sys::{self, show, St, R};
use crate::{now, Fsx};

/// Times before this (2021-01-01) are "old": set explicitly by the test, compared exactly.
pub const OLD: i64 = 1_609_459_200;

impl Fsx<'_> {
    /// The two answers of one call (`m` through the mount, `r` on the reference) must agree:
    /// both succeed (the values are returned for the caller to compare), or both fail with the
    /// same errno.
    pub fn both<T: Debug>(&self, what: &str, m: R<T>, r: R<T>) -> Option<(T, T)> {
        match (m, r) {
            (Ok(a), Ok(b)) => Some((a, b)),
            (Err(a), Err(b)) if a == b => None,
            (m, r) => self.fail(format!(
                "{what}: the mount answered {}, the reference {}",
                show(&m),
                show(&r)
            )),
        }
    }

    /// Like [`Fsx::both`], for calls whose values must be equal too.
    pub fn same<T: Debug + PartialEq>(&self, what: &str, m: R<T>, r: R<T>) -> Option<T> {
        let (a, b) = self.both(what, m, r)?;
        if a != b {
            self.fail(format!(
                "{what}: the mount answered {}, the reference {}",
                show::<T>(&Ok(a)),
                show::<T>(&Ok(b))
            ));
        }
        Some(b)
    }

    /// Stat answers of the mount (`m`) and the reference (`r`) agree on the fields that mean
    /// the same on both. Not compared: inode and device numbers, blocks, atime, ctime, the
    /// size of directories (ext4's grows with history) and the link count of directories
    /// (SFTP has no link count; the mount reports 1).
    pub fn compare_st(&self, what: &str, m: &St, r: &St) {
        let mut diffs = Vec::new();
        if m.kind != r.kind {
            diffs.push(format!("type {} vs {}", m.kind_name(), r.kind_name()));
        }
        if m.perm != r.perm {
            diffs.push(format!("mode {:o} vs {:o}", m.perm, r.perm));
        }
        if (m.uid, m.gid) != (r.uid, r.gid) {
            diffs.push(format!("owner {}:{} vs {}:{}", m.uid, m.gid, r.uid, r.gid));
        }
        if !r.is_dir() && m.size != r.size {
            diffs.push(format!("size {} vs {}", m.size, r.size));
        }
        let unlinked = r.nlink == 0 && self.skips("unlinked");
        if !r.is_dir() && !self.skips("nlink") && !unlinked && m.nlink != r.nlink {
            diffs.push(format!("nlink {} vs {}", m.nlink, r.nlink));
        }
        if !self.skips("mtime") {
            if let Some(d) = self.mtime_differs(m.mtime, r.mtime) {
                diffs.push(d);
            }
        }
        if !diffs.is_empty() {
            self.fail(format!(
                "{what}: the mount and the reference differ (mount vs reference): {}",
                diffs.join(", ")
            ));
        }
    }

    /// An old mtime (set by the test) must be the same on both; a new one (set by the
    /// filesystem) must be new on both: on the mount no earlier than the reference's minus the
    /// length of this operation (the mount's call came first) and not in the future. Whole
    /// seconds: SFTP has no more.
    fn mtime_differs(&self, m: i64, r: i64) -> Option<String> {
        let n = now();
        let ok = if r < OLD {
            m == r
        } else {
            m >= r.min(self.t0) - 2 - (n - self.t0) && m <= n + 2
        };
        (!ok).then(|| {
            format!(
                "mtime {} vs {} (now {n}; this operation began at {})",
                show_time(m),
                show_time(r),
                self.t0
            )
        })
    }

    /// `lstat` of `rel` on both, compared.
    pub fn check_path(&self, rel: &str) -> Option<St> {
        let what = format!("lstat {}", if rel.is_empty() { "." } else { rel });
        let (m, r) = self.both(&what, sys::lstat(&self.mp(rel)), sys::lstat(&self.rp(rel)))?;
        self.compare_st(&what, &m, &r);
        Some(r)
    }

    /// `fstat` of every open descriptor on both, compared (open unlinked files included).
    pub fn check_handles(&self) {
        for h in &self.handles {
            let what = format!("fstat {}", h.label());
            if let Some((m, r)) = self.both(&what, sys::fstat(&h.m), sys::fstat(&h.r)) {
                if r.nlink == 0 && self.skips("unlinked") {
                    continue;
                }
                self.compare_st(&what, &m, &r);
            }
        }
    }

    /// Data read through the mount (`m`), from the reference (`r`) and the model's bytes
    /// (`want`) are the same.
    pub fn compare_data(&self, what: &str, off: u64, m: &[u8], r: &[u8], want: &[u8]) {
        self.compare_bytes(&format!("{what} (reference vs model)"), off, r, want);
        self.compare_bytes(&format!("{what} (mount vs reference)"), off, m, r);
    }

    pub fn compare_bytes(&self, what: &str, off: u64, got: &[u8], want: &[u8]) {
        if got.len() != want.len() {
            self.fail(format!(
                "{what} at {off}: {} bytes, expected {}",
                got.len(),
                want.len()
            ));
        }
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            self.fail(format!(
                "{what} at {off}: byte {} is {:#04x}, expected {:#04x} ({} bytes read)",
                off + i as u64,
                got[i],
                want[i],
                got.len()
            ));
        }
    }

    /// Every name in the reference (relative paths, sorted) with its `lstat`.
    pub fn tree(&self) -> Vec<(String, St)> {
        let mut out = Vec::new();
        walk(&self.reference, "", &mut out);
        out
    }

    /// The names of the reference's inode `ino` (sorted).
    pub fn names_of(&self, ino: u64) -> Vec<String> {
        self.tree()
            .into_iter()
            .filter(|(_, s)| s.is_file() && s.ino == ino)
            .map(|(n, _)| n)
            .collect()
    }

    /// The model forgets files with neither a name nor an open descriptor.
    pub fn gc(&mut self) {
        let mut live: Vec<u64> = self
            .tree()
            .into_iter()
            .filter(|(_, s)| s.is_file())
            .map(|(_, s)| s.ino)
            .collect();
        live.extend(self.handles.iter().map(|h| h.ino));
        self.content.retain(|ino, _| live.contains(ino));
    }

    /// All names of inode `ino` agree on both sides (stat of each, and with `read` their
    /// contents), and so do the descriptors open on it.
    pub fn check_inode(&mut self, ino: u64, read: bool) {
        for name in self.names_of(ino) {
            self.check_path(&name);
            if read {
                let what = format!("read {name} whole (a name of the changed inode)");
                let (m, r) = (
                    sys::read_path(&self.mp(&name)),
                    sys::read_path(&self.rp(&name)),
                );
                if let Some((m, r)) = self.both(&what, m, r) {
                    self.compare_data(&what, 0, &m, &r, &self.content[&ino]);
                }
            }
        }
        for h in self.handles.iter().filter(|h| h.ino == ino) {
            let what = format!("fstat {}", h.label());
            if let Some((m, r)) = self.both(&what, sys::fstat(&h.m), sys::fstat(&h.r)) {
                if r.nlink > 0 || !self.skips("unlinked") {
                    self.compare_st(&what, &m, &r);
                }
            }
        }
    }

    /// Closes everything (fsync first), then compares the server's tree and the mount's with
    /// the reference: names, types, modes, owners, link counts, sizes, contents, link targets.
    pub fn finish(&mut self) {
        for h in std::mem::take(&mut self.handles) {
            let what = format!("final fsync {}", h.label());
            self.both(&what, sys::fsync(&h.m), sys::fsync(&h.r));
        }
        self.gc();
        // With async_writes, what is still queued (a chmod after the last fsync) lands first,
        // and whatever of it failed is named; on other mounts there is nothing to wait for.
        let sync = crate::support::sftpfs_sync(&self.m.path(""));
        if !sync.status.success() {
            self.fail(format!(
                "final sftpfs sync: {}",
                String::from_utf8_lossy(&sync.stderr)
            ));
        }
        let want = self.tree();
        let mut server = Vec::new();
        walk(&self.m.remote(""), "", &mut server);
        let names = |t: &[(String, St)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        if names(&server) != names(&want) {
            self.fail(format!(
                "the server has {:?}, the reference {:?}",
                names(&server),
                names(&want)
            ));
        }
        for ((name, s), (_, r)) in server.iter().zip(&want) {
            // The server's files are on a local disk too: even directories' link counts match.
            if (s.kind, s.perm, s.uid, s.gid, s.nlink) != (r.kind, r.perm, r.uid, r.gid, r.nlink)
                || (!r.is_dir() && s.size != r.size)
            {
                self.fail(format!(
                    "final: the server's {name} is {s:?}, the reference's {r:?}"
                ));
            }
            self.final_contents(name, r, &self.m.remote(name), "server");
        }
        for (name, r) in &want {
            if r.is_dir() {
                let what = format!("final readdir {name} through the mount");
                self.same(
                    &what,
                    sys::readdir(&self.mp(name)),
                    sys::readdir(&self.rp(name)),
                );
            }
            self.check_path(name);
            self.final_contents(name, r, &self.mp(name), "mount");
        }
        let what = "final readdir of the root through the mount";
        self.same(what, sys::readdir(&self.mp("")), sys::readdir(&self.rp("")));
    }

    fn final_contents(&self, name: &str, r: &St, other: &Path, side: &str) {
        if r.is_file() {
            let got = sys::read_path(other)
                .unwrap_or_else(|e| self.fail(format!("final read of the {side}'s {name}: {e}")));
            let want = sys::read_path(&self.rp(name)).unwrap_or_else(|e| {
                self.fail(format!("final read of the reference's {name}: {e}"))
            });
            let what = format!("final: the {side}'s {name}");
            self.compare_data(&what, 0, &got, &want, &self.content[&r.ino]);
        } else if !r.is_dir() {
            let what = format!("final readlink of the {side}'s {name}");
            self.same(&what, sys::readlink(other), sys::readlink(&self.rp(name)));
        }
    }
}

fn walk(root: &Path, rel: &str, out: &mut Vec<(String, St)>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for name in sys::readdir(&dir).unwrap_or_default() {
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if let Ok(s) = sys::lstat(&root.join(&r)) {
            out.push((r.clone(), s));
            if s.is_dir() {
                walk(root, &r, out);
            }
        }
    }
}

fn show_time(t: i64) -> String {
    if t < OLD {
        format!("{t} (old)")
    } else {
        t.to_string()
    }
}
