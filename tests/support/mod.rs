//! Test harness shared by the integration tests: a private OpenSSH `sshd` per test on
//! 127.0.0.1 and a random free port, and real FUSE mounts made by the `sftpfs` binary.
//!
//! - [`Sshd::start`] makes a temp dir with a throwaway host key, client key, `authorized_keys`
//!   and `known_hosts`, and starts `/usr/sbin/sshd -D -e` in its own private mount namespace,
//!   so that the server can never see (and re-enter) the FUSE mounts the tests make.
//!   The server's SFTP "home" is `DIR/home` (`internal-sftp -d`).
//! - [`Mount::new`] runs the binary in the foreground (`-f`) and waits for the mount to appear;
//!   [`Mount::background`] runs it without `-f` and checks the parent's exit status.
//! - [`run_to_exit`] runs the binary (or anything) with a deadline, for the bad-input cases.
//!
//! Everything is cleaned up by `Drop`, also when a test panics.
//!
//! `SFTPFS_TEST_BIN=/usr/bin/sshfs` runs the tests against another binary that takes the same
//! arguments (to check the harness itself); `SFTPFS_TEST_OPTS=a,b` adds `-o a,b` to every mount.
#![allow(dead_code)]

pub mod proxy;

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a mount may take to appear.
pub const MOUNT_DEADLINE: Duration = Duration::from_secs(15);
/// How long a process may take to exit once asked to (unmount, signal, failure).
pub const EXIT_DEADLINE: Duration = Duration::from_secs(15);
/// How long a failing invocation may take to report its error.
pub const FAIL_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);

const SSHD: &str = "/usr/sbin/sshd";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{n}-{nanos:x}", std::process::id())
}

/// The binary under test: `SFTPFS_TEST_BIN` if set, else the crate's `sftpfs`.
pub fn binary() -> PathBuf {
    match std::env::var_os("SFTPFS_TEST_BIN") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_sftpfs")),
    }
}

/// Fails loudly when the tests cannot run here: they need root, `/dev/fuse`, OpenSSH's sshd
/// and fuse3's `fusermount3`. Never skip silently.
pub fn require_environment() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECK.get_or_init(|| {
        let mut missing = Vec::new();
        if unsafe { libc::geteuid() } != 0 {
            missing.push("root (the tests mount FUSE filesystems and run sshd)".to_string());
        }
        for (path, what) in [
            ("/dev/fuse", "/dev/fuse (FUSE kernel support)"),
            (SSHD, "/usr/sbin/sshd (Debian package openssh-server)"),
            (
                "/usr/bin/ssh-keygen",
                "ssh-keygen (Debian package openssh-client)",
            ),
            ("/usr/bin/fusermount3", "fusermount3 (Debian package fuse3)"),
        ] {
            if !Path::new(path).exists() {
                missing.push(what.to_string());
            }
        }
        let bin = binary();
        if !bin.exists() {
            missing.push(format!("the binary under test {}", bin.display()));
        }
        if !missing.is_empty() {
            return Err(format!(
                "\n\nsftpfs integration tests cannot run here; missing: {}.\n\
                 Run them as root on a machine with FUSE and OpenSSH (see .ci/run).\n",
                missing.join(", ")
            ));
        }
        // Orphans (the daemon left by a background mount) are re-parented to this process,
        // so that its exit status can be collected with waitpid.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        if !Path::new("/run/sshd").exists() {
            // sshd's privilege separation directory.
            let _ = fs::create_dir_all("/run/sshd");
            let _ = fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755));
        }
        Ok(())
    });
    if let Err(why) = checked {
        panic!("{why}");
    }
}

// ---------------------------------------------------------------------------------------------
// Temp dirs and mounts

/// A directory under `std::env::temp_dir()`, removed on drop (after detaching any mount
/// still left under it, so that a failed test can never make the removal recurse into a mount).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = fs::canonicalize(std::env::temp_dir()).expect("temp dir");
        let path = base.join(unique(&format!("sftpfs-test-{tag}")));
        fs::create_dir(&path).expect("create temp dir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }

    /// A temp dir under `base` (another filesystem, such as /dev/shm).
    pub fn in_dir(base: &str, tag: &str) -> TempDir {
        let path = Path::new(base).join(unique(&format!("sftpfs-test-{tag}")));
        fs::create_dir(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        for m in mounts_under(&self.path) {
            eprintln!("harness: detaching leftover mount {}", m.display());
            detach(&m);
        }
        if mounts_under(&self.path).is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            eprintln!(
                "harness: leaving {} behind: still mounted",
                self.path.display()
            );
        }
    }
}

