//! The shared conformance suite (`tests/conformance`) on the microcontroller host: every
//! scenario, run by the firmware through [`ClientHost`] — several clients, each with its
//! own session, on the one serial line — and the bridge, against a real cluster.
//!
//! The suite is `async` and knows no runtime; this firmware drives it with the smallest
//! executor that works on a bare-metal loop: poll the scenario, move the line's bytes
//! and step the clients, poll again. The leaf futures only look at what the step
//! delivered (results by operation, stream items by stream), so nothing needs waking.
//!
//! The cluster's client addresses come on the command line (QEMU's `-append`), comma
//! separated; a last word without a `:` is taken as the namespace of the run's names. The
//! console gets one line per scenario, `conformance: NAME: VERDICT`, then the suite's
//! summary and `concord-firmware: ok …` or `concord-firmware: FAILED …`; the exit status
//! says the same.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use concord_conformance::{Failure, Host, Scenario, Verdict};
use concord_core::client::calls::{self, Request};
use concord_core::client::{Client, ClientConfig, ClientEvent, Endpoint, OpId};
use concord_core::machine::election::ElectionEvent;
use concord_core::machine::kv::{WatchEvent, WatchFilter};
use concord_core::machine::signal::SignalDelivery;
use concord_core::machine::{Error as MachineError, Reply};
use concord_core::wire::link::LinkConfig;
use concord_core::wire::{Answer, ClientError, RequestBody};
use concord_core::{Consistency, GroupId, Instant};
use concord_embedded::{serial, ClientHost, ClientId};
use concord_firmware::{self as board, Peaks, Uart0};
use core::cell::RefCell;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use cortex_m_rt::entry;

/// The heap arena, bytes: the clients of a scenario (up to four at once), their streams
/// and the suite's own state.
const HEAP_ARENA_BYTES: usize = 64 * 1024;
/// How long one request may wait for its answer before the scenario fails, µs.
const REQUEST_TIMEOUT_US: u64 = 60_000_000;
/// How long a new client may take to reach the cluster, µs.
const CONNECT_TIMEOUT_US: u64 = 10_000_000;
/// How long one scenario may run, µs.
const SCENARIO_TIMEOUT_US: u64 = 120_000_000;
/// Items a stream (watch, subscription, observer) keeps until the scenario takes them;
/// one more fails the stream.
const STREAM_ITEMS_MAX: usize = 64;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    board::say(&format!("concord-firmware: FAILED panic: {info}"));
    board::exit(false)
}

/// How an operation ended.
enum Outcome {
    Reply(Result<Reply, MachineError>),
    Admin(Answer),
    Failed(ClientError),
}

/// What a stream delivered.
enum Item {
    Watch(WatchEvent),
    Signal(SignalDelivery),
    Election(ElectionEvent),
    Failed(String),
}

/// A stream of one client: the operation that opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Stream(ClientId, OpId);

/// The device: the clients, the line, and what the last steps delivered.
struct Device {
    host: ClientHost,
    uart: Uart0,
    peaks: Peaks,
    endpoints: Vec<Endpoint>,
    /// Clients that reached a node.
    reached: BTreeSet<ClientId>,
    finished: BTreeMap<(ClientId, OpId), Outcome>,
    streams: BTreeMap<Stream, VecDeque<Item>>,
    seeds: u64,
}

impl Device {
    /// Bytes both ways, every client stepped, and their events sorted.
    fn pump(&mut self) {
        let now = board::now();
        let _ = serial::pump(&mut self.uart, self.host.link(), now);
        self.host.step(now);
        let _ = serial::pump(&mut self.uart, self.host.link(), now);
        for id in (0..concord_embedded::CLIENTS_MAX as u32).map(ClientId) {
            while let Some(event) = self.host.client_at(id).and_then(|c| c.poll_event()) {
                self.sort(id, event);
            }
        }
        self.peaks.sample();
    }

