//! Identity files and their keys: which files to try, their public halves without a
//! passphrase, the permission warning, and the signer that only asks whether the server would
//! take a key.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PublicKey};

use crate::config::SshConfig;
use crate::ssh::SshError;

/// The identity files to try: the configured ones, or ssh's defaults that exist.
/// An explicitly configured file that is missing is an error (checked before connecting).
pub(crate) fn identity_files(cfg: &SshConfig) -> Result<Vec<PathBuf>, SshError> {
    if cfg.identity_files_explicit {
        if let Some(path) = cfg.identity_files.iter().find(|p| !p.exists()) {
            return Err(SshError::IdentityFileMissing { path: path.clone() });
        }
        return Ok(cfg.identity_files.clone());
    }
    let files = if cfg.identity_files.is_empty() {
        default_identity_files()
    } else {
        cfg.identity_files.clone()
    };
    Ok(files.into_iter().filter(|p| p.exists()).collect())
}

/// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` of the user running us (from the password
/// database, as ssh does, not `$HOME`).
pub(super) fn default_identity_files() -> Vec<PathBuf> {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::getuid()) else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| user.dir.join(".ssh").join(name))
        .collect()
}

pub(super) fn identity_blob(id: &AgentIdentity) -> Option<Vec<u8>> {
    match id {
        AgentIdentity::PublicKey { key, .. } => key.to_bytes().ok(),
        AgentIdentity::Certificate { certificate, .. } => certificate.to_bytes().ok(),
    }
}

/// The public key blobs of identity files, as far as they can be read without a passphrase
/// (`path.pub`, or the clear public part of an OpenSSH key).
pub(super) fn identity_file_blobs(files: &[PathBuf]) -> HashSet<Vec<u8>> {
    files
        .iter()
        .filter_map(|path| {
            let mut pub_path = path.as_os_str().to_owned();
            pub_path.push(".pub");
            let key = PublicKey::read_openssh_file(Path::new(&pub_path))
                .ok()
                .or_else(|| {
                    let text = std::fs::read_to_string(path).ok()?;
                    encrypted_key_public_part(path, &text)
                })?;
            key.to_bytes().ok()
        })
        .collect()
}

/// The public half of an encrypted key without its passphrase: OpenSSH keys carry it in
/// clear; for other formats ssh reads `path.pub`.
pub(super) fn encrypted_key_public_part(path: &Path, text: &str) -> Option<PublicKey> {
    if let Ok(k) = PrivateKey::from_openssh(text) {
        return Some(k.public_key().clone());
    }
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    PublicKey::read_openssh_file(Path::new(&pub_path)).ok()
}

/// ssh refuses private keys that others can read; we only warn.
pub(super) fn warn_if_unprotected(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "private key file {} is accessible by others (mode {mode:04o}); \
                 restrict it with chmod 600",
                path.display()
            );
        }
    }
}

/// A signer that never signs: reaching it means the server accepted the key (PK_OK).
pub(super) struct ProbeSigner;

#[derive(Debug)]
pub(super) enum ProbeError {
    Accepted,
    Send(russh::SendError),
}

impl From<russh::SendError> for ProbeError {
    fn from(e: russh::SendError) -> Self {
        ProbeError::Send(e)
    }
}

impl russh::Signer for ProbeSigner {
    type Error = ProbeError;

    async fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        _hash_alg: Option<HashAlg>,
        _to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, ProbeError> {
        Err(ProbeError::Accepted)
    }
}
