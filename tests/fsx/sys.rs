//! Thin wrappers over the system calls the model makes: every one answers `Ok(value)` or
//! `Err(errno)`, so that the mount's answer and the reference's can be compared exactly.

use std::ffi::CString;
use std::fmt::Debug;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub type R<T> = Result<T, i32>;

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn zero(r: libc::c_int) -> R<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

fn count(r: isize) -> R<usize> {
    if r >= 0 {
        Ok(r as usize)
    } else {
        Err(errno())
    }
}

/// `ENOENT (2)` rather than the long text: short enough for the history.
pub fn errno_name(e: i32) -> String {
    format!("{} ({e})", sftpfs::status::report::errno_name(e))
}

/// An answer for a message: `ok: <value>` (cut short) or the errno's name.
pub fn show<T: Debug>(r: &R<T>) -> String {
    match r {
        Ok(v) => {
            let mut s = format!("ok: {v:?}");
            if s.len() > 200 {
                s.truncate(200);
                s.push('…');
            }
            s
        }
        Err(e) => errno_name(*e),
    }
}

/// The fields of `struct stat` that the mount and the reference must agree on (and `ino`,
/// which only names the reference's inode for the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct St {
    pub ino: u64,
    pub kind: u32,
    pub perm: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
}

impl St {
    pub fn is_file(&self) -> bool {
        self.kind == libc::S_IFREG
    }
    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            libc::S_IFREG => "file",
            libc::S_IFDIR => "dir",
            libc::S_IFLNK => "symlink",
            _ => "other",
        }
    }
}

fn st(s: &libc::stat) -> St {
    St {
        ino: s.st_ino,
        kind: s.st_mode & libc::S_IFMT,
        perm: s.st_mode & 0o7777,
        nlink: s.st_nlink,
        uid: s.st_uid,
        gid: s.st_gid,
        size: s.st_size as u64,
        mtime: s.st_mtime,
    }
}

pub fn lstat(p: &Path) -> R<St> {
    let mut s: libc::stat = unsafe { std::mem::zeroed() };
    zero(unsafe { libc::lstat(c(p).as_ptr(), &mut s) }).map(|_| st(&s))
}

pub fn stat(p: &Path) -> R<St> {
    let mut s: libc::stat = unsafe { std::mem::zeroed() };
    zero(unsafe { libc::stat(c(p).as_ptr(), &mut s) }).map(|_| st(&s))
}

pub fn fstat(f: &File) -> R<St> {
    let mut s: libc::stat = unsafe { std::mem::zeroed() };
    zero(unsafe { libc::fstat(f.as_raw_fd(), &mut s) }).map(|_| st(&s))
}

