//! The command line, sshfs-compatible: `sftpfs [user@]host:[dir] MOUNTPOINT [options]`, options
//! before, between or after the two positionals (mount(8) runs `sftpfs SOURCE MOUNTPOINT -o
//! opts`). Flags are a clap definition; the `-o name[=value],...` options are a table
//! ([`option_table`]) that also writes their part of `--help`. The result is a typed
//! [`MountConfig`]; the environment comes in as an [`Env`], so parsing is pure.

mod helper;
mod options;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ssh;
mod values;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueHint};

use crate::config::{
    FsConfig, IdMapMode, MountConfig, NameCharsetConfig, NoMap, SshConfig, SshExplicit,
    StrictHostKeyChecking, Workarounds,
};
use crate::env::Env;
pub use options::{option_table, NameMatch, OptSpec, Origin, ValueKind};
use options::{Bad, Draft};

/// What the command line asks for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once per run; boxing would only cost readability
pub enum Command {
    Mount(MountConfig),
    /// `--help`: print this to stdout and exit 0.
    Help(String),
    /// `--version`: print this to stdout and exit 0.
    Version(String),
    /// `--completions SHELL`: print this script to stdout and exit 0.
    Completions(String),
    /// `mount.sftpfs ... -f` (mount(8)'s "fake" mode): the command line was checked; do
    /// nothing and exit 0.
    Fake,
    /// `sftpfs status ...`: ask running mounts what they are doing.
    Status(crate::status::client::Request),
    /// `sftpfs reauth MOUNTPOINT`: log a mount in again, asking here.
    Reauth(std::path::PathBuf),
    /// `sftpfs sync MOUNTPOINT`: wait until what a mount queued is on the server.
    Sync(std::path::PathBuf),
    /// `sftpfs verify [--against LOCAL] [--json] PATH...`: compare files with the
    /// server's hashes.
    Verify(crate::status::verify::VerifyRequest),
    /// `sftpfs refresh MOUNTPOINT [PATH]`: make a mount forget what it cached.
    Refresh {
        mountpoint: std::path::PathBuf,
        path: Option<std::path::PathBuf>,
    },
    /// `sftpfs replay [--dry-run] SOURCE [options]`: send what a mount's journal left
    /// behind, without mounting (the configuration has no mountpoint).
    Replay {
        cfg: MountConfig,
        dry_run: bool,
    },
}

/// A command line that cannot be used. `Display` is one line saying what is wrong and what to
/// do, without the `sftpfs: ` prefix (the caller adds it). Exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// A clap-level problem: unknown flag, missing flag value, extra argument.
    #[error("{0}; see 'sftpfs --help'")]
    Usage(String),
    /// A subcommand's own usage error, whole.
    #[error("{0}")]
    Subcommand(String),
    #[error("missing {0}; usage: {USAGE}")]
    Missing(&'static str),
    #[error("unknown option '{0}' in -o; see 'sftpfs --help'")]
    UnknownOption(String),
    #[error("invalid value '{value}' for {option} (expected {expected})")]
    InvalidValue {
        option: String,
        value: String,
        expected: &'static str,
    },
    #[error("-o {option} needs a value: -o {synopsis}")]
    MissingValue {
        option: &'static str,
        synopsis: String,
    },
    #[error("-o {option} takes no value, got '{given}'")]
    UnexpectedValue { option: &'static str, given: String },
    #[error("source must be [user@]host:[dir], got '{0}'")]
    SourceFormat(String),
    #[error("invalid hostname '{host}' in '{given}': {reason}")]
    BadHost {
        host: String,
        given: String,
        reason: &'static str,
    },
    #[error("invalid user name '{user}' in '{given}': it must be non-empty, not start with '-', and have no control or shell characters")]
    BadUser { user: String, given: String },
    #[error(
        "cannot tell the local user name (USER is unset); write user@host:[dir] or -o User=NAME"
    )]
    NoUser,
    #[error("cannot expand '~' in {option}: HOME is unset; give an absolute path")]
    NoHome { option: String },
    #[error("the mountpoint must not be empty")]
    EmptyMountpoint,
    #[error("-o {option} is not supported: {reason}")]
    Unsupported {
        option: &'static str,
        reason: &'static str,
    },
    #[error("{option}={value} is not supported: {reason}")]
    UnsupportedValue {
        option: String,
        value: String,
        reason: &'static str,
    },
    #[error("{option}: {message}")]
    Rejected { option: String, message: String },
    #[error("{0}")]
    Conflict(&'static str),
    /// A `mount.sftpfs` command line that mount(8) would not have made.
    #[error("{0}; usage: {HELPER_USAGE}")]
    HelperUsage(String),
}