fn unescape_mountinfo(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

pub fn mountinfo() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountInfo {
                mount_point: unescape_mountinfo(l.get(4)?),
                options: l.get(5)?.to_string(),
                fs_type: r.first()?.to_string(),
                source: r.get(1).map(|s| s.to_string()).unwrap_or_default(),
                super_options: r.get(2).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// The mount at exactly `path`, if any.
pub fn mount_at(path: &Path) -> Option<MountInfo> {
    mountinfo()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == path)
}

pub fn is_mounted(path: &Path) -> bool {
    mount_at(path).is_some()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mountinfo()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort();
    v.dedup();
    v.reverse();
    v
}

fn detach(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    unsafe {
        libc::umount2(c.as_ptr(), libc::MNT_DETACH);
    }
}

/// Polls `cond` every few milliseconds until it holds or `deadline` passes.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// sshd

/// A private OpenSSH server on 127.0.0.1:`port`, with its own keys, in a temp dir.
///
/// Layout of `dir`: `ssh/` (keys, sshd_config, sshd.log), `home/` (the SFTP home of the
/// login user, where relative remote dirs resolve), `local/` (scratch space for the tests),
/// `mnt-*` (mountpoints, created by [`Sshd::mountpoint`]).
pub struct Sshd {
    pub dir: PathBuf,
    pub port: u16,
    /// The login user (`root`, or another user given to [`Sshd::start_as`]).
    pub user: String,
    /// The client's private key, listed in `authorized_keys`.
    pub client_key: PathBuf,
    /// `[127.0.0.1]:PORT <host key>`.
    pub known_hosts: PathBuf,
    /// The host's public key, `ssh-ed25519 AAAA...` (without comment).
    pub host_key_pub: String,
    /// sshd's stderr (`-e`).
    pub log: PathBuf,
    config: PathBuf,
    /// The listening sshd; replaced by [`Sshd::restart`], `None` after [`Sshd::kill_server`].
    child: Mutex<Option<Child>>,
    tmp: TempDir,
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes an ed25519 key pair at `path` (and `path.pub`); returns the public key line
/// without its comment.
pub fn keygen(path: &Path) -> String {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-t", "ed25519", "-N", "", "-q", "-C", "sftpfs-test", "-f"])
            .arg(path),
    );
    let public = fs::read_to_string(path.with_extension("pub")).unwrap();
    let mut it = public.split_whitespace();
    format!("{} {}", it.next().unwrap(), it.next().unwrap())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// The FUSE mounts visible in this mount namespace, as NUL-terminated paths, for the
/// `pre_exec` of sshd (which must not allocate).
fn fuse_mounts_for_child() -> Vec<CString> {
    mountinfo()
        .into_iter()
        .filter(|m| m.fs_type.starts_with("fuse"))
        .map(|m| CString::new(m.mount_point.as_os_str().as_bytes()).unwrap())
        .collect()
}

/// Makes `cmd` start in its own private mount namespace without the FUSE mounts that are
/// live now, as sshd is started: for other servers a test runs (an `sftp-server` behind a TCP
/// port or on a pipe), which must never see, re-enter or keep alive a mount.
pub fn isolate_from_mounts(cmd: &mut Command) {
    let fuse_mounts = fuse_mounts_for_child();
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            for m in &fuse_mounts {
                libc::umount2(m.as_ptr(), libc::MNT_DETACH);
            }
            Ok(())
        });
    }
}

