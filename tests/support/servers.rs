//! [`Server`]: an SFTP server of another implementation than the harness's OpenSSH
//! [`Sshd`](super::Sshd), on 127.0.0.1 and a random free port, with throwaway keys in a temp
//! dir, confined so that it cannot write outside that temp dir.
//!
//! One constructor per implementation, each in its own file: [`Server::proftpd`]
//! (`proftpd.rs`), [`Server::rclone`] (`rclone.rs`), [`Server::asyncssh`] (`asyncssh.rs`),
//! [`Server::gesftpserver`] (`gesftpserver.rs`), [`Server::dropbear`] (`dropbear.rs`).
//!
//! Confinement ([`confine`]): every server starts in its own private mount namespace, without
//! the FUSE mounts that are live now (as [`isolate_from_mounts`](super::isolate_from_mounts)),
//! where the whole file tree is read-only except the server's temp dir, and `/root` is the
//! server's `home/` (a throwaway, writable). Several of these servers log in as root and follow
//! paths wherever they lead (a SYMLINK read in the other argument order, say): here such a
//! stray write fails, or lands in the temp dir where the test sees it.

use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::environment::require_environment;
use super::faults::{kill_and_reap, signal};
use super::mount::Mount;
use super::mountinfo::mountinfo;
use super::process::{command_in, descendants};
use super::sshd::keygen;
use super::tempdir::TempDir;
use super::{unique, POLL};

