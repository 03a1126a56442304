//! Deciding whether to trust the server's host key: known_hosts lookup, then
//! `StrictHostKeyChecking` for keys that are not listed (ask, record, or refuse).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, HashAlg, PublicKey};

use super::known_hosts::{self, HostEntries, HostKeyStatus};
use super::prompt::{self, PromptClock};
use super::SshError;
use crate::config::{SshConfig, StrictHostKeyChecking};

/// Everything needed to judge one server's key. Lives in the connection's handler.
#[derive(Debug)]
pub(crate) struct HostKeyPolicy {
    /// The name known_hosts entries are under: `HostKeyAlias`, else the host connected to.
    pub host: String,
    /// The host as the user wrote it, for the ssh command we suggest.
    pub alias: String,
    pub port: u16,
    pub user_files: Vec<PathBuf>,
    pub global_files: Vec<PathBuf>,
    pub strict: StrictHostKeyChecking,
    /// Asking on the terminal is allowed (not batch mode, first connection).
    pub may_prompt: bool,
    /// `-F file`, repeated in the ssh command we suggest.
    pub config_file: Option<PathBuf>,
    /// Keys accepted earlier in this process that could not be recorded in a file.
    pub accepted: Arc<Mutex<Vec<KeyData>>>,
    pub clock: Arc<PromptClock>,
}

impl HostKeyPolicy {
    pub(crate) fn new(
        cfg: &SshConfig,
        may_prompt: bool,
        accepted: Arc<Mutex<Vec<KeyData>>>,
        clock: Arc<PromptClock>,
    ) -> Self {
        HostKeyPolicy {
            host: cfg
                .host_key_alias
                .clone()
                .unwrap_or_else(|| cfg.host.clone()),
            alias: if cfg.host_alias.is_empty() {
                cfg.host.clone()
            } else {
                cfg.host_alias.clone()
            },
            port: cfg.port,
            user_files: cfg.user_known_hosts_files.clone(),
            global_files: cfg.global_known_hosts_files.clone(),
            strict: cfg.strict_host_key_checking,
            may_prompt,
            config_file: cfg.config_file.clone(),
            accepted,
            clock,
        }
    }

    pub(crate) fn entries(&self) -> HostEntries {
        let files = self.user_files.iter().chain(&self.global_files);
        HostEntries::load(&self.host, self.port, files.map(PathBuf::as_path))
    }

    /// Host key algorithms to offer the server, those listed in known_hosts first (as ssh
    /// does), so a server with several keys shows one we can verify.
    pub(crate) fn preferred_algorithms(&self, defaults: &[Algorithm]) -> Vec<Algorithm> {
        let known = self.entries().algorithms();
        let is_known = |a: &Algorithm| {
            known
                .iter()
                .any(|k| k == a || (k.clone().is_rsa() && a.clone().is_rsa()))
        };
        let (mut first, rest): (Vec<_>, Vec<_>) = defaults.iter().cloned().partition(is_known);
        first.extend(rest);
        first
    }

    /// Blocking: may read files and ask on the terminal.
    pub(crate) fn verify(&self, key: &PublicKey) -> Result<(), SshError> {
        let name = known_hosts::host_entry_name(&self.host, self.port);
        let key_type = key.algorithm().as_str().to_string();
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match self.entries().check(key) {
            HostKeyStatus::Known => {
                tracing::debug!("host key {key_type} {fingerprint} of {name} is known");
                Ok(())
            }
            HostKeyStatus::Revoked { file, line } => Err(SshError::HostKeyRevoked {
                name,
                key_type,
                fingerprint,
                file,
                line,
            }),
            HostKeyStatus::Changed { file, line } => Err(SshError::HostKeyChanged {
                name,
                key_type,
                fingerprint,
                file,
                line,
            }),
            HostKeyStatus::Unknown => {
                if self.lock_accepted().contains(key.key_data()) {
                    return Ok(());
                }
                let unknown = || SshError::HostKeyUnknown {
                    name: name.clone(),
                    key_type: key_type.clone(),
                    fingerprint: fingerprint.clone(),
                    ssh_command: self.ssh_command(),
                };
                match self.strict {
                    StrictHostKeyChecking::Yes => Err(unknown()),
                    StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No => {
                        self.record(&name, key);
                        Ok(())
                    }
                    StrictHostKeyChecking::Ask => {
                        if !self.may_prompt || !prompt::tty_available() {
                            return Err(unknown());
                        }
                        let intro = format!(
                            "The authenticity of host '{name}' can't be established.\n\
                             {} key fingerprint is {fingerprint}.\n",
                            short_type(key.algorithm())
                        );
                        let yes = self
                            .clock
                            .time(|| prompt::confirm_host_key(&intro, &fingerprint))
                            .unwrap_or(false);
                        if !yes {
                            return Err(SshError::HostKeyNotAccepted {
                                name,
                                key_type,
                                fingerprint,
                            });
                        }
                        self.record(&name, key);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Append the key to the first user known_hosts file. Failing to write is not fatal (ssh
    /// goes on too); the key is then trusted for the life of this process only.
    fn record(&self, name: &str, key: &PublicKey) {
        self.lock_accepted().push(key.key_data().clone());
        let Some(file) = self.user_files.first() else {
            tracing::warn!("no known hosts file to record the host key of {name} in");
            return;
        };
        match known_hosts::append(file, &self.host, self.port, key) {
            Ok(()) => tracing::warn!(
                "Permanently added '{name}' ({}) to the list of known hosts ({}).",
                short_type(key.algorithm()),
                file.display()
            ),
            Err(e) => tracing::warn!(
                "cannot record the host key of {name} in {}: {e}",
                file.display()
            ),
        }
    }

    fn lock_accepted(&self) -> std::sync::MutexGuard<'_, Vec<KeyData>> {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ssh command that would ask about the key and record it.
    fn ssh_command(&self) -> String {
        let mut cmd = String::from("ssh");
        if let Some(f) = &self.config_file {
            cmd.push_str(&format!(" -F {}", f.display()));
        }
        if self.port != 22 {
            cmd.push_str(&format!(" -p {}", self.port));
        }
        cmd.push(' ');
        cmd.push_str(&self.alias);
        cmd
    }
}

/// ssh's short key type names, as in "ED25519 key fingerprint is …".
fn short_type(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::Ed25519 => "ED25519",
        Algorithm::Ecdsa { .. } => "ECDSA",
        Algorithm::Rsa { .. } => "RSA",
        Algorithm::Dsa => "DSA",
        Algorithm::SkEd25519 => "ED25519-SK",
        Algorithm::SkEcdsaSha2NistP256 => "ECDSA-SK",
        _ => "host",
    }
}
