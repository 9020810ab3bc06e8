//! # concord-tokio
//!
//! The host that runs Concord as a native server: the `concord` binary (`concord serve`,
//! `concord dev` and the client subcommands), the async Rust client, and a durable
//! write-ahead log. Everything Concord decides happens in `concord-core`; this crate only
//! moves bytes between sockets, disk and the core, keeps time with the monotonic clock,
//! and seeds the core's randomness.

pub mod bridge;
pub mod client;
pub mod config;
pub mod frame;
mod http;
pub mod metrics;
pub mod server;
pub mod wal;
