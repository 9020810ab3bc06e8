//! Values between JavaScript and the core: arguments checked (a wrong type is an
//! `INVALID_ARGUMENT` error, never a panic) and results as plain JS objects.

use crate::error::Error;
use concord_core::machine::election::{ElectionChange, ElectionEvent, LeaderInfo};
use concord_core::machine::kv::{KvEntry, WatchEvent, WatchFilter, WatchKind};
use concord_core::machine::signal::SignalDelivery;
use concord_core::machine::Etag;
use concord_core::raft::Status;
use core::time::Duration;
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

/// Largest integer a JS number holds exactly.
const SAFE_INTEGER_MAX: f64 = 9_007_199_254_740_991.0;

/// A required string.
pub(crate) fn string(v: &JsValue, what: &str) -> Result<String, Error> {
    v.as_string().ok_or_else(|| Error::InvalidArgument(format!("{what} must be a string")))
}

/// An optional string (`undefined` or `null`: none).
pub(crate) fn opt_string(v: &JsValue, what: &str) -> Result<Option<String>, Error> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    string(v, what).map(Some)
}

/// A whole number in `min..=max` given as a number or a bigint.
pub(crate) fn int(v: &JsValue, what: &str, min: i128, max: i128) -> Result<i128, Error> {
    let bad = || Error::InvalidArgument(format!("{what} must be an integer in {min}..={max}"));
    let n = if let Some(f) = v.as_f64() {
        if !f.is_finite() || f.fract() != 0.0 || f.abs() > SAFE_INTEGER_MAX {
            return Err(bad());
        }
        f as i128
    } else if v.is_bigint() {
        let s = js_sys::BigInt::from(v.clone()).to_string(10).map_err(|_| bad())?;
        String::from(s).parse::<i128>().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if n < min || n > max {
        return Err(bad());
    }
    Ok(n)
}

/// A signed 64-bit integer.
pub(crate) fn i64_arg(v: &JsValue, what: &str) -> Result<i64, Error> {
    int(v, what, i128::from(i64::MIN), i128::from(i64::MAX)).map(|n| n as i64)
}

/// An unsigned 64-bit integer.
pub(crate) fn u64_arg(v: &JsValue, what: &str) -> Result<u64, Error> {
    int(v, what, 0, i128::from(u64::MAX)).map(|n| n as u64)
}

/// An unsigned 32-bit integer.
pub(crate) fn u32_arg(v: &JsValue, what: &str) -> Result<u32, Error> {
    int(v, what, 0, i128::from(u32::MAX)).map(|n| n as u32)
}

/// An optional timeout in milliseconds (`undefined` or `null`: wait until granted).
pub(crate) fn timeout(v: &JsValue) -> Result<Option<Duration>, Error> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    u64_arg(v, "timeoutMs").map(|ms| Some(Duration::from_millis(ms)))
}

/// Bytes: a `Uint8Array`, or a string (UTF-8).
pub(crate) fn bytes(v: &JsValue, what: &str) -> Result<Vec<u8>, Error> {
    if let Some(s) = v.as_string() {
        return Ok(s.into_bytes());
    }
    if v.is_instance_of::<Uint8Array>() {
        return Ok(Uint8Array::new(v).to_vec());
    }
    Err(Error::InvalidArgument(format!("{what} must be a Uint8Array or a string")))
}

/// Optional bytes (`undefined` or `null`: none).
pub(crate) fn opt_bytes(v: &JsValue, what: &str) -> Result<Option<Vec<u8>>, Error> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    bytes(v, what).map(Some)
}

