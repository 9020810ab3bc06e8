//! The follower's side of InstallSnapshot: a snapshot arriving from the leader in chunks.
//!
//! [`IncomingSnapshot`] never sees the node: it takes each chunk and says what to answer
//! (how much it holds) or that the snapshot is whole and should be installed. Whether a
//! snapshot is needed at all (it may cover only what is committed here already), restoring
//! the state machine and replacing the log stay with the node.

use super::{Snapshot, SnapshotMeta};
use alloc::vec::Vec;

/// A snapshot being assembled chunk by chunk.
#[derive(Clone, Debug)]
struct Partial {
    meta: SnapshotMeta,
    total: u64,
    data: Vec<u8>,
}

/// What to do after a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// Tell the leader how many bytes are held: it sends the chunk from there.
    Holding {
        /// Bytes received so far, contiguously from the start.
        next_offset: u64,
    },
    /// Every byte arrived: restore the state machine from it and install it.
    Complete(Snapshot),
    /// The snapshot is larger than this node accepts; nothing was kept.
    TooLarge,
    /// The chunk was dropped without an answer: it runs past the announced size (forged or
    /// corrupt).
    Dropped,
}

/// The snapshot a follower is receiving, if any.
#[derive(Clone, Debug, Default)]
pub(super) struct IncomingSnapshot {
    partial: Option<Partial>,
}

impl IncomingSnapshot {
    /// A chunk: `data` is found at `offset` in the snapshot of `total` bytes that `meta`
    /// describes. Snapshots over `bytes_max` are refused. A chunk of another snapshot than
    /// the one held replaces it only if it is a first chunk, and a duplicated first chunk
    /// keeps what already arrived; chunks out of order are not kept (the answer says where
    /// to resume).
    pub(super) fn receive(
        &mut self,
        meta: SnapshotMeta,
        offset: u64,
        total: u64,
        data: &[u8],
        bytes_max: usize,
    ) -> Received {
        if total > bytes_max as u64 {
            return Received::TooLarge;
        }
        let resumable = self.partial.as_ref().is_some_and(|p| p.meta == meta && p.total == total);
        if offset == 0 && !resumable {
            // Only a first chunk starts over: a duplicated one must not throw away what
            // already arrived.
            self.partial = Some(Partial { meta: meta.clone(), total, data: Vec::new() });
        }
        // Only the snapshot held, as announced when it started, can be continued: a chunk
        // naming another size for it is not counted towards it.
        let Some(mut p) = self.partial.take_if(|p| p.meta == meta && p.total == total) else {
            return Received::Holding { next_offset: 0 };
        };
        if p.data.len() as u64 == offset {
            if offset + data.len() as u64 > total {
                return Received::Dropped; // And what was held goes with it.
            }
            p.data.extend_from_slice(data);
        }
        if (p.data.len() as u64) < p.total {
            let next_offset = p.data.len() as u64;
            self.partial = Some(p);
            return Received::Holding { next_offset };
        }
        Received::Complete(Snapshot { meta: p.meta, data: p.data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Membership;
    use crate::time::Instant;

    const MAX: usize = 1 << 20;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta { index, term: 1, time: Instant::ZERO, membership: Membership::default() }
    }

    fn holding(next_offset: u64) -> Received {
        Received::Holding { next_offset }
    }

    fn complete(index: u64, data: &[u8]) -> Received {
        Received::Complete(Snapshot { meta: meta(index), data: data.to_vec() })
    }

    #[test]
    fn chunks_in_order_complete_the_snapshot() {
        let mut s = IncomingSnapshot::default();
        assert_eq!(s.receive(meta(5), 0, 6, b"abc", MAX), holding(3));
        assert_eq!(s.receive(meta(5), 3, 6, b"def", MAX), complete(5, b"abcdef"));
        assert_eq!(s.receive(meta(5), 3, 6, b"def", MAX), holding(0), "nothing held after completion");
    }

    #[test]
    fn a_gap_or_a_duplicate_answers_where_to_resume() {
        let mut s = IncomingSnapshot::default();
        s.receive(meta(5), 0, 9, b"abc", MAX);
        assert_eq!(s.receive(meta(5), 6, 9, b"ghi", MAX), holding(3), "gap");
        assert_eq!(
            s.receive(meta(5), 0, 9, b"abc", MAX),
            holding(3),
            "a duplicated first chunk keeps the rest"
        );
        assert_eq!(s.receive(meta(5), 3, 9, b"def", MAX), holding(6));
    }

    #[test]
    fn a_newer_snapshot_replaces_the_partial_one_only_from_its_first_chunk() {
        let mut s = IncomingSnapshot::default();
        s.receive(meta(5), 0, 6, b"abc", MAX);
        assert_eq!(s.receive(meta(8), 3, 6, b"xyz", MAX), holding(0));
        assert_eq!(s.receive(meta(5), 3, 6, b"def", MAX), complete(5, b"abcdef"));
        s.receive(meta(5), 0, 6, b"abc", MAX);
        assert_eq!(s.receive(meta(8), 0, 2, b"xy", MAX), complete(8, b"xy"));
    }

    #[test]
    fn oversized_and_overrunning_snapshots_are_not_kept() {
        let mut s = IncomingSnapshot::default();
        assert_eq!(s.receive(meta(5), 0, 11, b"abc", 10), Received::TooLarge);
        s.receive(meta(5), 0, 6, b"abc", MAX);
        assert_eq!(s.receive(meta(5), 3, 6, b"defg", MAX), Received::Dropped);
        assert_eq!(s.receive(meta(5), 3, 6, b"def", MAX), holding(0), "the overrun discarded the rest");
    }

    #[test]
    fn a_chunk_naming_another_size_never_completes_what_is_held() {
        let mut s = IncomingSnapshot::default();
        assert_eq!(s.receive(meta(5), 0, 10, b"abcdef", MAX), holding(6));
        // Same snapshot, a smaller total than the 6 bytes held: not whole, not installed.
        assert_eq!(s.receive(meta(5), 6, 5, b"", MAX), holding(0));
        assert_eq!(s.receive(meta(5), 6, 10, b"ghij", MAX), complete(5, b"abcdefghij"));
    }
}
