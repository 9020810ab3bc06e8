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
//! The record format, replay and the crash-safety argument are the core's
//! ([`concord_core::storage`], shared with the browser and microcontroller hosts). This
//! module is the [`Media`] they run on: files, and when each one is fsynced.
//!
//! # On disk
//!
//! ```text
//! dir/00000000000000000007.wal   segments, numbered in creation order (20 digits, so names sort)
//! dir/snapshot                   the latest snapshot
//! dir/*.tmp                      files still being written; deleted on open
//! ```
//!
//! # Files and fsync
//!
//! - **Group commit.** `sync` flushes the active segment, calls `fdatasync`, and fsyncs the
//!   directory if any file was created, renamed or removed since the last sync.
//! - **Rollover** fsyncs the old segment before creating the next one.
//! - **Atomic files.** The snapshot is written to `snapshot.tmp`, fsynced, renamed to
//!   `snapshot`, and the directory fsynced; a compacted segment likewise goes through
//!   `<seq>.wal.tmp`. A crash leaves at most a `.tmp` file, which is not live and is deleted
//!   on open.
//! - **Torn tails.** Cutting a torn write off the last segment is `ftruncate` + `fsync`
//!   before anything is appended after it.

use concord_core::raft::{Persisted, Snapshot, StorageWrite};
use concord_core::storage::{LogStore, Media, Place, StorageError};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub use concord_core::storage::{LogOptions as WalOptions, LogStats as WalStats};

const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";

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
    /// The core's log store refused the write for another reason (a value it could not
    /// encode, say).
    Store {
        /// What it said.
        detail: String,
    },
    /// An earlier append or sync failed, so what is on disk is unknown. Further writes are
    /// refused; restart the node, and recovery will read back what is actually stored.
    Failed,
}

impl WalError {
    /// Names the files behind the core's positions.
    fn from_storage(dir: &Path, e: StorageError<Self>) -> Self {
        match e {
            StorageError::Media(e) => e,
            StorageError::Corrupt { place, offset, damage } => {
                let file = match place {
                    Place::Segment(seq) => segment_path(dir, seq),
                    Place::Snapshot => dir.join(SNAPSHOT_FILE),
                };
                Self::Corrupt { file, offset, detail: damage.to_string() }
            }
            StorageError::RecordTooLarge { bytes, max } => Self::RecordTooLarge { bytes, max },
            StorageError::Failed => Self::Failed,
            StorageError::InvalidWrite(w) => Self::InvalidWrite { detail: w.to_string() },
            other => Self::Store { detail: other.to_string() },
        }
    }
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
            Self::Store { detail } => write!(f, "the log store refused the write: {detail}"),
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

/// A durable log of one node's Raft storage writes: the core's [`LogStore`] on the files of a
/// data directory.
#[derive(Debug)]
pub struct Wal {
    store: LogStore<Files>,
}

impl Wal {
    /// Opens the WAL in `dir` (creating it), recovering what is stored.
    ///
    /// Cuts off a torn write at the end of the last segment (with a warning), finishes a
    /// snapshot store that was interrupted by a crash, and deletes leftover files. Any other
    /// damage is [`WalError::Corrupt`].
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Self, Persisted), WalError> {
        fs::create_dir_all(dir).ctx("create directory", dir)?;
        let (store, recovered) =
            LogStore::open(Files::new(dir), opts).map_err(|e| WalError::from_storage(dir, e))?;
        if let Some(torn) = recovered.torn_tail {
            tracing::warn!(
                file = %segment_path(dir, torn.segment).display(),
                offset = torn.offset,
                "WAL: cut off a torn write at the end of the last segment (a crash mid-write)"
            );
        }
        Ok((Self { store }, recovered.persisted))
    }

    /// Appends one write (buffered or written, NOT yet durable). Writes are appended in order.
    ///
    /// A write that stores a snapshot is the exception: it syncs the log, stores the snapshot
    /// file and compacts the log before returning, so it does several fsyncs. After any error
    /// the `Wal` refuses further writes ([`WalError::Failed`]).
    pub fn append(&mut self, w: &StorageWrite) -> Result<(), WalError> {
        self.store.append(w).map_err(|e| WalError::from_storage(&self.store.media().dir, e))
    }

