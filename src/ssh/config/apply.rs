//! Folding one host's ssh_config settings into its [`SshConfig`], and the value formats they
//! share with the command line (`ProxyJump`, ssh's times, `~` and `%` tokens).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{check_name, parse_jump_spec, HostSettings};
use crate::config::{Proxy, SshConfig, SshExplicit, StrictHostKeyChecking};
use crate::env::Env;
use crate::ssh::algorithms::{self, Kind};

/// Folds `s` into `ssh`, skipping what the command line set.
pub(super) fn apply(
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
pub(super) fn expand_tilde(s: &str, home: Option<&Path>) -> String {
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