/// Starts `sshd -D -e -f config` with its stderr in `log` (appended to when `append`), in its
/// own private mount namespace without the FUSE mounts that are live now.
fn spawn_sshd(config: &Path, log: &Path, append: bool) -> Child {
    let logfile = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(SSHD);
    cmd.args(["-D", "-e", "-f"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(logfile.try_clone().unwrap())
        .stderr(logfile);
    // `unshare -m --propagation private`, done by hand: a new mount namespace, private,
    // and without the FUSE mounts that other tests have live right now. A copy of such
    // a mount in sshd's namespace would keep its FUSE connection alive after the other
    // test unmounts it, and the server could re-enter a mount through a symlink.
    isolate_from_mounts(&mut cmd);
    cmd.spawn().expect("spawn sshd")
}

impl Sshd {
    /// A server where the client logs in as root.
    pub fn start() -> Sshd {
        Sshd::start_as("root")
    }

    /// A server where the client logs in as `user` (e.g. `nobody`, to test permission errors:
    /// root's server would bypass permission bits). The home dir is owned by that user.
    pub fn start_as(user: &str) -> Sshd {
        Sshd::start_with(user, |c| c)
    }

    /// Like [`Sshd::start_as`], with the generated `sshd_config` text passed through `edit`
    /// first (to turn an authentication method or the sftp subsystem off, say).
    pub fn start_with(user: &str, edit: impl Fn(String) -> String) -> Sshd {
        require_environment();
        let tmp = TempDir::new("sshd");
        let dir = tmp.path().to_path_buf();
        let ssh = dir.join("ssh");
        let home = dir.join("home");
        fs::create_dir(&ssh).unwrap();
        fs::create_dir(&home).unwrap();
        fs::create_dir(dir.join("local")).unwrap();
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).unwrap();
        if user != "root" {
            let (uid, gid) = user_ids(user);
            std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        }
        let host_key = ssh.join("host_ed25519_key");
        let host_key_pub = keygen(&host_key);
        let client_key = ssh.join("client_ed25519_key");
        let client_pub = keygen(&client_key);
        let authorized_keys = ssh.join("authorized_keys");
        fs::write(&authorized_keys, format!("{client_pub}\n")).unwrap();
        fs::set_permissions(&authorized_keys, fs::Permissions::from_mode(0o644)).unwrap();
        let known_hosts = ssh.join("known_hosts");
        let config = ssh.join("sshd_config");
        let log = ssh.join("sshd.log");

        let mut last_log = String::new();
        for _attempt in 0..10 {
            let port = free_port();
            fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_key_pub}\n")).unwrap();
            fs::write(
                &config,
                edit(format!(
                    "ListenAddress 127.0.0.1\n\
                     Port {port}\n\
                     HostKey {}\n\
                     AuthorizedKeysFile {}\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     PidFile none\n\
                     PermitRootLogin yes\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     UseDNS no\n\
                     PrintMotd no\n\
                     MaxStartups 100\n\
                     MaxSessions 100\n\
                     Subsystem sftp internal-sftp -d {}\n\
                     LogLevel INFO\n",
                    host_key.display(),
                    authorized_keys.display(),
                    home.display(),
                )),
            )
            .unwrap();
            let mut child = spawn_sshd(&config, &log, false);
            let listening = format!("Server listening on 127.0.0.1 port {port}.");
            let end = Instant::now() + Duration::from_secs(15);
            let mut started = false;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last_log = fs::read_to_string(&log).unwrap_or_default();
                    eprintln!("harness: sshd on port {port} exited ({status}): {last_log}");
                    break;
                }
                let text = fs::read_to_string(&log).unwrap_or_default();
                if text.contains(&listening) && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    started = true;
                    break;
                }
                if Instant::now() >= end {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("sshd did not start listening on port {port} within 15 s:\n{text}");
                }
                sleep(POLL);
            }
            if started {
                return Sshd {
                    dir,
                    port,
                    user: user.to_string(),
                    client_key,
                    known_hosts,
                    host_key_pub,
                    log,
                    config,
                    child: Mutex::new(Some(child)),
                    tmp,
                };
            }
        }
        panic!("could not start sshd after 10 attempts; last log:\n{last_log}");
    }

    /// The server's home directory (`DIR/home`): relative remote dirs resolve here.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// Server-side path of `rel` under the home directory.
    pub fn remote(&self, rel: &str) -> PathBuf {
        self.home().join(rel)
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

    /// `user@127.0.0.1:dir`.
    pub fn target(&self, remote_dir: &str) -> String {
        format!("{}@127.0.0.1:{remote_dir}", self.user)
    }

    /// The `-o` options every mount uses: this server's identity and known_hosts, strict host
    /// key checking, batch mode, then `extra`, then `SFTPFS_TEST_OPTS`.
    pub fn opts(&self, extra: &[&str]) -> String {
        let mut v = vec![
            format!("IdentityFile={}", self.client_key.display()),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "StrictHostKeyChecking=yes".to_string(),
            "BatchMode=yes".to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        if let Ok(o) = std::env::var("SFTPFS_TEST_OPTS") {
            if !o.is_empty() {
                v.push(o);
            }
        }
        v.join(",")
    }

    /// The binary with a clean environment: `HOME` is this test's temp dir (never the user's
    /// `~/.ssh`), no `SSH_AUTH_SOCK`, stdin from /dev/null. No arguments yet.
    pub fn command(&self) -> Command {
        command_in(&self.dir)
    }

    /// `mount_args`, with the usual `key=` option (`IdentityFile`, `UserKnownHostsFile`)
    /// naming `with` instead.
    pub fn mount_args_with(
        &self,
        remote_dir: &str,
        mnt: &Path,
        key: &str,
        with: &Path,
    ) -> Vec<OsString> {
        let prefix = format!("{key}=");
        let opts: Vec<String> = self
            .opts(&[])
            .split(',')
            .map(|o| match o.starts_with(&prefix) {
                true => format!("{prefix}{}", with.display()),
                false => o.to_string(),
            })
            .collect();
        let mut args = self.mount_args(remote_dir, mnt, &[]);
        args[5] = opts.join(",").into();
        args
    }

    /// `[user@]127.0.0.1:dir MNT -p PORT -o <opts(extra)>`.
    pub fn mount_args(&self, remote_dir: &str, mnt: &Path, extra: &[&str]) -> Vec<OsString> {
        vec![
            self.target(remote_dir).into(),
            mnt.as_os_str().to_owned(),
            "-p".into(),
            self.port.to_string().into(),
            "-o".into(),
            self.opts(extra).into(),
        ]
    }

    /// Server-side path of a remote dir as the binary would resolve it.
    pub fn resolve(&self, remote_dir: &str) -> PathBuf {
        if remote_dir.starts_with('/') {
            PathBuf::from(remote_dir)
        } else if remote_dir.is_empty() {
            self.home()
        } else {
            self.home().join(remote_dir)
        }
    }

    /// The pid of the listening sshd.
    pub fn pid(&self) -> i32 {
        self.child
            .lock()
            .unwrap()
            .as_ref()
            .expect("sshd was killed")
            .id() as i32
    }

    /// The processes serving the current connections (every descendant of the listening
    /// sshd: the privileged monitor and the session process of each), deepest first.
    pub fn connection_pids(&self) -> Vec<i32> {
        match self.child.lock().unwrap().as_ref() {
            Some(c) => descendants(c.id() as i32),
            None => Vec::new(),
        }
    }

    /// SIGKILLs every process serving a connection (the listener stays): the connections
    /// drop as if the server side had crashed. Returns how many processes were killed.
    pub fn kill_connections(&self) -> usize {
        let pids = self.connection_pids();
        kill_and_reap(&pids);
        pids.len()
    }

    /// Waits until at least `n` connections are being served (a monitor and a session
    /// process each); false at the deadline.
    pub fn wait_connections(&self, n: usize, deadline: Duration) -> bool {
        wait_until(deadline, || self.connection_pids().len() >= 2 * n)
    }

    /// SIGSTOPs every process serving a connection, and the listener too when `listener`:
    /// the server freezes without closing anything. Everything resumes when the guard drops.
    pub fn freeze(&self, listener: bool) -> Frozen {
        let mut pids = self.connection_pids();
        if listener {
            pids.push(self.pid());
        }
        for &p in &pids {
            signal(p, libc::SIGSTOP);
        }
        Frozen { pids }
    }

    /// The server is gone: SIGKILLs the connections and the listener (nothing listens on
    /// the port afterwards). [`Sshd::restart`] brings it back.
    pub fn kill_server(&self) {
        let mut child = self.child.lock().unwrap();
        if let Some(mut c) = child.take() {
            kill_and_reap(&descendants(c.id() as i32));
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server (as [`Sshd::kill_server`]) and starts a new one on the same port with
    /// the same keys, config and directories; returns once it accepts connections.
    pub fn restart(&self) {
        self.kill_server();
        let mut child = spawn_sshd(&self.config, &self.log, true);
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "restarted sshd exited ({status}):\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "restarted sshd did not listen on port {} within 15 s",
                    self.port
                );
            }
            sleep(POLL);
        }
        *self.child.lock().unwrap() = Some(child);
    }

    /// Adds this server's host key for `127.0.0.1:port` to its known_hosts (to reach it
    /// through a proxy listening on `port`).
    pub fn trust_port(&self, port: u16) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.known_hosts)
            .unwrap();
        io::Write::write_all(
            &mut f,
            format!("[127.0.0.1]:{port} {}\n", self.host_key_pub).as_bytes(),
        )
        .unwrap();
    }
}