    /// Makes everything appended so far durable: fsyncs the active segment, and the directory
    /// when files were created, renamed or removed. The server calls [`append`](Self::append)
    /// for a batch of writes, then `sync` once (group commit), then confirms all their tokens.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.store.sync().map_err(|e| WalError::from_storage(&self.store.media().dir, e))
    }

    /// The stored snapshot, if any (read from disk), for `concord snapshot save`.
    ///
    /// This reads only the snapshot file. After a crash in the middle of storing a snapshot,
    /// this can be the new snapshot that the next [`open`](Self::open) will adopt.
    pub fn read_snapshot(dir: &Path) -> Result<Option<Snapshot>, WalError> {
        LogStore::read_snapshot(&mut Files::new(dir)).map_err(|e| WalError::from_storage(dir, e))
    }

    /// Bytes in live segment files, number of segments, last index stored (for metrics/status).
    pub fn stats(&self) -> WalStats {
        self.store.stats()
    }
}

/// The [`Media`] of a data directory: one file per segment, the snapshot in its own file.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
    /// The segment being appended to, once something was appended to or created.
    active: Option<Active>,
    /// A file was created, renamed or removed since the directory was last synced.
    dir_dirty: bool,
}

#[derive(Debug)]
struct Active {
    seq: u64,
    path: PathBuf,
    out: BufWriter<File>,
}

impl Files {
    fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), active: None, dir_dirty: false }
    }

    /// Writes out what is buffered for segment `seq`, so that reading or cutting the file
    /// sees every append.
    fn flush(&mut self, seq: u64) -> Result<(), WalError> {
        match &mut self.active {
            Some(a) if a.seq == seq => a.out.flush().ctx("write", &a.path),
            _ => Ok(()),
        }
    }

    /// Makes `file` (segment `seq`) the one appends go to. The store syncs a segment before
    /// it moves on, so the old writer holds nothing unwritten.
    fn activate(&mut self, seq: u64, path: PathBuf, file: File) -> Result<&mut Active, WalError> {
        if let Some(mut old) = self.active.take() {
            old.out.flush().ctx("write", &old.path)?;
        }
        Ok(self.active.insert(Active { seq, path, out: BufWriter::new(file) }))
    }
}

impl Media for Files {
    type Error = WalError;

    fn segments(&mut self, out: &mut Vec<u64>) -> Result<(), WalError> {
        *out = list_segments(&self.dir)?;
        Ok(())
    }

    fn read(&mut self, seq: u64, buf: &mut Vec<u8>) -> Result<(), WalError> {
        self.flush(seq)?;
        let path = segment_path(&self.dir, seq);
        buf.clear();
        File::open(&path).and_then(|mut f| f.read_to_end(buf)).ctx("read", &path)?;
        Ok(())
    }

    fn create(&mut self, seq: u64) -> Result<(), WalError> {
        let path = segment_path(&self.dir, seq);
        let file = OpenOptions::new().append(true).create_new(true).open(&path).ctx("create", &path)?;
        self.activate(seq, path, file)?;
        self.dir_dirty = true;
        Ok(())
    }

    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), WalError> {
        let active = match &mut self.active {
            Some(a) if a.seq == seq => a,
            _ => {
                let path = segment_path(&self.dir, seq);
                let file = OpenOptions::new().append(true).open(&path).ctx("open", &path)?;
                self.activate(seq, path, file)?
            }
        };
        active.out.write_all(bytes).ctx("write", &active.path)
    }

    fn sync(&mut self) -> Result<(), WalError> {
        if let Some(a) = &mut self.active {
            a.out.flush().ctx("write", &a.path)?;
            a.out.get_ref().sync_data().ctx("fsync", &a.path)?;
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn truncate(&mut self, seq: u64, len: u64) -> Result<(), WalError> {
        self.flush(seq)?;
        let path = segment_path(&self.dir, seq);
        let file = OpenOptions::new().write(true).open(&path).ctx("open", &path)?;
        file.set_len(len).ctx("truncate", &path)?;
        file.sync_all().ctx("fsync", &path)
    }

    fn install(&mut self, seq: u64, bytes: &[u8]) -> Result<(), WalError> {
        let tmp = self.dir.join(format!("{seq:020}.wal.tmp"));
        write_durably(&tmp, bytes)?;
        let path = segment_path(&self.dir, seq);
        fs::rename(&tmp, &path).ctx("rename", &tmp)?;
        sync_dir(&self.dir)
    }

    fn remove(&mut self, seq: u64) -> Result<(), WalError> {
        if self.active.as_ref().is_some_and(|a| a.seq == seq) {
            self.active = None;
        }
        let path = segment_path(&self.dir, seq);
        fs::remove_file(&path).ctx("remove", &path)?;
        self.dir_dirty = true;
        Ok(())
    }

    fn read_snapshot(&mut self, buf: &mut Vec<u8>) -> Result<bool, WalError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        buf.clear();
        match File::open(&path).and_then(|mut f| f.read_to_end(buf)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(WalError::Io { op: "read", path, source }),
        }
    }

    fn write_snapshot(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        let tmp = self.dir.join(SNAPSHOT_TMP_FILE);
        write_durably(&tmp, bytes)?;
        fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE)).ctx("rename", &tmp)?;
        sync_dir(&self.dir)
    }
}

