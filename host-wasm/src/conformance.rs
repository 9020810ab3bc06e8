//! The shared conformance suite (`tests/conformance`) run by this host's client:
//! `runConformance(options, namespace)` in JS runs every scenario over WebSocket, in
//! whatever runtime loaded the module (Node, a browser, workerd).

use crate::driver::{Handle, Options};
use crate::error::Error;
use crate::{js, parse_options, sleep};
use concord_conformance::{Failure, Host, Scenario, Verdict};
use concord_core::client::calls::Request;
use concord_core::client::OpId;
use concord_core::machine::election::ElectionEvent;
use concord_core::machine::kv::{WatchEvent, WatchFilter};
use concord_core::machine::signal::SignalDelivery;
use concord_core::machine::Reply;
use concord_core::wire::{Answer, RequestBody};
use concord_core::Consistency;
use futures_channel::mpsc;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// How long a scenario's client may take to reach the cluster.
const CONNECT_TIMEOUT_MS: u64 = 10_000;

struct WasmHost {
    options: Options,
    namespace: String,
}

fn failure(e: Error) -> Failure {
    match e {
        Error::Machine(m) => Failure::Machine(m),
        other => Failure::Host(other.to_string()),
    }
}

/// The next item of `rx` within `timeout_ms`: `Ok(None)` if none came.
async fn within<T>(rx: &mut mpsc::Receiver<T>, timeout_ms: u64) -> Result<Option<T>, Failure> {
    match select(rx.next(), Box::pin(sleep(timeout_ms))).await {
        Either::Left((Some(item), _)) => Ok(Some(item)),
        Either::Left((None, _)) => Err(Failure::Host("the stream ended".into())),
        Either::Right(_) => Ok(None),
    }
}

impl Host for WasmHost {
    type Client = Handle;
    type Watch = (OpId, mpsc::Receiver<Result<WatchEvent, Error>>);
    type Subscription = mpsc::Receiver<SignalDelivery>;
    type Observer = (OpId, mpsc::Receiver<Result<ElectionEvent, Error>>);

    fn namespace(&self) -> String {
        self.namespace.clone()
    }

    async fn connect(&self, session_ttl_ms: u64) -> Result<Handle, Failure> {
        let options = Options { session_ttl_ms, ..self.options.clone() };
        let handle = Handle::new(&options).map_err(failure)?;
        match select(Box::pin(handle.reached()), Box::pin(sleep(CONNECT_TIMEOUT_MS))).await {
            Either::Left((r, _)) => r.map_err(failure)?,
            Either::Right(_) => {
                handle.shutdown();
                return Err(Failure::Host(format!("no endpoint answered within {CONNECT_TIMEOUT_MS} ms")));
            }
        }
        Ok(handle)
    }

    async fn crash(&self, client: Handle) -> Result<(), Failure> {
        client.shutdown();
        Ok(())
    }

    async fn close(&self, client: Handle) {
        client.close().await;
    }

    async fn request(&self, client: &Handle, request: Request) -> Result<Reply, Failure> {
        client.request(request, None, Consistency::Linearizable).await.map(|d| d.reply).map_err(failure)
    }

    async fn admin(&self, client: &Handle, body: RequestBody) -> Result<Answer, Failure> {
        client.admin(body).await.map_err(failure)
    }

    async fn watch(
        &self,
        client: &Handle,
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
        within(&mut watch.1, timeout_ms).await?.transpose().map_err(failure)
    }

    async fn subscribe(
        &self,
        client: &Handle,
        pattern: String,
        queue_group: Option<String>,
    ) -> Result<Self::Subscription, Failure> {
        let (request, _) = concord_core::client::calls::subscribe(pattern, queue_group).into_parts();
        let Request::Command(op) = request else {
            return Err(Failure::Host("subscribe is not a command".into()));
        };
        let (_, rx, _) = client.subscribe(op).await.map_err(failure)?;
        Ok(rx)
    }

    async fn next_signal(
        &self,
        sub: &mut Self::Subscription,
        timeout_ms: u64,
    ) -> Result<Option<SignalDelivery>, Failure> {
        within(sub, timeout_ms).await
    }

    async fn observe(&self, client: &Handle, name: String) -> Result<Self::Observer, Failure> {
        Ok(client.observe(name))
    }

    async fn next_election(
        &self,
        observer: &mut Self::Observer,
        timeout_ms: u64,
    ) -> Result<Option<ElectionEvent>, Failure> {
        within(&mut observer.1, timeout_ms).await?.transpose().map_err(failure)
    }

    async fn sleep(&self, ms: u64) {
        sleep(ms).await;
    }
}

/// Runs every scenario of the conformance suite against the cluster that `options`
/// names (as for `Client.connect`), its names under `namespace` → `{ results: [{ name,
/// verdict: "passed" | "failed" | "skipped", detail }], summary }`.
#[wasm_bindgen(js_name = runConformance)]
pub fn run_conformance(options: JsValue, namespace: JsValue) -> Promise {
    future_to_promise(async move {
        let (options, _) = parse_options(&options)?;
        let namespace = js::string(&namespace, "namespace")?;
        let host = WasmHost { options, namespace };
        let results = js_sys::Array::new();
        let mut report = Vec::new();
        for &s in Scenario::ALL {
            let verdict = concord_conformance::run(&host, s).await;
            let (kind, detail) = match &verdict {
                Verdict::Passed => ("passed", String::new()),
                Verdict::Failed(why) => ("failed", why.clone()),
                Verdict::Skipped(why) => ("skipped", (*why).to_string()),
            };
            results.push(&js::object(&[
                ("name", s.name().into()),
                ("verdict", kind.into()),
                ("detail", detail.into()),
            ]));
            report.push((s, verdict));
        }
        let summary = concord_conformance::summary(&report);
        Ok(js::object(&[("results", results.into()), ("summary", summary.into())]))
    })
}
