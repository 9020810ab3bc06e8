//! The driver: the core's sans-IO [`Client`](CoreClient) on the JavaScript event loop.
//!
//! One WebSocket per endpoint the core sends to, a `setTimeout` for the core's next
//! deadline, the JS clock as the core's time. After every input (a message, a closed
//! socket, a timer, a new call) the driver drains every queue of the core, as its
//! contract demands, and hands results to the futures that wait for them. Nothing here
//! decides anything: sessions, retries, redirects and keep-alives are the core's.
//!
//! JS code never runs while the driver is borrowed: results go out through channels
//! (whose receivers run as later microtasks), and the session-loss listener is called
//! after the borrow ends.

use crate::error::Error;
use concord_core::client::calls::Request;
use concord_core::client::{AddrKind, Client as CoreClient, ClientConfig, ClientEvent, Endpoint, OpId, Peer};
use concord_core::machine::election::ElectionEvent;
use concord_core::machine::kv::{WatchEvent, WatchFilter};
use concord_core::machine::signal::SignalDelivery;
use concord_core::machine::{Op, Reply, SessionId};
use concord_core::wire::{
    decode_payload, encode_frame, encode_payload, Answer, Envelope, RequestBody, StreamDecoder,
};
use concord_core::{Consistency, GroupId, Instant};
use futures_channel::{mpsc, oneshot};
use js_sys::{Function, Uint8Array};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, MessageEvent, WebSocket};

/// Items a watch, observer or subscription holds for its reader; one not read fast
/// enough ends (a watch or observer with an `OVERLOADED` error).
pub(crate) const STREAM_BUFFER_MAX: usize = 1_024;

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// The driver's options, from the JS caller.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// WebSocket URLs (`ws://host:port/ws`) of the nodes.
    pub(crate) endpoints: Vec<String>,
    /// The group the cluster serves.
    pub(crate) group: u64,
    /// Session TTL, milliseconds.
    pub(crate) session_ttl_ms: u64,
    /// Resend a request unanswered this long, milliseconds.
    pub(crate) request_timeout_ms: u64,
    /// Largest frame sent or accepted, bytes.
    pub(crate) frame_bytes_max: usize,
    /// Carries requests to endpoints whose address is not a WebSocket URL (a Web Worker
    /// running a replica, say): called as `transport(address, payload)`, one protocol
    /// payload per call; answers come back through [`Handle::receive`]. It must not call
    /// into the client synchronously (post a message, as workers do).
    pub(crate) transport: Option<Function>,
}

/// A finished command or read.
#[derive(Clone, Debug)]
pub(crate) struct Done {
    /// The reply.
    pub(crate) reply: Reply,
    /// The session a command ran in.
    pub(crate) session: Option<SessionId>,
    /// The commands that give back what the reply granted, in `session`.
    pub(crate) releases: Vec<Op>,
}

enum Waiter {
    Once(oneshot::Sender<Result<Done, Error>>),
    Admin(oneshot::Sender<Result<Answer, Error>>),
    Subscribe {
        reply: Option<oneshot::Sender<Result<Done, Error>>>,
        deliveries: mpsc::Sender<SignalDelivery>,
    },
    Watch(mpsc::Sender<Result<WatchEvent, Error>>),
    Observe(mpsc::Sender<Result<ElectionEvent, Error>>),
}

struct Conn {
    ws: WebSocket,
    open: bool,
    /// Frames written before the socket opened (bounded by the core's in-flight limits).
    backlog: Vec<Vec<u8>>,
    decoder: StreamDecoder,
    // Kept alive as long as the socket is.
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut()>,
}