/// Creates (or replaces) `path` holding `bytes`, and fsyncs it.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), WalError> {
    let mut file = File::create(path).ctx("create", path)?;
    file.write_all(bytes).ctx("write", path)?;
    file.sync_all().ctx("fsync", path)
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

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::raft::{
        Entry, HardState, Membership, NodeId, Payload, SnapshotMeta, SnapshotWrite, WriteToken,
    };
    use concord_core::storage::record::{frame_at, FRAME_HEADER_BYTES};
    use concord_core::storage::snapshot::{self, SNAPSHOT_HEADER_BYTES};
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

    /// The storage contract, applied in memory.
    fn model_apply(m: &mut Persisted, w: &StorageWrite) {
        m.apply(w).unwrap();
    }

    fn model_snapshot_index(m: &Persisted) -> u64 {
        m.bounds().snapshot_index
    }

    fn model_last(m: &Persisted) -> u64 {
        m.bounds().last_index
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
                // The hard state's term never goes back (the contract refuses that).
                let term = term.map(|t| t.max(f.model.hard_state.term));
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
        let mut file = Vec::new();
        snapshot::encode(1, w.snapshot.as_ref().unwrap(), &mut file).unwrap();
        Files::new(f.dir.path()).write_snapshot(&file).unwrap();
        f.wal = None;
        model_apply(&mut f.model, &w);
        f.reopen();
        assert_eq!(f.wal().store.generation(), 1);
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

    /// `(name, length, crc32)` of each file in `dir`.
    fn listing(dir: &Path) -> Vec<(String, usize, u32)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let bytes = fs::read(&path).unwrap();
                (path.file_name().unwrap().to_str().unwrap().to_owned(), bytes.len(), crc32fast::hash(&bytes))
            })
            .collect();
        files.sort();
        files
    }

    /// The files the WAL wrote before its logic moved into `concord-core` (recorded from
    /// that version), byte for byte: the on-disk format did not change.
    #[test]
    fn files_are_byte_identical_to_the_previous_version() {
        let mut f = Fixture::new(200);
        f.opts.record_bytes_max = 150;
        f.reopen();
        let mut writes = vec![
            write(hs(1), None, ents(1..=5, 1)),
            write(None, None, ents(3..=12, 2)),
            write(hs(2), None, vec![]),
            write(None, snap(6, true), ents(13..=14, 2)),
            write(None, None, ents(15..=30, 2)),
            write(hs(3), snap(20, false), ents(21..=22, 3)),
        ];
        writes.extend((23..=40).map(|i| write(None, None, ents(i..=i, 3))));
        writes.push(write(hs(4), snap(30, true), ents(41..=60, 4)));
        let last = writes.pop().unwrap();
        for w in writes {
            f.put(w);
            f.wal().sync().unwrap();
        }
        let name = |seq: u64| format!("{seq:020}.wal");
        let expected =
            [(name(4), 215, 0x456b_1021), (name(5), 146, 0x6c3e_8b15), ("snapshot".into(), 37, 0xe99c_4dda)];
        assert_eq!(listing(f.dir.path()), expected);
        f.put(last);
        f.wal().sync().unwrap();
        let expected = [(name(6), 285, 0x82ec_24de), (name(7), 0, 0), ("snapshot".into(), 37, 0xbbce_615e)];
        assert_eq!(listing(f.dir.path()), expected);
        f.reopen();
    }
}
