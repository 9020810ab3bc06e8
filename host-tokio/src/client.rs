//! The async Rust client: the core's sans-IO [`Client`](CoreClient) driven by a tokio task,
//! with one TCP connection per node it talks to.
//!
//! [`Concord::connect`] probes every endpoint at once and returns as soon as one answers
//! (the core client learns the leader and the other members' addresses from it, so one
//! reachable endpoint is enough, and a node that accepts connections without answering
//! costs one short probe, not a delay on every call). The session opens with the first
//! command that needs one and is kept alive in the background.
//! Every command carries the session and a sequence number, so the retries the driver
//! makes — after a timeout, a lost connection or a leader change — are applied once.
//! When the session is lost (it expired, say, during a long partition), everything it
//! owned is released by the cluster: [`Concord::session`] reports it, guards notice, and
//! a new session is opened for later calls.
//!
//! ```no_run
//! # async fn demo() -> Result<(), concord_tokio::client::Error> {
//! use concord_tokio::client::{Concord, Options};
//! let c = Concord::connect(Options::new(["127.0.0.1:7001", "127.0.0.1:7002"])?).await?;
//! let guard = c.lock("jobs/nightly", None).await?;
//! println!("holding with fence {}", guard.fence());
//! guard.unlock().await?;
//! let n = c.counter("visits").incr().await?;
//! # let _ = n; Ok(()) }
//! ```

use crate::frame::{write_frame, FrameReader};
use concord_core::client::calls::{self, AdminCall, Call, Request};
use concord_core::client::{
    Client as CoreClient, ClientConfig, ClientEvent, Endpoint as CoreEndpoint, Health, OpId, Peer, PeerError,
};
use concord_core::machine::election::ElectionEvent;
use concord_core::machine::kv::{WatchEvent, WatchFilter};
use concord_core::machine::signal::SignalDelivery;
use concord_core::machine::{Error as MachineError, Op, QueryOp, Reply, SessionId};
use concord_core::raft::{Membership, MembershipChange, Status, Term};
use concord_core::wire::{Answer, ClientError, ClientRequest, Envelope, RequestBody, ServerMessage};
use concord_core::{Consistency, GroupId, Instant, LogIndex, NodeId};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

mod primitives;
pub use primitives::{
    Barrier, Counter, Enqueued, Fresh, Kv, Latch, Leadership, LockGuard, Permits, Reference, RwGuard, RwLock,
    Semaphore, Subscription, Tripped,
};

/// How long [`Concord::close`] tries to close the session.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Calls waiting for the driver; callers wait when it is full.
const COMMAND_QUEUE_MAX: usize = 4_096;
/// Messages from connections waiting for the driver; connections stop reading when full.
const NET_QUEUE_MAX: usize = 1_024;
/// Requests waiting to be written on one connection; a connection that falls this far
/// behind is dropped, and what it carried moves to another node.
const CONNECTION_QUEUE_MAX: usize = 1_024;
/// Events a watch, observer or subscription holds for its reader; one that is not read
/// fast enough ends (a watch or observer with [`Error::Overloaded`]).
pub const STREAM_BUFFER_MAX: usize = 1_024;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The state machine refused or failed the operation (not held, timeout, limit, …).
    Machine(MachineError),
    /// The cluster refused the request outside the machine (wrong group, too large, …).
    Request(ClientError),
    /// No endpoint answered.
    Unreachable(String),
    /// An endpoint or option is invalid.
    Config(String),
    /// The client was closed.
    Closed,
    /// The reply was not what this call expects (a client/server version mismatch).
    Unexpected(String),
    /// A bounded queue of the client was full: too many calls at once, or a stream
    /// (watch, observer) not read fast enough, which then ends with this error.
    Overloaded(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machine(e) => write!(f, "{e}"),
            Self::Request(e) => write!(f, "{e}"),
            Self::Unreachable(e) => write!(f, "no node reachable: {e}"),
            Self::Config(e) => write!(f, "{e}"),
            Self::Closed => f.write_str("the client is closed"),
            Self::Unexpected(e) => write!(f, "unexpected reply: {e}"),
            Self::Overloaded(what) => write!(f, "overloaded: {what}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<MachineError> for Error {
    fn from(e: MachineError) -> Self {
        Self::Machine(e)
    }
}

/// A node the client knows of ([`Concord::members`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node.
    pub id: NodeId,
    /// Its client address.
    pub addr: String,
    /// Why the client does not use it now (`None`: it answers).
    pub trouble: Option<String>,
}

