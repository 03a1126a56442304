//! SSH transport: TCP connect, host key verification against known_hosts, authentication
//! (agent, keys, keyboard-interactive, password) and the `sftp` subsystem stream.

pub mod algorithms;
mod auth;
mod banner;
mod channel_io;
mod child;
pub mod config;
mod connect;
mod error;
mod exec;
mod host_key;
mod known_hosts;
mod prompt;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use channel_io::SftpStream;
pub use child::ChildStream;
pub use connect::{Connector, SshConnection};
pub use error::SshError;
pub use prompt::Asker;
