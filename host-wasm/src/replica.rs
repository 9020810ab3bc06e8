//! A full Concord member driven from JavaScript: the core's [`Replica`](CoreReplica)
//! with its storage in the core's [`LogStore`] over a [`Media`] the caller supplies.
//!
//! JS owns the transport, the clock and the medium: it passes what a peer or client sent
//! (one protocol payload per message, as `postMessage` keeps messages whole) with the
//! time, drains what to send, and calls [`Replica::tick`] when [`Replica::timeout_ms`]
//! says. Each input is followed by a complete drain of the core, storage first: every
//! write is appended and synced through the store before anything that depends on it
//! leaves (persist before send is the core's rule; the store keeps the format and the
//! recovery). A replica built again over the same medium restarts from what it stored.
//!
//! A medium whose `sync()` cannot finish at once (IndexedDB: its transactions commit
//! later) returns a flush number from `sync()` and reports, through `durable()`, the
//! highest flush that committed. The replica then confirms a write to the core only once
//! `durable()` reaches the flush that holds it, at the start of a later drain; until then
//! the core keeps back whatever depends on the write (votes, append acknowledgements,
//! commits and the answers to clients that follow from them).

use crate::error::Error;
use crate::js;
use concord_core::machine::Limits;
use concord_core::raft::WriteToken;
use concord_core::server::{ConnId, Replica as CoreReplica, ReplicaOutputs, ServeLimits};
use concord_core::setup::{Bootstrap, NodeSetup};
use concord_core::storage::{LogOptions, LogStore, Media, MemMedia};
use concord_core::wire::{decode_payload, encode_payload, Envelope, ServerMessage};
use concord_core::{Config, Event, GroupId, Instant, Membership, Message, NodeId, StorageWrite};
use js_sys::{Array, Function, Reflect, Uint8Array};
use std::collections::VecDeque;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Largest protocol payload a replica sends or accepts, bytes.
pub const PAYLOAD_BYTES_MAX: usize = 4 << 20;

/// Flushes of a deferred medium that a replica waits for at once. A medium that starts a
/// flush only when the previous one committed has at most two outstanding (the one
/// committing and the next); more means the medium does not report its flushes, and the
/// replica stops with a storage error rather than queue without bound.
pub const FLUSHES_PENDING_MAX: usize = 64;

/// A medium in JavaScript: an object with `segments()`, `read(seq)`, `create(seq)`,
/// `append(seq, bytes)`, `sync()`, `truncate(seq, len)`, `install(seq, bytes)`,
/// `remove(seq)`, `readSnapshot()` and `writeSnapshot(bytes)`, called synchronously
/// (see the package's `MemoryStorage`). A throw is a storage error.
///
/// `sync()` returns nothing when everything written is durable on return, or a flush
/// number when it becomes durable later: then the medium also has `durable()`, the
/// highest flush number that is durable (every lower one is too), which throws once a
/// flush failed (see the package's `IndexedDbStorage`).
pub struct JsMedia {
    obj: JsValue,
    /// What the last `sync()` returned: `None` if it was durable on return.
    flush: Option<u64>,
}

impl JsMedia {
    /// The medium `obj`.
    pub fn new(obj: JsValue) -> Self {
        Self { obj, flush: None }
    }

    fn call(&self, name: &str, args: &[JsValue]) -> Result<JsValue, String> {
        let f = Reflect::get(&self.obj, &name.into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| format!("storage has no method {name}"))?;
        let args: Array = args.iter().collect();
        f.apply(&self.obj, &args).map_err(|e| {
            let e = js_sys::Error::from(e);
            match Reflect::get(&e, &"code".into()).ok().and_then(|c| c.as_string()) {
                Some(code) => format!("storage {name}: {code}: {}", e.message()),
                None => format!("storage {name}: {}", e.message()),
            }
        })
    }

    /// The highest flush number that is durable.
    fn durable(&self) -> Result<u64, String> {
        flush_number(&self.call("durable", &[])?)
            .ok_or_else(|| "storage durable() must return a flush number".into())
    }
}

/// A flush number: a non-negative integer.
fn flush_number(v: &JsValue) -> Option<u64> {
    v.as_f64().filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0).map(|n| n as u64)
}

fn seq_js(seq: u64) -> JsValue {
    JsValue::from_f64(seq as f64)
}