/// Where a node listens for clients, with its id if known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The node's id (learnt from the node when not given).
    pub id: Option<NodeId>,
    /// Its client address, `HOST:PORT` (a host name is resolved when connecting).
    pub addr: String,
}

impl std::str::FromStr for Endpoint {
    type Err = Error;
    /// `HOST:PORT` or `ID=HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |e: &dyn fmt::Display| Error::Config(format!("endpoint {s:?}: {e}"));
        let (id, addr) = match s.split_once('=') {
            Some((id, addr)) => (Some(NodeId(id.trim().parse().map_err(|e| bad(&e))?)), addr.trim()),
            None => (None, s.trim()),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad(&"expected HOST:PORT"))?;
        if host.is_empty() {
            return Err(bad(&"the host is missing"));
        }
        port.parse::<u16>().map_err(|e| bad(&format_args!("port: {e}")))?;
        Ok(Self { id, addr: addr.to_string() })
    }
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct Options {
    /// The nodes' client endpoints.
    pub endpoints: Vec<Endpoint>,
    /// The group id the cluster serves.
    pub group: u64,
    /// Session TTL: the cluster releases what the session owns this long after it last
    /// heard from the client.
    pub session_ttl: Duration,
    /// Resend a request to another node if unanswered this long.
    pub request_timeout: Duration,
    /// How long `connect` waits for any endpoint to answer before giving up.
    pub connect_timeout: Duration,
    /// A TCP connection not established within this long has failed.
    pub dial_timeout: Duration,
    /// An endpoint that accepts connections but does not answer a probe within this long
    /// is avoided (and probed again every second) while others answer.
    pub probe_timeout: Duration,
    /// Largest frame sent or accepted, bytes.
    pub frame_bytes_max: usize,
    /// How the typed handles read: `Linearizable` (the default) confirms leadership with
    /// a quorum, `Lease` trusts the leader's lease, `Stale` takes any node's state.
    pub read_consistency: Consistency,
}

impl Options {
    /// Options for these endpoints (`HOST:PORT` or `ID=HOST:PORT`), with defaults: group
    /// 1, a 10 s session, 1 s request timeout.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(endpoints: I) -> Result<Self, Error> {
        let endpoints = endpoints.into_iter().map(|e| e.as_ref().parse()).collect::<Result<Vec<_>, _>>()?;
        Self::from_endpoints(endpoints)
    }

    /// Options for endpoints already parsed, with the same defaults as [`Options::new`].
    pub fn from_endpoints(endpoints: Vec<Endpoint>) -> Result<Self, Error> {
        if endpoints.is_empty() {
            return Err(Error::Config("at least one endpoint is needed".into()));
        }
        Ok(Self {
            endpoints,
            group: 1,
            session_ttl: Duration::from_secs(10),
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(2),
            probe_timeout: Duration::from_millis(500),
            frame_bytes_max: 4 << 20,
            read_consistency: Consistency::Linearizable,
        })
    }
}

/// The client's session as the driver last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionState {
    /// The open session, if any.
    pub current: Option<SessionId>,
    /// Sessions lost so far (each lost everything it owned).
    pub lost: u64,
}

/// A finished command or read: the reply and the log index it took effect at (or the
/// applied index a read saw).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// The reply.
    pub reply: Reply,
    /// The log index.
    pub index: LogIndex,
    /// The session a command ran in (`None` for reads); what it granted is lost with it.
    pub session: Option<SessionId>,
    /// The commands that give back what the reply granted, in `session` (empty when it
    /// granted nothing).
    pub releases: Vec<Op>,
}

/// Where a command's or read's result goes.
type Answered = oneshot::Sender<Result<Done, Error>>;

enum Cmd {
    Submit(Op, Option<SessionId>, Answered),
    Subscribe(Op, Answered, mpsc::Sender<SignalDelivery>),
    Read(QueryOp, Consistency, Answered),
    /// For the leader, or (pinned) for one node.
    Admin(RequestBody, Option<NodeId>, oneshot::Sender<Result<Answer, Error>>),
    Watch(WatchFilter, Option<u64>, mpsc::Sender<Result<WatchEvent, Error>>),
    Observe(String, mpsc::Sender<Result<ElectionEvent, Error>>),
    CloseSession(Answered),
    /// Why no endpoint could be used, for `connect`'s error.
    Report(oneshot::Sender<String>),
    Members(oneshot::Sender<Vec<Member>>),
    Close(oneshot::Sender<()>),
}

