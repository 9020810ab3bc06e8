//! Bytes between an [`embedded_io`] serial port and a [`Link`]: a bounded, non-blocking
//! [`pump`] for a plain loop, and [`read_async`] / [`write_async`] for an async task.

use concord_core::wire::link::Link;
use concord_core::Instant;

/// Bytes asked of the port per read: the size of the one buffer on the stack.
pub const READ_CHUNK_BYTES: usize = 64;

/// Reads per [`pump`]: bounds its work when bytes keep arriving.
pub const READS_PER_PUMP_MAX: usize = 64;

/// Writes per [`pump`]: bounds its work on a port that takes a byte at a time.
pub const WRITES_PER_PUMP_MAX: usize = 256;

/// What one [`pump`] moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pumped {
    /// Bytes read from the port into the link.
    pub read: usize,
    /// Bytes written from the link to the port.
    pub written: usize,
}

/// Moves what is ready without blocking: bytes the port has go into the link, bytes the
/// link has go out as far as the port takes them. Bounded by [`READS_PER_PUMP_MAX`] and
/// [`WRITES_PER_PUMP_MAX`]; call it again when it moved anything.
pub fn pump<P>(port: &mut P, link: &mut Link, now: Instant) -> Result<Pumped, P::Error>
where
    P: embedded_io::Read + embedded_io::ReadReady + embedded_io::Write + embedded_io::WriteReady,
{
    let mut moved = Pumped::default();
    let mut buf = [0u8; READ_CHUNK_BYTES];
    for _ in 0..READS_PER_PUMP_MAX {
        if !port.read_ready()? {
            break;
        }
        let n = port.read(&mut buf)?;
        if n == 0 {
            break;
        }
        link.handle_bytes(now, &buf[..n]);
        moved.read += n;
    }
    for _ in 0..WRITES_PER_PUMP_MAX {
        if link.transmit().is_empty() || !port.write_ready()? {
            break;
        }
        let n = port.write(link.transmit())?;
        if n == 0 {
            break;
        }
        link.consumed(n);
        moved.written += n;
    }
    Ok(moved)
}

/// Waits for bytes from the port and hands one read's worth to the link. Cancel-safe:
/// bytes are handed over in the same poll that reads them.
pub async fn read_async<P: embedded_io_async::Read>(
    port: &mut P,
    link: &mut Link,
    now: impl Fn() -> Instant,
) -> Result<usize, P::Error> {
    let mut buf = [0u8; READ_CHUNK_BYTES];
    let n = port.read(&mut buf).await?;
    link.handle_bytes(now(), &buf[..n]);
    Ok(n)
}

/// Writes everything the link has for the line.
pub async fn write_async<P: embedded_io_async::Write>(
    port: &mut P,
    link: &mut Link,
) -> Result<usize, P::Error> {
    let mut written = 0;
    while !link.transmit().is_empty() {
        let n = port.write(link.transmit()).await?;
        if n == 0 {
            break;
        }
        link.consumed(n);
        written += n;
    }
    Ok(written)
}