fn bytes_of(v: &JsValue, what: &str) -> Result<Vec<u8>, String> {
    if v.is_instance_of::<Uint8Array>() {
        Ok(Uint8Array::new(v).to_vec())
    } else {
        Err(format!("storage {what} must return a Uint8Array"))
    }
}

impl Media for JsMedia {
    type Error = String;

    fn segments(&mut self, out: &mut Vec<u64>) -> Result<(), String> {
        let list = self.call("segments", &[])?;
        out.clear();
        for v in Array::from(&list).iter() {
            let n = v.as_f64().filter(|n| *n >= 0.0 && n.fract() == 0.0).ok_or("segments must be numbers")?;
            out.push(n as u64);
        }
        Ok(())
    }

    fn read(&mut self, seq: u64, buf: &mut Vec<u8>) -> Result<(), String> {
        *buf = bytes_of(&self.call("read", &[seq_js(seq)])?, "read")?;
        Ok(())
    }

    fn create(&mut self, seq: u64) -> Result<(), String> {
        self.call("create", &[seq_js(seq)]).map(drop)
    }

    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), String> {
        self.call("append", &[seq_js(seq), Uint8Array::from(bytes).into()]).map(drop)
    }

    fn sync(&mut self) -> Result<(), String> {
        let v = self.call("sync", &[])?;
        self.flush = if v.is_undefined() || v.is_null() {
            None
        } else {
            Some(flush_number(&v).ok_or("storage sync() must return nothing or a flush number")?)
        };
        Ok(())
    }

    fn truncate(&mut self, seq: u64, len: u64) -> Result<(), String> {
        self.call("truncate", &[seq_js(seq), seq_js(len)]).map(drop)
    }

    fn install(&mut self, seq: u64, bytes: &[u8]) -> Result<(), String> {
        self.call("install", &[seq_js(seq), Uint8Array::from(bytes).into()]).map(drop)
    }

    fn remove(&mut self, seq: u64) -> Result<(), String> {
        self.call("remove", &[seq_js(seq)]).map(drop)
    }

    fn read_snapshot(&mut self, buf: &mut Vec<u8>) -> Result<bool, String> {
        let v = self.call("readSnapshot", &[])?;
        if v.is_null() || v.is_undefined() {
            return Ok(false);
        }
        *buf = bytes_of(&v, "readSnapshot")?;
        Ok(true)
    }

    fn write_snapshot(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.call("writeSnapshot", &[Uint8Array::from(bytes).into()]).map(drop)
    }
}

/// Where a replica keeps its log: a JS medium, or memory inside the module.
enum Store {
    Js(LogStore<JsMedia>),
    Mem(LogStore<MemMedia>),
}

/// The store, and the writes a deferred medium has not yet made durable.
struct Disk {
    store: Store,
    /// `(flush, token)`: the last write whose `sync()` returned `flush`, oldest first.
    pending: VecDeque<(u64, WriteToken)>,
}

impl Disk {
    /// Appends and syncs `w`: whether it (and every write before it) is durable now.
    fn persist(&mut self, w: &StorageWrite) -> Result<bool, String> {
        let s = match &mut self.store {
            Store::Mem(s) => {
                return s.append(w).and_then(|()| s.sync()).map(|()| true).map_err(|e| e.to_string())
            }
            Store::Js(s) => s,
        };
        s.append(w).and_then(|()| s.sync()).map_err(|e| e.to_string())?;
        let Some(flush) = s.media().flush else {
            self.pending.clear();
            return Ok(true);
        };
        if flush <= s.media().durable()? {
            self.pending.clear();
            return Ok(true);
        }
        let full = self.pending.len() >= FLUSHES_PENDING_MAX;
        match self.pending.back_mut() {
            Some((f, token)) if *f == flush => *token = w.token,
            Some((f, _)) if *f > flush => {
                return Err(format!("storage sync() went back from flush {f} to {flush}"))
            }
            _ if full => return Err(format!("more than {FLUSHES_PENDING_MAX} storage flushes outstanding")),
            _ => self.pending.push_back((flush, w.token)),
        }
        Ok(false)
    }

    /// The last write a deferred medium has made durable since the last call, if any.
    fn durable(&mut self) -> Result<Option<WriteToken>, String> {
        let Store::Js(s) = &self.store else { return Ok(None) };
        if self.pending.is_empty() {
            return Ok(None);
        }
        let durable = s.media().durable()?;
        let mut last = None;
        while let Some(&(flush, token)) = self.pending.front() {
            if flush > durable {
                break;
            }
            last = Some(token);
            self.pending.pop_front();
        }
        Ok(last)
    }
}

