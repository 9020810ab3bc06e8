//! The client role: opens a session with a cluster through the serial bridge, takes a
//! lock and checks its fence, increments a counter, writes and reads a key
//! conditionally, publishes a signal, releases the lock, and reports on the console.
//!
//! The cluster's client addresses come on the command line (QEMU's `-append`), comma
//! separated. The console's last line is `concord-firmware: ok …` or
//! `concord-firmware: FAILED …`, and the exit status says the same.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use concord_core::client::calls::{self, Call};
use concord_core::client::{ClientConfig, ClientEvent, Endpoint, OpId};
use concord_core::machine::kv::PutMode;
use concord_core::machine::Fence;
use concord_core::machine::Reply;
use concord_core::wire::link::LinkConfig;
use concord_core::{Consistency, GroupId, Instant};
use concord_embedded::{serial, ClientHost};
use concord_firmware::{self as board, Peaks, Uart0};
use core::time::Duration;
use cortex_m_rt::entry;

/// The heap arena, bytes: everything the core's client and the link allocate (about 5 KB
/// at the peak measured under QEMU; the rest is margin).
const HEAP_ARENA_BYTES: usize = 12 * 1024;
/// How long one call may take before the firmware gives up, µs.
const CALL_TIMEOUT_US: u64 = 30_000_000;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    board::say(&format!("concord-firmware: FAILED panic: {info}"));
    board::exit(false)
}

struct Device {
    host: ClientHost,
    uart: Uart0,
    peaks: Peaks,
    session_lost: bool,
}

impl Device {
    /// One pass of the loop: bytes both ways, then the client.
    fn step(&mut self) -> Instant {
        let now = board::now();
        let _ = serial::pump(&mut self.uart, self.host.link(), now);
        self.host.step(now);
        let _ = serial::pump(&mut self.uart, self.host.link(), now);
        self.peaks.sample();
        now
    }

    /// Runs `call` to its end: its result, or why it has none.
    fn call<T>(&mut self, what: &str, call: Call<T>) -> Result<T, String> {
        let (request, decode) = call.into_parts();
        let start = board::now();
        let op = self.host.client().call(start, request, Consistency::Linearizable);
        let reply = self.wait(what, op, start)?;
        decode.decode(reply).map_err(|e| format!("{what}: {e}"))
    }

    /// Closes the session (releasing what it holds at once).
    fn close(&mut self) -> Result<(), String> {
        let start = board::now();
        let op = self.host.client().close(start);
        self.wait("close", op, start).map(|_| ())
    }

    /// Steps until operation `op` ends.
    fn wait(&mut self, what: &str, op: OpId, start: Instant) -> Result<Reply, String> {
        loop {
            let now = self.step();
            while let Some(event) = self.host.poll_event() {
                match event {
                    ClientEvent::Done { op: done, result, .. } if done == op => {
                        return result.map_err(|e| format!("{what}: {e}"));
                    }
                    ClientEvent::Failed { op: failed, error } if failed == op => {
                        return Err(format!("{what}: {error}"));
                    }
                    ClientEvent::SessionLost(_) => self.session_lost = true,
                    _ => {}
                }
            }
            if now.saturating_since_us(start) > CALL_TIMEOUT_US {
                return Err(format!("{what}: no answer within {} s", CALL_TIMEOUT_US / 1_000_000));
            }
        }
    }
}

fn scenario(d: &mut Device) -> Result<String, String> {
    let lock = calls::Lock::new("mcu/lock");
    let Fence(fence) = d.call("lock", lock.lock(Some(Duration::from_secs(10))))?;
    if fence == 0 {
        return Err("lock: fence 0".into());
    }
    if !d.call("is_locked_by_me", lock.is_locked_by_me())? {
        return Err("the lock is not held after the grant".into());
    }
    let session = d.host.client().session().map(|s| s.0).unwrap_or(0);
    let counter = d.call("incr", calls::Counter::new("mcu/counter").incr())?;
    // The fence goes into the store, where the test reads it back.
    let tag =
        d.call("kv put", calls::Kv.put("mcu/fence", format!("{fence}").into_bytes(), PutMode::Always, None))?;
    let stale = d.call(
        "kv put if-match",
        calls::Kv.put(
            "mcu/fence",
            Vec::from(&b"x"[..]),
            PutMode::IfMatch(concord_core::machine::Etag(tag.0 + 1_000_000)),
            None,
        ),
    );
    if stale.is_ok() {
        return Err("a write with a wrong tag was taken".into());
    }
    let receivers = d.call("publish", calls::publish("mcu.hello", Vec::from(&b"hi"[..])))?;
    let released = d.call("unlock", lock.unlock())?;
    if d.session_lost {
        return Err("the session was lost".into());
    }
    d.close()?;
    Ok(format!(
        "fence={fence} counter={counter} session={session} kv_tag={} receivers={receivers} holds_after_unlock={released}",
        tag.0
    ))
}

#[entry]
fn main() -> ! {
    board::heap_arena!(HEAP_ARENA_BYTES);
    board::paint_stack();
    let cmdline = board::cmdline();
    let endpoints: Vec<Endpoint> = cmdline
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|a| a.contains(':'))
        .map(Endpoint::addr)
        .collect();
    if endpoints.is_empty() {
        board::say("concord-firmware: FAILED no endpoints on the command line (-append HOST:PORT,…)");
        board::exit(false);
    }
    let now = board::now();
    let cfg = ClientConfig {
        operations_max: 16,
        commands_in_flight_max: 4,
        endpoints_max: 8,
        ..ClientConfig::new(GroupId(1), endpoints)
    };
    // The epoch tells the bridge this is a new run; the clock reading differs per boot.
    let epoch = now.as_micros() as u32 ^ 0xC0C0_0001;
    let host = ClientHost::new(cfg, LinkConfig::default(), epoch, now, now.as_micros());
    let mut d = Device { host, uart: Uart0::new(), peaks: Peaks::default(), session_lost: false };
    board::say("concord-firmware: client started");
    let result = scenario(&mut d);
    let link = d.host.link().stats();
    let resources = format!(
        "heap_arena={} heap_peak={} stack_peak={} frames_refused={} frames_resent={}",
        d.peaks.arena,
        d.peaks.heap,
        board::stack_peak_bytes(),
        link.frames_refused,
        link.frames_resent
    );
    match result {
        Ok(report) => {
            board::say(&format!("concord-firmware: ok {report} {resources}"));
            board::exit(true)
        }
        Err(why) => {
            board::say(&format!("concord-firmware: FAILED {why} {resources}"));
            board::exit(false)
        }
    }
}
