//! The `-o` options: one table (name, value, default, what it sets, help, setter) drives
//! parsing, `--help`, and (through [`option_table`]) the man page and the README's
//! sshfs-compatibility table.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use super::values::{
    algorithm_list, charset, command_words, expand_path, number, octal, path_list, seconds, size,
    ssh_seconds, text, valid_user, yes_no,
};
use super::CliError;
use crate::config::{IdMapMode, MountConfig, NoMap, StrictHostKeyChecking};
use crate::env::Env;

/// How an option's name is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    /// Exactly as written (sshfs, FUSE and mount(8) options are lower case).
    Exact,
    /// Case-insensitively, as ssh matches its own options (`identityfile=` works).
    IgnoreCase,
    /// Any name starting with `name` minus its trailing `*` (`x-systemd.*`).
    Prefix,
}

/// What an option takes after its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A switch: `ro`. A value (`ro=1`) is an error.
    Flag,
    /// `name=VALUE`; the string is the placeholder shown in help (`N`, `PATH`).
    Value(&'static str),
    /// Accepted with or without a value and ignored (options meant for mount(8) or fstab, and
    /// sshfs options that change nothing a program can see); `help` says why. The setter may
    /// still check the value (`workaround=`).
    Ignored,
    /// Known but refused: using it is an error that gives `help` as the reason (options whose
    /// meaning sftpfs does not provide, which must not be ignored silently).
    Refused,
}

/// Where an option comes from; for the compatibility table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An sshfs option.
    Sshfs,
    /// An ssh_config option, which sshfs passes on to ssh.
    Ssh,
    /// A FUSE mount option, as sshfs accepts it.
    Fuse,
    /// sftpfs's own; sshfs does not have it.
    Sftpfs,
    /// Meant for mount(8) / fstab / systemd; accepted and ignored.
    Mount,
}

