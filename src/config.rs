//! The typed configuration every component reads. Built once by `cli` from the command line,
//! fstab options and the environment; no component reads the environment or files on its own.

use std::path::PathBuf;
use std::time::Duration;

use crate::fs::names::charset::Charset;

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
    /// The host connected to: ssh_config's (or `-o HostName=`'s) `HostName` for
    /// [`SshConfig::host_alias`], or that name itself. Without the brackets of an IPv6 literal
    /// (`[::1]:dir` gives `::1`). Known_hosts entries are looked up under this name (unless
    /// `host_key_alias` is set), as ssh does.
    pub host: String,
    /// The host as written in the source (`alias` of `alias:dir`): what ssh_config's `Host`
    /// patterns match and what a system `ssh` (`ssh_command=`) is given.
    pub host_alias: String,
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
    /// ssh's `HostKeyAlias`: the name known_hosts entries are looked up and recorded under,
    /// instead of `host`.
    pub host_key_alias: Option<String>,
    /// ssh's `IdentitiesOnly`: offer only the keys of `identity_files` (agent keys only when
    /// they are one of those).
    pub identities_only: bool,
    /// ssh's `ProxyJump` / `ProxyCommand` (whichever was given first, as in ssh).
    pub proxy: Option<Proxy>,
    /// The hosts of `ProxyJump`, each resolved through ssh_config like the target, in the
    /// order they are connected (the first is reached directly or through its own proxy, each
    /// next one through a direct-tcpip channel of the one before). Filled by the ssh_config
    /// resolution (`ssh::config::resolve`); when empty, the connector makes them from the
    /// `ProxyJump` specs with this config's settings.
    pub jump_hosts: Vec<SshConfig>,
    /// ssh's `Ciphers`, `KexAlgorithms`, `MACs`: the algorithm names to offer, most preferred
    /// first, each one the SSH library supports (checked when the option is read). `None`:
    /// sftpfs's defaults.
    pub ciphers: Option<Vec<String>>,
    pub kex_algorithms: Option<Vec<String>>,
    pub macs: Option<Vec<String>>,
    /// ssh's `Compression` (`-C`): offer zlib compression.
    pub compression: bool,
    /// sshfs's `sftp_server=`: a subsystem name, or (when it contains a `/`) a command the
    /// server runs, used instead of the `sftp` subsystem.
    pub sftp_server: Option<String>,
    /// The ssh options given on the command line, as (`Name`, value), in order: passed on as
    /// `-oName=value` to a system `ssh` (`ssh_command=`), as sshfs does.
    pub command_line_options: Vec<(String, String)>,
}

/// How the SSH connection reaches the server when not over a direct TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// `ProxyJump`: the jump hosts as written (`[user@]host[:port]` or `ssh://...`), in the
    /// order they are connected.
    Jump(Vec<String>),
    /// `ProxyCommand`, its `%` tokens not yet expanded: a command (run by `/bin/sh`) whose
    /// standard input and output carry the SSH connection.
    Command(String),
}

/// Where the SFTP byte stream comes from (sshfs's `ssh_command=`, `directport=`, `passive`);
/// the built-in SSH client by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportConfig {
    /// `ssh_command=CMD`, split into words: run it (with sshfs's ssh arguments) and speak SFTP
    /// over its standard input and output. `ssh_command=ssh` uses the system ssh.
    pub ssh_command: Option<Vec<String>>,
    /// `directport=PORT`: SFTP straight over TCP to host:PORT, no SSH.
    pub direct_port: Option<u16>,
    /// `passive`: SFTP on sftpfs's own standard input and output.
    pub passive: bool,
}

/// The transport [`TransportConfig`] selects; sshfs's precedence: passive, then directport,
/// then ssh_command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportKind {
    /// The built-in SSH client.
    Ssh,
    /// A child process (`ssh_command=`), its words.
    Command(Vec<String>),
    /// `directport=`.
    Direct(u16),
    /// `passive`.
    Passive,
}

impl TransportConfig {
    pub fn kind(&self) -> TransportKind {
        if self.passive {
            TransportKind::Passive
        } else if let Some(port) = self.direct_port {
            TransportKind::Direct(port)
        } else if let Some(cmd) = &self.ssh_command {
            TransportKind::Command(cmd.clone())
        } else {
            TransportKind::Ssh
        }
    }
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
    /// `-o HostName=`.
    pub host: bool,
    pub host_key_alias: bool,
    pub identities_only: bool,
    /// `-o ProxyJump=` or `-o ProxyCommand=`.
    pub proxy: bool,
    pub ciphers: bool,
    pub kex_algorithms: bool,
    pub macs: bool,
    /// `-o Compression=` or `-C`.
    pub compression: bool,
}

