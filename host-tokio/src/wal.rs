//! The write-ahead log: where a node's Raft state lives on disk.
//!
//! [`Wal`] stores what `concord-core` asks for in each [`StorageWrite`] and hands it back as
//! [`Persisted`] after a restart. The server appends a batch of writes, calls [`Wal::sync`]
//! once (group commit), and only then confirms their tokens to the core: a write is
//! *acknowledged* when a `sync` after it has returned `Ok`.
//!
//! ```
//! use concord_core::raft::{HardState, StorageWrite, WriteToken};
//! use concord_tokio::wal::{Wal, WalOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let (mut wal, persisted) = Wal::open(dir.path(), WalOptions::default())?;
//! assert!(persisted.entries.is_empty() && persisted.snapshot.is_none());
//! let hard_state = HardState { term: 1, voted_for: None };
//! let (token, entries) = (WriteToken(1), vec![]);
//! wal.append(&StorageWrite { token, hard_state: Some(hard_state), snapshot: None, entries })?;
//! wal.sync()?; // only now may the server confirm token 1 to the core
//! drop(wal);
//! assert_eq!(Wal::open(dir.path(), WalOptions::default())?.1.hard_state, hard_state);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # On disk
//!
//! ```text
//! dir/00000000000000000007.wal   segments, numbered in creation order (20 digits, so names sort)
//! dir/snapshot                   the latest snapshot
//! dir/*.tmp                      files still being written; deleted on open
//! ```
//!
//! A segment is a run of records `[u32 LE payload length][u32 LE crc32(payload)][payload]`,
//! the payload a postcard-encoded `Record`:
//! - `HardState` replaces the hard state.
//! - `Entries` deletes every entry at or after its first index, then appends its entries. A
//!   batch larger than [`WalOptions::record_bytes_max`] is split; the later parts start at the
//!   previous part's end, so they truncate nothing.
//! - `Checkpoint { generation, snapshot_index, hard_state }` is only ever the first record of a
//!   segment written by compaction. It resets the state to that hard state, snapshot and an
//!   empty log, so replay forgets every earlier segment. It is also the snapshot marker.
//!
//! The snapshot file is `[8-byte magic][u32 LE crc32(payload)][payload]`, the payload (the rest
//! of the file) postcard of `(generation, retain_log_after, snapshot)`. `generation` counts the
//! snapshots ever stored: the first is 1, and 0 means no snapshot.
//!
//! # Crash safety
//!
//! - **Group commit.** `sync` flushes the active segment, calls `fdatasync`, and fsyncs the
//!   directory if any file was created, renamed or removed since the last sync. Only records
//!   after the last sync can be lost or torn, and they all belong to unacknowledged writes.
//! - **Rollover** fsyncs the old segment before creating the next one, so every segment except
//!   the last is complete on disk. That is why a bad record is a torn write only at the tail of
//!   the last segment; anywhere else it is corruption, and the node refuses to start rather
//!   than silently lose acknowledged data.
//! - **Replay is in order.** An `Entries` record's truncation is replayed where it was
//!   written, so an overwritten entry can't come back.
//! - **Snapshots** (inside [`Wal::append`], which then does its own fsyncs):
//!   1. sync the log, so everything before the snapshot is durable;
//!   2. write `snapshot.tmp`, fsync it, rename it to `snapshot`, fsync the directory;
//!   3. compact: write `<next>.wal.tmp` holding a `Checkpoint` with the new generation and then
//!      the retained entries, fsync it, rename it to `<next>.wal`, fsync the directory;
//!   4. delete the older segments and fsync the directory.
//!
//!   The rule that ties the file to the log: the snapshot file's generation must equal that of
//!   the last `Checkpoint` (0 when there is none), or be exactly one more. One more means a
//!   crash between steps 2 and 3. Step 1 guarantees the log then holds everything before
//!   the snapshot and nothing after it, so open applies the file's effect (that is why the
//!   file keeps `retain_log_after`) and redoes the compaction. Anything else is corruption.
//!   Crashes during step 2 leave `snapshot.tmp`, which is ignored; the old snapshot and log
//!   still agree and the write was never acknowledged. A crash during step 3 leaves
//!   `<next>.wal.tmp`, which is ignored: the file is one generation ahead, as above. A crash in
//!   step 4 leaves old segments before the checkpoint. Replay resets at the checkpoint, so they
//!   can't bring dropped entries back, and open deletes them.
//! - **Partial writes.** The parts of one write are separate records, so after a crash a
//!   prefix of them can survive (say, the hard state but not the entries). That write was
//!   not acknowledged, and the result is a state some shorter write would have produced.
//!
//! A record that passes its checksum but does not decode is always reported as corruption,
//! even at the tail. A complete, checksummed record can't be a torn write, and throwing it
//! away could drop acknowledged data (for instance, data written by a newer version).
//! One known limit: if a crash interrupts writeback of an unsynced batch and the disk
//! persisted a later record but not an earlier one, open reports corruption instead of a
//! torn tail. That is the safe way to fail.

use concord_core::raft::{Entry, HardState, LogIndex, Persisted, Snapshot, SnapshotWrite, StorageWrite};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::mem;
use std::path::{Path, PathBuf};

const FRAME_HEADER_BYTES: usize = 8;
const SNAPSHOT_MAGIC: &[u8; 8] = b"CNCDSNP1";
const SNAPSHOT_HEADER_BYTES: usize = 12;
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";

