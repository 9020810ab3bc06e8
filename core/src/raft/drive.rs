//! One drain of a node's outputs in the order the run-loop contract demands, for hosts
//! whose storage, network and callers can be called back: storage first (confirmed at
//! once when the host's write is already durable), then messages, replies and events,
//! again for as long as a round confirmed a write — a confirmed write can release
//! held-back messages, and those can produce more. What waits for a write the host
//! confirms later stays in the node until then.

use super::node::{Event, Node, NodeError};
use super::request::Reply;
use super::state_machine::StateMachine;
use super::storage::StorageWrite;
use super::Message;

/// Where a node's outputs go. The consumer of [`Node::drive`] defines it.
pub trait Outputs<M: StateMachine> {
    /// Stores `write`: `true` if it is durable now (the node is told at once), `false`
    /// if the host confirms it later with [`Node::handle_persisted`]. A confirmation
    /// covers every earlier write too, so answer `true` only when this write and every
    /// one before it are durable (a host whose writes complete in order always can).
    fn persist(&mut self, write: StorageWrite) -> bool;
    /// Sends a message that may leave now.
    fn send(&mut self, message: Message);
    /// A reply to a request of this node's host.
    fn reply(&mut self, _reply: Reply<M::Output>) {}
    /// A role change, snapshot install or machine event.
    fn event(&mut self, _event: Event<M::Event>) {}
}

impl<M: StateMachine> Node<M> {
    /// Drains every output into `out` until nothing more can leave (what waits for an
    /// unconfirmed write stays); whether anything came out. On an error the drain stops
    /// where it was.
    /// Bounded: every round empties queues that only the calls here refill, and a round
    /// that confirms no write ends the loop.
    ///
    /// A host whose writes complete later returns `false` from `persist`: what depends on
    /// them stays in the node until it confirms them.
    ///
    /// ```
    /// use concord_core::raft::Outputs;
    /// use concord_core::{Config, GroupId, Instant, Membership, Message, Node, NodeId, Role, Start, StorageWrite};
    /// # use concord_core::{ApplyContext, RestoreError, StateMachine};
    /// # struct Nothing;
    /// # impl StateMachine for Nothing {
    /// #     type Output = ();
    /// #     type Event = ();
    /// #     fn apply(&mut self, _: ApplyContext, _: &[u8]) {}
    /// #     fn query(&self, _: &[u8]) {}
    /// #     fn snapshot(&self, _: &mut Vec<u8>) {}
    /// #     fn restore(&mut self, _: &[u8]) -> Result<(), RestoreError> { Ok(()) }
    /// # }
    /// /// A disk that completes writes later, and a network.
    /// struct Later { writes: Vec<StorageWrite>, sent: Vec<Message> }
    /// impl Outputs<Nothing> for Later {
    ///     fn persist(&mut self, w: StorageWrite) -> bool { self.writes.push(w); false }
    ///     fn send(&mut self, m: Message) { self.sent.push(m); }
    /// }
    /// let voters = Membership::with_voters([NodeId(1)]);
    /// let mut node = Node::new(Config::new(NodeId(1), GroupId(0)), Nothing, Start::NewCluster(voters), Instant::ZERO, 1)?;
    /// let mut out = Later { writes: Vec::new(), sent: Vec::new() };
    /// let mut now = Instant::ZERO;
    /// for _ in 0..5 {
    ///     now = node.poll_timeout().max(now);
    ///     node.handle_timeout(now);
    ///     node.drive(&mut out)?;
    ///     // The disk finishes: confirm, and drain what that released.
    ///     for w in out.writes.drain(..) {
    ///         node.handle_persisted(w.token)?;
    ///     }
    ///     node.drive(&mut out)?;
    /// }
    /// assert_eq!(node.role(), Role::Leader);
    /// # Ok::<(), concord_core::NodeError>(())
    /// ```
    pub fn drive(&mut self, out: &mut impl Outputs<M>) -> Result<bool, NodeError> {
        let mut any = false;
        loop {
            let mut confirmed = false;
            while let Some(write) = self.poll_storage() {
                any = true;
                let token = write.token;
                if out.persist(write) {
                    self.handle_persisted(token)?;
                    confirmed = true;
                }
            }
            while let Some(m) = self.poll_transmit() {
                any = true;
                out.send(m);
            }
            while let Some(r) = self.poll_reply() {
                any = true;
                out.reply(r);
            }
            while let Some(e) = self.poll_event() {
                any = true;
                out.event(e);
            }
            if !confirmed {
                return Ok(any);
            }
        }
    }
}