enum Net {
    Message(Peer, u64, ServerMessage),
    /// The connection ended or could not be made (with why, for error messages).
    Closed(Peer, u64, String),
}

/// Whether the cluster has been reached, as `connect` waits for it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reach {
    Trying,
    Reached,
    /// Every endpoint refused this client: why.
    Refused(String),
}

/// A connected client. Cheap to clone; every clone shares the session.
#[derive(Clone)]
pub struct Concord {
    cmds: mpsc::Sender<Cmd>,
    session: watch::Receiver<SessionState>,
    nodes: watch::Receiver<BTreeMap<NodeId, String>>,
    reads: Consistency,
    _driver: Arc<DriverGuard>,
}

/// Stops the driver when the last clone goes.
struct DriverGuard(mpsc::Sender<Cmd>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        let (tx, _) = oneshot::channel();
        let _ = self.0.try_send(Cmd::Close(tx));
    }
}

impl Concord {
    /// Connects: probes every endpoint at once and returns as soon as one answers, with
    /// the background driver running. The session opens with the first command.
    pub async fn connect(opts: Options) -> Result<Self, Error> {
        if opts.endpoints.is_empty() {
            return Err(Error::Config("at least one endpoint is needed".into()));
        }
        let endpoints =
            opts.endpoints.iter().map(|e| CoreEndpoint { node: e.id, addr: e.addr.clone() }).collect();
        let mut cc = ClientConfig::new(GroupId(opts.group), endpoints);
        cc.session_ttl_ms = opts.session_ttl.as_millis() as u64;
        cc.request_timeout_us = opts.request_timeout.as_micros() as u64;
        cc.probe_timeout_us = opts.probe_timeout.as_micros() as u64;
        let epoch = std::time::Instant::now();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let core = CoreClient::new(cc, Instant::ZERO, seed ^ u64::from(std::process::id()));
        let (cmds, cmd_rx) = mpsc::channel(COMMAND_QUEUE_MAX);
        let (session_tx, session) = watch::channel(SessionState::default());
        let (net_tx, net_rx) = mpsc::channel(NET_QUEUE_MAX);
        let (known, nodes) = watch::channel(BTreeMap::new());
        let (reach_tx, mut reach) = watch::channel(Reach::Trying);
        let driver = Driver {
            known,
            reach: reach_tx,
            core,
            epoch,
            conns: BTreeMap::new(),
            dial_errors: BTreeMap::new(),
            generation: 0,
            net_tx,
            frame_bytes_max: opts.frame_bytes_max,
            dial_timeout: opts.dial_timeout,
            once: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            admin: BTreeMap::new(),
            watches: BTreeMap::new(),
            observers: BTreeMap::new(),
            session: session_tx,
            closing: None,
        };
        let (report_tx, report_rx) = oneshot::channel();
        tokio::spawn(driver.run(cmd_rx, net_rx));
        let client = Self {
            _driver: Arc::new(DriverGuard(cmds.clone())),
            cmds,
            session,
            nodes,
            reads: opts.read_consistency,
        };
        let reached =
            tokio::time::timeout(opts.connect_timeout, reach.wait_for(|r| *r != Reach::Trying)).await;
        let outcome = reached.map(|r| r.map(|r| r.clone()));
        match outcome {
            Ok(Ok(Reach::Reached)) => Ok(client),
            Ok(Ok(Reach::Refused(why))) => Err(Error::Unreachable(why)),
            Ok(Ok(Reach::Trying) | Err(_)) => Err(Error::Closed),
            Err(_) => {
                // Ask the driver why each endpoint failed.
                let _ = client.cmds.send(Cmd::Report(report_tx)).await;
                let why = tokio::time::timeout(Duration::from_secs(1), report_rx).await;
                let why = why.ok().and_then(Result::ok).unwrap_or_else(|| "no endpoint answered".into());
                Err(Error::Unreachable(format!("within {:?}: {why}", opts.connect_timeout)))
            }
        }
    }

    /// The nodes the client has reached, by id, with their client addresses: those given
    /// and those learnt from the cluster.
    pub fn nodes(&self) -> BTreeMap<NodeId, String> {
        self.nodes.borrow().clone()
    }

