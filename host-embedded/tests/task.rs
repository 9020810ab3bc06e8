//! The async driving loops, as an embassy task would run them: `drive_client` serves
//! calls another task posts to the mailbox, and `drive_replica` keeps a device voting
//! until it is removed from the membership. Time is virtual: the test's clock steps the
//! in-memory servers each time the driver waits.

mod common;

use common::{link_config, setup, uart_pair, Noise, Servers};
use concord_core::client::calls::{self, Call};
use concord_core::client::{ClientConfig, ClientEvent, Endpoint};
use concord_core::machine::Fence;
use concord_core::setup::Bootstrap;
use concord_core::storage::{LogOptions, MemMedia};
use concord_core::wire::{Answer, RequestBody};
use concord_core::{Consistency, GroupId, Instant, MembershipChange, NodeId};
use concord_embedded::mailbox::{Job, Mailbox};
use concord_embedded::task::{drive_client, drive_replica, Clock, DriveError};
use concord_embedded::{ClientHost, ReplicaHost, ReplicaHostConfig, ReplicaHostError};
use embassy_futures::select::{select, Either};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::Poll;

const TICK_US: u64 = 1_000;
/// Virtual time a test may take before it fails.
const BOUND_US: u64 = 120_000_000;

/// Virtual time that moves one tick, stepping the servers, each time a driver polls its
/// sleep.
struct VirtualClock<'a> {
    now: Cell<Instant>,
    servers: &'a RefCell<Servers>,
    admin_events: RefCell<Vec<ClientEvent>>,
}

impl VirtualClock<'_> {
    fn tick(&self) {
        let now = self.now.get().add_us(TICK_US);
        assert!(now.as_micros() < BOUND_US, "not done within {} s of virtual time", BOUND_US / 1_000_000);
        self.now.set(now);
        let mut s = self.servers.borrow_mut();
        s.step(now);
        self.admin_events.borrow_mut().extend(std::iter::from_fn(|| s.admin.poll_event()));
    }

    /// An administrative request through the servers' own client: its answer.
    async fn admin(&self, body: RequestBody) -> Answer {
        let op = self.servers.borrow_mut().admin.admin(self.now.get(), body);
        poll_fn(|_| {
            let mut events = self.admin_events.borrow_mut();
            match events.iter().position(|e| matches!(e, ClientEvent::Admin { op: o, .. } if *o == op)) {
                Some(i) => match events.remove(i) {
                    ClientEvent::Admin { answer, .. } => Poll::Ready(answer),
                    _ => unreachable!(),
                },
                None => Poll::Pending,
            }
        })
        .await
    }

    /// A typed call through the servers' own client.
    async fn call<T>(&self, call: Call<T>) -> T {
        let (request, decode) = call.into_parts();
        let op = self.servers.borrow_mut().admin.call(self.now.get(), request, Consistency::Linearizable);
        let reply = poll_fn(|_| {
            let mut events = self.admin_events.borrow_mut();
            match events.iter().position(|e| matches!(e, ClientEvent::Done { op: o, .. } if *o == op)) {
                Some(i) => match events.remove(i) {
                    ClientEvent::Done { result, .. } => Poll::Ready(result.expect("the call succeeds")),
                    _ => unreachable!(),
                },
                None => Poll::Pending,
            }
        })
        .await;
        decode.decode(reply).expect("the reply decodes")
    }
}

impl Clock for VirtualClock<'_> {
    fn now(&self) -> Instant {
        self.now.get()
    }

    async fn sleep_until(&self, at: Instant) {
        poll_fn(|_| {
            if self.now.get() >= at {
                return Poll::Ready(());
            }
            self.tick();
            Poll::Pending
        })
        .await;
    }
}

