//! sftpfs: mount a directory of any SSH server as a local directory over SFTP.

pub mod cli;
pub mod config;
pub mod fs;
pub mod remote;
pub mod ssh;