/// `SFTPFS_TEST_SERVER_DEBUG=1`: the servers log at their debug level (for investigating a
/// failure; their logs are printed when a test fails).
pub fn debug_logs() -> bool {
    std::env::var_os("SFTPFS_TEST_SERVER_DEBUG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// How long a server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running SFTP server (not the harness's own OpenSSH) and what a client needs to reach it.
///
/// Layout of `dir`: `keys/` (host and client keys, `known_hosts`, configuration), `home/` (the
/// directory where relative remote paths resolve: `w` is `home/w`; `/root` in the server's
/// namespace), `local/` (scratch space for the tests), `*.log` (the server's logs), `mnt-*`
/// (mountpoints).
pub struct Server {
    /// Short name, as tests and tables call it (`proftpd`, `proftpd-noext`, `rclone`, ...).
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    /// The login user.
    pub user: String,
    /// The client's private key (`IdentityFile`).
    pub client_key: PathBuf,
    /// `[127.0.0.1]:PORT <host key>` (`UserKnownHostsFile`).
    pub known_hosts: PathBuf,
    /// The server-side directory where relative remote paths resolve.
    pub home: PathBuf,
    /// The server's version banner (`SSH-2.0-...`), as it sent it.
    pub banner: String,
    /// The server's own logs (its stderr first).
    pub logs: Vec<PathBuf>,
    child: Option<Child>,
    _tmp: TempDir,
}

/// What a constructor prepares before the server is started by [`Server::launch`].
pub(super) struct Prepared {
    pub name: String,
    pub user: String,
    pub tmp: TempDir,
    pub dir: PathBuf,
    pub keys: PathBuf,
    pub home: PathBuf,
    pub client_key: PathBuf,
    /// The client's public key line (`ssh-ed25519 AAAA...`).
    pub client_pub: String,
    pub known_hosts: PathBuf,
}

impl Prepared {
    /// A temp dir with `keys/`, `home/` and `local/`, and a client key pair in `keys/`.
    pub fn new(name: &str, user: &str) -> Prepared {
        require_environment();
        let tmp = TempDir::new(name);
        let dir = tmp.path().to_path_buf();
        let keys = dir.join("keys");
        let home = dir.join("home");
        for d in [&keys, &home, &dir.join("local")] {
            fs::create_dir(d).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let client_key = keys.join("client_ed25519_key");
        let client_pub = keygen(&client_key);
        Prepared {
            name: name.to_string(),
            user: user.to_string(),
            known_hosts: keys.join("known_hosts"),
            tmp,
            dir,
            keys,
            home,
            client_key,
            client_pub,
        }
    }
}

/// A free TCP port on 127.0.0.1 (free now; the server may still lose a race for it, hence the
/// retries in [`Server::launch`]).
pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// Reads the SSH version line a server sends first; `None` if it sends none within a second.
fn read_banner(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while got.len() < 512 {
        match s.read(&mut byte) {
            Ok(1) => {
                if byte[0] == b'\n' {
                    let line = String::from_utf8_lossy(&got).trim_end().to_string();
                    if line.starts_with("SSH-") {
                        return Some(line);
                    }
                    got.clear();
                } else {
                    got.push(byte[0]);
                }
            }
            _ => return None,
        }
    }
    None
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

unsafe fn mount_setattr(path: &CString, flags: libc::c_int, set: u64, clr: u64) -> libc::c_long {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    libc::syscall(
        libc::SYS_mount_setattr,
        libc::AT_FDCWD,
        path.as_ptr(),
        flags as libc::c_uint,
        &attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    )
}

/// Makes `cmd` start in its own private mount namespace, without the FUSE mounts that are live
/// now, where everything is read-only except `writable` (the server's temp dir), and where
/// `/root` is `root` (a throwaway dir inside `writable`) when given.
pub fn confine(cmd: &mut Command, writable: &Path, root: Option<&Path>) {
    let fuse_mounts: Vec<CString> = mountinfo()
        .into_iter()
        .filter(|m| m.fs_type.starts_with("fuse"))
        .map(|m| CString::new(m.mount_point.as_os_str().as_bytes()).unwrap())
        .collect();
    let writable = CString::new(writable.as_os_str().as_bytes()).unwrap();
    let root = root.map(|r| CString::new(r.as_os_str().as_bytes()).unwrap());
    let slash = CString::new("/").unwrap();
    let dot_root = CString::new("/root").unwrap();
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_long| -> io::Result<()> {
                if r != 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS) as libc::c_long)?;
            check(libc::mount(
                std::ptr::null(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) as libc::c_long)?;
            for m in &fuse_mounts {
                libc::umount2(m.as_ptr(), libc::MNT_DETACH);
            }
            // The temp dir becomes a mount of its own (to be made writable again below).
            check(libc::mount(
                writable.as_ptr(),
                writable.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) as libc::c_long)?;
            if let Some(r) = &root {
                check(libc::mount(
                    r.as_ptr(),
                    dot_root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) as libc::c_long)?;
            }
            check(mount_setattr(
                &slash,
                libc::AT_RECURSIVE,
                MOUNT_ATTR_RDONLY,
                0,
            ))?;
            check(mount_setattr(
                &writable,
                libc::AT_RECURSIVE,
                0,
                MOUNT_ATTR_RDONLY,
            ))?;
            if root.is_some() {
                check(mount_setattr(&dot_root, 0, 0, MOUNT_ATTR_RDONLY))?;
            }
            let dir = root.as_ref().unwrap_or(&writable);
            check(libc::chdir(dir.as_ptr()) as libc::c_long)?;
            Ok(())
        });
    }
}

/// How a server is to be started: the command for a port, and whether `/root` is to be the
/// throwaway `home/` (servers that log in as root and start in root's home directory).
pub(super) struct Launch<'a> {
    pub command: &'a dyn Fn(u16) -> Command,
    /// The host's public key line (`ssh-ed25519 AAAA...`), for `known_hosts`.
    pub host_key_pub: String,
    pub root_is_home: bool,
    /// Logs the server writes by itself (besides its stderr, which goes to `NAME.log`).
    pub other_logs: Vec<PathBuf>,
    /// Written before the server starts; the port is the argument (e.g. a config file).
    pub before_start: &'a dyn Fn(u16),
}

