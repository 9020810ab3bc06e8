//! The replica role: a voting member of a cluster, its peers reached through the serial
//! bridge, its log on NOR flash through `embedded-storage` (on QEMU a flash image in a
//! host file, see `media`).
//!
//! Command line (QEMU's `-append`): `id=N group=G store=PATH peers=ID@HOST:PORT,…`.
//! The console reports the start (with what was recovered) and every change of role,
//! leader, commit or applied index: `concord-replica: role=… term=… leader=… commit=…
//! applied=… heap_peak=… stack_peak=…`. It runs until the emulator is stopped.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use concord_core::server::ServeLimits;
use concord_core::setup::{Bootstrap, NodeSetup};
use concord_core::storage::LogOptions;
use concord_core::wire::link::LinkConfig;
use concord_core::{Config, GroupId, NodeId};
use concord_embedded::flash::FlashMedia;
use concord_embedded::{
    device_limits, serial, ReplicaHost, ReplicaHostConfig, ReplicaHostError, ReplicaStatus,
    DEVICE_FRAME_BYTES,
};
use concord_firmware::media::{HostFlash, FLASH_BYTES};
use concord_firmware::{self as board, Peaks, Uart0};
use cortex_m_rt::entry;

/// The heap arena, bytes: the replica's state machine, its in-memory log and the
/// mirrored storage, and the link's buffers.
const HEAP_ARENA_BYTES: usize = 40 * 1024;
/// Applied entries between snapshots: keeps the log, and so RAM, small.
const SNAPSHOT_THRESHOLD_ENTRIES: u64 = 64;

/// Also reached when the heap arena is exhausted (an allocation failure panics).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    board::say(&format!("concord-replica: FAILED panic: {info}"));
    board::exit(false)
}

fn fail(why: &str) -> ! {
    board::say(&format!("concord-replica: FAILED {why}"));
    board::exit(false)
}

/// `key=value` words of the command line.
fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn config(cmdline: &str) -> Result<(ReplicaHostConfig, String), String> {
    let id: u64 = arg(cmdline, "id").and_then(|v| v.parse().ok()).ok_or("id=N is missing")?;
    let group: u64 = arg(cmdline, "group").and_then(|v| v.parse().ok()).unwrap_or(1);
    let store = arg(cmdline, "store").ok_or("store=PATH is missing")?;
    let mut peers = Vec::new();
    for p in arg(cmdline, "peers").unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let (pid, addr) = p.split_once('@').ok_or("peers=ID@HOST:PORT,…")?;
        let pid: u64 = pid.parse().map_err(|_| "a peer id is not a number")?;
        peers.push((NodeId(pid), String::from(addr)));
    }
    let mut raft = Config::new(NodeId(id), GroupId(group));
    raft.election_timeout_min_us = 300_000;
    raft.election_timeout_max_us = 600_000;
    raft.heartbeat_interval_us = 50_000;
    raft.snapshot_threshold_entries = SNAPSHOT_THRESHOLD_ENTRIES;
    raft.pending_proposals_max = 64;
    raft.pending_reads_max = 64;
    raft.inflight_appends_max = 4;
    raft.snapshot_bytes_max = 32 * 1024;
    let serve = ServeLimits { frame_bytes_max: DEVICE_FRAME_BYTES, ..ServeLimits::default() };
    let setup = NodeSetup::new(raft, device_limits(), serve);
    let log = LogOptions { segment_bytes_max: 8 * 1024, record_bytes_max: DEVICE_FRAME_BYTES };
    let cfg =
        ReplicaHostConfig { setup, bootstrap: Bootstrap::Join, peers, link: LinkConfig::default(), log };
    Ok((cfg, String::from(store)))
}

#[entry]
fn main() -> ! {
    board::heap_arena!(HEAP_ARENA_BYTES);
    board::paint_stack();
    let cmdline = board::cmdline();
    let (cfg, store) = config(&cmdline).unwrap_or_else(|e| fail(&e));
    let flash = HostFlash::open(&store).unwrap_or_else(|e| fail(&format!("flash image: {e:?}")));
    let media =
        FlashMedia::open(flash, 0, FLASH_BYTES as u32).unwrap_or_else(|e| fail(&format!("flash: {e}")));
    let now = board::now();
    let epoch = board::wall_seconds() ^ (now.as_micros() as u32);
    let seed = u64::from(board::wall_seconds()) << 20 ^ now.as_micros();
    let mut host = ReplicaHost::open(cfg, media, epoch, now, seed).unwrap_or_else(|e| fail(&format!("{e}")));
    let stats = host.store().stats();
    board::say(&format!(
        "concord-replica: started recovered_last_index={} segments={} arena={HEAP_ARENA_BYTES}",
        stats.last_index, stats.segment_count
    ));
    let mut uart = Uart0::new();
    let mut peaks = Peaks::default();
    let mut shown: Option<ReplicaStatus> = None;
    loop {
        let now = board::now();
        let _ = serial::pump(&mut uart, host.link(), now);
        match host.step(now) {
            Ok(()) => {}
            // As `concord serve` does: a clear line, and a failure status.
            Err(ReplicaHostError::Removed { by }) => {
                board::say(&format!("concord-replica: removed from the cluster by node {}; stopping", by.0));
                board::exit(false)
            }
            Err(e) => fail(&format!("{e}")),
        }
        let _ = serial::pump(&mut uart, host.link(), now);
        peaks.sample();
        let status = host.status();
        if shown != Some(status) {
            shown = Some(status);
            board::say(&format!(
                "concord-replica: role={:?} term={} leader={} commit={} applied={} heap_peak={} stack_peak={}",
                status.role,
                status.term,
                status.leader.map_or(0, |l| l.0),
                status.commit,
                status.applied,
                peaks.heap,
                board::stack_peak_bytes()
            ));
        }
    }
}
