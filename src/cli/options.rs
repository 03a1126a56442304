//! The `-o` options: one table (name, value, default, what it sets, help, setter) drives
//! parsing, `--help`, and (through [`option_table`]) the man page and the README's
//! sshfs-compatibility table.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use super::{CliError, Env};
use crate::config::{MountConfig, StrictHostKeyChecking};

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
    /// Accepted with or without a value and ignored (options meant for mount(8) or fstab).
    Ignored,
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
        "let other users in (non-root needs user_allow_other in fuse.conf)",
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
        "remove these bits from every reported mode",
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
    opt("timeout", Exact, Value("SECONDS"), Some("30"), "fs.request_timeout", Origin::Sftpfs,
        "deadline of every remote request (sftpfs's own)",
        |d, v| {
            let t = seconds(v).filter(|t| !t.is_zero());
            d.cfg.fs.request_timeout = t.ok_or(Bad::Invalid("seconds > 0, e.g. 30 or 2.5"))?;
            Ok(())
        }),
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
    ignored("exec", Exact),
    ignored("noexec", Exact),
    ignored("dev", Exact),
    ignored("nodev", Exact),
    ignored("suid", Exact),
    ignored("nosuid", Exact),
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
    let shown: Vec<&OptSpec> = OPTIONS
        .iter()
        .filter(|o| o.value != ValueKind::Ignored)
        .collect();
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
    out.push_str("\nAccepted and ignored (for mount(8), fstab and systemd):\n");
    let names: Vec<&str> = OPTIONS
        .iter()
        .filter(|o| o.value == ValueKind::Ignored)
        .map(|o| o.name)
        .collect();
    let mut line = String::from(" ");
    for name in names {
        if line.len() + name.len() > 90 {
            out.push_str(&line);
            out.push('\n');
            line = String::from(" ");
        }
        line.push(' ');
        line.push_str(name);
        line.push(',');
    }
    out.push_str(line.trim_end_matches(','));
    out.push('\n');
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
    items
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
        (ValueKind::Ignored, _) => Ok(()),
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
            apply(spec, d, OsStr::from_bytes(v), format!("-o {}", spec.name))
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
    })
}

fn set_port(d: &mut Draft<'_>, v: &OsStr) -> Result<(), Bad> {
    let port = number::<u16>(v).filter(|&p| p != 0);
    d.cfg.ssh.port = port.ok_or(Bad::Invalid(PORT_EXPECTED))?;
    d.cfg.ssh_explicit.port = true;
    Ok(())
}

fn text(v: &OsStr) -> &str {
    v.to_str().unwrap_or("")
}

/// A non-negative decimal number: digits only (no sign, no spaces).
fn number<T: std::str::FromStr>(v: &OsStr) -> Option<T> {
    let s = v.to_str()?;
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn octal(v: &OsStr) -> Option<u32> {
    let s = v.to_str()?;
    if s.is_empty() || !s.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|&m| m <= 0o7777)
}

/// Seconds, possibly fractional (`1`, `0.5`, `.25`), >= 0.
fn seconds(v: &OsStr) -> Option<Duration> {
    let s = v.to_str()?;
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let dots = s.bytes().filter(|&c| c == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != s.len() {
        return None;
    }
    Duration::try_from_secs_f64(s.parse().ok()?).ok()
}

/// ssh's time format: `30`, `90s`, `2m`, `1h30m` (units s, m, h, d, w; any case).
fn ssh_seconds(v: &OsStr) -> Option<u64> {
    let s = v.to_str()?;
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (n, tail) = rest.split_at(end);
        let n: u64 = n.parse().ok()?;
        let mut chars = tail.chars();
        let unit = match chars.next().map(|c| c.to_ascii_lowercase()) {
            None | Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            Some('w') => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = chars.as_str();
    }
    Some(total)
}

fn yes_no(v: &OsStr) -> Result<bool, Bad> {
    match text(v).to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(Bad::Invalid("yes or no")),
    }
}

/// A user name as ssh accepts it: non-empty, no leading `-`, no control characters, none of
/// the shell's special characters.
pub(super) fn valid_user(v: &OsStr) -> Option<String> {
    let s = v.to_str()?;
    let ok = !s.is_empty()
        && !s.starts_with('-')
        && !s
            .chars()
            .any(|c| c.is_control() || "'`\";&<>|(){}".contains(c));
    ok.then(|| s.to_string())
}

/// `~` and `~/...` expanded with the home directory; anything else as written.
pub(super) fn expand_path(env: &Env, v: &OsStr) -> Result<PathBuf, Bad> {
    let b = v.as_bytes();
    if b.is_empty() {
        return Err(Bad::Invalid("a file path"));
    }
    if b == b"~" || b.starts_with(b"~/") {
        let home = env.home.as_ref().ok_or(Bad::NoHome)?;
        let rest = OsStr::from_bytes(b[1..].strip_prefix(b"/").unwrap_or(&[]));
        return Ok(if rest.is_empty() {
            home.clone()
        } else {
            home.join(rest)
        });
    }
    Ok(PathBuf::from(v))
}

/// Space-separated paths, or `none` for no file at all.
fn path_list(env: &Env, v: &OsStr) -> Result<Vec<PathBuf>, Bad> {
    if v.as_bytes() == b"none" {
        return Ok(Vec::new());
    }
    let paths = v
        .as_bytes()
        .split(|c| c.is_ascii_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| expand_path(env, OsStr::from_bytes(p)))
        .collect::<Result<Vec<_>, _>>()?;
    if paths.is_empty() {
        return Err(Bad::Invalid("paths separated by spaces, or none"));
    }
    Ok(paths)
}