    /// Every node the client knows a client address of — given, or learnt from the
    /// cluster — whether it answers or not, by id.
    pub async fn members(&self) -> Vec<Member> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Members(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The session state; `changed()` on it fires when the session is lost or reopened.
    pub fn session(&self) -> watch::Receiver<SessionState> {
        self.session.clone()
    }

    /// Resolves once the client's session is no longer `session` (it was lost, and what
    /// it held with it). Take `session` from [`Concord::session`] when acquiring.
    pub fn session_changed(
        &self,
        session: Option<SessionId>,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let mut s = self.session.clone();
        async move {
            let _ = s.wait_for(|st| st.current != session).await;
        }
    }

    /// Applies `op` in `session` in the background, ignoring the result (releases on
    /// drop). The driver takes it even if no runtime is current.
    fn in_background(&self, op: Op, session: SessionId) {
        let (tx, _) = oneshot::channel();
        match self.cmds.try_send(Cmd::Submit(op, Some(session), tx)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            // Too many calls at once: send it when there is room, if a runtime is about;
            // otherwise the session's end releases it.
            Err(mpsc::error::TrySendError::Full(cmd)) => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let cmds = self.cmds.clone();
                    rt.spawn(async move { cmds.send(cmd).await });
                }
                Err(_) => tracing::warn!("client queue full: a release waits for the session to end"),
            },
        }
    }

    /// Runs a typed call from [`concord_core::client::calls`]; its typed result and how
    /// it finished. Reads go with the client's [`Options::read_consistency`].
    pub async fn call_done<T>(&self, call: Call<T>) -> Result<(T, Done), Error> {
        let (request, decode) = call.into_parts();
        let done = self.request(request, None).await?;
        let value = decode.decode(done.reply.clone()).map_err(|e| Error::Unexpected(e.to_string()))?;
        Ok((value, done))
    }

    /// Runs a typed call; its typed result.
    pub async fn call<T>(&self, call: Call<T>) -> Result<T, Error> {
        self.call_in(call, None).await
    }

    /// Runs a typed call, its command in `session` only if given (see
    /// [`Concord::execute_in`]); its typed result.
    pub(crate) async fn call_in<T>(&self, call: Call<T>, session: Option<SessionId>) -> Result<T, Error> {
        let (request, decode) = call.into_parts();
        let done = self.request(request, session).await?;
        decode.decode(done.reply).map_err(|e| Error::Unexpected(e.to_string()))
    }

    /// Sends a call's request: a command (in `session` only, if given) or a read.
    async fn request(&self, request: Request, session: Option<SessionId>) -> Result<Done, Error> {
        match (request, session) {
            (Request::Command(op), Some(s)) => self.execute_in(op, s).await,
            (Request::Command(op), None) => self.execute(op).await,
            (Request::Read(query), _) => self.read(query, self.reads).await,
        }
    }

    /// Subscribes with `call` (in the current session, or the one it opens); the
    /// subscription's deliveries, and only those, go to the returned stream.
    pub(crate) async fn call_subscribe(
        &self,
        call: Call<u64>,
    ) -> Result<(u64, Done, mpsc::Receiver<SignalDelivery>), Error> {
        let (request, decode) = call.into_parts();
        let Request::Command(op) = request else {
            return Err(Error::Unexpected("a subscription is a command".into()));
        };
        let (tx, rx) = oneshot::channel();
        let (deliveries, stream) = mpsc::channel(STREAM_BUFFER_MAX);
        self.cmds.send(Cmd::Subscribe(op, tx, deliveries)).await.map_err(|_| Error::Closed)?;
        let done = rx.await.map_err(|_| Error::Closed)??;
        let id = decode.decode(done.reply.clone()).map_err(|e| Error::Unexpected(e.to_string()))?;
        Ok((id, done, stream))
    }

    /// Applies `op` (exactly once, whatever the retries), waiting as long as it waits.
    /// If the caller stops waiting, whatever `op` grants is given back when it comes.
    pub async fn execute(&self, op: Op) -> Result<Done, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Submit(op, None, tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Applies `op` only in `session`: if that session was lost, it fails with
    /// `SessionLost` and is not applied in the client's next session.
    pub async fn execute_in(&self, op: Op, session: SessionId) -> Result<Done, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Submit(op, Some(session), tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Reads `query` with the client's [`Options::read_consistency`]; the reply.
    pub async fn query(&self, query: QueryOp) -> Result<Reply, Error> {
        Ok(self.read(query, self.reads).await?.reply)
    }

    /// Reads `query` with `consistency`.
    pub async fn read(&self, query: QueryOp, consistency: Consistency) -> Result<Done, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Read(query, consistency, tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// An administrative request (status, membership, leadership transfer).
    pub async fn admin(&self, body: RequestBody) -> Result<Answer, Error> {
        self.admin_to(body, None).await
    }

    async fn admin_to(&self, body: RequestBody, node: Option<NodeId>) -> Result<Answer, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Admin(body, node, tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Runs a typed administrative call from [`concord_core::client::calls`].
    pub async fn admin_call<T>(&self, call: AdminCall<T>) -> Result<T, Error> {
        let (body, decode) = call.into_parts();
        let answer = self.admin(body).await?;
        decode.decode(answer).map_err(|e| Error::Unexpected(e.to_string()))
    }

    /// The status of the node that answers (the leader, if there is one).
    pub async fn status(&self) -> Result<Status, Error> {
        self.admin_call(calls::status()).await
    }

    /// The status of node `node`, asked directly: it needs no leader and no quorum, and
    /// fails with [`ClientError::NodeUnreachable`] (as [`Error::Request`]) if that node
    /// does not answer. Ask after [`Concord::connect`], once the members are known
    /// ([`Concord::nodes`]).
    pub async fn status_of(&self, node: NodeId) -> Result<Status, Error> {
        let (body, decode) = calls::status().into_parts();
        let answer = self.admin_to(body, Some(node)).await?;
        decode.decode(answer).map_err(|e| Error::Unexpected(e.to_string()))
    }

    /// Changes the membership; the log index of the change and the membership in force.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(LogIndex, Membership), Error> {
        self.admin_call(calls::change_membership(change)).await
    }

    /// Hands leadership to node `to`; the term it leads in.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<Term, Error> {
        self.admin_call(calls::transfer_leadership(to)).await
    }

    /// Watches key-value changes matching `filter`, from revision `from` (or now). The
    /// stream resumes across node changes without gaps; it ends with an error if the
    /// history it needs was compacted.
    pub fn watch(&self, filter: WatchFilter, from: Option<u64>) -> mpsc::Receiver<Result<WatchEvent, Error>> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_MAX);
        if let Err(mpsc::error::TrySendError::Full(Cmd::Watch(_, _, tx))) =
            self.cmds.try_send(Cmd::Watch(filter, from, tx))
        {
            let _ = tx.try_send(Err(Error::Overloaded("too many calls at once")));
        }
        rx
    }

    /// Observes election `name`: first its current state (`ElectionChange::Current`),
    /// then every change. Resumed on another node, it starts again with the state there.
    pub fn observe(&self, name: &str) -> mpsc::Receiver<Result<ElectionEvent, Error>> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_MAX);
        if let Err(mpsc::error::TrySendError::Full(Cmd::Observe(_, tx))) =
            self.cmds.try_send(Cmd::Observe(name.into(), tx))
        {
            let _ = tx.try_send(Err(Error::Overloaded("too many calls at once")));
        }
        rx
    }

    /// Closes the session (releasing what it owns) and stops the driver. Bounded: if no
    /// node answers within [`CLOSE_TIMEOUT`], the session is left to expire after its TTL.
    pub async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::CloseSession(tx)).await.is_ok() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, rx).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Conn {
    generation: u64,
    tx: mpsc::Sender<ClientRequest>,
}