const HELPER_USAGE: &str = "mount.sftpfs SOURCE MOUNTPOINT [-sfnv] [-o options]";

const USAGE: &str = "sftpfs [user@]host:[dir] MOUNTPOINT [options]";

/// The flags. `-o` items and `-p` are applied in command-line order, so the last one wins.
#[derive(Parser, Debug)]
#[command(
    name = "sftpfs",
    about = "Mount a directory of an SSH server as a local directory, over SFTP.",
    override_usage = USAGE,
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true,
    help_template = "Usage: {usage}\n\n{about}\n\n{all-args}{after-help}"
)]
struct Args {
    /// [user@]host:[dir] or [user@][ipv6]:[dir]; a relative dir is under the remote home
    #[arg(value_name = "SOURCE")]
    source: Option<OsString>,
    /// Local directory to mount on
    #[arg(value_name = "MOUNTPOINT", value_hint = ValueHint::DirPath)]
    mountpoint: Option<OsString>,
    /// Remote SSH port [default: 22]
    #[arg(short = 'p', value_name = "PORT", action = ArgAction::Append)]
    port: Vec<OsString>,
    /// Mount options, comma-separated (repeatable; see below)
    #[arg(short = 'o', value_name = "OPT[=VAL],...", action = ArgAction::Append)]
    options: Vec<OsString>,
    /// ssh config file instead of ~/.ssh/config
    #[arg(short = 'F', value_name = "FILE", action = ArgAction::Append, value_hint = ValueHint::FilePath)]
    config_file: Vec<OsString>,
    /// Stay in the foreground
    #[arg(short = 'f')]
    foreground: bool,
    /// Debugging output; implies -f (same as -o debug)
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Compression (same as -o Compression=yes)
    #[arg(short = 'C')]
    compression: bool,
    /// Ignored (sshfs's single-threaded flag)
    #[arg(short = 's')]
    single_threaded: bool,
    /// Ignored (sshfs 3.7.3's ssh chatter; -d shows sftpfs's debug log)
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Print this help
    #[arg(short = 'h', long = "help")]
    help: bool,
    /// Print the version
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Print a completion script for SHELL (bash, zsh or fish)
    #[arg(
        long = "completions",
        value_name = "SHELL",
        value_parser = ["bash", "zsh", "fish"],
        hide_possible_values = true
    )]
    completions: Option<String>,
}

/// The clap definition, with the `-o` table as its after-help (for `--help`, the man page
/// and the shell completions).
pub fn command() -> clap::Command {
    Args::command().after_help(options::help_section())
}

/// The `-o` option called `name` (as the parser finds it: ssh's names in any case, prefixes).
pub fn find_option(name: &str) -> Option<&'static OptSpec> {
    options::lookup(name)
}

