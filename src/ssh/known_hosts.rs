//! OpenSSH `known_hosts` files: parsing, host matching and recording new keys.
//!
//! Our own parser because russh's splits on single spaces (tabs never match), knows no
//! wildcards or negation, and ignores `@revoked` / `@cert-authority` markers. Format (sshd(8),
//! "SSH_KNOWN_HOSTS FILE FORMAT"):
//!
//! ```text
//! [@marker] host-patterns key-type base64-key [comment]
//! ```
//!
//! Host patterns are comma-separated; `*` and `?` are wildcards, a leading `!` negates; a
//! `|1|salt|hmac` pattern is a hashed name (HMAC-SHA1 of the name keyed with the salt). A host
//! on port 22 is named `host`, on any other port `[host]:port`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, PublicKey};
use sha1::Sha1;

/// What the known_hosts files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// The key is listed for this host.
    Known,
    /// A different key of the same type is listed for this host: the first such line.
    Changed { file: PathBuf, line: usize },
    /// The key is listed for this host with `@revoked`.
    Revoked { file: PathBuf, line: usize },
    /// No key of this type is listed for this host.
    Unknown,
}

/// The name ssh uses for a host in known_hosts: `host` on port 22, `[host]:port` otherwise.
/// Host names are compared in lower case, as ssh does.
pub fn host_entry_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
}

#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Marker,
    key: KeyData,
}

/// The known_hosts entries that apply to one host, gathered from several files.
#[derive(Debug, Clone, Default)]
pub struct HostEntries {
    entries: Vec<Entry>,
}

impl HostEntries {
    /// Read every file (missing or unreadable ones are skipped) and keep the lines whose host
    /// patterns match `host`/`port`.
    pub fn load<'a>(host: &str, port: u16, files: impl IntoIterator<Item = &'a Path>) -> Self {
        let name = host_entry_name(host, port);
        let mut entries = Vec::new();
        for file in files {
            let text = match fs::read(file) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        tracing::warn!("cannot read known hosts file {}: {e}", file.display());
                    }
                    continue;
                }
            };
            entries.extend(parse_matching(&text, &name, file));
        }
        HostEntries { entries }
    }

    /// Judge `key`. A revoked key is refused even if it is also listed as known; a key that
    /// is listed anywhere wins over a different key of the same type listed elsewhere (ssh
    /// checks all files the same way).
    pub fn check(&self, key: &PublicKey) -> HostKeyStatus {
        let data = key.key_data();
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && &e.key == data)
        {
            return HostKeyStatus::Revoked {
                file: e.file.clone(),
                line: e.line,
            };
        }
        let normal = || self.entries.iter().filter(|e| e.marker == Marker::None);
        if normal().any(|e| &e.key == data) {
            return HostKeyStatus::Known;
        }
        match normal().find(|e| e.key.algorithm() == data.algorithm()) {
            Some(e) => HostKeyStatus::Changed {
                file: e.file.clone(),
                line: e.line,
            },
            None => HostKeyStatus::Unknown,
        }
    }

    /// Key algorithms listed (not revoked) for this host, in file order, without repeats:
    /// used to ask the server for a key type we can verify, as ssh does.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let mut algs: Vec<Algorithm> = Vec::new();
        for e in self.entries.iter().filter(|e| e.marker == Marker::None) {
            let alg = e.key.algorithm();
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        algs
    }
}

/// The entries of one file's text that apply to `name`.
fn parse_matching(text: &str, name: &str, file: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next();
        let marker = match first {
            Some("@revoked") => {
                first = fields.next();
                Marker::Revoked
            }
            // Certificate authorities vouch for certificates, which we do not accept; any
            // other marker is unknown to us, so the line is not a plain key either.
            Some(m) if m.starts_with('@') => continue,
            _ => Marker::None,
        };
        let (Some(hosts), Some(_key_type), Some(blob)) = (first, fields.next(), fields.next())
        else {
            continue;
        };
        if !hosts_match(hosts, name) {
            continue;
        }
        // Compare by key data: the key type field and the comment do not matter.
        let Some(key) = BASE64
            .decode(blob)
            .ok()
            .and_then(|b| PublicKey::from_bytes(&b).ok())
        else {
            tracing::debug!(
                "{}:{}: unreadable key, line ignored",
                file.display(),
                index + 1
            );
            continue;
        };
        out.push(Entry {
            file: file.to_path_buf(),
            line: index + 1,
            marker,
            key: key.key_data().clone(),
        });
    }
    out
}

