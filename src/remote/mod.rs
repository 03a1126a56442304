//! SFTP client (being written).
