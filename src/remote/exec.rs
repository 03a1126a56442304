//! Running a command on the server beside the SFTP session (an SSH `exec` channel), for what
//! SFTP cannot ask: hashes of files (`remote/hash/`). Only some transports can: the built-in
//! SSH client (a channel of a connection the pool already has) and `ssh_command` (one more
//! `ssh ... host sh`, a session of the master connection with the system ssh).

use std::time::Duration;

/// What a command printed, and how it ended.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    /// The start of what it printed on standard error, for a log line.
    pub stderr: Vec<u8>,
    /// Its exit status, when the server said.
    pub status: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// This transport has no way to run a command (directport, passive).
    #[error("{0}")]
    Unavailable(String),
    /// The server would not run it (exec refused, the channel refused or closed at once).
    #[error("{0}")]
    Refused(String),
    /// It ran but went wrong: the connection broke, the deadline passed, too much output.
    #[error("{0}")]
    Failed(String),
}

/// Bounds on one command: what it may print, how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct ExecLimits {
    pub max_output: usize,
    pub deadline: Duration,
}

/// Bytes of standard error kept for the log.
pub const STDERR_KEPT: usize = 1024;

/// Collects a command's output within `limits`; `Err` once it printed more than allowed.
#[derive(Debug, Default)]
pub struct Collector {
    pub out: ExecOutput,
}

impl Collector {
    pub fn stdout(&mut self, data: &[u8], limits: &ExecLimits) -> Result<(), ExecError> {
        if self.out.stdout.len() + data.len() > limits.max_output {
            return Err(ExecError::Failed(format!(
                "the command printed more than {} bytes",
                limits.max_output
            )));
        }
        self.out.stdout.extend_from_slice(data);
        Ok(())
    }

    pub fn stderr(&mut self, data: &[u8]) {
        let room = STDERR_KEPT.saturating_sub(self.out.stderr.len());
        self.out
            .stderr
            .extend_from_slice(&data[..data.len().min(room)]);
    }
}