/// What one drain produced, in order.
struct Out<'a> {
    peers: Vec<(u64, Vec<u8>)>,
    clients: Vec<(u64, Vec<u8>)>,
    events: Vec<Event<()>>,
    disk: &'a mut Disk,
    failed: Option<String>,
}

impl ReplicaOutputs for Out<'_> {
    fn persist(&mut self, write: StorageWrite) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match self.disk.persist(&write) {
            Ok(durable) => durable,
            Err(e) => {
                // Unconfirmed, the write holds back everything that depends on it.
                self.failed = Some(e);
                false
            }
        }
    }

    fn send(&mut self, m: Message) {
        let to = m.to.0;
        let mut bytes = Vec::new();
        if encode_payload(&Envelope::Raft(m), &mut bytes).is_ok() {
            self.peers.push((to, bytes));
        }
    }

    fn client(&mut self, conn: ConnId, m: ServerMessage) {
        let mut bytes = Vec::new();
        if encode_payload(&Envelope::Response(m), &mut bytes).is_ok() {
            self.clients.push((conn.0, bytes));
        }
    }

    fn event(&mut self, e: Event<()>) {
        self.events.push(e);
    }
}

/// One Concord member, driven by the caller (see the module docs).
#[wasm_bindgen]
pub struct Replica {
    id: u64,
    replica: CoreReplica,
    disk: Disk,
    last: Instant,
    failed: Option<String>,
}

fn instant(now_ms: f64) -> Result<Instant, Error> {
    if !now_ms.is_finite() || now_ms < 0.0 {
        return Err(Error::InvalidArgument(
            "now must be a finite, non-negative number of milliseconds".into(),
        ));
    }
    Ok(Instant::from_micros((now_ms * 1000.0) as u64))
}

/// Where a replica's log lives.
pub enum Medium {
    /// A JS object (see [`JsMedia`]).
    Js(JsValue),
    /// Memory inside the module; [`Replica::into_memory`] takes it back for a restart.
    Memory(MemMedia),
}

/// What one drain sends: `(to node, payload)` to peers, `(connection, payload)` to
/// clients.
pub type Drained = (Vec<(u64, Vec<u8>)>, Vec<(u64, Vec<u8>)>);

impl Replica {
    /// Node `id` of a group of `members`, its log in `medium` (what it holds already is
    /// recovered: a restart), started at `now_ms` (a monotonic clock in milliseconds)
    /// with the core's randomness seeded by `seed`.
    pub fn create(id: u64, members: &[u64], medium: Medium, now_ms: f64, seed: u64) -> Result<Self, Error> {
        if !members.contains(&id) {
            return Err(Error::InvalidArgument(format!("node {id} is not one of the members {members:?}")));
        }
        let now = instant(now_ms)?;
        let storage = Error::Storage;
        let (store, persisted) = match medium {
            Medium::Js(m) => {
                let (s, r) = LogStore::open(JsMedia::new(m), LogOptions::default())
                    .map_err(|e| storage(e.to_string()))?;
                (Store::Js(s), r.persisted)
            }
            Medium::Memory(m) => {
                let (s, r) = LogStore::open(m, LogOptions::default()).map_err(|e| storage(e.to_string()))?;
                (Store::Mem(s), r.persisted)
            }
        };
        let serve = ServeLimits { frame_bytes_max: PAYLOAD_BYTES_MAX, ..ServeLimits::default() };
        let setup = NodeSetup::new(Config::new(NodeId(id), GroupId(1)), Limits::default(), serve);
        let voters = Membership::with_voters(members.iter().map(|m| NodeId(*m)));
        let replica = setup
            .replica(persisted, Bootstrap::NewCluster(voters), now, seed)
            .map_err(|e| Error::InvalidArgument(format!("node {id} cannot start: {e}")))?;
        let disk = Disk { store, pending: VecDeque::new() };
        let mut r = Self { id, replica, disk, last: now, failed: None };
        r.replica.handle_timeout(now);
        Ok(r)
    }

    fn at(&mut self, now_ms: f64) -> Result<Instant, Error> {
        self.unless_failed()?;
        let now = instant(now_ms)?.max(self.last);
        self.last = now;
        Ok(now)
    }

