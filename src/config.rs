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
    /// Host name or address as written, without the brackets of an IPv6 literal
    /// (`[::1]:dir` gives `::1`). Not yet resolved through ssh_config's `HostName`.
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
    /// `-F file` (`~` expanded). `none` is kept as written: ssh reads no config file then.
    pub config_file: Option<PathBuf>,
}

/// Fields of [`SshConfig`] given on the command line (`-p`, `user@`, `-o Name=...`), as opposed
/// to defaults, which the user's ssh_config may override (as in ssh, the command line beats the
/// config file). `identity_files` has its own flag, `SshConfig::identity_files_explicit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SshExplicit {
    pub port: bool,
    pub user: bool,
    pub user_known_hosts_files: bool,
    pub global_known_hosts_files: bool,
    pub strict_host_key_checking: bool,
    pub batch_mode: bool,
    pub connect_timeout: bool,
    pub server_alive_interval: bool,
    pub server_alive_count_max: bool,
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
    /// Replace a lost connection and re-open the open files (`reconnect`, the default);
    /// `noreconnect` turns it off and lost connections give `EIO`.
    pub reconnect: bool,
}

#[derive(Debug, Clone)]
pub struct MountConfig {
    /// `user@host:dir` as the user wrote it; shown as the mount's source in /proc/mounts.
    pub source: String,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub debug: bool,
    pub ssh: SshConfig,
    /// Which `ssh` fields the command line set; the others are defaults.
    pub ssh_explicit: SshExplicit,
    pub fs: FsConfig,
}
