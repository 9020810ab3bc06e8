//! [`LogStore`]: a node's Raft storage as a log of records over a [`Media`].

use super::media::Media;
use super::record::{self, Record};
use super::replay::{reconcile, replay, Replay};
use super::snapshot::{self, SnapshotFile};
use super::{Place, StorageError};
use crate::raft::{Entry, HardState, LogBounds, LogIndex, Persisted, Snapshot, SnapshotWrite, StorageWrite};
use alloc::vec::Vec;

/// Limits of a [`LogStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// Once the active segment reaches this size, the next append starts a new one.
    pub segment_bytes_max: u64,
    /// The largest record payload written or accepted when reading. Larger entry batches are
    /// split; one entry larger than this is [`StorageError::RecordTooLarge`]. When reading, a
    /// larger length counts as damage, so a corrupt length can never cause a huge allocation.
    /// The snapshot is not subject to this limit.
    pub record_bytes_max: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self { segment_bytes_max: 64 << 20, record_bytes_max: 64 << 20 }
    }
}

/// Sizes for metrics and status pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes in live segments, counting bytes that are appended but not yet synced.
    pub segment_bytes: u64,
    /// The number of live segments.
    pub segment_count: usize,
    /// The index of the last stored entry, or the snapshot's index when no entry follows it.
    pub last_index: LogIndex,
}

/// What [`LogStore::open`] recovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The stored state, for [`Start::Restart`](crate::Start::Restart).
    pub persisted: Persisted,
    /// A torn write cut off the end of the last segment, if there was one: an unsynced
    /// append that a crash interrupted. Hosts usually log it.
    pub torn_tail: Option<TornTail>,
}

/// Where a torn write was cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub segment: u64,
    /// The byte offset in it where the torn write started: its new length.
    pub offset: u64,
}

/// A durable log of one node's [`StorageWrite`]s over a [`Media`]. See the [module
/// docs](super) for the format and the crash-safety argument.
///
/// The host appends a batch of writes, calls [`sync`](Self::sync) once (group commit), and
/// only then confirms their tokens to the core: a write is *acknowledged* when a `sync`
/// after it has returned `Ok`.
///
/// ```
/// use concord_core::raft::{HardState, StorageWrite, WriteToken};
/// use concord_core::storage::{LogOptions, LogStore, MemMedia};
///
/// let (mut store, recovered) = LogStore::open(MemMedia::new(), LogOptions::default())?;
/// assert!(recovered.persisted.entries.is_empty());
/// let hard_state = Some(HardState { term: 1, voted_for: None });
/// store.append(&StorageWrite { token: WriteToken(1), hard_state, snapshot: None, entries: vec![] })?;
/// store.sync()?; // only now may the host confirm token 1 to the core
/// let (_, recovered) = LogStore::open(store.into_media(), LogOptions::default())?;
/// assert_eq!(recovered.persisted.hard_state.term, 1);
/// # Ok::<(), concord_core::storage::StorageError<core::convert::Infallible>>(())
/// ```
#[derive(Debug)]
pub struct LogStore<M> {
    media: M,
    opts: LogOptions,
    active_seq: u64,
    active_bytes: u64,
    /// Older live segments, oldest first; all complete and synced.
    sealed_seqs: Vec<u64>,
    sealed_bytes: u64,
    failed: bool,
    hard_state: HardState,
    generation: u64,
    bounds: LogBounds,
    /// Records being framed; kept to spare an allocation per write.
    buf: Vec<u8>,
}

