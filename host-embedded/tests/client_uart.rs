//! The client role over an in-memory UART with injected line noise, against a core
//! replica on the cluster side: every call completes once, and the session survives.

mod common;

use common::{link_config, uart_pair, Noise, Servers, Uart};
use concord_core::client::calls::{self, Call};
use concord_core::client::{ClientConfig, ClientEvent, Endpoint, OpId};
use concord_core::machine::kv::PutMode;
use concord_core::machine::Fence;
use concord_core::wire::link::Link;
use concord_core::{Consistency, GroupId, Instant};
use concord_embedded::{serial, ClientHost, ClientId, CLIENTS_MAX};
use std::time::Duration;

/// Virtual time per tick.
const TICK_US: u64 = 1_000;
/// Ticks one call may take before the test fails: a minute of virtual time.
const CALL_TICKS_MAX: usize = 60_000;

struct World {
    now: Instant,
    servers: Servers,
    device: ClientHost,
    uart: Uart,
    events: Vec<ClientEvent>,
    /// Events of the clients added beside the first.
    added: Vec<(ClientId, ClientEvent)>,
}

impl World {
    fn new(seed: u64) -> Self {
        let now = Instant::ZERO;
        let (device_uart, cluster_uart) = uart_pair(seed);
        let cfg = ClientConfig::new(GroupId(1), vec![Endpoint::addr("client:1")]);
        let device = ClientHost::new(cfg, link_config(), 7, now, seed);
        Self {
            now,
            servers: Servers::new(1, cluster_uart, now),
            device,
            uart: device_uart,
            events: Vec::new(),
            added: Vec::new(),
        }
    }

    fn tick(&mut self) {
        self.now = self.now.add_us(TICK_US);
        self.servers.step(self.now);
        serial::pump(&mut self.uart, self.device.link(), self.now).unwrap();
        self.device.step(self.now);
        serial::pump(&mut self.uart, self.device.link(), self.now).unwrap();
        self.events.extend(std::iter::from_fn(|| self.device.poll_event()));
        for id in (1..CLIENTS_MAX as u32).map(ClientId) {
            if let Some(client) = self.device.client_at(id) {
                let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
                self.added.extend(events.into_iter().map(|e| (id, e)));
            }
        }
    }

    /// Ticks until added client `id` finishes `op`: its reply.
    fn wait_added(
        &mut self,
        id: ClientId,
        op: OpId,
    ) -> Result<concord_core::machine::Reply, concord_core::machine::Error> {
        for _ in 0..CALL_TICKS_MAX {
            self.tick();
            let done = self
                .added
                .iter()
                .position(|(c, e)| *c == id && matches!(e, ClientEvent::Done { op: o, .. } if *o == op));
            if let Some(i) = done {
                let (_, ClientEvent::Done { result, .. }) = self.added.remove(i) else { unreachable!() };
                return result;
            }
        }
        panic!("client {id:?}: no answer within {CALL_TICKS_MAX} ticks");
    }

    /// A tick whose client events go through `postman` (calls posted to `mailbox`).
    fn tick_served<const N: usize>(
        &mut self,
        postman: &mut concord_embedded::mailbox::Postman<N>,
        mailbox: &concord_embedded::mailbox::Mailbox<embassy_sync::blocking_mutex::raw::NoopRawMutex, N>,
    ) {
        self.now = self.now.add_us(TICK_US);
        self.servers.step(self.now);
        serial::pump(&mut self.uart, self.device.link(), self.now).unwrap();
        self.device.step(self.now);
        postman.serve(&mut self.device, self.now, mailbox, |e| self.events.push(e));
        self.device.step(self.now);
        serial::pump(&mut self.uart, self.device.link(), self.now).unwrap();
    }

    fn call<T>(&mut self, call: Call<T>) -> T {
        self.try_call(call).expect("the call succeeds")
    }

    /// The call's operation id and its outcome in the state machine.
    fn try_call<T>(&mut self, call: Call<T>) -> Result<T, concord_core::machine::Error> {
        self.try_call_op(call).1
    }

    fn try_call_op<T>(&mut self, call: Call<T>) -> (OpId, Result<T, concord_core::machine::Error>) {
        let (request, decode) = call.into_parts();
        let op = self.device.client().call(self.now, request, Consistency::Linearizable);
        for _ in 0..CALL_TICKS_MAX {
            self.tick();
            let done =
                self.events.iter().position(|e| matches!(e, ClientEvent::Done { op: o, .. } if *o == op));
            if let Some(i) = done {
                let ClientEvent::Done { result, .. } = self.events.remove(i) else { unreachable!() };
                return (op, result.map(|r| decode.decode(r).expect("the reply decodes")));
            }
            let failed =
                self.events.iter().any(|e| matches!(e, ClientEvent::Failed { op: o, .. } if *o == op));
            assert!(!failed, "call failed: {:?}", self.events);
        }
        panic!("no answer within {CALL_TICKS_MAX} ticks");
    }

