//! Going to the background the way mount helpers expect: fork before any thread exists, let
//! the child connect (prompting on the terminal if it must) and mount, and have the parent exit
//! 0 only once the mount is live, or with the child's failure.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Held by the child; `ready` releases the waiting parent.
pub struct Ready(File);

/// Forks. In the parent this waits for the child's word and exits; only the child returns.
pub fn fork_and_wait() -> std::io::Result<Ready> {
    let (rd, wr): (OwnedFd, OwnedFd) = nix::unistd::pipe()?;
    // SAFETY: called from main before any thread or runtime has been started.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(rd);
            Ok(Ready(File::from(wr)))
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut byte = [0u8; 1];
            let mut rd = File::from(rd);
            if matches!(rd.read(&mut byte), Ok(1)) && byte[0] == b'1' {
                std::process::exit(0);
            }
            // The child ended (or closed the pipe) without mounting: pass its status on.
            let code = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, c)) if c != 0 => c,
                _ => 1,
            };
            std::process::exit(code);
        }
    }
}

impl Ready {
    /// The mount is live: detach from the terminal and let the parent exit 0.
    pub fn ready(mut self) {
        let _ = nix::unistd::setsid();
        let _ = std::env::set_current_dir("/");
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            for fd in 0..3 {
                // SAFETY: dup2 onto the standard descriptors, which this process owns.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
        let _ = self.0.write_all(b"1");
    }
}
