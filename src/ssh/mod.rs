//! SSH transport: TCP connect, host key verification against known_hosts, authentication
//! (agent, keys, keyboard-interactive, password) and the `sftp` subsystem stream.

mod auth;
mod connect;
mod error;
mod host_key;
mod known_hosts;
mod prompt;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use connect::{Connector, SftpStream, SshConnection};
pub use error::SshError;