impl<M: Media> LogStore<M> {
    /// Opens the store on `media`, recovering what is stored.
    ///
    /// Cuts off a torn write at the end of the last segment, finishes a snapshot store that
    /// a crash interrupted, and removes segments a compaction left behind. Any other damage
    /// is [`StorageError::Corrupt`]. Reads every live segment once, one at a time.
    pub fn open(mut media: M, opts: LogOptions) -> Result<(Self, Recovery), StorageError<M::Error>> {
        let mut seqs = Vec::new();
        media.segments(&mut seqs).map_err(StorageError::Media)?;
        let Replay { mut state, base_segment, torn_offset, mut segment_bytes } =
            replay(&mut media, &seqs, opts.record_bytes_max, true)?;
        let file = read_snapshot_file(&mut media)?;
        let redo_compaction = reconcile(&mut state, file.as_ref())
            .map_err(|damage| StorageError::Corrupt { place: Place::Snapshot, offset: 0, damage })?;

        // Older than the last checkpoint: a crash interrupted the end of a compaction.
        for seq in seqs.drain(..base_segment) {
            media.remove(seq).map_err(StorageError::Media)?;
        }
        segment_bytes.drain(..base_segment);
        let (active_seq, mut active_bytes) = match (seqs.pop(), segment_bytes.pop()) {
            (Some(seq), Some(bytes)) => (seq, bytes),
            _ => {
                media.create(1).map_err(StorageError::Media)?;
                (1, 0)
            }
        };
        let torn_tail = torn_offset.map(|offset| TornTail { segment: active_seq, offset });
        if let Some(t) = torn_tail {
            media.truncate(t.segment, t.offset).map_err(StorageError::Media)?;
            active_bytes = t.offset;
        }
        let mut store = Self {
            media,
            opts,
            active_seq,
            active_bytes,
            sealed_seqs: seqs,
            sealed_bytes: segment_bytes.iter().sum(),
            failed: false,
            hard_state: state.hard_state,
            generation: state.generation,
            bounds: state.bounds(),
            buf: Vec::new(),
        };
        if redo_compaction {
            store.compact(&state.entries)?;
        }
        store.media.sync().map_err(StorageError::Media)?;
        let persisted = Persisted {
            hard_state: state.hard_state,
            snapshot: file.map(|f| f.snapshot.into_owned()),
            entries: state.entries,
        };
        Ok((store, Recovery { persisted, torn_tail }))
    }

    /// Appends one write (NOT yet durable). Writes are appended in the order the core polled
    /// them.
    ///
    /// A write that stores a snapshot is the exception: it syncs the log, stores the snapshot
    /// and compacts the log before returning, so it is durable up to its snapshot. After
    /// any error the store refuses further writes ([`StorageError::Failed`]).
    pub fn append(&mut self, w: &StorageWrite) -> Result<(), StorageError<M::Error>> {
        self.unless_failed(|store| store.append_parts(w))
    }

    /// Makes everything appended so far durable. The host calls [`append`](Self::append)
    /// for a batch of writes, then `sync` once (group commit), then confirms their tokens.
    pub fn sync(&mut self) -> Result<(), StorageError<M::Error>> {
        self.unless_failed(|store| store.media.sync().map_err(StorageError::Media))
    }

    /// The stored snapshot, if any, read from `media` without opening a store (for a
    /// snapshot download or a backup).
    ///
    /// After a crash in the middle of storing a snapshot, this can be the new snapshot that
    /// the next [`open`](Self::open) will adopt.
    pub fn read_snapshot(media: &mut M) -> Result<Option<Snapshot>, StorageError<M::Error>> {
        Ok(read_snapshot_file(media)?.map(|f| f.snapshot.into_owned()))
    }

    /// Sizes of the live segments and the last index stored.
    pub fn stats(&self) -> LogStats {
        LogStats {
            segment_bytes: self.sealed_bytes + self.active_bytes,
            segment_count: self.sealed_seqs.len() + 1,
            last_index: self.bounds.last_index,
        }
    }

    /// How many snapshots were ever stored (the generation of the current one).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The medium.
    pub fn media(&self) -> &M {
        &self.media
    }

    /// Closes the store, handing back the medium (unsynced appends included).
    pub fn into_media(self) -> M {
        self.media
    }

    /// Runs `op` unless an earlier one failed: after a failure what the medium holds is
    /// unknown until a new `open` reads it back.
    fn unless_failed(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<(), StorageError<M::Error>>,
    ) -> Result<(), StorageError<M::Error>> {
        if self.failed {
            return Err(StorageError::Failed);
        }
        let result = op(self);
        self.failed = result.is_err();
        result
    }

