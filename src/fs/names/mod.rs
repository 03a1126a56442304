//! Names: the inode table, directory listings, making and removing names, their
//! revalidation against the server, symlink targets and file-name character sets.

pub mod change;
pub mod charset;
pub mod dir;
pub mod inode;
pub mod revalidate;
pub mod symlink;