impl Drop for Conn {
    /// Detaches the handlers before they are freed (the socket may still fire), then
    /// closes the socket.
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

struct Driver {
    core: CoreClient,
    /// The JS clock at `Instant::ZERO`, milliseconds.
    epoch_ms: f64,
    last: Instant,
    frame_bytes_max: usize,
    transport: Option<Function>,
    conns: BTreeMap<Peer, Conn>,
    waiters: BTreeMap<OpId, Waiter>,
    reached: Vec<oneshot::Sender<()>>,
    reached_once: bool,
    timer: Option<JsValue>,
    timer_at: Option<Instant>,
    on_timer: Option<Closure<dyn FnMut()>>,
    /// Called with the session id (a number) when a session is lost.
    on_session_lost: Option<Function>,
    sessions_lost: u64,
    closed: bool,
    me: Weak<RefCell<Self>>,
}

/// A handle on the driver; cheap to clone.
#[derive(Clone)]
pub(crate) struct Handle(Rc<RefCell<Driver>>);

fn now_ms() -> f64 {
    js_sys::Date::now()
}

impl Handle {
    /// Starts a driver: the core client begins probing every endpoint at once.
    pub(crate) fn new(opts: &Options) -> Result<Self, Error> {
        if opts.endpoints.is_empty() {
            return Err(Error::InvalidArgument("at least one endpoint is needed".into()));
        }
        for e in &opts.endpoints {
            if opts.transport.is_none() && !(e.starts_with("ws://") || e.starts_with("wss://")) {
                return Err(Error::InvalidArgument(format!("endpoint {e:?} is not a ws:// or wss:// URL")));
            }
        }
        let endpoints = opts.endpoints.iter().map(|e| Endpoint::addr(e.clone())).collect();
        let mut cfg = ClientConfig::new(GroupId(opts.group), endpoints);
        cfg.session_ttl_ms = opts.session_ttl_ms;
        cfg.request_timeout_us = opts.request_timeout_ms.saturating_mul(1000);
        // Over WebSocket, the members' WebSocket URLs are what this client can dial: one
        // endpoint is enough, the others are learnt from it.
        if opts.transport.is_none() {
            cfg.learns = AddrKind::Web;
        }
        // The core's randomness (where to start in the endpoint list) is seeded here.
        let seed = (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64;
        let core = CoreClient::new(cfg, Instant::ZERO, seed);
        let driver = Rc::new_cyclic(|me| {
            RefCell::new(Driver {
                core,
                epoch_ms: now_ms(),
                last: Instant::ZERO,
                frame_bytes_max: opts.frame_bytes_max,
                transport: opts.transport.clone(),
                conns: BTreeMap::new(),
                waiters: BTreeMap::new(),
                reached: Vec::new(),
                reached_once: false,
                timer: None,
                timer_at: None,
                on_timer: None,
                on_session_lost: None,
                sessions_lost: 0,
                closed: false,
                me: me.clone(),
            })
        });
        let handle = Self(driver);
        handle.with(|_| ());
        Ok(handle)
    }

    /// Runs `f` on the driver, then drains the core and calls any session-loss listener
    /// once the borrow has ended.
    fn with<T>(&self, f: impl FnOnce(&mut Driver) -> T) -> T {
        let (out, lost, listener) = {
            let mut d = self.0.borrow_mut();
            let out = f(&mut d);
            let lost = d.pump();
            (out, lost, d.on_session_lost.clone())
        };
        if let Some(listener) = listener {
            for s in lost {
                let _ = listener.call1(&JsValue::NULL, &JsValue::from_f64(s.0 as f64));
            }
        }
        out
    }

    /// Resolves once some endpoint answered (the cluster can be reached).
    pub(crate) async fn reached(&self) -> Result<(), Error> {
        let rx = self.with(|d| {
            let (tx, rx) = oneshot::channel();
            if d.reached_once {
                let _ = tx.send(());
            } else {
                d.reached.push(tx);
            }
            rx
        });
        rx.await.map_err(|_| Error::Closed)
    }

    /// Calls `listener(sessionId)` whenever the client's session is lost.
    pub(crate) fn on_session_lost(&self, listener: Option<Function>) {
        self.0.borrow_mut().on_session_lost = listener;
    }

    /// The open session, if any, and how many were lost so far.
    pub(crate) fn session(&self) -> (Option<SessionId>, u64) {
        let d = self.0.borrow();
        (d.core.session(), d.sessions_lost)
    }

    /// Sends a call's request (a command, in `session` only if given; or a read).
    pub(crate) async fn request(
        &self,
        request: Request,
        session: Option<SessionId>,
        consistency: Consistency,
    ) -> Result<Done, Error> {
        let (tx, rx) = oneshot::channel();
        let op = self.with(|d| {
            let now = d.now();
            let op = match (request, session) {
                (Request::Command(op), Some(s)) => d.core.submit_in(now, op, s),
                (Request::Command(op), None) => d.core.submit(now, op),
                (Request::Read(q), _) => d.core.read(now, q, consistency),
            };
            d.waiters.insert(op, Waiter::Once(tx));
            op
        });
        let guard = Abandon { handle: self, op: Some(op) };
        let result = rx.await.map_err(|_| Error::Closed);
        guard.finished();
        result?
    }

    /// Sends an administrative request.
    pub(crate) async fn admin(&self, body: RequestBody) -> Result<Answer, Error> {
        let (tx, rx) = oneshot::channel();
        self.with(|d| {
            let now = d.now();
            let op = d.core.admin(now, body);
            d.waiters.insert(op, Waiter::Admin(tx));
        });
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Subscribes (the op must be a signal `Subscribe`): the reply, the deliveries, and
    /// the id to [`Handle::forget`] the routing by.
    pub(crate) async fn subscribe(
        &self,
        op: Op,
    ) -> Result<(Done, mpsc::Receiver<SignalDelivery>, OpId), Error> {
        let (tx, rx) = oneshot::channel();
        let (dtx, drx) = mpsc::channel(STREAM_BUFFER_MAX);
        let id = self.with(|d| {
            let now = d.now();
            let id = d.core.submit(now, op);
            d.waiters.insert(id, Waiter::Subscribe { reply: Some(tx), deliveries: dtx });
            id
        });
        let guard = Abandon { handle: self, op: Some(id) };
        let result = rx.await.map_err(|_| Error::Closed);
        guard.finished();
        Ok((result??, drx, id))
    }

    /// Stops routing a subscription's deliveries (its reader is gone).
    pub(crate) fn forget(&self, op: OpId) {
        self.0.borrow_mut().waiters.remove(&op);
    }

    /// Opens a watch; its events, and its id for [`Handle::cancel`].
    pub(crate) fn watch(
        &self,
        filter: WatchFilter,
        from: Option<u64>,
    ) -> (OpId, mpsc::Receiver<Result<WatchEvent, Error>>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_MAX);
        let op = self.with(|d| {
            let now = d.now();
            let op = d.core.watch(now, filter, from);
            d.waiters.insert(op, Waiter::Watch(tx));
            op
        });
        (op, rx)
    }

    /// Opens an election observer; its events, and its id for [`Handle::cancel`].
    pub(crate) fn observe(&self, name: String) -> (OpId, mpsc::Receiver<Result<ElectionEvent, Error>>) {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER_MAX);
        let op = self.with(|d| {
            let now = d.now();
            let op = d.core.observe(now, name);
            d.waiters.insert(op, Waiter::Observe(tx));
            op
        });
        (op, rx)
    }

