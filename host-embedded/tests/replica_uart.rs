//! The replica role over an in-memory UART with line noise: a device joins two core
//! servers as the third voter, catches up, carries commits with its vote while a server
//! is down, and rejoins from its stored log after a restart.

mod common;

use common::sim_flash::{SimFlash, SECTOR};
use common::{link_config, setup, uart_pair, Noise, Servers, Uart};
use concord_core::client::calls;
use concord_core::client::ClientEvent;
use concord_core::setup::Bootstrap;
use concord_core::storage::{LogOptions, Media, MemMedia};
use concord_core::wire::{Answer, RequestBody};
use concord_core::{Consistency, Instant, MembershipChange, NodeId, Role};
use concord_embedded::flash::FlashMedia;
use concord_embedded::{serial, ReplicaHost, ReplicaHostConfig};

const TICK_US: u64 = 1_000;
/// Ticks any step of the scenario may take: a minute of virtual time.
const STEP_TICKS_MAX: usize = 60_000;
const DEVICE: NodeId = NodeId(3);

struct World<M> {
    now: Instant,
    servers: Servers,
    device: Option<ReplicaHost<M>>,
    uart: Uart,
    events: Vec<ClientEvent>,
}

fn device_config() -> ReplicaHostConfig {
    ReplicaHostConfig {
        setup: setup(DEVICE),
        bootstrap: Bootstrap::Join,
        peers: vec![(NodeId(1), "peer:1".into()), (NodeId(2), "peer:2".into())],
        link: link_config(),
        log: LogOptions { segment_bytes_max: 16 << 10, record_bytes_max: 8 << 10 },
    }
}

impl<M: Media> World<M>
where
    M::Error: std::fmt::Debug,
{
    fn tick(&mut self) {
        self.now = self.now.add_us(TICK_US);
        self.servers.step(self.now);
        if let Some(d) = self.device.as_mut() {
            serial::pump(&mut self.uart, d.link(), self.now).unwrap();
            d.step(self.now).unwrap();
            serial::pump(&mut self.uart, d.link(), self.now).unwrap();
        }
        self.events.extend(std::iter::from_fn(|| self.servers.admin.poll_event()));
    }

    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        for _ in 0..STEP_TICKS_MAX {
            if done(self) {
                return;
            }
            self.tick();
        }
        panic!("{what}: not within {STEP_TICKS_MAX} ticks");
    }

    /// An increment through the servers' own client; its value.
    fn incr(&mut self) -> i64 {
        let (request, decode) = calls::Counter::new("n").incr().into_parts();
        let op = self.servers.admin.call(self.now, request, Consistency::Linearizable);
        let mut value = None;
        self.until("an increment", |w| {
            if let Some(i) =
                w.events.iter().position(|e| matches!(e, ClientEvent::Done { op: o, .. } if *o == op))
            {
                let ClientEvent::Done { result, .. } = w.events.remove(i) else { unreachable!() };
                value = Some(decode.decode(result.unwrap()).unwrap());
            }
            value.is_some()
        });
        value.unwrap()
    }

    fn device_applied(&self) -> u64 {
        self.device.as_ref().map_or(0, |d| d.status().applied)
    }
}

#[test]
fn a_device_votes_carries_commits_and_rejoins_from_its_log() {
    // A restart keeps what was synced and loses the rest, as a power cut would.
    device_scenario(MemMedia::new(), |mut m| {
        m.crash(|_, _| 0);
        m
    });
}

/// The same with the device's log on (simulated) NOR flash through `embedded-storage`:
/// 64 KiB in two banks, so the journal compacts along the way.
#[test]
fn a_device_with_its_log_on_flash_rejoins_from_it() {
    const REGION: u32 = (16 * SECTOR) as u32;
    let flash = FlashMedia::open(SimFlash::new(16), 0, REGION).unwrap();
    // A restart reads the flash again from scratch.
    let stats = device_scenario(flash, |m| FlashMedia::open(m.into_flash(), 0, REGION).unwrap()).stats();
    eprintln!("flash: {stats:?}");
    // (Compaction and power cuts are beaten on in tests/flash_media.rs.)
    assert!(stats.records > 0 && stats.used_bytes > 500, "the log went through the flash: {stats:?}");
}

