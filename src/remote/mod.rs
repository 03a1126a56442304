//! The SFTP client the filesystem core uses: byte paths, typed attributes, errno mapping,
//! OpenSSH extensions and request sizes negotiated with the server.

pub mod client;
pub mod error;
pub mod protocol;
pub mod sftp;
#[cfg(test)]
pub mod testing;

pub use error::{RemoteError, Result};
pub use protocol::{Attrs, NameEntry};
pub use sftp::{Extensions, Handle, Limits, Sftp, StatVfs};
