//! The typed configuration every component reads. Built once by `cli` from the command line,
//! fstab options and the environment; no component reads the environment or files on its own.

use std::path::PathBuf;
use std::time::Duration;

/// How to treat a host key that is not in any known_hosts file (ssh's `StrictHostKeyChecking`).
/// A *changed* key is refused whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown keys.
    Yes,
    /// Accept and record unknown keys.
    AcceptNew,
    /// Accept unknown keys (and record them, as ssh does).
    No,
    /// Ask on the terminal; refuse when there is none or in batch mode. ssh's default.
    Ask,
}

/// Everything the SSH layer needs to reach and authenticate to the server.
#[derive(Debug, Clone)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Explicit `IdentityFile=` options, in order; when empty the defaults
    /// (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`) are tried, those that exist.
    pub identity_files: Vec<PathBuf>,
    /// True when `identity_files` came from the user (then a missing file is an error).
    pub identity_files_explicit: bool,
    /// Files searched for known host keys, in order. The first is where new keys are recorded.
    pub user_known_hosts_files: Vec<PathBuf>,
    pub global_known_hosts_files: Vec<PathBuf>,
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// Never prompt (ssh's `BatchMode=yes`).
    pub batch_mode: bool,
    /// Read the password as one line from standard input instead of the terminal.
    pub password_stdin: bool,
    /// ssh-agent socket (`SSH_AUTH_SOCK`), if any.
    pub agent_socket: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// SSH keepalive (`ServerAliveInterval`; zero disables) and how many may go unanswered.
    pub server_alive_interval: Duration,
    pub server_alive_count_max: usize,
    /// `-F file`.
    pub config_file: Option<PathBuf>,
}

/// What the filesystem core and the FUSE mount need.
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Remote directory as given (`dir` of `host:dir`): absolute, relative to the remote home,
    /// or empty for the home. Bytes: remote names need not be UTF-8.
    pub remote_dir: Vec<u8>,
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub default_permissions: bool,
    /// Override the owner / group reported for every file.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Bits removed from every reported mode.
    pub umask: Option<u32>,
    /// Deadline for every remote request.
    pub request_timeout: Duration,
    /// Kernel entry / attribute cache time-outs.
    pub entry_timeout: Duration,
    pub attr_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct MountConfig {
    /// `user@host:dir` as the user wrote it; shown as the mount's source in /proc/mounts.
    pub source: String,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub debug: bool,
    pub ssh: SshConfig,
    pub fs: FsConfig,
}
