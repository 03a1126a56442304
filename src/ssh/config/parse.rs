//! The built-in ssh_config parser, for when `ssh` is not installed.

use std::path::{Path, PathBuf};

use super::apply::expand_tilde;
use super::HostSettings;
use crate::ssh::algorithms;

/// `Include` nesting limit, as ssh's.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Keywords whose value is the rest of the line, spaces and quotes included.
const REST_OF_LINE: &[&str] = &[
    "proxycommand",
    "localcommand",
    "remotecommand",
    "knownhostscommand",
];

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
