//! Configuration of a Raft node: timing and every named limit.

use super::{GroupId, NodeId};
use core::fmt;

/// Rules a simulator can deliberately break to prove that its checkers catch violations.
/// Only present with the `bug-injection` feature, which no deployment enables.
#[cfg(feature = "bug-injection")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// Grant votes without checking that the candidate's log is at least as up to date.
    pub vote_without_log_check: bool,
    /// Commit an entry from an earlier term by counting replicas (Raft §5.4.2 forbids it).
    pub commit_prior_term_by_count: bool,
    /// Trust the leader lease for four maximum election timeouts, far past the point where
    /// followers may elect another leader.
    pub unsafe_long_lease: bool,
    /// Serve ReadIndex reads without waiting for a quorum to confirm leadership.
    pub read_index_without_quorum: bool,
}

/// Configuration of one Raft node. Every limit is a named field; exceeding one yields a
/// typed error, never a panic or a silent truncation.
///
/// ```
/// use concord_core::{Config, GroupId, NodeId};
/// let config = Config::new(NodeId(1), GroupId(0));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// This node's id; unique within the group, never 0.
    pub id: NodeId,
    /// The Raft group this node belongs to; every message carries it.
    pub group: GroupId,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_us: u64,
    /// Upper bound (exclusive) of the randomised election timeout.
    pub election_timeout_max_us: u64,
    /// How often a leader sends heartbeats; must be well below the election timeout.
    pub heartbeat_interval_us: u64,
    /// Bound on the rate difference between any two nodes' clocks, in parts per million.
    /// Leader leases are shortened by it so that a lease read stays safe under drift.
    pub clock_drift_max_ppm: u32,
    /// Most entries carried by one append message.
    pub append_entries_max: usize,
    /// Most payload bytes carried by one append message (at least one entry is always sent).
    pub append_bytes_max: usize,
    /// Most append messages in flight to one follower while pipelining.
    pub inflight_appends_max: usize,
    /// Largest command a client may propose, in bytes.
    pub proposal_bytes_max: usize,
    /// Most proposals awaiting commit on a leader; more are refused with `Busy`.
    pub pending_proposals_max: usize,
    /// Most linearizable reads waiting for confirmation on a leader.
    pub pending_reads_max: usize,
    /// Most committed entries applied to the state machine per `handle_*` call; the rest
    /// are applied on later calls (`poll_timeout` returns `now` while work remains).
    pub apply_batch_max: usize,
    /// A snapshot is taken once this many applied entries sit in the log after the last one.
    pub snapshot_threshold_entries: u64,
    /// Size of one InstallSnapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Largest snapshot a follower accepts from a leader.
    pub snapshot_bytes_max: usize,
    /// Deliberately broken rules for checker tests (feature `bug-injection`).
    #[cfg(feature = "bug-injection")]
    pub bugs: Bugs,
}

impl Config {
    /// A configuration with defaults suited to a LAN: 150–300 ms elections, 30 ms heartbeats.
    pub fn new(id: NodeId, group: GroupId) -> Self {
        Self {
            id,
            group,
            election_timeout_min_us: 150_000,
            election_timeout_max_us: 300_000,
            heartbeat_interval_us: 30_000,
            clock_drift_max_ppm: 10_000,
            append_entries_max: 256,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 16,
            proposal_bytes_max: 1 << 20,
            pending_proposals_max: 4096,
            pending_reads_max: 4096,
            apply_batch_max: 1024,
            snapshot_threshold_entries: 10_000,
            snapshot_chunk_bytes: 256 << 10,
            snapshot_bytes_max: 256 << 20,
            #[cfg(feature = "bug-injection")]
            bugs: Bugs::default(),
        }
    }

    /// How long a leader may serve reads from its lease after a quorum acknowledged it:
    /// the minimum election timeout shrunk by the drift bound in both directions, so that
    /// no follower's clock can run out its election timeout before the leader's lease ends.
    pub fn lease_duration_us(&self) -> u64 {
        #[cfg(feature = "bug-injection")]
        if self.bugs.unsafe_long_lease {
            return self.election_timeout_max_us * 4;
        }
        let ppm = u128::from(self.clock_drift_max_ppm);
        let min = u128::from(self.election_timeout_min_us);
        // ppm < 500_000 (validated), so the quotient is below `min` and fits in u64.
        (min * (1_000_000 - ppm) / (1_000_000 + ppm)) as u64
    }