    /// A peer's payload. Malformed bytes, or a message not from `from`, are refused.
    pub fn peer(&mut self, now_ms: f64, from: u64, payload: &[u8]) -> Result<(), Error> {
        let now = self.at(now_ms)?;
        match decode_payload(payload, PAYLOAD_BYTES_MAX) {
            Ok(Envelope::Raft(m)) if m.from.0 == from => {
                self.replica.handle_message(now, m).map_err(|e| Error::InvalidArgument(e.to_string()))
            }
            Ok(_) => Err(Error::InvalidArgument(format!("not a Raft message from node {from}"))),
            Err(e) => Err(Error::InvalidArgument(format!("malformed peer message: {e}"))),
        }
    }

    /// A client's payload on connection `conn`.
    pub fn client(&mut self, now_ms: f64, conn: u64, payload: &[u8]) -> Result<(), Error> {
        let now = self.at(now_ms)?;
        match decode_payload(payload, PAYLOAD_BYTES_MAX) {
            Ok(Envelope::Request(req)) => {
                self.replica.handle_client(now, ConnId(conn), req);
                Ok(())
            }
            Ok(_) => Err(Error::InvalidArgument("not a client request".into())),
            Err(e) => Err(Error::InvalidArgument(format!("malformed client message: {e}"))),
        }
    }

    /// Stops the replica; its in-module medium, to restart from (`None` for a JS one,
    /// which the caller holds).
    pub fn into_memory(self) -> Option<MemMedia> {
        match self.disk.store {
            Store::Mem(s) => Some(s.into_media()),
            Store::Js(_) => None,
        }
    }

    /// Drains the core (storage written and synced first): what to send.
    pub fn drain_bytes(&mut self) -> Result<Drained, Error> {
        let out = self.drain_out()?;
        Ok((out.peers, out.clients))
    }

    /// Time passed.
    pub fn timeout(&mut self, now_ms: f64) -> Result<(), Error> {
        let now = self.at(now_ms)?;
        self.replica.handle_timeout(now);
        Ok(())
    }

    /// When the next [`Replica::timeout`] is due, milliseconds on the caller's clock.
    pub fn deadline_ms(&self) -> f64 {
        self.replica.poll_timeout().as_micros() as f64 / 1000.0
    }

    /// Its Raft status.
    pub fn raft_status(&self) -> concord_core::Status {
        self.replica.report(0).raft
    }

    fn unless_failed(&self) -> Result<(), Error> {
        match &self.failed {
            Some(e) => Err(Error::Storage(format!("the replica stopped: {e}"))),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: String) -> Error {
        self.failed = Some(e.clone());
        Error::Storage(e)
    }

    /// How many flushes of a deferred medium the replica waits for.
    pub fn flushes_pending(&self) -> usize {
        self.disk.pending.len()
    }

    /// Drains the core: first what a deferred medium made durable since the last drain
    /// is confirmed, then storage is written and synced, then what may leave leaves.
    fn drain_out(&mut self) -> Result<Out<'_>, Error> {
        self.unless_failed()?;
        match self.disk.durable() {
            Ok(Some(token)) => {
                self.replica.handle_persisted(token).map_err(|e| Error::InvalidArgument(e.to_string()))?
            }
            Ok(None) => {}
            Err(e) => return Err(self.fail(e)),
        }
        let mut out = Out {
            peers: Vec::new(),
            clients: Vec::new(),
            events: Vec::new(),
            disk: &mut self.disk,
            failed: None,
        };
        let driven = self.replica.drive(&mut out);
        if let Some(e) = out.failed.take() {
            self.failed = Some(e.clone());
            return Err(Error::Storage(e));
        }
        driven.map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(out)
    }
}

#[wasm_bindgen]
impl Replica {
    /// `new Replica({ id, members, storage?, now, seed? })`: `storage` is a medium (see
    /// `MemoryStorage`); without one the log lives in the module's memory.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<Self, JsValue> {
        let id = js::u64_arg(&js::field(&options, "id"), "id")?;
        let list = js::field(&options, "members");
        if !Array::is_array(&list) {
            return Err(Error::InvalidArgument("members must be an array of node ids".into()).into());
        }
        let members = Array::from(&list)
            .iter()
            .map(|m| js::u64_arg(&m, "each member"))
            .collect::<Result<Vec<_>, _>>()?;
        let storage = js::field(&options, "storage");
        let medium = if storage.is_undefined() || storage.is_null() {
            Medium::Memory(MemMedia::new())
        } else {
            Medium::Js(storage)
        };
        let now = js::field(&options, "now")
            .as_f64()
            .ok_or_else(|| Error::InvalidArgument("now must be a number".into()))?;
        let seed = match js::field(&options, "seed") {
            v if v.is_undefined() => (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64,
            v => js::u64_arg(&v, "seed")?,
        };
        Ok(Self::create(id, &members, medium, now, seed)?)
    }