/// Processes SIGSTOPped by [`Sshd::freeze`]; SIGCONT on drop (also when a test fails).
pub struct Frozen {
    pids: Vec<i32>,
}

impl Frozen {
    /// Lets them run again now.
    pub fn thaw(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &p in self.pids.iter().rev() {
            signal(p, libc::SIGCONT);
        }
    }
}

fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The live (not zombie) descendants of `pid`, deepest first.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut children: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("Z");
            let ppid = f.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            if state != "Z" && state != "X" {
                children.push((p, ppid));
            }
        }
    }
    fn walk(of: i32, all: &[(i32, i32)], out: &mut Vec<i32>) {
        for &(p, pp) in all {
            if pp == of {
                walk(p, all, out);
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(pid, &children, &mut out);
    out
}

/// SIGKILLs `pids` (deepest first, as [`descendants`] lists them) and waits until they are
/// gone; reaps those that were re-parented to this process (a subreaper).
fn kill_and_reap(pids: &[i32]) {
    for &p in pids {
        signal(p, libc::SIGCONT);
        signal(p, libc::SIGKILL);
    }
    let me = std::process::id() as i32;
    let gone = wait_until(Duration::from_secs(10), || {
        pids.iter().all(|&p| {
            if parent_of(p) == Some(me) {
                let mut st = 0;
                unsafe { libc::waitpid(p, &mut st, libc::WNOHANG) };
            }
            !is_live(p)
        })
    });
    assert!(gone, "processes {pids:?} did not die after SIGKILL");
}

/// The process exists and is not a zombie.
fn is_live(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(child) = self.child.get_mut().unwrap_or_else(|e| e.into_inner()) {
            signal(child.id() as i32, libc::SIGCONT);
            signal(child.id() as i32, libc::SIGTERM);
            let end = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= end {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                sleep(POLL);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "---- sshd log ({}):\n{}",
                self.log.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// uid and gid of a local user, from /etc/passwd.
pub fn user_ids(user: &str) -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == user {
            return (f[2].parse().unwrap(), f[3].parse().unwrap());
        }
    }
    panic!("no user {user} in /etc/passwd");
}

/// The binary under test with a clean environment (see [`Sshd::command`]).
pub fn command_in(home: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_AGENT_PID")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

// ---------------------------------------------------------------------------------------------
// Running the binary to its exit

/// The outcome of a process run with a deadline.
#[derive(Debug)]
pub struct Run {
    /// `None` when it was still running at the deadline (it was killed then).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The one-line error the contract asks for: exits non-zero (not by a signal, not a
    /// timeout), stderr is exactly one line starting with `sftpfs: `. Returns the line,
    /// lower-cased.
    pub fn one_line_error(&self) -> String {
        let status = self
            .status
            .unwrap_or_else(|| panic!("still running after the deadline; stderr: {}", self.stderr));
        assert!(
            status.code().is_some_and(|c| c != 0),
            "expected a non-zero exit code, got {status}; stderr: {:?}",
            self.stderr
        );
        let text = self.stderr.trim_end();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr, got {}:\n{}",
            lines.len(),
            self.stderr
        );
        assert!(
            lines[0].starts_with("sftpfs: "),
            "stderr does not start with 'sftpfs: ': {:?}",
            lines[0]
        );
        lines[0].to_lowercase()
    }
}

/// Runs `cmd` to its exit, with stdout and stderr sent to files in `dir` (a daemon that
/// inherits them can never block the reading), killing it at `deadline`.
pub fn run_to_exit(mut cmd: Command, dir: &Path, deadline: Duration) -> Run {
    let name = unique("run");
    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    let start = Instant::now();
    let mut child = cmd
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() >= deadline {
            let _ = child.kill();
            break None;
        }
        sleep(POLL);
    };
    let _ = child.wait();
    let elapsed = start.elapsed();
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    Run {
        status,
        stdout,
        stderr,
        elapsed,
    }
}

/// Processes (not zombies) with `arg` as one of their command-line arguments.
pub fn processes_with_arg(arg: &OsStr) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if !cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            continue;
        }
        let state = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true);
        if !zombie {
            pids.push(pid);
        }
    }
    pids
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Mounts

