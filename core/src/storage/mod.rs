//! Durable storage for a node: the storage contract's on-disk form, shared by every host.
//!
//! [`LogStore`] turns each [`StorageWrite`](crate::StorageWrite) into records appended to
//! numbered segments, and recovers a [`Persisted`](crate::Persisted) from them after a
//! restart. The bytes live in a [`Media`] that the host implements over whatever it has:
//! files with `fsync` (`concord-tokio`), IndexedDB in a browser, flash pages on a
//! microcontroller; [`MemMedia`] keeps them in memory. The store decides what to write, when
//! to sync and how to recover; the medium only stores bytes and says when they are durable.
//!
//! # Format
//!
//! A segment is a run of records `[u32 LE payload length][u32 LE crc32(payload)][payload]`,
//! the payload a postcard-encoded [`Record`]:
//! - `HardState` replaces the hard state.
//! - `Entries` deletes every entry at or after its first index, then appends its entries. A
//!   batch larger than [`LogOptions::record_bytes_max`] is split; the later parts start at the
//!   previous part's end, so they truncate nothing.
//! - `Checkpoint { generation, snapshot_index, hard_state }` is only ever the first record of a
//!   segment written by compaction. It resets the state to that hard state, snapshot and an
//!   empty log, so replay forgets every earlier segment. It is also the snapshot marker.
//!
//! The snapshot is stored on its own (see [`snapshot`] for its codec), with a `generation`
//! that counts the snapshots ever stored: the first is 1, and 0 means no snapshot.
//!
//! # Crash safety
//!
//! - **Group commit.** [`LogStore::sync`] makes every append durable ([`Media::sync`]). Only
//!   records after the last sync can be lost or torn, and they all belong to unacknowledged
//!   writes.
//! - **Rollover** syncs the old segment before creating the next one, so every segment except
//!   the last is complete on the medium. That is why a bad record is a torn write only at the
//!   tail of the last segment; anywhere else it is corruption, and recovery refuses to go on
//!   rather than silently lose acknowledged data.
//! - **Replay is in order.** An `Entries` record's truncation is replayed where it was
//!   written, so an overwritten entry can't come back.
//! - **Snapshots** (inside [`LogStore::append`], which then syncs on its own):
//!   1. sync the log, so everything before the snapshot is durable;
//!   2. write the snapshot, atomically and durably ([`Media::write_snapshot`]);
//!   3. compact: install the next segment, holding a `Checkpoint` with the new generation and
//!      then the retained entries, atomically and durably ([`Media::install`]);
//!   4. remove the older segments, and sync.
//!
//!   The rule that ties the snapshot to the log: the snapshot's generation must equal that of
//!   the last `Checkpoint` (0 when there is none), or be exactly one more. One more means a
//!   crash between steps 2 and 3. Step 1 guarantees the log then holds everything before
//!   the snapshot and nothing after it, so recovery applies the snapshot's effect (that is why
//!   the snapshot keeps `retain_log_after`) and redoes the compaction. Anything else is
//!   corruption. A crash during step 2 or 3 leaves nothing live: the old snapshot and log
//!   still agree, or the snapshot is one generation ahead, as above. A crash in step 4 leaves
//!   old segments before the checkpoint. Replay resets at the checkpoint, so they can't bring
//!   dropped entries back, and recovery removes them.
//! - **Partial writes.** The parts of one write are separate records, so after a crash a
//!   prefix of them can survive (say, the hard state but not the entries). That write was
//!   not acknowledged, and the result is a state some shorter write would have produced.
//!
//! A record that passes its checksum but does not decode is always reported as corruption,
//! even at the tail. A complete, checksummed record can't be a torn write, and throwing it
//! away could drop acknowledged data (for instance, data written by a newer version).
//! One known limit: if a crash interrupts writeback of an unsynced batch and the medium
//! persisted a later record but not an earlier one, recovery reports corruption instead of a
//! torn tail. That is the safe way to fail.
//!
//! # Limits
//!
//! A stored record length is checked against [`LogOptions::record_bytes_max`] before
//! anything is read past its header. Recovery holds one segment in memory at a time, and
//! nothing here panics on bad bytes: damage is a [`StorageError::Corrupt`] naming the
//! segment (or the snapshot) and the byte offset where it starts.

mod media;
pub mod record;
mod replay;
pub mod snapshot;
mod store;

pub use media::{Media, MemMedia};
pub use record::{EncodeError, FrameError, Record};
pub use store::{LogOptions, LogStats, LogStore, Recovery, TornTail};

use crate::raft::InvalidWrite;
use core::fmt;

/// Why the store could not open, append or sync.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError<E> {
    /// The medium failed: I/O, a full disk, permissions.
    Media(E),
    /// Stored data is damaged in a way that is not a torn write, so the node must not start.
    Corrupt {
        /// The damaged segment, or the snapshot.
        place: Place,
        /// The byte offset in `place` where the damage starts.
        offset: u64,
        /// What is wrong there.
        damage: Damage,
    },
    /// A single record (one entry, or a checkpoint) exceeds [`LogOptions::record_bytes_max`].
    RecordTooLarge {
        /// The encoded size of the record.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A write breaks the storage contract. This is a bug in the caller.
    InvalidWrite(InvalidWrite),
    /// A value could not be encoded (postcard cannot fail on the types stored here).
    Unencodable,
    /// An earlier append or sync failed, so what the medium holds is unknown. Further writes
    /// are refused; reopen the store, and recovery will read back what is actually stored.
    Failed,
}