    /// Ends a watch or observer.
    pub(crate) fn cancel(&self, op: OpId) {
        self.with(|d| {
            let now = d.now();
            d.waiters.remove(&op);
            d.core.cancel(now, op);
        });
    }

    /// A payload from endpoint `addr` over the caller's transport (see
    /// [`Options::transport`]). One that does not decode, or is not for a client, breaks
    /// that endpoint's connection.
    pub(crate) fn receive(&self, addr: &str, payload: &[u8]) {
        self.with(|d| {
            let Some(peer) = d.core.endpoints().find(|(_, a, ..)| *a == addr).map(|(p, ..)| p) else {
                return;
            };
            let now = d.now();
            match decode_payload(payload, d.frame_bytes_max) {
                Ok(Envelope::Response(msg)) => d.core.handle_message(now, peer, msg),
                Ok(_) | Err(_) => d.core.handle_disconnect(now, peer),
            }
        });
    }

    /// Closes the session (what it holds is released), then the connections.
    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        let closing = self.with(|d| {
            if d.closed {
                return false;
            }
            let now = d.now();
            let op = d.core.close(now);
            d.waiters.insert(op, Waiter::Once(tx));
            true
        });
        if closing {
            let _ = rx.await;
        }
        self.shutdown();
    }

    /// Stops the driver at once without closing the session (it expires after its TTL):
    /// sockets close, the timer stops, every waiter fails with `CLOSED`.
    pub(crate) fn shutdown(&self) {
        let mut d = self.0.borrow_mut();
        d.closed = true;
        d.conns.clear();
        if let Some(t) = d.timer.take() {
            clear_timeout(&t);
        }
        d.waiters.clear();
        d.reached.clear();
    }
}

