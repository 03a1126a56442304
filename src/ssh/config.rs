//! ssh_config resolution: what `ssh` would apply to a host (`HostName`, `User`, `Port`,
//! `IdentityFile`, `ProxyJump`, ...), folded into the [`SshConfig`] once, before connecting.
//!
//! OpenSSH's own resolution is used when `ssh` is installed: `ssh -G` prints every setting of a
//! host after `Match`, `Include` and token expansion. It prints the defaults too, so a second
//! run with `-F none` (no config file at all) tells which settings a config file changed; only
//! those are applied. Without `ssh`, a built-in parser reads `~/.ssh/config` (or `-F FILE`) and
//! `/etc/ssh/ssh_config`: `Host` blocks with `*`/`?`/`!` patterns, `Include`, first value wins;
//! `Match` blocks other than `Match all` are skipped.
//!
//! Precedence is ssh's: what the command line set (`MountConfig::ssh_explicit`) wins over the
//! config file, which wins over sftpfs's defaults. The host name is never read as an option:
//! the CLI refuses hosts starting with `-`, and `ssh -G` gets it after `--`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::algorithms::{self, Kind};
use crate::cli::Env;
use crate::config::TransportKind;
use crate::config::{MountConfig, Proxy, SshConfig, SshExplicit, StrictHostKeyChecking};

/// Jump hosts may have jump hosts of their own; this bounds the nesting (and loops).
const MAX_JUMP_DEPTH: usize = 8;
/// `Include` nesting limit, as ssh's.
const MAX_INCLUDE_DEPTH: usize = 16;
/// `ssh -G` runs `Match exec` commands; it must not hold up the mount forever.
const SSH_G_TIMEOUT: Duration = Duration::from_secs(30);

/// Keywords whose every occurrence counts (the others: the first value wins).
const MULTI: &[&str] = &[
    "identityfile",
    "certificatefile",
    "localforward",
    "remoteforward",
    "dynamicforward",
    "sendenv",
    "setenv",
];

/// Keywords whose value is the rest of the line, spaces and quotes included.
const REST_OF_LINE: &[&str] = &[
    "proxycommand",
    "localcommand",
    "remotecommand",
    "knownhostscommand",
];

/// The settings ssh_config gives one host: lowercase keyword → values, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    values: BTreeMap<String, Vec<String>>,
    /// Values as written (the built-in parser): `~` and `%` tokens are still to be expanded.
    /// `ssh -G` expands them itself, except in `IdentityFile` (and `ProxyCommand`, which is
    /// expanded when it runs).
    raw: bool,
}

impl HostSettings {
    fn first(&self, key: &str) -> Option<&str> {
        self.values.get(key)?.first().map(String::as_str)
    }

    fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    fn insert(&mut self, key: &str, value: String) {
        let entry = self.values.entry(key.to_string()).or_default();
        if entry.is_empty() || MULTI.contains(&key) {
            entry.push(value);
        }
    }

    /// The keywords set, for the debug log.
    fn keys(&self) -> Vec<&str> {
        self.values.keys().map(String::as_str).collect()
    }
}

/// Resolves the mount's SSH settings through ssh_config (the target host, then each
/// `ProxyJump` host). Does nothing for transports other than the built-in SSH client: a
/// system `ssh` (`ssh_command=`) reads its config itself, and `directport=`/`passive` use no
/// SSH at all.
pub fn resolve(cfg: &mut MountConfig, env: &Env) -> Result<(), String> {
    if cfg.transport.kind() != TransportKind::Ssh {
        return Ok(());
    }
    let lookup = Lookup::new(cfg.ssh.config_file.clone(), env.clone());
    resolve_host(&mut cfg.ssh, &cfg.ssh_explicit, &lookup, 0)
}

/// Resolves one host's config in place: applies its ssh_config settings (those the command
/// line did not set), then resolves its jump hosts.
fn resolve_host(
    ssh: &mut SshConfig,
    explicit: &SshExplicit,
    lookup: &Lookup,
    depth: usize,
) -> Result<(), String> {
    // Jump hosts start from the command line's settings, not from the target's config file.
    let base = ssh.clone();
    apply_settings(ssh, explicit, lookup)?;
    resolve_jumps(ssh, &base, lookup, depth)
}

