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

mod apply;
mod parse;
mod ssh_g;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::config::TransportKind;
use crate::config::{MountConfig, Proxy, SshConfig, SshExplicit};
use crate::env::Env;
use apply::apply;
pub use apply::{expand_tokens, parse_proxy_jump, ssh_seconds};
pub use parse::parse_for_host;
pub use ssh_g::Lookup;

/// Jump hosts may have jump hosts of their own; this bounds the nesting (and loops).
const MAX_JUMP_DEPTH: usize = 8;

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