/// Limits of the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Once the active segment reaches this size, the next append starts a new one.
    pub segment_bytes_max: u64,
    /// The largest record payload written or accepted when reading. Larger entry batches are
    /// split; one entry larger than this is [`WalError::RecordTooLarge`]. When reading, a
    /// larger length counts as damage, so a corrupt length can never cause a huge allocation.
    /// The snapshot file is not subject to this limit.
    pub record_bytes_max: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self { segment_bytes_max: 64 << 20, record_bytes_max: 64 << 20 }
    }
}

/// Sizes for metrics and `concord status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Bytes in live segment files, counting bytes that are appended but not yet synced.
    pub segment_bytes: u64,
    /// The number of live segment files.
    pub segment_count: usize,
    /// The index of the last stored entry, or the snapshot's index when no entry follows it.
    pub last_index: LogIndex,
}

/// Why the WAL could not open, append or sync.
#[derive(Debug)]
#[non_exhaustive]
pub enum WalError {
    /// The operating system refused an operation: disk full, permissions, a failing device.
    Io {
        /// What the WAL was doing.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Stored data is damaged in a way that is not a torn write, so the node must not start.
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// The byte offset in `file` where the damage starts.
        offset: u64,
        /// What is wrong there.
        detail: String,
    },
    /// A single record (one entry, or a checkpoint) exceeds [`WalOptions::record_bytes_max`].
    RecordTooLarge {
        /// The encoded size of the record.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A write breaks the storage contract (for example, entries that are not contiguous).
    /// This is a bug in the caller.
    InvalidWrite {
        /// Which rule it breaks.
        detail: String,
    },
    /// An earlier append or sync failed, so what is on disk is unknown. Further writes are
    /// refused; restart the node, and recovery will read back what is actually stored.
    Failed,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => write!(f, "WAL I/O error: {op} {}: {source}", path.display()),
            Self::Corrupt { file, offset, detail } => write!(
                f,
                "WAL data is corrupt in {} at byte offset {offset}: {detail}. The node refuses to \
                 start rather than run with damaged state. Restore it from a peer: remove it from \
                 the cluster, wipe its data directory, and add it back; it will catch up from the leader",
                file.display()
            ),
            Self::RecordTooLarge { bytes, max } => write!(
                f,
                "WAL record of {bytes} bytes exceeds record_bytes_max ({max} bytes); raise the \
                 limit or lower the core's entry size limit"
            ),
            Self::InvalidWrite { detail } => write!(f, "storage write breaks the storage contract: {detail}"),
            Self::Failed => write!(
                f,
                "an earlier WAL write failed, so what is on disk is unknown; restart the node to recover"
            ),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Attaches the operation and path to an I/O error.
trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, WalError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, WalError> {
        self.map_err(|source| WalError::Io { op, path: path.to_path_buf(), source })
    }
}

/// One record in a segment (see the module docs). `Cow` lets writes borrow the entries.
#[derive(Serialize, Deserialize)]
enum Record<'a> {
    HardState(HardState),
    Entries(Cow<'a, [Entry]>),
    Checkpoint { generation: u64, snapshot_index: LogIndex, hard_state: HardState },
}

/// The payload of the snapshot file.
#[derive(Serialize, Deserialize)]
struct SnapshotFile<'a> {
    generation: u64,
    retain_log_after: bool,
    snapshot: Cow<'a, Snapshot>,
}

/// A log's state as replay rebuilds it. `entries` are contiguous from `snapshot_index + 1`.
#[derive(Default)]
struct LogState {
    hard_state: HardState,
    generation: u64,
    snapshot_index: LogIndex,
    entries: Vec<Entry>,
}

impl LogState {
    fn last_index(&self) -> LogIndex {
        self.entries.last().map_or(self.snapshot_index, |e| e.index)
    }

    fn apply(&mut self, record: Record<'_>, at_segment_start: bool) -> Result<(), String> {
        match record {
            Record::HardState(h) => self.hard_state = h,
            Record::Entries(entries) => {
                check_entries(&entries, self.snapshot_index, self.last_index())?;
                let first_index = entries.first().map_or(0, |e| e.index);
                let keep = first_index.saturating_sub(self.snapshot_index + 1);
                self.entries.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
                self.entries.extend(entries.into_owned());
            }
            Record::Checkpoint { .. } if !at_segment_start => {
                return Err("a checkpoint record in the middle of a segment".into());
            }
            Record::Checkpoint { generation, snapshot_index, hard_state } => {
                *self = Self { hard_state, generation, snapshot_index, entries: Vec::new() };
            }
        }
        Ok(())
    }

    fn apply_snapshot(&mut self, index: LogIndex, retain_log_after: bool) {
        if retain_log_after {
            self.entries.retain(|e| e.index > index);
        } else {
            self.entries.clear();
        }
        self.snapshot_index = index;
    }
}

/// Checks that `entries` may be appended to a log holding `(snapshot_index, last_index]`.
fn check_entries(entries: &[Entry], snapshot_index: LogIndex, last_index: LogIndex) -> Result<(), String> {
    let Some(first) = entries.first() else {
        return Err("an empty entries batch".into());
    };
    if first.index <= snapshot_index || first.index > last_index.saturating_add(1) {
        return Err(format!(
            "entries start at index {} but the log holds ({snapshot_index}, {last_index}]",
            first.index
        ));
    }
    if entries.windows(2).any(|w| w[0].index.checked_add(1) != Some(w[1].index)) {
        return Err(format!("entries from index {} are not contiguous", first.index));
    }
    Ok(())
}

/// The segment being appended to.
#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
}