/// Applies what ssh_config says about `ssh.host_alias`.
fn apply_settings(
    ssh: &mut SshConfig,
    explicit: &SshExplicit,
    lookup: &Lookup,
) -> Result<(), String> {
    let port = explicit.port.then_some(ssh.port);
    let user = explicit.user.then_some(ssh.user.as_str());
    let settings = lookup.host(&ssh.host_alias, port, user)?;
    tracing::debug!(
        "ssh_config for {}: {}",
        ssh.host_alias,
        settings.keys().join(", ")
    );
    apply(ssh, explicit, &settings, &lookup.env)
}

/// Fills `ssh.jump_hosts` from its `ProxyJump`, each hop resolved through ssh_config. As in
/// ssh (`-J a,b` runs `ssh -J a -W ... b`), only the first hop may have a proxy of its own
/// from its config; a last hop that is the host itself is a loop.
fn resolve_jumps(
    ssh: &mut SshConfig,
    base: &SshConfig,
    lookup: &Lookup,
    depth: usize,
) -> Result<(), String> {
    let Some(Proxy::Jump(specs)) = &ssh.proxy else {
        ssh.jump_hosts = Vec::new();
        return Ok(());
    };
    if depth >= MAX_JUMP_DEPTH {
        return Err(format!(
            "ProxyJump: more than {MAX_JUMP_DEPTH} nested jump hosts (a loop in ssh_config?)"
        ));
    }
    let local_user = lookup.env.user.clone().unwrap_or_else(|| base.user.clone());
    let mut hops = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let (mut hop, explicit) = hop_config(base, spec, &local_user)?;
        let hop_base = hop.clone();
        apply_settings(&mut hop, &explicit, lookup)?;
        if i + 1 == specs.len() && same_login(&hop, ssh) {
            return Err(format!(
                "ProxyJump loop via {} (exclude the jump host from the Host pattern that sets \
                 ProxyJump, e.g. Host * !{})",
                hop.host_alias, hop.host_alias
            ));
        }
        if i == 0 {
            resolve_jumps(&mut hop, &hop_base, lookup, depth + 1)?;
        } else {
            // Reached through the hop before it, whatever its own config says.
            hop.proxy = None;
            hop.jump_hosts.clear();
        }
        hops.push(hop);
    }
    ssh.jump_hosts = hops;
    Ok(())
}

/// Same host as written, port and user: a jump host that is its own destination (as ssh's
/// "jumphost loop" check, which compares names, so that a jump through the same server under
/// another name stays possible).
fn same_login(a: &SshConfig, b: &SshConfig) -> bool {
    a.host_alias.eq_ignore_ascii_case(&b.host_alias) && a.port == b.port && a.user == b.user
}

/// A jump host's starting config: the command line's settings (keys, known_hosts, checking,
/// timeouts, algorithms) with the host, port and user of `spec` (`[user@]host[:port]` or
/// `ssh://[user@]host[:port]`); port 22 and `local_user` when not given. The returned flags
/// say which of port and user the spec set.
pub fn hop_config(
    base: &SshConfig,
    spec: &str,
    local_user: &str,
) -> Result<(SshConfig, SshExplicit), String> {
    let (user, host, port) = parse_jump_spec(spec)?;
    let mut hop = base.clone();
    hop.host = host.clone();
    hop.host_alias = host;
    hop.port = port.unwrap_or(22);
    hop.user = user.clone().unwrap_or_else(|| local_user.to_string());
    hop.host_key_alias = None;
    hop.proxy = None;
    hop.jump_hosts = Vec::new();
    hop.sftp_server = None;
    let explicit = SshExplicit {
        port: port.is_some(),
        user: user.is_some(),
        ..SshExplicit::default()
    };
    Ok((hop, explicit))
}

/// `[user@]host[:port]`, `[user@][v6addr][:port]` or `ssh://[user@]host[:port]`.
fn parse_jump_spec(spec: &str) -> Result<(Option<String>, String, Option<u16>), String> {
    let bad = |why: &str| format!("invalid ProxyJump host '{spec}': {why}");
    let s = spec.trim();
    let s = s.strip_prefix("ssh://").unwrap_or(s);
    let s = s.strip_suffix('/').unwrap_or(s);
    let (user, hostport) = match s.rfind('@') {
        Some(at) => (Some(&s[..at]), &s[at + 1..]),
        None => (None, s),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let close = inner.find(']').ok_or_else(|| bad("'[' without ']'"))?;
        let rest = &inner[close + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err(bad("text after ']'")),
        };
        (&inner[..close], port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port must be a number 1-65535"))?,
        ),
    };
    check_name(host).map_err(bad)?;
    if let Some(u) = user {
        check_name(u).map_err(bad)?;
    }
    Ok((user.map(String::from), host.to_string(), port))
}

