//! The HTTP endpoint of a node: `/metrics` (Prometheus), `/status` (JSON), `/` (the
//! status page) and `/snapshot` (a snapshot of the applied state taken on request,
//! postcard-encoded, for `concord snapshot save`), plus the `routes` the node adds
//! (`/ws`, `/demo/`). Each report asks the node loop for a fresh [`StatusReport`].

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

pub(crate) async fn serve(
    listener: TcpListener,
    inputs: Inputs,
    routes: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/snapshot", get(snapshot))
        .with_state(inputs)
        .merge(routes);
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    // Handlers may ask where a connection comes from (the WebSocket endpoint does).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
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
    // Reachability and lag are the leader's to know: another node shows them blank.
    h.push_str(
        "<h2>Nodes</h2><table><tr><th>id</th><th>kind</th><th>peer address</th><th>client address</th>\
         <th>reachable</th><th>match index</th><th>lag</th><th>last heard</th></tr>",
    );
    let members = s
        .membership
        .voters
        .iter()
        .map(|id| (id, "voter"))
        .chain(s.membership.learners.iter().map(|id| (id, "learner")));
    for (id, kind) in members {
        let addr = r.peers.iter().find(|(p, _)| *p == id.0).map_or(String::new(), |(_, a)| a.to_string());
        let client =
            r.replica.cluster.members.iter().find(|m| m.node == *id).and_then(|m| m.client_addr.clone());
        let me = if id.0 == r.id { " (this node)" } else { "" };
        let lead = if s.leader == Some(*id) { ", leader" } else { "" };
        let progress = r.replica.replication.iter().find(|p| p.node == *id).map_or_else(
            || "<td></td><td></td><td></td><td></td>".to_string(),
            |p| {
                format!(
                    "<td>{}</td><td>{}</td><td>{}</td><td>{} ms ago</td>",
                    if p.reachable { "yes" } else { "no" },
                    p.match_index,
                    p.lag,
                    p.heard_us_ago / 1000
                )
            },
        );
        let _ = write!(
            h,
            "<tr><td>{}{me}</td><td>{kind}{lead}</td><td>{addr}</td><td>{}</td>{progress}</tr>",
            id.0,
            esc(&client.unwrap_or_default())
        );
    }
    h.push_str("</table>");
    let p = &r.replica.primitives;
    let n = p.counts;
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let sessions = r.replica.sessions.iter().map(|x| {
        let from = r.session_addrs.iter().find(|(s, _)| *s == x.id.0).map_or("", |(_, a)| a.as_str());
        vec![x.id.0.to_string(), x.ttl_ms.to_string(), (x.expires_in_us / 1000).to_string(), esc(from)]
    });
    let heads = ["id", "ttl ms", "expires in ms", "client (connected here)"];
    table(&mut h, "Sessions", r.replica.sessions_open, &heads, sessions.collect());
    let locks = p.locks.iter().map(|l| {
        let holder = dash(l.holder.map(|s| s.0.to_string()));
        vec![esc(&l.name), holder, dash(l.fence.map(|f| f.0.to_string())), l.waiters.len().to_string()]
    });
    table(&mut h, "Held locks", n.locks, &["name", "holder session", "fence", "waiters"], locks.collect());
    let rwlocks = p.rwlocks.iter().map(|l| {
        let w = dash(l.writer.map(|(s, f)| format!("session {} (fence {})", s.0, f.0)));
        vec![esc(&l.name), w, l.readers.to_string()]
    });
    table(&mut h, "Read-write locks", n.rwlocks, &["name", "writer", "readers"], rwlocks.collect());
    let sems = p.semaphores.iter().map(|x| vec![esc(&x.name), x.available.to_string(), x.held.to_string()]);
    table(&mut h, "Semaphores", n.semaphores, &["name", "available", "held"], sems.collect());
    let latches = p
        .latches
        .iter()
        .map(|(name, count, waiters)| vec![esc(name), count.to_string(), waiters.to_string()]);
    table(&mut h, "Latches", n.latches, &["name", "count", "waiters"], latches.collect());
    let barriers = p
        .barriers
        .iter()
        .map(|b| vec![esc(&b.name), b.generation.to_string(), b.arrived.to_string(), b.parties.to_string()]);
    table(&mut h, "Barriers", n.barriers, &["name", "generation", "arrived", "parties"], barriers.collect());
    let _ = write!(
        h,
        "<h2>Key-value store</h2><table><tr><th>keys</th><td>{}</td></tr><tr><th>bytes of keys and values</th><td>{}</td></tr></table>",
        n.kv_keys, n.kv_bytes
    );
    let elections = p.elections.iter().map(|(name, l)| {
        let value = l.as_ref().map_or(String::new(), |l| esc(&String::from_utf8_lossy(&l.value)));
        let fence = dash(l.as_ref().map(|l| l.fence.0.to_string()));
        vec![esc(name), dash(l.as_ref().map(|l| l.session.0.to_string())), fence, value]
    });
    table(
        &mut h,
        "Elections",
        n.elections,
        &["name", "leader session", "fence", "value"],
        elections.collect(),
    );
    h.push_str("<p><a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a></p></body></html>");
    h
}

/// A section: its title with the total, a note if only the first rows are listed, and a
/// table of `rows` (cells already escaped) under `heads`.
fn table(h: &mut String, title: &str, total: usize, heads: &[&str], rows: Vec<Vec<String>>) {
    let _ = write!(h, "<h2>{title} ({total})</h2>{}<table><tr>", shown(rows.len(), total));
    for head in heads {
        let _ = write!(h, "<th>{head}</th>");
    }
    h.push_str("</tr>");
    for row in rows {
        h.push_str("<tr>");
        for cell in row {
            let _ = write!(h, "<td>{cell}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

/// A note when a list shows only the first of its items.
fn shown(listed: usize, total: usize) -> String {
    if listed < total {
        format!("<p>the first {listed} of {total}</p>")
    } else {
        String::new()
    }
}
