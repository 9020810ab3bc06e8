//! Concord's test harness: a deterministic simulator that drives `concord-core` nodes
//! under injected faults, the invariant checkers it runs after every step, and a
//! linearizability checker for client histories.

pub mod group;
pub mod harness;
pub mod linearizability;
pub mod psim;
pub mod register;
pub mod seeds;
pub mod sim;
