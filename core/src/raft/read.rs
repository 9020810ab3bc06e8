//! Linearizable reads waiting on a leader, and when each may be served.
//!
//! A read is linearizable if it observes every write committed before it arrived. The
//! leader answers it at its commit index (the read's *read index*) once it knows that it
//! was still the leader when the read arrived: a quorum echoed a heartbeat round sent
//! after the read (ReadIndex), or a quorum confirmed it recently enough that no other
//! leader can exist yet (the lease). A leader that has not yet committed an entry of its
//! term may not know the commit index: its reads wait for that entry and take their index
//! then.
//!
//! Like raft-rs's `ReadOnly`, [`ReadIndex`] never sees the node. The node tells it what
//! happened (a read arrived, the term's first entry committed, a round went out, a quorum
//! echoed a round, entries were applied) and it answers with what to do (broadcast a
//! round, serve these reads, refuse this one). Stale reads never queue: any replica
//! serves them at once.

use super::request::{RequestError, RequestId};
use super::LogIndex;
use crate::time::Instant;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// How many heartbeat send times a leader remembers for lease accounting.
const HEARTBEAT_HISTORY_MAX: usize = 256;

/// A linearizable read waiting to be served.
#[derive(Clone, Debug)]
struct PendingRead {
    id: RequestId,
    query: Vec<u8>,
    /// The commit index the read must observe; `None` until the leader has committed an
    /// entry of its term (before that its commit index may be behind).
    index: Option<LogIndex>,
    /// Heartbeat round a quorum must echo to confirm leadership; 0 once confirmed.
    round: u64,
}

/// How a queued read will learn that its leader is still the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Confirmation {
    /// The lease covers the present: the read is served as soon as its index is applied.
    Lease,
    /// A quorum must echo a heartbeat round sent after the read arrived.
    Quorum,
}

/// What [`ReadIndex::advance`] decided.
#[derive(Debug, Default)]
pub(super) struct Advance {
    /// How many reads this call confirmed by a quorum's echo.
    pub(super) confirmed: u64,
    /// Reads to serve now, in arrival order: confirmed, with their read index applied.
    pub(super) ready: Vec<(RequestId, Vec<u8>)>,
}

/// A heartbeat echo names a round this leader never sent: the message is forged or
/// corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct UnsentRound;

/// A leader's pending linearizable reads and its heartbeat rounds. A new leader starts
/// with an empty one ([`Default`]).
#[derive(Clone, Debug, Default)]
pub(super) struct ReadIndex {
    /// The last heartbeat round broadcast (rounds count from 1).
    round: u64,
    /// (round, send time) of recent broadcasts, oldest first.
    sent_at: VecDeque<(u64, Instant)>,
    pending: VecDeque<PendingRead>,
    /// A read waits for a round that has not been broadcast yet.
    heartbeat_due: bool,
    /// Set once this leader sent TimeoutNow: the target may win without waiting for leases
    /// to lapse, so this leader must never again trust its lease in this term.
    lease_disabled: bool,
}

impl ReadIndex {
    /// A read arrived. `index` is the leader's commit index if it has committed an entry
    /// of its term, else `None` (see [`ReadIndex::term_committed`]). `lease` says that the
    /// caller accepts a lease read and the leader's lease covers the present; it is
    /// ignored once the lease was disabled. Refused with `Busy` when `pending_max` reads
    /// wait already.
    pub(super) fn add(
        &mut self,
        id: RequestId,
        query: Vec<u8>,
        index: Option<LogIndex>,
        lease: bool,
        pending_max: usize,
    ) -> Result<Confirmation, RequestError> {
        if self.pending.len() >= pending_max {
            return Err(RequestError::Busy);
        }
        let by_lease = lease && !self.lease_disabled && index.is_some();
        let round = if by_lease {
            0
        } else {
            // Without an index there is nothing to confirm yet: the round is requested
            // when the index is assigned.
            self.heartbeat_due |= index.is_some();
            self.round + 1
        };
        self.pending.push_back(PendingRead { id, query, index, round });
        Ok(if by_lease { Confirmation::Lease } else { Confirmation::Quorum })
    }

    /// The leader's commit index advanced to `commit`, at or past the first entry of its
    /// term: reads that arrived before that entry committed take `commit` as their read
    /// index.
    pub(super) fn term_committed(&mut self, commit: LogIndex) {
        let mut assigned = false;
        for read in self.pending.iter_mut().filter(|r| r.index.is_none()) {
            read.index = Some(commit);
            assigned = true;
        }
        self.heartbeat_due |= assigned;
    }

    /// Whether a read waits for a round that was not broadcast yet.
    pub(super) fn heartbeat_due(&self) -> bool {
        self.heartbeat_due
    }

    /// A heartbeat round was broadcast at `now`. Returns the round's number, which the
    /// heartbeats carry and followers echo.
    pub(super) fn heartbeat_sent(&mut self, now: Instant) -> u64 {
        self.heartbeat_due = false;
        self.round += 1;
        if self.sent_at.len() == HEARTBEAT_HISTORY_MAX {
            self.sent_at.pop_front();
        }
        self.sent_at.push_back((self.round, now));
        self.round
    }

    /// The last round broadcast: what this leader itself confirms.
    pub(super) fn last_round(&self) -> u64 {
        self.round
    }

    /// A follower echoed `round`. Returns when that round was sent (the start of the lease
    /// the echo grants), or `None` if it is too old to be remembered.
    pub(super) fn recv_ack(&self, round: u64) -> Result<Option<Instant>, UnsentRound> {
        if round > self.round {
            return Err(UnsentRound);
        }
        let k = self.sent_at.binary_search_by_key(&round, |(r, _)| *r).ok();
        Ok(k.map(|k| self.sent_at[k].1))
    }