impl Segment {
    fn new(seq: u64, path: PathBuf, file: File, bytes: u64) -> Self {
        Self { seq, path, out: BufWriter::new(file), bytes }
    }

    /// Buffers one record. Checks the size before writing anything.
    fn write(&mut self, record: &Record<'_>, record_bytes_max: usize) -> Result<(), WalError> {
        let payload = postcard::to_allocvec(record)
            .map_err(|e| WalError::InvalidWrite { detail: format!("cannot encode a record: {e}") })?;
        let too_large = WalError::RecordTooLarge { bytes: payload.len(), max: record_bytes_max };
        if payload.len() > record_bytes_max {
            return Err(too_large);
        }
        let payload_len = u32::try_from(payload.len()).map_err(|_| too_large)?;
        let mut header = [0u8; FRAME_HEADER_BYTES];
        header[..4].copy_from_slice(&payload_len.to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        self.out.write_all(&header).ctx("write", &self.path)?;
        self.out.write_all(&payload).ctx("write", &self.path)?;
        self.bytes += (FRAME_HEADER_BYTES + payload.len()) as u64;
        Ok(())
    }

    /// Buffers `entries`, split in halves until each part fits in one record.
    fn write_entries(&mut self, entries: &[Entry], record_bytes_max: usize) -> Result<(), WalError> {
        match self.write(&Record::Entries(Cow::Borrowed(entries)), record_bytes_max) {
            Err(WalError::RecordTooLarge { .. }) if entries.len() > 1 => {
                let (head, tail) = entries.split_at(entries.len() / 2);
                self.write_entries(head, record_bytes_max)?;
                self.write_entries(tail, record_bytes_max)
            }
            result => result,
        }
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.out.flush().ctx("write", &self.path)?;
        self.out.get_ref().sync_data().ctx("fsync", &self.path)
    }
}

/// A durable log of one node's Raft storage writes. See the module docs for the format and
/// the crash-safety argument.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    active: Segment,
    /// Older live segments, oldest first; all complete and synced.
    sealed_seqs: Vec<u64>,
    sealed_bytes: u64,
    /// A file was created, renamed or removed since the directory was last synced.
    dir_dirty: bool,
    failed: bool,
    hard_state: HardState,
    generation: u64,
    snapshot_index: LogIndex,
    last_index: LogIndex,
}

