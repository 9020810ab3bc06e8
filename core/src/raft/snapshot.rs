//! Snapshots: taking them to compact the log, sending them in chunks to followers that
//! fell behind the compaction point, and installing them on the follower side once
//! [`IncomingSnapshot`](super::incoming_snapshot::IncomingSnapshot) has them whole.

use super::incoming_snapshot::Received;
use super::node::{Event, Node};
use super::progress::ReplicationState;
use super::{LogIndex, MessageBody, NodeId, Snapshot, SnapshotMeta, SnapshotWrite, StateMachine};
use alloc::vec::Vec;

/// How many snapshot thresholds' worth of entries may pile up while compaction waits for
/// a follower's snapshot transfer to finish.
pub(super) const SNAPSHOT_DEFER_FACTOR: u64 = 4;

impl<M: StateMachine> Node<M> {
    /// Takes a snapshot once enough applied entries accumulated since the last one.
    ///
    /// While a follower is receiving a snapshot, compaction waits (up to
    /// [`SNAPSHOT_DEFER_FACTOR`] thresholds): a new snapshot would restart that transfer,
    /// and a follower on a slow link would never finish one.
    pub(super) fn maybe_snapshot(&mut self) {
        let since = self.applied - self.log.snapshot_index();
        let threshold = self.cfg.snapshot_threshold_entries;
        if since < threshold {
            return;
        }
        let transferring =
            self.progress.values().any(|p| matches!(p.state, ReplicationState::Snapshot { .. }));
        if !transferring || since >= threshold.saturating_mul(SNAPSHOT_DEFER_FACTOR) {
            self.take_snapshot();
        }
    }

    /// The latest snapshot taken or installed, if any.
    pub fn latest_snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Takes a snapshot of the applied state now, unless the latest one already covers
    /// it (an operator's backup); it is queued for storage like any other and compacts the
    /// log the same way. The latest snapshot, or `None` if nothing was applied yet.
    pub fn snapshot_now(&mut self) -> Option<&Snapshot> {
        if self.applied > self.log.snapshot_index() {
            self.take_snapshot();
        }
        self.snapshot.as_ref()
    }

    fn take_snapshot(&mut self) {
        let index = self.applied;
        let Some(entry) = self.log.get(index) else {
            return;
        };
        let (term, time) = (entry.term, entry.time);
        let mut data = Vec::new();
        self.machine.snapshot(&mut data);
        let meta = SnapshotMeta { index, term, time, membership: self.membership.at(index).clone() };
        self.log.compact_to(index);
        self.membership.compact_to(index);
        self.metrics.snapshots_taken += 1;
        let snapshot = Snapshot { meta, data };
        self.queue_snapshot_write(snapshot.clone());
        self.snapshot = Some(snapshot);
    }

    /// Adds a snapshot to the pending write, merging with what is already there. Call it
    /// after the in-memory log was compacted or reset to the snapshot.
    ///
    /// The write's entries always mirror the tail of the in-memory log that differs from
    /// what is stored, so the retain flag follows from the in-memory log alone: stored
    /// entries above the snapshot stay only while the log still has entries there. That
    /// covers a truncation whose replacement entries the snapshot swallowed (the stale
    /// stored tail must go) and an earlier snapshot in the same write that dropped the
    /// stored log (it must still be dropped, and entries appended since must be kept).
    fn queue_snapshot_write(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        let last = self.log.last_index();
        self.write.entries.retain(|e| e.index > index && e.index <= last);
        let earlier_dropped_log = self.write.snapshot.as_ref().is_some_and(|s| !s.retain_log_after);
        let retain = !earlier_dropped_log && last > index;
        self.write.snapshot = Some(SnapshotWrite { snapshot, retain_log_after: retain });
        self.clamp_durable_to(last);
    }

    /// Leader: `peer` needs entries we compacted; send the snapshot instead.
    pub(super) fn start_snapshot(&mut self, peer: NodeId) {
        let Some(index) = self.snapshot.as_ref().map(|s| s.meta.index) else {
            return;
        };
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        pr.state = ReplicationState::Snapshot { index, offset: 0, sent_at: self.now };
        pr.inflight.clear();
        self.send_snapshot_chunk(peer);
    }