/// A host or user name that can never be read as an option or break a command line.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.starts_with('-') {
        return Err("a name cannot start with '-'");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "'`\"$\\;&<>|(){}".contains(c))
    {
        return Err("whitespace, control or shell characters");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Applying settings

/// Folds `s` into `ssh`, skipping what the command line set.
fn apply(
    ssh: &mut SshConfig,
    explicit: &SshExplicit,
    s: &HostSettings,
    env: &Env,
) -> Result<(), String> {
    let alias = ssh.host_alias.clone();
    let bad = |key: &str, value: &str, expected: &str| {
        format!("ssh_config: invalid {key} '{value}' for host {alias} (expected {expected})")
    };
    if explicit.host {
        ssh.host = expand_tokens(&ssh.host, &[('h', &alias)]);
    } else if let Some(h) = s.first("hostname") {
        let h = if s.raw {
            expand_tokens(h, &[('h', &alias)])
        } else {
            h.to_string()
        };
        check_name(&h).map_err(|_| bad("HostName", &h, "a host name"))?;
        ssh.host = h;
    }
    if !explicit.user {
        if let Some(u) = s.first("user") {
            check_name(u).map_err(|_| bad("User", u, "a user name"))?;
            ssh.user = u.to_string();
        }
    }
    if !explicit.port {
        if let Some(p) = s.first("port") {
            ssh.port = p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("Port", p, "a number 1-65535"))?;
        }
    }
    if !explicit.host_key_alias {
        if let Some(a) = s.first("hostkeyalias") {
            ssh.host_key_alias = Some(a.to_string());
        }
    }
    let tokens = Tokens::new(ssh, env);
    let home = env.home.as_deref();
    let files = s.all("identityfile");
    if !files.is_empty() {
        let files: Vec<PathBuf> = files
            .iter()
            .map(|f| PathBuf::from(tokens.expand(&expand_tilde(f, home))))
            .collect();
        if ssh.identity_files_explicit {
            // As ssh: command-line identities first, then the config's (missing ones skipped,
            // since only command-line files must exist).
            for f in files {
                if f.exists() && !ssh.identity_files.contains(&f) {
                    ssh.identity_files.push(f);
                }
            }
        } else {
            ssh.identity_files = files;
        }
    }
    if !explicit.identities_only {
        if let Some(v) = s.first("identitiesonly") {
            ssh.identities_only = yes_no(v).ok_or_else(|| bad("IdentitiesOnly", v, "yes or no"))?;
        }
    }
    let known_hosts = |v: &str| -> Vec<PathBuf> {
        if v == "none" {
            return Vec::new();
        }
        v.split_whitespace()
            .map(|f| {
                if s.raw {
                    PathBuf::from(tokens.expand(&expand_tilde(f, home)))
                } else {
                    PathBuf::from(f)
                }
            })
            .collect()
    };
    if !explicit.user_known_hosts_files {
        if let Some(v) = s.first("userknownhostsfile") {
            ssh.user_known_hosts_files = known_hosts(v);
        }
    }
    if !explicit.global_known_hosts_files {
        if let Some(v) = s.first("globalknownhostsfile") {
            ssh.global_known_hosts_files = known_hosts(v);
        }
    }
    if !explicit.strict_host_key_checking {
        if let Some(v) = s.first("stricthostkeychecking") {
            ssh.strict_host_key_checking = match v.to_ascii_lowercase().as_str() {
                "yes" | "true" => StrictHostKeyChecking::Yes,
                "accept-new" => StrictHostKeyChecking::AcceptNew,
                "no" | "off" | "false" => StrictHostKeyChecking::No,
                "ask" => StrictHostKeyChecking::Ask,
                _ => {
                    return Err(bad(
                        "StrictHostKeyChecking",
                        v,
                        "yes, accept-new, no or ask",
                    ))
                }
            };
        }
    }
    if !explicit.batch_mode {
        if let Some(v) = s.first("batchmode") {
            ssh.batch_mode = yes_no(v).ok_or_else(|| bad("BatchMode", v, "yes or no"))?;
        }
    }
    if !explicit.connect_timeout {
        if let Some(v) = s.first("connecttimeout").filter(|v| *v != "none") {
            let secs = ssh_seconds(v).filter(|&s| s >= 1);
            ssh.connect_timeout =
                Duration::from_secs(secs.ok_or_else(|| bad("ConnectTimeout", v, "seconds"))?);
        }
    }
    if !explicit.server_alive_interval {
        if let Some(v) = s.first("serveraliveinterval") {
            let secs = ssh_seconds(v).ok_or_else(|| bad("ServerAliveInterval", v, "seconds"))?;
            ssh.server_alive_interval = Duration::from_secs(secs);
        }
    }
    if !explicit.server_alive_count_max {
        if let Some(v) = s.first("serveralivecountmax") {
            let n = v.parse::<usize>().ok().filter(|&n| n >= 1);
            ssh.server_alive_count_max =
                n.ok_or_else(|| bad("ServerAliveCountMax", v, "a number >= 1"))?;
        }
    }
    if !explicit.proxy {
        if let Some(v) = s.first("proxyjump") {
            ssh.proxy = parse_proxy_jump(v).map_err(|e| format!("ssh_config: {e}"))?;
        } else if let Some(v) = s.first("proxycommand") {
            ssh.proxy = (v != "none").then(|| Proxy::Command(v.to_string()));
        }
    }
    for (key, kind, field, set) in [
        ("ciphers", Kind::Cipher, &mut ssh.ciphers, explicit.ciphers),
        (
            "kexalgorithms",
            Kind::Kex,
            &mut ssh.kex_algorithms,
            explicit.kex_algorithms,
        ),
        ("macs", Kind::Mac, &mut ssh.macs, explicit.macs),
    ] {
        if set {
            continue;
        }
        if let Some(v) = s.first(key) {
            *field = Some(
                algorithms::parse_config_spec(kind, v)
                    .map_err(|e| format!("ssh_config for host {alias}: {e}"))?,
            );
        }
    }
    if !explicit.compression {
        if let Some(v) = s.first("compression") {
            ssh.compression = yes_no(v).ok_or_else(|| bad("Compression", v, "yes or no"))?;
        }
    }
    Ok(())
}