/// Parse the command line (`args` starts with argv\[0\]). Called as `mount.sftpfs` (argv\[0\]'s
/// file name), it is read the way mount(8) calls helpers: see [`helper`].
pub fn parse<I, T>(args: I, env: &Env) -> Result<Command, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.first().is_some_and(|a0| helper::is_helper_name(a0)) {
        let h = helper::parse(&args[1..])?;
        let argv = [OsString::from("sftpfs"), h.source, h.mountpoint]
            .into_iter()
            .chain(
                h.options
                    .into_iter()
                    .flat_map(|o| [OsString::from("-o"), o]),
            );
        let cmd = parse_mount(argv, env, h.sloppy, true)?;
        return Ok(if h.fake { Command::Fake } else { cmd });
    }
    if args.get(1).is_some_and(|a| a == "status") {
        return parse_status(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "refresh") {
        return parse_refresh(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "verify") {
        return parse_verify(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "reauth") {
        return match &args[2..] {
            [h] if h == "-h" || h == "--help" => Ok(Command::Help(format!(
                "{REAUTH_USAGE}\n\nWhen a mount lost its connection and logging in again needs a \
                 person (a one-time code), logs it in again, asking here; the mount and its open \
                 files carry on.\n"
            ))),
            [m] if !m.as_encoded_bytes().starts_with(b"-") => Ok(Command::Reauth(m.into())),
            _ => Err(CliError::Subcommand(format!("reauth: {REAUTH_USAGE}"))),
        };
    }
    if args.get(1).is_some_and(|a| a == "replay") {
        return parse_replay(&args[2..], env);
    }
    if args.get(1).is_some_and(|a| a == "sync") {
        return match &args[2..] {
            [h] if h == "-h" || h == "--help" => Ok(Command::Help(format!(
                "{SYNC_USAGE}\n\nReturns once everything the mount queued (-o async_writes) is \
                 on the server, and fails naming each queued operation that failed and was not \
                 reported yet. sync(1) cannot: Linux does not pass syncfs on to FUSE.\n"
            ))),
            [m] if !m.as_encoded_bytes().starts_with(b"-") => Ok(Command::Sync(m.into())),
            _ => Err(CliError::Subcommand(format!("sync: {SYNC_USAGE}"))),
        };
    }
    parse_mount(args, env, false, true)
}

const REPLAY_USAGE: &str = "usage: sftpfs replay [--dry-run] SOURCE [-p PORT] [-o options]";

/// `sftpfs replay`: the source and the options a mount of it would take, no mountpoint.
fn parse_replay(args: &[OsString], env: &Env) -> Result<Command, CliError> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help(format!(
            "{REPLAY_USAGE}\n\nSends what the journal of an asynchronous mount of SOURCE (-o async_writes) \
             left behind (the daemon was killed, or the machine went down), without mounting, \
             and says what became of each operation: sent, already there, conflict (both \
             versions kept), failed. The next mount of SOURCE does the same by itself. With \
             --dry-run, only says what it would do. Give the options the mount used \
             (journal_dir=, port, identity).\n"
        )));
    }
    let dry_run = args.iter().any(|a| a == "--dry-run");
    let rest: Vec<OsString> = std::iter::once(OsString::from("sftpfs"))
        .chain(args.iter().filter(|a| *a != "--dry-run").cloned())
        .collect();
    match parse_mount(rest, env, false, false) {
        Ok(Command::Mount(cfg)) => Ok(Command::Replay { cfg, dry_run }),
        Ok(other) => Ok(other),
        Err(CliError::Missing(_)) => Err(CliError::Subcommand(format!(
            "replay: which source? {REPLAY_USAGE}"
        ))),
        Err(e) => Err(CliError::Subcommand(format!("replay: {e}"))),
    }
}

const SYNC_USAGE: &str = "usage: sftpfs sync MOUNTPOINT";

const REAUTH_USAGE: &str = "usage: sftpfs reauth MOUNTPOINT";

const REFRESH_USAGE: &str = "usage: sftpfs refresh MOUNTPOINT [PATH]";

