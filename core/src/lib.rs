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
//!
//! A host whose storage, network and callers can be called back drains with one call
//! instead: [`Node::drive`] (or [`server::Replica::drive`]) takes everything out in this
//! order, confirming writes the host reports durable at once, until nothing more can
//! leave (what waits for a write confirmed later stays in the node until then).
//!
//! ## A replica and a client
//!
//! A [`server::Replica`] is a node running the coordination machine and serving client
//! connections; a [`client::Client`] is everything a client decides. Both follow the same
//! contract — every `handle_*` (and every call that starts an operation) is followed by a
//! complete drain of every `poll_*` — and a host is the bytes and the time between them.
//! Here one replica and one client are wired in memory: the client probes its endpoint,
//! opens a session for the command, and the typed call decodes the answer.
//!
//! ```
//! use concord_core::client::{calls, Client, ClientConfig, ClientEvent, Endpoint};
//! use concord_core::server::{ConnId, ServeLimits};
//! use concord_core::setup::{Bootstrap, NodeSetup};
//! use concord_core::machine::Limits;
//! use concord_core::{Config, Consistency, GroupId, Instant, Membership, NodeId, Persisted};
//!
//! let (me, group) = (NodeId(1), GroupId(1));
//! let setup = NodeSetup::new(Config::new(me, group), Limits::default(), ServeLimits::default());
//! let bootstrap = Bootstrap::NewCluster(Membership::with_voters([me]));
//! let mut replica = setup.replica(Persisted::default(), bootstrap, Instant::ZERO, 7)?;
//! let mut disk = Persisted::default(); // the host's storage medium
//!
//! let mut client = Client::new(ClientConfig::new(group, vec![Endpoint::addr("mem:1")]), Instant::ZERO, 3);
//! let (request, decode) = calls::Counter::new("visits").incr().into_parts();
//! let op = client.call(Instant::ZERO, request, Consistency::Linearizable);
//!
//! let mut now = Instant::ZERO;
//! let mut answer = None;
//! while answer.is_none() && now < Instant::from_micros(10_000_000) {
//!     now = replica.poll_timeout().min(client.poll_timeout()).max(now);
//!     replica.handle_timeout(now);
//!     client.handle_timeout(now);
//!     // The replica: storage first (durable, then confirmed), then peers, then clients.
//!     while let Some(write) = replica.poll_storage() {
//!         disk.apply(&write).expect("the node keeps the storage contract");
//!         replica.handle_persisted(write.token)?;
//!     }
//!     while let Some(_peer_message) = replica.poll_transmit() { /* a single node has no peers */ }
//!     while let Some(_event) = replica.poll_event() {}
//!     // The client's requests reach the replica on connection 1 …
//!     while let Some((_peer, req)) = client.poll_transmit() {
//!         replica.handle_client(now, ConnId(1), req);
//!     }
//!     // … and its answers come back to the client's endpoint.
//!     while let Some((_conn, msg)) = replica.poll_client() {
//!         let peer = client.endpoints().next().map(|(peer, ..)| peer).expect("one endpoint");
//!         client.handle_message(now, peer, msg);
//!     }
//!     while let Some(event) = client.poll_event() {
//!         if let ClientEvent::Done { op: done, result: Ok(reply), .. } = event {
//!             if done == op {
//!                 answer = Some(decode.decode(reply).expect("a counter value"));
//!             }
//!         }
//!     }
//! }
//! assert_eq!(answer, Some(1));
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! What fills each queue:
//!
//! | queue | filled by |
//! |---|---|
//! | `Replica::poll_storage`, `poll_transmit` | `handle_timeout`, `handle_message`, `handle_client` (commands), `handle_persisted` |
//! | `Replica::poll_client` | `handle_client` (answers), and entries applied in any call (completions, watch events, signals, observer changes, session ends) |
//! | `Replica::poll_event` | any call that changes the role or installs a snapshot |
//! | `Client::poll_transmit` | every call that starts an operation, `handle_message`, `handle_timeout` (probes, resends, keep-alives), `handle_disconnect` |
//! | `Client::poll_event` | `handle_message` (results, signals, watch and observer events, endpoints reached), `handle_timeout` (a session given up), `close`, `abandon` |

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[macro_use]
mod fmt;

pub mod client;
pub mod crc;
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