/// `none`, or comma-separated jump hosts.
pub fn parse_proxy_jump(v: &str) -> Result<Option<Proxy>, String> {
    if v == "none" {
        return Ok(None);
    }
    let hops: Vec<String> = v
        .split(',')
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    if hops.is_empty() {
        return Err("ProxyJump: no host given".into());
    }
    for h in &hops {
        parse_jump_spec(h)?;
    }
    Ok(Some(Proxy::Jump(hops)))
}

fn yes_no(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// ssh's time format: `30`, `90s`, `2m`, `1h30m` (units s, m, h, d, w; any case).
pub fn ssh_seconds(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
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

/// `~` and `~/...` with the home directory.
fn expand_tilde(s: &str, home: Option<&Path>) -> String {
    match (s.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{}{rest}", home.display())
        }
        _ => s.to_string(),
    }
}

/// ssh's `%` tokens: each `%c` in `table` replaced, `%%` is `%`, others left as written.
pub fn expand_tokens(s: &str, table: &[(char, &str)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match table.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push('%');
                    out.push(t);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// The values of ssh's tokens for one host (those usable in `IdentityFile` and
/// `UserKnownHostsFile`).
struct Tokens {
    table: Vec<(char, String)>,
}

impl Tokens {
    fn new(ssh: &SshConfig, env: &Env) -> Tokens {
        let local_host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let short = local_host.split('.').next().unwrap_or("").to_string();
        let home = env
            .home
            .as_ref()
            .map(|h| h.display().to_string())
            .unwrap_or_default();
        let table = vec![
            ('d', home),
            ('h', ssh.host.clone()),
            ('n', ssh.host_alias.clone()),
            ('p', ssh.port.to_string()),
            ('r', ssh.user.clone()),
            ('u', env.user.clone().unwrap_or_default()),
            ('i', nix::unistd::getuid().to_string()),
            ('l', local_host),
            ('L', short),
            (
                'k',
                ssh.host_key_alias
                    .clone()
                    .unwrap_or_else(|| ssh.host.clone()),
            ),
        ];
        Tokens { table }
    }

    fn expand(&self, s: &str) -> String {
        let table: Vec<(char, &str)> = self.table.iter().map(|(c, v)| (*c, v.as_str())).collect();
        expand_tokens(s, &table)
    }
}

// ---------------------------------------------------------------------------------------------
// Looking a host up

/// Answers "what does ssh_config say about this host": `ssh -G` when `ssh` is installed, the
/// built-in parser otherwise.
pub struct Lookup {
    config_file: Option<PathBuf>,
    env: Env,
    /// Set once `ssh` turned out not to be installed.
    no_ssh: std::cell::Cell<bool>,
}

impl Lookup {
    pub fn new(config_file: Option<PathBuf>, env: Env) -> Lookup {
        Lookup {
            config_file,
            env,
            no_ssh: std::cell::Cell::new(false),
        }
    }

    /// The settings ssh_config gives `host` (with `-p`/`-l` when the command line set them,
    /// since `Match` and tokens may depend on them).
    pub fn host(
        &self,
        host: &str,
        port: Option<u16>,
        user: Option<&str>,
    ) -> Result<HostSettings, String> {
        check_name(host).map_err(|why| format!("invalid host '{host}': {why}"))?;
        if !self.no_ssh.get() {
            match self.ssh_g(host, port, user) {
                Ok(s) => return Ok(s),
                Err(SshG::Missing) => {
                    tracing::debug!(
                        "ssh is not installed: reading ssh_config with sftpfs's parser"
                    );
                    self.no_ssh.set(true);
                }
                Err(SshG::Failed(e)) => return Err(e),
            }
        }
        // As ssh: a missing -F file is an error (a missing ~/.ssh/config is not).
        if let Some(f) = self
            .config_file
            .as_ref()
            .filter(|f| f.as_os_str() != "none")
        {
            std::fs::metadata(f)
                .map_err(|e| format!("cannot read ssh config file {}: {e}", f.display()))?;
        }
        Ok(parse_for_host(
            &self.files(),
            host,
            self.env.home.as_deref(),
        ))
    }

    /// The files the built-in parser reads: `-F FILE` alone (none for `-F none`), else the
    /// user's and the system's.
    fn files(&self) -> Vec<PathBuf> {
        match &self.config_file {
            Some(f) if f.as_os_str() == "none" => Vec::new(),
            Some(f) => vec![f.clone()],
            None => {
                let mut v: Vec<PathBuf> = self
                    .env
                    .home
                    .iter()
                    .map(|h| h.join(".ssh/config"))
                    .collect();
                v.push(PathBuf::from("/etc/ssh/ssh_config"));
                v
            }
        }
    }

    /// `ssh -G` with the config, minus what `ssh -G -F none` prints (the built-in defaults).
    fn ssh_g(
        &self,
        host: &str,
        port: Option<u16>,
        user: Option<&str>,
    ) -> Result<HostSettings, SshG> {
        let config: Option<OsString> = self.config_file.clone().map(PathBuf::into_os_string);
        let with = run_ssh_g(config, host, port, user)?;
        let without = run_ssh_g(Some("none".into()), host, port, user)?;
        let mut s = HostSettings::default();
        for (key, values) in with {
            if without.get(&key) != Some(&values) {
                s.values.insert(key, values);
            }
        }
        Ok(s)
    }
}

enum SshG {
    /// `ssh` is not installed.
    Missing,
    /// It ran and said no (a bad config file); one line.
    Failed(String),
}

fn run_ssh_g(
    config: Option<OsString>,
    host: &str,
    port: Option<u16>,
    user: Option<&str>,
) -> Result<BTreeMap<String, Vec<String>>, SshG> {
    let mut cmd = Command::new("ssh");
    cmd.arg("-G");
    if let Some(f) = config {
        cmd.arg("-F").arg(f);
    }
    if let Some(p) = port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(host);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SshG::Missing),
        Err(e) => return Err(SshG::Failed(format!("cannot run ssh -G: {e}"))),
    };
    // Read both pipes off this thread so a chatty ssh cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < SSH_G_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SshG::Failed(format!(
                    "ssh -G {host} did not finish within {}s (a Match exec in ssh_config?)",
                    SSH_G_TIMEOUT.as_secs()
                )));
            }
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        let line = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("Pseudo-terminal will not be allocated"))
            .unwrap_or("no message");
        return Err(SshG::Failed(format!(
            "ssh_config: ssh -G {host} failed: {line}"
        )));
    }
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        if key.is_empty() {
            continue;
        }
        map.entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.to_string());
    }
    Ok(map)
}

