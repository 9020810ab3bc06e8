//! What a [`LogStore`](super::LogStore) needs from the place its bytes live, and an
//! in-memory implementation.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::convert::Infallible;

/// Where a [`LogStore`](super::LogStore) keeps its bytes: numbered, append-only segments
/// and one snapshot. Each host implements it over what it has — files, flash pages,
/// IndexedDB — and the store decides everything else.
///
/// Durability is explicit: an [`append`](Self::append), [`create`](Self::create) or
/// [`remove`](Self::remove) may be lost in a crash until the next [`sync`](Self::sync)
/// returns, while [`truncate`](Self::truncate), [`install`](Self::install) and
/// [`write_snapshot`](Self::write_snapshot) are durable when they return. A crash may lose
/// any suffix of the unsynced appends, or tear one, but must never change synced bytes.
pub trait Media {
    /// What went wrong in the medium (I/O, a full disk, a closed database).
    type Error;

    /// Replaces `out` with the numbers of the live segments, in ascending order. Whatever
    /// an interrupted [`install`](Self::install) or [`write_snapshot`](Self::write_snapshot)
    /// left behind is not live (and may be cleaned up now).
    fn segments(&mut self, out: &mut Vec<u64>) -> Result<(), Self::Error>;

    /// Replaces `buf` with every byte of segment `seq`, including unsynced appends.
    fn read(&mut self, seq: u64, buf: &mut Vec<u8>) -> Result<(), Self::Error>;

    /// Creates segment `seq`, empty. The store only creates a number higher than any live one.
    fn create(&mut self, seq: u64) -> Result<(), Self::Error>;

    /// Appends `bytes` to the existing segment `seq`: the newest one.
    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Makes every append, creation and removal so far durable.
    fn sync(&mut self) -> Result<(), Self::Error>;

    /// Cuts segment `seq` to its first `len` bytes, durably.
    fn truncate(&mut self, seq: u64, len: u64) -> Result<(), Self::Error>;

    /// Creates segment `seq` holding `bytes`, atomically and durably: after a crash it is
    /// either complete or not live.
    fn install(&mut self, seq: u64, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Removes segment `seq`.
    fn remove(&mut self, seq: u64) -> Result<(), Self::Error>;

    /// Replaces `buf` with the snapshot's bytes; `false` when there is no snapshot.
    fn read_snapshot(&mut self, buf: &mut Vec<u8>) -> Result<bool, Self::Error>;

    /// Replaces the snapshot with `bytes`, atomically and durably.
    fn write_snapshot(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// A [`Media`] in memory, for a replica that needs no durability (a browser tab's memory
/// storage) and for simulators, which call [`crash`](Self::crash) to lose what a power
/// failure would.
#[derive(Clone, Debug, Default)]
pub struct MemMedia {
    segments: BTreeMap<u64, Segment>,
    /// Removed since the last sync, so a crash brings them back.
    removed: BTreeMap<u64, Segment>,
    snapshot: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default)]
struct Segment {
    bytes: Vec<u8>,
    /// How many bytes a crash keeps; `None` until its creation is synced.
    synced: Option<usize>,
}

impl MemMedia {
    /// An empty medium.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes in unsynced appends, over every segment.
    pub fn unsynced_bytes(&self) -> usize {
        self.segments.values().map(|s| s.bytes.len().saturating_sub(s.synced.unwrap_or(0))).sum()
    }

    /// A power failure: unsynced creations and removals are undone, and each segment keeps
    /// its synced bytes plus the first `keep_unsynced(seq, unsynced)` of its unsynced ones
    /// (clamped), which models a write that was torn or reached the disk only in part.
    ///
    /// A segment whose creation was not synced survives only if it keeps a byte.
    pub fn crash(&mut self, mut keep_unsynced: impl FnMut(u64, usize) -> usize) {
        self.segments.append(&mut self.removed);
        self.segments.retain(|seq, s| {
            let created = s.synced.is_some();
            let synced = s.synced.unwrap_or(0);
            // (A test may have cut a segment below what was synced.)
            let unsynced = s.bytes.len().saturating_sub(synced);
            let keep = keep_unsynced(*seq, unsynced).min(unsynced);
            s.bytes.truncate(synced + keep);
            s.synced = Some(s.bytes.len());
            created || keep > 0
        });
    }

    /// Segment `seq`'s bytes, for tests that damage them on purpose.
    pub fn segment_mut(&mut self, seq: u64) -> Option<&mut Vec<u8>> {
        self.segments.get_mut(&seq).map(|s| &mut s.bytes)
    }

    /// The snapshot's bytes, for tests that damage them on purpose.
    pub fn snapshot_mut(&mut self) -> Option<&mut Vec<u8>> {
        self.snapshot.as_mut()
    }
}

impl Media for MemMedia {
    type Error = Infallible;

    fn segments(&mut self, out: &mut Vec<u64>) -> Result<(), Infallible> {
        out.clear();
        out.extend(self.segments.keys());
        Ok(())
    }

    fn read(&mut self, seq: u64, buf: &mut Vec<u8>) -> Result<(), Infallible> {
        buf.clear();
        if let Some(s) = self.segments.get(&seq) {
            buf.extend_from_slice(&s.bytes);
        }
        Ok(())
    }

    fn create(&mut self, seq: u64) -> Result<(), Infallible> {
        self.segments.insert(seq, Segment::default());
        Ok(())
    }

    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), Infallible> {
        self.segments.entry(seq).or_default().bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Infallible> {
        self.removed.clear();
        for s in self.segments.values_mut() {
            s.synced = Some(s.bytes.len());
        }
        Ok(())
    }

    fn truncate(&mut self, seq: u64, len: u64) -> Result<(), Infallible> {
        if let Some(s) = self.segments.get_mut(&seq) {
            s.bytes.truncate(usize::try_from(len).unwrap_or(usize::MAX));
            s.synced = Some(s.bytes.len());
        }
        Ok(())
    }

    fn install(&mut self, seq: u64, bytes: &[u8]) -> Result<(), Infallible> {
        self.segments.insert(seq, Segment { bytes: bytes.to_vec(), synced: Some(bytes.len()) });
        Ok(())
    }

    fn remove(&mut self, seq: u64) -> Result<(), Infallible> {
        if let Some(s) = self.segments.remove(&seq) {
            self.removed.insert(seq, s);
        }
        Ok(())
    }

    fn read_snapshot(&mut self, buf: &mut Vec<u8>) -> Result<bool, Infallible> {
        buf.clear();
        buf.extend_from_slice(self.snapshot.as_deref().unwrap_or_default());
        Ok(self.snapshot.is_some())
    }

    fn write_snapshot(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        self.snapshot = Some(bytes.to_vec());
        Ok(())
    }
}