    /// This node's id.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> f64 {
        self.id as f64
    }

    /// A peer's message (`from` its node id).
    #[wasm_bindgen(js_name = handlePeer)]
    pub fn handle_peer(&mut self, now: f64, from: JsValue, payload: &[u8]) -> Result<(), JsValue> {
        let from = js::u64_arg(&from, "from")?;
        Ok(self.peer(now, from, payload)?)
    }

    /// A client's message on connection `conn`.
    #[wasm_bindgen(js_name = handleClient)]
    pub fn handle_client(&mut self, now: f64, conn: JsValue, payload: &[u8]) -> Result<(), JsValue> {
        let conn = js::u64_arg(&conn, "conn")?;
        Ok(self.client(now, conn, payload)?)
    }

    /// Client connection `conn` closed.
    #[wasm_bindgen(js_name = clientClosed)]
    pub fn client_closed(&mut self, conn: JsValue) -> Result<(), JsValue> {
        self.replica.handle_disconnect(ConnId(js::u64_arg(&conn, "conn")?));
        Ok(())
    }

    /// Time passed: call when [`Replica::timeout_ms`] says.
    pub fn tick(&mut self, now: f64) -> Result<(), JsValue> {
        Ok(self.timeout(now)?)
    }

    /// Milliseconds from `now` until [`Replica::tick`] is due.
    #[wasm_bindgen(js_name = timeoutMs)]
    pub fn timeout_ms(&self, now: f64) -> f64 {
        let now = instant(now).unwrap_or(self.last).max(self.last);
        self.replica.poll_timeout().saturating_since_us(now).div_ceil(1000) as f64
    }

    /// Drains after any call above: `{ peers: [{ to, bytes }], clients: [{ conn, bytes }],
    /// events: [{ role, term, leader }] }`, to deliver in order.
    pub fn drain(&mut self) -> Result<JsValue, JsValue> {
        let out = self.drain_out()?;
        let peers = Array::new();
        for (to, bytes) in &out.peers {
            peers.push(&js::object(&[
                ("to", js::num(*to)),
                ("bytes", Uint8Array::from(bytes.as_slice()).into()),
            ]));
        }
        let clients = Array::new();
        for (conn, bytes) in &out.clients {
            clients.push(&js::object(&[
                ("conn", js::num(*conn)),
                ("bytes", Uint8Array::from(bytes.as_slice()).into()),
            ]));
        }
        let events = Array::new();
        for e in &out.events {
            match e {
                Event::StateChanged { role, term, leader } => {
                    events.push(&js::object(&[
                        ("role", format!("{role:?}").to_lowercase().into()),
                        ("term", js::num(*term)),
                        ("leader", leader.map_or(JsValue::NULL, |l| js::num(l.0))),
                    ]));
                }
                // The replica was removed from the group: it campaigns no more; its owner
                // should stop driving it.
                Event::Removed { by } => {
                    events.push(&js::object(&[("removed", JsValue::TRUE), ("by", js::num(by.0))]));
                }
                _ => {}
            }
        }
        Ok(js::object(&[("peers", peers.into()), ("clients", clients.into()), ("events", events.into())]))
    }

    /// `{ id, role, term, leader, commitIndex, appliedIndex, lastIndex, voters, locks:
    /// [{ name, holder, fence, waiters }], flushesPending }`: `flushesPending` counts the
    /// flushes of a deferred medium (IndexedDB) the replica still waits for.
    pub fn status(&self) -> JsValue {
        let report = self.replica.report(16);
        let status = js::status(&report.raft);
        let locks = Array::new();
        for l in &report.primitives.locks {
            locks.push(&js::object(&[
                ("name", l.name.as_str().into()),
                ("holder", l.holder.map_or(JsValue::NULL, |s| js::num(s.0))),
                ("fence", l.fence.map_or(JsValue::NULL, |f| js::num(f.0))),
                ("waiters", js::num(l.waiters.len() as u64)),
            ]));
        }
        let _ = Reflect::set(&status, &"locks".into(), &locks);
        let _ = Reflect::set(&status, &"flushesPending".into(), &js::num(self.flushes_pending() as u64));
        status
    }
}