/// The scenario; the device's medium at its end.
fn device_scenario<M: Media>(fresh: M, restart: impl Fn(M) -> M) -> M
where
    M::Error: std::fmt::Debug,
{
    let now = Instant::ZERO;
    let (device_uart, cluster_uart) = uart_pair(3);
    let noise = Noise { flip: 5, drop: 5, dup: 5, repeat: 500 };
    device_uart.set_noise(noise);
    cluster_uart.set_noise(noise);
    let mut w = World {
        now,
        servers: Servers::new(2, cluster_uart, now),
        device: None,
        uart: device_uart,
        events: Vec::new(),
    };
    w.until("a leader among the servers", |w| w.servers.leader().is_some());
    for n in 1..=10 {
        assert_eq!(w.incr(), n);
    }

    // `member add 3`, then the device starts and joins.
    let op = w.servers.admin.admin(w.now, RequestBody::ChangeMembership(MembershipChange::AddVoter(DEVICE)));
    w.until("the membership change", |w| {
        w.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Admin { op: o, answer: Answer::Membership { .. } } if *o == op))
    });
    w.device = Some(ReplicaHost::open(device_config(), fresh, 1, w.now, 3).unwrap());
    let leader = w.servers.leader().unwrap();
    let target = w.servers.replicas[leader].node().commit_index();
    w.until("the device catching up", |w| w.device_applied() >= target);
    assert_eq!(w.device.as_ref().unwrap().status().role, Role::Follower);

    // Stop the server that does not lead: a commit now needs the device's vote.
    let leader = w.servers.leader().unwrap();
    let other = 1 - leader;
    w.servers.up[other] = false;
    for n in 11..=15 {
        assert_eq!(w.incr(), n, "committed by the leader and the device");
    }
    let applied = w.device_applied();
    assert!(applied >= w.servers.replicas[leader].node().commit_index() - 1);

    // Restart the device from its stored log (with the same epoch: a board without a
    // clock); commits need it again once it is back.
    let media = restart(w.device.take().unwrap().into_media());
    let commit_before = w.servers.replicas[leader].node().commit_index();
    for _ in 0..500 {
        w.tick();
    }
    assert_eq!(
        w.servers.replicas[leader].node().commit_index(),
        commit_before,
        "no quorum without the device"
    );
    let host = ReplicaHost::open(device_config(), media, 1, w.now, 4).unwrap();
    assert!(host.status().applied <= applied);
    assert!(host.store().stats().last_index >= applied, "the device restarts from its stored log");
    w.device = Some(host);
    assert_eq!(w.incr(), 16, "committed after the device rejoined");
    let link = w.device.as_mut().unwrap().link().stats();
    assert!(link.frames_refused > 0, "the line was noisy: {link:?}");

    // `member remove 3` (with the other server back: the new membership's quorum needs
    // it): the device learns it and stops instead of campaigning.
    w.servers.up[other] = true;
    let op = w.servers.admin.admin(w.now, RequestBody::ChangeMembership(MembershipChange::Remove(DEVICE)));
    w.until("the removal", |w| {
        w.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Admin { op: o, answer: Answer::Membership { .. } } if *o == op))
    });
    let mut device = w.device.take().unwrap();
    let mut stopped = None;
    for _ in 0..STEP_TICKS_MAX {
        w.tick();
        serial::pump(&mut w.uart, device.link(), w.now).unwrap();
        if let Err(e) = device.step(w.now) {
            stopped = Some(e);
            break;
        }
        serial::pump(&mut w.uart, device.link(), w.now).unwrap();
    }
    let stopped = stopped.expect("the removed device stops");
    assert!(matches!(stopped, concord_embedded::ReplicaHostError::Removed { .. }), "{stopped}");
    assert!(stopped.to_string().starts_with("removed from the cluster"), "{stopped}");
    assert!(device.step(w.now).is_err(), "it stays stopped");
    device.into_media()
}
