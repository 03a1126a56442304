//! The read path: a file's read-ahead window, a second handle for long sequential reads,
//! and read-ahead across the files of a directory.

pub mod file_ahead;
pub mod file_read;
pub mod readahead;
pub mod split;
