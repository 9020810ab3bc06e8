//! Board support for Concord's firmware on the Stellaris LM3S6965 (Cortex-M3) as QEMU's
//! `lm3s6965evb` emulates it — or, with feature `mps2-an385`, on QEMU's ARM MPS2 AN385
//! (Cortex-M3) — : UART0 as the serial line (a PL011 on the first, a CMSDK APB UART on
//! the second), the heap arena, the clock, the console and the exit code.
//!
//! Time, the console, the command line and the exit code come from the debugger's
//! semihosting interface, which QEMU provides: it is how the firmware tells the test
//! what happened, and on this emulated board it is the only clock that follows the
//! host's (the bridge and the servers keep real time). On a real board the clock would
//! be a hardware timer; nothing else changes.
//!
//! Unsafe code is confined to this file: the UART's registers, the allocator's arena
//! and the stack measurement touch memory the compiler does not know about.

#![no_std]
#![allow(unsafe_code)]

extern crate alloc;

pub mod media;

use alloc::string::String;
use concord_core::Instant;
use core::ptr::{addr_of_mut, read_volatile, write_volatile};
use cortex_m_semihosting::{hprintln, syscall1};
use embedded_alloc::LlffHeap as Heap;

#[global_allocator]
static HEAP: Heap = Heap::empty();

/// Initialises the global allocator over a fixed arena of `N` bytes, once, at start.
/// The arena never grows: an allocation that does not fit fails (and the firmware
/// stops with the allocation error).
#[macro_export]
macro_rules! heap_arena {
    ($bytes:expr) => {{
        static mut ARENA: [core::mem::MaybeUninit<u8>; $bytes] = [core::mem::MaybeUninit::uninit(); $bytes];
        // SAFETY: called once, before any allocation; the arena is used by nothing else.
        unsafe { $crate::init_heap(core::ptr::addr_of_mut!(ARENA) as *mut u8, $bytes) }
    }};
}

/// Hands `bytes` at `start` to the allocator.
///
/// # Safety
/// Once, before any allocation, with memory used by nothing else.
pub unsafe fn init_heap(start: *mut u8, bytes: usize) {
    HEAP.init(start as usize, bytes);
    ARENA_BYTES.store(bytes, core::sync::atomic::Ordering::Relaxed);
}

static ARENA_BYTES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The heap arena's size, and the most of it in use at any [`Peaks::sample`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Peaks {
    /// Arena bytes.
    pub arena: usize,
    /// Most heap bytes in use when sampled.
    pub heap: usize,
}

impl Peaks {
    /// Records the heap in use now.
    pub fn sample(&mut self) {
        self.arena = ARENA_BYTES.load(core::sync::atomic::Ordering::Relaxed);
        self.heap = self.heap.max(HEAP.used());
    }
}

/// UART0 of the LM3S6965: an ARM PL011.
#[cfg(not(feature = "mps2-an385"))]
mod regs {
    pub(crate) const UART0: usize = 0x4000_C000;
    pub(crate) const DATA: usize = 0x000;
    pub(crate) const FLAGS: usize = 0x018;
    const LCRH: usize = 0x02C;
    const CR: usize = 0x030;
    /// Flags: receive FIFO empty, transmit FIFO full.
    pub(crate) const RX_EMPTY: u32 = 1 << 4;
    pub(crate) const TX_FULL: u32 = 1 << 5;
    /// The flag that is set when a byte waits (PL011: none; `RX_EMPTY` is inverted).
    pub(crate) const RX_FLAG_MEANS_EMPTY: bool = true;
    /// 8 data bits, FIFOs enabled (without them the receiver holds a single byte).
    const LCRH_8N1_FIFO: u32 = (0b11 << 5) | (1 << 4);
    /// UART, transmitter and receiver enabled.
    const CR_ENABLE: u32 = (1 << 0) | (1 << 8) | (1 << 9);
    /// Register writes that enable the UART.
    pub(crate) const INIT: [(usize, u32); 2] = [(LCRH, LCRH_8N1_FIFO), (CR, CR_ENABLE)];
}

/// UART0 of the MPS2 AN385: an ARM CMSDK APB UART.
#[cfg(feature = "mps2-an385")]
mod regs {
    pub(crate) const UART0: usize = 0x4000_4000;
    pub(crate) const DATA: usize = 0x000;
    pub(crate) const FLAGS: usize = 0x004;
    const CTRL: usize = 0x008;
    const BAUDDIV: usize = 0x010;
    /// State: a received byte waits, the transmit buffer is full.
    pub(crate) const RX_EMPTY: u32 = 1 << 1;
    pub(crate) const TX_FULL: u32 = 1 << 0;
    pub(crate) const RX_FLAG_MEANS_EMPTY: bool = false;
    /// Transmitter and receiver enabled; the smallest divider the UART accepts.
    pub(crate) const INIT: [(usize, u32); 2] = [(BAUDDIV, 16), (CTRL, 0b11)];
}

/// The serial line: UART0, through the `embedded-io` traits.
pub struct Uart0(());

impl Uart0 {
    /// Configures UART0 (8N1, FIFOs on where it has them) and returns it.
    pub fn new() -> Self {
        for (reg, value) in regs::INIT {
            // SAFETY: the UART's documented registers, written once at start.
            unsafe { write_volatile((regs::UART0 + reg) as *mut u32, value) };
        }
        Self(())
    }

