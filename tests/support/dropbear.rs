//! [`Server::dropbear`]: Dropbear (Debian `dropbear-bin`), which runs `/usr/lib/sftp-server`
//! (a path compiled in; Debian's `openssh-sftp-server` puts OpenSSH's `sftp-server` there).
//! Root logs in; root's home is the throwaway `home/`, where `~/.ssh/authorized_keys` is.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::servers::{Launch, Prepared, Server};

const DROPBEAR: &str = "/usr/sbin/dropbear";
const DROPBEARKEY: &str = "/usr/bin/dropbearkey";
/// The SFTP server dropbear runs (compiled in).
pub const DROPBEAR_SFTP_SERVER: &str = "/usr/lib/sftp-server";

impl Server {
    /// Dropbear with public key logins only, its SFTP subsystem being `/usr/lib/sftp-server`.
    pub fn dropbear() -> Server {
        for (path, package) in [
            (DROPBEAR, "dropbear-bin"),
            (DROPBEARKEY, "dropbear-bin"),
            (DROPBEAR_SFTP_SERVER, "openssh-sftp-server"),
        ] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: apt-get install {package} (see .ci/run)"
            );
        }
        let p = Prepared::new("dropbear", "root");
        let host_key = p.keys.join("dropbear_ed25519_host_key");
        let out = Command::new(DROPBEARKEY)
            .args(["-t", "ed25519", "-f"])
            .arg(&host_key)
            .output()
            .expect("dropbearkey");
        assert!(out.status.success(), "dropbearkey failed: {out:?}");
        let host_key_pub = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("ssh-ed25519 "))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .expect("dropbearkey printed no public key");
        // `~/.ssh/authorized_keys` of root, whose home is `home/` in the server's namespace.
        let dot_ssh = p.home.join(".ssh");
        fs::create_dir(&dot_ssh).unwrap();
        fs::set_permissions(&dot_ssh, fs::Permissions::from_mode(0o700)).unwrap();
        let authorized = dot_ssh.join("authorized_keys");
        fs::write(&authorized, format!("{}\n", p.client_pub)).unwrap();
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o600)).unwrap();
        let pid_file = p.dir.join("dropbear.pid");
        let command = move |port: u16| {
            let mut c = Command::new(DROPBEAR);
            c.args(["-F", "-E", "-s", "-m", "-j", "-k", "-p"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("-r")
                .arg(&host_key)
                .arg("-P")
                .arg(&pid_file);
            c
        };
        Server::launch(
            p,
            Launch {
                command: &command,
                host_key_pub,
                root_is_home: true,
                other_logs: Vec::new(),
                before_start: &|_| {},
            },
        )
    }
}