/// ssh's rule for a comma-separated pattern list: some positive pattern matches and no
/// negated one does.
fn hosts_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if pattern_matches(pattern, name) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    glob_matches(
        pattern.to_ascii_lowercase().as_bytes(),
        name.to_ascii_lowercase().as_bytes(),
    )
}

/// `salt|hmac`, both base64: HMAC-SHA1(key = salt, message = name).
fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (BASE64.decode(salt), BASE64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` matches any run of characters, `?` exactly one.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    // Let the `*` swallow one more character and retry.
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The line recorded for a newly trusted key: `name key-type base64`.
pub fn entry_line(host: &str, port: u16, key: &PublicKey) -> io::Result<String> {
    let blob = key.to_bytes().map_err(io::Error::other)?;
    Ok(format!(
        "{} {} {}",
        host_entry_name(host, port),
        key.algorithm().as_str(),
        BASE64.encode(blob)
    ))
}

/// Append a key for `host`/`port` to `file`, creating the file (mode 0600) and its directory
/// (mode 0700) as ssh does.
pub fn append(file: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    let line = entry_line(host, port, key)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
    }
    // A file whose last line lacks its newline would otherwise get our entry glued to it.
    let needs_newline = match fs::read(file) {
        Ok(bytes) => bytes.last().is_some_and(|&b| b != b'\n'),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)?;
    let text = format!("{}{line}\n", if needs_newline { "\n" } else { "" });
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::test_support::TempDir;

    // Two throwaway ed25519 public keys and an ECDSA one.
    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN5s8C9qLfzyvuOHNvecSCBB3nDGMCamiI5s5j5tCYe";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBipIJYDvUnnb4s4ZqJ7+mLVBsZuotfjXejuVFC41Pyj";
    const KEY_EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHzYcaSrVrZ8Powh6jK6YqLh4jCLW1f/89A462wr8uEn7TQcGQUSzi30jb+XEWrFIVgbs0yNvrGpCYr/06AQs3g=";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn check_text(text: &str, host: &str, port: u16, k: &str) -> HostKeyStatus {
        let dir = TempDir::new();
        let file = dir.path().join("known_hosts");
        fs::write(&file, text).unwrap();
        HostEntries::load(host, port, [file.as_path()]).check(&key(k))
    }

    fn changed_at(line: usize) -> impl Fn(&HostKeyStatus) -> bool {
        move |s| matches!(s, HostKeyStatus::Changed { line: l, .. } if *l == line)
    }

    #[test]
    fn plain_host_on_port_22() {
        let text = format!("example.org {KEY_A} comment here\n");
        assert_eq!(
            check_text(&text, "example.org", 22, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "EXAMPLE.org", 22, KEY_A),
            HostKeyStatus::Known
        );
        // The plain name is for port 22 only.
        assert_eq!(
            check_text(&text, "example.org", 2222, KEY_A),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            check_text(&text, "other.org", 22, KEY_A),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn bracketed_host_and_port() {
        let text = format!("[127.0.0.1]:2222 {KEY_A}\n");
        assert_eq!(
            check_text(&text, "127.0.0.1", 2222, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "127.0.0.1", 22, KEY_A),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            check_text(&text, "127.0.0.1", 2223, KEY_A),
            HostKeyStatus::Unknown
        );
        let v6 = format!("[::1]:2222 {KEY_A}\n");
        assert_eq!(check_text(&v6, "::1", 2222, KEY_A), HostKeyStatus::Known);
    }

    #[test]
    fn comma_lists_tabs_comments_and_blank_lines() {
        let text = format!(
            "# a comment\n\n   \nalias,example.org,10.0.0.1\t{}\n",
            KEY_A.replace(' ', "\t \t")
        );
        assert_eq!(
            check_text(&text, "example.org", 22, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "10.0.0.1", 22, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(check_text(&text, "alias", 22, KEY_A), HostKeyStatus::Known);
        assert_eq!(
            check_text(&text, "example", 22, KEY_A),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn comment_of_the_key_does_not_matter() {
        let text = format!("h {KEY_A} alice@laptop\n");
        let mut k = key(KEY_A);
        k.set_comment("something else");
        let dir = TempDir::new();
        let file = dir.path().join("kh");
        fs::write(&file, text).unwrap();
        assert_eq!(
            HostEntries::load("h", 22, [file.as_path()]).check(&k),
            HostKeyStatus::Known
        );
    }

    #[test]
    fn hashed_entries() {
        // HMAC-SHA1 of the name keyed with the salt, as `ssh-keygen -H` writes it.
        fn hashed(name: &str, salt: &[u8]) -> String {
            let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
            mac.update(name.as_bytes());
            format!(
                "|1|{}|{}",
                BASE64.encode(salt),
                BASE64.encode(mac.finalize().into_bytes())
            )
        }
        let salt = b"0123456789abcdefghij";
        let text = format!(
            "{} {KEY_A}\n{} {KEY_B}\n",
            hashed("[127.0.0.1]:2222", salt),
            hashed("example.org", salt)
        );
        assert_eq!(
            check_text(&text, "127.0.0.1", 2222, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "example.org", 22, KEY_B),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "127.0.0.1", 22, KEY_A),
            HostKeyStatus::Unknown
        );
        assert!(changed_at(1)(&check_text(&text, "127.0.0.1", 2222, KEY_B)));
        // A broken hash is ignored, not an error.
        let bad = format!("|1|!!!|??? {KEY_A}\n");
        assert_eq!(
            check_text(&bad, "127.0.0.1", 2222, KEY_A),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn hashed_entry_from_ssh_keygen() {
        let dir = TempDir::new();
        let file = dir.path().join("known_hosts");
        fs::write(
            &file,
            format!("[127.0.0.1]:2222 {KEY_A}\nexample.org {KEY_B}\n"),
        )
        .unwrap();
        let ok = std::process::Command::new("ssh-keygen")
            .arg("-q")
            .arg("-H")
            .arg("-f")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("ssh-keygen -H not available; skipped");
            return;
        }
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("|1|"), "{text}");
        let entries = HostEntries::load("127.0.0.1", 2222, [file.as_path()]);
        assert_eq!(entries.check(&key(KEY_A)), HostKeyStatus::Known);
        let entries = HostEntries::load("example.org", 22, [file.as_path()]);
        assert_eq!(entries.check(&key(KEY_B)), HostKeyStatus::Known);
    }

    #[test]
    fn wildcards() {
        let text = format!("*.example.org,[10.0.0.?]:2222 {KEY_A}\n");
        assert_eq!(
            check_text(&text, "a.example.org", 22, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "a.b.example.org", 22, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "example.org", 22, KEY_A),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            check_text(&text, "10.0.0.7", 2222, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "10.0.0.17", 2222, KEY_A),
            HostKeyStatus::Unknown
        );
        assert!(glob_matches(b"*", b""));
        assert!(glob_matches(b"a*b*c", b"axxbyyc"));
        assert!(!glob_matches(b"a*b*c", b"axxbyy"));
        assert!(glob_matches(b"**x", b"abx"));
    }

    #[test]
    fn negation() {
        let text = format!("*.example.org,!secret.example.org {KEY_A}\n");
        assert_eq!(
            check_text(&text, "www.example.org", 22, KEY_A),
            HostKeyStatus::Known
        );
        assert_eq!(
            check_text(&text, "secret.example.org", 22, KEY_A),
            HostKeyStatus::Unknown
        );
        // A negation alone matches nothing.
        let only_neg = format!("!a {KEY_A}\n");
        assert_eq!(
            check_text(&only_neg, "b", 22, KEY_A),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn revoked_is_refused_even_when_also_known() {
        let text = format!("h {KEY_A}\n@revoked * {KEY_A}\n");
        let status = check_text(&text, "h", 22, KEY_A);
        assert!(
            matches!(status, HostKeyStatus::Revoked { line: 2, .. }),
            "{status:?}"
        );
        // A revoked line for another key does not affect this one.
        let text = format!("@revoked h {KEY_B}\nh {KEY_A}\n");
        assert_eq!(check_text(&text, "h", 22, KEY_A), HostKeyStatus::Known);
    }

    #[test]
    fn cert_authority_and_unknown_markers_are_skipped() {
        let text = format!("@cert-authority h {KEY_A}\n@future h {KEY_A}\n");
        assert_eq!(check_text(&text, "h", 22, KEY_A), HostKeyStatus::Unknown);
    }

    #[test]
    fn changed_key_names_its_line() {
        let text = format!("# header\nother {KEY_B}\nh {KEY_EC}\nh\t{KEY_B}\nh {KEY_B}\n");
        let status = check_text(&text, "h", 22, KEY_A);
        assert!(changed_at(4)(&status), "{status:?}");
        // Another key type listed for the host is not a change: the key is just unknown.
        let text = format!("h {KEY_EC}\n");
        assert_eq!(check_text(&text, "h", 22, KEY_A), HostKeyStatus::Unknown);
    }

    #[test]
    fn known_in_any_file_wins_and_missing_files_are_skipped() {
        let dir = TempDir::new();
        let user = dir.path().join("user");
        let global = dir.path().join("global");
        fs::write(&user, format!("h {KEY_B}\n")).unwrap();
        fs::write(&global, format!("h {KEY_A}\n")).unwrap();
        let missing = dir.path().join("missing");
        let files = [missing.as_path(), user.as_path(), global.as_path()];
        let entries = HostEntries::load("h", 22, files);
        assert_eq!(entries.check(&key(KEY_A)), HostKeyStatus::Known);
        let files = [missing.as_path(), user.as_path()];
        match HostEntries::load("h", 22, files).check(&key(KEY_A)) {
            HostKeyStatus::Changed { file, line } => {
                assert_eq!(file, user);
                assert_eq!(line, 1);
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn garbage_lines_are_ignored() {
        let text = format!("h\nh ssh-ed25519\nh ssh-ed25519 notbase64!\nh {KEY_A}\n");
        assert_eq!(check_text(&text, "h", 22, KEY_A), HostKeyStatus::Known);
    }

    #[test]
    fn algorithms_listed_for_the_host() {
        let text = format!("h {KEY_EC}\nh {KEY_A}\nh {KEY_B}\nx {KEY_A}\n");
        let dir = TempDir::new();
        let file = dir.path().join("kh");
        fs::write(&file, text).unwrap();
        let algs = HostEntries::load("h", 22, [file.as_path()]).algorithms();
        assert_eq!(algs, vec![key(KEY_EC).algorithm(), Algorithm::Ed25519]);
    }

    #[test]
    fn append_creates_file_and_dir_with_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let file = dir.path().join("new/.ssh/known_hosts");
        append(&file, "127.0.0.1", 2222, &key(KEY_A)).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(text, format!("[127.0.0.1]:2222 {KEY_A}\n"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        // Port 22 uses the bare name; a missing final newline is repaired.
        fs::write(&file, "x y").unwrap();
        append(&file, "Example.ORG", 22, &key(KEY_B)).unwrap();
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            format!("x y\nexample.org {KEY_B}\n")
        );
        let entries = HostEntries::load("example.org", 22, [file.as_path()]);
        assert_eq!(entries.check(&key(KEY_B)), HostKeyStatus::Known);
    }
}