impl Wal {
    /// Opens the WAL in `dir` (creating it), recovering what is stored.
    ///
    /// Cuts off a torn write at the end of the last segment (with a warning), finishes a
    /// snapshot store that was interrupted by a crash, and deletes leftover files. Any other
    /// damage is [`WalError::Corrupt`].
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Self, Persisted), WalError> {
        fs::create_dir_all(dir).ctx("create directory", dir)?;
        let mut seqs = list_segments(dir)?;
        let Replay { mut state, base_segment, torn_offset } =
            replay(dir, &seqs, opts.record_bytes_max, true)?;
        let snapshot = read_snapshot_file(dir)?;
        let redo_compaction = reconcile_snapshot(dir, &mut state, snapshot.as_ref())?;

        let mut dir_dirty = false;
        // Older than the last checkpoint: a crash interrupted step 4 of a compaction.
        for seq in seqs.drain(..base_segment) {
            let path = segment_path(dir, seq);
            fs::remove_file(&path).ctx("remove", &path)?;
            dir_dirty = true;
        }
        let active_seq = seqs.pop().unwrap_or_else(|| {
            dir_dirty = true;
            1
        });
        let path = segment_path(dir, active_seq);
        let file = OpenOptions::new().append(true).create(true).open(&path).ctx("open", &path)?;
        if let Some(offset) = torn_offset {
            tracing::warn!(
                file = %path.display(),
                offset,
                "WAL: cutting off a torn write at the end of the last segment (a crash mid-write)"
            );
            file.set_len(offset).ctx("truncate", &path)?;
            file.sync_all().ctx("fsync", &path)?;
        }
        let bytes = file.metadata().ctx("stat", &path)?.len();
        let mut sealed_bytes = 0;
        for seq in &seqs {
            let path = segment_path(dir, *seq);
            sealed_bytes += fs::metadata(&path).ctx("stat", &path)?.len();
        }
        let mut wal = Self {
            dir: dir.to_path_buf(),
            opts,
            active: Segment::new(active_seq, path, file, bytes),
            sealed_seqs: seqs,
            sealed_bytes,
            dir_dirty,
            failed: false,
            hard_state: state.hard_state,
            generation: state.generation,
            snapshot_index: state.snapshot_index,
            last_index: state.last_index(),
        };
        if redo_compaction {
            wal.compact(&state.entries)?;
        }
        wal.sync_now()?;
        let persisted = Persisted {
            hard_state: state.hard_state,
            snapshot: snapshot.map(|f| f.snapshot.into_owned()),
            entries: state.entries,
        };
        Ok((wal, persisted))
    }

    /// Appends one write (buffered or written, NOT yet durable). Writes are appended in order.
    ///
    /// A write that stores a snapshot is the exception: it syncs the log, stores the snapshot
    /// file and compacts the log before returning, so it does several fsyncs. After any error
    /// the `Wal` refuses further writes ([`WalError::Failed`]).
    pub fn append(&mut self, w: &StorageWrite) -> Result<(), WalError> {
        self.unless_failed(|wal| wal.append_parts(w))
    }

    /// Makes everything appended so far durable: fsyncs the active segment, and the directory
    /// when files were created, renamed or removed. The server calls [`append`](Self::append)
    /// for a batch of writes, then `sync` once (group commit), then confirms all their tokens.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.unless_failed(Self::sync_now)
    }

    /// The stored snapshot, if any (read from disk), for `concord snapshot save`.
    ///
    /// This reads only the snapshot file. After a crash in the middle of storing a snapshot,
    /// this can be the new snapshot that the next [`open`](Self::open) will adopt.
    pub fn read_snapshot(dir: &Path) -> Result<Option<Snapshot>, WalError> {
        Ok(read_snapshot_file(dir)?.map(|f| f.snapshot.into_owned()))
    }

    /// Bytes in live segment files, number of segments, last index stored (for metrics/status).
    pub fn stats(&self) -> WalStats {
        WalStats {
            segment_bytes: self.sealed_bytes + self.active.bytes,
            segment_count: self.sealed_seqs.len() + 1,
            last_index: self.last_index,
        }
    }

    /// Runs `op` unless an earlier one failed; a failure leaves the disk in an unknown state.
    fn unless_failed(&mut self, op: impl FnOnce(&mut Self) -> Result<(), WalError>) -> Result<(), WalError> {
        if self.failed {
            return Err(WalError::Failed);
        }
        let result = op(self);
        self.failed = result.is_err();
        result
    }

    fn append_parts(&mut self, w: &StorageWrite) -> Result<(), WalError> {
        let invalid = |detail| WalError::InvalidWrite { detail };
        let (snapshot_index, last_index) = match &w.snapshot {
            Some(s) if s.snapshot.meta.index < self.snapshot_index => {
                return Err(invalid(format!(
                    "snapshot at index {} is older than the stored one at {}",
                    s.snapshot.meta.index, self.snapshot_index
                )));
            }
            Some(s) if s.retain_log_after => {
                (s.snapshot.meta.index, self.last_index.max(s.snapshot.meta.index))
            }
            Some(s) => (s.snapshot.meta.index, s.snapshot.meta.index),
            None => (self.snapshot_index, self.last_index),
        };
        if !w.entries.is_empty() {
            check_entries(&w.entries, snapshot_index, last_index).map_err(invalid)?;
        }

        let max = self.opts.record_bytes_max;
        if let Some(h) = w.hard_state {
            self.active.write(&Record::HardState(h), max)?;
            self.hard_state = h;
        }
        if let Some(s) = &w.snapshot {
            self.store_snapshot(s)?;
            self.last_index = last_index;
        }
        if let Some(last) = w.entries.last() {
            self.active.write_entries(&w.entries, max)?;
            self.last_index = last.index;
        }
        if self.active.bytes >= self.opts.segment_bytes_max {
            self.roll()?;
        }
        Ok(())
    }

    fn sync_now(&mut self) -> Result<(), WalError> {
        self.active.sync()?;
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), WalError> {
        // Sealed segments must be complete on disk: damage in them is then never a torn write.
        self.active.sync()?;
        let seq = self.active.seq.saturating_add(1);
        let path = segment_path(&self.dir, seq);
        let file = OpenOptions::new().append(true).create_new(true).open(&path).ctx("create", &path)?;
        let old = mem::replace(&mut self.active, Segment::new(seq, path, file, 0));
        self.sealed_seqs.push(old.seq);
        self.sealed_bytes += old.bytes;
        self.dir_dirty = true;
        Ok(())
    }

    /// Steps 1 to 4 of "Crash safety" in the module docs.
    fn store_snapshot(&mut self, s: &SnapshotWrite) -> Result<(), WalError> {
        self.sync_now()?;
        let generation = self.generation.saturating_add(1);
        write_snapshot_file(&self.dir, generation, s)?;
        let index = s.snapshot.meta.index;
        // The log is read back rather than kept in memory: the core already holds it, and
        // snapshots are rare.
        let retained = if s.retain_log_after && self.last_index > index {
            let mut seqs = self.sealed_seqs.clone();
            seqs.push(self.active.seq);
            let mut state = replay(&self.dir, &seqs, self.opts.record_bytes_max, false)?.state;
            state.apply_snapshot(index, true);
            state.entries
        } else {
            Vec::new()
        };
        self.generation = generation;
        self.snapshot_index = index;
        self.compact(&retained)
    }

    /// Replaces every live segment with a new one holding a checkpoint of the current hard
    /// state and snapshot, followed by `entries`.
    fn compact(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        let max = self.opts.record_bytes_max;
        let seq = self.active.seq.saturating_add(1);
        let tmp = self.dir.join(format!("{seq:020}.wal.tmp"));
        let file =
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).ctx("create", &tmp)?;
        let mut segment = Segment::new(seq, tmp.clone(), file, 0);
        let checkpoint = Record::Checkpoint {
            generation: self.generation,
            snapshot_index: self.snapshot_index,
            hard_state: self.hard_state,
        };
        segment.write(&checkpoint, max)?;
        if !entries.is_empty() {
            segment.write_entries(entries, max)?;
        }
        segment.sync()?;
        segment.path = segment_path(&self.dir, seq);
        fs::rename(&tmp, &segment.path).ctx("rename", &tmp)?;
        sync_dir(&self.dir)?;

        let old = mem::replace(&mut self.active, segment);
        let mut old_seqs = mem::take(&mut self.sealed_seqs);
        old_seqs.push(old.seq);
        drop(old);
        for seq in old_seqs {
            let path = segment_path(&self.dir, seq);
            fs::remove_file(&path).ctx("remove", &path)?;
        }
        self.sealed_bytes = 0;
        sync_dir(&self.dir)?;
        self.dir_dirty = false;
        Ok(())
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync directory", dir)
}