    fn append_parts(&mut self, w: &StorageWrite) -> Result<(), StorageError<M::Error>> {
        let after = w.check(self.bounds).map_err(StorageError::InvalidWrite)?;
        let max = self.opts.record_bytes_max;
        self.buf.clear();
        if let Some(h) = w.hard_state {
            record::encode(&Record::HardState(h), max, &mut self.buf)?;
            self.hard_state = h;
        }
        if let Some(s) = &w.snapshot {
            self.flush_buf()?;
            self.store_snapshot(s)?;
        }
        if !w.entries.is_empty() {
            record::encode_entries(&w.entries, max, &mut self.buf)?;
        }
        self.flush_buf()?;
        self.bounds = after;
        if self.active_bytes >= self.opts.segment_bytes_max {
            self.roll()?;
        }
        Ok(())
    }

    /// Appends the framed records in `buf` to the active segment.
    fn flush_buf(&mut self) -> Result<(), StorageError<M::Error>> {
        if !self.buf.is_empty() {
            self.media.append(self.active_seq, &self.buf).map_err(StorageError::Media)?;
            self.active_bytes += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), StorageError<M::Error>> {
        // Sealed segments must be complete on the medium: damage in them is then never a
        // torn write.
        self.media.sync().map_err(StorageError::Media)?;
        let seq = self.active_seq.saturating_add(1);
        self.media.create(seq).map_err(StorageError::Media)?;
        self.sealed_seqs.push(self.active_seq);
        self.sealed_bytes += self.active_bytes;
        (self.active_seq, self.active_bytes) = (seq, 0);
        Ok(())
    }

    /// Steps 1 to 4 of "Crash safety" in the module docs.
    fn store_snapshot(&mut self, s: &SnapshotWrite) -> Result<(), StorageError<M::Error>> {
        self.media.sync().map_err(StorageError::Media)?;
        let generation = self.generation.saturating_add(1);
        let mut file = Vec::new();
        snapshot::encode(generation, s, &mut file)?;
        self.media.write_snapshot(&file).map_err(StorageError::Media)?;
        drop(file);
        let index = s.snapshot.meta.index;
        // The log is read back rather than kept in memory: the core already holds it, and
        // snapshots are rare.
        let retained = if s.retain_log_after && self.bounds.last_index > index {
            let mut seqs = self.sealed_seqs.clone();
            seqs.push(self.active_seq);
            let mut state = replay(&mut self.media, &seqs, self.opts.record_bytes_max, false)?.state;
            state.apply_snapshot(index, true);
            state.entries
        } else {
            Vec::new()
        };
        self.generation = generation;
        self.bounds =
            self.bounds.with_snapshot(index, s.retain_log_after).map_err(StorageError::InvalidWrite)?;
        self.compact(&retained)
    }

    /// Replaces every live segment with a new one holding a checkpoint of the current hard
    /// state and snapshot, followed by `entries`.
    fn compact(&mut self, entries: &[Entry]) -> Result<(), StorageError<M::Error>> {
        let max = self.opts.record_bytes_max;
        let seq = self.active_seq.saturating_add(1);
        let checkpoint = Record::Checkpoint {
            generation: self.generation,
            snapshot_index: self.bounds.snapshot_index,
            hard_state: self.hard_state,
        };
        let mut segment = Vec::new();
        record::encode(&checkpoint, max, &mut segment)?;
        record::encode_entries(entries, max, &mut segment)?;
        self.media.install(seq, &segment).map_err(StorageError::Media)?;

        let mut old = core::mem::take(&mut self.sealed_seqs);
        old.push(self.active_seq);
        (self.active_seq, self.active_bytes, self.sealed_bytes) = (seq, segment.len() as u64, 0);
        for seq in old {
            self.media.remove(seq).map_err(StorageError::Media)?;
        }
        self.media.sync().map_err(StorageError::Media)
    }
}

fn read_snapshot_file<M: Media>(
    media: &mut M,
) -> Result<Option<SnapshotFile<'static>>, StorageError<M::Error>> {
    let mut buf = Vec::new();
    if !media.read_snapshot(&mut buf).map_err(StorageError::Media)? {
        return Ok(None);
    }
    snapshot::decode(&buf).map(Some).map_err(|(offset, damage)| StorageError::Corrupt {
        place: Place::Snapshot,
        offset,
        damage,
    })
}
