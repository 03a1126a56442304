//! [`Server::gesftpserver`]: Green End SFTP server (Debian `gesftpserver`), as the `sftp`
//! subsystem of a private OpenSSH sshd; root logs in, and root's home is the throwaway `home/`.

use std::fs;
use std::process::Command;

use super::servers::{Launch, Prepared, Server};
use super::sshd::keygen;
use super::SSHD;

/// The binary (`dpkg -L gesftpserver`).
pub const GESFTPSERVER: &str = "/usr/libexec/gesftpserver";

impl Server {
    /// OpenSSH's sshd with `Subsystem sftp /usr/libexec/gesftpserver`.
    pub fn gesftpserver() -> Server {
        assert!(
            std::path::Path::new(GESFTPSERVER).exists(),
            "{GESFTPSERVER} is missing: apt-get install gesftpserver (see .ci/run)"
        );
        let p = Prepared::new("gesftpserver", "root");
        let host_key = p.keys.join("host_ed25519_key");
        let host_key_pub = keygen(&host_key);
        let authorized = p.keys.join("authorized_keys");
        fs::write(&authorized, format!("{}\n", p.client_pub)).unwrap();
        let config = p.keys.join("sshd_config");
        let write_config = |port: u16| {
            fs::write(
                &config,
                super::sshd::sshd_config(
                    port,
                    &host_key,
                    &authorized,
                    GESFTPSERVER,
                    if super::servers::debug_logs() {
                        "DEBUG1"
                    } else {
                        "INFO"
                    },
                ),
            )
            .unwrap();
        };
        let config_arg = config.clone();
        let command = move |_port: u16| {
            let mut c = Command::new(SSHD);
            c.args(["-D", "-e", "-f"]).arg(&config_arg);
            c
        };
        Server::launch(
            p,
            Launch {
                command: &command,
                host_key_pub,
                root_is_home: true,
                other_logs: Vec::new(),
                before_start: &write_config,
            },
        )
    }
}