/// What the filesystem core and the FUSE mount need.
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Remote directory as given (`dir` of `host:dir`): absolute, relative to the remote home,
    /// or empty for the home. Bytes: remote names need not be UTF-8.
    pub remote_dir: Vec<u8>,
    pub read_only: bool,
    /// `noexec`: programs on the mount cannot be run.
    pub noexec: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub default_permissions: bool,
    /// With `allow_other`, do not add `default_permissions` (the server alone decides).
    pub no_default_permissions: bool,
    /// Override the owner / group reported for every file.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Bits removed from every reported mode.
    pub umask: Option<u32>,
    /// SSH connections in the pool at most (sshfs's `max_conns`).
    pub max_conns: usize,
    /// How long a pool member beyond the first stays connected with nothing to do.
    pub pool_idle: Duration,
    /// sshfs's `dir_cache`: cache attributes, listings and symlink targets.
    pub dir_cache: bool,
    pub dcache_stat_timeout: Duration,
    pub dcache_dir_timeout: Duration,
    pub dcache_link_timeout: Duration,
    pub dcache_max_size: usize,
    /// How long a name missing from a fetched listing is taken as absent (libfuse's name;
    /// NFS's `lookupcache=all`); `None`: never (a lookup the caches cannot answer asks).
    pub negative_timeout: Option<Duration>,
    /// Fetch subdirectory listings ahead of a tree walk.
    pub prefetch: bool,
    /// sshfs's symlink options: refuse targets leading out of the mount (default), rewrite
    /// absolute targets inside it as relative, let the server follow links.
    pub contain_symlinks: bool,
    pub transform_symlinks: bool,
    pub follow_symlinks: bool,
    /// libfuse's subdir module: mount this directory below `remote_dir` (relative to it, as
    /// sshfs prepends it); empty for none. `rellinks`: rewrite absolute link targets below it
    /// as relative ones.
    pub subdir: Vec<u8>,
    pub rellinks: bool,
    /// `direct_io`: file data bypasses the kernel page cache.
    pub direct_io: bool,
    /// `disable_hardlink`: link(2) fails (ENOSYS, as sshfs) even where the server could.
    pub disable_hardlink: bool,
    /// `sshfs_sync`: each write(2) returns once the server acknowledged it.
    pub sync_writes: bool,
    /// `async_writes`: changes are answered once queued.
    pub async_writes: bool,
    /// `journal_dir=`: where the asynchronous mode's journal goes (one directory per
    /// source below it); `None` when no default could be found (no home).
    pub journal_dir: Option<std::path::PathBuf>,
    /// `journal_max=`: bytes the journal may hold on disk.
    pub journal_max: u64,
    /// `verify_writes`: a file written whole is checked against the server's hash at close.
    pub verify_writes: bool,
    /// `hash_command=`: how the server computes hashes by a command (probe, given, none).
    pub hash_command: crate::remote::hash::HashCommand,
    /// sshfs's cache cleaning: expired entries are dropped every `dcache_clean_interval`, and
    /// never more often than `dcache_min_clean_interval` (when the cache is over its size).
    pub dcache_clean_interval: Duration,
    pub dcache_min_clean_interval: Duration,
    /// sshfs's `workaround=` list.
    pub workarounds: Workarounds,
    /// `attr_refusals=ignore`: mode and time changes the server refuses succeed (logged).
    pub ignore_attr_refusals: bool,
    /// Deadline for every remote request.
    pub request_timeout: Duration,
    /// How often the directories in use are listed again (`revalidate=`); zero: never.
    pub revalidate: Duration,
    /// Kernel entry / attribute cache time-outs.
    pub entry_timeout: Duration,
    pub attr_timeout: Duration,
    /// Replace a lost connection and re-open the open files (`reconnect`, the default);
    /// `noreconnect` turns it off and lost connections give `EIO`.
    pub reconnect: bool,
    /// How remote uids/gids are translated (`idmap=`), sshfs's semantics.
    pub idmap: IdMapMode,
    /// `uidfile=` / `gidfile=` for `idmap=file`: `name:remote_id` lines (`~` expanded).
    pub uidfile: Option<PathBuf>,
    pub gidfile: Option<PathBuf>,
    /// What `idmap=file` does with an id that has no mapping (`nomap=`).
    pub nomap: NoMap,
    /// libfuse's iconv module (`modules=iconv`, `from_code=`, `to_code=`): the character sets
    /// of file names; `None`: names pass as they are.
    pub name_charsets: Option<NameCharsetConfig>,
    /// `modules=` names libfuse's subdir module.
    pub modules_subdir: bool,
}

/// The character sets of file names (`from_code=`, `to_code=`), resolved: defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameCharsetConfig {
    /// `from_code=`: the names on the server (default UTF-8).
    pub server: Charset,
    /// `to_code=`: the names shown locally (default: the locale's character set).
    pub local: Charset,
}

/// sshfs's `workaround=` fixes for servers that need them. `rename` and `buflimit` have no
/// field: sftpfs always does what they do (see the option's help).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Workarounds {
    /// `renamexdev`: a rename the server refuses for no reason it can name gives EXDEV, so
    /// that `mv` copies and removes instead (a rename across the server's filesystems).
    pub rename_xdev: bool,
    /// `truncate`: sizes change by rewriting the file, for servers without SETSTAT of a size.
    pub truncate: bool,
    /// `fstat`: the attributes after a change through an open file are asked by path.
    pub fstat: bool,
    /// `createmode`: files are created without a mode (for servers that refuse one) and get
    /// their mode right after.
    pub create_mode: bool,
}

/// `idmap=`: how the owners of remote files are shown locally and how `chown` ids are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdMapMode {
    /// Ids pass unchanged (sshfs's default).
    #[default]
    None,
    /// The remote user's uid/gid (the owner of the remote home directory) show as the mounting
    /// user's uid/gid, and back.
    User,
    /// Ids are translated by name through `uidfile=` / `gidfile=` and the local user database.
    File,
}

/// `nomap=`: an id without a mapping under `idmap=file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoMap {
    /// Leave the id as it is.
    Ignore,
    /// Refuse it: `chown` to it fails with `EPERM`; a remote owner without a mapping shows as
    /// the overflow id 65534 (`nobody`). sshfs's default.
    #[default]
    Error,
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
    /// Where the SFTP stream comes from (built-in SSH unless sshfs's transport options say).
    pub transport: TransportConfig,
    pub fs: FsConfig,
}