// ---------------------------------------------------------------------------------------------
// The built-in parser

/// What `files` say about `host`, read in order (first value wins). Unreadable files are
/// skipped, as ssh skips a missing `~/.ssh/config`.
pub fn parse_for_host(files: &[PathBuf], host: &str, home: Option<&Path>) -> HostSettings {
    let mut s = HostSettings {
        raw: true,
        ..HostSettings::default()
    };
    for file in files {
        // Relative `Include`s: under ~/.ssh for the user's file, /etc/ssh for the system's.
        let base = if file.starts_with("/etc/ssh") {
            PathBuf::from("/etc/ssh")
        } else {
            home.map(|h| h.join(".ssh"))
                .unwrap_or_else(|| PathBuf::from("/"))
        };
        let ctx = ParseCtx {
            host: host.to_ascii_lowercase(),
            home,
            include_base: base,
        };
        ctx.file(file, &mut s, 0);
    }
    s
}

struct ParseCtx<'a> {
    host: String,
    home: Option<&'a Path>,
    include_base: PathBuf,
}

impl ParseCtx<'_> {
    fn file(&self, path: &Path, s: &mut HostSettings, depth: usize) {
        match std::fs::read(path) {
            Ok(bytes) => self.text(&String::from_utf8_lossy(&bytes), s, depth),
            Err(e) => tracing::debug!("ssh_config {}: {e}", path.display()),
        }
    }

    fn text(&self, text: &str, s: &mut HostSettings, depth: usize) {
        let mut active = true;
        for line in text.lines() {
            let Some((key, rest)) = split_keyword(line) else {
                continue;
            };
            match key.as_str() {
                "host" => active = host_matches(&self.host, &split_args(rest)),
                "match" => {
                    let args = split_args(rest);
                    active = args.len() == 1 && args[0].eq_ignore_ascii_case("all");
                    if !active {
                        tracing::debug!("ssh_config: 'Match {rest}' needs ssh; block skipped");
                    }
                }
                _ if !active => {}
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        tracing::debug!("ssh_config: Include nested too deeply");
                        continue;
                    }
                    for pattern in split_args(rest) {
                        for f in self.include_files(&pattern) {
                            self.file(&f, s, depth + 1);
                        }
                    }
                }
                "proxycommand" | "proxyjump" => {
                    // They compete: whichever comes first wins, as in ssh.
                    if s.first("proxycommand").is_none() && s.first("proxyjump").is_none() {
                        let v = if key == "proxycommand" {
                            rest.to_string()
                        } else {
                            split_args(rest).join(",")
                        };
                        s.insert(&key, v);
                    }
                }
                k if REST_OF_LINE.contains(&k) => s.insert(k, rest.to_string()),
                k => {
                    let args = split_args(rest);
                    if !args.is_empty() {
                        s.insert(k, args.join(" "));
                    }
                }
            }
        }
    }

    /// The files an `Include` names: `~` expanded, relative to the base directory, `*`/`?`
    /// in the last component, sorted.
    fn include_files(&self, pattern: &str) -> Vec<PathBuf> {
        let p = PathBuf::from(expand_tilde(pattern, self.home));
        let p = if p.is_absolute() {
            p
        } else {
            self.include_base.join(p)
        };
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name.filter(|n| n.contains(['*', '?'])) else {
            return vec![p];
        };
        let dir = p.parent().unwrap_or(Path::new("/"));
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| algorithms::wildcard_match(&name, &e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    }
}

