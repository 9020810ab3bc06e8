//! # concord-wasm
//!
//! Concord for JavaScript callers: the core's client ([`concord_core::client`]) compiled
//! to WebAssembly and driven on the JS event loop, talking to a `concord` server over its
//! WebSocket endpoint (`ws://host:http-port/ws`, the TCP protocol's frames). Everything
//! that decides — sessions and their keep-alives, leader discovery and redirects,
//! exactly-once retries, giving back grants nobody took — is the core's; this crate is a
//! clock (`Date.now`), a transport (`WebSocket`), a timer (`setTimeout`) and the
//! conversions between JS values and the core's typed calls.
//!
//! The exported [`Client`] is low level (one method per operation, promises of plain
//! values); the npm package beside this crate wraps it in the idiomatic API: a lock
//! handle with `fence` and `release()` usable with `await using`, async iterators for
//! watches, subscriptions and observers, and `Error` subclasses with a stable `code`.

mod driver;
mod error;
mod js;
#[cfg(feature = "replica")]
pub mod replica;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::Error;
#[cfg(feature = "replica")]
pub use replica::Replica;

use concord_core::client::calls::{
    self, Barrier, Call, Counter, Election, Kv, Latch, Lock, Reference, RwLock, Semaphore,
};
use concord_core::machine::kv::PutMode;
use concord_core::machine::rwlock::Mode;
use concord_core::machine::{Etag, Op, SessionId};
use concord_core::Consistency;
use driver::Handle;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use js_sys::Promise;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

/// Defaults for a client's options.
const SESSION_TTL_MS: u64 = 10_000;
const REQUEST_TIMEOUT_MS: u64 = 1_000;
const CONNECT_TIMEOUT_MS: u64 = 10_000;
const FRAME_BYTES_MAX: usize = 4 << 20;

/// Resolves after `ms` milliseconds.
pub(crate) fn sleep(ms: u64) -> Sleep {
    let global = js_sys::global();
    let timer_fn = |name: &str| {
        js_sys::Reflect::get(&global, &name.into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok())
    };
    let (mut timer, mut resolve_fn) = (JsValue::UNDEFINED, None);
    let p = Promise::new(&mut |resolve, _| {
        if let Some(set) = timer_fn("setTimeout") {
            timer = set.call2(&JsValue::NULL, &resolve, &JsValue::from_f64(ms as f64)).unwrap_or_default();
        }
        resolve_fn = Some(resolve);
    });
    Sleep { done: JsFuture::from(p), timer, clear: timer_fn("clearTimeout"), resolve: resolve_fn }
}

/// A `setTimeout` as a future. Dropped before it fires (the other side of a race won),
/// it clears its timer, so that no pending timer keeps a Node process or a Worker alive,
/// and settles its promise at once, so that the future's callbacks run and are freed.
pub(crate) struct Sleep {
    done: JsFuture,
    timer: JsValue,
    clear: Option<js_sys::Function>,
    resolve: Option<js_sys::Function>,
}

impl std::future::Future for Sleep {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.done).poll(cx).map(|_| ())
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(clear) = &self.clear {
            let _ = clear.call1(&JsValue::NULL, &self.timer);
        }
        if let Some(resolve) = &self.resolve {
            let _ = resolve.call0(&JsValue::NULL);
        }
    }
}

fn unexpected(e: impl std::fmt::Display) -> Error {
    Error::Unexpected(e.to_string())
}

