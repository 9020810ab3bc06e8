//! # concord-conformance
//!
//! Concord's client-visible behaviour, written down once: each [`Scenario`] drives the
//! core's typed calls ([`concord_core::client::calls`]) through a small [`Host`] trait and
//! checks the results every host must give. The tokio host runs them against a real
//! `concord` cluster over TCP; the wasm host runs the same code compiled to WebAssembly
//! over WebSocket in Node, headless Chromium and `workerd`; a microcontroller host can
//! run them over its serial link. A host that cannot do what a scenario needs (crash a
//! client, say) answers [`Failure::Unsupported`] with the reason, and the scenario is
//! reported [`Verdict::Skipped`] with it — never silently passed.
//!
//! The crate is `no_std` + `alloc` and knows no runtime: a host supplies connections,
//! calls, streams and a sleep as `async fn`s, and runs the scenarios on its own
//! executor.
//!
//! ```text
//! let report = concord_conformance::run_all(&my_host).await;
//! assert!(report.iter().all(|(_, v)| !v.is_failed()));
//! ```

#![no_std]

extern crate alloc;

mod scenarios;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use concord_core::client::calls::{Call, Request};
use concord_core::machine::election::ElectionEvent;
use concord_core::machine::kv::{WatchEvent, WatchFilter};
use concord_core::machine::signal::SignalDelivery;
use concord_core::machine::{Error as MachineError, Reply};
use concord_core::wire::{Answer, RequestBody};
use core::fmt;

/// Why a host call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The state machine answered with an error: the part scenarios check.
    Machine(MachineError),
    /// The host cannot do this at all (with why): the scenario is skipped, not failed.
    Unsupported(&'static str),
    /// Anything else the host met (transport, timeout, a reply of the wrong shape).
    Host(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machine(e) => write!(f, "machine error: {e}"),
            Self::Unsupported(why) => write!(f, "unsupported by this host: {why}"),
            Self::Host(e) => write!(f, "host error: {e}"),
        }
    }
}

/// What a host supplies to run the scenarios: clients, each with its own session, and
/// the calls and streams of the core client. Methods take `&self` so that a scenario
/// can run several calls at once (a waiter and the call that releases it).
#[allow(async_fn_in_trait)]
pub trait Host {
    /// A connected client with its own session.
    type Client;
    /// A key-value watch.
    type Watch;
    /// A signal subscription.
    type Subscription;
    /// An election observer.
    type Observer;

    /// A prefix for every name a run uses, unique per run, so that runs against the same
    /// cluster never meet.
    fn namespace(&self) -> String;

    /// Connects a new client whose session lives `session_ttl_ms` without keep-alives.
    async fn connect(&self, session_ttl_ms: u64) -> Result<Self::Client, Failure>;

    /// The client disappears without closing its session, as a crashed process does:
    /// the cluster expires the session after its TTL.
    async fn crash(&self, client: Self::Client) -> Result<(), Failure>;

    /// Closes the client and its session.
    async fn close(&self, client: Self::Client);

    /// Sends a typed call's request (reads linearizable) and returns the raw reply.
    async fn request(&self, client: &Self::Client, request: Request) -> Result<Reply, Failure>;

    /// Sends an administrative request to the leader.
    async fn admin(&self, client: &Self::Client, body: RequestBody) -> Result<Answer, Failure>;

    /// Opens a watch of `filter` from revision `from` (or from now on).
    async fn watch(
        &self,
        client: &Self::Client,
        filter: WatchFilter,
        from: Option<u64>,
    ) -> Result<Self::Watch, Failure>;

    /// The watch's next event, `None` if none came within `timeout_ms`.
    async fn next_watch(
        &self,
        watch: &mut Self::Watch,
        timeout_ms: u64,
    ) -> Result<Option<WatchEvent>, Failure>;

    /// Subscribes to `pattern`, in `queue_group` if given.
    async fn subscribe(
        &self,
        client: &Self::Client,
        pattern: String,
        queue_group: Option<String>,
    ) -> Result<Self::Subscription, Failure>;

    /// The subscription's next signal, `None` if none came within `timeout_ms`.
    async fn next_signal(
        &self,
        sub: &mut Self::Subscription,
        timeout_ms: u64,
    ) -> Result<Option<SignalDelivery>, Failure>;

    /// Observes election `name`.
    async fn observe(&self, client: &Self::Client, name: String) -> Result<Self::Observer, Failure>;

    /// The observer's next event, `None` if none came within `timeout_ms`.
    async fn next_election(
        &self,
        observer: &mut Self::Observer,
        timeout_ms: u64,
    ) -> Result<Option<ElectionEvent>, Failure>;

    /// Waits `ms` milliseconds.
    async fn sleep(&self, ms: u64);
}

/// Runs a typed call on `host` and decodes its reply.
pub async fn call<H: Host, T>(host: &H, client: &H::Client, call: Call<T>) -> Result<T, Failure> {
    let (request, decode) = call.into_parts();
    let reply = host.request(client, request).await?;
    decode.decode(reply).map_err(|e| Failure::Host(format!("{e}")))
}

/// How a scenario ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every expectation held.
    Passed,
    /// An expectation failed: what was expected and what came.
    Failed(String),
    /// The host cannot run it: why.
    Skipped(&'static str),
}

impl Verdict {
    /// Whether the scenario failed.
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passed => f.write_str("passed"),
            Self::Failed(why) => write!(f, "FAILED: {why}"),
            Self::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

pub use scenarios::Scenario;

/// Runs one scenario on `host`.
pub async fn run<H: Host>(host: &H, scenario: Scenario) -> Verdict {
    match scenarios::run(host, scenario).await {
        Ok(()) => Verdict::Passed,
        Err(Failure::Unsupported(why)) => Verdict::Skipped(why),
        Err(Failure::Machine(e)) => Verdict::Failed(format!("unexpected machine error: {e:?}")),
        Err(Failure::Host(why)) => Verdict::Failed(why),
    }
}

/// Runs every scenario on `host`, one after another, in [`Scenario::ALL`]'s order.
pub async fn run_all<H: Host>(host: &H) -> Vec<(Scenario, Verdict)> {
    let mut report = Vec::with_capacity(Scenario::ALL.len());
    for &s in Scenario::ALL {
        report.push((s, run(host, s).await));
    }
    report
}

/// The report as lines, `name: verdict`, closed by a `N passed, N failed, N skipped`
/// line (the form test runners read).
pub fn summary(report: &[(Scenario, Verdict)]) -> String {
    let mut out = String::new();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (s, v) in report {
        match v {
            Verdict::Passed => passed += 1,
            Verdict::Failed(_) => failed += 1,
            Verdict::Skipped(_) => skipped += 1,
        }
        out.push_str(&format!("{}: {v}\n", s.name()));
    }
    out.push_str(&format!("conformance: {passed} passed, {failed} failed, {skipped} skipped\n"));
    out
}
