//! Messages exchanged between the nodes of one group.

use super::{Entry, GroupId, LogIndex, NodeId, SnapshotMeta, Term};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Terms and log indexes at or above this are refused as malformed. Real values never
/// come near it, and refusing them keeps every `+ 1` on them free of overflow.
pub const TERM_AND_INDEX_MAX: u64 = 1 << 62;

/// A message between two nodes of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The Raft group; a node drops messages for other groups.
    pub group: GroupId,
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The sender's term (for `PreVote`, the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The content of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" Sent before a real election so a node that was
    /// partitioned away cannot disrupt a healthy leader by inflating terms.
    PreVote {
        /// Index of the candidate's last entry.
        last_index: LogIndex,
        /// Term of the candidate's last entry.
        last_term: Term,
    },
    /// Answer to `PreVote`.
    PreVoteResponse {
        /// Whether the vote would be granted.
        granted: bool,
    },
    /// A real vote request.
    Vote {
        /// Index of the candidate's last entry.
        last_index: LogIndex,
        /// Term of the candidate's last entry.
        last_term: Term,
        /// Set when the election was started by a leadership transfer: voters then skip
        /// the check that they have not heard from a leader recently.
        transfer: bool,
    },
    /// Answer to `Vote`.
    VoteResponse {
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Log entries following `prev_index`.
    Append {
        /// Index of the entry just before `entries`.
        prev_index: LogIndex,
        /// Term of that entry.
        prev_term: Term,
        /// New entries, possibly none.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: LogIndex,
    },
    /// Answer to `Append`.
    AppendResponse {
        /// Whether the entries were accepted.
        success: bool,
        /// On success, the index up to which the follower's log now matches the leader's;
        /// on rejection, the `prev_index` that did not match.
        index: LogIndex,
        /// On rejection, where the leader should look next: the follower's last index or
        /// the rejected `prev_index`, whichever is lower.
        hint_index: LogIndex,
        /// On rejection, the follower's term at `hint_index` (0 if none), letting the
        /// leader skip a whole conflicting term at once.
        hint_term: Term,
    },
    /// Leader liveness, commit propagation and read confirmation.
    Heartbeat {
        /// `min(leader commit, follower match)`.
        commit: LogIndex,
        /// Read-confirmation sequence number; echoed back.
        seq: u64,
    },
    /// Answer to `Heartbeat`.
    HeartbeatResponse {
        /// The echoed sequence number.
        seq: u64,
    },
    /// One chunk of a snapshot.
    InstallSnapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Byte offset of `data` within the snapshot.
        offset: u64,
        /// Total snapshot size in bytes.
        total: u64,
        /// The chunk.
        data: Vec<u8>,
    },
    /// Answer to `InstallSnapshot`.
    InstallSnapshotResponse {
        /// Index of the snapshot being transferred.
        index: LogIndex,
        /// Bytes received so far; the next chunk should start here.
        next_offset: u64,
        /// Set once the whole snapshot is installed (or the follower already had it).
        done: bool,
    },
    /// Sent by a leader handing over leadership: start an election now.
    TimeoutNow,
    /// A leader's answer to a vote or pre-vote from a node that is in none of its
    /// configurations, the committed one included: the sender was removed from the group,
    /// and stops campaigning.
    Removed,
}

impl Message {
    /// Checks what a decoder cannot: that terms, indexes and offsets are plausible. A
    /// message failing this comes from a corrupt or hostile peer and is refused.
    pub fn validate(&self) -> Result<(), &'static str> {
        let small = |v: u64| v < TERM_AND_INDEX_MAX;
        if !small(self.term) {
            return Err("term out of range");
        }
        let ok = match &self.body {
            MessageBody::PreVote { last_index, last_term }
            | MessageBody::Vote { last_index, last_term, .. } => small(*last_index) && small(*last_term),
            MessageBody::Append { prev_index, prev_term, entries, commit } => {
                small(*prev_index)
                    && small(*prev_term)
                    && small(*commit)
                    && small(prev_index.saturating_add(entries.len() as u64))
            }
            MessageBody::AppendResponse { index, hint_index, hint_term, .. } => {
                small(*index) && small(*hint_index) && small(*hint_term)
            }
            MessageBody::Heartbeat { commit, .. } => small(*commit),
            MessageBody::InstallSnapshot { meta, offset, total, data } => {
                small(meta.index)
                    && meta.term <= self.term
                    && offset.checked_add(data.len() as u64).is_some_and(|end| end <= *total)
            }
            MessageBody::InstallSnapshotResponse { index, next_offset, .. } => {
                small(*index) && small(*next_offset)
            }
            MessageBody::PreVoteResponse { .. }
            | MessageBody::VoteResponse { .. }
            | MessageBody::HeartbeatResponse { .. }
            | MessageBody::TimeoutNow
            | MessageBody::Removed => true,
        };
        if ok {
            Ok(())
        } else {
            Err("index, term or offset out of range")
        }
    }
}

impl MessageBody {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PreVote { .. } => "pre_vote",
            Self::PreVoteResponse { .. } => "pre_vote_response",
            Self::Vote { .. } => "vote",
            Self::VoteResponse { .. } => "vote_response",
            Self::Append { .. } => "append",
            Self::AppendResponse { .. } => "append_response",
            Self::Heartbeat { .. } => "heartbeat",
            Self::HeartbeatResponse { .. } => "heartbeat_response",
            Self::InstallSnapshot { .. } => "install_snapshot",
            Self::InstallSnapshotResponse { .. } => "install_snapshot_response",
            Self::TimeoutNow => "timeout_now",
            Self::Removed => "removed",
        }
    }
}