/// The driver's options and the read consistency from a JS options object.
pub(crate) fn parse_options(options: &JsValue) -> Result<(driver::Options, Consistency), Error> {
    let list = js::field(options, "endpoints");
    if !js_sys::Array::is_array(&list) {
        return Err(Error::InvalidArgument("options.endpoints must be an array of ws:// URLs".into()));
    }
    let endpoints = js_sys::Array::from(&list)
        .iter()
        .map(|e| js::string(&e, "each endpoint"))
        .collect::<Result<Vec<_>, _>>()?;
    let num = |name: &str, default: u64| match js::field(options, name) {
        v if v.is_undefined() => Ok(default),
        v => js::u64_arg(&v, name),
    };
    let reads = match js::opt_string(&js::field(options, "reads"), "options.reads")?.as_deref() {
        None | Some("linearizable") => Consistency::Linearizable,
        Some("lease") => Consistency::Lease,
        Some("stale") => Consistency::Stale,
        Some(other) => {
            return Err(Error::InvalidArgument(format!("options.reads {other:?} is not a consistency")))
        }
    };
    let opts = driver::Options {
        endpoints,
        group: num("group", 1)?,
        session_ttl_ms: num("sessionTtlMs", SESSION_TTL_MS)?,
        request_timeout_ms: num("requestTimeoutMs", REQUEST_TIMEOUT_MS)?,
        frame_bytes_max: usize::try_from(num("frameBytesMax", FRAME_BYTES_MAX as u64)?)
            .map_err(|_| Error::InvalidArgument("options.frameBytesMax is too large".into()))?,
        transport: match js::field(options, "transport") {
            v if v.is_undefined() || v.is_null() => None,
            v => Some(
                v.dyn_into::<js_sys::Function>()
                    .map_err(|_| Error::InvalidArgument("options.transport must be a function".into()))?,
            ),
        },
    };
    Ok((opts, reads))
}

/// A connected client (low level; the npm package wraps it).
#[wasm_bindgen]
pub struct Client {
    handle: Handle,
    reads: Consistency,
}

/// What a grant (a lock, permits, a read or write hold, leadership, a subscription) needs
/// to be given back, and its value (the fence, say).
#[wasm_bindgen]
pub struct Grant {
    handle: Handle,
    session: Option<SessionId>,
    releases: Rc<RefCell<Vec<Op>>>,
    value: JsValue,
}

#[wasm_bindgen]
impl Grant {
    /// The grant's value: the fence of a lock, read-write hold or leadership, the count
    /// of drained permits, the id of a subscription.
    #[wasm_bindgen(getter)]
    pub fn value(&self) -> JsValue {
        self.value.clone()
    }

    /// The session it was granted in (it is lost with it).
    #[wasm_bindgen(getter)]
    pub fn session(&self) -> JsValue {
        self.session.map_or(JsValue::NULL, |s| js::num(s.0))
    }

    /// Whether it is still held: not released, and its session is still the client's.
    #[wasm_bindgen(getter)]
    pub fn held(&self) -> bool {
        !self.releases.borrow().is_empty()
            && self.handle.session().0 == self.session
            && self.session.is_some()
    }

