//! The demo page of the JavaScript package (`host-wasm/package`), served under `/demo/`
//! on every node's HTTP listener: `http://127.0.0.1:7201/demo/` with `concord dev`'s
//! default ports. It runs three replicas in Web Workers in the tab and a `Client`
//! against this cluster. The files are read from the package directory at request time
//! (`CONCORD_DEMO_DIR`, or the source tree this binary was built from), so the page works
//! once the package is built (`host-wasm/build.sh`); until then `/demo/` says so.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::path::{Component, PathBuf};

/// Files of the package that the page needs, by extension, with their content types.
const TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("css", "text/css; charset=utf-8"),
];

/// The package directory the page is served from.
fn root() -> PathBuf {
    std::env::var_os("CONCORD_DEMO_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../host-wasm/package")),
        PathBuf::from,
    )
}

/// The routes of the demo, to merge into the node's HTTP router.
pub(super) fn router() -> Router {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(|| file("demo/index.html".into())))
        .route("/demo/{*path}", get(|Path(path): Path<String>| file(path)))
}

/// A file under the package directory: only plain relative paths, only the page's file
/// types, never the package's dependencies.
async fn file(path: String) -> Response {
    let rel = PathBuf::from(&path);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    let kind = rel.extension().and_then(|e| e.to_str()).and_then(|e| TYPES.iter().find(|(x, _)| *x == e));
    let (true, Some((_, content_type)), false) = (plain, kind, path.starts_with("node_modules")) else {
        return (StatusCode::NOT_FOUND, "not a file of the demo").into_response();
    };
    let full = root().join(&rel);
    let read = tokio::task::spawn_blocking(move || std::fs::read(full)).await;
    match read.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
        Ok(bytes) => ([(header::CONTENT_TYPE, *content_type)], bytes).into_response(),
        Err(e) => (
            StatusCode::NOT_FOUND,
            format!("{path}: {e} (build the package first: host-wasm/build.sh; or set CONCORD_DEMO_DIR)"),
        )
            .into_response(),
    }
}
