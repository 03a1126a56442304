//! The SFTP client the filesystem core uses: byte paths, typed attributes, errno mapping,
//! OpenSSH extensions and request sizes negotiated with the server.

pub mod bounds;
pub mod client;
pub mod error;
pub mod exec;
pub mod hash;
mod health;
pub mod pool;
pub mod profile;
pub mod protocol;
pub mod sftp;
pub mod stats;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests_hostile;
pub mod transport;
mod transport_direct;
mod transport_passive;
mod transport_process;

pub use bounds::ListingBound;
pub use error::{RemoteError, Result};
pub use pool::{Conn, Other, Pool, PoolOptions};
pub use profile::{Ext, Profile};
pub use protocol::{Attrs, NameEntry};
pub use sftp::{Handle, Limits, Sftp, StatVfs};
pub use stats::{ConnStats, MemberState, MemberStatus, PoolStatus, Refusal, Tally};
pub use transport::{
    transport_for, CommandTransport, DirectTransport, Opened, PassiveTransport, SftpIo,
    SshTransport, Transport,
};
