//! A simulated disk: writes complete in order after a latency; a crash loses every write
//! not yet completed (the one in flight leaves a torn record behind).
//!
//! Completed writes are applied by the storage contract ([`Persisted::apply`]) and also go
//! through the core's storage format ([`LogStore`] on a [`MemMedia`]); a restart recovers
//! from those bytes, so every simulated crash also tests the codec and replay.

use concord_core::raft::{Persisted, WriteToken};
use concord_core::storage::record::{self, Record};
use concord_core::storage::{LogOptions, LogStore, Media, MemMedia};
use concord_core::StorageWrite;
use std::borrow::Cow;
use std::collections::VecDeque;

/// Small segments, so simulated runs roll over and compact through several of them.
const OPTIONS: LogOptions = LogOptions { segment_bytes_max: 8 << 10, record_bytes_max: 1 << 20 };

#[derive(Debug)]
pub(crate) struct Disk {
    /// What the completed writes made durable.
    state: Persisted,
    /// The same writes as stored bytes; `None` only while a crash swaps the medium.
    store: Option<LogStore<MemMedia>>,
    pending: VecDeque<StorageWrite>,
    last_done_at: u64,
    crashes: u64,
    /// A contract breach seen while applying a write, or a recovery that went wrong.
    fault: Option<String>,
}

impl Default for Disk {
    fn default() -> Self {
        Self {
            state: Persisted::default(),
            store: Some(empty_store()),
            pending: VecDeque::new(),
            last_done_at: 0,
            crashes: 0,
            fault: None,
        }
    }
}

/// A store on an empty medium.
fn empty_store() -> LogStore<MemMedia> {
    LogStore::open(MemMedia::new(), OPTIONS).expect("an empty medium always opens").0
}

impl Disk {
    /// Queues a write; returns when it completes (never before an earlier write).
    pub(crate) fn submit(&mut self, write: StorageWrite, ready_at: u64) -> u64 {
        self.last_done_at = self.last_done_at.max(ready_at);
        self.pending.push_back(write);
        self.last_done_at
    }

    /// Whether every submitted write is durable.
    pub(crate) fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn store(&mut self) -> &mut LogStore<MemMedia> {
        self.store.as_mut().expect("the store is back once a crash is over")
    }

    /// Makes the oldest pending write durable and returns its token.
    pub(crate) fn complete_next(&mut self) -> Option<WriteToken> {
        let write = self.pending.pop_front()?;
        if let Err(e) = self.state.apply(&write) {
            self.fault = Some(format!("the node broke the storage contract: {e}"));
        } else if let Err(e) = self.store().append(&write).and_then(|()| self.store().sync()) {
            self.fault = Some(format!("the storage format refused a write the contract allows: {e}"));
        }
        Some(write.token)
    }

    fn snapshot_index(&self) -> u64 {
        self.state.bounds().snapshot_index
    }