    /// Gives it back (once; later calls resolve at once). A lost session released it
    /// already: the release then rejects with `SESSION_LOST`.
    pub fn release(&self) -> Promise {
        let ops = std::mem::take(&mut *self.releases.borrow_mut());
        let (handle, session) = (self.handle.clone(), self.session);
        future_to_promise(async move {
            for op in ops {
                handle.request(calls::Request::Command(op), session, Consistency::Linearizable).await?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// What a stream yields.
enum Rx {
    Watch(futures_channel::mpsc::Receiver<Result<concord_core::machine::kv::WatchEvent, Error>>),
    Observe(futures_channel::mpsc::Receiver<Result<concord_core::machine::election::ElectionEvent, Error>>),
    Signal(futures_channel::mpsc::Receiver<concord_core::machine::signal::SignalDelivery>),
}

/// A watch, election observer or subscription's deliveries.
#[wasm_bindgen]
pub struct Stream {
    handle: Handle,
    /// The operation behind it; `None` once closed.
    op: Option<concord_core::client::OpId>,
    rx: Rc<RefCell<Option<Rx>>>,
}

#[wasm_bindgen]
impl Stream {
    /// The next item; `null` once the stream ended (a subscription whose session was
    /// lost), `undefined` if none came within `timeoutMs` (when given). Rejects with the
    /// error that ended a watch or observer.
    pub fn next(&self, timeout_ms: JsValue) -> Promise {
        let rx = self.rx.clone();
        future_to_promise(async move {
            let limit = js::timeout(&timeout_ms)?;
            let Some(mut r) = rx.borrow_mut().take() else {
                return Err(Error::InvalidArgument(
                    "next() is already waiting, or the stream was closed".into(),
                )
                .into());
            };
            let item = async {
                match &mut r {
                    Rx::Watch(w) => match w.next().await {
                        Some(Ok(e)) => Ok(js::watch_event(&e)),
                        Some(Err(e)) => Err(e),
                        None => Ok(JsValue::NULL),
                    },
                    Rx::Observe(o) => match o.next().await {
                        Some(Ok(e)) => Ok(js::election_event(&e)),
                        Some(Err(e)) => Err(e),
                        None => Ok(JsValue::NULL),
                    },
                    Rx::Signal(s) => Ok(s.next().await.as_ref().map_or(JsValue::NULL, js::signal)),
                }
            };
            let out = match limit {
                None => item.await,
                Some(d) => {
                    let wait = sleep(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    match select(Box::pin(item), Box::pin(wait)).await {
                        Either::Left((r, _)) => r,
                        Either::Right(((), _)) => Ok(JsValue::UNDEFINED),
                    }
                }
            };
            *rx.borrow_mut() = Some(r);
            Ok(out?)
        })
    }

    /// Ends the stream: a watch or observer is cancelled on the server; a subscription's
    /// deliveries stop here (release its grant to unsubscribe).
    pub fn close(&mut self) {
        let signals = matches!(&*self.rx.borrow(), Some(Rx::Signal(_)));
        self.rx.borrow_mut().take();
        if let Some(op) = self.op.take() {
            if signals {
                self.handle.forget(op);
            } else {
                self.handle.cancel(op);
            }
        }
    }
}

#[wasm_bindgen]
impl Client {
    /// Connects: `options` is `{ endpoints: string[] (ws:// URLs), group?, sessionTtlMs?,
    /// requestTimeoutMs?, connectTimeoutMs?, frameBytesMax?, reads?: "linearizable" |
    /// "lease" | "stale" }`. Resolves once some endpoint answered.
    pub fn connect(options: JsValue) -> Promise {
        future_to_promise(async move {
            let client = Self::open(&options)?;
            let connect_ms = match js::field(&options, "connectTimeoutMs") {
                v if v.is_undefined() => CONNECT_TIMEOUT_MS,
                v => js::u64_arg(&v, "connectTimeoutMs")?,
            };
            let reached = client.handle.reached();
            match select(Box::pin(reached), Box::pin(sleep(connect_ms))).await {
                Either::Left((r, _)) => r?,
                Either::Right(_) => {
                    client.handle.shutdown();
                    return Err(
                        Error::Unreachable(format!("no endpoint answered within {connect_ms} ms")).into()
                    );
                }
            }
            Ok(client.into())
        })
    }

    /// Creates a client without waiting for the cluster (for a caller-supplied
    /// `transport`, which must be able to deliver answers through [`Client::receive`]
    /// while the client connects); [`Client::ready`] resolves once an endpoint answered.
    #[wasm_bindgen(js_name = open)]
    pub fn open_js(options: JsValue) -> Result<Self, JsValue> {
        Ok(Self::open(&options)?)
    }

    /// Resolves once some endpoint answered; rejects with `UNREACHABLE` after
    /// `timeoutMs` (default 10 000) without one.
    pub fn ready(&self, timeout_ms: JsValue) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let ms = match js::timeout(&timeout_ms)? {
                Some(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                None => CONNECT_TIMEOUT_MS,
            };
            match select(Box::pin(handle.reached()), Box::pin(sleep(ms))).await {
                Either::Left((r, _)) => r?,
                Either::Right(_) => {
                    return Err(Error::Unreachable(format!("no endpoint answered within {ms} ms")).into());
                }
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    fn open(options: &JsValue) -> Result<Self, Error> {
        let (opts, reads) = parse_options(options)?;
        Ok(Self { handle: Handle::new(&opts)?, reads })
    }

    /// Runs a typed call; its value as `out` renders it.
    fn run<T: 'static>(&self, call: Result<Call<T>, Error>, out: fn(T) -> JsValue) -> Promise {
        let (handle, reads) = (self.handle.clone(), self.reads);
        future_to_promise(async move {
            let (request, decode) = call?.into_parts();
            let done = handle.request(request, None, reads).await?;
            Ok(out(decode.decode(done.reply).map_err(unexpected)?))
        })
    }

    /// Runs a typed call that grants something: a [`Grant`] with the value.
    fn grant<T: 'static>(&self, call: Result<Call<T>, Error>, out: fn(T) -> JsValue) -> Promise {
        let (handle, reads) = (self.handle.clone(), self.reads);
        future_to_promise(async move {
            let (request, decode) = call?.into_parts();
            let done = handle.request(request, None, reads).await?;
            let value = out(decode.decode(done.reply).map_err(unexpected)?);
            let grant = Grant {
                handle,
                session: done.session,
                releases: Rc::new(RefCell::new(done.releases)),
                value,
            };
            Ok(grant.into())
        })
    }

    /// The session: `{ id: number | null, lost: number }` (sessions lost so far).
    #[wasm_bindgen(getter)]
    pub fn session(&self) -> JsValue {
        let (id, lost) = self.handle.session();
        js::object(&[("id", id.map_or(JsValue::NULL, |s| js::num(s.0))), ("lost", js::num(lost))])
    }

    /// Calls `listener(sessionId)` each time a session is lost (expired, or given up
    /// while the cluster could not be reached): what it held is released.
    #[wasm_bindgen(js_name = onSessionLost)]
    pub fn on_session_lost(&self, listener: JsValue) -> Result<(), JsValue> {
        let f = if listener.is_null() || listener.is_undefined() {
            None
        } else {
            Some(
                listener
                    .dyn_into::<js_sys::Function>()
                    .map_err(|_| Error::InvalidArgument("listener must be a function".into()))?,
            )
        };
        self.handle.on_session_lost(f);
        Ok(())
    }

    /// Closes the session (releasing what it holds) and the connections.
    pub fn close(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            handle.close().await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// A payload that endpoint `address` sent over the `transport` given at connect.
    pub fn receive(&self, address: JsValue, payload: JsValue) -> Result<(), JsValue> {
        let addr = js::string(&address, "address")?;
        let bytes = js::bytes(&payload, "payload")?;
        self.handle.receive(&addr, &bytes);
        Ok(())
    }

    /// Stops at once without closing the session, as a crashed process would: the
    /// cluster releases what it held when its TTL runs out.
    pub fn abandon(&self) {
        self.handle.shutdown();
    }

    // ----- locks ------------------------------------------------------------------

    /// Acquires lock `name`, waiting up to `timeoutMs` (none: until granted) → a grant
    /// whose value is the fence.
    pub fn lock(&self, name: JsValue, timeout_ms: JsValue) -> Promise {
        let call = (|| Ok(Lock::new(js::string(&name, "name")?).lock(js::timeout(&timeout_ms)?)))();
        self.grant(call, |f| js::num(f.0))
    }

    /// Acquires every lock of `names` at once → a grant whose value is the common fence.
    #[wasm_bindgen(js_name = lockAll)]
    pub fn lock_all(&self, names: JsValue, timeout_ms: JsValue) -> Promise {
        let call = (|| {
            if !js_sys::Array::is_array(&names) {
                return Err(Error::InvalidArgument("names must be an array of strings".into()));
            }
            let names = js_sys::Array::from(&names)
                .iter()
                .map(|n| js::string(&n, "each name"))
                .collect::<Result<_, _>>()?;
            Ok(calls::lock_all(names, js::timeout(&timeout_ms)?))
        })();
        self.grant(call, |f| js::num(f.0))
    }

    /// Whether anyone holds lock `name`.
    #[wasm_bindgen(js_name = isLocked)]
    pub fn is_locked(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Lock::new(n).is_locked()), JsValue::from)
    }

    /// How many holds the holder of lock `name` has.
    #[wasm_bindgen(js_name = lockCount)]
    pub fn lock_count(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Lock::new(n).lock_count()), js::num)
    }

    /// Releases lock `name` whoever holds it (administrative).
    #[wasm_bindgen(js_name = forceUnlock)]
    pub fn force_unlock(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Lock::new(n).force_unlock()), |()| JsValue::UNDEFINED)
    }

    // ----- semaphores -------------------------------------------------------------

    /// Creates semaphore `name` with `permits` (owned by sessions, unless `sessionless`)
    /// → whether it was created now.
    #[wasm_bindgen(js_name = semaphoreInit)]
    pub fn semaphore_init(&self, name: JsValue, permits: JsValue, sessionless: JsValue) -> Promise {
        let call = (|| {
            let s = Semaphore::new(js::string(&name, "name")?);
            let n = js::u64_arg(&permits, "permits")?;
            Ok(if sessionless.is_truthy() { s.init_sessionless(n) } else { s.init(n) })
        })();
        self.run(call, JsValue::from)
    }

    /// Takes `permits` of semaphore `name`, waiting up to `timeoutMs` → a grant.
    #[wasm_bindgen(js_name = semaphoreAcquire)]
    pub fn semaphore_acquire(&self, name: JsValue, permits: JsValue, timeout_ms: JsValue) -> Promise {
        let call = (|| {
            Ok(Semaphore::new(js::string(&name, "name")?)
                .acquire(js::u64_arg(&permits, "permits")?, js::timeout(&timeout_ms)?))
        })();
        self.grant(call, |()| JsValue::UNDEFINED)
    }

    /// Gives back `permits` of semaphore `name` (sessionless use).
    #[wasm_bindgen(js_name = semaphoreRelease)]
    pub fn semaphore_release(&self, name: JsValue, permits: JsValue) -> Promise {
        let call =
            (|| Ok(Semaphore::new(js::string(&name, "name")?).release(js::u64_arg(&permits, "permits")?)))();
        self.run(call, |()| JsValue::UNDEFINED)
    }

    /// Permits available now.
    #[wasm_bindgen(js_name = semaphoreAvailable)]
    pub fn semaphore_available(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Semaphore::new(n).available()), js::num_i64)
    }

    /// Permits this client's session holds.
    #[wasm_bindgen(js_name = semaphoreHeld)]
    pub fn semaphore_held(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Semaphore::new(n).held()), js::num)
    }

    /// Takes every available permit → a grant whose value is how many.
    #[wasm_bindgen(js_name = semaphoreDrain)]
    pub fn semaphore_drain(&self, name: JsValue) -> Promise {
        self.grant(js::string(&name, "name").map(|n| Semaphore::new(n).drain()), js::num)
    }

    /// Adds (`delta` > 0) or removes permits from the pool.
    #[wasm_bindgen(js_name = semaphoreResize)]
    pub fn semaphore_resize(&self, name: JsValue, delta: JsValue) -> Promise {
        let call = (|| {
            let s = Semaphore::new(js::string(&name, "name")?);
            let d = js::i64_arg(&delta, "delta")?;
            Ok(if d >= 0 { s.increase(d.unsigned_abs()) } else { s.reduce(d.unsigned_abs()) })
        })();
        self.run(call, |()| JsValue::UNDEFINED)
    }

    // ----- read-write locks -------------------------------------------------------

    /// Takes read-write lock `name` in `mode` ("read" or "write") → a grant whose value
    /// is the fence.
    #[wasm_bindgen(js_name = rwLock)]
    pub fn rw_lock(&self, name: JsValue, mode: JsValue, timeout_ms: JsValue) -> Promise {
        let call = (|| {
            let mode = match js::string(&mode, "mode")?.as_str() {
                "read" => Mode::Read,
                "write" => Mode::Write,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "mode {other:?} is not \"read\" or \"write\""
                    )))
                }
            };
            Ok(RwLock::new(js::string(&name, "name")?).lock(mode, js::timeout(&timeout_ms)?))
        })();
        self.grant(call, |f| js::num(f.0))
    }

    /// Sessions holding read-write lock `name` for reading.
    #[wasm_bindgen(js_name = rwReaders)]
    pub fn rw_readers(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| RwLock::new(n).readers()), js::num)
    }

    /// Whether a writer holds read-write lock `name`.
    #[wasm_bindgen(js_name = rwIsWriteLocked)]
    pub fn rw_is_write_locked(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| RwLock::new(n).is_write_locked()), JsValue::from)
    }

    // ----- counters ---------------------------------------------------------------

    /// Counter `name`'s value.
    #[wasm_bindgen(js_name = counterGet)]
    pub fn counter_get(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Counter::new(n).get()), js::num_i64)
    }

    /// Sets counter `name`.
    #[wasm_bindgen(js_name = counterSet)]
    pub fn counter_set(&self, name: JsValue, value: JsValue) -> Promise {
        let call = (|| Ok(Counter::new(js::string(&name, "name")?).set(js::i64_arg(&value, "value")?)))();
        self.run(call, |()| JsValue::UNDEFINED)
    }

    /// Adds `delta` to counter `name` → the new value.
    #[wasm_bindgen(js_name = counterAdd)]
    pub fn counter_add(&self, name: JsValue, delta: JsValue) -> Promise {
        let call = (|| Ok(Counter::new(js::string(&name, "name")?).add(js::i64_arg(&delta, "delta")?)))();
        self.run(call, js::num_i64)
    }

    /// Adds `delta` to counter `name` → the previous value.
    #[wasm_bindgen(js_name = counterGetAndAdd)]
    pub fn counter_get_and_add(&self, name: JsValue, delta: JsValue) -> Promise {
        let call =
            (|| Ok(Counter::new(js::string(&name, "name")?).get_and_add(js::i64_arg(&delta, "delta")?)))();
        self.run(call, js::num_i64)
    }

    /// Sets counter `name` → the previous value.
    #[wasm_bindgen(js_name = counterGetAndSet)]
    pub fn counter_get_and_set(&self, name: JsValue, value: JsValue) -> Promise {
        let call =
            (|| Ok(Counter::new(js::string(&name, "name")?).get_and_set(js::i64_arg(&value, "value")?)))();
        self.run(call, js::num_i64)
    }

    /// Sets counter `name` to `update` if it is `expect` → whether it did.
    #[wasm_bindgen(js_name = counterCompareAndSet)]
    pub fn counter_compare_and_set(&self, name: JsValue, expect: JsValue, update: JsValue) -> Promise {
        let call = (|| {
            let c = Counter::new(js::string(&name, "name")?);
            Ok(c.compare_and_set(js::i64_arg(&expect, "expect")?, js::i64_arg(&update, "update")?))
        })();
        self.run(call, JsValue::from)
    }

    // ----- references -------------------------------------------------------------

    /// Reference `name`'s value (`null`: none).
    #[wasm_bindgen(js_name = referenceGet)]
    pub fn reference_get(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Reference::new(n).get()), |v| js::opt_u8(v.as_deref()))
    }

    /// Sets reference `name` (`null` clears it).
    #[wasm_bindgen(js_name = referenceSet)]
    pub fn reference_set(&self, name: JsValue, value: JsValue) -> Promise {
        let call = (|| Ok(Reference::new(js::string(&name, "name")?).set(js::opt_bytes(&value, "value")?)))();
        self.run(call, |()| JsValue::UNDEFINED)
    }

    /// Sets reference `name` → the previous value.
    #[wasm_bindgen(js_name = referenceGetAndSet)]
    pub fn reference_get_and_set(&self, name: JsValue, value: JsValue) -> Promise {
        let call =
            (|| Ok(Reference::new(js::string(&name, "name")?).get_and_set(js::opt_bytes(&value, "value")?)))(
            );
        self.run(call, |v| js::opt_u8(v.as_deref()))
    }

    /// Sets reference `name` to `update` if it equals `expect` (`null`: if it is null).
    #[wasm_bindgen(js_name = referenceCompareAndSet)]
    pub fn reference_compare_and_set(&self, name: JsValue, expect: JsValue, update: JsValue) -> Promise {
        let call = (|| {
            let r = Reference::new(js::string(&name, "name")?);
            Ok(r.compare_and_set(js::opt_bytes(&expect, "expect")?, js::opt_bytes(&update, "update")?))
        })();
        self.run(call, JsValue::from)
    }

    // ----- latches and barriers ---------------------------------------------------

    /// Sets latch `name`'s count if it is not counting → whether it did.
    #[wasm_bindgen(js_name = latchTrySetCount)]
    pub fn latch_try_set_count(&self, name: JsValue, count: JsValue) -> Promise {
        let call =
            (|| Ok(Latch::new(js::string(&name, "name")?).try_set_count(js::u64_arg(&count, "count")?)))();
        self.run(call, JsValue::from)
    }

    /// Counts latch `name` down → the count left.
    #[wasm_bindgen(js_name = latchCountDown)]
    pub fn latch_count_down(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Latch::new(n).count_down()), js::num)
    }

    /// Waits up to `timeoutMs` for latch `name` to reach zero.
    #[wasm_bindgen(js_name = latchWait)]
    pub fn latch_wait(&self, name: JsValue, timeout_ms: JsValue) -> Promise {
        let call = (|| Ok(Latch::new(js::string(&name, "name")?).wait(js::timeout(&timeout_ms)?)))();
        self.run(call, |()| JsValue::UNDEFINED)
    }

    /// Latch `name`'s count.
    #[wasm_bindgen(js_name = latchCount)]
    pub fn latch_count(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Latch::new(n).count()), js::num)
    }

    /// Arrives at barrier `name` of `parties` and waits → `{ generation, arrival }`.
    #[wasm_bindgen(js_name = barrierWait)]
    pub fn barrier_wait(&self, name: JsValue, parties: JsValue, timeout_ms: JsValue) -> Promise {
        let call = (|| {
            Ok(Barrier::new(js::string(&name, "name")?, js::u32_arg(&parties, "parties")?)
                .wait(js::timeout(&timeout_ms)?))
        })();
        self.run(call, |t| {
            js::object(&[("generation", js::num(t.generation)), ("arrival", js::num(u64::from(t.arrival)))])
        })
    }

    // ----- key-value --------------------------------------------------------------

    /// The entry under `key`, or `null`.
    #[wasm_bindgen(js_name = kvGet)]
    pub fn kv_get(&self, key: JsValue) -> Promise {
        self.run(js::string(&key, "key").map(|k| Kv.get(k)), |e| js::opt_entry(e.as_ref()))
    }

    /// The entry under `key` unless its tag is still `etag`: `{ notModified: true }` then.
    #[wasm_bindgen(js_name = kvGetIfNoneMatch)]
    pub fn kv_get_if_none_match(&self, key: JsValue, etag: JsValue) -> Promise {
        let call =
            (|| Ok(Kv.get_if_none_match(js::string(&key, "key")?, Some(Etag(js::u64_arg(&etag, "etag")?)))))(
            );
        self.run(call, |f| match f {
            calls::Fresh::NotModified(_) => js::object(&[("notModified", true.into())]),
            calls::Fresh::Changed(e) => {
                js::object(&[("notModified", false.into()), ("entry", js::opt_entry(e.as_ref()))])
            }
        })
    }

    /// The entry under `key` without its value, or `null`.
    #[wasm_bindgen(js_name = kvHead)]
    pub fn kv_head(&self, key: JsValue) -> Promise {
        self.run(js::string(&key, "key").map(|k| Kv.head(k)), |e| js::opt_entry(e.as_ref()))
    }

    /// Writes `value` under `key` → the new etag. `options`: `{ ifAbsent?: true }` or
    /// `{ ifMatch?: etag }`, and `ttlMs?`.
    #[wasm_bindgen(js_name = kvPut)]
    pub fn kv_put(&self, key: JsValue, value: JsValue, options: JsValue) -> Promise {
        let call = (|| {
            let if_match = js::field(&options, "ifMatch");
            let if_absent = js::field(&options, "ifAbsent").is_truthy();
            let mode = match (if_absent, if_match.is_undefined()) {
                (true, false) => {
                    return Err(Error::InvalidArgument("ifAbsent and ifMatch exclude each other".into()))
                }
                (true, true) => PutMode::IfAbsent,
                (false, false) => PutMode::IfMatch(Etag(js::u64_arg(&if_match, "ifMatch")?)),
                (false, true) => PutMode::Always,
            };
            let ttl = js::timeout(&js::field(&options, "ttlMs"))?;
            Ok(Kv.put(js::string(&key, "key")?, js::bytes(&value, "value")?, mode, ttl))
        })();
        self.run(call, js::etag)
    }

    /// Deletes `key` (with `ifMatch`, only that version) → whether it existed.
    #[wasm_bindgen(js_name = kvDelete)]
    pub fn kv_delete(&self, key: JsValue, if_match: JsValue) -> Promise {
        let call = (|| {
            let tag = if if_match.is_undefined() || if_match.is_null() {
                None
            } else {
                Some(Etag(js::u64_arg(&if_match, "ifMatch")?))
            };
            Ok(Kv.delete(js::string(&key, "key")?, tag))
        })();
        self.run(call, JsValue::from)
    }

    /// One page of entries under `prefix` after `after` → `{ entries, more }`.
    #[wasm_bindgen(js_name = kvList)]
    pub fn kv_list(&self, prefix: JsValue, after: JsValue, keys_only: JsValue) -> Promise {
        let call = (|| {
            Ok(Kv.list_page(
                js::string(&prefix, "prefix")?,
                js::opt_string(&after, "after")?,
                keys_only.is_truthy(),
            ))
        })();
        self.run(call, |p| {
            let entries = js_sys::Array::new();
            for e in &p.entries {
                entries.push(&js::entry(e));
            }
            js::object(&[("entries", entries.into()), ("more", p.more.into())])
        })
    }

    // ----- elections --------------------------------------------------------------

    /// Runs in election `name` with `value`, waiting up to `timeoutMs` → a grant whose
    /// value is the leadership's fence.
    pub fn campaign(&self, name: JsValue, value: JsValue, timeout_ms: JsValue) -> Promise {
        let call = (|| {
            Ok(Election::new(js::string(&name, "name")?)
                .campaign(js::bytes(&value, "value")?, js::timeout(&timeout_ms)?))
        })();
        self.grant(call, |f| js::num(f.0))
    }

    /// Announces a new value while leading election `name`.
    pub fn proclaim(&self, name: JsValue, value: JsValue) -> Promise {
        let call = (|| Ok(Election::new(js::string(&name, "name")?).proclaim(js::bytes(&value, "value")?)))();
        self.run(call, |()| JsValue::UNDEFINED)
    }

    /// Election `name`'s leader: `{ session, value, fence }` or `null`.
    #[wasm_bindgen(js_name = electionLeader)]
    pub fn election_leader(&self, name: JsValue) -> Promise {
        self.run(js::string(&name, "name").map(|n| Election::new(n).leader()), |l| js::leader(l.as_ref()))
    }

    /// Observes election `name` → a stream of changes.
    pub fn observe(&self, name: JsValue) -> Result<Stream, JsValue> {
        let (op, rx) = self.handle.observe(js::string(&name, "name")?);
        Ok(Stream {
            handle: self.handle.clone(),
            op: Some(op),
            rx: Rc::new(RefCell::new(Some(Rx::Observe(rx)))),
        })
    }

    // ----- watches and signals ----------------------------------------------------

    /// Watches `filter` (`{ key }`, `{ prefix }` or `{ pattern }`) from revision `from`
    /// (or from now on) → a stream of changes in log order.
    pub fn watch(&self, filter: JsValue, from: JsValue) -> Result<Stream, JsValue> {
        let filter = js::filter(&filter)?;
        let from =
            if from.is_undefined() || from.is_null() { None } else { Some(js::u64_arg(&from, "from")?) };
        let (op, rx) = self.handle.watch(filter, from);
        Ok(Stream {
            handle: self.handle.clone(),
            op: Some(op),
            rx: Rc::new(RefCell::new(Some(Rx::Watch(rx)))),
        })
    }

    /// Publishes `payload` on `subject` → how many subscriptions received it.
    pub fn publish(&self, subject: JsValue, payload: JsValue) -> Promise {
        let call =
            (|| Ok(calls::publish(js::string(&subject, "subject")?, js::bytes(&payload, "payload")?)))();
        self.run(call, js::num)
    }

    /// Subscribes to `pattern` (in `queueGroup`, if given) → `{ grant, stream }`: the
    /// grant's release unsubscribes.
    pub fn subscribe(&self, pattern: JsValue, queue_group: JsValue) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let pattern = js::string(&pattern, "pattern")?;
            let group = js::opt_string(&queue_group, "queueGroup")?;
            let (request, decode) = calls::subscribe(pattern, group).into_parts();
            let calls::Request::Command(op) = request else {
                return Err(Error::Unexpected("subscribe is not a command".into()).into());
            };
            let (done, rx, sub) = handle.subscribe(op).await?;
            let id = decode.decode(done.reply).map_err(unexpected)?;
            let grant = Grant {
                handle: handle.clone(),
                session: done.session,
                releases: Rc::new(RefCell::new(done.releases)),
                value: js::num(id),
            };
            let stream = Stream { handle, op: Some(sub), rx: Rc::new(RefCell::new(Some(Rx::Signal(rx)))) };
            Ok(js::object(&[("grant", grant.into()), ("stream", stream.into())]))
        })
    }

    // ----- administration ---------------------------------------------------------

    /// The status of the node that answers (the leader, if there is one).
    pub fn status(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let (body, decode) = calls::status().into_parts();
            let answer = handle.admin(body).await?;
            Ok(js::status(&decode.decode(answer).map_err(unexpected)?))
        })
    }
}
