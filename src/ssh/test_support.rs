//! Test fixtures: temporary directories, a test `SshConfig`, throwaway keys and a private
//! OpenSSH `sshd` on 127.0.0.1 (never port 22, never the user's ~/.ssh).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::config::{SshConfig, StrictHostKeyChecking};

/// A directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "sftpfs-ssh-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}

/// A config that touches nothing outside the test: no files, no agent, no prompts.
pub(crate) fn config(host: &str, port: u16) -> SshConfig {
    SshConfig {
        host: host.into(),
        port,
        user: current_user(),
        identity_files: Vec::new(),
        identity_files_explicit: true,
        user_known_hosts_files: Vec::new(),
        global_known_hosts_files: Vec::new(),
        strict_host_key_checking: StrictHostKeyChecking::Yes,
        batch_mode: true,
        password_stdin: false,
        agent_socket: None,
        connect_timeout: Duration::from_secs(10),
        server_alive_interval: Duration::ZERO,
        server_alive_count_max: 3,
        config_file: None,
        host_alias: host.into(),
        host_key_alias: None,
        identities_only: false,
        proxy: None,
        jump_hosts: Vec::new(),
        ciphers: None,
        kex_algorithms: None,
        macs: None,
        compression: false,
        sftp_server: None,
        command_line_options: Vec::new(),
    }
}

/// `ssh-keygen -t ed25519` into `dir/name`; returns the private key path.
pub(crate) fn keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", "test", "-N", passphrase, "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
    path
}

/// `type base64` of a public key file, without its comment.
pub(crate) fn public_key_text(private_key: &Path) -> String {
    let mut p = private_key.as_os_str().to_owned();
    p.push(".pub");
    let text = fs::read_to_string(PathBuf::from(p)).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `check` holds, or panic with `what` after `limit`.
pub(crate) fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private sshd, killed on drop.
pub(crate) struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
    /// The client key listed in authorized_keys.
    pub client_key: PathBuf,
    /// A known_hosts file listing the host key.
    pub known_hosts: PathBuf,
}

impl Sshd {
    pub(crate) fn start() -> Sshd {
        Self::start_with(true, "")
    }

    /// `extra` sshd_config lines come first, so they win over ours (sshd takes the first
    /// value of an option).
    pub(crate) fn start_with(sftp: bool, extra: &str) -> Sshd {
        let dir = TempDir::new();
        let d = dir.path();
        let host_key = keygen(d, "hostkey", "");
        let client_key = keygen(d, "client", "");
        fs::write(
            d.join("authorized_keys"),
            format!("{}\n", public_key_text(&client_key)),
        )
        .unwrap();
        let port = free_port();
        let subsystem = if sftp {
            "Subsystem sftp internal-sftp\n"
        } else {
            ""
        };
        let config = format!(
            "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             StrictModes no\nUsePAM no\nPidFile none\nPermitRootLogin yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n{subsystem}",
            host_key.display(),
            d.join("authorized_keys").display()
        );
        fs::write(d.join("sshd_config"), config).unwrap();
        fs::create_dir_all("/run/sshd").unwrap();
        let log = fs::File::create(d.join("sshd.log")).unwrap();
        let mut child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd");
        let known_hosts = d.join("known_hosts");
        fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", public_key_text(&host_key)),
        )
        .unwrap();
        wait_for(Duration::from_secs(10), "sshd to listen", || {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                panic!("sshd exited ({status}): {log}");
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sshd {
            child,
            port,
            dir,
            client_key,
            known_hosts,
        }
    }

    /// Processes serving connections (the descendants of the listening sshd).
    pub(crate) fn session_pids(&self) -> Vec<i32> {
        fn children(pid: i32, out: &mut Vec<i32>) {
            let tasks = fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten();
            for task in tasks.flatten() {
                let list = fs::read_to_string(task.path().join("children")).unwrap_or_default();
                for child in list.split_whitespace().filter_map(|c| c.parse().ok()) {
                    out.push(child);
                    children(child, out);
                }
            }
        }
        let mut out = Vec::new();
        children(self.child.id() as i32, &mut out);
        out
    }

    /// Connects with the client key and the known_hosts file listing the host key.
    pub(crate) fn config(&self) -> SshConfig {
        let mut cfg = config("127.0.0.1", self.port);
        cfg.identity_files = vec![self.client_key.clone()];
        cfg.user_known_hosts_files = vec![self.known_hosts.clone()];
        cfg
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private ssh-agent holding `key`, killed on drop.
pub(crate) struct Agent {
    child: Child,
    pub socket: PathBuf,
}

impl Agent {
    pub(crate) fn start(dir: &Path, key: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let agent = Agent { child, socket };
        wait_for(Duration::from_secs(10), "ssh-agent socket", || {
            agent.socket.exists()
        });
        // The socket file appears at bind(), a moment before the agent listens: retry.
        let mut added = false;
        for _ in 0..50 {
            let status = Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("ssh-add");
            if status.success() {
                added = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(added, "ssh-add failed");
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