pub fn open(p: &Path, flags: i32, mode: u32) -> R<File> {
    let fd = unsafe { libc::open(c(p).as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

/// `pread` until `len` bytes or end of file.
pub fn read_full(f: &File, len: usize, off: u64) -> R<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = count(unsafe {
            libc::pread(
                f.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                len - got,
                (off + got as u64) as libc::off_t,
            )
        })?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// The whole file at `p`, read through a new descriptor.
pub fn read_path(p: &Path) -> R<Vec<u8>> {
    std::fs::read(p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

pub fn pwrite(f: &File, data: &[u8], off: u64) -> R<usize> {
    count(unsafe {
        libc::pwrite(
            f.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            off as libc::off_t,
        )
    })
}

pub fn write(f: &File, data: &[u8]) -> R<usize> {
    count(unsafe { libc::write(f.as_raw_fd(), data.as_ptr().cast(), data.len()) })
}

/// The descriptor's file position.
pub fn tell(f: &File) -> R<i64> {
    let r = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_CUR) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

pub fn ftruncate(f: &File, len: u64) -> R<()> {
    zero(unsafe { libc::ftruncate(f.as_raw_fd(), len as libc::off_t) })
}

pub fn truncate(p: &Path, len: u64) -> R<()> {
    zero(unsafe { libc::truncate(c(p).as_ptr(), len as libc::off_t) })
}

pub fn fsync(f: &File) -> R<()> {
    zero(unsafe { libc::fsync(f.as_raw_fd()) })
}

pub fn copy_file_range(fin: &File, off_in: u64, fout: &File, off_out: u64, len: usize) -> R<usize> {
    let (mut i, mut o) = (off_in as libc::loff_t, off_out as libc::loff_t);
    count(unsafe {
        libc::copy_file_range(fin.as_raw_fd(), &mut i, fout.as_raw_fd(), &mut o, len, 0)
    })
}

pub fn rename(a: &Path, b: &Path) -> R<()> {
    zero(unsafe { libc::rename(c(a).as_ptr(), c(b).as_ptr()) })
}

pub fn link(a: &Path, b: &Path) -> R<()> {
    zero(unsafe { libc::link(c(a).as_ptr(), c(b).as_ptr()) })
}

pub fn unlink(p: &Path) -> R<()> {
    zero(unsafe { libc::unlink(c(p).as_ptr()) })
}

pub fn mkdir(p: &Path, mode: u32) -> R<()> {
    zero(unsafe { libc::mkdir(c(p).as_ptr(), mode) })
}

pub fn rmdir(p: &Path) -> R<()> {
    zero(unsafe { libc::rmdir(c(p).as_ptr()) })
}

pub fn symlink(target: &str, p: &Path) -> R<()> {
    let t = CString::new(target).unwrap();
    zero(unsafe { libc::symlink(t.as_ptr(), c(p).as_ptr()) })
}

pub fn readlink(p: &Path) -> R<String> {
    std::fs::read_link(p)
        .map(|t| t.to_string_lossy().into_owned())
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// The sorted names in directory `p`.
pub fn readdir(p: &Path) -> R<Vec<String>> {
    let mut v = Vec::new();
    let it = std::fs::read_dir(p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    for e in it {
        let e = e.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        v.push(e.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

pub fn chmod(p: &Path, mode: u32) -> R<()> {
    zero(unsafe { libc::chmod(c(p).as_ptr(), mode) })
}

/// `chown` (following symlinks) or `lchown`; `u32::MAX` leaves an id as it is.
pub fn chown(p: &Path, uid: u32, gid: u32, follow: bool) -> R<()> {
    let f = if follow { libc::chown } else { libc::lchown };
    zero(unsafe { f(c(p).as_ptr(), uid, gid) })
}

/// A time for [`utimens`].
#[derive(Debug, Clone, Copy)]
pub enum Time {
    Sec(i64),
    Now,
    Omit,
}

fn timespec(t: Time) -> libc::timespec {
    match t {
        Time::Sec(s) => libc::timespec {
            tv_sec: s,
            tv_nsec: 0,
        },
        Time::Now => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Time::Omit => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    }
}

/// `utimensat(AT_FDCWD, p, [atime, mtime], 0)` (following symlinks).
pub fn utimens(p: &Path, atime: Time, mtime: Time) -> R<()> {
    let ts = [timespec(atime), timespec(mtime)];
    zero(unsafe { libc::utimensat(libc::AT_FDCWD, c(p).as_ptr(), ts.as_ptr(), 0) })
}

/// A `MAP_SHARED` mapping of part of a file, unmapped on drop.
#[derive(Debug)]
pub struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    /// Maps `[off, off + len)` of `f` (`off` a multiple of the page size).
    pub fn new(f: &File, off: u64, len: usize, write: bool) -> R<Map> {
        let prot = libc::PROT_READ | if write { libc::PROT_WRITE } else { 0 };
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            Err(errno())
        } else {
            Ok(Map { ptr: p.cast(), len })
        }
    }

    pub fn bytes(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    pub fn msync(&self) -> R<()> {
        zero(unsafe { libc::msync(self.ptr.cast(), self.len, libc::MS_SYNC) })
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

pub fn page_size() -> u64 {
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}
