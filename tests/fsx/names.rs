//! Namespace changes: create, link, unlink, rename, mkdir, rmdir, symlink. Before each, the
//! parent directories' mtimes are set to an old time on both sides; afterwards the parents,
//! the names involved, every name of the inodes involved and every open descriptor are
//! compared (mtimes: unchanged on both, or changed to about now on both; link counts).

use crate::sys::{self, Time};
use crate::{Fsx, DIRS, PATHS};

/// The directory holding `rel` ("" for the root).
fn parent(rel: &str) -> String {
    rel.rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

fn shown(dir: &str) -> &str {
    if dir.is_empty() {
        "."
    } else {
        dir
    }
}

impl Fsx<'_> {
    /// Sets the mtime of each of `dirs` to an old time (in 2001) on both sides; returns a note
    /// for the history.
    fn age(&mut self, dirs: &[String]) -> String {
        if self.skips("mtime") {
            return String::new();
        }
        let mut dirs = dirs.to_vec();
        dirs.dedup();
        let t = 978_307_200 + self.rng.below(10_000_000) as i64;
        for d in &dirs {
            let what = format!("utimensat {} to {t} (before a namespace change)", shown(d));
            let (m, r) = (
                sys::utimens(&self.mp(d), Time::Sec(t), Time::Sec(t)),
                sys::utimens(&self.rp(d), Time::Sec(t), Time::Sec(t)),
            );
            self.both(&what, m, r);
        }
        let names: Vec<&str> = dirs.iter().map(|d| shown(d)).collect();
        format!(" [mtime of {} set to {t} first]", names.join(", "))
    }

    /// The reference's inode of `rel` if it is a regular file (before a change).
    fn file_ino(&self, rel: &str) -> Option<u64> {
        sys::lstat(&self.rp(rel))
            .ok()
            .filter(|s| s.is_file())
            .map(|s| s.ino)
    }

    /// After a namespace change: the parents, the names, the inodes, the descriptors.
    fn settle(&mut self, dirs: &[String], paths: &[&str], inos: &[Option<u64>]) {
        for d in dirs {
            self.check_path(d);
        }
        for p in paths {
            self.check_path(p);
        }
        for ino in inos.iter().flatten() {
            self.check_inode(*ino, false);
        }
        self.check_handles();
    }

    /// `open(O_CREAT)`, sometimes with `O_EXCL` or `O_TRUNC`; the descriptor stays open.
    pub fn create(&mut self) {
        let path = self.rng.pick(PATHS).to_string();
        let mut flags = libc::O_RDWR | libc::O_CREAT;
        if self.rng.chance(25) {
            flags |= libc::O_EXCL;
        }
        if self.rng.chance(30) && !self.skips("otrunc") {
            flags |= libc::O_TRUNC;
        }
        let mode = self.rng.pick(&[0o644, 0o600, 0o755]);
        let dirs = vec![parent(&path)];
        let aged = self.age(&dirs);
        self.log(format!("(create {path}{aged})"));
        let before = self.file_ino(&path);
        let h = self.open_handle(&path, flags, mode);
        let after = h.map(|h| self.handles[h].ino);
        self.settle(&dirs, &[&path], &[before, after]);
    }

    /// `link(2)`, mostly from an existing file.
    pub fn link(&mut self) {
        if self.skips("links") {
            return;
        }
        let from = self.pick_file();
        let to = self.rng.pick(PATHS).to_string();
        let dirs = vec![parent(&to)];
        let aged = self.age(&dirs);
        let what = format!("link {from} -> {to}");
        self.note("link", format!("{what}{aged}"));
        let ino = self.file_ino(&from);
        let (m, r) = (
            sys::link(&self.mp(&from), &self.mp(&to)),
            sys::link(&self.rp(&from), &self.rp(&to)),
        );
        self.both(&what, m, r);
        self.settle(&dirs, &[&from, &to], &[ino]);
    }

    /// `unlink(2)`; descriptors open on the file stay open (and are checked: nlink 0).
    pub fn unlink(&mut self) {
        let path = self.pick_file();
        let dirs = vec![parent(&path)];
        let aged = self.age(&dirs);
        let what = format!("unlink {path}");
        self.note("unlink", format!("{what}{aged}"));
        let ino = self.file_ino(&path);
        let (m, r) = (sys::unlink(&self.mp(&path)), sys::unlink(&self.rp(&path)));
        self.both(&what, m, r);
        if self.skips("unlinked") {
            self.handles.retain(|h| Some(h.ino) != ino);
        }
        self.settle(&dirs, &[&path], &[ino]);
    }

    /// `rename(2)`: files (over files, across directories), directories, and onto itself.
    pub fn rename(&mut self) {
        let from = match self.rng.below(20) {
            0..=2 if !self.skips("ns") => self.rng.pick(DIRS).to_string(),
            3..=5 => self.pick_path(),
            _ => self.pick_file(),
        };
        let to = if self.rng.chance(4) {
            from.clone()
        } else if self.rng.chance(10) && !self.skips("ns") {
            self.rng.pick(DIRS).to_string()
        } else {
            self.rng.pick(PATHS).to_string()
        };
        let dirs = vec![parent(&from), parent(&to)];
        let aged = self.age(&dirs);
        let what = format!("rename {from} -> {to}");
        let (a, b) = (self.file_ino(&from), self.file_ino(&to));
        self.note("rename", format!("{what}{aged}"));
        let (m, r) = (
            sys::rename(&self.mp(&from), &self.mp(&to)),
            sys::rename(&self.rp(&from), &self.rp(&to)),
        );
        self.both(&what, m, r);
        if self.skips("unlinked") {
            // A file renamed over is unlinked like one removed: out of the model too.
            self.handles
                .retain(|h| sys::fstat(&h.r).map_or(true, |s| s.nlink > 0));
        }
        self.settle(&dirs, &[&from, &to], &[a, b]);
    }

    /// `mkdir(2)` or `rmdir(2)`, mostly of the usual directories.
    pub fn mkdir_rmdir(&mut self) {
        if self.skips("ns") {
            return;
        }
        let path = if self.rng.chance(80) {
            self.rng.pick(DIRS).to_string()
        } else {
            self.pick_path()
        };
        let dirs = vec![parent(&path)];
        let aged = self.age(&dirs);
        let (what, m, r) = if self.rng.chance(50) {
            let what = format!("mkdir {path}");
            self.note("mkdir", format!("{what}{aged}"));
            let (m, r) = (
                sys::mkdir(&self.mp(&path), 0o755),
                sys::mkdir(&self.rp(&path), 0o755),
            );
            (what, m, r)
        } else {
            let what = format!("rmdir {path}");
            self.note("rmdir", format!("{what}{aged}"));
            let (m, r) = (sys::rmdir(&self.mp(&path)), sys::rmdir(&self.rp(&path)));
            (what, m, r)
        };
        self.both(&what, m, r);
        self.settle(&dirs, &[&path], &[]);
    }

    /// `symlink(2)` with a relative target (inside the tree, or dangling), then `readlink`.
    pub fn symlink(&mut self) {
        if self.skips("ns") {
            return;
        }
        let path = self.rng.pick(PATHS).to_string();
        // Relative and without `..`: wherever a rename moves the link, it points inside the
        // tree (or nowhere), never out of the mount or the reference.
        let targets = ["a", "b", "d1", "d1/a", "nowhere", "l"];
        let target = self.rng.pick(&targets).to_string();
        let dirs = vec![parent(&path)];
        let aged = self.age(&dirs);
        let what = format!("symlink {path} -> {target}");
        self.note("symlink", format!("{what}{aged}"));
        let (m, r) = (
            sys::symlink(&target, &self.mp(&path)),
            sys::symlink(&target, &self.rp(&path)),
        );
        self.both(&what, m, r);
        let what = format!("readlink {path}");
        self.same(
            &what,
            sys::readlink(&self.mp(&path)),
            sys::readlink(&self.rp(&path)),
        );
        self.settle(&dirs, &[&path], &[]);
    }
}