fn parse_refresh(args: &[OsString]) -> Result<Command, CliError> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help(format!(
            "{REFRESH_USAGE}\n\nMakes the mount (and the kernel) forget the attributes and listings it \
             cached at or below PATH (all of it without PATH), so that the next look shows the \
             server's truth. SIGHUP to the daemon refreshes all of it too.\n"
        )));
    }
    if let Some(flag) = args.iter().find(|a| a.as_encoded_bytes().starts_with(b"-")) {
        return Err(CliError::Subcommand(format!(
            "refresh: unknown option '{}'; {REFRESH_USAGE}",
            flag.to_string_lossy()
        )));
    }
    match args {
        [m] => Ok(Command::Refresh {
            mountpoint: m.into(),
            path: None,
        }),
        [m, p] => Ok(Command::Refresh {
            mountpoint: m.into(),
            path: Some(p.into()),
        }),
        [] => Err(CliError::Subcommand(format!(
            "refresh: which mount? {REFRESH_USAGE}"
        ))),
        _ => Err(CliError::Subcommand(format!(
            "refresh: too many arguments; {REFRESH_USAGE}"
        ))),
    }
}

const VERIFY_USAGE: &str = "usage: sftpfs verify [--against LOCAL] [--json] PATH...";

/// `sftpfs verify` and its flags.
fn parse_verify(args: &[OsString]) -> Result<Command, CliError> {
    let mut req = crate::status::verify::VerifyRequest {
        paths: Vec::new(),
        against: None,
        json: false,
    };
    let mut it = args.iter();
    let mut options_end = false;
    while let Some(a) = it.next() {
        match a.to_str() {
            _ if options_end => req.paths.push(a.into()),
            Some("-h" | "--help") => {
                return Ok(Command::Help(format!(
                    "{VERIFY_USAGE}\n\nFor each file at or below the PATHs (in sftpfs mounts), asks the \
                     server for its hash (nothing is read back) and compares it with the hash \
                     of the local copy (--against LOCAL: the copy of PATH, or of each PATH under \
                     it by name), or else with the hash of what the mount last wrote whole \
                     (-o verify_writes). Prints OK, MISMATCH, MISSING, UNKNOWN or ERROR per \
                     file.\n  --against LOCAL  local copies to compare with (hashed here, in \
                     parallel)\n  --json           one JSON document, for scripts\nExit status: 0 \
                     all match, 1 some differ or are missing, 2 some could not be compared.\n"
                )))
            }
            Some("--json") => req.json = true,
            Some("--against") => match it.next() {
                Some(l) => req.against = Some(l.into()),
                None => {
                    return Err(CliError::Subcommand(format!(
                        "verify: --against needs a local directory or file; {VERIFY_USAGE}"
                    )))
                }
            },
            Some(s) if s.starts_with("--against=") => {
                req.against = Some(s["--against=".len()..].into())
            }
            Some("--") => options_end = true,
            Some(flag) if flag.starts_with('-') => {
                return Err(CliError::Subcommand(format!(
                    "verify: unknown option '{flag}'; {VERIFY_USAGE}"
                )))
            }
            _ => req.paths.push(a.into()),
        }
    }
    if req.paths.is_empty() {
        return Err(CliError::Subcommand(format!(
            "verify: which files? {VERIFY_USAGE}"
        )));
    }
    Ok(Command::Verify(req))
}

const STATUS_USAGE: &str = "usage: sftpfs status [--json | --prometheus] [--watch] [MOUNTPOINT]";

