//! Counters of what a node has done, for metrics endpoints and for tests that prove a
//! workload exercised every protocol path.

/// Monotonic counters since the node was created (they restart at zero on restart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Metrics {
    /// Pre-vote rounds started.
    pub pre_votes_started: u64,
    /// Pre-vote requests refused by this node.
    pub pre_votes_refused: u64,
    /// Real elections started (terms campaigned in).
    pub elections_started: u64,
    /// Elections won.
    pub elections_won: u64,
    /// Vote requests ignored because a leader was believed alive (CheckQuorum lease).
    pub votes_ignored_in_lease: u64,
    /// Times a leader stepped down because it lost contact with a quorum.
    pub check_quorum_step_downs: u64,
    /// Append messages sent by this node as leader.
    pub appends_sent: u64,
    /// Entries carried by those appends.
    pub entries_sent: u64,
    /// Appends this node rejected as a follower (log mismatch).
    pub appends_rejected: u64,
    /// Times a leader re-probed a follower after a rejection (fast backtracking).
    pub probes_after_rejection: u64,
    /// Times the in-flight window to a follower was full when entries were waiting.
    pub inflight_window_full: u64,
    /// Entries committed while this node led.
    pub entries_committed_as_leader: u64,
    /// Commands applied to the state machine.
    pub entries_applied: u64,
    /// Snapshots taken to compact the log.
    pub snapshots_taken: u64,
    /// Snapshot chunks sent to followers.
    pub snapshot_chunks_sent: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Linearizable reads confirmed by a ReadIndex quorum round.
    pub reads_read_index: u64,
    /// Reads served from the leader lease without a round trip.
    pub reads_lease: u64,
    /// Stale reads served.
    pub reads_stale: u64,
    /// Leadership transfers started (TimeoutNow sent).
    pub transfers_started: u64,
    /// Elections started on a leader's TimeoutNow.
    pub transfers_taken_over: u64,
    /// Membership changes proposed by this node as leader.
    pub membership_changes_proposed: u64,
    /// Messages dropped as malformed (e.g. non-contiguous entries).
    pub malformed_messages: u64,
    /// `Tick` entries proposed because a state-machine deadline was due.
    pub ticks_proposed: u64,
}

impl Metrics {
    /// Adds every counter of `other` to `self` (for totals across nodes).
    pub fn add(&mut self, other: &Self) {
        let Self {
            pre_votes_started,
            pre_votes_refused,
            elections_started,
            elections_won,
            votes_ignored_in_lease,
            check_quorum_step_downs,
            appends_sent,
            entries_sent,
            appends_rejected,
            probes_after_rejection,
            inflight_window_full,
            entries_committed_as_leader,
            entries_applied,
            snapshots_taken,
            snapshot_chunks_sent,
            snapshots_installed,
            reads_read_index,
            reads_lease,
            reads_stale,
            transfers_started,
            transfers_taken_over,
            membership_changes_proposed,
            malformed_messages,
            ticks_proposed,
        } = other;
        self.pre_votes_started += pre_votes_started;
        self.pre_votes_refused += pre_votes_refused;
        self.elections_started += elections_started;
        self.elections_won += elections_won;
        self.votes_ignored_in_lease += votes_ignored_in_lease;
        self.check_quorum_step_downs += check_quorum_step_downs;
        self.appends_sent += appends_sent;
        self.entries_sent += entries_sent;
        self.appends_rejected += appends_rejected;
        self.probes_after_rejection += probes_after_rejection;
        self.inflight_window_full += inflight_window_full;
        self.entries_committed_as_leader += entries_committed_as_leader;
        self.entries_applied += entries_applied;
        self.snapshots_taken += snapshots_taken;
        self.snapshot_chunks_sent += snapshot_chunks_sent;
        self.snapshots_installed += snapshots_installed;
        self.reads_read_index += reads_read_index;
        self.reads_lease += reads_lease;
        self.reads_stale += reads_stale;
        self.transfers_started += transfers_started;
        self.transfers_taken_over += transfers_taken_over;
        self.membership_changes_proposed += membership_changes_proposed;
        self.malformed_messages += malformed_messages;
        self.ticks_proposed += ticks_proposed;
    }

    /// Every counter with its name, for exposition and coverage reports.
    pub fn named(&self) -> [(&'static str, u64); 24] {
        [
            ("pre_votes_started", self.pre_votes_started),
            ("pre_votes_refused", self.pre_votes_refused),
            ("elections_started", self.elections_started),
            ("elections_won", self.elections_won),
            ("votes_ignored_in_lease", self.votes_ignored_in_lease),
            ("check_quorum_step_downs", self.check_quorum_step_downs),
            ("appends_sent", self.appends_sent),
            ("entries_sent", self.entries_sent),
            ("appends_rejected", self.appends_rejected),
            ("probes_after_rejection", self.probes_after_rejection),
            ("inflight_window_full", self.inflight_window_full),
            ("entries_committed_as_leader", self.entries_committed_as_leader),
            ("entries_applied", self.entries_applied),
            ("snapshots_taken", self.snapshots_taken),
            ("snapshot_chunks_sent", self.snapshot_chunks_sent),
            ("snapshots_installed", self.snapshots_installed),
            ("reads_read_index", self.reads_read_index),
            ("reads_lease", self.reads_lease),
            ("reads_stale", self.reads_stale),
            ("transfers_started", self.transfers_started),
            ("transfers_taken_over", self.transfers_taken_over),
            ("membership_changes_proposed", self.membership_changes_proposed),
            ("malformed_messages", self.malformed_messages),
            ("ticks_proposed", self.ticks_proposed),
        ]
    }
}
