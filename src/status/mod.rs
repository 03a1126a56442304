//! `sftpfs status` and `sftpfs refresh`: what a mount is doing, and forgetting what it has
//! cached, asked of its daemon over a Unix socket that only the mounting user (and root) can
//! use.
//!
//! The daemon side ([`server`]) answers one JSON document per connection ([`report`]); the
//! command side ([`client`]) finds the user's mounts by their sockets and shows the answer as
//! text, JSON or Prometheus text ([`render`]).

pub mod client;
pub mod refresh;
pub mod render;
pub mod report;
pub mod server;
pub mod socket;
pub mod verify;
pub mod verify_server;
