//! User authentication, in ssh's order: ssh-agent keys, identity files, keyboard-interactive,
//! password. Secrets that worked are remembered in memory (never on disk, never in logs) so
//! that reconnections and extra pool connections authenticate without asking again.

mod keys;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use russh::client::{AuthResult, Handle, Handler, KeyboardInteractiveAuthResponse, Prompt};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{MethodKind, MethodSet};

use super::prompt::{self, PromptClock};
use super::SshError;
use crate::config::SshConfig;
pub(crate) use keys::identity_files;
use keys::{
    default_identity_files, encrypted_key_public_part, identity_blob, identity_file_blobs,
    warn_if_unprotected, ProbeError, ProbeSigner,
};

/// How many times ssh asks for a passphrase or password (`NumberOfPasswordPrompts`).
const PROMPT_TRIES: usize = 3;

/// Secrets remembered between connections of one [`super::Connector`].
#[derive(Default)]
pub(crate) struct Secrets {
    state: Mutex<SecretState>,
}

#[derive(Default)]
struct SecretState {
    /// Keys decrypted with a passphrase the user typed, by file.
    keys: HashMap<PathBuf, Arc<PrivateKey>>,
    /// The password read from standard input, or one that was accepted.
    password: Option<String>,
    /// Standard input has been consumed (`password_stdin` can be read only once).
    stdin_read: bool,
    /// The credential that authenticated last, tried first next time.
    worked: Option<Worked>,
    /// Key files already warned about (world-readable), to warn once, not per connection.
    warned: HashSet<PathBuf>,
    /// The login took answers a person typed that cannot be given again (a one-time code
    /// in keyboard-interactive): another connection would need the person again.
    one_time: bool,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

impl Secrets {
    fn lock(&self) -> MutexGuard<'_, SecretState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the login that worked needed a one-time answer from a person.
    pub(crate) fn one_time(&self) -> bool {
        self.lock().one_time
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Worked {
    /// An agent key, by its public key blob.
    Agent(Vec<u8>),
    File(PathBuf),
    KeyboardInteractive,
    Password,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Agent,
    Files,
    KeyboardInteractive,
    Password,
}

/// One authentication conversation on a fresh connection.
pub(crate) struct Authenticator<'a, H: Handler> {
    handle: &'a mut Handle<H>,
    cfg: &'a SshConfig,
    secrets: &'a Secrets,
    clock: &'a PromptClock,
    /// Identity files to try, from [`identity_files`].
    identity_files: Vec<PathBuf>,
    /// Prompting on the terminal is allowed and possible.
    interactive: bool,
    /// Methods the server still accepts.
    allowed: MethodSet,
    /// Methods we actually tried, for the error message.
    tried: Vec<MethodKind>,
    /// Public key blobs already offered (agent and files may hold the same key).
    offered: HashSet<Vec<u8>>,
    /// Cached answer of `best_supported_rsa_hash`.
    rsa_hash: Option<Option<HashAlg>>,
    /// Why some credential was not tried, for the error message.
    notes: Vec<String>,
    /// Methods skipped because nobody can be asked for a secret.
    not_prompted: Vec<&'static str>,
    /// This keyboard-interactive round took a typed answer that is not a password.
    typed_other: bool,
    /// Who answers questions when `interactive`.
    asker: Arc<dyn prompt::Asker>,
}

impl<'a, H: Handler> Authenticator<'a, H> {
    pub(crate) fn new(
        handle: &'a mut Handle<H>,
        cfg: &'a SshConfig,
        secrets: &'a Secrets,
        clock: &'a PromptClock,
        identity_files: Vec<PathBuf>,
        interactive: bool,
    ) -> Self {
        Authenticator {
            handle,
            cfg,
            secrets,
            clock,
            identity_files,
            interactive,
            allowed: MethodSet::empty(),
            tried: Vec::new(),
            offered: HashSet::new(),
            rsa_hash: None,
            notes: Vec::new(),
            not_prompted: Vec::new(),
            typed_other: false,
            asker: Arc::new(prompt::Tty),
        }
    }

    /// Questions go to `asker` instead of the terminal.
    pub(crate) fn asking(mut self, asker: Arc<dyn prompt::Asker>) -> Self {
        self.asker = asker;
        self
    }

    pub(crate) async fn run(mut self) -> Result<(), SshError> {
        // "none" first, as ssh does: it tells which methods the server accepts, so we do not
        // ask for a passphrase or password the server would not take.
        match self.handle.authenticate_none(&self.cfg.user).await {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure {
                remaining_methods, ..
            }) => self.allowed = remaining_methods,
            Err(e) => return Err(self.lost(e)),
        }
        tracing::debug!("server accepts: {}", method_names(&self.allowed));