/// `sftpfs status` and its flags. (A mount's source always has a `:`, so `status` alone is
/// never a host.)
fn parse_status(args: &[OsString]) -> Result<Command, CliError> {
    use crate::status::client::{Format, Request};
    let mut req = Request {
        mountpoint: None,
        format: Format::Text,
        watch: false,
    };
    for a in args {
        match a.to_str() {
            Some("-h" | "--help") => {
                return Ok(Command::Help(format!(
                    "{STATUS_USAGE}\n\nWhat your sftpfs mounts are doing: all of them, one line each, or one in \
                     detail.\n  --json        as JSON, for scripts\n  --prometheus  as Prometheus \
                     text (for a node exporter's textfile collector)\n  --watch       again every \
                     second\n"
                )))
            }
            Some("--json") if req.format == Format::Text => req.format = Format::Json,
            Some("--prometheus") if req.format == Format::Text => req.format = Format::Prometheus,
            Some("--json" | "--prometheus") => {
                return Err(CliError::Subcommand(format!(
                    "status: --json and --prometheus cannot go together; {STATUS_USAGE}"
                )))
            }
            Some("--watch") => req.watch = true,
            Some(flag) if flag.starts_with('-') => {
                return Err(CliError::Subcommand(format!(
                    "status: unknown option '{flag}'; {STATUS_USAGE}"
                )))
            }
            _ if req.mountpoint.is_none() => req.mountpoint = Some(a.into()),
            _ => {
                return Err(CliError::Subcommand(format!(
                    "status: one mount point at most; {STATUS_USAGE}"
                )))
            }
        }
    }
    Ok(Command::Status(req))
}