/// `Keyword value`, `Keyword=value` or `Keyword = value`: the keyword in lower case and the
/// rest of the line. `None` for blank lines and comments.
fn split_keyword(line: &str) -> Option<(String, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    Some((key.to_ascii_lowercase(), rest))
}

/// Arguments separated by whitespace; `"..."` and `'...'` group.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                has = true;
            }
            None if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            None => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// ssh's `Host` matching: some pattern matches and no `!pattern` does. Case-insensitive.
fn host_matches(host: &str, patterns: &[String]) -> bool {
    let mut matched = false;
    for p in patterns {
        let p = p.to_ascii_lowercase();
        if let Some(neg) = p.strip_prefix('!') {
            if algorithms::wildcard_match(neg, host) {
                return false;
            }
        } else if algorithms::wildcard_match(&p, host) {
            matched = true;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            home: Some(PathBuf::from("/home/alice")),
            user: Some("alice".into()),
            ssh_auth_sock: None,
        }
    }

    fn base(alias: &str) -> SshConfig {
        let mut c = crate::ssh::test_support::config(alias, 22);
        c.host_alias = alias.into();
        c.user = "alice".into();
        c.identity_files = vec!["/home/alice/.ssh/id_ed25519".into()];
        c.identity_files_explicit = false;
        c
    }

    fn parsed(text: &str, host: &str) -> HostSettings {
        let dir = crate::ssh::test_support::TempDir::new();
        let f = dir.path().join("config");
        std::fs::write(&f, text).unwrap();
        parse_for_host(&[f], host, Some(Path::new("/home/alice")))
    }

    #[test]
    fn parser_first_value_wins_and_patterns_match() {
        let text = "# comment\n\
            Host web !web2 *.example\n\
            \tHostName 10.0.0.1\n\
            \tPort=2222\n\
            \tIdentityFile ~/.ssh/a\n\
            Host *\n\
            \tPort 22\n\
            \tIdentityFile \"/keys/b %r\"\n\
            \tUser = bob\n\
            \tProxyCommand nc %h %p\n\
            \tProxyJump nowhere\n\
            Match exec \"true\"\n\
            \tUser never\n";
        let s = parsed(text, "web");
        assert_eq!(s.first("hostname"), Some("10.0.0.1"));
        assert_eq!(s.first("port"), Some("2222"));
        assert_eq!(s.first("user"), Some("bob"));
        assert_eq!(s.all("identityfile"), ["~/.ssh/a", "/keys/b %r"]);
        assert_eq!(s.first("proxycommand"), Some("nc %h %p"));
        assert_eq!(s.first("proxyjump"), None);
        let s = parsed(text, "web2");
        assert_eq!(s.first("hostname"), None);
        assert_eq!(s.first("port"), Some("22"));
        let s = parsed(text, "A.EXAMPLE");
        assert_eq!(s.first("hostname"), Some("10.0.0.1"));
    }

    #[test]
    fn parser_follows_includes() {
        let dir = crate::ssh::test_support::TempDir::new();
        let d = dir.path();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        std::fs::write(d.join("conf.d/1.conf"), "Host x\n  Port 7\n").unwrap();
        std::fs::write(d.join("conf.d/2.conf"), "Host x\n  Port 8\n  User u\n").unwrap();
        let main = d.join("config");
        std::fs::write(&main, format!("Include {}/conf.d/*.conf\n", d.display())).unwrap();
        let s = parse_for_host(&[main], "x", None);
        assert_eq!(s.first("port"), Some("7"));
        assert_eq!(s.first("user"), Some("u"));
    }

    #[test]
    fn apply_respects_the_command_line_and_expands_tokens() {
        let s = parsed(
            "Host alias\n HostName %h.lan\n User bob\n Port 2200\n \
             IdentityFile ~/.ssh/%r@%h\n UserKnownHostsFile ~/kh /k/%n\n \
             StrictHostKeyChecking accept-new\n ServerAliveInterval 1m\n ConnectTimeout 5\n \
             Ciphers aes128-ctr,not-a-cipher\n Compression yes\n IdentitiesOnly yes\n \
             HostKeyAlias keyname\n ProxyJump j1,carol@j2:23\n",
            "alias",
        );
        let mut c = base("alias");
        let explicit = SshExplicit {
            port: true,
            ..SshExplicit::default()
        };
        c.port = 2022;
        apply(&mut c, &explicit, &s, &env()).unwrap();
        assert_eq!(c.host, "alias.lan");
        assert_eq!(c.host_alias, "alias");
        assert_eq!(c.user, "bob");
        assert_eq!(c.port, 2022, "-p wins over Port");
        assert_eq!(
            c.identity_files,
            [PathBuf::from("/home/alice/.ssh/bob@alias.lan")]
        );
        assert!(!c.identity_files_explicit);
        assert_eq!(
            c.user_known_hosts_files,
            [PathBuf::from("/home/alice/kh"), PathBuf::from("/k/alias")]
        );
        assert_eq!(c.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert_eq!(c.server_alive_interval, Duration::from_secs(60));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.ciphers, Some(vec!["aes128-ctr".to_string()]));
        assert!(c.compression && c.identities_only);
        assert_eq!(c.host_key_alias.as_deref(), Some("keyname"));
        assert_eq!(
            c.proxy,
            Some(Proxy::Jump(vec!["j1".into(), "carol@j2:23".into()]))
        );
    }

    #[test]
    fn command_line_identity_files_come_first() {
        let dir = crate::ssh::test_support::TempDir::new();
        let k = dir.path().join("k");
        std::fs::write(&k, "").unwrap();
        let s = parsed(
            &format!(
                "Host *\n IdentityFile {}\n IdentityFile /missing\n",
                k.display()
            ),
            "h",
        );
        let mut c = base("h");
        c.identity_files = vec!["/cli/key".into()];
        c.identity_files_explicit = true;
        apply(&mut c, &SshExplicit::default(), &s, &env()).unwrap();
        assert_eq!(c.identity_files, [PathBuf::from("/cli/key"), k]);
    }

    #[test]
    fn jump_specs() {
        assert_eq!(
            parse_jump_spec("bob@h:2222").unwrap(),
            (Some("bob".into()), "h".into(), Some(2222))
        );
        assert_eq!(
            parse_jump_spec("ssh://[::1]:22").unwrap(),
            (None, "::1".into(), Some(22))
        );
        assert_eq!(parse_jump_spec("h").unwrap(), (None, "h".into(), None));
        assert!(parse_jump_spec("-oProxyCommand=x").is_err());
        assert!(parse_jump_spec("h:0").is_err());
        assert!(parse_proxy_jump("a,,b").is_ok());
        assert_eq!(parse_proxy_jump("none").unwrap(), None);
    }

    #[test]
    fn tokens() {
        assert_eq!(
            expand_tokens("%h:%p %% %x", &[('h', "host"), ('p', "22")]),
            "host:22 % %x"
        );
    }

    #[test]
    fn ssh_g_is_used_when_installed_and_changes_only_what_the_config_says() {
        if Command::new("ssh").arg("-V").output().is_err() {
            return; // no ssh: the parser is what runs, tested above
        }
        let dir = crate::ssh::test_support::TempDir::new();
        let f = dir.path().join("config");
        std::fs::write(
            &f,
            "Host alias\n HostName 127.0.0.9\n Port 2201\n User carol\n \
             IdentityFile /k/%r\n ProxyJump j\nHost j\n HostName 127.0.0.10\n",
        )
        .unwrap();
        let lookup = Lookup::new(Some(f.clone()), env());
        let s = lookup.host("alias", None, None).unwrap();
        assert!(!s.raw);
        assert_eq!(s.first("hostname"), Some("127.0.0.9"));
        assert_eq!(s.first("port"), Some("2201"));
        assert_eq!(s.first("user"), Some("carol"));
        assert_eq!(s.all("identityfile"), ["/k/%r"]);
        assert_eq!(s.first("proxyjump"), Some("j"));
        // ssh's defaults are not reported as settings.
        assert_eq!(s.first("ciphers"), None);
        assert_eq!(s.first("serveraliveinterval"), None);
        let s = lookup.host("alias", Some(2300), Some("dave")).unwrap();
        assert_eq!(s.first("port"), None, "-p given: same as without config");

        // The whole resolution, with a jump host from the same file.
        let mut cfg = base("alias");
        apply(
            &mut cfg,
            &SshExplicit::default(),
            &lookup.host("alias", None, None).unwrap(),
            &env(),
        )
        .unwrap();
        resolve_jumps(&mut cfg, &base("alias"), &lookup, 0).unwrap();
        let hops = &cfg.jump_hosts;
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].host, "127.0.0.10");
        assert_eq!(hops[0].host_alias, "j");
        assert_eq!(hops[0].port, 22);

        // `Host *` with a ProxyJump that does not exclude the jump host: a loop, named.
        std::fs::write(&f, "Host *\n ProxyJump j\nHost j\n HostName 127.0.0.10\n").unwrap();
        let mut cfg = base("j");
        let e = resolve_host(&mut cfg, &SshExplicit::default(), &lookup, 0).unwrap_err();
        assert!(e.starts_with("ProxyJump loop via j"), "{e}");

        // A broken config file: ssh's own message, one line.
        std::fs::write(&f, "Host x\n NoSuchOption 1\n").unwrap();
        let e = match lookup.host("x", None, None) {
            Err(e) => e,
            Ok(s) => panic!("expected an error, got {s:?}"),
        };
        assert!(e.contains("NoSuchOption") || e.contains("line 2"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