struct Driver {
    known: watch::Sender<BTreeMap<NodeId, String>>,
    reach: watch::Sender<Reach>,
    core: CoreClient,
    epoch: std::time::Instant,
    conns: BTreeMap<Peer, Conn>,
    /// Why the last connection to each endpoint failed.
    dial_errors: BTreeMap<Peer, String>,
    generation: u64,
    net_tx: mpsc::Sender<Net>,
    frame_bytes_max: usize,
    dial_timeout: Duration,
    once: BTreeMap<OpId, Answered>,
    /// Where each subscription's signals go, by the operation that subscribed.
    subscriptions: BTreeMap<OpId, mpsc::Sender<SignalDelivery>>,
    admin: BTreeMap<OpId, oneshot::Sender<Result<Answer, Error>>>,
    watches: BTreeMap<OpId, mpsc::Sender<Result<WatchEvent, Error>>>,
    observers: BTreeMap<OpId, mpsc::Sender<Result<ElectionEvent, Error>>>,
    session: watch::Sender<SessionState>,
    closing: Option<oneshot::Sender<()>>,
}

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>, mut net: mpsc::Receiver<Net>) {
        loop {
            // What the core queued (its first probes included) goes out before any wait.
            self.drain();
            let at = self.core.poll_timeout();
            let sleep = tokio::time::Instant::from_std(self.epoch) + Duration::from_micros(at.as_micros());
            let mut sleep = sleep.min(tokio::time::Instant::now() + Duration::from_secs(3600));
            let dial_deadline = tokio::time::Instant::from_std(self.epoch) + self.dial_timeout;
            if *self.reach.borrow() == Reach::Trying && dial_deadline > tokio::time::Instant::now() {
                // Wake when the dial timeout runs out, to give up if nothing listens (once:
                // an endpoint that accepts but never answers keeps the client trying).
                sleep = sleep.min(dial_deadline);
            }
            tokio::select! {
                c = cmds.recv() => match c {
                    Some(Cmd::Close(done)) => { self.closing = Some(done); break; }
                    Some(c) => self.command(c),
                    None => break,
                },
                n = net.recv() => if let Some(n) = n { self.network(n) },
                () = tokio::time::sleep_until(sleep) => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
        }
        if let Some(done) = self.closing.take() {
            let _ = done.send(());
        }
    }

    fn command(&mut self, c: Cmd) {
        let now = self.now();
        match c {
            Cmd::Submit(op, pin, tx) => {
                let id = match pin {
                    Some(session) => self.core.submit_in(now, op, session),
                    None => self.core.submit(now, op),
                };
                self.once.insert(id, tx);
            }
            Cmd::Subscribe(op, tx, deliveries) => {
                let id = self.core.submit(now, op);
                self.once.insert(id, tx);
                self.subscriptions.insert(id, deliveries);
            }
            Cmd::Read(q, consistency, tx) => {
                let id = self.core.read(now, q, consistency);
                self.once.insert(id, tx);
            }
            Cmd::Admin(body, node, tx) => {
                let id = match node {
                    Some(node) => self.core.admin_at(now, node, body),
                    None => self.core.admin(now, body),
                };
                self.admin.insert(id, tx);
            }
            Cmd::Watch(filter, from, tx) => {
                self.cancel_dropped_streams();
                let id = self.core.watch(now, filter, from);
                self.watches.insert(id, tx);
            }
            Cmd::Observe(name, tx) => {
                self.cancel_dropped_streams();
                let id = self.core.observe(now, name);
                self.observers.insert(id, tx);
            }
            Cmd::CloseSession(tx) => {
                let id = self.core.close(now);
                self.once.insert(id, tx);
            }
            Cmd::Report(tx) => {
                let _ = tx.send(self.report());
            }
            Cmd::Members(tx) => {
                let _ = tx.send(self.members());
            }
            Cmd::Close(_) => {}
        }
    }

    /// Cancels the watches and observers whose receivers were dropped, before another
    /// opens: a quiet stream is otherwise noticed only at its next event, and dropped
    /// streams would use up the server's streams per connection.
    fn cancel_dropped_streams(&mut self) {
        let now = self.now();
        let watches = self.watches.iter().filter(|(_, tx)| tx.is_closed()).map(|(op, _)| *op);
        let observers = self.observers.iter().filter(|(_, tx)| tx.is_closed()).map(|(op, _)| *op);
        let gone: Vec<OpId> = watches.chain(observers).collect();
        for op in gone {
            self.watches.remove(&op);
            self.observers.remove(&op);
            self.core.cancel(now, op);
        }
    }

    /// Every endpoint refused connections (or broke them) for a whole dial timeout: nothing
    /// is listening, so `connect` need not wait out its timeout. A node that accepts but
    /// does not answer is not down, and is waited for.
    fn all_down(&self) -> bool {
        self.epoch.elapsed() >= self.dial_timeout
            && self.core.endpoints().all(|(peer, ..)| self.dial_errors.contains_key(&peer))
    }

    /// Why `peer` is not in use (or not yet).
    fn trouble(&self, peer: Peer, health: Health, error: Option<&PeerError>) -> String {
        // The connection's own words say most (refused, an HTTP port, …).
        match (self.dial_errors.get(&peer), error, health) {
            (Some(dial), _, _) => dial.clone(),
            (_, Some(e), _) => e.to_string(),
            (_, None, Health::Probing { .. }) => "no answer yet".into(),
            (_, None, _) => "not tried".into(),
        }
    }

    /// Every endpoint and why it is not in use.
    fn report(&self) -> String {
        let lines: Vec<String> = self
            .core
            .endpoints()
            .map(|(peer, addr, _, health, error)| format!("{addr}: {}", self.trouble(peer, health, error)))
            .collect();
        lines.join("; ")
    }

    fn members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = Vec::new();
        for (peer, addr, node, health, error) in self.core.endpoints() {
            let Some(id) = node else { continue };
            let trouble = (health != Health::Alive).then(|| self.trouble(peer, health, error));
            match members.iter_mut().find(|m| m.id == id) {
                // A node known at two addresses: the one that answers.
                Some(m) if m.trouble.is_some() && trouble.is_none() => {
                    *m = Member { id, addr: addr.to_string(), trouble };
                }
                Some(_) => {}
                None => members.push(Member { id, addr: addr.to_string(), trouble }),
            }
        }
        members.sort_by_key(|m| m.id);
        members
    }

    fn network(&mut self, n: Net) {
        let now = self.now();
        match n {
            Net::Message(peer, generation, msg) => {
                if self.conns.get(&peer).is_some_and(|c| c.generation == generation) {
                    self.dial_errors.remove(&peer);
                    self.core.handle_message(now, peer, msg);
                }
            }
            Net::Closed(peer, generation, why) => {
                if self.conns.get(&peer).is_some_and(|c| c.generation == generation) {
                    self.conns.remove(&peer);
                    self.dial_errors.insert(peer, why);
                    self.core.handle_disconnect(now, peer);
                }
            }
        }
    }

    fn drain(&mut self) {
        while let Some((peer, req)) = self.core.poll_transmit() {
            // A connection this far behind is as good as broken: what it carried moves on.
            let sent = self.connection(peer).is_some_and(|tx| tx.try_send(req).is_ok());
            if !sent {
                self.conns.remove(&peer);
                let now = self.now();
                self.core.handle_disconnect(now, peer);
            }
        }
        while let Some(e) = self.core.poll_event() {
            self.event(e);
        }
        if *self.reach.borrow() == Reach::Trying && (self.core.all_refused() || self.all_down()) {
            self.reach.send_replace(Reach::Refused(self.report()));
        }
    }

    fn connection(&mut self, peer: Peer) -> Option<&mpsc::Sender<ClientRequest>> {
        if !self.conns.contains_key(&peer) {
            let addr = self.core.peer_addr(peer)?.to_string();
            self.generation += 1;
            let generation = self.generation;
            let (tx, rx) = mpsc::channel(CONNECTION_QUEUE_MAX);
            let link = Link {
                peer,
                generation,
                frame_bytes_max: self.frame_bytes_max,
                dial_timeout: self.dial_timeout,
            };
            tokio::spawn(connection(link, addr, rx, self.net_tx.clone()));
            self.conns.insert(peer, Conn { generation, tx });
        }
        self.conns.get(&peer).map(|c| &c.tx)
    }

    fn event(&mut self, e: ClientEvent) {
        match e {
            ClientEvent::Reached { .. } => {
                let nodes: BTreeMap<NodeId, String> = self
                    .core
                    .endpoints()
                    .filter(|(_, _, _, health, _)| *health == Health::Alive)
                    .filter_map(|(_, addr, node, _, _)| Some((node?, addr.to_string())))
                    .collect();
                self.known.send_replace(nodes);
                self.reach.send_replace(Reach::Reached);
            }
            ClientEvent::SessionOpened(id) => self.session.send_modify(|s| s.current = Some(id)),
            ClientEvent::SessionLost(_) => {
                self.session.send_modify(|s| {
                    s.current = None;
                    s.lost += 1;
                });
                // Subscriptions ended with the session: their streams end too.
                self.subscriptions.clear();
            }
            ClientEvent::Done { op, result, index, session, releases, .. } => {
                if result.is_err() {
                    self.subscriptions.remove(&op);
                }
                if let Some(tx) = self.once.remove(&op) {
                    let result =
                        result.map(|reply| Done { reply, index, session, releases }).map_err(Error::Machine);
                    // Nobody took the grant: the core gives it back, in the session that got it.
                    if let (Err(Ok(done)), Some(s)) = (tx.send(result), session) {
                        let now = self.now();
                        self.core.give_back(now, done.releases, s);
                    }
                }
            }
            ClientEvent::Failed { op, error } => {
                self.subscriptions.remove(&op);
                if let Some(tx) = self.once.remove(&op) {
                    let _ = tx.send(Err(Error::Request(error.clone())));
                }
                if let Some(tx) = self.admin.remove(&op) {
                    let _ = tx.send(Err(Error::Request(error.clone())));
                }
                if let Some(tx) = self.watches.remove(&op) {
                    let _ = tx.try_send(Err(Error::Request(error.clone())));
                }
                if let Some(tx) = self.observers.remove(&op) {
                    let _ = tx.try_send(Err(Error::Request(error)));
                }
            }
            ClientEvent::Admin { op, answer } => {
                if let Some(tx) = self.admin.remove(&op) {
                    let _ = tx.send(Ok(answer));
                }
            }
            ClientEvent::Signal { op, delivery } => {
                // A stream nobody reads any more: its guard unsubscribes when dropped.
                // … and one read too slowly ends (its guard still unsubscribes on drop).
                if self.subscriptions.get(&op).is_some_and(|tx| tx.try_send(delivery).is_err()) {
                    self.subscriptions.remove(&op);
                }
            }
            ClientEvent::Watch { op, event } => {
                if self.watches.get(&op).is_some_and(|tx| !stream_send(tx, Ok(event))) {
                    self.watches.remove(&op);
                    let now = self.now();
                    self.core.cancel(now, op);
                }
            }
            ClientEvent::Election { op, event } => {
                if self.observers.get(&op).is_some_and(|tx| !stream_send(tx, Ok(event))) {
                    self.observers.remove(&op);
                    let now = self.now();
                    self.core.cancel(now, op);
                }
            }
        }
    }
}

