//! ssh's `Ciphers`, `KexAlgorithms`, `MACs` and `Compression` mapped onto the SSH library's
//! algorithm preferences (`russh::Preferred`).
//!
//! A list written by the user (`-o Ciphers=...`) must name only algorithms the library has: an
//! unknown one is an error that names it. A list that comes from ssh_config is shared with
//! OpenSSH (and often set by a system-wide crypto policy), so names only OpenSSH knows are
//! dropped there, and only a list with nothing left is an error.

use std::borrow::Cow;

use russh::{cipher, compression, kex, mac, Preferred};

/// Which list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cipher,
    Kex,
    Mac,
}

impl Kind {
    /// The ssh option's name.
    pub fn option(self) -> &'static str {
        match self {
            Kind::Cipher => "Ciphers",
            Kind::Kex => "KexAlgorithms",
            Kind::Mac => "MACs",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Cipher => "cipher",
            Kind::Kex => "key exchange algorithm",
            Kind::Mac => "MAC",
        }
    }

    /// Every name the library implements and a server may offer (not `none`, not the
    /// key-exchange extension markers).
    pub fn supported(self) -> Vec<&'static str> {
        let names: Vec<&'static str> = match self {
            Kind::Cipher => cipher::ALL_CIPHERS.iter().map(|n| n.as_ref()).collect(),
            Kind::Kex => kex::ALL_KEX_ALGORITHMS.iter().map(|n| n.as_ref()).collect(),
            Kind::Mac => mac::ALL_MAC_ALGORITHMS.iter().map(|n| n.as_ref()).collect(),
        };
        names
            .into_iter()
            .filter(|n| !matches!(*n, "none" | "clear"))
            .collect()
    }

    /// sftpfs's default preference, most preferred first (the library's, but for ciphers).
    pub fn defaults(self) -> Vec<String> {
        let d = Preferred::DEFAULT;
        let names: Vec<String> = match self {
            Kind::Cipher => DEFAULT_CIPHERS
                .iter()
                .map(|n| n.as_ref().to_string())
                .collect(),
            Kind::Kex => d.kex.iter().map(|n| n.as_ref().to_string()).collect(),
            Kind::Mac => d.mac.iter().map(|n| n.as_ref().to_string()).collect(),
        };
        names
            .into_iter()
            .filter(|n| !KEX_MARKERS.contains(&n.as_str()))
            .collect()
    }

    fn is_supported(self, name: &str) -> bool {
        self.supported().contains(&name)
    }

    fn unsupported(self, name: &str) -> String {
        format!(
            "unsupported {} '{name}' (sftpfs supports: {})",
            self.noun(),
            self.supported().join(", ")
        )
    }
}

/// sftpfs's cipher preference. AES-GCM first: with AES-NI it is the fastest secure cipher on
/// one core (measured here through the mount: ~1.8x chacha20-poly1305), and each pool member
/// is one core's work.
const DEFAULT_CIPHERS: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// Key-exchange "algorithms" that only announce protocol extensions (ext-info, strict kex);
/// always offered, whatever the list says.
const KEX_MARKERS: &[&str] = &[
    "ext-info-c",
    "ext-info-s",
    "kex-strict-c-v00@openssh.com",
    "kex-strict-s-v00@openssh.com",
];

/// An ssh algorithm list as written in `-o Ciphers=...`: `a,b` (exactly these), `+a,b` (the
/// defaults and these), `-a*,b` (the defaults without these; wildcards allowed), `^a,b`
/// (these, then the defaults). Every algorithm named to be used must be supported.
pub fn parse_spec(kind: Kind, spec: &str) -> Result<Vec<String>, String> {
    spec_list(kind, spec, true)
}

/// Like [`parse_spec`] for a value from ssh_config: unsupported names are dropped (logged),
/// and only an empty result is an error.
pub fn parse_config_spec(kind: Kind, spec: &str) -> Result<Vec<String>, String> {
    spec_list(kind, spec, false)
}

fn spec_list(kind: Kind, spec: &str, strict: bool) -> Result<Vec<String>, String> {
    let spec = spec.trim();
    let (op, rest) = match spec.chars().next() {
        Some(c @ ('+' | '-' | '^')) => (Some(c), &spec[1..]),
        _ => (None, spec),
    };
    let names: Vec<&str> = rest
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(format!("no {} given", kind.noun()));
    }
    let defaults = kind.defaults();
    let mut dropped = Vec::new();
    let mut usable = |names: &[&str]| -> Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::new();
        for &n in names {
            if kind.is_supported(n) {
                if !out.iter().any(|o| o == n) {
                    out.push(n.to_string());
                }
            } else if strict {
                return Err(kind.unsupported(n));
            } else {
                dropped.push(n.to_string());
            }
        }
        Ok(out)
    };
    let list = match op {
        None => usable(&names)?,
        Some('+') => {
            let mut list = defaults;
            for n in usable(&names)? {
                if !list.contains(&n) {
                    list.push(n);
                }
            }
            list
        }
        Some('^') => {
            let mut list = usable(&names)?;
            for d in defaults {
                if !list.contains(&d) {
                    list.push(d);
                }
            }
            list
        }
        Some(_) => defaults
            .into_iter()
            .filter(|d| !names.iter().any(|p| wildcard_match(p, d)))
            .collect(),
    };
    if !dropped.is_empty() {
        tracing::debug!(
            "ssh_config {}: not supported by sftpfs, skipped: {}",
            kind.option(),
            dropped.join(", ")
        );
    }
    if list.is_empty() {
        return Err(if strict || dropped.is_empty() {
            format!("no {} left to offer", kind.noun())
        } else {
            format!(
                "{} {}: none is supported by sftpfs (supported: {})",
                kind.option(),
                dropped.join(","),
                kind.supported().join(", ")
            )
        });
    }
    Ok(list)
}

