//! The simulated network: per-link cuts, loss and duplication. Delays (and so reordering)
//! are drawn by the simulator when it schedules a delivery.

use super::Faults;
use concord_core::wire::{decode_frame, encode_frame, Envelope};
use concord_core::Message;
use rand_xoshiro::rand_core::RngCore;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeSet;

/// Frames larger than this would be refused by a real node.
const FRAME_BYTES_MAX: usize = 4 << 20;

pub(crate) struct Net {
    faults: Faults,
    n: usize,
    /// `blocked[from * n + to]`: messages on that directed link are lost.
    blocked: Vec<bool>,
    /// `slowness[from * n + to]`: that link's delays are the run's range times this (1–3),
    /// so some links are consistently slower than others.
    slowness: Vec<u64>,
    buf: Vec<u8>,
}

impl Net {
    pub(crate) fn new(faults: Faults, n: usize, rng: &mut Xoshiro256PlusPlus) -> Self {
        let slowness = (0..n * n).map(|_| 1 + rng.next_u64() % 3).collect();
        Self { faults, n, blocked: vec![false; n * n], slowness, buf: Vec::new() }
    }

    /// The delay range of the link `from` → `to`, µs.
    pub(crate) fn delay_range(&self, from: usize, to: usize) -> (u64, u64) {
        let k = self.slowness[from * self.n + to];
        (self.faults.delay_us.0 * k, self.faults.delay_us.1 * k)
    }

    /// How many endpoints the network connects.
    pub(crate) fn endpoints(&self) -> usize {
        self.n
    }

    pub(crate) fn blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.n + to]
    }

    /// Splits the nodes into `side` and the rest, both directions cut.
    pub(crate) fn partition(&mut self, side: &BTreeSet<usize>) {
        for a in 0..self.n {
            for b in 0..self.n {
                self.blocked[a * self.n + b] = side.contains(&a) != side.contains(&b);
            }
        }
    }

    pub(crate) fn cut_one_way(&mut self, from: usize, to: usize) {
        if from != to {
            self.blocked[from * self.n + to] = true;
        }
    }

    pub(crate) fn isolate(&mut self, node: usize) {
        for other in 0..self.n {
            if other != node {
                self.blocked[node * self.n + other] = true;
                self.blocked[other * self.n + node] = true;
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    pub(crate) fn stop_loss(&mut self) {
        self.faults.drop_ppm = 0;
        self.faults.duplicate_ppm = 0;
    }

    /// How many copies of a message on this link arrive: 0 (lost), 1, or 2 (duplicated).
    pub(crate) fn copies(&self, rng: &mut Xoshiro256PlusPlus, from: usize, to: usize) -> u32 {
        if self.blocked(from, to) {
            return 0;
        }
        if (rng.next_u64() % 1_000_000) < u64::from(self.faults.drop_ppm) {
            return 0;
        }
        if (rng.next_u64() % 1_000_000) < u64::from(self.faults.duplicate_ppm) {
            return 2;
        }
        1
    }

    /// Encodes and decodes a message with the real wire format.
    pub(crate) fn through_wire(&mut self, msg: Message) -> Result<Message, String> {
        match self.envelope_through_wire(Envelope::Raft(msg))? {
            Envelope::Raft(m) => Ok(m),
            _ => Err("frame did not decode to the message".into()),
        }
    }

    /// Encodes and decodes any envelope with the real wire format.
    pub(crate) fn envelope_through_wire(&mut self, envelope: Envelope) -> Result<Envelope, String> {
        self.buf.clear();
        encode_frame(&envelope, FRAME_BYTES_MAX, &mut self.buf).map_err(|e| e.to_string())?;
        match decode_frame(&self.buf, FRAME_BYTES_MAX) {
            Ok(Some((e, used))) if used == self.buf.len() && e == envelope => Ok(e),
            Ok(_) => Err("frame did not decode to the envelope sent".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}