/// Sends `item` on a watch or observer stream; `false` when the stream is gone or ends
/// now because its reader fell [`STREAM_BUFFER_MAX`] behind (its last item then says so).
fn stream_send<T>(tx: &mpsc::Sender<Result<T, Error>>, item: Result<T, Error>) -> bool {
    if tx.capacity() <= 1 {
        let _ = tx.try_send(Err(Error::Overloaded("the stream was not read fast enough")));
        return false;
    }
    tx.try_send(item).is_ok()
}

/// Which connection a task serves, and its limits.
struct Link {
    peer: Peer,
    generation: u64,
    frame_bytes_max: usize,
    dial_timeout: Duration,
}

/// One connection to a node: requests out, server messages in; reports when it ends.
async fn connection(link: Link, addr: String, mut rx: mpsc::Receiver<ClientRequest>, net: mpsc::Sender<Net>) {
    let Link { peer, generation, frame_bytes_max, dial_timeout } = link;
    let stream = match tokio::time::timeout(dial_timeout, TcpStream::connect(addr.as_str())).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let _ = net.send(Net::Closed(peer, generation, e.to_string())).await;
            return;
        }
        Err(_) => {
            let _ = net
                .send(Net::Closed(peer, generation, format!("no connection within {dial_timeout:?}")))
                .await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let writer = async {
        let mut buf = Vec::new();
        while let Some(req) = rx.recv().await {
            if let Err(e) = write_frame(&mut w, &Envelope::Request(req), &mut buf, frame_bytes_max).await {
                return e.to_string();
            }
        }
        "closed".to_string()
    };
    let reader = async {
        let mut frames = FrameReader::new(&mut r, frame_bytes_max);
        loop {
            match frames.next().await {
                Ok(Some(Envelope::Response(m))) => {
                    if net.send(Net::Message(peer, generation, m)).await.is_err() {
                        return "closed".to_string();
                    }
                }
                Ok(None) => return "the node closed the connection".to_string(),
                Ok(Some(_)) => return "the node sent something other than a response".to_string(),
                Err(e) => return e.to_string(),
            }
        }
    };
    let why = tokio::select! {
        why = writer => why,
        why = reader => why,
    };
    let _ = net.send(Net::Closed(peer, generation, why)).await;
}
