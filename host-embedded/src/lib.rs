//! # concord-embedded
//!
//! Concord on a microcontroller: a [`ClientHost`] (sessions, fenced locks, counters, KV,
//! signals — every typed call of the core's client) and a [`ReplicaHost`] (a full voting
//! member of a cluster), both speaking over one serial line to the `concord bridge`
//! subcommand, which joins the line to the cluster.
//!
//! Like every Concord host this crate decides nothing: the core's
//! [`Client`](concord_core::client::Client) and
//! [`Replica`](concord_core::server::Replica) decide, the core's serial
//! [`Link`](concord_core::wire::link::Link) makes the line reliable (COBS frames with a
//! CRC, sequence numbers, acknowledgements and retransmission, restart detection), and
//! the core's [`LogStore`](concord_core::storage::LogStore) keeps a replica's log on any
//! [`Media`](concord_core::storage::Media) (RAM through
//! [`MemMedia`](concord_core::storage::MemMedia), or a board's NOR flash through
//! [`flash::FlashMedia`] over the `embedded-storage` traits). What is
//! left here is the binding: bytes between an [`embedded_io`] port and the link
//! ([`serial`]), and messages between the link's channels and the client or replica.
//!
//! `no_std` with `alloc`: the firmware provides a global allocator over a fixed arena.
//! Every call does bounded work and every queue is bounded by a named limit
//! ([`LinkConfig`](concord_core::wire::link::LinkConfig), the core's configurations and
//! the constants of [`serial`]).
//!
//! ## The loop
//!
//! A firmware's main loop, or an embassy task, repeats: move bytes ([`serial::pump`], or
//! [`serial::read_async`] / [`serial::write_async`] in a task), then [`ClientHost::step`]
//! (or [`ReplicaHost::step`]) with the current time, then sleep until the bytes arrive
//! or `poll_timeout` is due. Operations start on [`ClientHost::client`] between steps,
//! and their results come out of [`ClientHost::poll_event`] — or, for calls made by other
//! tasks, through a [`mailbox::Mailbox`] (embassy-sync channels) that the driving loop
//! serves with a [`mailbox::Postman`] after each step. [`task::drive_client`] and
//! [`task::drive_replica`] are that loop as one async function, for an embassy task.

#![no_std]
// Hosts stay free of unsafe code; a firmware's allocator and entry point live in the
// firmware crate.
#![forbid(unsafe_code)]

extern crate alloc;

mod client;
pub mod flash;
pub mod mailbox;
mod replica;
pub mod serial;
pub mod task;

pub use client::{ClientHost, ClientHostStats, ClientId, ClientsFull, CHANNELS_PER_CLIENT, CLIENTS_MAX};

use concord_core::machine::Limits;

/// Frame size of a cluster with microcontroller members, bytes: the smallest the core
/// allows. Raft messages are kept to half of it, so an append or a snapshot chunk fits a
/// device's buffers; every member of the group (servers too) runs with it.
pub const DEVICE_FRAME_BYTES: usize = concord_core::setup::FRAME_BYTES_MIN;

/// State machine limits for a group with microcontroller members: values, references
/// and signal payloads of at most 512 bytes and names of at most 64, so that the
/// largest command fits a proposal of half a [`DEVICE_FRAME_BYTES`] frame. Every member
/// needs the same limits (peers compare their digests); the other limits keep their
/// defaults.
pub fn device_limits() -> Limits {
    Limits {
        name_bytes_max: 64,
        kv_value_bytes_max: 512,
        reference_bytes_max: 512,
        signal_payload_bytes_max: 512,
        election_value_bytes_max: 512,
        ..Limits::default()
    }
}
pub use replica::{ReplicaHost, ReplicaHostConfig, ReplicaHostError, ReplicaStatus, PEER_REDIAL_US};
