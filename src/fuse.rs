//! The kernel interface: each operation copies what the kernel lent, runs one method of the
//! core on the tokio runtime and turns its result into the reply. No logic lives here.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, IoctlFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::fs::{Caller, Filesystem, FsError, SetAttr, SetTime};

pub struct FuseAdapter {
    fs: Arc<Filesystem>,
    rt: Handle,
    entry_ttl: Duration,
    attr_ttl: Duration,
}

impl FuseAdapter {
    pub fn new(fs: Arc<Filesystem>, rt: Handle, entry_ttl: Duration, attr_ttl: Duration) -> Self {
        FuseAdapter {
            fs,
            rt,
            entry_ttl,
            attr_ttl,
        }
    }
}

/// The errno for the kernel, logged at the error's own level and noted for `sftpfs status`.
fn errno(fs: &Filesystem, op: &'static str, ino: u64, e: FsError) -> Errno {
    errno_at(fs, op, ino, b"", e)
}

/// `errno` of a call about `name` in directory `parent`.
fn errno_at(fs: &Filesystem, op: &'static str, parent: u64, name: &[u8], e: FsError) -> Errno {
    fs.note_error(op, parent, name, e.errno);
    if e.is_noteworthy() {
        tracing::warn!("{op}: {e}");
    } else {
        tracing::debug!("{op}: {e}");
    }
    Errno::from_i32(e.errno)
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    })
}

fn bytes(name: &OsStr) -> Vec<u8> {
    name.as_bytes().to_vec()
}

