//! The state machine the simulator replicates: a store of `u64` registers with read,
//! write and compare-and-set. It also folds every applied command into a hash chain, so
//! the simulator can check that every replica applied exactly the same sequence.

use concord_core::machine::{ApplyContext, RestoreError, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A command replicated through the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterCommand {
    /// Set `key` to `value`.
    Write {
        /// Register.
        key: u64,
        /// New value.
        value: u64,
    },
    /// Set `key` to `new` if it currently holds `expected` (`None` = absent).
    Cas {
        /// Register.
        key: u64,
        /// Expected current value.
        expected: Option<u64>,
        /// New value.
        new: u64,
    },
}

/// A read-only query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterQuery {
    /// Register to read.
    pub key: u64,
}

/// What the machine answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// A write was applied.
    Written,
    /// A compare-and-set was applied; `true` if it swapped.
    Cas(bool),
    /// The value of a register.
    Value(Option<u64>),
    /// The command or query could not be decoded.
    Invalid,
}

impl RegisterCommand {
    /// Encodes the command for `Request::Propose`.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

impl RegisterQuery {
    /// Encodes the query for `Request::Read`.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// 64-bit FNV-1a: a stable hash for traces and chains (std's hasher may change).
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    registers: BTreeMap<u64, u64>,
    chain: u64,
    chain_index: u64,
}

/// The register store.
#[derive(Clone, Debug, Default)]
pub struct RegisterMachine {
    registers: BTreeMap<u64, u64>,
    /// Hash of every command applied so far, in order.
    chain: u64,
    /// Index of the last command folded into `chain`.
    chain_index: u64,
    /// (index, chain) after each apply or restore since the last drain.
    applied: Vec<(u64, u64)>,
    /// (register, value) of each write or successful CAS applied since the last drain.
    written: Vec<(u64, u64)>,
}

impl RegisterMachine {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// (index, chain) pairs recorded since the last call.
    pub fn drain_applied(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.applied)
    }

    /// (register, value) pairs written since the last call.
    pub fn drain_written(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.written)
    }

    /// The current value of a register.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.registers.get(&key).copied()
    }

    /// The hash chain and the index it covers.
    pub fn chain(&self) -> (u64, u64) {
        (self.chain_index, self.chain)
    }
}

impl StateMachine for RegisterMachine {
    type Output = RegisterOutput;
    type Event = ();

    fn apply(&mut self, ctx: ApplyContext, command: &[u8]) -> RegisterOutput {
        let mut link = ctx.index.to_le_bytes().to_vec();
        link.extend_from_slice(command);
        self.chain = fnv1a(self.chain, &link);
        self.chain_index = ctx.index;
        self.applied.push((ctx.index, self.chain));
        match postcard::from_bytes::<RegisterCommand>(command) {
            Ok(RegisterCommand::Write { key, value }) => {
                self.registers.insert(key, value);
                self.written.push((key, value));
                RegisterOutput::Written
            }
            Ok(RegisterCommand::Cas { key, expected, new }) => {
                let swapped = self.registers.get(&key).copied() == expected;
                if swapped {
                    self.registers.insert(key, new);
                    self.written.push((key, new));
                }
                RegisterOutput::Cas(swapped)
            }
            Err(_) => RegisterOutput::Invalid,
        }
    }

    fn query(&self, query: &[u8]) -> RegisterOutput {
        match postcard::from_bytes::<RegisterQuery>(query) {
            Ok(q) => RegisterOutput::Value(self.get(q.key)),
            Err(_) => RegisterOutput::Invalid,
        }
    }

    fn snapshot(&self, out: &mut Vec<u8>) {
        let data = SnapshotData {
            registers: self.registers.clone(),
            chain: self.chain,
            chain_index: self.chain_index,
        };
        if let Ok(bytes) = postcard::to_allocvec(&data) {
            out.extend_from_slice(&bytes);
        }
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let data: SnapshotData = postcard::from_bytes(snapshot)
            .map_err(|_| RestoreError { reason: "undecodable register snapshot" })?;
        self.registers = data.registers;
        self.chain = data.chain;
        self.chain_index = data.chain_index;
        self.applied.push((self.chain_index, self.chain));
        Ok(())
    }
}
