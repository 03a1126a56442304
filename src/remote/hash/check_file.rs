//! Hashes asked of the SFTP server itself: the draft's `check-file-name` /
//! `check-file-handle` (draft-ietf-secsh-filexfer-extensions-00; ProFTPD's mod_sftp), and
//! `md5-hash` / `md5-hash-handle` where that is all a server has. Nothing but the request and
//! the digest crosses the link.

use std::time::Duration;

use super::algo::Algo;
use crate::remote::profile::Ext;
use crate::remote::protocol::Reader;
use crate::remote::{Handle, RemoteError, Result, Sftp};

/// What a hash request names: the file's path, or a handle open on it.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Path(&'a [u8]),
    Handle(&'a Handle),
}

/// The algorithms `check-file` answers. The draft leaves the list to the server; this is
/// ProFTPD's (OpenSSL's digests), the one server known to offer it.
pub const CHECK_FILE_ALGOS: [Algo; 6] = [
    Algo::Sha256,
    Algo::Sha512,
    Algo::Sha384,
    Algo::Sha224,
    Algo::Sha1,
    Algo::Md5,
];

/// The whole file's `algo` digest by `check-file-*`: offset 0, length 0 (to the end), block
/// size 0 (one digest). The reply names the algorithm used, then the digest's bytes.
pub async fn check_file(
    sftp: &Sftp,
    target: Target<'_>,
    algo: Algo,
    patience: Duration,
) -> Result<Vec<u8>> {
    let (name, what): (&'static str, &[u8]) = match target {
        Target::Path(p) => ("check-file-name", p),
        Target::Handle(h) => ("check-file-handle", &h.0),
    };
    let r = sftp
        .extended_patient(name, patience, |p| {
            p.string(what)
                .string(algo.name().as_bytes())
                .u64(0)
                .u64(0)
                .u32(0)
        })
        .await;
    let reply = sftp.unless_refused(Ext::CheckFile, r)?;
    let mut r = Reader::new(reply);
    let used = r
        .string()
        .map_err(|e| RemoteError::Protocol(format!("check-file reply: {e}")))?;
    if &used[..] != algo.name().as_bytes() {
        return Err(RemoteError::Protocol(format!(
            "check-file answered {} for {algo}",
            crate::remote::bounds::server_text(&used)
        )));
    }
    digest_of(algo, r, "check-file")
}

/// The whole file's MD5 by `md5-hash-*` (no quick-check hash). Servers differ in the reply:
/// the digest as a string, after the extension's name or not.
pub async fn md5_hash(sftp: &Sftp, target: Target<'_>, patience: Duration) -> Result<Vec<u8>> {
    let (name, what): (&'static str, &[u8]) = match target {
        Target::Path(p) => ("md5-hash", p),
        Target::Handle(h) => ("md5-hash-handle", &h.0),
    };
    let r = sftp
        .extended_patient(name, patience, |p| p.string(what).u64(0).u64(0).string(b""))
        .await;
    let reply = sftp.unless_refused(Ext::Md5Hash, r)?;
    let mut r = Reader::new(reply);
    let bad = |e| RemoteError::Protocol(format!("md5-hash reply: {e}"));
    let mut first = r.string().map_err(bad)?;
    if &first[..] == b"md5-hash" {
        first = r.string().map_err(bad)?;
    }
    if first.len() != Algo::Md5.digest_len() {
        return Err(RemoteError::Protocol(format!(
            "md5-hash answered {} bytes, not an MD5",
            first.len()
        )));
    }
    Ok(first.to_vec())
}

/// The rest of a reply: one digest of `algo`, exactly.
fn digest_of(algo: Algo, r: Reader, what: &str) -> Result<Vec<u8>> {
    let rest = r.rest();
    if rest.len() != algo.digest_len() {
        return Err(RemoteError::Protocol(format!(
            "{what} answered {} bytes for a {algo} digest of {}",
            rest.len(),
            algo.digest_len()
        )));
    }
    Ok(rest.to_vec())
}
