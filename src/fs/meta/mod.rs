//! Metadata: lookup, getattr and setattr (`stat.rs`), how the server's attributes are
//! shown (`attr.rs`, owners mapped by `idmap.rs`), the metadata caches (`cache/`), and the
//! answers given from them while the server is away (`offline.rs`).

pub mod attr;
pub mod cache;
pub mod offline;
pub mod stat;
