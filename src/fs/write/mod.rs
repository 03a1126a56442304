//! The write path: write-behind of open files, truncation, and the asynchronous mode's
//! queue (`journal.rs`) with the operations it answers early (`async_ops.rs`).

pub mod arrivals;
pub mod async_ops;
pub mod copy;
pub mod journal;
pub(super) mod truncate;
pub mod write_behind;
