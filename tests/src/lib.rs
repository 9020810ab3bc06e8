//! Concord's test harness: two deterministic simulators — Raft over bare nodes ([`sim`])
//! and the coordination primitives over replicas and clients ([`psim`]) — that share one
//! simulated world (time, randomness, network, disks, clocks, faults, traces) and one
//! command line ([`sweep`]); the invariant checkers they run after every step; a
//! linearizability checker for client histories; and in-process clusters for scenario
//! tests and benchmarks ([`harness`], [`group`]).

pub mod group;
pub mod harness;
pub mod linearizability;
pub mod psim;
pub mod register;
pub mod sim;
pub mod sweep;
mod world;
