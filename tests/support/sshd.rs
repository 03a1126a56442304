//! [`Sshd`]: the private OpenSSH server of a test, in its own mount namespace, with its keys.

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::environment::require_environment;
use super::faults::{freeze_tree, kill_and_reap, signal, Frozen};
use super::mountinfo::mountinfo;
use super::process::{command_in, descendants};
use super::tempdir::TempDir;
use super::{unique, wait_until, POLL, SSHD};

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
                edit(sshd_config(
                    port,
                    &host_key,
                    &authorized_keys,
                    &format!("internal-sftp -d {}", home.display()),
                    "INFO",
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
        mount_opts(&self.client_key, &self.known_hosts, extra)
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

    /// The server is gone: SIGKILLs the listener and the connections (nothing listens on
    /// the port afterwards, and no connection lives on). [`Sshd::restart`] brings it back.
    pub fn kill_server(&self) {
        let mut child = self.child.lock().unwrap();
        if let Some(mut c) = child.take() {
            // All stopped first: a reconnect (the mount makes them at any time, for its
            // background revalidation) accepted by the listener after its connections were
            // killed and before it was would be served by a child that outlives it.
            let connections = freeze_tree(c.id() as i32);
            let _ = c.kill();
            let _ = c.wait();
            // Re-parented to this process (a subreaper), which reaps them.
            kill_and_reap(&connections);
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

/// The configuration of a private sshd on 127.0.0.1:`port`: public keys only, root allowed,
/// `subsystem` as its `sftp` subsystem.
pub fn sshd_config(
    port: u16,
    host_key: &Path,
    authorized_keys: &Path,
    subsystem: &str,
    log_level: &str,
) -> String {
    format!(
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
         Subsystem sftp {subsystem}\n\
         LogLevel {log_level}\n",
        host_key.display(),
        authorized_keys.display(),
    )
}

impl Sshd {
    /// `sftp_server=SCRIPT`: OpenSSH's sftp-server in this server's home, started by a
    /// script that runs the shell lines `before`, then `wrapper` (a command that runs the
    /// server), passing the server `args`: a server that misbehaves on purpose (limits,
    /// refused requests).
    pub fn sftp_server_script(
        &self,
        name: &str,
        before: &str,
        wrapper: &str,
        args: &str,
    ) -> String {
        let script = self.local(name);
        fs::write(
            &script,
            format!(
                "#!/bin/sh\n{before}exec {wrapper}/usr/lib/openssh/sftp-server -d {} {args}\n",
                self.home().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        format!("sftp_server={}", script.display())
    }
}

/// The `-o` options of every test mount: the server's identity and known_hosts, strict host
/// key checking, batch mode, then `extra`, then `SFTPFS_TEST_OPTS`.
pub fn mount_opts(client_key: &Path, known_hosts: &Path, extra: &[&str]) -> String {
    let mut v = vec![
        format!("IdentityFile={}", client_key.display()),
        format!("UserKnownHostsFile={}", known_hosts.display()),
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
