//! [`Server::rclone`]: `rclone serve sftp` (Debian `rclone`; Go's SSH and SFTP packages),
//! serving `home/` from rclone's local backend, without its VFS cache (the default).

use std::process::Command;

use super::servers::{Launch, Prepared, Server};
use super::sshd::keygen;

const RCLONE: &str = "/usr/bin/rclone";

impl Server {
    /// `rclone serve sftp HOME`, public key authentication, any user name (`root` is used).
    pub fn rclone() -> Server {
        assert!(
            std::path::Path::new(RCLONE).exists(),
            "rclone is missing: apt-get install rclone (see .ci/run)"
        );
        let p = Prepared::new("rclone", "root");
        let host_key = p.keys.join("host_ed25519_key");
        let host_key_pub = keygen(&host_key);
        let authorized = p.keys.join("authorized_keys");
        std::fs::write(&authorized, format!("{}\n", p.client_pub)).unwrap();
        let config = p.keys.join("rclone.conf");
        let home = p.home.clone();
        let command = move |port: u16| {
            let mut c = Command::new(RCLONE);
            c.args(["serve", "sftp"])
                .arg(&home)
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--key")
                .arg(&host_key)
                .arg("--authorized-keys")
                .arg(&authorized)
                .arg("--config")
                .arg(&config)
                .arg(if super::servers::debug_logs() {
                    "-vv"
                } else {
                    "-v"
                });
            c
        };
        Server::launch(
            p,
            Launch {
                command: &command,
                host_key_pub,
                root_is_home: false,
                other_logs: Vec::new(),
                before_start: &|_| {},
            },
        )
    }
}