/// Another task posts calls while the driving task runs the client: each result comes
/// back under its poster's id, in a session that survives a noisy line.
#[test]
fn drive_client_serves_calls_posted_by_another_task() {
    let (device_uart, cluster_uart) = uart_pair(41);
    let noise = Noise { flip: 5, drop: 5, dup: 5, repeat: 500 };
    device_uart.set_noise(noise);
    cluster_uart.set_noise(noise);
    let servers = RefCell::new(Servers::new(1, cluster_uart, Instant::ZERO));
    let clock =
        VirtualClock { now: Cell::new(Instant::ZERO), servers: &servers, admin_events: RefCell::default() };
    let cfg = ClientConfig::new(GroupId(1), vec![Endpoint::addr("client:1")]);
    let mut host = ClientHost::new(cfg, link_config(), 9, Instant::ZERO, 41);
    let (mut rx, mut tx) = (device_uart.clone(), device_uart);
    let mailbox: Mailbox<NoopRawMutex, 4> = Mailbox::new();
    let mut lost = 0;
    let driver = drive_client(&mut host, &mut rx, &mut tx, &clock, &mailbox, |e| {
        if matches!(e, ClientEvent::SessionLost(_)) {
            lost += 1;
        }
    });
    let counter = calls::Counter::new("posted");
    let poster = async {
        let lock = calls::Lock::new("door");
        let (request, decode) = lock.lock(None).into_parts();
        mailbox.post(Job { id: 100, request, consistency: Consistency::Linearizable }).await;
        let done = mailbox.finished().await;
        assert_eq!(done.id, 100);
        let Fence(fence) = decode.decode(done.result.expect("granted")).unwrap();
        assert!(fence > 0);
        let mut values = Vec::new();
        for round in 0..5u32 {
            // Two at a time: both run, in either order.
            for k in 0..2 {
                let (request, _) = counter.incr().into_parts();
                mailbox
                    .post(Job { id: round * 2 + k, request, consistency: Consistency::Linearizable })
                    .await;
            }
            for _ in 0..2 {
                let done = mailbox.finished().await;
                let (_, decode) = counter.incr().into_parts();
                values.push(decode.decode(done.result.expect("applied")).unwrap());
            }
        }
        values.sort_unstable();
        assert_eq!(values, (1..=10).collect::<Vec<i64>>(), "each increment applied once");
        clock.now()
    };
    match embassy_futures::block_on(select(driver, poster)) {
        Either::First(e) => panic!("the driver stopped: {e}"),
        Either::Second(at) => eprintln!("done at {} ms of virtual time", at.as_micros() / 1000),
    }
    assert_eq!(lost, 0, "the session held");
    assert!(host.link().stats().frames_refused > 0, "the line was noisy");
}

/// A device driven by `drive_replica` joins two servers as the third voter, carries a
/// commit with its vote while a server is down, and stops the task when removed.
#[test]
fn drive_replica_votes_and_stops_when_removed() {
    let (device_uart, cluster_uart) = uart_pair(43);
    let servers = RefCell::new(Servers::new(2, cluster_uart, Instant::ZERO));
    let clock =
        VirtualClock { now: Cell::new(Instant::ZERO), servers: &servers, admin_events: RefCell::default() };
    let cfg = ReplicaHostConfig {
        setup: setup(NodeId(3)),
        bootstrap: Bootstrap::Join,
        peers: vec![(NodeId(1), "peer:1".into()), (NodeId(2), "peer:2".into())],
        link: link_config(),
        log: LogOptions { segment_bytes_max: 16 << 10, record_bytes_max: 8 << 10 },
    };
    let mut host = ReplicaHost::open(cfg, MemMedia::new(), 3, Instant::ZERO, 43).unwrap();
    let (mut rx, mut tx) = (device_uart.clone(), device_uart);
    let counter = calls::Counter::new("n");
    let driver = drive_replica(&mut host, &mut rx, &mut tx, &clock);
    let script = async {
        assert_eq!(clock.call(counter.incr()).await, 1);
        let added = clock.admin(RequestBody::ChangeMembership(MembershipChange::AddVoter(NodeId(3)))).await;
        assert!(matches!(added, Answer::Membership { .. }), "{added:?}");
        assert_eq!(clock.call(counter.incr()).await, 2);
        // The server that does not lead goes down: the next commit needs the device.
        let other = 1 - servers.borrow().leader().expect("a leader");
        servers.borrow_mut().up[other] = false;
        assert_eq!(clock.call(counter.incr()).await, 3, "committed with the device's vote");
        servers.borrow_mut().up[other] = true;
        let removed = clock.admin(RequestBody::ChangeMembership(MembershipChange::Remove(NodeId(3)))).await;
        assert!(matches!(removed, Answer::Membership { .. }), "{removed:?}");
        // The driver ends the test when the device learns it.
        core::future::pending::<()>().await;
    };
    let stopped = match embassy_futures::block_on(select(driver, script)) {
        Either::First(e) => e,
        Either::Second(()) => unreachable!(),
    };
    assert!(
        matches!(stopped, DriveError::Replica(ReplicaHostError::Removed { .. })),
        "the task stopped for its removal: {stopped}"
    );
    assert!(host.status().applied >= 3, "the device applied what it voted for");
}
