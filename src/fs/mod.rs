//! Filesystem core (being written).