/// An xattr value or name list: its length when asked with size 0, ERANGE when it does not
/// fit the caller's buffer.
fn xattr_reply(reply: ReplyXattr, v: &[u8], size: u32) {
    if size == 0 {
        reply.size(v.len() as u32);
    } else if v.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(v);
    }
}

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // HANDLE_KILLPRIV: the server's write, truncate and chown clear setuid and setgid as
        // its kernel sees fit. Without it the kernel asks for the attributes before every
        // chown (tar, cp -a and rsync chown each file they make): one round trip per file.
        let _ = config.add_capabilities(
            InitFlags::FUSE_DO_READDIRPLUS
                | InitFlags::FUSE_ATOMIC_O_TRUNC
                | InitFlags::FUSE_HANDLE_KILLPRIV,
        );
        let _ = config.set_max_write(1024 * 1024);
        let _ = config.set_max_readahead(1024 * 1024);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        // Unmount returns once what the asynchronous mode queued is on the server.
        let fs = self.fs.clone();
        self.rt.block_on(async move { fs.settle_all().await });
        self.fs.shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (fs, name, ttl) = (self.fs.clone(), bytes(name), self.entry_ttl);
        self.rt.spawn(async move {
            match fs.lookup_entry(parent.0, &name).await {
                Ok((a, true)) => reply.entry(&ttl, &a, Generation(0)),
                // The entry holds; its attributes are fetched again (attr_ttl 0).
                Ok((a, false)) => reply.entry_with_ttls(&Duration::ZERO, &ttl, &a, Generation(0)),
                Err(e) => reply.error(errno_at(&fs, "lookup", parent.0, &name, e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let (fs, ttl) = (self.fs.clone(), self.attr_ttl);
        self.rt.spawn(async move {
            match fs.getattr(ino.0, fh.map(|f| f.0)).await {
                Ok(a) => reply.attr(&ttl, &a),
                Err(e) => reply.error(errno(&fs, "getattr", ino.0, e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
        };
        let (fs, ttl) = (self.fs.clone(), self.attr_ttl);
        self.rt.spawn(async move {
            match fs.setattr(ino.0, fh.map(|f| f.0), set).await {
                Ok(a) => reply.attr(&ttl, &a),
                Err(e) => reply.error(errno(&fs, "setattr", ino.0, e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.readlink(ino.0).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(&fs, "readlink", ino.0, e)),
            }
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let (fs, name, ttl) = (self.fs.clone(), bytes(name), self.entry_ttl);
        self.rt.spawn(async move {
            match fs.mknod(parent.0, &name, mode, umask).await {
                Ok(a) => reply.entry(&ttl, &a, Generation(0)),
                Err(e) => reply.error(errno_at(&fs, "mknod", parent.0, &name, e)),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (fs, name, ttl) = (self.fs.clone(), bytes(name), self.entry_ttl);
        self.rt.spawn(async move {
            match fs.mkdir(parent.0, &name, mode, umask).await {
                Ok(a) => reply.entry(&ttl, &a, Generation(0)),
                Err(e) => reply.error(errno_at(&fs, "mkdir", parent.0, &name, e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), bytes(name));
        self.rt.spawn(async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno_at(&fs, "unlink", parent.0, &name, e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), bytes(name));
        self.rt.spawn(async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno_at(&fs, "rmdir", parent.0, &name, e)),
            }
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (fs, name, entry_ttl) = (self.fs.clone(), bytes(link_name), self.entry_ttl);
        let target = bytes(target.as_os_str());
        self.rt.spawn(async move {
            match fs.symlink(parent.0, &name, &target).await {
                Ok(a) => {
                    // follow_symlinks: the link shows as its target from the next lookup.
                    let ttl = if fs.follows_symlinks() {
                        Duration::ZERO
                    } else {
                        entry_ttl
                    };
                    reply.entry(&ttl, &a, Generation(0))
                }
                Err(e) => reply.error(errno_at(&fs, "symlink", parent.0, &name, e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (fs, name, newname) = (self.fs.clone(), bytes(name), bytes(newname));
        self.rt.spawn(async move {
            match fs
                .rename(parent.0, &name, newparent.0, &newname, flags.bits())
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno_at(&fs, "rename", parent.0, &name, e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (fs, name, ttl) = (self.fs.clone(), bytes(newname), self.entry_ttl);
        self.rt.spawn(async move {
            match fs.link(ino.0, newparent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &a, Generation(0)),
                Err(e) => reply.error(errno(&fs, "link", ino.0, e)),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.open(ino.0, flags.0).await {
                Ok(o) => {
                    let flags = if fs.direct_io() {
                        FopenFlags::FOPEN_DIRECT_IO
                    } else if o.keep_cache {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    };
                    reply.opened(FileHandle(o.fh), flags)
                }
                Err(e) => reply.error(errno(&fs, "open", ino.0, e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        let arrived = fs.arrived_now();
        self.rt.spawn(async move {
            match fs.read_after(arrived, fh.0, offset, size).await {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(errno(&fs, "read", ino.0, e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (fs, data) = (self.fs.clone(), data.to_vec());
        // Noted here, in the order the kernel sent it, until the core has queued it.
        let arrival = fs.write_arriving(ino.0);
        self.rt.spawn(async move {
            let written = (fs.write(fh.0, offset, data, flags.0, write_flags.bits())).await;
            drop(arrival);
            match written {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&fs, "write", ino.0, e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.flush(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&fs, "flush", ino.0, e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.release(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&fs, "release", ino.0, e)),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&fs, "fsync", ino.0, e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&fs, "opendir", ino.0, e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let res = self.fs.readdir(fh.0, offset, false, |d| {
            !reply.add(INodeNo(d.ino), d.offset, d.kind, OsStr::from_bytes(d.name))
        });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&self.fs, "readdir", ino.0, e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.entry_ttl;
        let res = self.fs.readdir(fh.0, offset, true, |d| {
            !reply.add(
                INodeNo(d.ino),
                d.offset,
                OsStr::from_bytes(d.name),
                if d.outdated { &Duration::ZERO } else { &ttl },
                &d.attr,
                Generation(0),
            )
        });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&self.fs, "readdirplus", ino.0, e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.statfs().await {
                Ok(v) => reply.statfs(
                    v.blocks,
                    v.bfree,
                    v.bavail,
                    v.files,
                    v.ffree,
                    v.bsize as u32,
                    v.namemax as u32,
                    v.frsize as u32,
                ),
                Err(e) => reply.error(errno(&fs, "statfs", 1, e)),
            }
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        let caller = Caller {
            uid: req.uid(),
            gid: req.gid(),
            pid: req.pid(),
        };
        self.rt.spawn(async move {
            match fs.access(ino.0, mask.bits(), caller).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&fs, "access", ino.0, e)),
            }
        });
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, name, ttl) = (self.fs.clone(), bytes(name), self.entry_ttl);
        self.rt.spawn(async move {
            match fs.create(parent.0, &name, mode, umask, flags).await {
                Ok((a, fh)) => {
                    let flags = if fs.direct_io() {
                        FopenFlags::FOPEN_DIRECT_IO
                    } else {
                        FopenFlags::empty()
                    };
                    reply.created(&ttl, &a, Generation(0), FileHandle(fh), flags)
                }
                Err(e) => reply.error(errno_at(&fs, "create", parent.0, &name, e)),
            }
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            // The reply counts bytes in 32 bits; a longer range is continued by the caller.
            let len = len.min(1 << 30);
            match fs
                .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
                .await
            {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(errno(&fs, "copy_file_range", ino_in.0, e)),
            }
        });
    }

    // Extended attributes: the server's hashes, read-only (`fs/integrity/xattr.rs`); SFTP
    // has no others. A size of 0 asks for the value's length.
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let (fs, name) = (self.fs.clone(), bytes(name));
        self.rt.spawn(async move {
            match fs.getxattr(ino.0, &name).await {
                Ok(v) => xattr_reply(reply, &v, size),
                Err(e) => reply.error(errno(&fs, "getxattr", ino.0, e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.rt.spawn(async move {
            match fs.listxattr(ino.0).await {
                Ok(v) => xattr_reply(reply, &v, size),
                Err(e) => reply.error(errno(&fs, "listxattr", ino.0, e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.fs.setxattr(name.as_bytes()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&self.fs, "setxattr", ino.0, e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.fs.removexattr(name.as_bytes()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&self.fs, "removexattr", ino.0, e)),
        }
    }

    // Files here have no ioctls: ENOTTY, as from a filesystem without any. Every isatty() of
    // a file here sends one (TCGETS), and fuser's default logs a warning for each.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }
}
