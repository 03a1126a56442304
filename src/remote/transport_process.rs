//! `ssh_command=CMD` (sshfs's transport): run the system `ssh` (or CMD) with sshfs's arguments
//! and speak SFTP over its standard input and output. One child per pool member; it is killed
//! when its stream is dropped. Its standard error is ours, so ssh can ask for a password or
//! passphrase on the terminal at mount time (FIDO keys, GSSAPI, ControlMaster, wrappers such
//! as sshpass all work, since ssh does them).

use crate::config::MountConfig;
use crate::ssh::ChildStream;

use super::exec::{Collector, ExecError, ExecLimits, ExecOutput, STDERR_KEPT};
use super::transport::{Opened, Transport};

pub struct CommandTransport {
    program: String,
    args: Vec<String>,
    /// For a command on the server (`exec`): the same arguments up to the host, with
    /// `BatchMode` (nobody can answer a prompt then), then `sh`.
    exec_args: Vec<String>,
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
        let mut exec_args = args.clone();
        exec_args.extend(["-oBatchMode=yes".to_string(), ssh.host_alias.clone()]);
        exec_args.push("sh".into());
        args.push(ssh.host_alias.clone());
        match ssh.sftp_server.as_deref() {
            Some(cmd) if cmd.contains('/') => args.push(cmd.to_string()),
            Some(name) => args.extend(["-s".to_string(), name.to_string()]),
            None => args.extend(["-s".to_string(), "sftp".to_string()]),
        }
        Ok(CommandTransport {
            program: program.clone(),
            args,
            exec_args,
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

    /// One more `ssh ... host sh` (with the system ssh, a session of the first one's master
    /// connection), `command` being the script on its standard input: the only command this
    /// transport runs is `sh`, which reads what to do from there.
    async fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        limits: ExecLimits,
    ) -> Result<ExecOutput, ExecError> {
        if command != "sh" {
            return Err(ExecError::Unavailable(
                "ssh_command= runs only sh on the server".into(),
            ));
        }
        run_child(&self.program, &self.exec_args, stdin, limits).await
    }
}

/// Runs `program args`, feeds it `stdin`, collects its output within `limits`; killed at the
/// deadline.
async fn run_child(
    program: &str,
    args: &[String],
    stdin: &[u8],
    limits: ExecLimits,
) -> Result<ExecOutput, ExecError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ExecError::Unavailable(format!("cannot run ssh_command '{program}': {e}")))?;
    let mut input = child.stdin.take().expect("piped");
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let input_bytes = stdin.to_vec();
    let ran = async {
        let feed = async {
            // A command that exits without reading all of it is not an error here.
            let _ = input.write_all(&input_bytes).await;
            drop(input);
        };
        let collect = async {
            let mut got = Collector::default();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = out
                    .read(&mut buf)
                    .await
                    .map_err(|e| ExecError::Failed(format!("ssh_command: {e}")))?;
                if n == 0 {
                    break;
                }
                got.stdout(&buf[..n], &limits)?;
            }
            Ok::<_, ExecError>(got)
        };
        // Read to its end (a full pipe would stop the child), the start kept.
        let errors = async {
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            kept
        };
        let ((), got, kept) = tokio::join!(feed, collect, errors);
        let mut got = got?;
        got.stderr(&kept);
        let status = child
            .wait()
            .await
            .map_err(|e| ExecError::Failed(format!("ssh_command: {e}")))?;
        got.out.status = status.code().map(|c| c as u32);
        Ok(got.out)
    };
    match tokio::time::timeout(limits.deadline, ran).await {
        Ok(r) => r,
        Err(_) => Err(ExecError::Failed(format!(
            "the command did not end within {} s",
            limits.deadline.as_secs()
        ))),
    }
}