/// Abandons an operation in the core when its future is dropped before it finished, so
/// that what it grants is given back.
struct Abandon<'a> {
    handle: &'a Handle,
    op: Option<OpId>,
}

impl Abandon<'_> {
    fn finished(mut self) {
        self.op = None;
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            if let Ok(mut d) = self.handle.0.try_borrow_mut() {
                let now = d.now();
                d.waiters.remove(&op);
                d.core.abandon(now, op);
            }
        }
    }
}

impl Driver {
    /// The core's time: the JS clock since the driver started, never going back.
    fn now(&mut self) -> Instant {
        let elapsed_ms = (now_ms() - self.epoch_ms).max(0.0);
        let now = Instant::from_micros((elapsed_ms * 1000.0) as u64).max(self.last);
        self.last = now;
        now
    }

    /// Drains every queue of the core; the sessions lost meanwhile.
    fn pump(&mut self) -> Vec<SessionId> {
        let mut lost = Vec::new();
        if self.closed {
            return lost;
        }
        // Sending can fail at once (a bad address): the core hears of it, which may queue
        // more to send, so loop until everything is out.
        for _ in 0..64 {
            let mut failed = Vec::new();
            while let Some((peer, req)) = self.core.poll_transmit() {
                if !self.send(peer, &Envelope::Request(req)) {
                    failed.push(peer);
                }
            }
            while let Some(event) = self.core.poll_event() {
                if let Some(s) = self.event(event) {
                    lost.push(s);
                }
            }
            if failed.is_empty() {
                break;
            }
            let now = self.now();
            for peer in failed {
                self.conns.remove(&peer);
                self.core.handle_disconnect(now, peer);
            }
        }
        self.schedule();
        lost
    }

    /// Sends on `peer`'s socket, opening it first if needed; `false` if it cannot be.
    fn send(&mut self, peer: Peer, envelope: &Envelope) -> bool {
        if let Some(transport) = &self.transport {
            let addr = self.core.peer_addr(peer).unwrap_or_default();
            if !(addr.starts_with("ws://") || addr.starts_with("wss://")) {
                let mut payload = Vec::new();
                if encode_payload(envelope, &mut payload).is_err() || payload.len() > self.frame_bytes_max {
                    return false;
                }
                let sent = transport.call2(
                    &JsValue::NULL,
                    &addr.into(),
                    &Uint8Array::from(payload.as_slice()).into(),
                );
                return sent.is_ok();
            }
        }
        let mut frame = Vec::new();
        if encode_frame(envelope, self.frame_bytes_max, &mut frame).is_err() {
            // The core keeps proposals below the frame limit; an oversize request is a
            // contract breach of the caller's size limits: treat the endpoint as failed
            // so the request fails through the core's timeouts rather than hanging.
            return false;
        }
        if !self.conns.contains_key(&peer) {
            let Some(addr) = self.core.peer_addr(peer).map(str::to_owned) else { return false };
            match self.connect(peer, &addr) {
                Some(conn) => {
                    self.conns.insert(peer, conn);
                }
                None => return false,
            }
        }
        let Some(conn) = self.conns.get_mut(&peer) else { return false };
        if conn.open {
            conn.ws.send_with_u8_array(&frame).is_ok()
        } else {
            conn.backlog.push(frame);
            true
        }
    }