/// The segment numbers in `dir`, in order. Deletes `*.tmp` leftovers of interrupted writes.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut seqs = Vec::new();
    for dir_entry in fs::read_dir(dir).ctx("list", dir)? {
        let path = dir_entry.ctx("list", dir)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.ends_with(".tmp") {
            fs::remove_file(&path).ctx("remove", &path)?;
        } else if let Some(seq) =
            name.strip_suffix(".wal").filter(|s| s.len() == 20).and_then(|s| s.parse().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// What replaying the segments found.
#[derive(Default)]
struct Replay {
    state: LogState,
    /// Position in the segment list of the last segment that starts with a checkpoint.
    base_segment: usize,
    /// Where a torn write starts in the last segment.
    torn_offset: Option<u64>,
}

/// Replays `seqs` in order. With `allow_torn`, a bad record at the tail of the last segment
/// ends the replay and is reported in `torn_offset`; every other bad record is corruption.
fn replay(dir: &Path, seqs: &[u64], record_bytes_max: usize, allow_torn: bool) -> Result<Replay, WalError> {
    let mut r = Replay::default();
    for (i, seq) in seqs.iter().enumerate() {
        let path = segment_path(dir, *seq);
        // A whole segment at a time: its size comes from the filesystem, not from a stored length.
        let buf = fs::read(&path).ctx("read", &path)?;
        let is_last = i + 1 == seqs.len();
        let mut offset = 0;
        while offset < buf.len() {
            let corrupt = |detail| WalError::Corrupt { file: path.clone(), offset: offset as u64, detail };
            let (payload, next) = match frame_at(&buf, offset, record_bytes_max) {
                Ok(frame) => frame,
                Err(_) if is_last && allow_torn && !frame_follows(&buf, offset + 1, record_bytes_max) => {
                    r.torn_offset = Some(offset as u64);
                    break;
                }
                Err(detail) => {
                    let why = match (is_last, allow_torn) {
                        (false, _) => "it is not in the last segment",
                        (true, true) => "a valid record follows it",
                        (true, false) => "the segment had been synced",
                    };
                    return Err(corrupt(format!("{detail}; not a torn write, because {why}")));
                }
            };
            let record = decode_record(payload).map_err(corrupt)?;
            if matches!(record, Record::Checkpoint { .. }) {
                r.base_segment = i;
            }
            r.state.apply(record, offset == 0).map_err(corrupt)?;
            offset = next;
        }
    }
    Ok(r)
}

/// Callers pass slices of a header whose length they have checked.
fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The payload of the record framed at `offset` and the offset after it, or what is wrong.
/// Checks the length against `record_bytes_max` and the bytes present, and the checksum.
fn frame_at(buf: &[u8], offset: usize, record_bytes_max: usize) -> Result<(&[u8], usize), String> {
    let rest = buf.get(offset..).unwrap_or_default();
    let Some(header) = rest.get(..FRAME_HEADER_BYTES) else {
        return Err(format!("short record header ({} of {FRAME_HEADER_BYTES} bytes)", rest.len()));
    };
    let (payload_len, crc) = (le_u32(&header[..4]) as usize, le_u32(&header[4..]));
    if payload_len == 0 {
        return Err("record length is zero".into());
    }
    if payload_len > record_bytes_max {
        return Err(format!("record length {payload_len} exceeds record_bytes_max ({record_bytes_max})"));
    }
    let end = FRAME_HEADER_BYTES + payload_len;
    let Some(payload) = rest.get(FRAME_HEADER_BYTES..end) else {
        let present = rest.len() - FRAME_HEADER_BYTES;
        return Err(format!("short record ({present} of {payload_len} payload bytes)"));
    };
    let actual = crc32fast::hash(payload);
    if actual != crc {
        return Err(format!("checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"));
    }
    Ok((payload, offset + end))
}

/// Whether a well-framed record (valid length and checksum) starts at or after `from`.
fn frame_follows(buf: &[u8], from: usize, record_bytes_max: usize) -> bool {
    (from..buf.len()).any(|at| frame_at(buf, at, record_bytes_max).is_ok())
}

fn decode_record(payload: &[u8]) -> Result<Record<'static>, String> {
    match postcard::take_from_bytes::<Record<'static>>(payload) {
        Ok((record, [])) => Ok(record),
        Ok((_, rest)) => Err(format!("{} unexpected bytes after a checksummed record", rest.len())),
        Err(e) => {
            Err(format!("a checksummed record does not decode ({e}); was it written by a newer version?"))
        }
    }
}

/// Applies the "Crash safety" rule that ties the snapshot file to the log. Returns true when
/// the file is one generation ahead: its effect is then applied to `state`, and the caller
/// must redo the compaction.
fn reconcile_snapshot(
    dir: &Path,
    state: &mut LogState,
    file: Option<&SnapshotFile<'_>>,
) -> Result<bool, WalError> {
    let corrupt = |detail| WalError::Corrupt { file: dir.join(SNAPSHOT_FILE), offset: 0, detail };
    match file {
        None if state.generation == 0 => Ok(false),
        None => Err(corrupt(format!(
            "the log refers to snapshot generation {} but the snapshot file is missing",
            state.generation
        ))),
        Some(f) if f.generation == state.generation && f.snapshot.meta.index == state.snapshot_index => {
            Ok(false)
        }
        Some(f) if f.generation == state.generation.saturating_add(1) => {
            state.apply_snapshot(f.snapshot.meta.index, f.retain_log_after);
            state.generation = f.generation;
            Ok(true)
        }
        Some(f) => Err(corrupt(format!(
            "the snapshot file is generation {} at index {}; the log expects generation {} at index {}",
            f.generation, f.snapshot.meta.index, state.generation, state.snapshot_index
        ))),
    }
}