/// How to end a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Fusermount,
    Umount,
    Sigterm,
    Sigint,
}

enum Proc {
    /// The foreground process (`-f`), our child.
    Child(Child),
    /// The daemon left by a background mount (re-parented to us: we are a subreaper).
    Daemon(i32),
    /// Already waited for.
    Gone,
}

/// A live mount of the binary under test, unmounted on drop.
pub struct Mount<'a> {
    pub sshd: &'a Sshd,
    /// The mountpoint.
    pub mnt: PathBuf,
    /// The server-side directory that is mounted.
    pub server: PathBuf,
    /// The binary's stderr.
    pub log: PathBuf,
    proc_: Proc,
}

impl<'a> Mount<'a> {
    /// Mounts `remote_dir` of `sshd` in the foreground (`-f`) with the usual options plus
    /// `extra`, and waits until the mountpoint shows in /proc/self/mountinfo.
    pub fn new(sshd: &'a Sshd, remote_dir: &str, extra: &[&str]) -> Mount<'a> {
        Mount::try_new(sshd, remote_dir, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Mount::new`], but returns the failure (with the binary's stderr) instead.
    pub fn try_new(sshd: &'a Sshd, remote_dir: &str, extra: &[&str]) -> Result<Mount<'a>, String> {
        let mnt = sshd.mountpoint();
        let mut cmd = sshd.command();
        cmd.args(sshd.mount_args(remote_dir, &mnt, extra)).arg("-f");
        Mount::spawn_foreground(sshd, cmd, mnt, sshd.resolve(remote_dir))
    }

    /// Like [`Mount::new`], but connecting to `port` on 127.0.0.1 (a proxy in front of
    /// `sshd`, see [`proxy::Proxy`]) instead of the server's own port. The server's host key
    /// is trusted for that port.
    pub fn via_port(sshd: &'a Sshd, port: u16, remote_dir: &str, extra: &[&str]) -> Mount<'a> {
        sshd.trust_port(port);
        let mnt = sshd.mountpoint();
        let mut args = sshd.mount_args(remote_dir, &mnt, extra);
        assert_eq!(args[2], "-p");
        args[3] = port.to_string().into();
        let mut cmd = sshd.command();
        cmd.args(args).arg("-f");
        Mount::spawn_foreground(sshd, cmd, mnt, sshd.resolve(remote_dir))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `cmd` (the binary with complete arguments including `-f` and `mnt`) and waits for
    /// `mnt` to be mounted.
    pub fn spawn_foreground(
        sshd: &'a Sshd,
        mut cmd: Command,
        mnt: PathBuf,
        server: PathBuf,
    ) -> Result<Mount<'a>, String> {
        let log = sshd.dir.join(format!("{}.log", unique("sftpfs")));
        let logfile = fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        let mut m = Mount {
            sshd,
            mnt,
            server,
            log,
            proc_: Proc::Child(child),
        };
        let end = Instant::now() + MOUNT_DEADLINE;
        loop {
            if is_mounted(&m.mnt) {
                return Ok(m);
            }
            if let Proc::Child(c) = &mut m.proc_ {
                if let Some(status) = c.try_wait().unwrap() {
                    m.proc_ = Proc::Gone;
                    return Err(format!(
                        "{cmd:?} exited ({status}) without mounting:\n{}",
                        m.stderr()
                    ));
                }
            }
            if Instant::now() >= end {
                return Err(format!(
                    "{cmd:?} did not mount {} within {MOUNT_DEADLINE:?}:\n{}",
                    m.mnt.display(),
                    m.stderr()
                ));
            }
            sleep(POLL);
        }
    }

    /// Mounts without `-f`: the parent must exit 0 within the deadline, with the mount
    /// already live at that moment (checked at once, no polling), and leave a daemon behind.
    pub fn background(sshd: &'a Sshd, remote_dir: &str, extra: &[&str]) -> Mount<'a> {
        let mnt = sshd.mountpoint();
        let log = sshd.dir.join(format!("{}.log", unique("sftpfs")));
        let logfile = fs::File::create(&log).unwrap();
        let mut cmd = sshd.command();
        cmd.args(sshd.mount_args(remote_dir, &mnt, extra))
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile);
        let mut parent = cmd.spawn().expect("spawn the binary");
        let parent_pid = parent.id() as i32;
        let end = Instant::now() + MOUNT_DEADLINE;
        let status = loop {
            if let Some(s) = parent.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                let _ = parent.kill();
                let _ = parent.wait();
                let mut m = Mount {
                    sshd,
                    mnt: mnt.clone(),
                    server: sshd.resolve(remote_dir),
                    log,
                    proc_: Proc::Gone,
                };
                m.adopt_daemon(parent_pid);
                panic!(
                    "background mount: the parent did not exit within {MOUNT_DEADLINE:?}:\n{}",
                    m.stderr()
                );
            }
            sleep(POLL);
        };
        let mounted = is_mounted(&mnt);
        let mut m = Mount {
            sshd,
            mnt,
            server: sshd.resolve(remote_dir),
            log,
            proc_: Proc::Gone,
        };
        m.adopt_daemon(parent_pid);
        assert!(
            status.success(),
            "background mount: the parent exited with {status}:\n{}",
            m.stderr()
        );
        assert!(
            mounted,
            "background mount: the parent exited 0 but {} was not mounted at that moment:\n{}",
            m.mnt.display(),
            m.stderr()
        );
        assert!(
            matches!(m.proc_, Proc::Daemon(_)),
            "background mount: no daemon process with {} on its command line",
            m.mnt.display()
        );
        m
    }

    /// Finds the daemon (a process other than the parent with our mountpoint among its
    /// arguments, re-parented to us).
    fn adopt_daemon(&mut self, parent_pid: i32) {
        let me = std::process::id() as i32;
        let pids: Vec<i32> = processes_with_arg(self.mnt.as_os_str())
            .into_iter()
            .filter(|p| *p != parent_pid)
            .collect();
        let ours = pids.iter().copied().find(|p| parent_of(*p) == Some(me));
        if let Some(p) = ours.or(pids.first().copied()) {
            self.proc_ = Proc::Daemon(p);
        }
    }

    /// The pid of the process serving the mount (foreground child or daemon).
    pub fn pid(&self) -> Option<i32> {
        match &self.proc_ {
            Proc::Child(c) => Some(c.id() as i32),
            Proc::Daemon(p) => Some(*p),
            Proc::Gone => None,
        }
    }

    /// `mnt/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.mnt.clone()
        } else {
            self.mnt.join(rel)
        }
    }

    /// Server-side `rel` (under the mounted remote dir).
    pub fn remote(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.server.clone()
        } else {
            self.server.join(rel)
        }
    }