/// ssh's pattern matching: `*` any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((b'?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The library's preferences for the configured lists (each name already checked).
pub fn preferred(
    ciphers: Option<&[String]>,
    kex_algorithms: Option<&[String]>,
    macs: Option<&[String]>,
    compression: bool,
) -> Preferred {
    let mut p = Preferred::DEFAULT;
    p.cipher = Cow::Borrowed(DEFAULT_CIPHERS);
    if let Some(list) = ciphers {
        p.cipher = Cow::Owned(
            list.iter()
                .filter_map(|n| cipher::Name::try_from(n.as_str()).ok())
                .collect(),
        );
    }
    if let Some(list) = kex_algorithms {
        let mut names: Vec<kex::Name> = list
            .iter()
            .filter(|n| !KEX_MARKERS.contains(&n.as_str()))
            .filter_map(|n| kex::Name::try_from(n.as_str()).ok())
            .collect();
        names.extend([
            kex::EXTENSION_SUPPORT_AS_CLIENT,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
        ]);
        p.kex = Cow::Owned(names);
    }
    if let Some(list) = macs {
        p.mac = Cow::Owned(
            list.iter()
                .filter_map(|n| mac::Name::try_from(n.as_str()).ok())
                .collect(),
        );
    }
    p.compression = if compression {
        Cow::Owned(
            ["zlib@openssh.com", "zlib", "none"]
                .into_iter()
                .filter_map(|n| compression::Name::try_from(n).ok())
                .collect(),
        )
    } else {
        Cow::Borrowed(&[compression::NONE])
    };
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn plain_lists_must_be_supported() {
        assert_eq!(
            parse_spec(Kind::Cipher, "aes128-ctr,aes256-gcm@openssh.com").unwrap(),
            s(&["aes128-ctr", "aes256-gcm@openssh.com"])
        );
        let e = parse_spec(Kind::Cipher, "aes128-ctr,3des-cbc-nope").unwrap_err();
        assert!(e.starts_with("unsupported cipher '3des-cbc-nope'"), "{e}");
        assert!(e.contains("aes128-ctr"), "{e}");
        let e = parse_spec(Kind::Mac, "umac-64-etm@openssh.com").unwrap_err();
        assert!(e.contains("'umac-64-etm@openssh.com'"), "{e}");
        // `none` is never an algorithm one may choose.
        assert!(parse_spec(Kind::Cipher, "none").is_err());
    }

    #[test]
    fn plus_minus_caret_edit_the_defaults() {
        let d = Kind::Mac.defaults();
        let plus = parse_spec(Kind::Mac, "+hmac-sha1").unwrap();
        assert_eq!(plus.last().unwrap(), "hmac-sha1");
        assert_eq!(plus.len(), d.len() + 1);
        let caret = parse_spec(Kind::Mac, "^hmac-sha1").unwrap();
        assert_eq!(caret[0], "hmac-sha1");
        let minus = parse_spec(Kind::Mac, "-*-etm@openssh.com,nonexistent").unwrap();
        assert!(minus.iter().all(|m| !m.ends_with("-etm@openssh.com")));
        assert!(!minus.is_empty());
        assert!(parse_spec(Kind::Cipher, "-*").is_err());
        assert!(parse_spec(Kind::Kex, "+sntrup761x25519-sha512@openssh.com").is_err());
    }

    #[test]
    fn config_lists_drop_what_only_openssh_has() {
        let l = parse_config_spec(
            Kind::Mac,
            "umac-64-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
        )
        .unwrap();
        assert_eq!(l, s(&["hmac-sha2-256-etm@openssh.com"]));
        let e = parse_config_spec(Kind::Mac, "umac-64-etm@openssh.com").unwrap_err();
        assert!(e.contains("MACs umac-64-etm@openssh.com"), "{e}");
    }

    #[test]
    fn preferences_keep_the_extension_markers() {
        let p = preferred(None, Some(&s(&["curve25519-sha256"])), None, true);
        let kex: Vec<&str> = p.kex.iter().map(|n| n.as_ref()).collect();
        assert_eq!(kex[0], "curve25519-sha256");
        assert!(kex.contains(&"ext-info-c"));
        assert!(kex.contains(&"kex-strict-c-v00@openssh.com"));
        assert_eq!(p.compression[0].as_ref(), "zlib@openssh.com");
        let p = preferred(None, None, None, false);
        let c: Vec<&str> = p.compression.iter().map(|n| n.as_ref()).collect();
        assert_eq!(c, ["none"]);
        // The default cipher order is sftpfs's own, and `+`/`-` edit that one.
        assert_eq!(p.cipher[0].as_ref(), "aes128-gcm@openssh.com");
        assert_eq!(Kind::Cipher.defaults()[0], "aes128-gcm@openssh.com");
        let l = parse_spec(Kind::Cipher, "-aes128-gcm@openssh.com").unwrap();
        assert_eq!(l[0], "aes256-gcm@openssh.com");
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("hmac-*", "hmac-sha1"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*", ""));
    }
}
