//! [`Server::proftpd`]: ProFTPD's `mod_sftp` (Debian `proftpd-core` + `proftpd-mod-crypto`),
//! standalone, logging in as root, chrooted to `home/` (`DefaultRoot`).

use std::fs;
use std::process::Command;

use super::servers::{Launch, Prepared, Server};
use super::sshd::keygen;

const PROFTPD: &str = "/usr/sbin/proftpd";

/// What ProFTPD's OpenSSH-style SFTP extensions are switched off by `Server::proftpd(false)`.
pub const PROFTPD_EXTENSIONS_OFF: &str = "-posixRename -statvfs -hardlink -fsync -homeDirectory";

impl Server {
    /// ProFTPD with `mod_sftp`, with its SFTP extensions as shipped (`extensions`), or with
    /// the OpenSSH-style ones switched off ([`PROFTPD_EXTENSIONS_OFF`]), as a server
    /// without `posix-rename@openssh.com`, `statvfs@openssh.com`, ... is. Named `proftpd` or
    /// `proftpd-noext`.
    pub fn proftpd(extensions: bool) -> Server {
        assert!(
            std::path::Path::new("/usr/lib/proftpd/mod_sftp.so").exists(),
            "ProFTPD's mod_sftp is missing: apt-get install proftpd-core proftpd-mod-crypto \
             (see .ci/run)"
        );
        let name = if extensions {
            "proftpd"
        } else {
            "proftpd-noext"
        };
        let p = Prepared::new(name, "root");
        let host_key = p.keys.join("host_ed25519_key");
        let host_key_pub = keygen(&host_key);
        // mod_sftp reads authorized keys in RFC 4716 form.
        let out = Command::new("ssh-keygen")
            .arg("-e")
            .arg("-f")
            .arg(p.client_key.with_extension("pub"))
            .output()
            .expect("ssh-keygen -e");
        assert!(out.status.success(), "ssh-keygen -e failed");
        let authorized = p.keys.join("authorized_keys.rfc4716");
        fs::write(&authorized, &out.stdout).unwrap();
        let config = p.keys.join("proftpd.conf");
        let sftp_log = p.dir.join("proftpd-sftp.log");
        let system_log = p.dir.join("proftpd-system.log");
        let (dir, home) = (p.dir.clone(), p.home.clone());
        let extensions_line = match extensions {
            true => String::new(),
            false => format!("SFTPExtensions {PROFTPD_EXTENSIONS_OFF}\n"),
        };
        let write_config = |port: u16| {
            fs::write(
                &config,
                format!(
                    "ServerType standalone\n\
                     ServerName sftpfs-test\n\
                     DefaultAddress 127.0.0.1\n\
                     SocketBindTight on\n\
                     UseIPv6 off\n\
                     Port {port}\n\
                     User root\n\
                     Group root\n\
                     PidFile {dir}/proftpd.pid\n\
                     ScoreboardFile {dir}/proftpd.scoreboard\n\
                     DelayTable none\n\
                     WtmpLog off\n\
                     TransferLog none\n\
                     UseReverseDNS off\n\
                     SystemLog {system_log}\n\
                     RootLogin on\n\
                     UseFtpUsers off\n\
                     AllowOverwrite on\n\
                     Umask 022\n\
                     DefaultRoot {home}\n\
                     ModulePath /usr/lib/proftpd\n\
                     LoadModule mod_sftp.c\n\
                     SFTPEngine on\n\
                     SFTPLog {sftp_log}\n\
                     SFTPHostKey {host_key}\n\
                     SFTPAuthMethods publickey\n\
                     SFTPAuthorizedUserKeys file:{authorized}\n\
                     {extensions_line}",
                    dir = dir.display(),
                    home = home.display(),
                    system_log = system_log.display(),
                    sftp_log = sftp_log.display(),
                    host_key = host_key.display(),
                    authorized = authorized.display(),
                ),
            )
            .unwrap();
        };
        let config_arg = config.clone();
        let command = move |_port: u16| {
            let mut c = Command::new(PROFTPD);
            c.arg("-n").arg("-c").arg(&config_arg);
            if super::servers::debug_logs() {
                c.args(["-d", "10"]);
            }
            c
        };
        Server::launch(
            p,
            Launch {
                command: &command,
                host_key_pub,
                root_is_home: true,
                other_logs: vec![sftp_log.clone(), system_log.clone()],
                before_start: &write_config,
            },
        )
    }
}
