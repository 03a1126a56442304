//! Errors of the SSH layer. Each one displays as a single line for the person who typed the
//! mount command: what went wrong and, where there is one, what to do about it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot resolve host name \"{host}\": {reason}")]
    Resolve { host: String, reason: String },

    #[error("connection to {host} port {port} refused")]
    Refused { host: String, port: u16 },

    #[error("connection to {host} port {port} timed out after {}", Secs(*.timeout))]
    Timeout {
        host: String,
        port: u16,
        timeout: Duration,
    },

    #[error("cannot connect to {host} port {port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },

    /// The server closed the connection or spoke something that is not SSH, or no common
    /// algorithm was found.
    #[error("SSH handshake with {host} port {port} failed: {reason}")]
    Handshake {
        host: String,
        port: u16,
        reason: String,
    },

    #[error(
        "host key for {name} is not known ({key_type} {fingerprint}); to trust it, run: \
         {ssh_command} once, or mount with -o StrictHostKeyChecking=accept-new"
    )]
    HostKeyUnknown {
        name: String,
        key_type: String,
        fingerprint: String,
        /// The `ssh` command line that would record the key after asking.
        ssh_command: String,
    },

    #[error(
        "host key for {name} ({key_type} {fingerprint}) was not accepted — refusing to connect"
    )]
    HostKeyNotAccepted {
        name: String,
        key_type: String,
        fingerprint: String,
    },

    #[error(
        "HOST KEY FOR {name} HAS CHANGED: the server now presents {key_type} {fingerprint}, so \
         someone may be intercepting the connection (or the server was reinstalled); offending \
         key in {}:{line} (remove it with ssh-keygen -f \"{}\" -R \"{name}\") — refusing to \
         connect",
        file.display(), file.display()
    )]
    HostKeyChanged {
        name: String,
        key_type: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },

    #[error(
        "host key for {name} ({key_type} {fingerprint}) is marked @revoked in {}:{line} — \
         refusing to connect",
        file.display()
    )]
    HostKeyRevoked {
        name: String,
        key_type: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },

    #[error(
        "the server presented a host certificate, which is not supported — refusing to connect"
    )]
    HostCertificate,

    #[error(
        "identity file {} does not exist (check the IdentityFile option)",
        path.display()
    )]
    IdentityFileMissing { path: PathBuf },

    #[error("cannot read the password from standard input: {reason}")]
    PasswordStdin { reason: String },

    #[error(
        "authentication failed for {user}@{host} (tried: {tried}{})",
        Note(note)
    )]
    AuthFailed {
        user: String,
        host: String,
        tried: String,
        note: String,
    },

    #[error(
        "no usable authentication method for {user}@{host} (server offers: {offered}{})",
        Note(note)
    )]
    NoAuthMethod {
        user: String,
        host: String,
        offered: String,
        note: String,
    },

    #[error("connection to {host} port {port} lost during {during}: {reason}")]
    Disconnected {
        host: String,
        port: u16,
        during: &'static str,
        reason: String,
    },

    #[error("server does not offer the sftp subsystem")]
    NoSftpSubsystem,

    #[error("cannot open an SSH channel for sftp: {reason}")]
    Channel { reason: String },

    #[error("the server did not answer the sftp subsystem request within {}", Secs(*.timeout))]
    SftpTimeout { timeout: Duration },

    #[error("the SSH connection is closed")]
    Closed,

    #[error("cannot run ProxyCommand '{command}': {reason}")]
    ProxyCommand { command: String, reason: String },

    #[error("jump host {jump} could not open a connection to {host} port {port}: {reason}")]
    JumpChannel {
        jump: String,
        host: String,
        port: u16,
        reason: String,
    },

    /// A configuration that cannot be used (a bad ProxyJump host...); the text says what.
    #[error("{0}")]
    Config(String),
}

/// `10s`, or `1.5s` for fractions: how ssh users write timeouts.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{:.1}s", self.0.as_secs_f64())
        }
    }
}

/// An optional `; note` inside the parentheses of an authentication error.
struct Note<'a>(&'a str);

impl fmt::Display for Note<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "; {}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = SshError::Timeout {
            host: "h".into(),
            port: 2222,
            timeout: Duration::from_secs(10),
        };
        assert_eq!(
            e.to_string(),
            "connection to h port 2222 timed out after 10s"
        );
        let e = SshError::HostKeyChanged {
            name: "[h]:2222".into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
            file: "/k/known_hosts".into(),
            line: 3,
        };
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains("/k/known_hosts:3"), "{s}");
        let e = SshError::AuthFailed {
            user: "alice".into(),
            host: "h".into(),
            tried: "publickey, password".into(),
            note: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "authentication failed for alice@h (tried: publickey, password)"
        );
    }
}
