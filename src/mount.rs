//! The FUSE mount: options for the kernel, the session loop, and a clean unmount on signals.

use std::sync::{Arc, Mutex};

use fuser::{MountOption, Session, SessionACL};

use crate::config::MountConfig;
use crate::fuse::FuseAdapter;

pub fn fuse_config(cfg: &MountConfig) -> fuser::Config {
    let mut c = fuser::Config::default();
    let mut opts = vec![
        MountOption::FSName(fsname(&cfg.source)),
        // The type shows as `fuse.sftpfs` (as sshfs's shows `fuse.sshfs`), so that `findmnt
        // -t`, `df -t` and `umount -t` select it. Not `MountOption::Subtype`: fuser hands that
        // only to fusermount3, and as root it calls mount(2) itself with the type `fuse`; the
        // kernel (Linux 5.4 on) takes `subtype=` among the mount's data, and fusermount3 reads
        // it as its own option.
        MountOption::CUSTOM("subtype=sftpfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if cfg.fs.read_only {
        opts.push(MountOption::RO);
    }
    if cfg.fs.noexec {
        opts.push(MountOption::NoExec);
    }
    // Other users let in must not bypass the modes: the server checks only as the one SSH
    // user, so the kernel checks the modes, unless asked not to.
    if cfg.fs.default_permissions || (cfg.fs.allow_other && !cfg.fs.no_default_permissions) {
        opts.push(MountOption::DefaultPermissions);
    }
    c.mount_options = opts;
    c.acl = if cfg.fs.allow_other {
        SessionACL::All
    } else if cfg.fs.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    c
}

/// The source as the mount's name. As root, fuser hands it to mount(2) as it is; otherwise
/// to fusermount3 among its `-o` options, where a comma would end it (fusermount3 undoes
/// backslash escapes, as libfuse makes them for sshfs).
fn fsname(source: &str) -> String {
    if nix::unistd::geteuid().is_root() {
        return source.to_string();
    }
    source.replace('\\', "\\\\").replace(',', "\\,")
}

/// Mounts; the error is one line for the user and nothing stays mounted.
pub fn mount(adapter: FuseAdapter, cfg: &MountConfig) -> Result<Session<FuseAdapter>, String> {
    let s = Session::new(adapter, &cfg.mountpoint, &fuse_config(cfg))
        .map_err(|e| format!("cannot mount on {}: {e}", cfg.mountpoint.display()))?;
    raise_readahead(&cfg.mountpoint);
    Ok(s)
}

/// Kernel read-ahead of this mount's own bdi, in KiB.
const READ_AHEAD_KB: u32 = 4096;

/// The kernel sends buffered reads no larger than the bdi's read-ahead (128 KiB by default):
/// with 4 MiB it sends 1 MiB requests (FUSE's limit), several in flight, on sequential reads.
/// Only root may set it; without it everything works, a little slower.
fn raise_readahead(mountpoint: &std::path::Path) {
    // From mountinfo, not stat(2): the session loop is not serving requests yet.
    let Some(dev) = std::fs::canonicalize(mountpoint)
        .ok()
        .and_then(|p| crate::connect::mount_device(p.as_os_str().as_encoded_bytes()))
    else {
        return;
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, READ_AHEAD_KB.to_string()) {
        tracing::debug!("read-ahead left as it is ({path}: {e})");
    }
}

/// Serves the kernel until the filesystem is unmounted (by `umount`, `fusermount3 -u`, or
/// SIGTERM/SIGINT, which unmount it here).
/// SIGTERM and SIGINT, caught from before the mount appears until it is gone: a signal in
/// between must unmount, not kill the process and leave a dead mount behind.
/// SIGHUP too: a daemon takes it to refresh its caches ([`Signals::take_hangup`]); in the
/// foreground it unmounts, as when the terminal hangs up under libfuse and sshfs.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Must run inside the runtime.
    pub fn catch() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: Some(signal(SignalKind::hangup())?),
        })
    }

    /// SIGHUP, for whoever handles it (once).
    pub fn take_hangup(&mut self) -> tokio::signal::unix::Signal {
        self.hup.take().expect("SIGHUP is taken once")
    }
}

/// Serves the session until it ends. A signal unmounts; when the mount cannot go at once
/// (busy, or detached already), what `land` sends (writes already answered to programs)
/// is on the server before the process exits.
pub fn serve(
    mut session: Session<FuseAdapter>,
    mut signals: Signals,
    mountpoint: &std::path::Path,
    rt: &tokio::runtime::Handle,
    land: futures::future::BoxFuture<'static, ()>,
) -> std::io::Result<()> {
    let unmounter = Arc::new(Mutex::new(session.unmount_callable()));
    let mountpoint = mountpoint.to_path_buf();
    let ours = mounted_device(&mountpoint);
    rt.spawn(async move {
        let hup = async {
            match signals.hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = signals.term.recv() => {}
            _ = signals.int.recv() => {}
            // Still ours in the foreground: the terminal hung up (as libfuse and sshfs).
            _ = hup => {}
        }
        tracing::info!("signal received, unmounting");
        let unmounted = unmounter.lock().unwrap().unmount();
        if let Err(e) = unmounted {
            if ours.is_some() && mounted_device(&mountpoint) != ours {
                // Detached already (`umount -l`) while a request was pending: the kernel
                // keeps the session until that request ends, which may be never. Nothing is
                // left to unmount; the signal asked us to go.
                tracing::info!("{} was detached already; exiting", mountpoint.display());
                land.await;
                std::process::exit(0);
            }
            // Busy (a file is open): detach it as sshfs does; the session loop would wait
            // for the last user, so end here. Open files then get ENOTCONN.
            tracing::warn!("unmount: {e}; detaching the busy mount");
            if lazy_unmount(&mountpoint) {
                land.await;
                std::process::exit(0);
            }
            tracing::error!("cannot unmount {}", mountpoint.display());
        }
    });
    session.run()
}

/// The device of the mount on `mountpoint` now (from mountinfo), if any. Only its parent is
/// resolved: a stat of the mount's own root could wait on this very session.
fn mounted_device(mountpoint: &std::path::Path) -> Option<String> {
    let parent = match mountpoint.parent()? {
        p if p.as_os_str().is_empty() => std::path::Path::new("."),
        p => p,
    };
    let path = std::fs::canonicalize(parent)
        .ok()?
        .join(mountpoint.file_name()?);
    crate::connect::mount_device(path.as_os_str().as_encoded_bytes())
}

/// `umount -l`: the mount disappears now, the kernel lets go when the last user does.
fn lazy_unmount(mountpoint: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return true;
    }
    // Not root: fusermount3 can do it for the mount's owner.
    std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg("--")
        .arg(mountpoint)
        .status()
        .is_ok_and(|s| s.success())
}