    /// Opens a WebSocket to `addr`. Addresses the cluster advertises for TCP clients
    /// (`host:port`) are not WebSocket URLs: such an endpoint is unusable from here, and
    /// the core avoids it (it probes it again now and then).
    fn connect(&mut self, peer: Peer, addr: &str) -> Option<Conn> {
        if !(addr.starts_with("ws://") || addr.starts_with("wss://")) {
            return None;
        }
        let ws = WebSocket::new(addr).ok()?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let me = self.me.clone();
        let on_open = Closure::<dyn FnMut()>::new({
            let me = me.clone();
            move || input(&me, |d| d.opened(peer))
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let me = me.clone();
            move |e: MessageEvent| {
                let bytes = match e.data().dyn_into::<js_sys::ArrayBuffer>() {
                    Ok(buf) => Some(Uint8Array::new(&buf).to_vec()),
                    Err(_) => None,
                };
                input(&me, |d| d.message(peer, bytes));
            }
        });
        let on_close = Closure::<dyn FnMut()>::new(move || input(&me, |d| d.disconnected(peer)));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        // An error is always followed by a close event.
        Some(Conn {
            ws,
            open: false,
            backlog: Vec::new(),
            decoder: StreamDecoder::new(self.frame_bytes_max),
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    fn opened(&mut self, peer: Peer) {
        let Some(conn) = self.conns.get_mut(&peer) else { return };
        conn.open = true;
        let mut broken = false;
        for frame in std::mem::take(&mut conn.backlog) {
            broken |= conn.ws.send_with_u8_array(&frame).is_err();
        }
        if broken {
            self.disconnected(peer);
        }
    }

    /// Bytes from `peer` (`None`: not binary, which the protocol never sends).
    fn message(&mut self, peer: Peer, bytes: Option<Vec<u8>>) {
        let now = self.now();
        let Some(conn) = self.conns.get_mut(&peer) else { return };
        let Some(bytes) = bytes else {
            self.disconnected(peer);
            return;
        };
        conn.decoder.push(&bytes);
        loop {
            let Some(conn) = self.conns.get_mut(&peer) else { return };
            match conn.decoder.next_frame() {
                Ok(Some(Envelope::Response(msg))) => self.core.handle_message(now, peer, msg),
                Ok(None) => return,
                // A malformed frame, an oversize one, or a message that is not for a
                // client: this connection cannot be trusted any more.
                Ok(Some(_)) | Err(_) => {
                    self.disconnected(peer);
                    return;
                }
            }
        }
    }

    fn disconnected(&mut self, peer: Peer) {
        self.conns.remove(&peer);
        let now = self.now();
        self.core.handle_disconnect(now, peer);
    }

    fn timer_fired(&mut self) {
        self.timer = None;
        self.timer_at = None;
        let now = self.now();
        self.core.handle_timeout(now);
    }

    /// Arms the timer for the core's next deadline.
    fn schedule(&mut self) {
        let at = self.core.poll_timeout();
        if at == Instant::MAX || self.closed {
            return;
        }
        if self.timer.is_some() && self.timer_at == Some(at) {
            return;
        }
        if let Some(t) = self.timer.take() {
            clear_timeout(&t);
        }
        if self.on_timer.is_none() {
            let me = self.me.clone();
            self.on_timer = Some(Closure::<dyn FnMut()>::new(move || input(&me, Self::timer_fired)));
        }
        let now = self.now();
        let ms = at.saturating_since_us(now).div_ceil(1000) as f64;
        if let Some(cb) = &self.on_timer {
            self.timer = Some(set_timeout(cb.as_ref().unchecked_ref(), ms));
            self.timer_at = Some(at);
        }
    }

    /// One event of the core; the session, if it was lost.
    fn event(&mut self, event: ClientEvent) -> Option<SessionId> {
        match event {
            ClientEvent::Reached { .. } => {
                self.reached_once = true;
                for tx in self.reached.drain(..) {
                    let _ = tx.send(());
                }
            }
            ClientEvent::SessionOpened(_) => {}
            ClientEvent::SessionLost(s) => {
                self.sessions_lost += 1;
                return Some(s);
            }
            ClientEvent::Done { op, result, session, releases, .. } => {
                let done = result.map(|reply| Done { reply, session, releases }).map_err(Error::Machine);
                self.finish(op, done);
            }
            ClientEvent::Failed { op, error } => match self.waiters.remove(&op) {
                Some(Waiter::Admin(tx)) => {
                    let _ = tx.send(Err(Error::Request(error)));
                }
                Some(Waiter::Watch(mut tx)) => {
                    let _ = tx.try_send(Err(Error::Request(error)));
                }
                Some(Waiter::Observe(mut tx)) => {
                    let _ = tx.try_send(Err(Error::Request(error)));
                }
                Some(w) => {
                    self.waiters.insert(op, w);
                    self.finish(op, Err(Error::Request(error)));
                }
                None => {}
            },
            ClientEvent::Admin { op, answer } => {
                if let Some(Waiter::Admin(tx)) = self.waiters.remove(&op) {
                    let _ = tx.send(Ok(answer));
                }
            }
            ClientEvent::Signal { op, delivery } => {
                if let Some(Waiter::Subscribe { deliveries, .. }) = self.waiters.get_mut(&op) {
                    // A subscriber that does not read loses what does not fit.
                    let _ = deliveries.try_send(delivery);
                }
            }
            ClientEvent::Watch { op, event } => self.stream(op, |w| match w {
                Waiter::Watch(tx) => Some(tx.try_send(Ok(event)).is_ok()),
                _ => None,
            }),
            ClientEvent::Election { op, event } => self.stream(op, |w| match w {
                Waiter::Observe(tx) => Some(tx.try_send(Ok(event)).is_ok()),
                _ => None,
            }),
        }
        None
    }

    /// Delivers to stream `op`; a reader that went away or fell behind ends it.
    fn stream(&mut self, op: OpId, deliver: impl FnOnce(&mut Waiter) -> Option<bool>) {
        let Some(w) = self.waiters.get_mut(&op) else { return };
        if deliver(w) == Some(false) {
            if let Some(w) = self.waiters.remove(&op) {
                let overloaded = Error::Overloaded("a stream was not read fast enough");
                match w {
                    Waiter::Watch(mut tx) => {
                        let _ = tx.try_send(Err(overloaded));
                    }
                    Waiter::Observe(mut tx) => {
                        let _ = tx.try_send(Err(overloaded));
                    }
                    _ => {}
                }
            }
            let now = self.now();
            self.core.cancel(now, op);
        }
    }

    /// A command or read finished: to its waiter; what nobody takes is given back.
    fn finish(&mut self, op: OpId, result: Result<Done, Error>) {
        let unclaimed = match self.waiters.remove(&op) {
            Some(Waiter::Once(tx)) => tx.send(result).err(),
            Some(Waiter::Subscribe { reply: Some(tx), deliveries }) => {
                let ok = result.is_ok();
                let unclaimed = tx.send(result).err();
                if ok && unclaimed.is_none() {
                    self.waiters.insert(op, Waiter::Subscribe { reply: None, deliveries });
                }
                unclaimed
            }
            _ => Some(result),
        };
        if let Some(Ok(Done { session: Some(s), releases, .. })) = unclaimed {
            if !releases.is_empty() {
                let now = self.now();
                self.core.give_back(now, releases, s);
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            clear_timeout(&t);
        }
    }
}

/// An input from the event loop (a socket event, the timer) to the driver behind `me`.
fn input(me: &Weak<RefCell<Driver>>, f: impl FnOnce(&mut Driver)) {
    if let Some(d) = me.upgrade() {
        Handle(d).with(|d| {
            if !d.closed {
                f(d);
            }
        });
    }
}
