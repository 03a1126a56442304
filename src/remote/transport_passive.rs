//! `passive` (sshfs's transport): SFTP on sftpfs's own standard input and output, which the
//! caller has connected to an sftp-server (e.g. `dpipe /usr/lib/openssh/sftp-server = ssh host
//! sftpfs :dir mnt -o passive`). There is one stream only: the pool has one member and a lost
//! stream cannot be replaced.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use super::transport::{Opened, Transport};

pub struct PassiveTransport {
    /// Input and output, until the one stream is opened.
    fds: Mutex<Option<(OwnedFd, OwnedFd)>>,
}

impl PassiveTransport {
    /// Takes over standard input and output: keeps copies of them for SFTP, and points fd 0 at
    /// /dev/null and fd 1 at standard error, so that nothing else reads or writes the SFTP
    /// stream (and a daemon detaching later does not close it).
    pub fn from_stdio() -> Result<PassiveTransport, String> {
        let err = |e: io::Error| format!("passive: cannot use standard input/output: {e}");
        let dup = |fd: i32| -> io::Result<OwnedFd> {
            // SAFETY: fds 0 and 1 are open for the life of the process; the copy is ours.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            borrowed.try_clone_to_owned()
        };
        let input = dup(0).map_err(err)?;
        let output = dup(1).map_err(err)?;
        let null = std::fs::File::open("/dev/null").map_err(err)?;
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(2, 1);
        }
        Self::from_fds(input, output)
    }

    /// SFTP read from `input` and written to `output` (pipes or sockets).
    pub fn from_fds(input: OwnedFd, output: OwnedFd) -> Result<PassiveTransport, String> {
        Ok(PassiveTransport {
            fds: Mutex::new(Some((input, output))),
        })
    }
}

#[async_trait::async_trait]
impl Transport for PassiveTransport {
    async fn open(&self) -> Result<Opened, String> {
        let fds = self.fds.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (input, output) = fds.ok_or(
            "passive: the SFTP stream on standard input/output was lost; it cannot be replaced",
        )?;
        // Registered with the reactor here, inside the runtime.
        let stream = FdStream::new(input, output).map_err(|e| {
            format!("passive: standard input and output must be pipes or sockets ({e})")
        })?;
        Ok(Opened {
            stream: Box::new(stream),
            keep_alive: Box::new(()),
            banner: None,
        })
    }

    fn max_connections(&self) -> Option<usize> {
        Some(1)
    }

    fn can_reconnect(&self) -> bool {
        false
    }

    async fn exec(
        &self,
        _command: &str,
        _stdin: &[u8],
        _limits: super::exec::ExecLimits,
    ) -> Result<super::exec::ExecOutput, super::exec::ExecError> {
        Err(super::exec::ExecError::Unavailable(
            "passive is SFTP on standard input and output: no SSH to run a command with".into(),
        ))
    }
}

/// Non-blocking reads from one descriptor and writes to another, through the runtime's
/// reactor.
pub struct FdStream {
    input: AsyncFd<OwnedFd>,
    output: AsyncFd<OwnedFd>,
}

impl FdStream {
    fn new(input: OwnedFd, output: OwnedFd) -> io::Result<FdStream> {
        set_nonblocking(&input)?;
        set_nonblocking(&output)?;
        // SAFETY: the descriptors are owned by the AsyncFds, open until they are dropped.
        let input = unsafe { AsyncFd::register_with_interest(input, Interest::READABLE) }?;
        let output = unsafe { AsyncFd::register_with_interest(output, Interest::WRITABLE) }?;
        Ok(FdStream { input, output })
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

impl AsyncRead for FdStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.input.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), unfilled).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.output.poll_write_ready(cx))?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref().as_fd(), buf).map_err(io::Error::from))
            {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