/// Step 2 of "Crash safety" in the module docs.
fn write_snapshot_file(dir: &Path, generation: u64, s: &SnapshotWrite) -> Result<(), WalError> {
    let contents = SnapshotFile {
        generation,
        retain_log_after: s.retain_log_after,
        snapshot: Cow::Borrowed(&s.snapshot),
    };
    let payload = postcard::to_allocvec(&contents)
        .map_err(|e| WalError::InvalidWrite { detail: format!("cannot encode the snapshot: {e}") })?;
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let mut file = File::create(&tmp).ctx("create", &tmp)?;
    let mut header = SNAPSHOT_MAGIC.to_vec();
    header.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    file.write_all(&header).ctx("write", &tmp)?;
    file.write_all(&payload).ctx("write", &tmp)?;
    file.sync_all().ctx("fsync", &tmp)?;
    let path = dir.join(SNAPSHOT_FILE);
    fs::rename(&tmp, &path).ctx("rename", &tmp)?;
    sync_dir(dir)
}

fn read_snapshot_file(dir: &Path) -> Result<Option<SnapshotFile<'static>>, WalError> {
    let path = dir.join(SNAPSHOT_FILE);
    let buf = match fs::read(&path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(WalError::Io { op: "read", path, source }),
    };
    let corrupt = |offset, detail: String| WalError::Corrupt { file: path.clone(), offset, detail };
    let Some((header, payload)) = buf.split_at_checked(SNAPSHOT_HEADER_BYTES) else {
        return Err(corrupt(0, format!("snapshot file is only {} bytes long", buf.len())));
    };
    if &header[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(0, "not a snapshot file (bad magic)".into()));
    }
    let (stored, actual) = (le_u32(&header[8..]), crc32fast::hash(payload));
    if stored != actual {
        let detail = format!("snapshot checksum mismatch (stored {stored:#010x}, computed {actual:#010x})");
        return Err(corrupt(SNAPSHOT_HEADER_BYTES as u64, detail));
    }
    postcard::from_bytes(payload)
        .map(Some)
        .map_err(|e| corrupt(SNAPSHOT_HEADER_BYTES as u64, format!("snapshot does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::raft::{Membership, NodeId, Payload, SnapshotMeta, WriteToken};
    use concord_core::Instant;
    use proptest::prelude::*;
    use std::ops::RangeInclusive;
    use tempfile::TempDir;

    fn ents(indexes: RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        let payload = |i: u64| Payload::Command(vec![i as u8; (i % 7) as usize]);
        indexes
            .map(|i| Entry { term, index: i, time: Instant::from_micros(i), payload: payload(i) })
            .collect()
    }

    fn snap(index: u64, retain_log_after: bool) -> Option<SnapshotWrite> {
        let membership = Membership::with_voters([NodeId(1)]);
        let meta = SnapshotMeta { index, term: 1, time: Instant::from_micros(index), membership };
        Some(SnapshotWrite { snapshot: Snapshot { meta, data: vec![index as u8; 16] }, retain_log_after })
    }

    fn hs(term: u64) -> Option<HardState> {
        Some(HardState { term, voted_for: Some(NodeId(term % 3)) })
    }

    fn write(
        hard_state: Option<HardState>,
        snapshot: Option<SnapshotWrite>,
        entries: Vec<Entry>,
    ) -> StorageWrite {
        StorageWrite { token: WriteToken(0), hard_state, snapshot, entries }
    }

    /// The storage contract applied in memory, as `concord-tests`' `Disk::apply` does.
    fn model_apply(m: &mut Persisted, w: &StorageWrite) {
        if let Some(h) = w.hard_state {
            m.hard_state = h;
        }
        if let Some(s) = &w.snapshot {
            m.entries.retain(|e| s.retain_log_after && e.index > s.snapshot.meta.index);
            m.snapshot = Some(s.snapshot.clone());
        }
        if let Some(first) = w.entries.first() {
            m.entries.retain(|e| e.index < first.index);
            m.entries.extend(w.entries.iter().cloned());
        }
    }

    fn model_snapshot_index(m: &Persisted) -> u64 {
        m.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    fn model_last(m: &Persisted) -> u64 {
        m.entries.last().map_or(model_snapshot_index(m), |e| e.index)
    }

    /// A WAL beside the in-memory model it must match.
    struct Fixture {
        dir: TempDir,
        opts: WalOptions,
        wal: Option<Wal>,
        model: Persisted,
    }

    impl Fixture {
        fn new(segment_bytes_max: u64) -> Self {
            let opts = WalOptions { segment_bytes_max, ..WalOptions::default() };
            let dir = tempfile::tempdir().unwrap();
            let (wal, persisted) = Wal::open(dir.path(), opts).unwrap();
            assert_eq!(persisted, Persisted::default());
            Self { dir, opts, wal: Some(wal), model: Persisted::default() }
        }

        fn wal(&mut self) -> &mut Wal {
            self.wal.as_mut().unwrap()
        }

        fn put(&mut self, w: StorageWrite) {
            self.wal().append(&w).unwrap();
            model_apply(&mut self.model, &w);
            assert_eq!(self.wal().stats().last_index, model_last(&self.model));
        }

        /// Appends one write per entry, each synced.
        fn put_each(&mut self, indexes: RangeInclusive<u64>) {
            for i in indexes {
                self.put(write(None, None, ents(i..=i, 1)));
                self.wal().sync().unwrap();
            }
        }

        fn open(&self) -> Result<(Wal, Persisted), WalError> {
            Wal::open(self.dir.path(), self.opts)
        }

        fn close(&mut self) {
            if let Some(mut wal) = self.wal.take() {
                wal.sync().unwrap();
            }
        }

        /// Syncs, closes, reopens and checks what comes back against the model.
        fn reopen(&mut self) {
            self.close();
            let (wal, persisted) = self.open().unwrap();
            assert_eq!(persisted, self.model);
            assert_eq!(wal.stats().last_index, model_last(&self.model));
            self.wal = Some(wal);
        }

        fn segments(&self) -> Vec<PathBuf> {
            let seqs = list_segments(self.dir.path()).unwrap();
            seqs.into_iter().map(|s| segment_path(self.dir.path(), s)).collect()
        }
    }

    fn record_offsets(path: &Path) -> Vec<usize> {
        let buf = fs::read(path).unwrap();
        let mut offsets = vec![0];
        while let Ok((_, next)) = frame_at(&buf, offsets[offsets.len() - 1], usize::MAX) {
            offsets.push(next);
        }
        offsets.pop(); // where framing stopped: the end, or a damaged record
        offsets
    }

    /// Removes the last `bytes` bytes of the file.
    fn cut(path: &Path, bytes: u64) {
        let file = File::options().write(true).open(path).unwrap();
        file.set_len(file.metadata().unwrap().len() - bytes).unwrap();
    }

    fn patch(path: &Path, offset: usize, bytes: &[u8]) {
        let mut buf = fs::read(path).unwrap();
        buf[offset..offset + bytes.len()].copy_from_slice(bytes);
        fs::write(path, buf).unwrap();
    }

    fn expect_corrupt(result: Result<(Wal, Persisted), WalError>, file: &Path, at: usize) {
        let Err(e) = result else { panic!("expected Corrupt, but the WAL opened") };
        let text = e.to_string();
        let WalError::Corrupt { file: f, offset, .. } = e else { panic!("expected Corrupt, got {text}") };
        assert_eq!((f.as_path(), offset), (file, at as u64), "{text}");
        assert!(text.contains(&file.display().to_string()) && text.contains(&format!("offset {at}")));
        assert!(text.contains("refuses to start"), "{text}");
    }

    #[test]
    fn round_trip_matches_model() {
        let mut f = Fixture::new(64 << 20);
        f.put(write(hs(1), None, ents(1..=5, 1)));
        f.put(write(None, None, ents(3..=4, 2))); // overwrites 3..=5
        f.put(write(hs(2), None, vec![]));
        f.reopen();
        f.put(write(None, snap(3, true), ents(5..=6, 2)));
        f.reopen();
        f.put(write(hs(3), snap(10, false), ents(11..=12, 3)));
        f.reopen();
        assert_eq!(Wal::read_snapshot(f.dir.path()).unwrap(), f.model.snapshot);
        f.put(write(None, snap(11, true), vec![]));
        f.put(write(None, None, ents(13..=13, 3)));
        f.reopen();
        assert_eq!(f.model.entries, ents(12..=13, 3));
    }

    #[test]
    fn writes_breaking_the_contract_are_refused() {
        let mut f = Fixture::new(64 << 20);
        f.put(write(None, snap(5, false), vec![]));
        f.close();
        for bad in [ents(5..=6, 1), ents(7..=8, 1), vec![ents(6..=6, 1)[0].clone(); 2]] {
            let mut wal = f.open().unwrap().0;
            assert!(matches!(wal.append(&write(None, None, bad)), Err(WalError::InvalidWrite { .. })));
            assert!(matches!(wal.sync(), Err(WalError::Failed)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Each op: a hard state term, a snapshot (how far ahead, retain), entries (how far
        /// back from the end to start overwriting, how many), and whether to reopen after.
        #[test]
        fn random_writes_survive_reopen(ops in prop::collection::vec((
            prop::option::of(1..5u64),
            prop::option::weighted(0.15, (0..8u64, any::<bool>())),
            prop::option::weighted(0.8, (0..4u64, 1..5u64)),
            prop::bool::weighted(0.2),
        ), 1..40)) {
            let mut f = Fixture::new(300);
            for (term, snapshot, entries, reopen) in ops {
                // A snapshot index in (stored snapshot, last + 2].
                let base = model_snapshot_index(&f.model);
                let span = model_last(&f.model) - base + 2;
                let snapshot =
                    snapshot.and_then(|(ahead, retain)| snap(base + 1 + ahead % span, retain));
                // Entries start in (snapshot, last + 1], as of after this write's snapshot.
                let mut probe = f.model.clone();
                model_apply(&mut probe, &write(None, snapshot.clone(), vec![]));
                let floor = model_snapshot_index(&probe) + 1;
                let entries = entries.map_or(vec![], |(back, n)| {
                    let first = (model_last(&probe) + 1).saturating_sub(back).max(floor);
                    ents(first..=first + n - 1, term.unwrap_or(1))
                });
                f.put(write(term.and_then(hs), snapshot, entries));
                f.wal().sync().unwrap();
                if reopen {
                    f.reopen();
                }
            }
            f.reopen();
        }
    }

    #[test]
    fn segments_roll_over_and_compaction_removes_them() {
        let mut f = Fixture::new(200);
        f.put_each(1..=40);
        let stats = f.wal().stats();
        assert!(stats.segment_count > 3 && stats.segment_count == f.segments().len(), "{stats:?}");
        let on_disk: u64 = f.segments().iter().map(|p| fs::metadata(p).unwrap().len()).sum();
        assert_eq!(stats.segment_bytes, on_disk);
        f.reopen();
        f.put(write(None, snap(30, true), vec![]));
        assert_eq!((f.wal().stats().segment_count, f.segments().len()), (1, 1));
        f.reopen();
        assert_eq!(f.model.entries, ents(31..=40, 1));
        // A batch larger than one record is split into several.
        f.opts.record_bytes_max = 100;
        f.reopen();
        f.put(write(None, None, ents(41..=80, 1)));
        f.reopen();
    }

    /// Writes 10 entries, damages the last segment and checks that open keeps the first
    /// `kept` of them and that the WAL works afterwards.
    fn torn_tail_case(damage: impl Fn(&Path), kept: u64) {
        let mut f = Fixture::new(64 << 20);
        f.put_each(1..=10);
        f.close();
        damage(&f.segments()[0]);
        f.model.entries.truncate(kept as usize);
        let (wal, persisted) = f.open().unwrap();
        assert_eq!(persisted, f.model);
        f.wal = Some(wal);
        f.put_each(kept + 1..=kept + 1);
        f.reopen();
    }

    #[test]
    fn torn_tail_mid_record_is_cut_off() {
        torn_tail_case(|p| cut(p, 3), 9);
    }

    #[test]
    fn zeros_or_garbage_after_the_tail_are_cut_off() {
        let append = |bytes: Vec<u8>| {
            move |p: &Path| File::options().append(true).open(p).unwrap().write_all(&bytes).unwrap()
        };
        torn_tail_case(append(vec![0; 100]), 10);
        let mut x = 0x2545_f491_4f6c_dd1d_u64; // xorshift: deterministic garbage
        let garbage = (0..300).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        });
        torn_tail_case(append(garbage.collect()), 10);
    }

    #[test]
    fn oversize_length_at_the_tail_is_a_torn_write() {
        torn_tail_case(|p| patch(p, record_offsets(p)[9], &u32::MAX.to_le_bytes()), 9);
    }

    #[test]
    fn damage_followed_by_valid_records_is_corrupt() {
        let mut f = Fixture::new(64 << 20);
        f.put_each(1..=10);
        f.close();
        let path = f.segments()[0].clone();
        let at = record_offsets(&path)[2];
        patch(&path, at + FRAME_HEADER_BYTES + 1, &[0xAB]);
        expect_corrupt(f.open(), &path, at);
        // An oversize length in the middle is corruption too, and is not allocated.
        let at = record_offsets(&path)[1];
        patch(&path, at, &u32::MAX.to_le_bytes());
        expect_corrupt(f.open(), &path, at);
    }

    #[test]
    fn damage_in_a_non_last_segment_is_corrupt() {
        let mut f = Fixture::new(100);
        f.put_each(1..=20);
        f.close();
        let first = f.segments()[0].clone();
        let at = *record_offsets(&first).last().unwrap();
        cut(&first, 1);
        expect_corrupt(f.open(), &first, at);
    }

    #[test]
    fn damaged_or_missing_snapshot_file_is_corrupt() {
        let mut f = Fixture::new(64 << 20);
        f.put(write(None, snap(5, false), ents(6..=7, 1)));
        f.close();
        let path = f.dir.path().join(SNAPSHOT_FILE);
        let len = fs::metadata(&path).unwrap().len() as usize;
        patch(&path, len - 1, &[0xEE]);
        expect_corrupt(f.open(), &path, SNAPSHOT_HEADER_BYTES);
        assert!(matches!(Wal::read_snapshot(f.dir.path()), Err(WalError::Corrupt { .. })));
        fs::remove_file(&path).unwrap();
        expect_corrupt(f.open(), &path, 0);
    }

    #[test]
    fn crash_before_compaction_is_completed_on_open() {
        let mut f = Fixture::new(64 << 20);
        f.put(write(hs(1), None, ents(1..=10, 1)));
        f.wal().sync().unwrap();
        // Steps 1 and 2 of storing a snapshot, then a crash.
        let w = write(None, snap(6, true), vec![]);
        write_snapshot_file(f.dir.path(), 1, w.snapshot.as_ref().unwrap()).unwrap();
        f.wal = None;
        model_apply(&mut f.model, &w);
        f.reopen();
        assert_eq!(f.wal().generation, 1);
        f.put_each(11..=11);
        f.reopen();
    }

    #[test]
    fn crash_during_compaction_leaves_nothing_behind() {
        let mut f = Fixture::new(200);
        f.put_each(1..=20);
        let old: Vec<_> = f.segments().into_iter().map(|p| (p.clone(), fs::read(p).unwrap())).collect();
        f.put(write(hs(2), snap(15, false), ents(16..=17, 2)));
        f.close();
        // Step 4 was interrupted (old segments remain), and temporary files were left behind.
        for (path, bytes) in &old {
            fs::write(path, bytes).unwrap();
        }
        fs::write(f.dir.path().join(format!("{:020}.wal.tmp", 999)), b"half a segment").unwrap();
        fs::write(f.dir.path().join(SNAPSHOT_TMP_FILE), b"half a snapshot").unwrap();
        f.reopen();
        assert_eq!(f.wal().stats().segment_count, 1);
        assert_eq!(fs::read_dir(f.dir.path()).unwrap().count(), 2, "one segment and the snapshot");
    }
}