    fn session_lost(&self) -> bool {
        self.events.iter().any(|e| matches!(e, ClientEvent::SessionLost(_)))
    }
}

#[test]
fn a_session_survives_a_noisy_line_and_a_burst_of_noise() {
    for seed in 0..3 {
        let mut w = World::new(seed);
        // About one byte in 300 damaged, and one write in five repeated whole.
        let noise = Noise { flip: 10, drop: 10, dup: 10, repeat: 2_000 };
        w.uart.set_noise(noise);
        w.servers.side.uart.set_noise(noise);

        let lock = calls::Lock::new("door");
        let Fence(first) = w.call(lock.lock(Some(Duration::from_secs(5))));
        assert!(first > 0);
        let session = w.device.client().session().expect("a session is open");
        let counter = calls::Counter::new("visits");
        for n in 1..=20 {
            assert_eq!(w.call(counter.incr()), n, "seed {seed}: each increment applied once");
        }
        // A burst of noise both ways (with and without zero bytes), then a noisier line.
        let burst: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        w.uart.inject(&burst);
        w.servers.side.uart.inject(&burst);
        w.uart.set_noise(Noise { flip: 50, drop: 50, dup: 50, repeat: 1_000 });
        for _ in 0..300 {
            w.tick();
        }
        w.uart.set_noise(noise);
        assert_eq!(w.call(counter.incr()), 21, "seed {seed}");
        assert_eq!(w.call(lock.unlock()), 0, "seed {seed}: released");
        let Fence(second) = w.call(lock.lock(None));
        assert!(second > first, "seed {seed}: fences increase ({first} then {second})");
        assert_eq!(w.device.client().session(), Some(session), "seed {seed}: the same session throughout");
        assert!(!w.session_lost(), "seed {seed}");
        let (device, cluster) = (w.device.link().stats(), w.servers.side.link.stats());
        assert!(
            device.frames_refused > 0 && cluster.frames_refused > 0,
            "seed {seed}: {device:?} {cluster:?}"
        );
        assert!(device.frames_resent + cluster.frames_resent > 0, "seed {seed}");
        assert!(
            device.frames_duplicate + cluster.frames_duplicate > 0,
            "seed {seed}: repeated frames were dropped"
        );
        assert_eq!(device.peer_restarts + cluster.peer_restarts, 0, "seed {seed}");
        eprintln!(
            "seed {seed}: {} ms virtual, device {device:?}, cluster {cluster:?}",
            w.now.as_micros() / 1000
        );
    }
}

#[test]
fn a_restarted_bridge_costs_a_reconnect_not_the_session() {
    let mut w = World::new(11);
    let counter = calls::Counter::new("c");
    assert_eq!(w.call(counter.incr()), 1);
    let session = w.device.client().session();
    let dials = w.servers.side.dials;
    // The bridge restarts: a new link end, and the connections it held are gone.
    w.servers.side.link = Link::new(link_config(), 0xfeed, w.now);
    assert_eq!(w.call(counter.incr()), 2);
    assert_eq!(w.device.client().session(), session);
    assert!(w.servers.side.dials > dials, "the client dialled its endpoint again");
    assert_eq!(w.device.link().stats().peer_restarts, 1);
}

#[test]
fn conditional_kv_writes_and_signals_work_over_a_noisy_line() {
    let mut w = World::new(5);
    let noise = Noise { flip: 3, drop: 3, dup: 3, repeat: 300 };
    w.uart.set_noise(noise);
    w.servers.side.uart.set_noise(noise);
    let kv = calls::Kv;
    let e1 = w.call(kv.put("cfg/mode", b"eco".to_vec(), PutMode::IfAbsent, None));
    assert!(w.try_call(kv.put("cfg/mode", b"x".to_vec(), PutMode::IfAbsent, None)).is_err(), "exists");
    let e2 = w.call(kv.put("cfg/mode", b"max".to_vec(), PutMode::IfMatch(e1), None));
    assert_ne!(e1, e2);
    assert!(w.try_call(kv.put("cfg/mode", b"y".to_vec(), PutMode::IfMatch(e1), None)).is_err(), "stale tag");
    let got = w.call(kv.get("cfg/mode")).expect("the key exists");
    assert_eq!((got.value.as_deref(), got.etag), (Some(&b"max"[..]), e2));

    let (sub, id) = w.try_call_op(calls::subscribe("alerts.>", None));
    id.expect("subscribed");
    assert_eq!(w.call(calls::publish("alerts.fire", b"smoke".to_vec())), 1, "one receiver");
    for _ in 0..CALL_TICKS_MAX {
        if w.events.iter().any(|e| matches!(e, ClientEvent::Signal { op, .. } if *op == sub)) {
            return;
        }
        w.tick();
    }
    panic!("the signal never arrived: {:?}", w.events);
}