    /// Confirms the reads whose round a quorum echoed (every round up to `confirmed`) and
    /// hands out those confirmed whose read index is at most `applied`.
    pub(super) fn advance(&mut self, confirmed: u64, applied: LogIndex) -> Advance {
        let mut out = Advance::default();
        self.pending.retain_mut(|read| {
            if read.round != 0 && read.index.is_some() && read.round <= confirmed {
                out.confirmed += 1;
                read.round = 0;
            }
            let ready = read.round == 0 && read.index.is_some_and(|index| index <= applied);
            if ready {
                out.ready.push((read.id, core::mem::take(&mut read.query)));
            }
            !ready
        });
        out
    }

    /// Whether no read waits.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Leadership ended: every waiting read, to be answered that this node is no longer
    /// the leader.
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = RequestId> + use<> {
        core::mem::take(&mut self.pending).into_iter().map(|r| r.id)
    }

    /// This leader asked another to take over (TimeoutNow): it must not serve lease reads
    /// again in its term.
    pub(super) fn disable_lease(&mut self) {
        self.lease_disabled = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16;

    fn id(n: u64) -> RequestId {
        RequestId(n)
    }

    fn ready_ids(a: &Advance) -> Vec<u64> {
        a.ready.iter().map(|(id, _)| id.0).collect()
    }

    #[test]
    fn a_read_waits_for_a_quorum_to_echo_a_round_sent_after_it() {
        let mut r = ReadIndex::default();
        let first = r.heartbeat_sent(Instant::ZERO);
        assert_eq!(r.add(id(1), b"q".to_vec(), Some(5), false, MAX), Ok(Confirmation::Quorum));
        assert!(r.heartbeat_due());
        assert!(ready_ids(&r.advance(first, 5)).is_empty(), "that round left before the read arrived");
        let second = r.heartbeat_sent(Instant::from_micros(10));
        assert!(!r.heartbeat_due());
        let a = r.advance(second, 5);
        assert_eq!((a.confirmed, ready_ids(&a)), (1, [1].to_vec()));
        assert_eq!(a.ready[0].1, b"q");
        assert!(r.is_empty());
    }

    #[test]
    fn a_confirmed_read_still_waits_until_its_index_is_applied() {
        let mut r = ReadIndex::default();
        r.add(id(1), Vec::new(), Some(7), false, MAX).unwrap();
        let round = r.heartbeat_sent(Instant::ZERO);
        let a = r.advance(round, 6);
        assert_eq!((a.confirmed, ready_ids(&a)), (1, Vec::new()));
        let a = r.advance(round, 7);
        assert_eq!((a.confirmed, ready_ids(&a)), (0, [1].to_vec()), "confirmed once, counted once");
    }

    #[test]
    fn a_lease_read_needs_no_round_unless_the_lease_was_disabled() {
        let mut r = ReadIndex::default();
        assert_eq!(r.add(id(1), Vec::new(), Some(3), true, MAX), Ok(Confirmation::Lease));
        assert!(!r.heartbeat_due());
        assert_eq!(ready_ids(&r.advance(0, 3)), [1]);
        r.disable_lease();
        assert_eq!(r.add(id(2), Vec::new(), Some(3), true, MAX), Ok(Confirmation::Quorum));
        assert!(r.heartbeat_due());
    }

    #[test]
    fn reads_before_the_terms_first_commit_take_their_index_then() {
        let mut r = ReadIndex::default();
        assert_eq!(r.add(id(1), Vec::new(), None, true, MAX), Ok(Confirmation::Quorum));
        assert!(!r.heartbeat_due(), "no index to confirm yet");
        assert!(ready_ids(&r.advance(u64::MAX, 100)).is_empty());
        r.term_committed(9);
        assert!(r.heartbeat_due());
        let round = r.heartbeat_sent(Instant::ZERO);
        assert!(ready_ids(&r.advance(round, 8)).is_empty());
        assert_eq!(ready_ids(&r.advance(round, 9)), [1]);
    }

    #[test]
    fn reads_beyond_the_limit_are_refused_and_leadership_loss_returns_the_rest() {
        let mut r = ReadIndex::default();
        r.add(id(1), Vec::new(), Some(1), false, 2).unwrap();
        r.add(id(2), Vec::new(), Some(1), false, 2).unwrap();
        assert_eq!(r.add(id(3), Vec::new(), Some(1), false, 2), Err(RequestError::Busy));
        assert_eq!(r.take_all().map(|id| id.0).collect::<Vec<_>>(), [1, 2]);
        assert!(r.is_empty());
    }

    #[test]
    fn an_echo_tells_when_its_round_was_sent_and_unsent_rounds_are_refused() {
        let mut r = ReadIndex::default();
        assert_eq!(r.recv_ack(0), Ok(None));
        assert_eq!(r.recv_ack(1), Err(UnsentRound));
        for t in 0..=HEARTBEAT_HISTORY_MAX as u64 {
            r.heartbeat_sent(Instant::from_micros(t));
        }
        assert_eq!(r.last_round(), HEARTBEAT_HISTORY_MAX as u64 + 1);
        assert_eq!(r.recv_ack(1), Ok(None), "forgotten");
        assert_eq!(r.recv_ack(2), Ok(Some(Instant::from_micros(1))));
        assert_eq!(r.recv_ack(r.last_round() + 1), Err(UnsentRound));
    }
}
