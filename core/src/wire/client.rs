//! The client protocol: what a client sends a node and what the node sends back, carried
//! in [`Envelope::Request`](super::Envelope::Request) and
//! [`Envelope::Response`](super::Envelope::Response).
//!
//! Every request carries an id the client chooses; the node echoes it in its answer. A
//! node may also push messages nobody asked for at that moment: completions of queued
//! commands, signals for sessions whose requests arrived on the connection, watch events
//! and election changes for the watches and observers opened on it.

use crate::machine::election::ElectionEvent;
use crate::machine::kv::{WatchEvent, WatchFilter};
use crate::machine::signal::SignalDelivery;
use crate::machine::{Command, Error, Outcome, Query, Reply, SessionEnd, SessionId};
use crate::raft::{
    Consistency, GroupId, LogIndex, Membership, MembershipChange, NodeId, RequestError, Status, Term,
};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// A request from a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    /// Chosen by the client, echoed in the answer.
    pub id: u64,
    /// The group addressed.
    pub group: GroupId,
    /// What is asked.
    pub body: RequestBody,
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Replicate and apply a command (leader only) → [`Answer::Applied`].
    Command(Command),
    /// Read → [`Answer::Read`]. Linearizable and lease reads need the leader; stale reads
    /// are served by any node.
    Query {
        /// What to read.
        query: Query,
        /// How fresh.
        consistency: Consistency,
    },
    /// Streams key-value changes covered by `filter` on this connection →
    /// [`Answer::Watching`], then [`Push::Watch`] messages tagged with this request's id,
    /// starting at revision `from` (history first, then live), or after the current
    /// revision if `from` is `None`. Served by any node, in log order without gaps.
    Watch {
        /// Which keys.
        filter: WatchFilter,
        /// First revision wanted.
        from: Option<u64>,
    },
    /// Streams the changes of election `name` on this connection → [`Answer::Watching`],
    /// then [`Push::Election`] messages tagged with this request's id.
    Observe {
        /// The election.
        name: String,
    },
    /// Ends the stream opened by request `id` on this connection → [`Answer::Unit`].
    Cancel {
        /// The request that opened it.
        id: u64,
    },
    /// This node's view of the group → [`Answer::Status`].
    Status,
    /// Changes the membership by one server (leader only) → [`Answer::Membership`].
    ChangeMembership(MembershipChange),
    /// Hands leadership to `target` (leader only) → [`Answer::Transferred`].
    TransferLeadership(NodeId),
    /// Who answers, who leads, and where the members listen for clients →
    /// [`Answer::Cluster`]. Answered by the node itself, without Raft: clients use it to
    /// find the nodes and to tell a node that answers from one that only accepts
    /// connections.
    Hello,
}

/// A node's view of its group, as a client needs it to find its way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The node answering.
    pub node: NodeId,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of, in `term`.
    pub leader: Option<NodeId>,
    /// The members (voters and learners) and the client address each advertised, where
    /// this node has heard it.
    pub members: Vec<MemberAddr>,
}

/// A member and where it listens for clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddr {
    /// The member.
    pub node: NodeId,
    /// Its client address, in its host's terms (`host:port`, a URL, …), if known.
    pub client_addr: Option<String>,
    /// Its WebSocket URL, for clients that speak WebSocket, if it serves them and it is
    /// known.
    pub web_addr: Option<String>,
    /// Whether it votes.
    pub voter: bool,
}