    /// Leader: sends the chunk at the follower's confirmed offset.
    pub(super) fn send_snapshot_chunk(&mut self, peer: NodeId) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        let ReplicationState::Snapshot { index, offset, sent_at } = &mut pr.state else {
            return;
        };
        if *index != snapshot.meta.index {
            // A newer snapshot replaced the one being sent: start over with it.
            *index = snapshot.meta.index;
            *offset = 0;
        }
        *sent_at = self.now;
        let total = snapshot.data.len();
        let start = usize::try_from(*offset).unwrap_or(usize::MAX).min(total);
        let end = start.saturating_add(self.cfg.snapshot_chunk_bytes).min(total);
        let body = MessageBody::InstallSnapshot {
            meta: snapshot.meta.clone(),
            offset: start as u64,
            total: total as u64,
            data: snapshot.data[start..end].to_vec(),
        };
        self.metrics.snapshot_chunks_sent += 1;
        self.send(peer, body);
    }

    /// Leader: a follower answered a snapshot chunk.
    pub(super) fn handle_install_snapshot_response(
        &mut self,
        from: NodeId,
        index: LogIndex,
        next_offset: u64,
        done: bool,
    ) {
        let now = self.now;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.last_heard = now;
        let ReplicationState::Snapshot { index: sending, offset, .. } = &mut pr.state else {
            return;
        };
        if index != *sending {
            return;
        }
        if done {
            pr.acknowledge(index);
            pr.become_probe();
            self.appends_due = true;
            self.maybe_commit();
        } else if next_offset > *offset {
            *offset = next_offset;
            self.send_snapshot_chunk(from);
        } else if next_offset < *offset {
            // The follower holds less than we thought (it restarted, or a restore failed):
            // resume from there, but let the heartbeat path resend. Answering every such
            // reply would multiply chunk streams, since duplicated and stale chunks draw
            // replies too.
            *offset = next_offset;
        }
    }

    /// Follower: one chunk of a snapshot from the leader.
    pub(super) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        total: u64,
        data: Vec<u8>,
    ) {
        let index = meta.index;
        if index <= self.commit {
            // Everything it covers is already committed here (and matches the leader's).
            self.send(from, MessageBody::InstallSnapshotResponse { index, next_offset: total, done: true });
            return;
        }
        let snapshot =
            match self.incoming_snapshot.receive(meta, offset, total, &data, self.cfg.snapshot_bytes_max) {
                Received::Complete(snapshot) => snapshot,
                Received::Holding { next_offset } => {
                    self.send(from, MessageBody::InstallSnapshotResponse { index, next_offset, done: false });
                    return;
                }
                Received::TooLarge => {
                    warn!("{} refuses a {} byte snapshot (snapshot_bytes_max)", self.cfg.id, total);
                    return;
                }
                Received::Dropped => return,
            };
        if let Err(_e) = self.machine.restore(&snapshot.data) {
            warn!("{} cannot restore snapshot {}: {}", self.cfg.id, index, _e);
            self.send(from, MessageBody::InstallSnapshotResponse { index, next_offset: 0, done: false });
            return;
        }
        self.install_snapshot(snapshot);
        self.send(from, MessageBody::InstallSnapshotResponse { index, next_offset: total, done: true });
    }

    /// Replaces the log prefix (or the whole log) with a restored snapshot.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = &snapshot.meta;
        let index = meta.index;
        // Keep our entries after the snapshot only if our log holds its last entry: then
        // they may be acknowledged (hence committed) entries that must not be forgotten.
        let retain = self.log.term(index) == Some(meta.term);
        self.log.reset_to_snapshot(meta, retain);
        self.membership.reset(index, meta.membership.clone(), retain);
        self.commit = self.commit.max(index);
        self.applied = index;
        self.queue_snapshot_write(snapshot.clone());
        self.snapshot = Some(snapshot);
        self.metrics.snapshots_installed += 1;
        self.events.push_back(Event::SnapshotInstalled { index });
    }
}
