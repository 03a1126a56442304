//! Operations on file contents: open descriptors, writes (also `O_APPEND`), reads, truncates,
//! fsync, close, `copy_file_range` and `mmap`.

use std::fs;

use crate::support::random_bytes;
use crate::sys::{self, Map};
use crate::{Fsx, Handle, DIRS, MAX_OPEN, MAX_SIZE, PATHS};

impl Fsx<'_> {
    /// The reference's regular files (sorted).
    pub fn files(&self) -> Vec<String> {
        self.tree()
            .into_iter()
            .filter(|(_, s)| s.is_file())
            .map(|(n, _)| n)
            .collect()
    }

    /// Any name, mostly from [`PATHS`], sometimes a directory's.
    pub fn pick_path(&mut self) -> String {
        if self.rng.chance(12) {
            self.rng.pick(DIRS).to_string()
        } else {
            self.rng.pick(PATHS).to_string()
        }
    }

    /// Mostly an existing file; sometimes any name (to compare the errors too).
    pub fn pick_file(&mut self) -> String {
        let files = self.files();
        if files.is_empty() || self.rng.chance(10) {
            self.pick_path()
        } else {
            self.rng.pick(&files)
        }
    }

    /// Opens `path` on both sides with `flags`; on success the descriptors are kept (closing
    /// the oldest beyond [`MAX_OPEN`]) and their index returned.
    pub fn open_handle(&mut self, path: &str, flags: i32, mode: u32) -> Option<usize> {
        if self.handles.len() >= MAX_OPEN {
            let h = self.handles.remove(0);
            self.log(format!("close {} (too many open)", h.label()));
            drop(h);
            // Its file may have had no name left: the model forgets it now, or a file this
            // open creates could get its inode number and be taken for it.
            self.gc();
        }
        let id = self.next_handle;
        self.next_handle += 1;
        let what = format!("h{id} = open({path}, {}, {mode:o})", flag_names(flags));
        self.note("open", what.clone());
        let (m, r) = self.both(
            &what,
            sys::open(&self.mp(path), flags, mode),
            sys::open(&self.rp(path), flags, mode),
        )?;
        let st = sys::fstat(&r).unwrap();
        if !st.is_file() {
            // O_RDONLY of a directory: not kept.
            return None;
        }
        let c = self.content.entry(st.ino).or_default();
        if flags & libc::O_TRUNC != 0 {
            c.clear();
        }
        let have = c.len() as u64;
        if have != st.size {
            self.fail(format!(
                "{what}: the model has {have} bytes, the reference {}",
                st.size
            ));
        }
        self.handles.push(Handle {
            m,
            r,
            ino: st.ino,
            append: flags & libc::O_APPEND != 0,
            name: path.to_string(),
            id,
        });
        Some(self.handles.len() - 1)
    }

    /// An open descriptor: an existing one, or a new one on an existing file.
    pub fn pick_handle(&mut self) -> Option<usize> {
        let n = self.handles.len();
        if n == 0 || (n < MAX_OPEN && self.rng.chance(15)) {
            let append = !self.skips("append") && self.rng.chance(15);
            let mut flags = libc::O_RDWR | if append { libc::O_APPEND } else { 0 };
            let path = if self.files().is_empty() {
                // Nothing to open: a new file in the root (which always exists).
                flags |= libc::O_CREAT;
                self.rng.pick(&["a", "b", "c"]).to_string()
            } else {
                self.pick_file()
            };
            self.open_handle(&path, flags, 0o644)
        } else {
            Some(self.rng.below(n as u64) as usize)
        }
    }

    /// Writes `data` at `off` into the model's inode `ino` (zero-filling a gap).
    fn model_write(&mut self, ino: u64, off: u64, data: &[u8]) {
        let c = self.content.get_mut(&ino).unwrap();
        let end = off as usize + data.len();
        if c.len() < end {
            c.resize(end, 0);
        }
        c[off as usize..end].copy_from_slice(data);
    }

    fn size(&self, h: usize) -> u64 {
        self.content[&self.handles[h].ino].len() as u64
    }

    fn write_len(&mut self, off: u64) -> u64 {
        // Mostly small; sometimes more than one SFTP write (255 KiB).
        let max_len = if self.rng.chance(10) {
            400 << 10
        } else {
            64 << 10
        };
        1 + self.rng.below(max_len).min(MAX_SIZE - off - 1)
    }

    pub fn write(&mut self) {
        let Some(h) = self.pick_handle() else { return };
        if self.handles[h].append {
            return self.append_on(h);
        }
        let size = self.size(h);
        let off = if self.rng.chance(30) {
            size // append
        } else {
            self.rng.below((size + (64 << 10)).min(MAX_SIZE))
        }
        .min(MAX_SIZE - 1);
        let len = self.write_len(off);
        let data = random_bytes(len as usize, self.rng.next());
        let what = format!(
            "pwrite {} [{off}, {}) ({len} bytes)",
            self.handles[h].label(),
            off + len
        );
        self.note("write", what.clone());
        let hd = &self.handles[h];
        let (m, r) = (
            sys::pwrite(&hd.m, &data, off),
            sys::pwrite(&hd.r, &data, off),
        );
        if let Some(n) = self.same(&what, m, r) {
            let ino = self.handles[h].ino;
            self.model_write(ino, off, &data[..n]);
        }
    }

    /// A `write(2)` through a descriptor opened with `O_APPEND`.
    pub fn append(&mut self) {
        if self.skips("append") {
            return;
        }
        let h = match self.handles.iter().position(|h| h.append) {
            Some(h) if self.rng.chance(70) => Some(h),
            _ => {
                let path = self.pick_file();
                self.open_handle(&path, libc::O_RDWR | libc::O_APPEND, 0)
            }
        };
        if let Some(h) = h {
            self.append_on(h);
        }
    }

    fn append_on(&mut self, h: usize) {
        let size = self.size(h);
        if size >= MAX_SIZE - 1 {
            let what = format!("ftruncate {} to 0 (full)", self.handles[h].label());
            self.note("truncate", what.clone());
            let hd = &self.handles[h];
            let (m, r) = (sys::ftruncate(&hd.m, 0), sys::ftruncate(&hd.r, 0));
            self.both(&what, m, r);
            let ino = self.handles[h].ino;
            self.content.get_mut(&ino).unwrap().clear();
            return;
        }
        let len = self.write_len(size);
        let data = random_bytes(len as usize, self.rng.next());
        let label = self.handles[h].label();
        let what = format!("write {label} (O_APPEND, at {size}) {len} bytes");
        self.note("append", what.clone());
        let hd = &self.handles[h];
        let (m, r) = (sys::write(&hd.m, &data), sys::write(&hd.r, &data));
        if let Some(n) = self.same(&what, m, r) {
            let ino = self.handles[h].ino;
            self.model_write(ino, size, &data[..n]);
            let hd = &self.handles[h];
            let what = format!("lseek({label}, 0, SEEK_CUR) after an O_APPEND write");
            self.same(&what, sys::tell(&hd.m), sys::tell(&hd.r));
        }
    }

    pub fn read(&mut self) {
        let Some(h) = self.pick_handle() else { return };
        let size = self.size(h);
        let off = self.rng.below(size + 4096);
        let max_len = if self.rng.chance(20) {
            512 << 10
        } else {
            32 << 10
        };
        let len = 1 + self.rng.below(max_len);
        let what = format!("pread {} [{off}, {})", self.handles[h].label(), off + len);
        self.note("read", what.clone());
        let hd = &self.handles[h];
        let m = sys::read_full(&hd.m, len as usize, off);
        let r = sys::read_full(&hd.r, len as usize, off);
        if let Some((m, r)) = self.both(&what, m, r) {
            let c = &self.content[&hd.ino];
            let want = if off >= size {
                &[][..]
            } else {
                &c[off as usize..(off + len).min(size) as usize]
            };
            self.compare_data(&what, off, &m, &r, want);
        }
    }

    pub fn truncate(&mut self) {
        let huge = !self.skips("huge") && self.rng.chance(3);
        let by_fd = self.rng.chance(50);
        let (path, h) = if by_fd {
            let Some(h) = self.pick_handle() else { return };
            (None, Some(h))
        } else {
            (Some(self.pick_file()), None)
        };
        let size = match (h, &path) {
            (Some(h), _) => self.size(h),
            (None, Some(p)) => sys::stat(&self.rp(p)).map(|s| s.size).unwrap_or(0),
            _ => unreachable!(),
        };
        let to = if huge {
            999_999_999_999_999
        } else {
            match self.rng.below(4) {
                0 => 0,
                1 => self.rng.below(size + 1),
                _ => self.rng.below(MAX_SIZE),
            }
        };
        let (what, m, r) = match (h, &path) {
            (Some(h), _) => {
                let what = format!("ftruncate {} to {to}", self.handles[h].label());
                self.note("truncate", what.clone());
                let hd = &self.handles[h];
                (what, sys::ftruncate(&hd.m, to), sys::ftruncate(&hd.r, to))
            }
            (None, Some(p)) => {
                let what = format!("truncate {p} to {to}");
                self.note("truncate", what.clone());
                let (mp, rp) = (self.mp(p), self.rp(p));
                (what, sys::truncate(&mp, to), sys::truncate(&rp, to))
            }
            _ => unreachable!(),
        };
        if self.both(&what, m, r).is_none() {
            return;
        }
        if to > MAX_SIZE {
            self.fail(format!(
                "{what}: succeeded on both (a test for a smaller limit)"
            ));
        }
        let ino = match (h, &path) {
            (Some(h), _) => self.handles[h].ino,
            (None, Some(p)) => sys::stat(&self.rp(p)).unwrap().ino,
            _ => unreachable!(),
        };
        self.content.get_mut(&ino).unwrap().resize(to as usize, 0);
        let read = self.rng.chance(20);
        self.check_inode(ino, read);
    }

    pub fn fsync(&mut self) {
        let Some(h) = self.pick_handle() else { return };
        let what = format!("fsync {}", self.handles[h].label());
        self.note("fsync", what.clone());
        let hd = &self.handles[h];
        self.both(&what, sys::fsync(&hd.m), sys::fsync(&hd.r));
        // After fsync the server holds exactly the model's bytes (under any name).
        let ino = self.handles[h].ino;
        if let Some(name) = self.names_of(ino).first() {
            let got = fs::read(self.m.remote(name))
                .unwrap_or_else(|e| self.fail(format!("server read of {name}: {e}")));
            let what = format!("the server's {name} after {what}");
            self.compare_bytes(&what, 0, &got, &self.content[&ino]);
        }
    }

    pub fn close(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        let h = self.rng.below(self.handles.len() as u64) as usize;
        let h = self.handles.remove(h);
        self.note("close", format!("close {}", h.label()));
    }

    /// A whole read through new descriptors.
    pub fn read_fresh(&mut self) {
        let path = self.pick_file();
        let what = format!("read {path} whole through a new descriptor");
        self.note("read_fresh", what.clone());
        let (m, r) = (
            sys::read_path(&self.mp(&path)),
            sys::read_path(&self.rp(&path)),
        );
        if let Some((m, r)) = self.both(&what, m, r) {
            let ino = sys::stat(&self.rp(&path)).unwrap().ino;
            self.compare_data(&what, 0, &m, &r, &self.content[&ino]);
        }
    }

    /// `copy_file_range` between two descriptors: the same one, two on one inode (through
    /// two names when it has more than one), or two files; ranges past EOF and overlapping
    /// ones too.
    pub fn copy_range(&mut self) {
        if self.skips("cfr") {
            return;
        }
        let Some(hin) = self.pick_handle() else {
            return;
        };
        let ino = self.handles[hin].ino;
        let hout = match self.rng.below(10) {
            0..=2 => Some(hin),
            3..=4 => {
                // Another descriptor on the same inode, by another name if it has one.
                let names = self.names_of(ino);
                let other = names
                    .iter()
                    .find(|n| **n != self.handles[hin].name)
                    .or(names.first())
                    .cloned();
                match other {
                    Some(n) => self.open_handle(&n, libc::O_RDWR, 0),
                    None => Some(hin),
                }
            }
            _ => self.pick_handle(),
        };
        let Some(hout) = hout else { return };
        // open_handle may have closed the oldest descriptor: find the input again.
        let Some(hin) = self.handles.iter().position(|h| h.ino == ino) else {
            return;
        };
        let (size_in, size_out) = (self.size(hin), self.size(hout));
        let off_in = self.rng.below(size_in + 8192);
        let mut len = 1 + if self.rng.chance(15) {
            self.rng.below(300 << 10)
        } else {
            self.rng.below(64 << 10)
        };
        let same = self.handles[hout].ino == ino;
        let off_out = if same && self.rng.chance(50) {
            // Near the source: often overlapping.
            (off_in + self.rng.below(2 * len)).saturating_sub(len)
        } else {
            self.rng.below(size_out + 8192)
        }
        .min(MAX_SIZE - 1);
        len = len.min(MAX_SIZE - off_out);
        let what = format!(
            "copy_file_range({} at {off_in} -> {} at {off_out}, {len} bytes){}",
            self.handles[hin].label(),
            self.handles[hout].label(),
            if same { " (same inode)" } else { "" }
        );
        if same && self.skips("cfr_same") {
            return;
        }
        self.note("copy_file_range", what.clone());
        let (i, o) = (&self.handles[hin], &self.handles[hout]);
        let m = sys::copy_file_range(&i.m, off_in, &o.m, off_out, len as usize);
        let r = sys::copy_file_range(&i.r, off_in, &o.r, off_out, len as usize);
        let Some(n) = self.same(&what, m, r) else {
            return;
        };
        if n > 0 {
            let src = self.content[&ino][off_in as usize..off_in as usize + n].to_vec();
            let out = self.handles[hout].ino;
            self.model_write(out, off_out, &src);
        }
        let out = self.handles[hout].ino;
        let read = self.rng.chance(30);
        self.check_inode(out, read);
    }

    /// Writes through a shared mapping (msync, then read with read(2) and through a new
    /// descriptor), or reads through a mapping after a write(2).
    pub fn mmap(&mut self) {
        if self.skips("mmap") {
            return;
        }
        let Some(h) = self.pick_handle() else { return };
        let size = self.size(h);
        if size == 0 {
            return;
        }
        // The mapping stays inside the file on both sides (SIGBUS otherwise).
        let label = self.handles[h].label();
        let what = format!("fstat {label} before mmap");
        let hd = &self.handles[h];
        let Some((ms, rs)) = self.both(&what, sys::fstat(&hd.m), sys::fstat(&hd.r)) else {
            return;
        };
        self.compare_st(&what, &ms, &rs);
        let ps = sys::page_size();
        let off = ps * self.rng.below((size - 1) / ps + 1);
        let len = 1 + self.rng.below((size - off).min(256 << 10));
        let write = self.rng.chance(50);
        let (a, b) = {
            let a = self.rng.below(len);
            (a, a + 1 + self.rng.below(len - a))
        };
        let data = random_bytes((b - a) as usize, self.rng.next());
        let ino = self.handles[h].ino;
        if write && self.handles[h].append && self.skips("mmap_append") {
            return;
        }
        if write {
            let what = format!(
                "mmap {label} [{off}, {}) shared rw, write [{}, {}), msync",
                off + len,
                off + a,
                off + b
            );
            self.note("mmap_write", what.clone());
            let hd = &self.handles[h];
            let m = Map::new(&hd.m, off, len as usize, true);
            let r = Map::new(&hd.r, off, len as usize, true);
            let Some((mut m, mut r)) = self.both(&what, m, r) else {
                return;
            };
            m.bytes_mut()[a as usize..b as usize].copy_from_slice(&data);
            r.bytes_mut()[a as usize..b as usize].copy_from_slice(&data);
            self.both(&format!("msync after {what}"), m.msync(), r.msync());
            drop((m, r));
            self.model_write(ino, off + a, &data);
            let what = format!("pread {label} [{off}, {}) after {what}", off + len);
            let hd = &self.handles[h];
            let (m, r) = (
                sys::read_full(&hd.m, len as usize, off),
                sys::read_full(&hd.r, len as usize, off),
            );
            if let Some((m, r)) = self.both(&what, m, r) {
                let want = &self.content[&ino][off as usize..(off + len) as usize];
                self.compare_data(&what, off, &m, &r, want);
            }
            self.check_inode(ino, true);
        } else {
            if !self.handles[h].append {
                let what = format!("pwrite {label} [{}, {}) before mmap", off + a, off + b);
                self.note("write", what.clone());
                let hd = &self.handles[h];
                let (m, r) = (
                    sys::pwrite(&hd.m, &data, off + a),
                    sys::pwrite(&hd.r, &data, off + a),
                );
                match self.same(&what, m, r) {
                    Some(n) => self.model_write(ino, off + a, &data[..n]),
                    None => return,
                }
            }
            let what = format!("mmap {label} [{off}, {}) shared ro, read", off + len);
            self.note("mmap_read", what.clone());
            let hd = &self.handles[h];
            let m = Map::new(&hd.m, off, len as usize, false);
            let r = Map::new(&hd.r, off, len as usize, false);
            if let Some((m, r)) = self.both(&what, m, r) {
                let want = &self.content[&ino][off as usize..(off + len) as usize];
                self.compare_data(&what, off, m.bytes(), r.bytes(), want);
            }
        }
    }
}

fn flag_names(flags: i32) -> String {
    let mut v = vec![match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        _ => "O_RDWR",
    }];
    for (f, n) in [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
    ] {
        if flags & f != 0 {
            v.push(n);
        }
    }
    v.join("|")
}
