//! sftpfs: mount a directory of any SSH server as a local directory over SFTP.

#[cfg(test)]
pub mod alloc_count;
pub mod cli;
pub mod config;
pub mod connect;
pub mod daemon;
pub mod env;
pub mod fs;
pub mod fuse;
pub mod kernel_cache;
pub mod logging;
pub mod mount;
pub mod remote;
pub mod ssh;
pub mod status;
