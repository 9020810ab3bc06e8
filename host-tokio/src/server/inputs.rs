//! What reaches the node loop, through one bounded queue. Each task around the loop holds
//! a handle that sends only its own kind of input, so a peer task cannot pose as a
//! client and the storage thread can only report writes.

use crate::metrics::StatusReport;
use concord_core::raft::WriteToken;
use concord_core::server::ConnId;
use concord_core::wire::{ClientRequest, PeerHello, ServerMessage};
use concord_core::{Message, NodeId};
use tokio::sync::{mpsc, oneshot};

/// Inputs waiting for the node loop; senders wait (backpressure) when it is full.
pub(super) const INPUT_QUEUE_MAX: usize = 16_384;

/// What reaches the node loop.
pub(super) enum Input {
    Peer(Message),
    /// An inbound peer connection identified itself (with its client address and
    /// WebSocket URL, if any): reply on it if no address is known.
    PeerInbound(NodeId, Option<String>, Option<String>, mpsc::Sender<Message>),
    ClientOpen(ConnId, std::net::SocketAddr, mpsc::Sender<ServerMessage>),
    Client(ConnId, ClientRequest),
    ClientClosed(ConnId),
    Persisted(WriteToken),
    StorageFailed(String),
    /// A status report listing at most this many items (sessions, locks, …) per kind;
    /// 0 for totals only (what `/metrics` needs).
    Status(usize, oneshot::Sender<StatusReport>),
    /// A snapshot of the applied state, taken now unless the latest one is current.
    Snapshot(oneshot::Sender<Option<concord_core::Snapshot>>),
}

/// The receiving end, the node loop's.
pub(super) type InputQueue = mpsc::Receiver<Input>;

/// A new input queue: the loop's end, and the sender the typed handles wrap.
pub(super) fn queue() -> (mpsc::Sender<Input>, InputQueue) {
    mpsc::channel(INPUT_QUEUE_MAX)
}

/// Raft traffic from peer connections.
#[derive(Clone)]
pub(super) struct PeerInputs(pub(super) mpsc::Sender<Input>);

impl PeerInputs {
    /// A Raft message; `false` once the node loop is gone.
    pub(super) async fn message(&self, m: Message) -> bool {
        self.0.send(Input::Peer(m)).await.is_ok()
    }

    /// An inbound connection from `node` said hello (with its client address and
    /// WebSocket URL).
    pub(super) async fn inbound(&self, hello: &PeerHello, tx: mpsc::Sender<Message>) {
        let (addr, web) = (hello.client_addr.clone(), hello.web_addr.clone());
        let _ = self.0.send(Input::PeerInbound(hello.node, addr, web, tx)).await;
    }
}

/// Client connections opening, sending requests and closing.
#[derive(Clone)]
pub(super) struct ClientInputs(pub(super) mpsc::Sender<Input>);

impl ClientInputs {
    /// Connection `conn` opened, from `from`; its messages go to `tx`.
    pub(super) async fn open(
        &self,
        conn: ConnId,
        from: std::net::SocketAddr,
        tx: mpsc::Sender<ServerMessage>,
    ) {
        let _ = self.0.send(Input::ClientOpen(conn, from, tx)).await;
    }

    /// A request on `conn`; `false` once the node loop is gone.
    pub(super) async fn request(&self, conn: ConnId, req: ClientRequest) -> bool {
        self.0.send(Input::Client(conn, req)).await.is_ok()
    }

    /// Connection `conn` closed.
    pub(super) async fn closed(&self, conn: ConnId) {
        let _ = self.0.send(Input::ClientClosed(conn)).await;
    }
}

/// What the storage thread reports (from outside the runtime, so it blocks when full).
pub(super) struct StorageInputs(pub(super) mpsc::Sender<Input>);

impl StorageInputs {
    /// Every write up to `token` is durable.
    pub(super) fn persisted(&self, token: WriteToken) {
        let _ = self.0.blocking_send(Input::Persisted(token));
    }

    /// The log failed: the node must stop.
    pub(super) fn failed(&self, error: String) {
        let _ = self.0.blocking_send(Input::StorageFailed(error));
    }
}

/// Status reports for the HTTP endpoint.
#[derive(Clone)]
pub(crate) struct StatusInputs(pub(super) mpsc::Sender<Input>);

impl StatusInputs {
    /// A report listing at most `items` per kind (0: totals only); `None` if the node is
    /// stopping.
    pub(crate) async fn report(&self, items: usize) -> Option<StatusReport> {
        let (tx, rx) = oneshot::channel();
        self.0.send(Input::Status(items, tx)).await.ok()?;
        rx.await.ok()
    }

    /// A fresh snapshot of the applied state (`Some(None)`: nothing applied yet); `None`
    /// if the node is stopping.
    pub(crate) async fn snapshot(&self) -> Option<Option<concord_core::Snapshot>> {
        let (tx, rx) = oneshot::channel();
        self.0.send(Input::Snapshot(tx)).await.ok()?;
        rx.await.ok()
    }
}