        let last = self.secrets.lock().worked.clone();
        for step in step_order(last.as_ref()) {
            if self.allowed.is_empty() {
                break;
            }
            let worked = match step {
                Step::Agent => self.agent(last.as_ref()).await?,
                Step::Files => self.files(last.as_ref()).await?,
                Step::KeyboardInteractive => self.keyboard_interactive().await?,
                Step::Password => self.password().await?,
            };
            if let Some(worked) = worked {
                tracing::debug!("authenticated as {}", self.cfg.user);
                self.secrets.lock().worked = Some(worked);
                return Ok(());
            }
        }
        Err(self.failure())
    }

    fn allows(&self, m: MethodKind) -> bool {
        self.allowed.contains(&m)
    }

    fn note_tried(&mut self, m: MethodKind) {
        if !self.tried.contains(&m) {
            self.tried.push(m);
        }
    }

    /// Record a failed attempt's answer: the methods the server still accepts.
    fn failed(&mut self, result: AuthResult) {
        if let AuthResult::Failure {
            remaining_methods,
            partial_success,
        } = result
        {
            if partial_success {
                tracing::debug!("partial success; server wants more");
            }
            self.allowed = remaining_methods;
        }
    }

    fn lost(&self, e: impl std::fmt::Display) -> SshError {
        SshError::Disconnected {
            host: self.cfg.host.clone(),
            port: self.cfg.port,
            during: "authentication",
            reason: e.to_string(),
        }
    }

    fn failure(&self) -> SshError {
        if self.tried.is_empty() && self.handle.is_closed() {
            return self.lost("the server closed the connection");
        }
        let user = self.cfg.user.clone();
        let host = self.cfg.host.clone();
        let mut notes = self.notes.clone();
        if !self.not_prompted.is_empty() {
            let methods = self.not_prompted.join(" and ");
            notes.push(format!("{methods} not tried: {}", self.why_no_prompt()));
        }
        let note = notes.join("; ");
        if self.tried.is_empty() {
            SshError::NoAuthMethod {
                user,
                host,
                offered: method_names(&self.allowed),
                note,
            }
        } else {
            let tried: Vec<&str> = self.tried.iter().map(<&str>::from).collect();
            SshError::AuthFailed {
                user,
                host,
                tried: tried.join(", "),
                note,
            }
        }
    }

    async fn rsa_hash(&mut self) -> Option<HashAlg> {
        if let Some(h) = self.rsa_hash {
            return h;
        }
        // `None` means the server did not say (no server-sig-algs): then only the
        // original SHA-1 "ssh-rsa" is sure to be understood.
        let h = match self.handle.best_supported_rsa_hash().await {
            Ok(Some(h)) => h,
            _ => None,
        };
        self.rsa_hash = Some(h);
        h
    }

    async fn hash_for(&mut self, key: &PublicKey) -> Option<HashAlg> {
        if key.algorithm().is_rsa() {
            self.rsa_hash().await
        } else {
            None
        }
    }

