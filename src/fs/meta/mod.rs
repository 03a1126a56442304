//! Metadata: lookup, getattr and setattr (`stat.rs`), how the server's attributes are
//! shown (`attr.rs`, owners mapped by `idmap.rs`), and the metadata caches (`cache/`).

pub mod attr;
pub mod cache;
pub mod stat;