impl Server {
    /// Starts the server of `p` as `launch` says, confined (see [`confine`]), on a free port
    /// (another one if it loses the race for it), and waits until it answers with an SSH
    /// version line.
    pub(super) fn launch(p: Prepared, launch: Launch) -> Server {
        let log = p.dir.join(format!("{}.log", p.name));
        let mut last = String::new();
        for _attempt in 0..10 {
            let port = free_port();
            (launch.before_start)(port);
            fs::write(
                &p.known_hosts,
                format!("[127.0.0.1]:{port} {}\n", launch.host_key_pub),
            )
            .unwrap();
            let logfile = fs::File::create(&log).unwrap();
            let mut cmd = (launch.command)(port);
            cmd.stdin(Stdio::null())
                .stdout(logfile.try_clone().unwrap())
                .stderr(logfile)
                .env("HOME", &p.home)
                .env("TMPDIR", &p.dir)
                .env_remove("SSH_AUTH_SOCK");
            confine(&mut cmd, &p.dir, launch.root_is_home.then_some(&*p.home));
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
            let end = Instant::now() + START_DEADLINE;
            let banner = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let text: String = std::iter::once(&log)
                        .chain(&launch.other_logs)
                        .map(|l| fs::read_to_string(l).unwrap_or_default())
                        .collect();
                    last = format!("exited ({status}): {text}");
                    // Another try on another port only when this one was taken meanwhile.
                    assert!(
                        text.to_lowercase().contains("in use"),
                        "{} on port {port} {last}",
                        p.name
                    );
                    eprintln!("harness: {} on port {port} {last}", p.name);
                    break None;
                }
                if let Some(b) = read_banner(port) {
                    // Ours, not another process that took the port meanwhile?
                    if child.try_wait().unwrap().is_none() {
                        break Some(b);
                    }
                }
                if Instant::now() >= end {
                    stop_tree(&mut child);
                    panic!(
                        "{} did not answer on port {port} within {START_DEADLINE:?}:\n{}",
                        p.name,
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                sleep(POLL);
            };
            if let Some(banner) = banner {
                let mut logs = vec![log];
                logs.extend(launch.other_logs);
                return Server {
                    name: p.name,
                    dir: p.dir,
                    port,
                    user: p.user,
                    client_key: p.client_key,
                    known_hosts: p.known_hosts,
                    home: p.home,
                    banner,
                    logs,
                    child: Some(child),
                    _tmp: p.tmp,
                };
            }
        }
        panic!("could not start {} after 10 attempts: {last}", p.name);
    }

    /// Server-side path of `rel` under the home directory.
    pub fn remote(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    /// Local scratch space (`DIR/local`), outside both the server's home and the mounts.
    pub fn local(&self, rel: &str) -> PathBuf {
        self.dir.join("local").join(rel)
    }

    /// A new, empty mountpoint directory.
    pub fn mountpoint(&self) -> PathBuf {
        let p = self.dir.join(unique("mnt"));
        fs::create_dir(&p).unwrap();
        p
    }

    /// The `-o` options of every mount: this server's identity and known_hosts, strict host
    /// key checking, batch mode, then `extra`, then `SFTPFS_TEST_OPTS`.
    pub fn opts(&self, extra: &[&str]) -> String {
        super::sshd::mount_opts(&self.client_key, &self.known_hosts, extra)
    }

    /// `user@127.0.0.1:dir MNT -p PORT -o <opts(extra)>`.
    pub fn mount_args(&self, remote_dir: &str, mnt: &Path, extra: &[&str]) -> Vec<OsString> {
        vec![
            format!("{}@127.0.0.1:{remote_dir}", self.user).into(),
            mnt.as_os_str().to_owned(),
            "-p".into(),
            self.port.to_string().into(),
            "-o".into(),
            self.opts(extra).into(),
        ]
    }

    /// Mounts `remote_dir` (relative to the server's home) in the foreground with the usual
    /// options plus `extra`; the failure, with the binary's output, if it does not mount.
    pub fn try_mount(&self, remote_dir: &str, extra: &[&str]) -> Result<Mount<'_>, String> {
        let mnt = self.mountpoint();
        let mut cmd = command_in(&self.dir);
        cmd.args(self.mount_args(remote_dir, &mnt, extra)).arg("-f");
        Mount::spawn_in(&self.dir, cmd, mnt, self.remote(remote_dir))
    }

    /// [`Server::try_mount`], panicking on failure.
    pub fn mount(&self, remote_dir: &str, extra: &[&str]) -> Mount<'_> {
        self.try_mount(remote_dir, extra)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// The server's logs so far, each under a header line.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        for l in &self.logs {
            s.push_str(&format!("---- {}:\n", l.display()));
            s.push_str(&fs::read_to_string(l).unwrap_or_default());
        }
        s
    }

    /// The pid of the listening server process.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

/// SIGTERMs the process, SIGKILLs it if it is still there after a few seconds, then SIGKILLs
/// what it had started (session processes, re-parented to this process when it is gone) and
/// reaps them.
fn stop_tree(child: &mut Child) {
    let pid = child.id() as i32;
    let tree = descendants(pid);
    signal(pid, libc::SIGCONT);
    signal(pid, libc::SIGTERM);
    let end = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        sleep(POLL);
    }
    kill_and_reap(&tree);
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_tree(&mut child);
        }
        if std::thread::panicking() {
            eprintln!("---- {} logs:\n{}", self.name, self.log_text());
        }
    }
}