    async fn agent(&mut self, last: Option<&Worked>) -> Result<Option<Worked>, SshError> {
        if !self.allows(MethodKind::PublicKey) {
            return Ok(None);
        }
        let Some(socket) = self.cfg.agent_socket.clone() else {
            return Ok(None);
        };
        let mut agent = match AgentClient::connect_uds(&socket).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("cannot reach ssh-agent at {}: {e}", socket.display());
                return Ok(None);
            }
        };
        // Lets an OpenSSH agent use keys restricted to this destination; older agents
        // refuse the extension, which is fine.
        if let Some(binding) = self.handle.agent_session_binding().cloned() {
            if let Err(e) = agent.bind_session(&binding, false).await {
                tracing::debug!("ssh-agent session binding: {e}");
            }
        }
        let mut identities = match agent.request_identities().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::debug!("ssh-agent did not list its keys: {e}");
                return Ok(None);
            }
        };
        if self.cfg.identities_only {
            // IdentitiesOnly: only agent keys that are one of the identity files.
            // Listed files whose private half is missing count too (a `.pub` beside a key
            // that lives only in the agent), as in ssh.
            let listed = if self.cfg.identity_files.is_empty() {
                default_identity_files()
            } else {
                self.cfg.identity_files.clone()
            };
            let allowed = identity_file_blobs(&listed);
            identities.retain(|id| identity_blob(id).is_some_and(|b| allowed.contains(&b)));
        }
        if let Some(Worked::Agent(blob)) = last {
            identities.sort_by_key(|id| identity_blob(id).as_ref() != Some(blob));
        }
        for identity in identities {
            if !self.allows(MethodKind::PublicKey) {
                break;
            }
            let Some(blob) = identity_blob(&identity) else {
                continue;
            };
            if !self.offered.insert(blob.clone()) {
                continue;
            }
            self.note_tried(MethodKind::PublicKey);
            let result = match identity {
                AgentIdentity::PublicKey { key, comment } => {
                    tracing::debug!(
                        "offering agent key {} {comment}",
                        key.fingerprint(HashAlg::Sha256)
                    );
                    let hash = self.hash_for(&key).await;
                    let user = self.cfg.user.clone();
                    self.handle
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                }
                AgentIdentity::Certificate {
                    certificate,
                    comment,
                } => {
                    tracing::debug!("offering agent certificate {comment}");
                    let hash = if certificate.algorithm().is_rsa() {
                        self.rsa_hash().await
                    } else {
                        None
                    };
                    let user = self.cfg.user.clone();
                    self.handle
                        .authenticate_certificate_with(user, certificate, hash, &mut agent)
                        .await
                }
            };
            match result {
                Ok(r) if r.success() => return Ok(Some(Worked::Agent(blob))),
                Ok(r) => self.failed(r),
                Err(e) => {
                    if self.handle.is_closed() {
                        return Err(self.lost(e));
                    }
                    tracing::debug!("ssh-agent could not sign: {e}");
                }
            }
        }
        Ok(None)
    }

    async fn files(&mut self, last: Option<&Worked>) -> Result<Option<Worked>, SshError> {
        let mut files = self.identity_files.clone();
        if let Some(Worked::File(path)) = last {
            files.sort_by_key(|p| p != path);
        }
        for path in files {
            if !self.allows(MethodKind::PublicKey) {
                break;
            }
            let Some(key) = self.load_key(&path).await? else {
                continue;
            };
            let Ok(blob) = key.public_key().to_bytes() else {
                continue;
            };
            // A key already offered by the agent, or rejected in the passphrase probe.
            if !self.offered.insert(blob) {
                continue;
            }
            self.note_tried(MethodKind::PublicKey);
            tracing::debug!("offering key {}", path.display());
            let hash = self.hash_for(key.public_key()).await;
            let user = self.cfg.user.clone();
            let key = PrivateKeyWithHashAlg::new(key, hash);
            match self.handle.authenticate_publickey(user, key).await {
                Ok(r) if r.success() => return Ok(Some(Worked::File(path))),
                Ok(r) => self.failed(r),
                Err(e) => return Err(self.lost(e)),
            }
        }
        Ok(None)
    }

    /// The private key in `path`, decrypting it if needed; `None` to skip the file.
    async fn load_key(&mut self, path: &Path) -> Result<Option<Arc<PrivateKey>>, SshError> {
        if let Some(k) = self.secrets.lock().keys.get(path) {
            return Ok(Some(k.clone()));
        }
        if self.secrets.lock().warned.insert(path.to_path_buf()) {
            warn_if_unprotected(path);
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot read identity file {}: {e}", path.display());
                return Ok(None);
            }
        };
        match russh::keys::decode_secret_key(&text, None) {
            Ok(k) => Ok(Some(Arc::new(k))),
            Err(russh::keys::Error::KeyIsEncrypted) => self.decrypt(path, &text).await,
            Err(e) => {
                tracing::warn!("cannot use identity file {}: {e}", path.display());
                Ok(None)
            }
        }
    }

    /// Ask for the passphrase of an encrypted key, but only once the server has said it
    /// would accept the key (as ssh does), and only if we may prompt.
    async fn decrypt(
        &mut self,
        path: &Path,
        text: &str,
    ) -> Result<Option<Arc<PrivateKey>>, SshError> {
        if !self.interactive {
            tracing::debug!("skipping encrypted key {} (cannot prompt)", path.display());
            let note = format!(
                "key {} needs a passphrase, but {}",
                path.display(),
                self.why_no_prompt()
            );
            self.notes.push(note);
            return Ok(None);
        }
        if let Some(public) = encrypted_key_public_part(path, text) {
            if let Ok(blob) = public.to_bytes() {
                if self.offered.contains(&blob) {
                    return Ok(None);
                }
                if !self.probe(public).await? {
                    self.offered.insert(blob);
                    return Ok(None);
                }
            }
        }
        let prompt_text = format!("Enter passphrase for key '{}': ", path.display());
        for attempt in 0..PROMPT_TRIES {
            let p = prompt_text.clone();
            let asker = self.asker.clone();
            let passphrase =
                match prompt::blocking_timed(self.clock, move || asker.ask(&p, false)).await {
                    Ok(p) if !p.is_empty() => p,
                    // An empty answer skips the key, as in ssh.
                    _ => return Ok(None),
                };
            match russh::keys::decode_secret_key(text, Some(&passphrase)) {
                Ok(k) => {
                    let k = Arc::new(k);
                    self.secrets
                        .lock()
                        .keys
                        .insert(path.to_path_buf(), k.clone());
                    return Ok(Some(k));
                }
                Err(e) => {
                    tracing::debug!("passphrase for {} rejected: {e}", path.display());
                    if attempt + 1 < PROMPT_TRIES {
                        let _ = self.asker.tell("Bad passphrase, try again.\n");
                    }
                }
            }
        }
        Ok(None)
    }

    /// Would the server accept this public key? Offers it without signing (a signer that
    /// declines once asked, which only happens after the server's PK_OK).
    async fn probe(&mut self, key: PublicKey) -> Result<bool, SshError> {
        self.note_tried(MethodKind::PublicKey);
        let hash = self.hash_for(&key).await;
        let user = self.cfg.user.clone();
        let mut signer = ProbeSigner;
        match self
            .handle
            .authenticate_publickey_with(user, key, hash, &mut signer)
            .await
        {
            Err(ProbeError::Accepted) => Ok(true),
            Ok(r) => {
                self.failed(r);
                Ok(false)
            }
            Err(ProbeError::Send(e)) => Err(self.lost(e)),
        }
    }

    async fn keyboard_interactive(&mut self) -> Result<Option<Worked>, SshError> {
        if !self.allows(MethodKind::KeyboardInteractive) {
            return Ok(None);
        }
        let mut stored_used = false;
        for _ in 0..PROMPT_TRIES {
            if !self.allows(MethodKind::KeyboardInteractive) {
                break;
            }
            // Only start a conversation we can answer.
            if !self.interactive {
                if !stored_used && !self.has_stored_password() {
                    self.note_cannot_prompt("keyboard-interactive");
                }
                if stored_used || !self.has_stored_password() {
                    break;
                }
            }
            self.note_tried(MethodKind::KeyboardInteractive);
            let user = self.cfg.user.clone();
            let mut reply = self
                .handle
                .authenticate_keyboard_interactive_start(user, None)
                .await
                .map_err(|e| self.lost(e))?;
            // The password typed (or stored) in this round, remembered if it works.
            let mut password: Option<String> = None;
            self.typed_other = false;
            loop {
                match reply {
                    KeyboardInteractiveAuthResponse::Success => {
                        let mut s = self.secrets.lock();
                        if let Some(p) = password {
                            s.password = Some(p);
                        }
                        // Never replayed: the next connection cannot log in alone.
                        s.one_time = self.typed_other;
                        return Ok(Some(Worked::KeyboardInteractive));
                    }
                    KeyboardInteractiveAuthResponse::Failure {
                        remaining_methods,
                        partial_success,
                    } => {
                        self.failed(AuthResult::Failure {
                            remaining_methods,
                            partial_success,
                        });
                        break;
                    }
                    KeyboardInteractiveAuthResponse::InfoRequest {
                        name,
                        instructions,
                        prompts,
                    } => {
                        let answers = self
                            .answer_prompts(
                                &name,
                                &instructions,
                                &prompts,
                                &mut password,
                                &mut stored_used,
                            )
                            .await?;
                        reply = self
                            .handle
                            .authenticate_keyboard_interactive_respond(answers)
                            .await
                            .map_err(|e| self.lost(e))?;
                    }
                }
            }
        }
        Ok(None)
    }

    /// Answers to one keyboard-interactive round. A password-like hidden prompt gets the
    /// stored password once; everything else is asked on the terminal if allowed, or
    /// answered empty (which fails the round, the server then decides).
    async fn answer_prompts(
        &mut self,
        name: &str,
        instructions: &str,
        prompts: &[Prompt],
        password: &mut Option<String>,
        stored_used: &mut bool,
    ) -> Result<Vec<String>, SshError> {
        let mut answers = Vec::with_capacity(prompts.len());
        let mut header_shown = false;
        for p in prompts {
            let password_like = !p.echo && p.prompt.to_ascii_lowercase().contains("password");
            if password_like && password.is_none() && !*stored_used {
                if let Some(stored) = self.stored_password().await? {
                    *stored_used = true;
                    *password = Some(stored.clone());
                    answers.push(stored);
                    continue;
                }
            }
            if !self.interactive {
                answers.push(String::new());
                continue;
            }
            if !header_shown {
                header_shown = true;
                let header: String = [name, instructions]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| format!("{s}\n"))
                    .collect();
                if !header.is_empty() {
                    let _ = self.asker.tell(&header);
                }
            }
            let text = format!("({}@{}) {}", self.cfg.user, self.cfg.host, p.prompt);
            let echo = p.echo;
            let asker = self.asker.clone();
            let answer = prompt::blocking_timed(self.clock, move || asker.ask(&text, echo))
                .await
                .unwrap_or_default();
            if password_like {
                *password = Some(answer.clone());
            } else {
                self.typed_other = true;
            }
            answers.push(answer);
        }
        Ok(answers)
    }

    async fn password(&mut self) -> Result<Option<Worked>, SshError> {
        if !self.allows(MethodKind::Password) {
            return Ok(None);
        }
        let mut stored_used = false;
        let mut stored_tried = false;
        for _ in 0..PROMPT_TRIES {
            if !self.allows(MethodKind::Password) {
                break;
            }
            let mut typed = false;
            let stored = if stored_used {
                None
            } else {
                stored_used = true;
                self.stored_password().await?
            };
            stored_tried |= stored.is_some();
            let password = match stored {
                Some(p) => p,
                None if self.interactive => {
                    let text = format!("{}@{}'s password: ", self.cfg.user, self.cfg.host);
                    let asker = self.asker.clone();
                    match prompt::blocking_timed(self.clock, move || asker.ask(&text, false)).await
                    {
                        Ok(p) => {
                            typed = true;
                            p
                        }
                        Err(e) => {
                            tracing::debug!("password prompt: {e}");
                            break;
                        }
                    }
                }
                None => {
                    if !stored_tried {
                        self.note_cannot_prompt("password");
                    }
                    break;
                }
            };
            self.note_tried(MethodKind::Password);
            let user = self.cfg.user.clone();
            match self
                .handle
                .authenticate_password(user, password.clone())
                .await
            {
                Ok(r) if r.success() => {
                    self.secrets.lock().password = Some(password);
                    return Ok(Some(Worked::Password));
                }
                Ok(r) => {
                    self.failed(r);
                    if typed && self.allows(MethodKind::Password) {
                        let _ = self.asker.tell("Permission denied, please try again.\n");
                    }
                }
                Err(e) => return Err(self.lost(e)),
            }
        }
        Ok(None)
    }

    fn has_stored_password(&self) -> bool {
        let s = self.secrets.lock();
        s.password.is_some() || (self.cfg.password_stdin && !s.stdin_read)
    }

    /// The remembered password, reading it from standard input the first time if
    /// `password_stdin` is set (kept for later connections: stdin can be read only once).
    async fn stored_password(&mut self) -> Result<Option<String>, SshError> {
        {
            let s = self.secrets.lock();
            if s.password.is_some() || !self.cfg.password_stdin || s.stdin_read {
                return Ok(s.password.clone());
            }
        }
        let line = prompt::blocking(prompt::read_stdin_line).await;
        let mut s = self.secrets.lock();
        s.stdin_read = true;
        match line {
            Ok(p) => {
                s.password = Some(p.clone());
                Ok(Some(p))
            }
            Err(e) => Err(SshError::PasswordStdin {
                reason: e.to_string(),
            }),
        }
    }

    fn why_no_prompt(&self) -> &'static str {
        if self.cfg.batch_mode {
            "BatchMode is on"
        } else if !prompt::tty_available() {
            "there is no terminal to ask on"
        } else {
            "secrets are only asked for at mount time"
        }
    }

    fn note_cannot_prompt(&mut self, method: &'static str) {
        if !self.not_prompted.contains(&method) {
            self.not_prompted.push(method);
        }
    }
}

/// The order of the steps: ssh's, with the one that worked last time moved first.
fn step_order(last: Option<&Worked>) -> Vec<Step> {
    let mut order = vec![
        Step::Agent,
        Step::Files,
        Step::KeyboardInteractive,
        Step::Password,
    ];
    let first = match last {
        Some(Worked::Agent(_)) | None => return order,
        Some(Worked::File(_)) => Step::Files,
        Some(Worked::KeyboardInteractive) => Step::KeyboardInteractive,
        Some(Worked::Password) => Step::Password,
    };
    order.retain(|s| *s != first);
    order.insert(0, first);
    order
}

fn method_names(methods: &MethodSet) -> String {
    if methods.is_empty() {
        return "nothing".into();
    }
    let names: Vec<&str> = methods.iter().map(<&str>::from).collect();
    names.join(", ")
}