/// The ordinary command line. `sloppy` (mount's `-s`) skips unknown `-o` options. Without
/// `mountpoint` (`sftpfs replay`), the command line has a source only.
fn parse_mount<I, T>(
    args: I,
    env: &Env,
    sloppy: bool,
    mountpoint: bool,
) -> Result<Command, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args).map_err(clap_error)?;
    let args = Args::from_arg_matches(&matches).map_err(clap_error)?;
    if args.help {
        return Ok(Command::Help(command().render_help().to_string()));
    }
    if args.version {
        return Ok(Command::Version(format!(
            "sftpfs {}\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if let Some(shell) = &args.completions {
        return Ok(Command::Completions(completions(shell)));
    }
    let mut draft = Draft {
        cfg: defaults(env),
        env,
        user_option: None,
        iconv_module: false,
        from_code: None,
        to_code: None,
    };
    // -p and -o in command-line order: the last value of an option wins. Options come before
    // the positionals' checks so that `-oProxyCommand=x:dir` is reported as the option it is.
    let mut ordered: Vec<(usize, bool, &OsString)> = Vec::new();
    let indices = |id| matches.indices_of(id).into_iter().flatten();
    ordered.extend(indices("port").zip(&args.port).map(|(i, v)| (i, true, v)));
    ordered.extend(
        indices("options")
            .zip(&args.options)
            .map(|(i, v)| (i, false, v)),
    );
    ordered.sort_by_key(|&(i, _, _)| i);
    for (_, is_port, value) in ordered {
        if is_port {
            let spec = options::lookup("port").expect("port is in the table");
            options::apply(spec, &mut draft, value, "-p".to_string())?;
        } else {
            for item in options::split_items(value) {
                match options::apply_item(&mut draft, &item) {
                    Err(CliError::UnknownOption(_)) if sloppy => {}
                    r => r?,
                }
            }
        }
    }
    if let Some(file) = args.config_file.last() {
        let path = values::expand_path(env, file).map_err(|bad| match bad {
            Bad::NoHome => CliError::NoHome {
                option: "-F".into(),
            },
            Bad::Invalid(expected) => CliError::InvalidValue {
                option: "-F".into(),
                value: String::new(),
                expected,
            },
            Bad::Unsupported(reason) => CliError::UnsupportedValue {
                option: "-F".into(),
                value: file.to_string_lossy().into_owned(),
                reason,
            },
            Bad::Rejected(message) => CliError::Rejected {
                option: "-F".into(),
                message,
            },
        })?;
        draft.cfg.ssh.config_file = Some(path);
    }

    let none = OsString::new();
    let (raw_source, mountpoint) = match (&args.source, &args.mountpoint, mountpoint) {
        (Some(s), Some(m), true) => (s, m),
        (Some(_), None, true) => return Err(CliError::Missing("the MOUNTPOINT")),
        (Some(s), None, false) => (s, &none),
        (Some(_), Some(m), false) => {
            return Err(CliError::Usage(format!(
                "unexpected argument '{}'",
                m.to_string_lossy()
            )))
        }
        (None, _, true) => return Err(CliError::Missing("the SOURCE and the MOUNTPOINT")),
        (None, _, false) => return Err(CliError::Missing("the SOURCE")),
    };
    if mountpoint.is_empty() && args.mountpoint.is_some() {
        return Err(CliError::EmptyMountpoint);
    }
    // sshfs's passive mode needs no host: `sftpfs :/dir MOUNTPOINT -o passive`.
    let source = match raw_source.as_bytes().strip_prefix(b":") {
        Some(dir) if draft.cfg.transport.passive => Source {
            user: None,
            host: "stdin".into(),
            dir: dir.to_vec(),
        },
        _ => parse_source(raw_source)?,
    };

    let name_charsets = name_charsets(&draft, env)?;
    let mut cfg = draft.cfg;
    cfg.fs.name_charsets = name_charsets;
    check_idmap(&cfg.fs)?;
    check_subdir(&cfg.fs)?;
    check_write_mode(&cfg.fs)?;
    cfg.source = raw_source.to_string_lossy().into_owned();
    cfg.mountpoint = PathBuf::from(mountpoint);
    cfg.debug |= args.debug;
    cfg.foreground = args.foreground || cfg.debug;
    if !cfg.ssh_explicit.host {
        cfg.ssh.host = source.host.clone();
    }
    cfg.ssh.host_alias = source.host;
    if args.compression {
        cfg.ssh.compression = true;
        cfg.ssh_explicit.compression = true;
        cfg.ssh
            .command_line_options
            .push(("Compression".into(), "yes".into()));
    }
    cfg.fs.remote_dir = source.dir;
    let (user, explicit) = match (source.user, draft.user_option) {
        (Some(user), _) | (None, Some(user)) => (user, true),
        (None, None) => (env.user.clone().ok_or(CliError::NoUser)?, false),
    };
    cfg.ssh.user = user;
    cfg.ssh_explicit.user = explicit;
    Ok(Command::Mount(cfg))
}

/// libfuse's subdir module needs its directory.
fn check_subdir(fs: &FsConfig) -> Result<(), CliError> {
    if fs.modules_subdir && fs.subdir.is_empty() {
        return Err(CliError::Conflict(
            "-o modules=subdir needs -o subdir=DIR (the directory to mount below the remote one)",
        ));
    }
    Ok(())
}

/// Synchronous and asynchronous writes at once mean nothing.
fn check_write_mode(fs: &FsConfig) -> Result<(), CliError> {
    if fs.async_writes && fs.sync_writes {
        return Err(CliError::Conflict(
            "-o async_writes and -o sshfs_sync ask for opposite things (answer once queued, \
             answer once on the server): use one of them",
        ));
    }
    Ok(())
}

/// `idmap=file` needs a file; the files mean nothing without it.
fn check_idmap(fs: &FsConfig) -> Result<(), CliError> {
    let files = fs.uidfile.is_some() || fs.gidfile.is_some();
    match fs.idmap {
        IdMapMode::File if !files => Err(CliError::Conflict(
            "-o idmap=file needs -o uidfile=PATH or -o gidfile=PATH",
        )),
        IdMapMode::None | IdMapMode::User if files => Err(CliError::Conflict(
            "-o uidfile= and -o gidfile= take effect only with -o idmap=file; add it",
        )),
        _ => Ok(()),
    }
}

/// The iconv module's character sets when it is asked for (`modules=iconv`, or `from_code=`
/// or `to_code=` alone): from_code defaults to UTF-8, to_code to the locale's codeset.
fn name_charsets(d: &Draft<'_>, env: &Env) -> Result<Option<NameCharsetConfig>, CliError> {
    use crate::fs::names::charset::Charset;
    if !d.iconv_module && d.from_code.is_none() && d.to_code.is_none() {
        return Ok(None);
    }
    let server = d.from_code.unwrap_or(Charset::Whatwg(encoding_rs::UTF_8));
    let local = match d.to_code {
        Some(c) => c,
        None => {
            let codeset = values::locale_codeset(env.locale.as_deref());
            Charset::by_name(codeset).map_err(|_| CliError::Rejected {
                option: "-o to_code".into(),
                message: format!(
                    "its default, the locale's character set '{codeset}', is not one sftpfs \
                     can use; give -o to_code=CHARSET"
                ),
            })?
        }
    };
    Ok(Some(NameCharsetConfig { server, local }))
}

/// The completion script for `shell` (one of the values `--completions` accepts).
fn completions(shell: &str) -> String {
    use clap_complete::Shell;
    let shell = match shell {
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        _ => Shell::Bash,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "sftpfs", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything at its default; source, mountpoint, host, user and remote dir come later.
fn defaults(env: &Env) -> MountConfig {
    let under_home = |names: &[&str]| -> Vec<PathBuf> {
        let home = env.home.iter();
        home.flat_map(|h| names.iter().map(move |n| h.join(n)))
            .collect()
    };
    MountConfig {
        source: String::new(),
        mountpoint: PathBuf::new(),
        foreground: false,
        debug: false,
        ssh: SshConfig {
            host: String::new(),
            port: 22,
            user: String::new(),
            identity_files: under_home(&[".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"]),
            identity_files_explicit: false,
            user_known_hosts_files: under_home(&[".ssh/known_hosts", ".ssh/known_hosts2"]),
            global_known_hosts_files: vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
            strict_host_key_checking: StrictHostKeyChecking::Ask,
            batch_mode: false,
            password_stdin: false,
            agent_socket: env.ssh_auth_sock.clone(),
            // sftpfs's own: ssh waits as long as TCP does, but a mount must not hang.
            connect_timeout: Duration::from_secs(10),
            server_alive_interval: Duration::from_secs(15),
            server_alive_count_max: 3,
            config_file: None,
            host_alias: String::new(),
            host_key_alias: None,
            identities_only: false,
            proxy: None,
            jump_hosts: Vec::new(),
            ciphers: None,
            kex_algorithms: None,
            macs: None,
            compression: false,
            sftp_server: None,
            command_line_options: Vec::new(),
        },
        ssh_explicit: SshExplicit::default(),
        transport: Default::default(),
        fs: FsConfig {
            remote_dir: Vec::new(),
            read_only: false,
            noexec: false,
            allow_other: false,
            allow_root: false,
            default_permissions: false,
            no_default_permissions: false,
            uid: None,
            gid: None,
            umask: None,
            request_timeout: Duration::from_secs(30),
            max_conns: 4,
            pool_idle: Duration::from_secs(60),
            dir_cache: true,
            dcache_stat_timeout: Duration::from_secs(20),
            dcache_dir_timeout: Duration::from_secs(20),
            dcache_link_timeout: Duration::from_secs(20),
            dcache_max_size: 10_000,
            negative_timeout: None,
            prefetch: true,
            contain_symlinks: true,
            transform_symlinks: false,
            follow_symlinks: false,
            subdir: Vec::new(),
            rellinks: false,
            direct_io: false,
            disable_hardlink: false,
            sync_writes: false,
            async_writes: false,
            journal_dir: default_journal_dir(env),
            journal_max: 1 << 30,
            verify_writes: false,
            hash_command: Default::default(),
            dcache_clean_interval: Duration::from_secs(60),
            dcache_min_clean_interval: Duration::from_secs(5),
            workarounds: Workarounds::default(),
            ignore_attr_refusals: false,
            revalidate: Duration::from_secs(2),
            entry_timeout: Duration::from_secs(1),
            attr_timeout: Duration::from_secs(1),
            reconnect: true,
            idmap: IdMapMode::None,
            uidfile: None,
            gidfile: None,
            nomap: NoMap::Error,
            name_charsets: None,
            modules_subdir: false,
        },
    }
}

/// Where the journal goes without `journal_dir=`: `$XDG_STATE_HOME/sftpfs`, else
/// `/var/lib/sftpfs` for root, else `~/.local/state/sftpfs`.
fn default_journal_dir(env: &Env) -> Option<PathBuf> {
    match (&env.state_home, env.root, &env.home) {
        (Some(s), _, _) => Some(s.join("sftpfs")),
        (None, true, _) => Some(PathBuf::from("/var/lib/sftpfs")),
        (None, false, Some(h)) => Some(h.join(".local/state/sftpfs")),
        (None, false, None) => None,
    }
}

/// One line from a clap error ("error: unexpected argument '-x' found" → "unexpected ...").
fn clap_error(e: clap::Error) -> CliError {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("invalid command line");
    CliError::Usage(line.trim_start_matches("error:").trim().to_string())
}

/// `[user@]host:[dir]`, split as sshfs does: the first `:` outside `[...]` ends the host part,
/// the last `@` before it ends the user.
#[derive(Debug, PartialEq, Eq)]
struct Source {
    user: Option<String>,
    host: String,
    dir: Vec<u8>,
}

fn parse_source(raw: &OsStr) -> Result<Source, CliError> {
    let given = || raw.to_string_lossy().into_owned();
    let bytes = raw.as_bytes();
    let mut in_brackets = false;
    let colon = bytes.iter().position(|&c| {
        match c {
            b'[' => in_brackets = true,
            b']' => in_brackets = false,
            _ => {}
        }
        c == b':' && !in_brackets
    });
    let colon = colon.ok_or_else(|| CliError::SourceFormat(given()))?;
    let (login, dir) = (&bytes[..colon], &bytes[colon + 1..]);
    let (user, host) = match login.iter().rposition(|&c| c == b'@') {
        Some(at) => (Some(&login[..at]), &login[at + 1..]),
        None => (None, login),
    };
    let user = match user {
        None => None,
        Some(u) => {
            Some(
                values::valid_user(OsStr::from_bytes(u)).ok_or_else(|| CliError::BadUser {
                    user: String::from_utf8_lossy(u).into_owned(),
                    given: given(),
                })?,
            )
        }
    };
    let bad_host = |reason| CliError::BadHost {
        host: String::from_utf8_lossy(host).into_owned(),
        given: given(),
        reason,
    };
    let host = match host.strip_prefix(b"[") {
        Some(inner) => {
            let inner = inner
                .strip_suffix(b"]")
                .ok_or_else(|| bad_host("'[' without ']' before ':'"))?;
            check_host(inner, true).map_err(bad_host)?
        }
        None => check_host(host, false).map_err(bad_host)?,
    };
    Ok(Source {
        user,
        host,
        dir: dir.to_vec(),
    })
}

/// A host name or address: non-empty, not starting with `-` (it must never look like an ssh
/// option), no whitespace, control or shell characters, no `/`, `@` or brackets, and `:` only
/// inside brackets (IPv6).
fn check_host(host: &[u8], bracketed: bool) -> Result<String, &'static str> {
    let host = std::str::from_utf8(host).map_err(|_| "not valid UTF-8")?;
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.starts_with('-') {
        return Err("a host cannot start with '-'");
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("whitespace or control characters");
    }
    if host.chars().any(|c| "/@[]'`\"$\\;&<>|(){}".contains(c)) {
        return Err("a character no host name has");
    }
    if host.contains(':') && !bracketed {
        return Err("an IPv6 address must be in brackets: [addr]:dir");
    }
    Ok(host.to_string())
}
