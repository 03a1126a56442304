//! Attributes: `chmod`, `chown`, `utimensat`, and the plain checks `stat`, `fstat`, `readdir`.

use crate::sys::{self, Time};
use crate::Fsx;

impl Fsx<'_> {
    /// After an attribute change through `path`: it and every name of its inode agree.
    fn after_attr(&mut self, path: &str) {
        self.check_path(path);
        if let Ok(s) = sys::stat(&self.rp(path)) {
            if s.is_file() {
                self.check_inode(s.ino, false);
            }
        }
    }

    pub fn chmod(&mut self) {
        if self.skips("meta") {
            return;
        }
        let path = self.pick_file();
        let mode = self.rng.pick(&[
            0o644, 0o600, 0o755, 0o640, 0o444, 0o000, 0o4755, 0o2755, 0o1777,
        ]);
        let what = format!("chmod {path} {mode:o}");
        self.note("chmod", what.clone());
        let (m, r) = (
            sys::chmod(&self.mp(&path), mode),
            sys::chmod(&self.rp(&path), mode),
        );
        self.both(&what, m, r);
        self.after_attr(&path);
    }

    pub fn chown(&mut self) {
        if self.skips("meta") || self.skips("chown") {
            return;
        }
        let path = self.pick_file();
        let (uid, gid) = self.rng.pick(&[
            (1234, 1234),
            (0, 0),
            (1234, u32::MAX),
            (u32::MAX, 4321),
            (0, u32::MAX),
        ]);
        let follow = self.rng.chance(80);
        let call = if follow { "chown" } else { "lchown" };
        let id = |v: u32| {
            if v == u32::MAX {
                "-1".to_string()
            } else {
                v.to_string()
            }
        };
        let what = format!("{call} {path} {}:{}", id(uid), id(gid));
        self.note("chown", what.clone());
        let (m, r) = (
            sys::chown(&self.mp(&path), uid, gid, follow),
            sys::chown(&self.rp(&path), uid, gid, follow),
        );
        self.both(&what, m, r);
        self.after_attr(&path);
    }

    /// `utimensat` with explicit whole seconds, `UTIME_NOW` or `UTIME_OMIT`.
    pub fn utimens(&mut self) {
        if self.skips("meta") {
            return;
        }
        let path = self.pick_file();
        let time = |rng: &mut crate::rng::Rng| match rng.below(10) {
            0 => Time::Now,
            1 => Time::Omit,
            _ => Time::Sec(946_684_800 + rng.below(600_000_000) as i64),
        };
        let (a, m) = (time(&mut self.rng), time(&mut self.rng));
        let what = format!("utimensat {path} atime {a:?} mtime {m:?}");
        self.note("utimens", what.clone());
        let (mr, rr) = (
            sys::utimens(&self.mp(&path), a, m),
            sys::utimens(&self.rp(&path), a, m),
        );
        self.both(&what, mr, rr);
        self.after_attr(&path);
    }

    /// `lstat` or `stat` of a name, `fstat` of every descriptor, or `readdir` of a directory.
    pub fn stat(&mut self) {
        match self.rng.below(4) {
            0 => {
                let path = self.pick_file();
                self.note("stat", format!("lstat {path}"));
                self.check_path(&path);
            }
            1 => {
                let path = self.pick_file();
                let what = format!("stat {path}");
                self.note("stat", what.clone());
                let (m, r) = (sys::stat(&self.mp(&path)), sys::stat(&self.rp(&path)));
                if let Some((m, r)) = self.both(&what, m, r) {
                    self.compare_st(&what, &m, &r);
                }
            }
            2 => {
                self.note("stat", "fstat every descriptor".to_string());
                self.check_handles();
            }
            _ => {
                let dir = self
                    .rng
                    .pick(&["", "", "d1", "d2", "d1/x", "a"])
                    .to_string();
                let what = format!("readdir {dir:?}");
                self.note("readdir", what.clone());
                self.same(
                    &what,
                    sys::readdir(&self.mp(&dir)),
                    sys::readdir(&self.rp(&dir)),
                );
            }
        }
    }
}
