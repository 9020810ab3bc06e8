//! Log replay: rebuilding what was stored from the segments' bytes, and tying the result to
//! the snapshot file.

use super::media::Media;
use super::record::{self, frame_at, frame_follows, Record};
use super::snapshot::SnapshotFile;
use super::{Damage, NotTorn, Place, StorageError};
use crate::raft::{append_entries, drop_for_snapshot, Entry, HardState, LogBounds, LogIndex};
use alloc::vec::Vec;

/// A log's state as replay rebuilds it. `entries` run contiguously from `snapshot_index + 1`.
#[derive(Debug, Default)]
pub(crate) struct LogState {
    pub(crate) hard_state: HardState,
    /// The generation of the last checkpoint: how many snapshots the log has seen stored.
    pub(crate) generation: u64,
    pub(crate) snapshot_index: LogIndex,
    pub(crate) entries: Vec<Entry>,
}

impl LogState {
    pub(crate) fn bounds(&self) -> LogBounds {
        let last_index = self.entries.last().map_or(self.snapshot_index, |e| e.index);
        LogBounds { term: self.hard_state.term, snapshot_index: self.snapshot_index, last_index }
    }

    fn apply(&mut self, record: Record<'static>, at_segment_start: bool) -> Result<(), Damage> {
        match record {
            Record::HardState(h) => self.hard_state = h,
            Record::Entries(entries) if entries.is_empty() => return Err(Damage::EmptyEntries),
            Record::Entries(entries) => {
                self.bounds().with_entries(&entries).map_err(Damage::Contract)?;
                append_entries(&mut self.entries, self.snapshot_index, entries.into_owned());
            }
            Record::Checkpoint { .. } if !at_segment_start => return Err(Damage::CheckpointNotFirst),
            Record::Checkpoint { generation, snapshot_index, hard_state } => {
                *self = Self { hard_state, generation, snapshot_index, entries: Vec::new() };
            }
        }
        Ok(())
    }

    /// What storing a snapshot at `index` does to the log.
    pub(crate) fn apply_snapshot(&mut self, index: LogIndex, retain_log_after: bool) {
        drop_for_snapshot(&mut self.entries, index, retain_log_after);
        self.snapshot_index = index;
    }
}

/// What replaying the segments found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) state: LogState,
    /// Position in the segment list of the last segment that starts with a checkpoint:
    /// the ones before it are dead.
    pub(crate) base_segment: usize,
    /// Where a torn write starts in the last segment.
    pub(crate) torn_offset: Option<u64>,
    /// Each segment's length, the last one's without its torn tail.
    pub(crate) segment_bytes: Vec<u64>,
}

/// Replays segments `seqs` in order, one segment in memory at a time (its size is the
/// medium's, never a stored length). With `allow_torn`, a bad record at the tail of the
/// last segment ends the replay and is reported in `torn_offset`; every other bad record
/// is corruption, because the store syncs a segment before it starts the next one.
pub(crate) fn replay<M: Media>(
    media: &mut M,
    seqs: &[u64],
    record_bytes_max: usize,
    allow_torn: bool,
) -> Result<Replay, StorageError<M::Error>> {
    let mut r = Replay::default();
    let mut buf = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        media.read(seq, &mut buf).map_err(StorageError::Media)?;
        let is_last = i + 1 == seqs.len();
        let mut offset = 0;
        while offset < buf.len() {
            let corrupt =
                |damage| StorageError::Corrupt { place: Place::Segment(seq), offset: offset as u64, damage };
            let (payload, next) = match frame_at(&buf, offset, record_bytes_max) {
                Ok(frame) => frame,
                Err(_) if is_last && allow_torn && !frame_follows(&buf, offset + 1, record_bytes_max) => {
                    r.torn_offset = Some(offset as u64);
                    break;
                }
                Err(problem) => {
                    let not_torn = match (is_last, allow_torn) {
                        (false, _) => NotTorn::NotLastSegment,
                        (true, true) => NotTorn::RecordFollows,
                        (true, false) => NotTorn::Synced,
                    };
                    return Err(corrupt(Damage::Frame { problem, not_torn }));
                }
            };
            // A checksummed record that does not decode is never a torn write: dropping it
            // could lose acknowledged data (say, written by a newer version).
            let record = record::decode(payload).map_err(|e| corrupt(Damage::Record(e)))?;
            if matches!(record, Record::Checkpoint { .. }) {
                r.base_segment = i;
            }
            r.state.apply(record, offset == 0).map_err(corrupt)?;
            offset = next;
        }
        r.segment_bytes.push(offset.min(buf.len()) as u64);
    }
    Ok(r)
}

/// The rule that ties the snapshot file to the log: the file's generation equals the last
/// checkpoint's (0 when there is none), or is exactly one more, which means a crash came
/// between writing the file and installing the checkpoint. Then the file's effect is
/// applied to `state` and this returns `true`: the caller must redo the compaction.
pub(crate) fn reconcile(state: &mut LogState, file: Option<&SnapshotFile<'_>>) -> Result<bool, Damage> {
    match file {
        None if state.generation == 0 => Ok(false),
        None => Err(Damage::SnapshotMissing { generation: state.generation }),
        Some(f) if f.generation == state.generation && f.snapshot.meta.index == state.snapshot_index => {
            Ok(false)
        }
        Some(f) if f.generation == state.generation.saturating_add(1) => {
            state.apply_snapshot(f.snapshot.meta.index, f.retain_log_after);
            state.generation = f.generation;
            Ok(true)
        }
        Some(f) => Err(Damage::SnapshotMismatch {
            file_generation: f.generation,
            file_index: f.snapshot.meta.index,
            log_generation: state.generation,
            log_index: state.snapshot_index,
        }),
    }
}
