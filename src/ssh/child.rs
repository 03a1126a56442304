//! A child process as a byte stream: its standard output is read, its standard input written.
//! Carries an SSH connection (`ProxyCommand`) or SFTP itself (`ssh_command=`). The child's
//! standard error is ours, so that ssh's own prompts and messages reach the user; it is killed
//! when the stream is dropped.

use std::ffi::OsStr;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct ChildStream {
    stdin: ChildStdin,
    stdout: ChildStdout,
    child: Child,
}

impl std::fmt::Debug for ChildStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildStream")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl ChildStream {
    /// Starts `program args...` with piped standard input and output and our standard error.
    pub fn spawn(
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> io::Result<ChildStream> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::from_command(cmd)
    }

    /// `/bin/sh -c "exec COMMAND"`, as ssh runs a `ProxyCommand`.
    pub fn shell(command: &str) -> io::Result<ChildStream> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(format!("exec {command}"));
        Self::from_command(cmd)
    }

    fn from_command(mut cmd: Command) -> io::Result<ChildStream> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(ChildStream {
            stdin,
            stdout,
            child,
        })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the child has exited, and how (`None` while it runs).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl AsyncRead for ChildStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for ChildStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn talks_to_a_child_and_kills_it_on_drop() {
        let mut s = ChildStream::spawn("cat", [""; 0]).unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        let pid = s.id().unwrap() as i32;
        drop(s);
        let gone = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty()
                || stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        });
        assert!(gone, "the child outlived its stream");
    }

    #[tokio::test]
    async fn shell_expands_nothing_itself_but_runs_the_command() {
        let mut s = ChildStream::shell("printf '%s' ok").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"ok");
    }
}
