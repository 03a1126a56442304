//! The parsers of `-o` values (numbers, times, yes/no, paths, user names, algorithm lists,
//! command words) that the option table's setters share.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use super::options::Bad;
use crate::env::Env;

/// An ssh algorithm list from the command line: every algorithm must be one sftpfs has.
pub(super) fn algorithm_list(
    kind: crate::ssh::algorithms::Kind,
    v: &OsStr,
) -> Result<Vec<String>, Bad> {
    crate::ssh::algorithms::parse_spec(kind, text(v)).map_err(Bad::Rejected)
}

/// `ssh_command`'s words: split at whitespace, `\` escapes the next character (as sshfs).
pub(super) fn command_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

pub(super) fn text(v: &OsStr) -> &str {
    v.to_str().unwrap_or("")
}

/// The codeset of a locale name (`en_US.ISO-8859-1@euro` gives `ISO-8859-1`). A locale
/// without one (`C`, `POSIX`, `en_US`) or none at all counts as UTF-8.
pub(super) fn locale_codeset(locale: Option<&str>) -> &str {
    locale
        .and_then(|l| l.split_once('.'))
        .map(|(_, rest)| rest.split('@').next().unwrap_or(""))
        .filter(|c| !c.is_empty())
        .unwrap_or("UTF-8")
}

/// A character set of file names (`from_code=`, `to_code=`).
pub(super) fn charset(v: &OsStr) -> Result<crate::fs::names::charset::Charset, Bad> {
    use crate::fs::names::charset::{Charset, CharsetError};
    match Charset::by_name(text(v)) {
        Ok(c) => Ok(c),
        Err(CharsetError::Unknown) => Err(Bad::Invalid(
            "a character set, e.g. UTF-8, ISO-8859-1, EUC-JP, SHIFT_JIS, CP1251, KOI8-R",
        )),
        Err(CharsetError::NotAsciiCompatible) => Err(Bad::Unsupported(
            "file names need a character set in which '/' is the byte 0x2F \
             (not UTF-16, UTF-32 or ISO-2022)",
        )),
    }
}

/// A non-negative decimal number: digits only (no sign, no spaces).
pub(super) fn number<T: std::str::FromStr>(v: &OsStr) -> Option<T> {
    let s = v.to_str()?;
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Bytes, with an optional K, M, G or T suffix (powers of 1024; `KiB`, `MB` and the like
/// read the same).
pub(super) fn size(v: &OsStr) -> Option<u64> {
    let s = v.to_str()?.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let shift = match s[digits..].to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

pub(super) fn octal(v: &OsStr) -> Option<u32> {
    let s = v.to_str()?;
    if s.is_empty() || !s.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|&m| m <= 0o7777)
}

/// Seconds, possibly fractional (`1`, `0.5`, `.25`), >= 0.
pub(super) fn seconds(v: &OsStr) -> Option<Duration> {
    let s = v.to_str()?;
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let dots = s.bytes().filter(|&c| c == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != s.len() {
        return None;
    }
    Duration::try_from_secs_f64(s.parse().ok()?).ok()
}

/// ssh's time format (`30`, `90s`, `1h30m`), as ssh_config values are read.
pub(super) fn ssh_seconds(v: &OsStr) -> Option<u64> {
    crate::ssh::config::ssh_seconds(v.to_str()?)
}

pub(super) fn yes_no(v: &OsStr) -> Result<bool, Bad> {
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
pub(super) fn path_list(env: &Env, v: &OsStr) -> Result<Vec<PathBuf>, Bad> {
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