/// Calls posted by another task through the embassy-sync mailbox, served by the loop
/// that drives the client: each result comes back under its poster's id.
#[test]
fn calls_posted_to_the_mailbox_come_back_with_their_ids() {
    use concord_embedded::mailbox::{CallError, Job, Mailbox, Postman};
    use embassy_sync::blocking_mutex::raw::NoopRawMutex;
    let mut w = World::new(21);
    let mailbox: Mailbox<NoopRawMutex, 4> = Mailbox::new();
    let mut postman: Postman<4> = Postman::new();
    let counter = calls::Counter::new("posted");
    let kv = calls::Kv;
    let (incr, incr_decode) = counter.incr().into_parts();
    let (stale, _) =
        kv.put("k", b"v".to_vec(), PutMode::IfMatch(concord_core::machine::Etag(99)), None).into_parts();
    // An async poster (it resolves at once: a slot is free).
    embassy_futures::block_on(mailbox.post(Job {
        id: 1,
        request: incr.clone(),
        consistency: Consistency::Linearizable,
    }));
    mailbox.try_post(Job { id: 2, request: incr, consistency: Consistency::Linearizable }).unwrap();
    mailbox.try_post(Job { id: 3, request: stale, consistency: Consistency::Linearizable }).unwrap();
    let mut results = Vec::new();
    for _ in 0..CALL_TICKS_MAX {
        w.tick_served(&mut postman, &mailbox);
        results.extend(std::iter::from_fn(|| mailbox.try_finished()));
        if results.len() == 3 {
            break;
        }
    }
    results.sort_by_key(|f| f.id);
    let values: Vec<i64> =
        results[..2].iter().map(|f| incr_decode.decode(f.result.clone().unwrap()).unwrap()).collect();
    assert!(values == [1, 2] || values == [2, 1], "{values:?}");
    assert!(matches!(results[2].result, Err(CallError::Machine(_))), "{:?}", results[2]);
    assert_eq!(postman.in_flight(), 0);
}

/// Several clients share one line, each with a session of its own: a lock passes from
/// one to the next in order, and a client dropped without closing (a crashed device
/// behind the gateway) loses its session after the TTL, handing its lock on.
#[test]
fn several_clients_share_the_line_with_their_own_sessions() {
    let mut w = World::new(31);
    let cfg = |ttl_ms: u64| ClientConfig {
        session_ttl_ms: ttl_ms,
        ..ClientConfig::new(GroupId(1), vec![Endpoint::addr("client:1")])
    };
    let (b, c) = (
        w.device.add_client(cfg(2_000), w.now, 1).expect("room for a second client"),
        w.device.add_client(cfg(2_000), w.now, 2).expect("room for a third client"),
    );
    let lock = calls::Lock::new("shared");
    let Fence(first) = w.call(lock.lock(None));
    // B and C queue behind the first client, in that order.
    let (request, _) = lock.lock(Some(Duration::from_secs(30))).into_parts();
    let b_op = w.device.client_at(b).unwrap().call(w.now, request.clone(), Consistency::Linearizable);
    for _ in 0..200 {
        w.tick();
    }
    let c_op = w.device.client_at(c).unwrap().call(w.now, request, Consistency::Linearizable);
    for _ in 0..200 {
        w.tick();
    }
    let sessions = [
        w.device.client().session(),
        w.device.client_at(b).unwrap().session(),
        w.device.client_at(c).unwrap().session(),
    ];
    assert!(sessions.iter().all(Option::is_some), "{sessions:?}");
    assert!(
        sessions[0] != sessions[1] && sessions[1] != sessions[2] && sessions[0] != sessions[2],
        "{sessions:?}"
    );
    assert_eq!(w.call(lock.unlock()), 0);
    let Fence(second) =
        calls::Lock::new("shared").lock(None).into_parts().1.decode(w.wait_added(b, b_op).unwrap()).unwrap();
    assert!(second > first, "B's fence {second} after {first}");
    // B disappears without closing: C gets the lock once B's session expires.
    let dropped_at = w.now;
    w.device.remove_client(b);
    assert!(w.device.client_at(b).is_none());
    let Fence(third) =
        calls::Lock::new("shared").lock(None).into_parts().1.decode(w.wait_added(c, c_op).unwrap()).unwrap();
    assert!(third > second, "C's fence {third} after {second}");
    let waited_ms = w.now.saturating_since_us(dropped_at) / 1000;
    // The TTL runs from B's last keep-alive, sent a fraction of a TTL before it went.
    assert!((1_000..6_000).contains(&waited_ms), "C waited {waited_ms} ms for a 2 s TTL");
    // The place B left is reused; the first client cannot be removed.
    assert_eq!(w.device.add_client(cfg(2_000), w.now, 3), Ok(b));
    w.device.remove_client(ClientId::FIRST);
    assert!(w.device.client_at(ClientId::FIRST).is_some());
    assert!(!w.session_lost(), "the first client kept its session");
}
