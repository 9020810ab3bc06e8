//! The HTTP endpoint of a node: `/metrics` (Prometheus), `/status` (JSON), `/` (the
//! status page) and `/snapshot` (a snapshot of the applied state taken on request,
//! postcard-encoded, for `concord snapshot save`). Each report asks the node loop for a
//! fresh [`StatusReport`].

use crate::metrics::StatusReport;
use crate::server::{StatusInputs, STATUS_ITEMS_MAX};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::fmt::Write as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

type Inputs = StatusInputs;

pub(crate) async fn serve(listener: TcpListener, inputs: Inputs, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/snapshot", get(snapshot))
        .with_state(inputs);
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!(error = %e, "HTTP endpoint stopped");
    }
}

/// A report from the node loop listing at most `items` of each kind.
async fn report(inputs: &Inputs, items: usize) -> Result<StatusReport, Response> {
    inputs
        .report(items)
        .await
        .ok_or_else(|| (StatusCode::SERVICE_UNAVAILABLE, "node is stopping").into_response())
}

/// A snapshot of the node's applied state, taken now (the node also stores it and
/// compacts its log, as at its snapshot threshold).
async fn snapshot(State(inputs): State<Inputs>) -> Response {
    match inputs.snapshot().await {
        Some(Some(snap)) => match postcard::to_allocvec(&snap) {
            Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Some(None) => (StatusCode::NOT_FOUND, "nothing applied yet").into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "node is stopping").into_response(),
    }
}

async fn status(State(inputs): State<Inputs>) -> Response {
    match report(&inputs, STATUS_ITEMS_MAX).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => e,
    }
}

async fn metrics(State(inputs): State<Inputs>) -> Response {
    // Totals only: a scrape builds no lists.
    match report(&inputs, 0).await {
        Ok(r) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], r.prometheus()).into_response(),
        Err(e) => e,
    }
}

async fn page(State(inputs): State<Inputs>) -> Response {
    match report(&inputs, STATUS_ITEMS_MAX).await {
        Ok(r) => Html(render_page(&r)).into_response(),
        Err(e) => e,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The status page: the node, its view of the group, sessions and held primitives.
fn render_page(r: &StatusReport) -> String {
    let s = &r.replica.raft;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
         <title>Concord node {id}</title><style>body{{font-family:sans-serif;margin:2em}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
         th{{background:#f3f3f3}}</style></head><body><h1>Concord node {id}</h1>",
        id = r.id
    );
    let leader = s.leader.map_or("none known".to_string(), |l| l.0.to_string());
    let _ = write!(
        h,
        "<table><tr><th>role</th><td>{:?}</td></tr><tr><th>term</th><td>{}</td></tr>\
         <tr><th>leader</th><td>{leader}</td></tr><tr><th>commit / applied / last index</th><td>{} / {} / {}</td></tr>\
         <tr><th>snapshot index</th><td>{}</td></tr><tr><th>client / peer / http</th><td>{} / {} / {}</td></tr></table>",
        s.role, s.term, s.commit_index, s.applied_index, s.last_index, s.snapshot_index, r.client_addr,
        r.peer_addr, r.http_addr
    );
    h.push_str("<h2>Nodes</h2><table><tr><th>id</th><th>kind</th><th>peer address</th></tr>");
    for id in &s.membership.voters {
        let addr = r.peers.iter().find(|(p, _)| *p == id.0).map_or(String::new(), |(_, a)| a.to_string());
        let me = if id.0 == r.id { " (this node)" } else { "" };
        let lead = if s.leader == Some(*id) { ", leader" } else { "" };
        let _ = write!(h, "<tr><td>{}{me}</td><td>voter{lead}</td><td>{addr}</td></tr>", id.0);
    }
    for id in &s.membership.learners {
        let _ = write!(h, "<tr><td>{}</td><td>learner</td><td></td></tr>", id.0);
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<h2>Sessions ({})</h2>{}<table><tr><th>id</th><th>ttl ms</th><th>expires in ms</th></tr>",
        r.replica.sessions_open,
        shown(r.replica.sessions.len(), r.replica.sessions_open)
    );
    for x in &r.replica.sessions {
        let _ =
            write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", x.id.0, x.ttl_ms, x.expires_in_us / 1000);
    }
    let n = r.replica.primitives.counts;
    let _ = write!(
        h,
        "</table><h2>Held locks ({})</h2>{}<table><tr><th>name</th><th>holder session</th><th>fence</th><th>waiters</th></tr>",
        n.locks,
        shown(r.replica.primitives.locks.len(), n.locks)
    );
    for l in &r.replica.primitives.locks {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.name),
            l.holder.map_or(String::from("-"), |s| s.0.to_string()),
            l.fence.map_or(String::from("-"), |f| f.0.to_string()),
            l.waiters.len()
        );
    }
    let _ = write!(
        h,
        "</table><h2>Read-write locks ({})</h2>{}<table><tr><th>name</th><th>writer</th><th>readers</th></tr>",
        n.rwlocks,
        shown(r.replica.primitives.rwlocks.len(), n.rwlocks)
    );
    for l in &r.replica.primitives.rwlocks {
        let w = l.writer.map_or("-".to_string(), |(s, f)| format!("session {} (fence {})", s.0, f.0));
        let _ = write!(h, "<tr><td>{}</td><td>{w}</td><td>{}</td></tr>", esc(&l.name), l.readers);
    }
    let _ = write!(
        h,
        "</table><h2>Semaphores ({})</h2>{}<table><tr><th>name</th><th>available</th><th>held</th></tr>",
        n.semaphores,
        shown(r.replica.primitives.semaphores.len(), n.semaphores)
    );
    for x in &r.replica.primitives.semaphores {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&x.name), x.available, x.held);
    }
    let _ = write!(
        h,
        "</table><h2>Elections ({})</h2>{}<table><tr><th>name</th><th>leader session</th><th>fence</th></tr>",
        n.elections,
        shown(r.replica.primitives.elections.len(), n.elections)
    );
    for (name, l) in &r.replica.primitives.elections {
        let (who, fence) =
            l.as_ref().map_or(("-".into(), "-".into()), |l| (l.session.0.to_string(), l.fence.0.to_string()));
        let _ = write!(h, "<tr><td>{}</td><td>{who}</td><td>{fence}</td></tr>", esc(name));
    }
    h.push_str(
        "</table><p><a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a></p></body></html>",
    );
    h
}

/// A note when a list shows only the first of its items.
fn shown(listed: usize, total: usize) -> String {
    if listed < total {
        format!("<p>the first {listed} of {total}</p>")
    } else {
        String::new()
    }
}