    /// What the binary wrote on stdout and stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ends the mount `how`, then waits (with a deadline) for the process to exit and returns
    /// its exit status. Panics if it does not exit or the mount stays.
    pub fn stop(&mut self, how: Stop) -> ExitStatus {
        match how {
            Stop::Fusermount | Stop::Umount => {
                let run = if how == Stop::Fusermount {
                    run_to_exit(
                        {
                            let mut c = Command::new("fusermount3");
                            c.arg("-u").arg(&self.mnt);
                            c
                        },
                        &self.sshd.dir,
                        EXIT_DEADLINE,
                    )
                } else {
                    run_to_exit(
                        {
                            let mut c = Command::new("umount");
                            c.arg(&self.mnt);
                            c
                        },
                        &self.sshd.dir,
                        EXIT_DEADLINE,
                    )
                };
                assert!(
                    run.status.is_some_and(|s| s.success()),
                    "{how:?} of {} failed ({:?}): {}",
                    self.mnt.display(),
                    run.status,
                    run.stderr
                );
            }
            Stop::Sigterm | Stop::Sigint => {
                let pid = self.pid().expect("no process to signal");
                let sig = if how == Stop::Sigterm {
                    libc::SIGTERM
                } else {
                    libc::SIGINT
                };
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
        let status = self.wait_exit(EXIT_DEADLINE);
        let status = status.unwrap_or_else(|| {
            panic!(
                "the process did not exit within {EXIT_DEADLINE:?} after {how:?}:\n{}",
                self.stderr()
            )
        });
        assert!(
            !is_mounted(&self.mnt),
            "{} is still mounted after {how:?} and the exit of the process",
            self.mnt.display()
        );
        status
    }

    /// Waits for the serving process to exit; `None` at the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            match &mut self.proc_ {
                Proc::Child(c) => {
                    if let Some(s) = c.try_wait().unwrap() {
                        self.proc_ = Proc::Gone;
                        return Some(s);
                    }
                }
                Proc::Daemon(pid) => {
                    let mut status = 0;
                    let r = unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
                    if r == *pid {
                        self.proc_ = Proc::Gone;
                        return Some(ExitStatus::from_raw(status));
                    }
                    if r < 0 {
                        panic!(
                            "daemon {pid} is not a child of the test process: {}",
                            io::Error::last_os_error()
                        );
                    }
                }
                Proc::Gone => panic!("the process was already waited for"),
            }
            if Instant::now() >= end {
                return None;
            }
            sleep(POLL);
        }
    }

    fn kill_hard(&mut self) {
        match &mut self.proc_ {
            Proc::Child(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Proc::Daemon(pid) => unsafe {
                libc::kill(*pid, libc::SIGKILL);
                let mut st = 0;
                libc::waitpid(*pid, &mut st, 0);
            },
            Proc::Gone => {}
        }
        self.proc_ = Proc::Gone;
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if is_mounted(&self.mnt) {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                detach(&self.mnt);
            }
        }
        if !matches!(self.proc_, Proc::Gone) && self.wait_exit(EXIT_DEADLINE).is_none() {
            eprintln!(
                "harness: the process serving {} did not exit after unmount; killing it",
                self.mnt.display()
            );
            self.kill_hard();
        }
        if panicking {
            eprintln!(
                "---- {} log ({}):\n{}",
                binary().display(),
                self.mnt.display(),
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers for the tests

/// Deterministic pseudo-random bytes (xorshift64*), no dependency needed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The errno of an `io::Result`, panicking on success.
pub fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("error without errno: {e}")),
    }
}

/// Asserts `r` failed with `expected` (an errno such as `libc::EEXIST`).
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, expected: i32, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected {}, got Ok({v:?})", errno_name(expected)),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(expected),
            "{what}: expected {}, got {e}",
            errno_name(expected)
        ),
    }
}

pub fn errno_name(e: i32) -> String {
    format!("{} ({e})", io::Error::from_raw_os_error(e))
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Runs a shell-less command with `args`, in `cwd`, asserting success; returns stdout.
#[track_caller]
pub fn sh(cwd: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed ({}):\nstdout: {}\nstderr: {}",
        cwd.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A mount attempt that failed left nothing behind: one line of error (returned, lower-cased),
/// no mount, no process still serving the mountpoint.
#[track_caller]
pub fn failed_cleanly(run: &Run, mnt: &Path) -> String {
    let line = run.one_line_error();
    assert!(
        !is_mounted(mnt),
        "{} is mounted after a failure",
        mnt.display()
    );
    let gone = wait_until(Duration::from_secs(5), || {
        processes_with_arg(mnt.as_os_str()).is_empty()
    });
    assert!(
        gone,
        "a process serving {} is still running after the failure: {:?}",
        mnt.display(),
        processes_with_arg(mnt.as_os_str())
    );
    line
}
