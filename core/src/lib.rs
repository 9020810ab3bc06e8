//! # concord-core
//!
//! Everything Concord *decides* lives in this crate: the Raft log, elections,
//! replication, snapshots, membership and the [`StateMachine`] contract Raft applies
//! entries through ([`raft`]), the coordination state machine ([`machine`]), the replica
//! and client ([`server`], [`client`]), the wire format ([`wire`]) and the storage format
//! with its recovery ([`storage`]). It is fully deterministic: it contains no networking
//! code, never touches a file (a host's storage medium is a trait), never reads a clock
//! (time is an argument) and never draws randomness it was not seeded with. The same code
//! runs in the `concord` server, in a browser or edge worker (WebAssembly) and on a
//! microcontroller; it builds for `thumbv7em-none-eabihf` and `wasm32-unknown-unknown`.
//!
//! ## The run-loop contract
//!
//! A host owns one [`Node`] per Raft group and drives it with `handle_*` calls that take
//! the current [`Instant`]. **Every `handle_*` call must be followed by a complete drain of
//! every `poll_*` queue** — storage first — before the host sleeps until
//! [`Node::poll_timeout`]:
//!
//! ```
//! use concord_core::{Config, GroupId, Instant, Membership, Node, NodeId, Start};
//! # use concord_core::{ApplyContext, RestoreError, StateMachine};
//! # struct Nothing;
//! # impl StateMachine for Nothing {
//! #     type Output = ();
//! #     type Event = ();
//! #     fn apply(&mut self, _: ApplyContext, _: &[u8]) {}
//! #     fn query(&self, _: &[u8]) {}
//! #     fn snapshot(&self, _: &mut Vec<u8>) {}
//! #     fn restore(&mut self, _: &[u8]) -> Result<(), RestoreError> { Ok(()) }
//! # }
//! let config = Config::new(NodeId(1), GroupId(0));
//! let members = Membership::with_voters([NodeId(1)]);
//! let mut node = Node::new(config, Nothing, Start::NewCluster(members), Instant::ZERO, 7)?;
//! let mut now = Instant::ZERO;
//! for _ in 0..3 {
//!     now = node.poll_timeout().max(now);
//!     node.handle_timeout(now);
//!     // 1. Make writes durable (fsync), then confirm them.
//!     while let Some(write) = node.poll_storage() {
//!         /* append write.entries, store write.hard_state / write.snapshot, fsync */
//!         node.handle_persisted(write.token)?;
//!     }
//!     // 2. Send what may leave now: a vote or acknowledgement is held back until the
//!     //    write it depends on was confirmed, so persist-before-send cannot be broken.
//!     while let Some(_msg) = node.poll_transmit() { /* encode with `wire`, send to _msg.to */ }
//!     // 3. Answer clients and surface events.
//!     while let Some(_reply) = node.poll_reply() {}
//!     while let Some(_event) = node.poll_event() {}
//! }
//! assert_eq!(node.role(), concord_core::Role::Leader);
//! # Ok::<(), concord_core::NodeError>(())
//! ```
//!
//! Each call does bounded work: at most one message, request or timer's worth, plus at
//! most `apply_batch_max` applied entries (while more remain, `poll_timeout` returns the
//! current time). All limits are named fields of [`Config`].

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[macro_use]
mod fmt;

pub mod client;
pub mod machine;
pub mod raft;
pub mod server;
pub mod setup;
pub mod storage;
pub mod time;
pub mod wire;

// Where the configuration lived before it moved in with Raft, which it configures.
pub use raft::config;
pub use raft::{
    ApplyContext, Config, ConfigError, Consistency, Entry, Event, GroupId, LogIndex, Membership,
    MembershipChange, Message, MessageBody, Metrics, Node, NodeError, NodeId, Payload, Persisted, Reply,
    Request, RequestError, RequestId, Response, RestoreError, Role, Snapshot, SnapshotMeta, Start,
    StateMachine, Status, StorageWrite, Term,
};
pub use time::Instant;