    fn flags(&self) -> u32 {
        // SAFETY: reading the flag register has no side effect.
        unsafe { read_volatile((regs::UART0 + regs::FLAGS) as *const u32) }
    }

    fn rx_empty(&self) -> bool {
        (self.flags() & regs::RX_EMPTY != 0) == regs::RX_FLAG_MEANS_EMPTY
    }

    fn tx_full(&self) -> bool {
        self.flags() & regs::TX_FULL != 0
    }
}

impl Default for Uart0 {
    fn default() -> Self {
        Self::new()
    }
}

impl embedded_io::ErrorType for Uart0 {
    type Error = core::convert::Infallible;
}

impl embedded_io::ReadReady for Uart0 {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.rx_empty())
    }
}

impl embedded_io::WriteReady for Uart0 {
    fn write_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.tx_full())
    }
}

impl embedded_io::Read for Uart0 {
    /// Waits for one byte, then takes what the FIFO holds, up to `buf`'s size.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut n = 0;
        while n < buf.len() {
            if self.rx_empty() {
                if n > 0 {
                    break;
                }
                continue;
            }
            // SAFETY: reading DR pops one byte of the receive FIFO (the low 8 bits;
            // the error bits above them are ignored: the link's CRC catches damage).
            buf[n] = unsafe { read_volatile((regs::UART0 + regs::DATA) as *const u32) } as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart0 {
    /// Waits for room for one byte, then fills the FIFO from `buf`.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let mut n = 0;
        while n < buf.len() {
            if self.tx_full() {
                if n > 0 {
                    break;
                }
                continue;
            }
            // SAFETY: writing DR queues one byte in the transmit FIFO.
            unsafe { write_volatile((regs::UART0 + regs::DATA) as *mut u32, u32::from(buf[n])) };
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Time since the emulator started: semihosting's `SYS_ELAPSED`, in QEMU the host's
/// monotonic clock in nanoseconds.
pub fn now() -> Instant {
    let mut ticks = [0u32; 2];
    // SAFETY: SYS_ELAPSED writes the two words of the block it is given.
    let r = unsafe { syscall1!(ELAPSED, ticks.as_mut_ptr()) };
    if r != 0 {
        return Instant::ZERO;
    }
    let ns = u64::from(ticks[0]) | (u64::from(ticks[1]) << 32);
    Instant::from_micros(ns / 1_000)
}

/// The command line the emulator was started with (QEMU's `-append`), at most
/// `CMDLINE_BYTES` bytes.
pub fn cmdline() -> String {
    const CMDLINE_BYTES: usize = 256;
    let mut buf = [0u8; CMDLINE_BYTES];
    let mut block = [buf.as_mut_ptr() as usize, CMDLINE_BYTES];
    // SAFETY: SYS_GET_CMDLINE writes at most block[1] bytes to block[0] and the length
    // it wrote to block[1].
    let r = unsafe { syscall1!(GET_CMDLINE, block.as_mut_ptr()) };
    if r != 0 {
        return String::new();
    }
    let len = block[1].min(CMDLINE_BYTES);
    String::from_utf8_lossy(&buf[..len]).trim_end_matches('\0').into()
}

/// Seconds since 1970 by the host's wall clock (semihosting's `SYS_TIME`): differs
/// between runs, which is what a link epoch needs.
pub fn wall_seconds() -> u32 {
    // SAFETY: SYS_TIME takes no argument.
    unsafe { cortex_m_semihosting::syscall1!(TIME, 0) as u32 }
}

/// Prints a line on the emulator's console.
pub fn say(line: &str) {
    hprintln!("{}", line);
}

/// Ends the emulation with `ok` as its exit status.
pub fn exit(ok: bool) -> ! {
    use cortex_m_semihosting::debug;
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    #[allow(clippy::empty_loop)]
    loop {}
}

// Stack bounds from cortex-m-rt's linker script: the stack grows down from
// `_stack_start` towards `__sheap`, the end of the statics.
extern "C" {
    static mut __sheap: u32;
    static _stack_start: u32;
}

/// What the stack region is painted with, to find how deep it ever went.
const STACK_PAINT: u32 = 0x5A5A_A5A5;
/// Bytes below the current stack pointer left unpainted while painting.
const STACK_PAINT_MARGIN: usize = 512;

/// Paints the unused stack region, so that [`stack_peak_bytes`] can measure it later.
pub fn paint_stack() {
    let sp = cortex_m::register::msp::read() as usize;
    // SAFETY: the words between the end of the statics and the stack pointer (less a
    // margin for this function's own frame) are unused stack.
    unsafe {
        let mut p = addr_of_mut!(__sheap);
        while (p as usize) + STACK_PAINT_MARGIN < sp {
            write_volatile(p, STACK_PAINT);
            p = p.add(1);
        }
    }
}

/// The deepest the stack has been since [`paint_stack`], bytes.
pub fn stack_peak_bytes() -> usize {
    // SAFETY: reads the painted region word by word from its bottom.
    unsafe {
        let top = core::ptr::addr_of!(_stack_start) as usize;
        let mut p = addr_of_mut!(__sheap) as *const u32;
        while (p as usize) < top && read_volatile(p) == STACK_PAINT {
            p = p.add(1);
        }
        top - p as usize
    }
}

/// Room left in the heap arena, bytes.
pub fn heap_free() -> usize {
    HEAP.free()
}
