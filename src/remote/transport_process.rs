//! `ssh_command=CMD` (sshfs's transport): run the system `ssh` (or CMD) with sshfs's arguments
//! and speak SFTP over its standard input and output. One child per pool member; it is killed
//! when its stream is dropped. Its standard error is ours, so ssh can ask for a password or
//! passphrase on the terminal at mount time (FIDO keys, GSSAPI, ControlMaster, wrappers such
//! as sshpass all work, since ssh does them).

use crate::config::MountConfig;
use crate::ssh::ChildStream;

use super::transport::{Opened, Transport};

pub struct CommandTransport {
    program: String,
    args: Vec<String>,
}

impl CommandTransport {
    /// `words` is `ssh_command` split into words (the program first). The arguments follow
    /// sshfs: `-x -a -oClearAllForwardings=yes`, the ssh options given on the command line as
    /// `-oName=value`, `-p PORT` and `-l USER` when given, `-F FILE`, the host as written, then
    /// `-s sftp` (or `-s NAME` / the command of `sftp_server=`).
    pub fn new(words: &[String], cfg: &MountConfig) -> Result<CommandTransport, String> {
        let (program, first_args) = words
            .split_first()
            .ok_or("ssh_command is empty; give a command such as ssh")?;
        let ssh = &cfg.ssh;
        let mut args: Vec<String> = first_args.to_vec();
        args.extend(["-x", "-a", "-oClearAllForwardings=yes"].map(String::from));
        for (name, value) in &ssh.command_line_options {
            // Port and user go as -p and -l below (whichever way they were given).
            if name.eq_ignore_ascii_case("port") || name.eq_ignore_ascii_case("user") {
                continue;
            }
            args.push(format!("-o{name}={value}"));
        }
        if cfg.ssh_explicit.port {
            args.extend(["-p".to_string(), ssh.port.to_string()]);
        }
        if cfg.ssh_explicit.user {
            args.extend(["-l".to_string(), ssh.user.clone()]);
        }
        if let Some(f) = &ssh.config_file {
            args.extend(["-F".to_string(), f.display().to_string()]);
        }
        // ssh asks for a password or code at mount time, on the terminal; the pool's other
        // members (started later, in the background) would have to ask again. With the system
        // ssh, the first one becomes a connection master, and the others are sessions of it:
        // asked once. In a directory only this user can enter, one socket per mount (two
        // mounts of one server must not depend on each other's ssh). Unless the user set
        // up multiplexing themselves.
        let own_mux = ssh.command_line_options.iter().any(|(n, _)| {
            ["controlmaster", "controlpath", "controlpersist"]
                .contains(&n.to_ascii_lowercase().as_str())
        });
        let is_ssh = std::path::Path::new(program).file_name() == Some("ssh".as_ref());
        if is_ssh && !own_mux {
            if let Ok(dir) = crate::status::socket::make_dir() {
                let path = dir.join(format!("cm-{}", std::process::id()));
                args.push("-oControlMaster=auto".into());
                args.push(format!("-oControlPath={}", path.display()));
                args.push("-oControlPersist=no".into());
            }
        }
        // The CLI has refused hosts that start with '-': this is never read as an option.
        args.push(ssh.host_alias.clone());
        match ssh.sftp_server.as_deref() {
            Some(cmd) if cmd.contains('/') => args.push(cmd.to_string()),
            Some(name) => args.extend(["-s".to_string(), name.to_string()]),
            None => args.extend(["-s".to_string(), "sftp".to_string()]),
        }
        Ok(CommandTransport {
            program: program.clone(),
            args,
        })
    }

    /// The command line, program first.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

#[async_trait::async_trait]
impl Transport for CommandTransport {
    async fn open(&self) -> Result<Opened, String> {
        tracing::debug!("running {}", self.argv().join(" "));
        let child = ChildStream::spawn(&self.program, &self.args)
            .map_err(|e| format!("cannot run ssh_command '{}': {e}", self.program))?;
        Ok(Opened {
            stream: Box::new(child),
            keep_alive: Box::new(()),
            // ssh keeps the server's identification to itself.
            banner: None,
        })
    }
}
