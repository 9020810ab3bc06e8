//! The shared conformance suite (`tests/conformance`) on the tokio host: every scenario,
//! through the async Rust client over TCP, against three real `concord serve` processes.
//! One cluster serves them all, in sequence; the report names each scenario's verdict.

mod common;

use common::{runtime, Cluster};
use concord_conformance::{Failure, Host, Scenario, Verdict};
use concord_core::client::calls::Request;
use concord_core::machine::election::ElectionEvent;
use concord_core::machine::kv::{WatchEvent, WatchFilter};
use concord_core::machine::signal::SignalDelivery;
use concord_core::machine::Reply;
use concord_core::wire::{Answer, RequestBody};
use concord_core::Consistency;
use concord_tokio::client::{Concord, Error, Subscription};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a connect may take before the scenario fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one scenario may run before it fails.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

struct TokioHost {
    options: concord_tokio::client::Options,
    namespace: String,
}

fn failure(e: Error) -> Failure {
    match e {
        Error::Machine(m) => Failure::Machine(m),
        other => Failure::Host(other.to_string()),
    }
}

impl Host for TokioHost {
    type Client = Concord;
    type Watch = mpsc::Receiver<Result<WatchEvent, Error>>;
    type Subscription = Subscription;
    type Observer = mpsc::Receiver<Result<ElectionEvent, Error>>;

    fn namespace(&self) -> String {
        self.namespace.clone()
    }

    async fn connect(&self, session_ttl_ms: u64) -> Result<Concord, Failure> {
        let mut opts = self.options.clone();
        opts.session_ttl = Duration::from_millis(session_ttl_ms);
        opts.connect_timeout = CONNECT_TIMEOUT;
        Concord::connect(opts).await.map_err(failure)
    }

    async fn crash(&self, client: Concord) -> Result<(), Failure> {
        // Dropping the last handle stops the driver and its connections without closing
        // the session.
        drop(client);
        Ok(())
    }

    async fn close(&self, client: Concord) {
        client.close().await;
    }

    async fn request(&self, client: &Concord, request: Request) -> Result<Reply, Failure> {
        let done = match request {
            Request::Command(op) => client.execute(op).await,
            Request::Read(query) => client.read(query, Consistency::Linearizable).await,
        };
        done.map(|d| d.reply).map_err(failure)
    }

    async fn admin(&self, client: &Concord, body: RequestBody) -> Result<Answer, Failure> {
        client.admin(body).await.map_err(failure)
    }

    async fn watch(
        &self,
        client: &Concord,
        filter: WatchFilter,
        from: Option<u64>,
    ) -> Result<Self::Watch, Failure> {
        Ok(client.watch(filter, from))
    }

    async fn next_watch(
        &self,
        watch: &mut Self::Watch,
        timeout_ms: u64,
    ) -> Result<Option<WatchEvent>, Failure> {
        next(watch, timeout_ms).await
    }

    async fn subscribe(
        &self,
        client: &Concord,
        pattern: String,
        queue_group: Option<String>,
    ) -> Result<Subscription, Failure> {
        client.subscribe(&pattern, queue_group.as_deref()).await.map_err(failure)
    }

    async fn next_signal(
        &self,
        sub: &mut Subscription,
        timeout_ms: u64,
    ) -> Result<Option<SignalDelivery>, Failure> {
        Ok(tokio::time::timeout(Duration::from_millis(timeout_ms), sub.next()).await.ok().flatten())
    }

    async fn observe(&self, client: &Concord, name: String) -> Result<Self::Observer, Failure> {
        Ok(client.observe(&name))
    }

    async fn next_election(
        &self,
        observer: &mut Self::Observer,
        timeout_ms: u64,
    ) -> Result<Option<ElectionEvent>, Failure> {
        next(observer, timeout_ms).await
    }

    async fn sleep(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// A stream's next item within `timeout_ms`; an ended stream is a failure.
async fn next<T>(rx: &mut mpsc::Receiver<Result<T, Error>>, timeout_ms: u64) -> Result<Option<T>, Failure> {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), rx.recv()).await {
        Err(_) => Ok(None),
        Ok(None) => Err(Failure::Host("the stream ended".into())),
        Ok(Some(r)) => r.map(Some).map_err(failure),
    }
}

/// Every scenario of the suite, in order, against one cluster (killed when the test
/// ends, passed or failed); the report names each scenario's verdict.
#[test]
fn every_scenario_passes_on_the_tokio_host() {
    let c = Cluster::start(3);
    let host = TokioHost { options: c.options(), namespace: format!("tokio-{}", std::process::id()) };
    let report = runtime().block_on(async {
        let mut report = Vec::new();
        for &s in Scenario::ALL {
            let bounded = tokio::time::timeout(SCENARIO_TIMEOUT, concord_conformance::run(&host, s)).await;
            let verdict = bounded
                .unwrap_or_else(|_| Verdict::Failed(format!("not finished within {SCENARIO_TIMEOUT:?}")));
            eprintln!("{}: {verdict}", s.name());
            report.push((s, verdict));
        }
        report
    });
    let summary = concord_conformance::summary(&report);
    println!("{summary}");
    assert!(report.iter().all(|(_, v)| *v == Verdict::Passed), "{summary}");
}