    /// Checks that the configuration is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.0 == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        if self.id.0 > super::NODE_ID_MAX {
            return Err(ConfigError::NodeIdTooLarge);
        }
        if self.election_timeout_min_us == 0 || self.election_timeout_max_us <= self.election_timeout_min_us {
            return Err(ConfigError::ElectionTimeoutRange);
        }
        if self.heartbeat_interval_us == 0
            || self.heartbeat_interval_us.saturating_mul(2) > self.election_timeout_min_us
        {
            return Err(ConfigError::HeartbeatTooSlow);
        }
        if self.clock_drift_max_ppm >= 500_000 {
            return Err(ConfigError::ClockDriftTooLarge);
        }
        let positive = [
            ("append_entries_max", self.append_entries_max),
            ("append_bytes_max", self.append_bytes_max),
            ("inflight_appends_max", self.inflight_appends_max),
            ("proposal_bytes_max", self.proposal_bytes_max),
            ("pending_proposals_max", self.pending_proposals_max),
            ("pending_reads_max", self.pending_reads_max),
            ("apply_batch_max", self.apply_batch_max),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("snapshot_bytes_max", self.snapshot_bytes_max),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::ZeroLimit(name));
        }
        if self.snapshot_threshold_entries == 0 {
            return Err(ConfigError::ZeroLimit("snapshot_threshold_entries"));
        }
        Ok(())
    }
}

/// Why a [`Config`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Node id 0 is reserved for "no node".
    ZeroNodeId,
    /// The id is above [`NODE_ID_MAX`](super::NODE_ID_MAX).
    NodeIdTooLarge,
    /// The election timeout range is empty or starts at zero.
    ElectionTimeoutRange,
    /// Heartbeats must come at least twice per minimum election timeout.
    HeartbeatTooSlow,
    /// The clock drift bound must be below 50%.
    ClockDriftTooLarge,
    /// The named limit is zero.
    ZeroLimit(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroNodeId => f.write_str("node id must not be 0"),
            Self::NodeIdTooLarge => write!(f, "node id must be at most {} (2^53 - 1)", super::NODE_ID_MAX),
            Self::ElectionTimeoutRange => {
                f.write_str("election_timeout_max_us must exceed election_timeout_min_us > 0")
            }
            Self::HeartbeatTooSlow => {
                f.write_str("heartbeat_interval_us must be > 0 and at most half of election_timeout_min_us")
            }
            Self::ClockDriftTooLarge => f.write_str("clock_drift_max_ppm must be below 500000"),
            Self::ZeroLimit(name) => write!(f, "{name} must be greater than 0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config::new(NodeId(1), GroupId(0))
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn each_bad_setting_has_its_own_error() {
        let mut c = valid();
        c.id = NodeId(0);
        assert_eq!(c.validate(), Err(ConfigError::ZeroNodeId));
        c.id = NodeId(crate::raft::NODE_ID_MAX + 1);
        assert_eq!(c.validate(), Err(ConfigError::NodeIdTooLarge));
        let mut c = valid();
        c.election_timeout_max_us = c.election_timeout_min_us;
        assert_eq!(c.validate(), Err(ConfigError::ElectionTimeoutRange));
        let mut c = valid();
        c.heartbeat_interval_us = c.election_timeout_min_us;
        assert_eq!(c.validate(), Err(ConfigError::HeartbeatTooSlow));
        let mut c = valid();
        c.clock_drift_max_ppm = 500_000;
        assert_eq!(c.validate(), Err(ConfigError::ClockDriftTooLarge));
        let mut c = valid();
        c.inflight_appends_max = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroLimit("inflight_appends_max")));
        let mut c = valid();
        c.snapshot_threshold_entries = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroLimit("snapshot_threshold_entries")));
    }

    #[test]
    fn the_lease_is_shorter_than_any_follower_can_measure_the_election_timeout() {
        let mut c = valid();
        c.clock_drift_max_ppm = 0;
        assert_eq!(c.lease_duration_us(), c.election_timeout_min_us);
        c.clock_drift_max_ppm = 10_000;
        let lease = c.lease_duration_us();
        // A leader clock running fast by the bound and a follower clock running slow by
        // it: the lease, measured in true time, must end before the follower's timeout.
        let leader_true = lease as f64 / (1.0 + 0.01);
        let follower_true = c.election_timeout_min_us as f64 / (1.0 - 0.01);
        assert!(leader_true <= follower_true);
        assert!(lease < c.election_timeout_min_us);
    }
}
