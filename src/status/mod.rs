//! `sftpfs status`: what a mount is doing, asked of its daemon over a Unix socket that only
//! the mounting user (and root) can use.
//!
//! The daemon side ([`server`]) answers one JSON document per connection ([`report`]); the
//! command side ([`client`]) finds the user's mounts by their sockets and shows the answer as
//! text, JSON or Prometheus text ([`render`]).

pub mod client;
pub mod render;
pub mod report;
pub mod server;
pub mod socket;
