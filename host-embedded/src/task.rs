//! Driving a client or a replica from one async task (an embassy task, say): the loop
//! every firmware would otherwise write, for a serial port split into its receiving and
//! sending halves.
//!
//! Each turn steps the host with the current time, lets a [`Postman`] start the calls
//! other tasks posted and deliver their results, writes what the link has for the line,
//! then waits for whichever comes first: bytes from the line, the host's next timer, a
//! newly posted call, or room for a result the mailbox had no slot for. The board
//! supplies the time and the waiting through [`Clock`] (with embassy-time: `Instant::now`
//! and `Timer::at`).
//!
//! The read is dropped whenever another wake-up comes first, so `rx` must be safe to
//! cancel: a read that is dropped before it returns must lose no byte it took from the
//! line (a buffered UART's receiver is; a DMA read straight into the buffer given is
//! not — wrap it in a ring buffer first). A byte lost anyway costs a retransmission of
//! its frame, not the session.

use crate::mailbox::{Mailbox, Postman};
use crate::serial::{write_async, READ_CHUNK_BYTES};
use crate::{ClientHost, ReplicaHost, ReplicaHostError};
use concord_core::client::ClientEvent;
use concord_core::storage::Media;
use concord_core::Instant;
use core::convert::Infallible;
use core::fmt;
use embassy_futures::select::{select4, Either4};
use embassy_sync::blocking_mutex::raw::RawMutex;

/// The board's time, for a driving task.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// The time now, on the clock the host's timers use.
    fn now(&self) -> Instant;
    /// Waits until `at` (at once if it is past).
    async fn sleep_until(&self, at: Instant);
}

/// Why a driving task stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum DriveError<R, W, S = Infallible> {
    /// Reading the line failed.
    Read(R),
    /// Writing the line failed.
    Write(W),
    /// The replica stopped (storage failed, or it was removed from the membership).
    Replica(S),
}

impl<R: fmt::Debug, W: fmt::Debug, S: fmt::Display> fmt::Display for DriveError<R, W, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "reading the serial line: {e:?}"),
            Self::Write(e) => write!(f, "writing the serial line: {e:?}"),
            Self::Replica(e) => write!(f, "the replica stopped: {e}"),
        }
    }
}

/// Waits for bytes from `rx` and hands one read's worth to `link`, or for the other
/// wake-ups; `Ok(())` in every case but a read error.
async fn wait_turn<R: embedded_io_async::Read>(
    rx: &mut R,
    link: &mut concord_core::wire::link::Link,
    clock: &impl Clock,
    wake_at: Instant,
    posted: impl core::future::Future<Output = ()>,
    room: impl core::future::Future<Output = ()>,
) -> Result<(), R::Error> {
    let mut buf = [0u8; READ_CHUNK_BYTES];
    if let Either4::First(read) = select4(rx.read(&mut buf), clock.sleep_until(wake_at), posted, room).await {
        let n = read?;
        link.handle_bytes(clock.now(), &buf[..n]);
    }
    Ok(())
}

/// Drives `host` for ever: calls posted to `mailbox` run in its first client and their
/// results come back there; every other event of that client goes to `other` (signals,
/// watch changes, a lost session). Returns only when the line fails.
pub async fn drive_client<R, W, M, const N: usize>(
    host: &mut ClientHost,
    rx: &mut R,
    tx: &mut W,
    clock: &impl Clock,
    mailbox: &Mailbox<M, N>,
    mut other: impl FnMut(ClientEvent),
) -> DriveError<R::Error, W::Error>
where
    R: embedded_io_async::Read,
    W: embedded_io_async::Write,
    M: RawMutex,
{
    let mut postman: Postman<N> = Postman::new();
    loop {
        let now = clock.now();
        host.step(now);
        postman.serve(host, now, mailbox, &mut other);
        // Calls the postman started go out in this turn.
        host.step(now);
        if let Err(e) = write_async(tx, host.link()).await {
            return DriveError::Write(e);
        }
        let room_for_calls = postman.in_flight() < N;
        let undelivered = postman.has_undelivered();
        let posted = async {
            if room_for_calls {
                mailbox.posted().await;
            } else {
                core::future::pending::<()>().await;
            }
        };
        let room = async {
            if undelivered {
                mailbox.room_for_results().await;
            } else {
                core::future::pending::<()>().await;
            }
        };
        let wake_at = host.poll_timeout();
        if let Err(e) = wait_turn(rx, host.link(), clock, wake_at, posted, room).await {
            return DriveError::Read(e);
        }
    }
}

/// Drives `host` for ever. Returns when the line fails or the replica stops.
pub async fn drive_replica<R, W, Md>(
    host: &mut ReplicaHost<Md>,
    rx: &mut R,
    tx: &mut W,
    clock: &impl Clock,
) -> DriveError<R::Error, W::Error, ReplicaHostError<Md::Error>>
where
    R: embedded_io_async::Read,
    W: embedded_io_async::Write,
    Md: Media,
    Md::Error: fmt::Debug,
{
    loop {
        if let Err(e) = host.step(clock.now()) {
            return DriveError::Replica(e);
        }
        if let Err(e) = write_async(tx, host.link()).await {
            return DriveError::Write(e);
        }
        let wake_at = host.poll_timeout();
        let never = || core::future::pending::<()>();
        if let Err(e) = wait_turn(rx, host.link(), clock, wake_at, never(), never()).await {
            return DriveError::Read(e);
        }
    }
}