/// What went wrong with an option's value; turned into a [`CliError`] naming the option.
pub(super) enum Bad {
    /// The value is not of the expected form; the text says what is expected.
    Invalid(&'static str),
    /// The value is well-formed but not supported; the text says why.
    Unsupported(&'static str),
    /// The value is refused for a reason only known at run time (an algorithm the SSH library
    /// lacks, named); the text says what.
    Rejected(String),
    /// `~` in a path but no home directory is known.
    NoHome,
}

type Setter = fn(&mut Draft<'_>, &OsStr) -> Result<(), Bad>;

/// One `-o` option.
pub struct OptSpec {
    /// The name as documented (ssh options in ssh's CamelCase); `x-systemd.*` for prefixes.
    pub name: &'static str,
    pub matching: NameMatch,
    pub value: ValueKind,
    /// The default, as shown in help; `None` when there is nothing to say.
    pub default: Option<&'static str>,
    /// The `MountConfig` field(s) it sets, e.g. `ssh.port`; empty for ignored options.
    pub sets: &'static str,
    pub origin: Origin,
    /// One line for `--help`.
    pub help: &'static str,
    set: Setter,
}

impl OptSpec {
    /// `name=PLACEHOLDER` or `name`, as shown in help.
    pub fn synopsis(&self) -> String {
        match self.value {
            ValueKind::Value(placeholder) => format!("{}={placeholder}", self.name),
            _ => self.name.to_string(),
        }
    }

    /// Whether the option does something (neither ignored nor refused).
    pub fn is_implemented(&self) -> bool {
        !matches!(self.value, ValueKind::Ignored | ValueKind::Refused)
    }

    fn matches_exactly(&self, name: &str) -> bool {
        self.matching != NameMatch::Prefix && self.name == name
    }
}

/// The `-o` option table, in help order.
pub fn option_table() -> &'static [OptSpec] {
    OPTIONS
}

/// The configuration being built, plus what is only known at the end.
pub(super) struct Draft<'e> {
    pub cfg: MountConfig,
    pub env: &'e Env,
    /// `-o User=`; the source's `user@` wins over it.
    pub user_option: Option<String>,
    /// `modules=` names iconv; with `from_code=` / `to_code=` (either alone also turns the
    /// module on) they make `fs.name_charsets` at the end.
    pub iconv_module: bool,
    pub from_code: Option<crate::fs::names::charset::Charset>,
    pub to_code: Option<crate::fs::names::charset::Charset>,
}

#[allow(clippy::too_many_arguments)]
const fn opt(
    name: &'static str,
    matching: NameMatch,
    value: ValueKind,
    default: Option<&'static str>,
    sets: &'static str,
    origin: Origin,
    help: &'static str,
    set: Setter,
) -> OptSpec {
    OptSpec {
        name,
        matching,
        value,
        default,
        sets,
        origin,
        help,
        set,
    }
}

/// An option accepted and ignored; `why` is its help line (why ignoring it is safe).
const fn accepted(name: &'static str, origin: Origin, why: &'static str) -> OptSpec {
    opt(
        name,
        Exact,
        ValueKind::Ignored,
        None,
        "",
        origin,
        why,
        |_, _| Ok(()),
    )
}

const fn ignored(name: &'static str, matching: NameMatch) -> OptSpec {
    opt(
        name,
        matching,
        ValueKind::Ignored,
        None,
        "",
        Origin::Mount,
        "ignored (for mount(8) / fstab)",
        |_, _| Ok(()),
    )
}

use NameMatch::{Exact, IgnoreCase, Prefix};
use ValueKind::{Flag, Value};

const PORT_EXPECTED: &str = "a number 1-65535";

#[rustfmt::skip]
const OPTIONS: &[OptSpec] = &[
    // --- SSH connection ---
    opt("port", Exact, Value("N"), Some("22"), "ssh.port", Origin::Sshfs,
        "remote SSH port, same as -p",
        set_port),
    opt("Port", IgnoreCase, Value("N"), Some("22"), "ssh.port", Origin::Ssh,
        "same as port=N",
        set_port),
    opt("User", IgnoreCase, Value("NAME"), Some("local user"), "ssh.user", Origin::Ssh,
        "remote user if the source has no user@",
        |d, v| {
            d.user_option = Some(valid_user(v).ok_or(Bad::Invalid("a user name"))?);
            Ok(())
        }),
    opt("IdentityFile", IgnoreCase, Value("PATH"),
        Some("~/.ssh/id_{ed25519,ecdsa,rsa}"), "ssh.identity_files", Origin::Ssh,
        "private key; repeat for more",
        |d, v| {
            let path = expand_path(d.env, v)?;
            let ssh = &mut d.cfg.ssh;
            if !ssh.identity_files_explicit {
                ssh.identity_files.clear();
                ssh.identity_files_explicit = true;
            }
            ssh.identity_files.push(path);
            Ok(())
        }),
    opt("UserKnownHostsFile", IgnoreCase, Value("PATHS"),
        Some("~/.ssh/known_hosts{,2}"), "ssh.user_known_hosts_files",
        Origin::Ssh, "files or none; new keys go to the first",
        |d, v| {
            d.cfg.ssh.user_known_hosts_files = path_list(d.env, v)?;
            d.cfg.ssh_explicit.user_known_hosts_files = true;
            Ok(())
        }),
    opt("GlobalKnownHostsFile", IgnoreCase, Value("PATHS"),
        Some("/etc/ssh/ssh_known_hosts{,2}"),
        "ssh.global_known_hosts_files", Origin::Ssh,
        "system-wide files or none",
        |d, v| {
            d.cfg.ssh.global_known_hosts_files = path_list(d.env, v)?;
            d.cfg.ssh_explicit.global_known_hosts_files = true;
            Ok(())
        }),
    opt("StrictHostKeyChecking", IgnoreCase, Value("MODE"), Some("ask"),
        "ssh.strict_host_key_checking", Origin::Ssh,
        "unknown host keys: yes, accept-new, no (off), ask",
        |d, v| {
            let s = text(v).to_ascii_lowercase();
            d.cfg.ssh.strict_host_key_checking = match s.as_str() {
                "yes" | "true" => StrictHostKeyChecking::Yes,
                "accept-new" => StrictHostKeyChecking::AcceptNew,
                "no" | "off" | "false" => StrictHostKeyChecking::No,
                "ask" => StrictHostKeyChecking::Ask,
                _ => return Err(Bad::Invalid("yes, accept-new, no, off or ask")),
            };
            d.cfg.ssh_explicit.strict_host_key_checking = true;
            Ok(())
        }),
    opt("BatchMode", IgnoreCase, Value("yes|no"), Some("no"), "ssh.batch_mode", Origin::Ssh,
        "never prompt (password, passphrase, host key)",
        |d, v| {
            d.cfg.ssh.batch_mode = yes_no(v)?;
            d.cfg.ssh_explicit.batch_mode = true;
            Ok(())
        }),
    opt("password_stdin", Exact, Flag, None, "ssh.password_stdin", Origin::Sshfs,
        "read the password as one line from standard input",
        |d, _| {
            d.cfg.ssh.password_stdin = true;
            Ok(())
        }),
    opt("ConnectTimeout", IgnoreCase, Value("SECONDS"), Some("10"), "ssh.connect_timeout",
        Origin::Ssh, "connect deadline (sftpfs's default; ssh has none)",
        |d, v| {
            let secs = ssh_seconds(v).filter(|&s| s >= 1);
            let secs = secs.ok_or(Bad::Invalid("whole seconds >= 1, e.g. 10 or 1m"))?;
            d.cfg.ssh.connect_timeout = Duration::from_secs(secs);
            d.cfg.ssh_explicit.connect_timeout = true;
            Ok(())
        }),
    opt("ServerAliveInterval", IgnoreCase, Value("SECONDS"), Some("15"),
        "ssh.server_alive_interval", Origin::Ssh, "SSH keepalive interval; 0 turns keepalives off",
        |d, v| {
            let secs = ssh_seconds(v).ok_or(Bad::Invalid("whole seconds, e.g. 15 or 1m; 0 = off"))?;
            d.cfg.ssh.server_alive_interval = Duration::from_secs(secs);
            d.cfg.ssh_explicit.server_alive_interval = true;
            Ok(())
        }),
    opt("ServerAliveCountMax", IgnoreCase, Value("N"), Some("3"), "ssh.server_alive_count_max",
        Origin::Ssh, "unanswered keepalives before the connection is lost",
        |d, v| {
            let n = number::<usize>(v).filter(|&n| n >= 1);
            d.cfg.ssh.server_alive_count_max = n.ok_or(Bad::Invalid("a whole number >= 1"))?;
            d.cfg.ssh_explicit.server_alive_count_max = true;
            Ok(())
        }),
    opt("HostName", IgnoreCase, Value("NAME"), Some("the host"), "ssh.host", Origin::Ssh,
        "connect to NAME (%h: the host as written); known_hosts uses it",
        |d, v| {
            let name = text(v);
            crate::ssh::config::check_name(name).map_err(|_| Bad::Invalid("a host name"))?;
            d.cfg.ssh.host = name.to_string();
            d.cfg.ssh_explicit.host = true;
            Ok(())
        }),
    opt("HostKeyAlias", IgnoreCase, Value("NAME"), None, "ssh.host_key_alias", Origin::Ssh,
        "look up and record the host key under NAME in known_hosts",
        |d, v| {
            let name = text(v);
            crate::ssh::config::check_name(name).map_err(|_| Bad::Invalid("a host name"))?;
            d.cfg.ssh.host_key_alias = Some(name.to_string());
            d.cfg.ssh_explicit.host_key_alias = true;
            Ok(())
        }),
    opt("IdentitiesOnly", IgnoreCase, Value("yes|no"), Some("no"), "ssh.identities_only",
        Origin::Ssh, "offer only the IdentityFile keys, no other agent keys",
        |d, v| {
            d.cfg.ssh.identities_only = yes_no(v)?;
            d.cfg.ssh_explicit.identities_only = true;
            Ok(())
        }),
    opt("ProxyJump", IgnoreCase, Value("[USER@]HOST[:PORT],..."), None, "ssh.proxy",
        Origin::Ssh, "connect through these SSH hosts in turn (none: directly)",
        |d, v| {
            let proxy = crate::ssh::config::parse_proxy_jump(text(v)).map_err(Bad::Rejected)?;
            d.cfg.ssh.proxy = proxy;
            d.cfg.ssh_explicit.proxy = true;
            Ok(())
        }),
    opt("ProxyCommand", IgnoreCase, Value("CMD"), None, "ssh.proxy", Origin::Ssh,
        "reach the server through CMD's stdin/stdout (%h %p %r %n); none: directly",
        |d, v| {
            let cmd = text(v).trim();
            if cmd.is_empty() {
                return Err(Bad::Invalid("a command, or none"));
            }
            d.cfg.ssh.proxy = (cmd != "none").then(|| crate::config::Proxy::Command(cmd.into()));
            d.cfg.ssh_explicit.proxy = true;
            Ok(())
        }),
    opt("Ciphers", IgnoreCase, Value("[+-^]LIST"), Some("sftpfs's"), "ssh.ciphers", Origin::Ssh,
        "ciphers to offer, as in ssh_config (separate with \\, inside -o)",
        |d, v| {
            let kind = crate::ssh::algorithms::Kind::Cipher;
            d.cfg.ssh.ciphers = Some(algorithm_list(kind, v)?);
            d.cfg.ssh_explicit.ciphers = true;
            Ok(())
        }),
    opt("KexAlgorithms", IgnoreCase, Value("[+-^]LIST"), Some("sftpfs's"),
        "ssh.kex_algorithms", Origin::Ssh, "key exchange algorithms to offer, as in ssh_config",
        |d, v| {
            let kind = crate::ssh::algorithms::Kind::Kex;
            d.cfg.ssh.kex_algorithms = Some(algorithm_list(kind, v)?);
            d.cfg.ssh_explicit.kex_algorithms = true;
            Ok(())
        }),
    opt("MACs", IgnoreCase, Value("[+-^]LIST"), Some("sftpfs's"), "ssh.macs", Origin::Ssh,
        "MACs to offer, as in ssh_config",
        |d, v| {
            let kind = crate::ssh::algorithms::Kind::Mac;
            d.cfg.ssh.macs = Some(algorithm_list(kind, v)?);
            d.cfg.ssh_explicit.macs = true;
            Ok(())
        }),
    opt("Compression", IgnoreCase, Value("yes|no"), Some("no"), "ssh.compression", Origin::Ssh,
        "zlib compression of the SSH connection (same as -C)",
        |d, v| {
            d.cfg.ssh.compression = yes_no(v)?;
            d.cfg.ssh_explicit.compression = true;
            Ok(())
        }),
    // --- other transports (sshfs's) ---
    opt("ssh_command", Exact, Value("CMD"), None, "transport.ssh_command", Origin::Sshfs,
        "run CMD (e.g. ssh, with its options) instead of the built-in SSH client",
        |d, v| {
            let words = command_words(text(v));
            if words.is_empty() {
                return Err(Bad::Invalid("a command, e.g. ssh or 'ssh -i KEY'"));
            }
            d.cfg.transport.ssh_command = Some(words);
            Ok(())
        }),
    opt("sftp_server", Exact, Value("SERV"), Some("sftp"), "ssh.sftp_server", Origin::Sshfs,
        "SFTP subsystem name, or server command to run when it contains a /",
        |d, v| {
            let s = text(v).trim();
            if s.is_empty() || s.starts_with('-') {
                return Err(Bad::Invalid("a subsystem name or a path"));
            }
            d.cfg.ssh.sftp_server = Some(s.to_string());
            Ok(())
        }),
    opt("directport", Exact, Value("PORT"), None, "transport.direct_port", Origin::Sshfs,
        "SFTP straight over TCP to host:PORT, no SSH (unencrypted)",
        |d, v| {
            let port = number::<u16>(v).filter(|&p| p != 0);
            d.cfg.transport.direct_port = Some(port.ok_or(Bad::Invalid(PORT_EXPECTED))?);
            Ok(())
        }),
    opt("passive", Exact, Flag, None, "transport.passive", Origin::Sshfs,
        "SFTP on standard input/output (one connection, no reconnect)",
        set_passive),
    opt("slave", Exact, Flag, None, "transport.passive", Origin::Sshfs,
        "same as passive (sshfs's old name)",
        set_passive),
    // --- filesystem ---
    opt("ro", Exact, Flag, None, "fs.read_only", Origin::Fuse, "mount read-only",
        |d, _| {
            d.cfg.fs.read_only = true;
            Ok(())
        }),
    opt("rw", Exact, Flag, None, "fs.read_only", Origin::Fuse, "mount read-write (the default)",
        |d, _| {
            d.cfg.fs.read_only = false;
            Ok(())
        }),
    opt("allow_other", Exact, Flag, None, "fs.allow_other", Origin::Fuse,
        "let other users in, with default_permissions (non-root needs user_allow_other in fuse.conf)",
        |d, _| {
            d.cfg.fs.allow_other = true;
            Ok(())
        }),
    opt("allow_root", Exact, Flag, None, "fs.allow_root", Origin::Fuse,
        "let root use the mount too",
        |d, _| {
            d.cfg.fs.allow_root = true;
            Ok(())
        }),
    opt("default_permissions", Exact, Flag, None, "fs.default_permissions", Origin::Fuse,
        "let the kernel check access against the reported modes",
        |d, _| {
            d.cfg.fs.default_permissions = true;
            Ok(())
        }),
    opt("no_default_permissions", Exact, Flag, None, "fs.no_default_permissions", Origin::Sftpfs,
        "with allow_other, leave access checks to the server alone",
        |d, _| {
            d.cfg.fs.no_default_permissions = true;
            Ok(())
        }),
    opt("uid", Exact, Value("N"), None, "fs.uid", Origin::Fuse,
        "report every file as owned by this user id",
        |d, v| {
            d.cfg.fs.uid = Some(number(v).ok_or(Bad::Invalid("a numeric user id"))?);
            Ok(())
        }),
    opt("gid", Exact, Value("N"), None, "fs.gid", Origin::Fuse,
        "report every file as owned by this group id",
        |d, v| {
            d.cfg.fs.gid = Some(number(v).ok_or(Bad::Invalid("a numeric group id"))?);
            Ok(())
        }),
    opt("umask", Exact, Value("OCTAL"), None, "fs.umask", Origin::Fuse,
        "report every mode as 0777 & ~OCTAL (as sshfs)",
        |d, v| {
            let mask = octal(v).ok_or(Bad::Invalid("an octal mask such as 022"))?;
            d.cfg.fs.umask = Some(mask);
            Ok(())
        }),
    opt("reconnect", Exact, Flag, Some("on"), "fs.reconnect", Origin::Sshfs,
        "replace a lost connection and re-open open files",
        |d, _| {
            d.cfg.fs.reconnect = true;
            Ok(())
        }),
    opt("noreconnect", Exact, Flag, None, "fs.reconnect", Origin::Sftpfs,
        "do not reconnect: after a lost connection every access fails (EIO)",
        |d, _| {
            d.cfg.fs.reconnect = false;
            Ok(())
        }),
    opt("attr_refusals", Exact, Value("report|ignore"), Some("report"),
        "fs.ignore_attr_refusals", Origin::Sftpfs,
        "a mode or time change the server refuses: fails the call (report), or succeeds and is \
         logged (ignore: for servers over object stores; rclone's set_modtime=false)",
        |d, v| {
            d.cfg.fs.ignore_attr_refusals = match text(v) {
                "report" => false,
                "ignore" => true,
                _ => return Err(Bad::Invalid("report or ignore")),
            };
            Ok(())
        }),
    opt("revalidate", Exact, Value("SECONDS"), Some("2"), "fs.revalidate", Origin::Sftpfs,
        "check the directories in use (by their attributes) and the open files this often, \
         list again what changed on the server and show it (0: never)",
        |d, v| {
            d.cfg.fs.revalidate = seconds(v).ok_or(Bad::Invalid("seconds, e.g. 2 or 0.5; 0 for never"))?;
            Ok(())
        }),
    opt("timeout", Exact, Value("SECONDS"), Some("30"), "fs.request_timeout", Origin::Sftpfs,
        "deadline of every remote request (sftpfs's own)",
        |d, v| {
            let t = seconds(v).filter(|t| !t.is_zero());
            d.cfg.fs.request_timeout = t.ok_or(Bad::Invalid("seconds > 0, e.g. 30 or 2.5"))?;
            Ok(())
        }),
    opt("max_conns", Exact, Value("N"), Some("4"), "fs.max_conns", Origin::Sshfs,
        "SSH connections in the pool at most: one at rest, more while files are read or written at once or a long read splits",
        |d, v| {
            let n = number::<u64>(v).filter(|n| (1..=64).contains(n));
            d.cfg.fs.max_conns = n.ok_or(Bad::Invalid("a number 1-64"))? as usize;
            Ok(())
        }),
    opt("pool_idle", Exact, Value("SECONDS"), Some("60"), "fs.pool_idle", Origin::Sftpfs,
        "close a connection beyond the first after this long with nothing to do (none open a file of it)",
        |d, v| {
            let t = seconds(v).filter(|t| !t.is_zero());
            d.cfg.fs.pool_idle = t.ok_or(Bad::Invalid("seconds > 0, e.g. 60 or 0.5"))?;
            Ok(())
        }),
    opt("dir_cache", Exact, Value("yes|no"), Some("yes"), "fs.dir_cache", Origin::Sshfs,
        "cache attributes, directory listings and symlink targets",
        |d, v| {
            d.cfg.fs.dir_cache = yes_no(v)?;
            Ok(())
        }),
    opt("dcache_timeout", Exact, Value("SECONDS"), Some("20"), "fs.dcache_*_timeout", Origin::Sshfs,
        "time-out of all three caches (a change made on the server shows after it)",
        set_cache_timeout),
    opt("dcache_stat_timeout", Exact, Value("SECONDS"), Some("20"), "fs.dcache_stat_timeout", Origin::Sshfs,
        "time-out of cached attributes",
        |d, v| cache_seconds(v, &mut d.cfg.fs.dcache_stat_timeout)),
    opt("dcache_dir_timeout", Exact, Value("SECONDS"), Some("20"), "fs.dcache_dir_timeout", Origin::Sshfs,
        "time-out of cached directory listings",
        |d, v| cache_seconds(v, &mut d.cfg.fs.dcache_dir_timeout)),
    opt("dcache_link_timeout", Exact, Value("SECONDS"), Some("20"), "fs.dcache_link_timeout", Origin::Sshfs,
        "time-out of cached symlink targets",
        |d, v| cache_seconds(v, &mut d.cfg.fs.dcache_link_timeout)),
    opt("dcache_max_size", Exact, Value("N"), Some("10000"), "fs.dcache_max_size", Origin::Sshfs,
        "entries kept in each cache",
        set_cache_max_size),
    opt("dcache_clean_interval", Exact, Value("SECONDS"), Some("60"), "fs.dcache_clean_interval",
        Origin::Sshfs,
        "drop expired cache entries this often",
        set_clean_interval),
    opt("dcache_min_clean_interval", Exact, Value("SECONDS"), Some("5"),
        "fs.dcache_min_clean_interval", Origin::Sshfs,
        "drop expired entries of a cache over dcache_max_size, at most this often",
        set_min_clean_interval),
    // sshfs's older names of the dcache options.
    opt("cache", Exact, Value("yes|no"), Some("yes"), "fs.dir_cache", Origin::Sshfs,
        "same as dir_cache",
        |d, v| {
            d.cfg.fs.dir_cache = yes_no(v)?;
            Ok(())
        }),
    opt("cache_timeout", Exact, Value("SECONDS"), Some("20"), "fs.dcache_*_timeout",
        Origin::Sshfs, "same as dcache_timeout", set_cache_timeout),
    opt("cache_stat_timeout", Exact, Value("SECONDS"), Some("20"), "fs.dcache_stat_timeout",
        Origin::Sshfs, "same as dcache_stat_timeout",
        |d, v| cache_seconds(v, &mut d.cfg.fs.dcache_stat_timeout)),
    opt("cache_dir_timeout", Exact, Value("SECONDS"), Some("20"), "fs.dcache_dir_timeout",
        Origin::Sshfs, "same as dcache_dir_timeout",
        |d, v| cache_seconds(v, &mut d.cfg.fs.dcache_dir_timeout)),
    opt("cache_link_timeout", Exact, Value("SECONDS"), Some("20"), "fs.dcache_link_timeout",
        Origin::Sshfs, "same as dcache_link_timeout",
        |d, v| cache_seconds(v, &mut d.cfg.fs.dcache_link_timeout)),
    opt("cache_max_size", Exact, Value("N"), Some("10000"), "fs.dcache_max_size",
        Origin::Sshfs, "same as dcache_max_size", set_cache_max_size),
    opt("cache_clean_interval", Exact, Value("SECONDS"), Some("60"), "fs.dcache_clean_interval",
        Origin::Sshfs, "same as dcache_clean_interval", set_clean_interval),
    opt("cache_min_clean_interval", Exact, Value("SECONDS"), Some("5"),
        "fs.dcache_min_clean_interval", Origin::Sshfs, "same as dcache_min_clean_interval",
        set_min_clean_interval),
    opt("negative_timeout", Exact, Value("SECONDS"), Some("0"), "fs.negative_timeout", Origin::Fuse,
        "believe a name missing from a listing the server sent is absent for this long (NFS's lookupcache=all: fewer round trips, but a file just made on the server may be \"No such file\" that long); 0: a name the caches do not hold is asked of the server",
        |d, v| {
            d.cfg.fs.negative_timeout = Some(seconds(v).ok_or(Bad::Invalid("seconds, e.g. 0 or 1.5"))?);
            Ok(())
        }),
    opt("prefetch", Exact, Value("yes|no"), Some("yes"), "fs.prefetch", Origin::Sftpfs,
        "list directories whole and fetch subdirectory listings ahead of a tree walk",
        |d, v| {
            d.cfg.fs.prefetch = yes_no(v)?;
            Ok(())
        }),
    opt("contain_symlinks", Exact, Flag, Some("on"), "fs.contain_symlinks", Origin::Sshfs,
        "readlink refuses (EPERM) absolute targets and targets with a .. component (sshfs 3.7.6, CVE-2026-47187)",
        |d, _| {
            d.cfg.fs.contain_symlinks = true;
            Ok(())
        }),
    opt("no_contain_symlinks", Exact, Flag, None, "fs.contain_symlinks", Origin::Sshfs,
        "show every symlink target as the server has it",
        |d, _| {
            d.cfg.fs.contain_symlinks = false;
            Ok(())
        }),
    opt("transform_symlinks", Exact, Flag, None, "fs.transform_symlinks", Origin::Sshfs,
        "show absolute targets inside the mount as relative ones (before contain_symlinks, as sshfs)",
        |d, _| {
            d.cfg.fs.transform_symlinks = true;
            Ok(())
        }),
    opt("follow_symlinks", Exact, Flag, None, "fs.follow_symlinks", Origin::Sshfs,
        "let the server follow symlinks: they show as what they point to (a dangling one as a link)",
        |d, _| {
            d.cfg.fs.follow_symlinks = true;
            Ok(())
        }),
    opt("subdir", Exact, Value("DIR"), None, "fs.subdir", Origin::Fuse,
        "mount DIR below the remote directory (libfuse's subdir module; modules=subdir optional)",
        |d, v| {
            let dir = v.as_bytes();
            let rel = dir.strip_prefix(b"/").unwrap_or(dir);
            if rel.is_empty() || rel.split(|&c| c == b'/').any(|c| c == b"..") {
                return Err(Bad::Invalid("a directory below the remote directory, e.g. sub/dir"));
            }
            d.cfg.fs.subdir = rel.to_vec();
            Ok(())
        }),
    opt("rellinks", Exact, Flag, None, "fs.rellinks", Origin::Fuse,
        "with subdir: show absolute symlink targets below DIR as relative ones",
        |d, _| {
            d.cfg.fs.rellinks = true;
            Ok(())
        }),
    opt("norellinks", Exact, Flag, Some("on"), "fs.rellinks", Origin::Fuse,
        "with subdir: show symlink targets as sshfs gives them",
        |d, _| {
            d.cfg.fs.rellinks = false;
            Ok(())
        }),
    opt("direct_io", Exact, Flag, None, "fs.direct_io", Origin::Sshfs,
        "bypass the kernel page cache: every read and write goes to the server (still pipelined)",
        |d, _| {
            d.cfg.fs.direct_io = true;
            Ok(())
        }),
    opt("disable_hardlink", Exact, Flag, None, "fs.disable_hardlink", Origin::Sshfs,
        "link(2) fails with ENOSYS, as in sshfs, even where the server can make hard links",
        |d, _| {
            d.cfg.fs.disable_hardlink = true;
            Ok(())
        }),
    opt("async_writes", Exact, Flag, None, "fs.async_writes", Origin::Sftpfs,
        "answer create, write, close, mkdir, unlink, rmdir, rename and attribute changes once durable in a journal on local disk; they reach the server (replayed after a crash) or are kept as a conflict copy; fsync and `sftpfs sync` wait for the server",
        |d, _| {
            d.cfg.fs.async_writes = true;
            Ok(())
        }),
    opt("journal_dir", Exact, Value("PATH"), Some("$XDG_STATE_HOME/sftpfs, ~/.local/state/sftpfs; root: /var/lib/sftpfs"),
        "fs.journal_dir", Origin::Sftpfs,
        "where async_writes keeps its journal (file data: made private, 0700), one directory per source",
        |d, v| {
            d.cfg.fs.journal_dir = Some(expand_path(d.env, v)?);
            Ok(())
        }),
    opt("journal_max", Exact, Value("SIZE"), Some("1G"), "fs.journal_max", Origin::Sftpfs,
        "disk the journal may use (K, M, G suffixes); full, writers wait for the server",
        |d, v| {
            d.cfg.fs.journal_max =
                size(v).filter(|&n| n >= 4 << 20).ok_or(Bad::Invalid("a size of at least 4M, e.g. 512M or 2G"))?;
            Ok(())
        }),
    opt("verify_writes", Exact, Flag, None, "fs.verify_writes", Origin::Sftpfs,
        "hash each file written whole through the mount as it is sent and compare with the \
         server's hash at close: a mismatch fails close and fsync with EIO (with async_writes: \
         the queued close, reported by the next fsync and sftpfs sync)",
        |d, _| {
            d.cfg.fs.verify_writes = true;
            Ok(())
        }),
    opt("hash_command", Exact, Value("[ALGO:]CMD|none"),
        Some("sha256sum, sha1sum, md5sum, b2sum, ... as found on the server"),
        "fs.hash_command", Origin::Sftpfs,
        "command the server hashes a file with (%s: its path) where its SFTP server cannot \
         (check-file); none: never run a command",
        |d, v| {
            d.cfg.fs.hash_command = crate::remote::hash::HashCommand::parse(text(v))
                .map_err(Bad::Invalid)?;
            Ok(())
        }),
    opt("sshfs_sync", Exact, Flag, None, "fs.sync_writes", Origin::Sshfs,
        "synchronous writes: each write(2) returns once the server has it, with its error",
        |d, _| {
            d.cfg.fs.sync_writes = true;
            Ok(())
        }),
    // --- file names (libfuse's iconv module) ---
    opt("from_code", Exact, Value("CHARSET"), Some("UTF-8"), "fs.name_charsets", Origin::Fuse,
        "character set of file names on the server (iconv module; turns it on)",
        |d, v| {
            d.from_code = Some(charset(v)?);
            Ok(())
        }),
    opt("to_code", Exact, Value("CHARSET"), Some("the locale's; C/POSIX: UTF-8"),
        "fs.name_charsets", Origin::Fuse,
        "character set file names are shown in locally (iconv module; turns it on)",
        |d, v| {
            d.to_code = Some(charset(v)?);
            Ok(())
        }),
    opt("modules", Exact, Value("M1[:M2...]"), None, "fs.name_charsets, fs.modules_subdir",
        Origin::Fuse, "libfuse modules to stack: iconv (from_code/to_code), subdir",
        set_modules),
    opt("entry_timeout", Exact, Value("SECONDS"), Some("1"), "fs.entry_timeout", Origin::Fuse,
        "kernel cache time of names (fractions allowed)",
        |d, v| {
            d.cfg.fs.entry_timeout = seconds(v).ok_or(Bad::Invalid("seconds, e.g. 1 or 0.5"))?;
            Ok(())
        }),
    opt("attr_timeout", Exact, Value("SECONDS"), Some("1"), "fs.attr_timeout", Origin::Fuse,
        "kernel cache time of attributes (fractions allowed)",
        |d, v| {
            d.cfg.fs.attr_timeout = seconds(v).ok_or(Bad::Invalid("seconds, e.g. 1 or 0.5"))?;
            Ok(())
        }),
    opt("debug", Exact, Flag, None, "debug, foreground", Origin::Fuse,
        "print debugging output; implies -f",
        |d, _| {
            d.cfg.debug = true;
            Ok(())
        }),
    // --- ownership ---
    opt("idmap", Exact, Value("none|user|file"), Some("none"), "fs.idmap", Origin::Sshfs,
        "user: the remote user's uid/gid show as yours; file: map by name (uidfile, gidfile)",
        |d, v| {
            d.cfg.fs.idmap = match text(v) {
                "none" => IdMapMode::None,
                "user" => IdMapMode::User,
                "file" => IdMapMode::File,
                _ => return Err(Bad::Invalid("none, user or file")),
            };
            Ok(())
        }),
    opt("uidfile", Exact, Value("PATH"), None, "fs.uidfile", Origin::Sshfs,
        "idmap=file: lines user:remote_uid, mapped to the local user of that name",
        |d, v| {
            d.cfg.fs.uidfile = Some(expand_path(d.env, v)?);
            Ok(())
        }),
    opt("gidfile", Exact, Value("PATH"), None, "fs.gidfile", Origin::Sshfs,
        "idmap=file: lines group:remote_gid, mapped to the local group of that name",
        |d, v| {
            d.cfg.fs.gidfile = Some(expand_path(d.env, v)?);
            Ok(())
        }),
    opt("nomap", Exact, Value("ignore|error"), Some("error"), "fs.nomap", Origin::Sshfs,
        "idmap=file, unmapped id: keep it, or refuse chown (EPERM) and show owner 65534",
        |d, v| {
            d.cfg.fs.nomap = match text(v) {
                "ignore" => NoMap::Ignore,
                "error" => NoMap::Error,
                _ => return Err(Bad::Invalid("ignore or error")),
            };
            Ok(())
        }),
    // --- sshfs and FUSE options that change nothing a program sees: accepted and ignored ---
    accepted("sshfs_debug", Origin::Sshfs,
        "ignored: sshfs's protocol trace; sftpfs's debug output is -d"),
    accepted("sync_readdir", Origin::Sshfs,
        "ignored: how sshfs overlaps READDIR requests; listings are the same"),
    accepted("no_readahead", Origin::Sshfs,
        "ignored: read-ahead changes how much is fetched, never what a read returns"),
    accepted("sync_read", Origin::Sshfs,
        "ignored: old name of no_readahead"),
    accepted("delay_connect", Origin::Sshfs,
        "ignored: sftpfs connects at mount time so that errors show; x-systemd.automount delays"),
    accepted("no_check_root", Origin::Sshfs,
        "ignored: the remote dir is always checked; a missing one fails the mount"),
    opt("ssh_protocol", Exact, ValueKind::Ignored, Some("2"), "", Origin::Sshfs,
        "ignored when 2; SSH protocol 1 is refused",
        |_, v| match text(v) {
            "" | "2" => Ok(()),
            "1" => Err(Bad::Unsupported("SSH protocol 1 is obsolete and unsafe")),
            _ => Err(Bad::Invalid("2")),
        }),
    opt("workaround", Exact, Value("LIST"), Some("none"), "fs.workarounds", Origin::Sshfs,
        "fixes for servers, a :-list: rename (always on: a rename over a name replaces it \
         even without posix-rename), renamexdev (an unexplained rename failure gives EXDEV, so \
         mv copies), truncate (change sizes by rewriting the file), fstat (ask attributes by \
         path), createmode (create files without a mode, then set it), buflimit (always on: \
         unacknowledged writes are bounded), none; noNAME turns one off",
        set_workarounds),
    accepted("kernel_cache", Origin::Fuse,
        "ignored: sftpfs decides how the kernel caches file data"),
    accepted("auto_cache", Origin::Fuse,
        "ignored: sftpfs decides how the kernel caches file data"),
    accepted("noauto_cache", Origin::Fuse,
        "ignored: sftpfs decides how the kernel caches file data"),
    accepted("ac_attr_timeout", Origin::Fuse, "ignored: belongs to auto_cache"),
    accepted("no_rofd_flush", Origin::Fuse,
        "ignored: a libfuse detail of closing read-only files"),
    accepted("noforget", Origin::Fuse,
        "ignored: libfuse high-level option; inode numbers stay stable while in use"),
    accepted("remember", Origin::Fuse,
        "ignored: libfuse high-level option; inode numbers stay stable while in use"),
    accepted("auto_unmount", Origin::Fuse,
        "ignored: SIGTERM/SIGINT unmount; after a crash run fusermount3 -u"),
    accepted("max_read", Origin::Fuse, "ignored: sftpfs sizes its own requests"),
    accepted("max_write", Origin::Sshfs, "ignored: sftpfs sizes its own requests"),
    opt("vsock", Exact, ValueKind::Refused, None, "", Origin::Sshfs,
        "SFTP over AF_VSOCK (sshfs 3.7.5) is not supported yet; give the VM's sftp-server a \
         TCP port (directport=) or use ssh",
        |_, _| Ok(())),
    accepted("big_writes", Origin::Fuse, "ignored: FUSE 2 option, always on with FUSE 3"),
    accepted("large_read", Origin::Fuse, "ignored: FUSE 2 option, obsolete"),
    accepted("nonempty", Origin::Fuse,
        "ignored: FUSE 2 option; FUSE 3 mounts on non-empty directories"),
    // --- for mount(8), fstab and systemd: accepted and ignored ---
    ignored("_netdev", Exact),
    ignored("noauto", Exact),
    ignored("auto", Exact),
    ignored("nofail", Exact),
    ignored("user", Exact),
    ignored("users", Exact),
    ignored("nouser", Exact),
    ignored("owner", Exact),
    ignored("group", Exact),
    ignored("defaults", Exact),
    ignored("comment", Exact),
    opt("exec", Exact, Flag, None, "fs.noexec", Origin::Mount,
        "allow running programs from the mount (the default)",
        |d, _| {
            d.cfg.fs.noexec = false;
            Ok(())
        }),
    opt("noexec", Exact, Flag, None, "fs.noexec", Origin::Mount,
        "do not allow running programs from the mount",
        |d, _| {
            d.cfg.fs.noexec = true;
            Ok(())
        }),
    accepted("dev", Origin::Mount, "ignored: sftpfs always mounts nodev"),
    accepted("nodev", Origin::Mount, "ignored: sftpfs always mounts nodev"),
    accepted("suid", Origin::Mount, "ignored: sftpfs always mounts nosuid"),
    accepted("nosuid", Origin::Mount, "ignored: sftpfs always mounts nosuid"),
    ignored("atime", Exact),
    ignored("noatime", Exact),
    ignored("relatime", Exact),
    ignored("sync", Exact),
    ignored("async", Exact),
    ignored("x-systemd.*", Prefix),
    ignored("x-gvfs-*", Prefix),
];

/// The `-o` part of `--help`, generated from the table.
pub(super) fn help_section() -> String {
    let shown: Vec<&OptSpec> = OPTIONS.iter().filter(|o| o.is_implemented()).collect();
    let width = shown.iter().map(|o| o.synopsis().len()).max().unwrap_or(0);
    let mut out =
        String::from("Mount options (-o NAME[=VALUE],...; ssh's CamelCase names in any case):\n");
    for o in shown {
        let default = o
            .default
            .map(|d| format!(" [default: {d}]"))
            .unwrap_or_default();
        out.push_str(&format!("  {:width$}  {}{default}\n", o.synopsis(), o.help));
    }
    out.push_str(
        "\nAccepted and ignored: mount(8), fstab and systemd options (_netdev, noauto, nofail,\n\
         user, users, x-systemd.*, ...) and sshfs/FUSE options that change nothing a program\n\
         sees (kernel_cache, workaround=..., ...).\n\
         \n\
         'man sftpfs' lists every option with the reasons, fstab use and examples.\n",
    );
    out
}

/// Split one `-o` argument into its items at unescaped commas; `\` escapes the next
/// character (`\,` is a literal comma), as sshfs (libfuse's fuse_opt) does. Empty items are
/// skipped.
pub(super) fn split_items(arg: &OsStr) -> Vec<Vec<u8>> {
    let mut items = Vec::new();
    let mut current = Vec::new();
    let mut bytes = arg.as_bytes().iter();
    while let Some(&c) = bytes.next() {
        match c {
            b'\\' => current.push(bytes.next().copied().unwrap_or(b'\\')),
            b',' => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items.retain(|item| !item.is_empty());
    merge_list_values(items)
}

/// ssh options whose value is a comma-separated list.
const COMMA_LISTS: &[&str] = &["ProxyJump", "Ciphers", "KexAlgorithms", "MACs"];

/// `-o Ciphers=a,b,ro` is split into `Ciphers=a`, `b`, `ro`; an item that is no option (no
/// `=`, unknown name) after a list-valued option belongs to its value: `Ciphers=a,b`, `ro`.
/// No algorithm or host is named like an option, so `\,` is needed only for clarity.
fn merge_list_values(items: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let is_list = |item: &[u8]| {
        let name = item.split(|&c| c == b'=').next().unwrap_or_default();
        item.contains(&b'=')
            && std::str::from_utf8(name)
                .is_ok_and(|n| COMMA_LISTS.iter().any(|l| l.eq_ignore_ascii_case(n)))
    };
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(items.len());
    for item in items {
        let continues = !item.contains(&b'=')
            && std::str::from_utf8(&item).map_or(true, |n| lookup(n).is_none())
            && out.last().is_some_and(|prev| is_list(prev));
        match out.last_mut() {
            Some(prev) if continues => {
                prev.push(b',');
                prev.extend_from_slice(&item);
            }
            _ => out.push(item),
        }
    }
    out
}

/// The table entry for an option name: an exact name first, then ssh's case-insensitive
/// names, then prefixes.
pub(super) fn lookup(name: &str) -> Option<&'static OptSpec> {
    OPTIONS
        .iter()
        .find(|o| o.matches_exactly(name))
        .or_else(|| {
            OPTIONS
                .iter()
                .find(|o| o.matching == IgnoreCase && o.name.eq_ignore_ascii_case(name))
        })
        .or_else(|| {
            OPTIONS
                .iter()
                .find(|o| o.matching == Prefix && name.starts_with(o.name.trim_end_matches('*')))
        })
}

/// Apply one `name[=value]` item of `-o`.
pub(super) fn apply_item(d: &mut Draft<'_>, item: &[u8]) -> Result<(), CliError> {
    let (name, value) = match item.iter().position(|&c| c == b'=') {
        Some(i) => (&item[..i], Some(&item[i + 1..])),
        None => (item, None),
    };
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let spec = std::str::from_utf8(name)
        .ok()
        .and_then(lookup)
        .ok_or_else(|| CliError::UnknownOption(lossy(name)))?;
    match (spec.value, value) {
        (ValueKind::Ignored, v) => apply(
            spec,
            d,
            OsStr::from_bytes(v.unwrap_or_default()),
            format!("-o {}", spec.name),
        ),
        (ValueKind::Refused, _) => Err(CliError::Unsupported {
            option: spec.name,
            reason: spec.help,
        }),
        (ValueKind::Flag, None) => apply(spec, d, OsStr::new(""), format!("-o {}", spec.name)),
        (ValueKind::Flag, Some(_)) => Err(CliError::UnexpectedValue {
            option: spec.name,
            given: lossy(item),
        }),
        (ValueKind::Value(_), None) => Err(CliError::MissingValue {
            option: spec.name,
            synopsis: spec.synopsis(),
        }),
        (ValueKind::Value(_), Some(v)) => {
            apply(spec, d, OsStr::from_bytes(v), format!("-o {}", spec.name))?;
            // ssh options go on to a system ssh (ssh_command=) as given, as sshfs does.
            if spec.origin == Origin::Ssh {
                d.cfg
                    .ssh
                    .command_line_options
                    .push((spec.name.to_string(), lossy(v)));
            }
            Ok(())
        }
    }
}

/// Run an option's setter; `label` names the option in errors (`-o port`, `-p`).
pub(super) fn apply(
    spec: &OptSpec,
    d: &mut Draft<'_>,
    value: &OsStr,
    label: String,
) -> Result<(), CliError> {
    (spec.set)(d, value).map_err(|bad| match bad {
        Bad::Invalid(expected) => CliError::InvalidValue {
            option: label,
            value: value.to_string_lossy().into_owned(),
            expected,
        },
        Bad::NoHome => CliError::NoHome { option: label },
        Bad::Rejected(message) => CliError::Rejected {
            option: label,
            message,
        },
        Bad::Unsupported(reason) => CliError::UnsupportedValue {
            option: label,
            value: value.to_string_lossy().into_owned(),
            reason,
        },
    })
}

fn set_workarounds(d: &mut Draft<'_>, v: &OsStr) -> Result<(), Bad> {
    let w = &mut d.cfg.fs.workarounds;
    for item in text(v).split(':').filter(|w| !w.is_empty()) {
        let (on, name) = match item.strip_prefix("no") {
            Some(rest) if rest != "ne" => (false, rest),
            _ => (true, item),
        };
        match name {
            // sshfs's `none` clears these four, not renamexdev or createmode.
            "none" => {
                w.truncate = false;
                w.fstat = false;
            }
            "rename" | "buflimit" => {}
            "renamexdev" => w.rename_xdev = on,
            "truncate" => w.truncate = on,
            "fstat" => w.fstat = on,
            "createmode" => w.create_mode = on,
            _ => {
                return Err(Bad::Invalid(
                    "a :-list of none, [no]rename, [no]renamexdev, [no]truncate, \
                     [no]buflimit, [no]fstat, [no]createmode",
                ))
            }
        }
    }
    Ok(())
}

fn set_passive(d: &mut Draft<'_>, _: &OsStr) -> Result<(), Bad> {
    d.cfg.transport.passive = true;
    Ok(())
}

fn cache_seconds(v: &OsStr, field: &mut Duration) -> Result<(), Bad> {
    *field = seconds(v).ok_or(Bad::Invalid("seconds, e.g. 20"))?;
    Ok(())
}

fn set_cache_timeout(d: &mut Draft<'_>, v: &OsStr) -> Result<(), Bad> {
    let fs = &mut d.cfg.fs;
    cache_seconds(v, &mut fs.dcache_stat_timeout)?;
    fs.dcache_dir_timeout = fs.dcache_stat_timeout;
    fs.dcache_link_timeout = fs.dcache_stat_timeout;
    Ok(())
}

fn set_cache_max_size(d: &mut Draft<'_>, v: &OsStr) -> Result<(), Bad> {
    let n = number::<u64>(v).filter(|n| *n >= 1);
    d.cfg.fs.dcache_max_size = n.ok_or(Bad::Invalid("a number >= 1"))? as usize;
    Ok(())
}

fn set_clean_interval(d: &mut Draft<'_>, v: &OsStr) -> Result<(), Bad> {
    cache_seconds(v, &mut d.cfg.fs.dcache_clean_interval)
}

fn set_min_clean_interval(d: &mut Draft<'_>, v: &OsStr) -> Result<(), Bad> {
    cache_seconds(v, &mut d.cfg.fs.dcache_min_clean_interval)
}

/// `modules=iconv:subdir`: libfuse's module list; the last `modules=` wins, as in libfuse.
fn set_modules(d: &mut Draft<'_>, v: &OsStr) -> Result<(), Bad> {
    let (mut iconv, mut subdir) = (false, false);
    let names: Vec<&str> = text(v).split(':').filter(|m| !m.is_empty()).collect();
    if names.is_empty() {
        return Err(Bad::Invalid(
            "a :-separated list of the modules iconv, subdir",
        ));
    }
    for m in names {
        match m {
            "iconv" => iconv = true,
            "subdir" => subdir = true,
            _ => {
                return Err(Bad::Rejected(format!(
                    "unknown module '{m}'; the known modules are iconv and subdir"
                )))
            }
        }
    }
    d.iconv_module = iconv;
    d.cfg.fs.modules_subdir = subdir;
    Ok(())
}

fn set_port(d: &mut Draft<'_>, v: &OsStr) -> Result<(), Bad> {
    let port = number::<u16>(v).filter(|&p| p != 0);
    d.cfg.ssh.port = port.ok_or(Bad::Invalid(PORT_EXPECTED))?;
    d.cfg.ssh_explicit.port = true;
    Ok(())
}