/// A watch filter: `{ key }`, `{ prefix }` or `{ pattern }`.
pub(crate) fn filter(v: &JsValue) -> Result<WatchFilter, Error> {
    let field = |name: &str| if v.is_object() { Reflect::get(v, &name.into()).ok() } else { None };
    let pick = |name: &str| field(name).filter(|f| !f.is_undefined());
    let bad = || {
        Error::InvalidArgument("a watch filter is { key }, { prefix } or { pattern }, with a string".into())
    };
    let f = match (pick("key"), pick("prefix"), pick("pattern")) {
        (Some(k), None, None) => WatchFilter::Key(k.as_string().ok_or_else(bad)?),
        (None, Some(p), None) => WatchFilter::Prefix(p.as_string().ok_or_else(bad)?),
        (None, None, Some(p)) => WatchFilter::Pattern(p.as_string().ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if !f.is_valid() {
        return Err(Error::InvalidArgument("malformed watch pattern".into()));
    }
    Ok(f)
}

/// An optional field of an options object.
pub(crate) fn field(options: &JsValue, name: &str) -> JsValue {
    if options.is_object() {
        Reflect::get(options, &name.into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// A number when it fits exactly, a bigint when it does not.
pub(crate) fn num_i64(n: i64) -> JsValue {
    if (n as f64).abs() <= SAFE_INTEGER_MAX {
        JsValue::from_f64(n as f64)
    } else {
        js_sys::BigInt::from(n).into()
    }
}

/// A number when it fits exactly, a bigint when it does not.
pub(crate) fn num(n: u64) -> JsValue {
    if n as f64 <= SAFE_INTEGER_MAX {
        JsValue::from_f64(n as f64)
    } else {
        js_sys::BigInt::from(n).into()
    }
}

/// Bytes as a `Uint8Array`, or `null`.
pub(crate) fn opt_u8(v: Option<&[u8]>) -> JsValue {
    v.map_or(JsValue::NULL, |b| Uint8Array::from(b).into())
}

/// An object of `fields`.
pub(crate) fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&o, &(*k).into(), v);
    }
    o.into()
}

/// An etag as the number callers pass back.
pub(crate) fn etag(e: Etag) -> JsValue {
    num(e.0)
}

/// A key-value entry: `{ key, value, etag, version, createRevision, expiresInMs }`.
pub(crate) fn entry(e: &KvEntry) -> JsValue {
    object(&[
        ("key", e.key.as_str().into()),
        ("value", opt_u8(e.value.as_deref())),
        ("etag", etag(e.etag)),
        ("version", num(e.version)),
        ("createRevision", num(e.create_revision)),
        ("expiresInMs", e.expires_in_ms.map_or(JsValue::NULL, num)),
    ])
}

/// An optional entry (`null` when there is none).
pub(crate) fn opt_entry(e: Option<&KvEntry>) -> JsValue {
    e.map_or(JsValue::NULL, entry)
}

/// A watch event: `{ revision, key, kind: "put" | "delete" | "expire", value }`.
pub(crate) fn watch_event(e: &WatchEvent) -> JsValue {
    let kind = match e.kind {
        WatchKind::Put => "put",
        WatchKind::Delete => "delete",
        WatchKind::Expire => "expire",
    };
    object(&[
        ("revision", num(e.revision)),
        ("key", e.key.as_str().into()),
        ("kind", kind.into()),
        ("value", opt_u8(e.value.as_deref())),
    ])
}

/// A signal: `{ subject, payload, index, subscription }`.
pub(crate) fn signal(d: &SignalDelivery) -> JsValue {
    object(&[
        ("subject", d.subject.as_str().into()),
        ("payload", Uint8Array::from(d.payload.as_slice()).into()),
        ("index", num(d.index)),
        ("subscription", num(d.subscription)),
    ])
}

/// An election's leader: `{ session, value, fence }`, or `null`.
pub(crate) fn leader(l: Option<&LeaderInfo>) -> JsValue {
    l.map_or(JsValue::NULL, |l| {
        object(&[
            ("session", num(l.session.0)),
            ("value", Uint8Array::from(l.value.as_slice()).into()),
            ("fence", num(l.fence.0)),
        ])
    })
}

/// An election change: `{ name, change, leader, index }`.
pub(crate) fn election_event(e: &ElectionEvent) -> JsValue {
    let change = match e.change {
        ElectionChange::Elected => "elected",
        ElectionChange::Proclaimed => "proclaimed",
        ElectionChange::Resigned => "resigned",
        ElectionChange::Failover => "failover",
        ElectionChange::Current => "current",
    };
    object(&[
        ("name", e.name.as_str().into()),
        ("change", change.into()),
        ("leader", leader(e.leader.as_ref())),
        ("index", num(e.index)),
    ])
}

/// A node's status: `{ id, role, term, leader, commitIndex, appliedIndex, lastIndex, voters }`.
pub(crate) fn status(s: &Status) -> JsValue {
    let voters = js_sys::Array::new();
    for v in &s.membership.voters {
        voters.push(&num(v.0));
    }
    object(&[
        ("id", num(s.id.0)),
        ("role", format!("{:?}", s.role).to_lowercase().into()),
        ("term", num(s.term)),
        ("leader", s.leader.map_or(JsValue::NULL, |l| num(l.0))),
        ("commitIndex", num(s.commit_index)),
        ("appliedIndex", num(s.applied_index)),
        ("lastIndex", num(s.last_index)),
        ("voters", voters.into()),
    ])
}