    fn sort(&mut self, id: ClientId, event: ClientEvent) {
        let (op, item) = match event {
            ClientEvent::Reached { .. } => {
                self.reached.insert(id);
                return;
            }
            ClientEvent::SessionOpened(_) | ClientEvent::SessionLost(_) => return,
            ClientEvent::Done { op, result, .. } => {
                self.finished.insert((id, op), Outcome::Reply(result));
                return;
            }
            ClientEvent::Admin { op, answer } => {
                self.finished.insert((id, op), Outcome::Admin(answer));
                return;
            }
            ClientEvent::Failed { op, error } => {
                if let Some(items) = self.streams.get_mut(&Stream(id, op)) {
                    items.push_back(Item::Failed(error.to_string()));
                } else {
                    self.finished.insert((id, op), Outcome::Failed(error));
                }
                return;
            }
            ClientEvent::Watch { op, event } => (op, Item::Watch(event)),
            ClientEvent::Signal { op, delivery } => (op, Item::Signal(delivery)),
            ClientEvent::Election { op, event } => (op, Item::Election(event)),
        };
        let items = self.streams.entry(Stream(id, op)).or_default();
        if items.len() < STREAM_ITEMS_MAX {
            items.push_back(item);
        } else if !matches!(items.back(), Some(Item::Failed(_))) {
            items.push_back(Item::Failed(format!("more than {STREAM_ITEMS_MAX} items not taken")));
        }
    }
}

/// The suite's host: the device behind a `RefCell`, borrowed only between polls.
struct Firmware {
    device: RefCell<Device>,
    namespace: String,
}

impl Firmware {
    fn with<T>(&self, f: impl FnOnce(&mut Device) -> T) -> T {
        f(&mut self.device.borrow_mut())
    }

    /// Starts an operation on client `id` (which must be there).
    fn start(&self, id: ClientId, f: impl FnOnce(&mut Client, Instant) -> OpId) -> Result<OpId, Failure> {
        let now = board::now();
        let mut d = self.device.borrow_mut();
        match d.host.client_at(id) {
            Some(c) => Ok(f(c, now)),
            None => Err(Failure::Host(format!("client {} is gone", id.0))),
        }
    }

    /// Waits for operation `op` of client `id` to end.
    async fn outcome(&self, id: ClientId, op: OpId) -> Result<Outcome, Failure> {
        let deadline = board::now().add_us(REQUEST_TIMEOUT_US);
        poll_fn(|_| {
            if let Some(outcome) = self.with(|d| d.finished.remove(&(id, op))) {
                return Poll::Ready(Ok(outcome));
            }
            if board::now() >= deadline {
                return Poll::Ready(Err(Failure::Host(format!(
                    "no answer within {} s",
                    REQUEST_TIMEOUT_US / 1_000_000
                ))));
            }
            Poll::Pending
        })
        .await
    }

