//! The SFTP client the filesystem core uses: byte paths, typed attributes, errno mapping,
//! OpenSSH extensions and request sizes negotiated with the server.

pub mod client;
pub mod error;
pub mod pool;
pub mod protocol;
pub mod sftp;
pub mod transport;
#[cfg(test)]
pub mod testing;

pub use error::{RemoteError, Result};
pub use protocol::{Attrs, NameEntry};
pub use pool::{Conn, Pool, PoolOptions};
pub use sftp::{Extensions, Handle, Limits, Sftp, StatVfs};
pub use transport::{Opened, SftpIo, SshTransport, Transport};