/// A message from a node to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// The answer to request `id`.
    Answer {
        /// The request's id.
        id: u64,
        /// The outcome.
        result: Result<Answer, ClientError>,
    },
    /// Something for this connection that no request is waiting on.
    Push(Push),
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// A command was applied at `index`. If the outcome is `Pending`, the result follows
    /// as [`Push::Completed`] on this connection.
    Applied {
        /// Its log index (for a retry answered from the reply cache: the retry's index).
        index: LogIndex,
        /// What applying it produced.
        outcome: Outcome,
    },
    /// A read of the state as of `index`.
    Read {
        /// The applied index the read saw.
        index: LogIndex,
        /// The result.
        result: Result<Reply, Error>,
    },
    /// A stream is open; its messages follow. For watches, `revision` is the store's
    /// revision when it opened.
    Watching {
        /// Store revision at opening (0 for election observers).
        revision: u64,
    },
    /// Done.
    Unit,
    /// This node's status.
    Status(Status),
    /// A membership change committed at `index`.
    Membership {
        /// The change's log index.
        index: LogIndex,
        /// The configuration now in force.
        membership: Membership,
    },
    /// Leadership passed on; the new leader was elected in `term`.
    Transferred {
        /// Term of the new leadership.
        term: Term,
    },
    /// The answering node's view of its group.
    Cluster(ClusterView),
}

/// Why a node could not serve a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClientError {
    /// Raft could not take the request (not the leader, outcome unknown, busy, …).
    Raft(RequestError),
    /// The request is for a group this node does not serve.
    WrongGroup {
        /// The group this node serves.
        serves: GroupId,
    },
    /// The watch cannot start there: the history is compacted, or the filter malformed.
    Watch(Error),
    /// Too many streams on this connection.
    TooManyStreams {
        /// The configured limit.
        max: u32,
    },
    /// The answer would not fit in one frame (a list of many large values, say): ask
    /// for less.
    AnswerTooLarge {
        /// Encoded size of the answer, bytes.
        size: u64,
        /// The frame limit, bytes.
        max: u64,
    },
    /// Raised by the client itself, never sent: it holds `operations_max` operations
    /// already; wait for some to finish.
    TooManyOperations {
        /// The client's limit.
        max: u32,
    },
    /// Raised by the client itself, never sent: a request for one node
    /// ([`Client::admin_at`](crate::client::Client::admin_at)) found no usable endpoint
    /// of it, or went unanswered there.
    NodeUnreachable {
        /// The node.
        node: NodeId,
    },
    /// The operation is one the cluster proposes itself (a queue-group member's
    /// connection closing); clients may not send it.
    Reserved,
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Raft(e) => write!(f, "{e}"),
            Self::WrongGroup { serves } => write!(f, "this node serves group {}", serves.0),
            Self::Watch(e) => write!(f, "cannot watch: {e}"),
            Self::TooManyStreams { max } => write!(f, "more than {max} streams on one connection"),
            Self::NodeUnreachable { node } => write!(f, "node {} did not answer", node.0),
            Self::Reserved => f.write_str("this operation is proposed by the cluster itself, not by clients"),
            Self::TooManyOperations { max } => {
                write!(f, "the client holds {max} operations already; wait for some to finish")
            }
            Self::AnswerTooLarge { size, max } => {
                write!(f, "the answer ({size} bytes) exceeds the frame limit of {max} bytes; ask for less")
            }
        }
    }
}

/// A message no request waits on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Push {
    /// A queued command of a session that sent requests on this connection completed.
    Completed {
        /// The session.
        session: SessionId,
        /// The command's sequence number.
        seq: u64,
        /// Its result.
        result: Result<Reply, Error>,
        /// The entry that completed it.
        index: LogIndex,
    },
    /// The session ended; everything it owned was released.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Why.
        reason: SessionEnd,
    },
    /// A signal for a subscription of a session that sent requests on this connection.
    Signal(SignalDelivery),
    /// A change for the watch opened by request `watch`.
    Watch {
        /// The request that opened the watch.
        watch: u64,
        /// The change.
        event: WatchEvent,
    },
    /// A change for the observer opened by request `observer`.
    Election {
        /// The request that opened the observer.
        observer: u64,
        /// The change.
        event: ElectionEvent,
    },
    /// A stream ended on the node's side: a watch whose next changes were compacted away
    /// before this node could send them (it installed a snapshot). Resume elsewhere or
    /// from a later revision.
    StreamEnded {
        /// The request that opened it.
        id: u64,
        /// Why.
        error: ClientError,
    },
}
