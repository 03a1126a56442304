//! The documentation generated from the code: `man/sftpfs.1` (clap_mangen from the clap
//! definition, plus the `-o` option table and hand-written sections) and the README's sshfs
//! compatibility table (from the option table). Each test fails when the checked-in file is
//! stale; `SFTPFS_REGENERATE_DOCS=1 cargo test --test docs` rewrites them.

use std::fmt::Write as _;
use std::path::PathBuf;

use sftpfs::cli::{command, find_option, option_table, OptSpec, Origin, ValueKind};

const REGENERATE: &str = "SFTPFS_REGENERATE_DOCS";

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `SFTPFS_REGENERATE_DOCS=1` (or `SFTPFS_REGENERATE_MAN=1`) rewrites the files.
fn regenerating() -> bool {
    [REGENERATE, "SFTPFS_REGENERATE_MAN"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| v == "1"))
}

/// Compares `path` with `expected`, or writes it when regenerating.
fn check_or_write(rel: &str, expected: &str) {
    let path = repo_file(rel);
    if regenerating() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
        panic!(
            "\n{rel} is stale (first difference at line {}):\n  checked in: {:?}\n  generated:  {:?}\n\
             Regenerate it with:\n  {REGENERATE}=1 cargo test --test docs\nand commit the result.\n",
            line + 1,
            actual.lines().nth(line).unwrap_or("<end of file>"),
            expected.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// man page

/// Escapes text for roff: backslashes, hyphens (so that options can be copied from the page)
/// and a leading `.` or `'`.
fn esc(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// `name=VALUE` in bold/italic.
fn synopsis_roff(o: &OptSpec) -> String {
    match o.value {
        ValueKind::Value(v) => format!("\\fB{}\\fR=\\fI{}\\fR", esc(o.name), esc(v)),
        _ => format!("\\fB{}\\fR", esc(o.name)),
    }
}

fn option_list(out: &mut String, opts: &[&OptSpec], with_default: bool) {
    for o in opts {
        let default = match (with_default, o.default) {
            (true, Some(d)) => format!(" (default: {})", esc(d)),
            _ => String::new(),
        };
        let _ = write!(out, ".TP\n{}\n{}{default}\n", synopsis_roff(o), esc(o.help));
    }
}

fn mount_options_section() -> String {
    let table = option_table();
    let implemented: Vec<&OptSpec> = table.iter().filter(|o| o.is_implemented()).collect();
    let mount: Vec<&OptSpec> = table
        .iter()
        .filter(|o| o.value == ValueKind::Ignored && o.origin == Origin::Mount)
        .collect();
    let ignored: Vec<&OptSpec> = table
        .iter()
        .filter(|o| o.value == ValueKind::Ignored && o.origin != Origin::Mount)
        .collect();
    let refused: Vec<&OptSpec> = table
        .iter()
        .filter(|o| o.value == ValueKind::Refused)
        .collect();
    let mut out = String::from(
        ".SH \"MOUNT OPTIONS\"\n\
         Given as \\fB\\-o\\fR \\fIname\\fR[=\\fIvalue\\fR][,...], on the command line or in the \
         options field of an fstab entry; \\fB\\-o\\fR may be repeated and the last value of an \
         option wins (\\fBIdentityFile\\fR accumulates). A comma inside a value is written \
         \\fB\\e,\\fR. ssh's options (CamelCase) match in any case, as in ssh. An unknown option \
         is an error that names it.\n\
         .SS \"Options\"\n",
    );
    option_list(&mut out, &implemented, true);
    out.push_str(
        ".SS \"For mount(8), fstab and systemd: accepted and ignored\"\n\
         These only matter to mount(8), fstab or systemd:\n.PP\n",
    );
    let names: Vec<String> = mount
        .iter()
        .map(|o| format!("\\fB{}\\fR", esc(o.name)))
        .collect();
    let _ = writeln!(out, "{}.", names.join(", "));
    out.push_str(
        ".SS \"sshfs and FUSE options: accepted and ignored\"\n\
         Accepted so that sshfs command lines and fstab entries work unchanged; none of them \
         changes what a program sees:\n",
    );
    option_list(&mut out, &ignored, false);
    out.push_str(
        ".SS \"sshfs and FUSE options: refused\"\n\
         Known, but sftpfs does not provide what they mean, so the mount fails with this \
         reason rather than ignoring them:\n",
    );
    option_list(&mut out, &refused, false);
    out
}

const DESCRIPTION: &str = r#".SH DESCRIPTION
\fBsftpfs\fR mounts the directory \fIdir\fR of the SSH server \fIhost\fR on \fIMOUNTPOINT\fR,
over SFTP, so that ordinary programs work on the remote files as if they were local. It is a
drop\-in replacement for \fBsshfs\fR(1): the same command line, the same \fB\-o\fR option
names, the same fstab lines. Nothing is installed on the server; any SSH server with SFTP
enabled will do.
.PP
\fIdir\fR may be absolute, relative to the remote home directory, empty (the home itself) or
start with \fB~\fR (\fIhost\fR:~/dir). A numeric IPv6 address is written in brackets:
\fIuser\fR@[::1]:/srv. Without \fIuser\fR@, the local user name is used.
.PP
Without \fB\-f\fR, \fBsftpfs\fR stays in the foreground until the mount is live (asking on the
terminal for a password, a passphrase or a new host key if it must), then goes to the
background and exits 0. If anything fails it prints one line, \fBsftpfs:\fR \fIerror\fR, exits
1 and leaves nothing mounted.
.PP
Host keys are checked against the known_hosts files as ssh(1) does; a changed key is always
refused. Authentication tries, in ssh's order, the agent (\fBSSH_AUTH_SOCK\fR), the identity
files, keyboard\-interactive and password.
.PP
To unmount: \fBfusermount3 \-u\fR \fIMOUNTPOINT\fR (or \fBumount\fR \fIMOUNTPOINT\fR as root).
SIGTERM or SIGINT to the process unmounts cleanly too.
"#;

const SYNOPSIS_EXTRA: &str = r#".br
\fBsftpfs\fR \fB\-\-completions\fR \fIbash\fR|\fIzsh\fR|\fIfish\fR
.br
\fBmount.sftpfs\fR \fISOURCE\fR \fIMOUNTPOINT\fR [\fB\-sfnv\fR] [\fB\-o\fR \fIoptions\fR]
.br
\fBsftpfs status\fR [\fB\-\-json\fR|\fB\-\-prometheus\fR] [\fB\-\-watch\fR] [\fIMOUNTPOINT\fR]
.br
\fBsftpfs refresh\fR \fIMOUNTPOINT\fR [\fIPATH\fR]
.br
\fBsftpfs reauth\fR \fIMOUNTPOINT\fR
"#;

const HAND_WRITTEN: &str = r#".SH FSTAB
Both fstab types work:
.PP
.nf
.RS
user@host:/srv  /mnt/srv  fuse.sftpfs  _netdev,IdentityFile=/root/.ssh/id_ed25519  0 0
user@host:/srv  /mnt/srv  sftpfs       _netdev,IdentityFile=/root/.ssh/id_ed25519  0 0
.RE
.fi
.PP
\fBfuse.sftpfs\fR: mount(8) runs \fBmount.fuse3\fR(8) (package fuse3), which runs
\fBsftpfs\fR \fISOURCE MOUNTPOINT\fR \fB\-o\fR \fIoptions\fR with the fixed search path
/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin (mount(8) drops \fBPATH\fR), so
\fBsftpfs\fR must be installed in one of those directories
(\fBcargo install \-\-path . \-\-root /usr/local\fR).
.PP
\fBsftpfs\fR: mount(8) runs the helper \fB/sbin/mount.sftpfs\fR, a symbolic link to the binary:
.RS
.B ln \-s /usr/local/bin/sftpfs /sbin/mount.sftpfs
.RE
Called by that name (or \fBmount.fuse.sftpfs\fR), \fBsftpfs\fR takes mount(8)'s helper
arguments, \fISOURCE MOUNTPOINT\fR [\fB\-sfnv\fR] [\fB\-o\fR \fIoptions\fR]: \fB\-f\fR checks
the command line and mounts nothing, \fB\-s\fR ignores unknown options, \fB\-n\fR and \fB\-v\fR
are ignored. It goes to the background once the mount is live, as without \fB\-f\fR.
.PP
The options field holds the same options as \fB\-o\fR. The ssh options in it
(\fBIdentityFile=\fR, \fBport=\fR, \fBUserKnownHostsFile=\fR, ...) reach the SSH connection;
\fB_netdev\fR, \fBnoauto\fR, \fBnofail\fR, \fBuser\fR, \fBusers\fR, \fBx\-systemd.*\fR and the
other mount(8) options are accepted. \fB~\fR in a path is the home of the user the mount runs
as (root for fstab mounts at boot).
.PP
A mount at boot or by an automount cannot ask anything: use a key without a passphrase
(\fBIdentityFile=\fR) or an agent, and a host key already in known_hosts (or
\fBStrictHostKeyChecking=accept\-new\fR). An automount that connects on first access:
.PP
.nf
.RS
user@host:/srv /mnt/srv fuse.sftpfs _netdev,noauto,x\-systemd.automount,x\-systemd.idle\-timeout=600,IdentityFile=/root/.ssh/id_ed25519 0 0
.RE
.fi
.PP
then \fBsystemctl daemon\-reload\fR and \fBsystemctl start mnt\-srv.automount\fR. Its errors are
in the journal: \fBjournalctl \-t sftpfs\fR.
.PP
With the \fBuser\fR or \fBusers\fR option, a user who is not root can mount the entry;
\fBsftpfs\fR then runs as that user and mounts through \fBfusermount3\fR(1). For
\fBallow_other\fR such a mount needs \fBuser_allow_other\fR in /etc/fuse.conf.
.PP
Every mount, from fstab or not, shows as type \fBfuse.sftpfs\fR with \fISOURCE\fR as its name
(as sshfs's show as \fBfuse.sshfs\fR): \fBfindmnt \-t fuse.sftpfs\fR, \fBdf \-t fuse.sftpfs\fR
and \fBumount \-a \-t fuse.sftpfs\fR select them.
.SH STATUS
\fBsftpfs status\fR lists your mounts, one line each; \fBsftpfs status\fR \fIMOUNTPOINT\fR shows
one: the server, user and transport, the SFTP version and what the server lacks, each pool
connection (state, smoothed round trip of small requests, bytes in and out, requests sent and in
flight, reconnects), open files, bytes written and not yet acknowledged by the server (0: all
written, safe to unplug), the caches (entries and hit rates), the errors answered to programs
since the mount (a count per errno and the last ten with time, call and path; a lookup of a
name that does not exist, or an access check that answers no, is not an error), and the uptime. \fB\-\-json\fR prints the same as
JSON, \fB\-\-prometheus\fR as Prometheus text (metrics \fBsftpfs_*\fR, for a node exporter's
textfile collector), and \fB\-\-watch\fR prints it again every second.
.PP
Each mount's daemon answers on a Unix socket in a directory only its user can enter
(\fI/run/sftpfs\fR for root, else \fI$XDG_RUNTIME_DIR/sftpfs\fR), mode 0600, and answers only
its user and root. No TCP port is opened.
.SH REFRESH
\fBsftpfs refresh\fR \fIMOUNTPOINT\fR [\fIPATH\fR] makes the mount forget the attributes,
listings and link targets it cached at or below \fIPATH\fR (relative to the mount, or absolute
inside it; all of the mount without it), tells the kernel to forget its entries and attributes
there (FUSE invalidation notifications), and returns when both are done: the next \fBls\fR or
\fBstat\fR shows the server's truth. \fBSIGHUP\fR to the daemon refreshes the whole mount (in
the foreground, \fB\-f\fR, it unmounts, as a hung\-up terminal does with sshfs).
.PP
Without being asked, every \fB\-o revalidate=\fR\fISECONDS\fR (2; 0 turns it off) the
directories in use (looked at in the last fifteen periods, and at least \fBdcache_timeout\fR)
are checked by their attributes (one STAT each, whatever their size) and listed again only
when those say they may have changed (another mtime, size or mode, or an mtime in the second
the listing was taken in); files open here for reading are checked with FSTAT. What changed
on the server is pushed to the kernel: \fBls\fR, \fBstat\fR and \fBtail \-f\fR see it within
about a period. An idle mount sends nothing; \fBsftpfs status\fR shows what revalidation sent.
.SH CONSISTENCY
Close\-to\-open, as NFS: \fBclose\fR of a file written here returns once the server has it,
and each \fBopen\fR asks the server. By name, as sshfs: a name the server has is never
answered "No such file" from a cache (NFS's \fBlookupcache=positive\fR), except a name the
server said is absent less than a second ago, asked again, and a name missing from a
directory made here while the mount keeps filling it. Listings and the attributes of known
names may lag by one revalidation period; a file changed in place on the server and not open
here, until its next open or \fBdcache_timeout\fR. What is fetched ahead (prefetched listings,
files read ahead across files) serves only within about a second of the server's answer.
\fB\-o negative_timeout=\fR\fISECONDS\fR is NFS's \fBlookupcache=all\fR: names missing from a
listing are believed absent that long, which saves a round trip per lookup of a name that does
not exist (\fBgit status\fR, \fBmake\fR, shells) at the price of "No such file" for that long
for a file just made on the server.
.SH REAUTH
A password or passphrase typed at mount time stays in memory for the pool's other connections
and for reconnects. A login that took a one\-time code (a keyboard\-interactive answer that is
not a password) is never replayed: the pool's other sessions are channels of its connection.
When that connection is lost, file operations fail with EIO, \fBsftpfs status\fR says
"needs authentication", and \fBsftpfs reauth\fR \fIMOUNTPOINT\fR asks for a new code on its own
terminal, logs the mount in again, and the mount carries on with its open files.
With \fBssh_command=ssh\fR, the first ssh is made a connection master (a socket in the status
sockets' directory) and the other members are its sessions, so ssh asks once too.
.SH OWNERSHIP
By default files show the uid and gid they have on the server. \fB\-o idmap=user\fR shows the
remote user's uid and gid (those of the remote home directory) as the mounting user's, and
\fBchown\fR to the mounting user gives files to the remote user. \fB\-o idmap=file\fR with
\fBuidfile=\fR and/or \fBgidfile=\fR translates ids by name: each line of the files is
\fIname\fR:\fIremote_id\fR (or a passwd/group line), and the name is looked up in the local user
or group database. The files must belong to the mounting user or root and not be writable by
others. With \fBnomap=error\fR (the default, as in sshfs) a remote id without a mapping shows
as 65534 (nobody) and \fBchown\fR to a local id without a mapping fails with EPERM;
\fBnomap=ignore\fR passes such ids unchanged. \fBuid=\fR, \fBgid=\fR and \fBumask=\fR then
override what is shown.
.SH EXAMPLES
.nf
.RS
sftpfs alice@server:/srv/data ~/data
sftpfs alice@server: ~/home \-p 2222
sftpfs server:projects ~/p \-o idmap=user
sftpfs backup@nas:/volume1 /mnt/nas \-o ro,IdentityFile=~/.ssh/backup_key
sftpfs \-f \-d alice@server:/tmp /mnt/debug
fusermount3 \-u ~/data
sftpfs status ~/data
sftpfs refresh ~/data projects/site
sftpfs status \-\-prometheus > /var/lib/node_exporter/sftpfs.prom
sftpfs \-\-completions bash > ~/.local/share/bash\-completion/completions/sftpfs
sftpfs \-\-completions zsh > ~/.zfunc/_sftpfs
sftpfs \-\-completions fish > ~/.config/fish/completions/sftpfs.fish
.RE
.fi
.SH DIAGNOSTICS
Errors are one line on standard error, \fBsftpfs:\fR \fIwhat is wrong\fR, and the exit status
is 1. \fB\-d\fR prints a debug log to standard error in the foreground. In the background,
warnings and errors go to syslog (facility daemon, identifier \fBsftpfs\fR):
\fBjournalctl \-t sftpfs\fR. Passwords, passphrases and keys are never logged.
.SH ENVIRONMENT
.TP
.B SSH_AUTH_SOCK
the ssh\-agent to ask for keys.
.TP
.B HOME
where \fB~\fR and the default ssh files are; from the user database when unset.
.TP
.BR USER ", " LOGNAME
the remote user name when the source has none; from the user database when unset.
.TP
.B SFTPFS_LOG
a filter for the log on standard error, as \fBsftpfs=debug\fR or \fBsftpfs::remote=trace\fR.
.SH FILES
.TP
.IR ~/.ssh/config ", " /etc/ssh/ssh_config
ssh configuration (\fB\-F\fR chooses another file).
.TP
.IR ~/.ssh/known_hosts ", " /etc/ssh/ssh_known_hosts
known host keys.
.TP
.IR ~/.ssh/id_ed25519 ", " ~/.ssh/id_ecdsa ", " ~/.ssh/id_rsa
identity files tried when no \fBIdentityFile=\fR is given.
.TP
.IR /run/sftpfs/ ", " $XDG_RUNTIME_DIR/sftpfs/
the mounts' status sockets.
.TP
.I /etc/fuse.conf
\fBuser_allow_other\fR lets users who are not root use \fBallow_other\fR.
.TP
.I /etc/fstab
mounts by mount(8) and systemd; see \fBFSTAB\fR.
.TP
.I /sbin/mount.sftpfs
the mount(8) helper for the \fBsftpfs\fR fstab type: a symbolic link to \fBsftpfs\fR.
.SH "SEE ALSO"
\fBsshfs\fR(1), \fBssh\fR(1), \fBssh_config\fR(5), \fBfusermount3\fR(1), \fBmount\fR(8),
\fBmount.fuse3\fR(8), \fBfstab\fR(5), \fBsystemd.mount\fR(5), \fBsystemd.automount\fR(5),
\fBjournalctl\fR(1)
"#;

fn man_page() -> String {
    // The page documents the command line, not --help: drop the after-help (the -o table),
    // which has its own section here.
    let cmd = command().after_help("").version(env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(cmd)
        .title("SFTPFS")
        .section("1")
        .source(format!("sftpfs {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let mut page = Vec::new();
    man.render_title(&mut page).unwrap();
    man.render_name_section(&mut page).unwrap();
    man.render_synopsis_section(&mut page).unwrap();
    let mut page = String::from_utf8(page).unwrap();
    page.push_str(SYNOPSIS_EXTRA);
    page.push_str(DESCRIPTION);
    let mut opts = Vec::new();
    man.render_options_section(&mut opts).unwrap();
    page.push_str(&String::from_utf8(opts).unwrap());
    page.push_str(&mount_options_section());
    page.push_str(HAND_WRITTEN);
    let mut version = Vec::new();
    man.render_version_section(&mut version).unwrap();
    page.push_str(&String::from_utf8(version).unwrap());
    page
}

#[test]
fn man_page_is_up_to_date() {
    check_or_write("man/sftpfs.1", &man_page());
}

#[test]
fn man_page_lists_every_option() {
    let page = man_page();
    for o in option_table() {
        assert!(
            page.contains(&esc(o.name)),
            "{} is not in the man page",
            o.name
        );
    }
    for section in [
        "SYNOPSIS",
        "OPTIONS",
        "MOUNT OPTIONS",
        "FSTAB",
        "EXAMPLES",
        "FILES",
    ] {
        assert!(
            page.contains(&format!(".SH {section}"))
                || page.contains(&format!(".SH \"{section}\"")),
            "no {section} section"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// README: the sshfs compatibility table

/// Every option of sshfs 3.7 (`sshfs -h`, `man sshfs`, and the FUSE options it lists), in
/// the order sshfs documents them, with the value it takes.
const SSHFS_OPTIONS: &[(&str, &str)] = &[
    ("reconnect", ""),
    ("delay_connect", ""),
    ("sshfs_sync", ""),
    ("no_readahead", ""),
    ("sync_readdir", ""),
    ("sshfs_debug", ""),
    ("dir_cache", "=BOOL"),
    ("dcache_max_size", "=N"),
    ("dcache_timeout", "=N"),
    ("dcache_stat_timeout", "=N"),
    ("dcache_link_timeout", "=N"),
    ("dcache_dir_timeout", "=N"),
    ("dcache_clean_interval", "=N"),
    ("dcache_min_clean_interval", "=N"),
    ("direct_io", ""),
    ("workaround", "=LIST"),
    ("idmap", "=TYPE"),
    ("uidfile", "=FILE"),
    ("gidfile", "=FILE"),
    ("nomap", "=TYPE"),
    ("ssh_command", "=CMD"),
    ("ssh_protocol", "=N"),
    ("sftp_server", "=SERV"),
    ("directport", "=PORT"),
    ("passive", ""),
    ("slave", ""),
    ("vsock", "=CID:PORT"),
    ("disable_hardlink", ""),
    ("transform_symlinks", ""),
    ("contain_symlinks", ""),
    ("no_contain_symlinks", ""),
    ("follow_symlinks", ""),
    ("no_check_root", ""),
    ("password_stdin", ""),
    ("max_conns", "=N"),
    ("port", "=PORT"),
    ("compression", "=yes|no"),
    ("max_read", "=N"),
    ("max_write", "=N"),
    // FUSE options sshfs lists
    ("kernel_cache", ""),
    ("auto_cache", ""),
    ("noauto_cache", ""),
    ("no_rofd_flush", ""),
    ("umask", "=M"),
    ("uid", "=N"),
    ("gid", "=N"),
    ("entry_timeout", "=T"),
    ("negative_timeout", "=T"),
    ("attr_timeout", "=T"),
    ("ac_attr_timeout", "=T"),
    ("noforget", ""),
    ("remember", "=T"),
    ("modules", "=M1[:M2...]"),
    ("allow_other", ""),
    ("allow_root", ""),
    ("auto_unmount", ""),
    ("default_permissions", ""),
    ("ro", ""),
    ("subdir", "=DIR"),
    ("rellinks", ""),
    ("norellinks", ""),
    ("from_code", "=CHARSET"),
    ("to_code", "=CHARSET"),
];

/// sshfs's flags and what sftpfs does with them (not in the option table: clap has them).
const SSHFS_FLAGS: &[(&str, &str, &str)] = &[
    ("-h, --help", "yes", "prints the help"),
    ("-V, --version", "yes", "prints the version"),
    ("-d, --debug", "yes", "debug log to stderr; implies `-f`"),
    ("-f", "yes", "stays in the foreground"),
    (
        "-s",
        "accepted, ignored",
        "sftpfs is always multi-threaded; results are the same",
    ),
    ("-p PORT", "yes", "same as `-o port=PORT`"),
    ("-C", "yes", "same as `-o Compression=yes`"),
    ("-F ssh_configfile", "yes", "ssh configuration file"),
    (
        "-1",
        "refused",
        "SSH protocol 1 is obsolete and unsafe; sshfs fails too (OpenSSH has no protocol 1)",
    ),
    (
        "-v, --verbose",
        "accepted, ignored",
        "sshfs 3.7.3's ssh chatter (3.7.6 dropped it); `-d` prints sftpfs's debug log",
    ),
    ("-o opt,[opt...]", "yes", "options, below"),
];

fn md(s: &str) -> String {
    s.replace('|', "\\|")
}

fn status(o: &OptSpec) -> &'static str {
    match o.value {
        ValueKind::Ignored => "accepted, ignored",
        ValueKind::Refused => "refused",
        _ => "yes",
    }
}

fn sshfs_table() -> String {
    let mut out = String::from("| sshfs | sftpfs | what sftpfs does |\n|---|---|---|\n");
    for (flag, st, what) in SSHFS_FLAGS {
        let _ = writeln!(out, "| `{}` | {st} | {} |", md(flag), md(what));
    }
    for (name, value) in SSHFS_OPTIONS {
        let shown = format!("-o {name}{value}");
        let (st, what) = match find_option(name) {
            Some(o) => {
                let default = match (o.is_implemented(), o.default) {
                    (true, Some(d)) => format!(" (default: {d})"),
                    _ => String::new(),
                };
                let alias = if o.name != *name {
                    format!("same as `{}`: ", o.name)
                } else {
                    String::new()
                };
                let help = o.help.strip_prefix("ignored: ").unwrap_or(o.help);
                (status(o), format!("{alias}{help}{default}"))
            }
            None => (
                "not yet",
                "unknown option: the mount fails and names it".to_string(),
            ),
        };
        let _ = writeln!(out, "| `{}` | {st} | {} |", md(&shown), md(&what));
    }
    out.push_str("| `-o SSHOPT=VAL` | yes | the ssh options sftpfs knows (any case): ");
    let ssh: Vec<String> = option_table()
        .iter()
        .filter(|o| o.origin == Origin::Ssh)
        .map(|o| format!("`{}`", o.name))
        .collect();
    out.push_str(&ssh.join(", "));
    out.push_str("; any other is an unknown option |\n");
    out
}

const BEGIN: &str = "<!-- BEGIN generated: sshfs options (tests/docs.rs) -->\n";
const END: &str = "<!-- END generated: sshfs options -->\n";

#[test]
fn readme_sshfs_table_is_up_to_date() {
    let path = repo_file("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md has no generated sshfs options block ({BEGIN:?} ... {END:?})");
    };
    let expected = format!("{}{BEGIN}{}{}", &readme[..b], sshfs_table(), &readme[e..]);
    check_or_write("README.md", &expected);
}

#[test]
fn every_sshfs_option_works_or_is_honestly_ignored() {
    let missing: Vec<&str> = SSHFS_OPTIONS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| find_option(n).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "sshfs options not in the table: {missing:?}"
    );
    // sshfs 3.7.6's options all work, but for SFTP over AF_VSOCK: no machine here has a
    // vsock peer to test it against (no vsock_loopback), so it is refused rather than
    // shipped untried.
    let refused: Vec<&str> = SSHFS_OPTIONS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| find_option(n).is_some_and(|o| o.value == ValueKind::Refused))
        .collect();
    assert_eq!(refused, ["vsock"], "refused sshfs options");
}

// ---------------------------------------------------------------------------------------------
// --help, --version, --completions from the binary

fn run_binary(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sftpfs"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sftpfs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_version_from_the_binary() {
    for flag in ["-h", "--help"] {
        let (ok, out, err) = run_binary(&[flag]);
        assert!(ok && err.is_empty(), "{flag}: {err}");
        assert!(out.starts_with("Usage: sftpfs [user@]host:[dir] MOUNTPOINT"));
        assert!(out.contains("--completions <SHELL>"));
        assert!(out.contains("idmap=none|user|file"));
        assert!(out.contains("'man sftpfs'"));
        // concise: the ignored options are only summed up
        assert!(out.contains("sshfs_sync") && !out.contains("no_rofd_flush"));
    }
    for flag in ["-V", "--version"] {
        let (ok, out, _) = run_binary(&[flag]);
        assert!(ok);
        assert_eq!(out, format!("sftpfs {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn completions_from_the_binary() {
    let (ok, bash, _) = run_binary(&["--completions", "bash"]);
    assert!(ok);
    // Source the script in bash and ask it to complete, as bash would on Tab.
    let script =
        std::env::temp_dir().join(format!("sftpfs-completion-{}.bash", std::process::id()));
    std::fs::write(&script, &bash).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1" || exit 1
               COMP_WORDS=(sftpfs --comp); COMP_CWORD=1; _sftpfs sftpfs --comp sftpfs
               echo "flags: ${COMPREPLY[*]}"
               COMP_WORDS=(sftpfs --completions ""); COMP_CWORD=2; _sftpfs sftpfs "" --completions
               echo "shells: ${COMPREPLY[*]}""#,
        )
        .arg("bash")
        .arg(&script)
        .output()
        .expect("run bash");
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("flags: --completions"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("shells: bash zsh fish"), "{text}");

    let (ok, zsh, _) = run_binary(&["--completions", "zsh"]);
    assert!(ok && zsh.starts_with("#compdef sftpfs"), "{zsh}");
    assert!(zsh.contains("--completions"));
    let (ok, fish, _) = run_binary(&["--completions", "fish"]);
    assert!(ok && fish.contains("complete -c sftpfs"), "{fish}");
    assert!(fish.contains("-l completions"));

    let (ok, _, err) = run_binary(&["--completions", "tcsh"]);
    assert!(
        !ok && err.starts_with("sftpfs: ") && err.contains("tcsh"),
        "{err}"
    );
}