impl<E> From<EncodeError> for StorageError<E> {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::TooLarge { bytes, max } => Self::RecordTooLarge { bytes, max },
            EncodeError::Unencodable => Self::Unencodable,
        }
    }
}

impl<E: fmt::Display> fmt::Display for StorageError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Media(e) => write!(f, "storage medium failed: {e}"),
            Self::Corrupt { place, offset, damage } => {
                write!(f, "stored data is corrupt in {place} at byte offset {offset}: {damage}")
            }
            Self::RecordTooLarge { bytes, max } => {
                write!(f, "record of {bytes} bytes exceeds record_bytes_max ({max} bytes)")
            }
            Self::InvalidWrite(e) => write!(f, "storage write breaks the storage contract: {e}"),
            Self::Unencodable => f.write_str("a record cannot be encoded"),
            Self::Failed => f.write_str("an earlier storage write failed, so what is stored is unknown"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for StorageError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Media(e) => Some(e),
            Self::InvalidWrite(e) => Some(e),
            _ => None,
        }
    }
}

/// Where stored data is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// The segment with this number.
    Segment(u64),
    /// The snapshot.
    Snapshot,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Segment(seq) => write!(f, "segment {seq}"),
            Self::Snapshot => f.write_str("the snapshot"),
        }
    }
}

/// What is wrong with damaged stored data.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// A record is badly framed, and is not a torn write.
    Frame {
        /// What is wrong with it.
        problem: FrameError,
        /// Why it cannot be a torn write.
        not_torn: NotTorn,
    },
    /// A checksummed record does not decode.
    Record(DecodeError),
    /// An `Entries` record with no entries, which is never written.
    EmptyEntries,
    /// An `Entries` record that the log before it does not allow.
    Contract(InvalidWrite),
    /// A `Checkpoint` record that does not start its segment.
    CheckpointNotFirst,
    /// The snapshot is shorter than its header.
    SnapshotTooShort {
        /// Its length.
        bytes: usize,
    },
    /// The snapshot does not start with its magic bytes.
    SnapshotMagic,
    /// The snapshot does not match its checksum.
    SnapshotChecksum {
        /// The stored checksum.
        stored: u32,
        /// The payload's checksum.
        computed: u32,
    },
    /// The checksummed snapshot does not decode.
    SnapshotUndecodable(DecodeError),
    /// The log refers to a snapshot, but none is stored.
    SnapshotMissing {
        /// The generation the log refers to.
        generation: u64,
    },
    /// The stored snapshot is not the one the log refers to.
    SnapshotMismatch {
        /// The snapshot's generation.
        file_generation: u64,
        /// The snapshot's index.
        file_index: u64,
        /// The generation the log expects.
        log_generation: u64,
        /// The index the log expects.
        log_index: u64,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame { problem, not_torn } => write!(f, "{problem}; not a torn write, because {not_torn}"),
            Self::Record(e) => write!(f, "a checksummed record {e}; was it written by a newer version?"),
            Self::EmptyEntries => f.write_str("an empty entries batch"),
            Self::Contract(e) => write!(f, "{e}"),
            Self::CheckpointNotFirst => f.write_str("a checkpoint record in the middle of a segment"),
            Self::SnapshotTooShort { bytes } => write!(f, "snapshot file is only {bytes} bytes long"),
            Self::SnapshotMagic => f.write_str("not a snapshot file (bad magic)"),
            Self::SnapshotChecksum { stored, computed } => {
                write!(f, "snapshot checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            Self::SnapshotUndecodable(e) => write!(f, "snapshot {e}"),
            Self::SnapshotMissing { generation } => write!(
                f,
                "the log refers to snapshot generation {generation} but the snapshot file is missing"
            ),
            Self::SnapshotMismatch { file_generation, file_index, log_generation, log_index } => write!(
                f,
                "the snapshot file is generation {file_generation} at index {file_index}; the log \
                 expects generation {log_generation} at index {log_index}"
            ),
        }
    }
}

/// Why a bad record cannot be a torn write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotTorn {
    /// It is not in the last segment, and every earlier segment was synced whole.
    NotLastSegment,
    /// A well-framed record follows it.
    RecordFollows,
    /// The segment had been synced.
    Synced,
}

impl fmt::Display for NotTorn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotLastSegment => "it is not in the last segment",
            Self::RecordFollows => "a valid record follows it",
            Self::Synced => "the segment had been synced",
        })
    }
}

/// Why a checksummed payload does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// postcard could not decode it.
    Malformed(postcard::Error),
    /// It decoded with bytes left over.
    TrailingBytes {
        /// How many.
        bytes: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "does not decode ({e})"),
            Self::TrailingBytes { bytes } => write!(f, "has {bytes} unexpected bytes at its end"),
        }
    }
}

#[cfg(test)]
mod tests;