    /// The stream's next item within `timeout_ms`.
    async fn next(&self, stream: Stream, timeout_ms: u64) -> Option<Item> {
        let deadline = board::now().add_us(timeout_ms * 1000);
        poll_fn(|_| {
            if let Some(item) = self.with(|d| d.streams.get_mut(&stream).and_then(VecDeque::pop_front)) {
                return Poll::Ready(Some(item));
            }
            if board::now() >= deadline {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Opens a stream: its items are kept from now on.
    fn open_stream(&self, id: ClientId, op: OpId) -> Stream {
        let stream = Stream(id, op);
        self.with(|d| {
            d.streams.entry(stream).or_default();
        });
        stream
    }
}

fn machine(outcome: Outcome) -> Result<Reply, Failure> {
    match outcome {
        Outcome::Reply(Ok(reply)) => Ok(reply),
        Outcome::Reply(Err(e)) => Err(Failure::Machine(e)),
        Outcome::Failed(e) => Err(Failure::Host(e.to_string())),
        Outcome::Admin(_) => Err(Failure::Host("an administrative answer to a request".into())),
    }
}

fn failed<T>(item: Option<Item>, pick: impl FnOnce(Item) -> Option<T>) -> Result<Option<T>, Failure> {
    match item {
        None => Ok(None),
        Some(Item::Failed(why)) => Err(Failure::Host(why)),
        Some(item) => {
            pick(item).map(Some).ok_or_else(|| Failure::Host("a stream item of another kind".into()))
        }
    }
}

impl Host for Firmware {
    type Client = ClientId;
    type Watch = Stream;
    type Subscription = Stream;
    type Observer = Stream;

    fn namespace(&self) -> String {
        self.namespace.clone()
    }

    async fn connect(&self, session_ttl_ms: u64) -> Result<ClientId, Failure> {
        let added = self.with(|d| {
            let now = board::now();
            d.seeds += 1;
            let cfg = ClientConfig {
                session_ttl_ms,
                operations_max: 32,
                endpoints_max: 8,
                ..ClientConfig::new(GroupId(1), d.endpoints.clone())
            };
            let seed = now.as_micros() ^ d.seeds;
            d.host.add_client(cfg, now, seed).inspect(|id| {
                d.reached.remove(id);
                if let Some(c) = d.host.client_at(*id) {
                    c.open_session(now);
                }
            })
        });
        let id = added.map_err(|e| Failure::Host(e.to_string()))?;
        let deadline = board::now().add_us(CONNECT_TIMEOUT_US);
        let reached = poll_fn(|_| {
            if self.with(|d| d.reached.contains(&id)) {
                Poll::Ready(true)
            } else if board::now() >= deadline {
                Poll::Ready(false)
            } else {
                Poll::Pending
            }
        })
        .await;
        if !reached {
            self.with(|d| d.host.remove_client(id));
            return Err(Failure::Host(format!(
                "no endpoint answered within {} s",
                CONNECT_TIMEOUT_US / 1_000_000
            )));
        }
        Ok(id)
    }

    async fn crash(&self, client: ClientId) -> Result<(), Failure> {
        self.with(|d| {
            d.host.remove_client(client);
            d.finished.retain(|(id, _), _| *id != client);
            d.streams.retain(|s, _| s.0 != client);
        });
        Ok(())
    }

    async fn close(&self, client: ClientId) {
        if let Ok(op) = self.start(client, |c, now| c.close(now)) {
            let _ = self.outcome(client, op).await;
        }
        let _ = self.crash(client).await;
    }

    async fn request(&self, client: &ClientId, request: Request) -> Result<Reply, Failure> {
        let op = self.start(*client, |c, now| c.call(now, request, Consistency::Linearizable))?;
        machine(self.outcome(*client, op).await?)
    }

    async fn admin(&self, client: &ClientId, body: RequestBody) -> Result<Answer, Failure> {
        let op = self.start(*client, |c, now| c.admin(now, body))?;
        match self.outcome(*client, op).await? {
            Outcome::Admin(answer) => Ok(answer),
            Outcome::Failed(e) => Err(Failure::Host(e.to_string())),
            Outcome::Reply(_) => Err(Failure::Host("a reply to an administrative request".into())),
        }
    }

    async fn watch(
        &self,
        client: &ClientId,
        filter: WatchFilter,
        from: Option<u64>,
    ) -> Result<Stream, Failure> {
        let op = self.start(*client, |c, now| c.watch(now, filter, from))?;
        Ok(self.open_stream(*client, op))
    }

    async fn next_watch(&self, watch: &mut Stream, timeout_ms: u64) -> Result<Option<WatchEvent>, Failure> {
        failed(self.next(*watch, timeout_ms).await, |i| match i {
            Item::Watch(e) => Some(e),
            _ => None,
        })
    }

    async fn subscribe(
        &self,
        client: &ClientId,
        pattern: String,
        queue_group: Option<String>,
    ) -> Result<Stream, Failure> {
        let (request, _) = calls::subscribe(pattern, queue_group).into_parts();
        let Request::Command(op) = request else {
            return Err(Failure::Host("subscribe is not a command".into()));
        };
        let id = self.start(*client, |c, now| c.submit(now, op))?;
        let stream = self.open_stream(*client, id);
        machine(self.outcome(*client, id).await?)?;
        Ok(stream)
    }

    async fn next_signal(
        &self,
        sub: &mut Stream,
        timeout_ms: u64,
    ) -> Result<Option<SignalDelivery>, Failure> {
        failed(self.next(*sub, timeout_ms).await, |i| match i {
            Item::Signal(s) => Some(s),
            _ => None,
        })
    }

    async fn observe(&self, client: &ClientId, name: String) -> Result<Stream, Failure> {
        let op = self.start(*client, |c, now| c.observe(now, name))?;
        Ok(self.open_stream(*client, op))
    }

    async fn next_election(
        &self,
        observer: &mut Stream,
        timeout_ms: u64,
    ) -> Result<Option<ElectionEvent>, Failure> {
        failed(self.next(*observer, timeout_ms).await, |i| match i {
            Item::Election(e) => Some(e),
            _ => None,
        })
    }

    async fn sleep(&self, ms: u64) {
        let deadline = board::now().add_us(ms * 1000);
        poll_fn(|_| if board::now() >= deadline { Poll::Ready(()) } else { Poll::Pending }).await;
    }
}

/// Runs `future` to its end on this loop: poll it, then move bytes and step the clients.
fn block_on<F: Future>(fw: &Firmware, future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        fw.with(Device::pump);
    }
}

/// One scenario, bounded by [`SCENARIO_TIMEOUT_US`].
async fn bounded(fw: &Firmware, scenario: Scenario) -> Verdict {
    let deadline = board::now().add_us(SCENARIO_TIMEOUT_US);
    let mut run = pin!(concord_conformance::run(fw, scenario));
    poll_fn(|cx| match run.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(v),
        Poll::Pending if board::now() >= deadline => {
            Poll::Ready(Verdict::Failed(format!("not finished within {} s", SCENARIO_TIMEOUT_US / 1_000_000)))
        }
        Poll::Pending => Poll::Pending,
    })
    .await
}

#[entry]
fn main() -> ! {
    board::heap_arena!(HEAP_ARENA_BYTES);
    board::paint_stack();
    let cmdline = board::cmdline();
    let words = cmdline.split(|c: char| c == ',' || c.is_whitespace()).filter(|w| !w.is_empty());
    let (addrs, names): (Vec<&str>, Vec<&str>) = words.partition(|w| w.contains(':'));
    let endpoints: Vec<Endpoint> = addrs.into_iter().map(Endpoint::addr).collect();
    if endpoints.is_empty() {
        board::say(
            "concord-firmware: FAILED no endpoints on the command line (-append HOST:PORT,… [NAMESPACE])",
        );
        board::exit(false);
    }
    let now = board::now();
    // Semihosting's command line starts with the image's path: the namespace is last.
    let namespace = names
        .iter()
        .skip(1)
        .last()
        .map_or_else(|| format!("mcu-{}", board::wall_seconds()), |n| (*n).to_string());
    // The first client only carries the line; every scenario client is added beside it.
    let first = ClientConfig { endpoints_max: 8, ..ClientConfig::new(GroupId(1), endpoints.clone()) };
    let epoch = board::wall_seconds() ^ (now.as_micros() as u32) ^ 0xC0C0_0003;
    let host = ClientHost::new(first, LinkConfig::default(), epoch, now, now.as_micros());
    let device = Device {
        host,
        uart: Uart0::new(),
        peaks: Peaks::default(),
        endpoints,
        reached: BTreeSet::new(),
        finished: BTreeMap::new(),
        streams: BTreeMap::new(),
        seeds: 0,
    };
    let fw = Firmware { device: RefCell::new(device), namespace };
    board::say("concord-firmware: conformance started");
    let mut report = Vec::new();
    for &scenario in Scenario::ALL {
        let started = board::now();
        let verdict = block_on(&fw, bounded(&fw, scenario));
        let ms = board::now().saturating_since_us(started) / 1000;
        board::say(&format!("conformance: {}: {verdict} ({ms} ms)", scenario.name()));
        report.push((scenario, verdict));
    }
    for line in concord_conformance::summary(&report).lines().filter(|l| l.starts_with("conformance:")) {
        board::say(line);
    }
    let (link, peaks) = fw.with(|d| (d.host.link().stats(), d.peaks));
    let resources = format!(
        "heap_arena={} heap_peak={} stack_peak={} frames_refused={} frames_resent={}",
        peaks.arena,
        peaks.heap,
        board::stack_peak_bytes(),
        link.frames_refused,
        link.frames_resent
    );
    let failed: Vec<&str> = report.iter().filter(|(_, v)| v.is_failed()).map(|(s, _)| s.name()).collect();
    if failed.is_empty() {
        board::say(&format!("concord-firmware: ok conformance {resources}"));
        board::exit(true)
    }
    board::say(&format!("concord-firmware: FAILED conformance: {} {resources}", failed.join(",")));
    board::exit(false)
}