    /// Checks the stored log is contiguous after the snapshot.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        if let Some(f) = self.fault.take() {
            return Err(f);
        }
        let mut expected = self.state.entries.first().map(|e| e.index);
        if let (Some(first), Some(snap)) = (expected, &self.state.snapshot) {
            if first != snap.meta.index + 1 {
                return Err(format!("stored log starts at {first}, snapshot ends at {}", snap.meta.index));
            }
        }
        for e in &self.state.entries {
            if Some(e.index) != expected {
                return Err(format!("stored log has a gap before {}", e.index));
            }
            expected = Some(e.index + 1);
        }
        Ok(())
    }

    /// With every write done, the disk must hold exactly the node's state: what a restart
    /// would recover is what the node was running with.
    pub(crate) fn matches_node<M: concord_core::StateMachine>(
        &self,
        node: &concord_core::Node<M>,
    ) -> Result<(), String> {
        if self.state.hard_state != node.hard_state() {
            return Err(format!(
                "stored hard state {:?} but node has {:?}",
                self.state.hard_state,
                node.hard_state()
            ));
        }
        let status = node.status();
        if self.snapshot_index() != status.snapshot_index {
            return Err(format!(
                "stored snapshot at {} but node's log starts after {}",
                self.snapshot_index(),
                status.snapshot_index
            ));
        }
        let stored_last = self.state.bounds().last_index;
        if stored_last != status.last_index {
            return Err(format!("stored log ends at {stored_last} but node's at {}", status.last_index));
        }
        for e in &self.state.entries {
            if node.entry(e.index) != Some(e) {
                return Err(format!("stored entry {}@{} differs from the node's", e.index, e.term));
            }
        }
        Ok(())
    }

    /// Persist-before-send, checked on each message as it leaves: whatever it claims
    /// (its term, a vote, an acknowledged index) must already be on this disk.
    pub(crate) fn permits(&self, msg: &concord_core::Message) -> Result<(), String> {
        use concord_core::MessageBody as B;
        let hs = self.state.hard_state;
        let durable_last = self.state.bounds().last_index;
        let speculative = matches!(msg.body, B::PreVote { .. } | B::PreVoteResponse { .. });
        if !speculative && msg.term > hs.term {
            return Err(format!(
                "{} sent in term {} before that term was stored ({})",
                msg.body.kind(),
                msg.term,
                hs.term
            ));
        }
        match msg.body {
            B::VoteResponse { granted: true } if hs.voted_for != Some(msg.to) => {
                Err(format!("vote for {} sent before it was stored ({:?})", msg.to, hs))
            }
            B::Vote { .. } if hs.voted_for != Some(msg.from) => {
                Err(format!("vote request sent before the self-vote was stored ({hs:?})"))
            }
            B::AppendResponse { success: true, index, .. } if index > durable_last => {
                Err(format!("acknowledged index {index} with only {durable_last} stored"))
            }
            B::InstallSnapshotResponse { done: true, index, .. } if index > durable_last => {
                Err(format!("acknowledged snapshot {index} with only {durable_last} stored"))
            }
            _ => Ok(()),
        }
    }

    /// A crash: writes not yet completed never happened. The oldest one was in flight and
    /// reached the medium torn (part of its first record, a different part each crash), so
    /// recovery has a torn tail to cut, and must find exactly the completed writes.
    pub(crate) fn lose_unconfirmed(&mut self) {
        self.crashes += 1;
        let in_flight = self.pending.pop_front();
        self.pending.clear();
        self.last_done_at = 0;
        let Some(store) = self.store.take() else { return };
        let mut media = store.into_media();
        let torn = in_flight.map_or(0, |w| tear(&w, self.crashes, &mut media));
        // Every completed write was synced: the torn bytes are all a crash can keep or lose.
        media.crash(|_, unsynced| unsynced);
        let (store, recovered) = match LogStore::open(media, OPTIONS) {
            Ok(opened) => opened,
            Err(e) => {
                self.fault = Some(format!("recovery failed: {e}"));
                self.store = Some(empty_store());
                return;
            }
        };
        self.store = Some(store);
        if recovered.persisted != self.state || recovered.torn_tail.is_some() != (torn > 0) {
            self.fault = Some(format!(
                "recovery found {:?} (torn tail {:?}), not the completed writes {:?} ({torn} torn bytes)",
                recovered.persisted.bounds(),
                recovered.torn_tail,
                self.state.bounds()
            ));
        }
        self.state = recovered.persisted;
    }

    /// What a restarting node finds.
    pub(crate) fn persisted(&self) -> Persisted {
        self.state.clone()
    }
}

/// Appends a strict prefix of `w`'s first record to the newest segment, as a crash in the
/// middle of writing it leaves; returns its length. Whole records never survive here, so
/// crashes do not change what a simulated node restarts with.
fn tear(w: &StorageWrite, crashes: u64, media: &mut MemMedia) -> usize {
    let first = match (w.hard_state, w.entries.is_empty()) {
        (Some(h), _) => Record::HardState(h),
        (None, false) => Record::Entries(Cow::Borrowed(&w.entries)),
        (None, true) => return 0, // a snapshot alone: it is written in its own steps
    };
    let mut bytes = Vec::new();
    let mut seqs = Vec::new();
    if record::encode(&first, OPTIONS.record_bytes_max, &mut bytes).is_err()
        || media.segments(&mut seqs).is_err()
    {
        return 0;
    }
    let Some(&newest) = seqs.last() else { return 0 };
    let keep = usize::try_from(crashes.wrapping_mul(7919)).unwrap_or(0) % bytes.len();
    match media.append(newest, &bytes[..keep]) {
        Ok(()) => keep,
        Err(never) => match never {},
    }
}
