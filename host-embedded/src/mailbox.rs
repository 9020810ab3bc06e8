//! Calls from other tasks: an application task posts a typed call's request to a
//! [`Mailbox`] and awaits its result there, while the task that owns the
//! [`ClientHost`] and the serial port moves calls in and results out with a [`Postman`]
//! after each step. Both sides have `try_*` forms for a plain loop and `async` ones for
//! an embassy task; the mailbox is two embassy-sync channels of `N` slots, and a postman
//! holds at most `N` calls in the client, so every queue is bounded by `N`.

use crate::ClientHost;
use concord_core::client::calls::Request;
use concord_core::client::{ClientEvent, OpId};
use concord_core::machine::{Error, Reply};
use concord_core::wire::ClientError;
use concord_core::{Consistency, Instant};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::Channel;

/// A call posted to a [`Mailbox`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Chosen by the poster; its [`Finished`] carries it back.
    pub id: u32,
    /// The typed call's request ([`Call::into_parts`](concord_core::client::calls::Call::into_parts)).
    pub request: Request,
    /// How fresh a read must be.
    pub consistency: Consistency,
}

/// Why a posted call has no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The state machine refused it (a stale tag, a held lock, a lost session, …).
    Machine(Error),
    /// The client or a node refused it before the state machine saw it.
    Client(ClientError),
}

/// The end of a posted call. What a grant's `Done` event names for giving it back is not
/// carried: a poster releases with the primitive's own call (`unlock`, `release`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The [`Job::id`].
    pub id: u32,
    /// The reply, for the call's decoder.
    pub result: Result<Reply, CallError>,
}

/// Calls in, results out: `N` slots each way.
pub struct Mailbox<M: RawMutex, const N: usize> {
    jobs: Channel<M, Job, N>,
    finished: Channel<M, Finished, N>,
}

impl<M: RawMutex, const N: usize> Mailbox<M, N> {
    /// An empty mailbox (a `static` one too).
    pub const fn new() -> Self {
        Self { jobs: Channel::new(), finished: Channel::new() }
    }

    /// Posts a call, waiting for a free slot.
    pub async fn post(&self, job: Job) {
        self.jobs.send(job).await;
    }

    /// Posts a call if a slot is free; hands it back otherwise.
    pub fn try_post(&self, job: Job) -> Result<(), Job> {
        self.jobs.try_send(job).map_err(|embassy_sync::channel::TrySendError::Full(job)| job)
    }

    /// The next finished call, waiting for one.
    pub async fn finished(&self) -> Finished {
        self.finished.receive().await
    }

    /// The next finished call, if one is there.
    pub fn try_finished(&self) -> Option<Finished> {
        self.finished.try_receive().ok()
    }

    /// Waits until a call is posted: what wakes the task that drives the client.
    pub async fn posted(&self) {
        self.jobs.ready_to_receive().await;
    }

    /// Waits until a finished call has a free slot.
    pub(crate) async fn room_for_results(&self) {
        core::future::poll_fn(|cx| self.finished.poll_ready_to_send(cx)).await;
    }
}

impl<M: RawMutex, const N: usize> Default for Mailbox<M, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The driver's side of a [`Mailbox`]: which client operation is which posted call, and
/// the results the mailbox had no room for yet.
#[derive(Debug)]
pub struct Postman<const N: usize> {
    in_flight: heapless::Vec<(OpId, u32), N>,
    undelivered: heapless::Deque<Finished, N>,
}

impl<const N: usize> Default for Postman<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Postman<N> {
    /// A postman with nothing in flight.
    pub const fn new() -> Self {
        Self { in_flight: heapless::Vec::new(), undelivered: heapless::Deque::new() }
    }

    /// Posted calls in the client or waiting to be delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len() + self.undelivered.len()
    }

    /// Whether results wait for a free slot in the mailbox.
    pub(crate) fn has_undelivered(&self) -> bool {
        !self.undelivered.is_empty()
    }

    /// Starts posted calls in `host`'s client while it holds fewer than `N` of them, and
    /// delivers the results of those that finished; every other client event goes to
    /// `other`. Call it after each [`ClientHost::step`], in place of draining
    /// [`ClientHost::poll_event`]. Bounded: at most `N` calls move each way.
    pub fn serve<M: RawMutex>(
        &mut self,
        host: &mut ClientHost,
        now: Instant,
        mailbox: &Mailbox<M, N>,
        mut other: impl FnMut(ClientEvent),
    ) {
        while let Some(f) = self.undelivered.pop_front() {
            if let Err(embassy_sync::channel::TrySendError::Full(f)) = mailbox.finished.try_send(f) {
                // Still no room: keep it first in line.
                let _ = self.undelivered.push_front(f);
                break;
            }
        }
        while self.in_flight() < N {
            let Ok(job) = mailbox.jobs.try_receive() else { break };
            let op = host.client().call(now, job.request, job.consistency);
            // Room was checked: `in_flight() < N`.
            let _ = self.in_flight.push((op, job.id));
        }
        while let Some(event) = host.poll_event() {
            let (op, result) = match &event {
                ClientEvent::Done { op, result, .. } => (*op, result.clone().map_err(CallError::Machine)),
                ClientEvent::Failed { op, error } => (*op, Err(CallError::Client(error.clone()))),
                _ => {
                    other(event);
                    continue;
                }
            };
            let Some(i) = self.in_flight.iter().position(|(o, _)| *o == op) else {
                other(event);
                continue;
            };
            let (_, id) = self.in_flight.swap_remove(i);
            let finished = Finished { id, result };
            if let Err(embassy_sync::channel::TrySendError::Full(f)) = mailbox.finished.try_send(finished) {
                // Room is certain: every undelivered result was in flight, counted in N.
                let _ = self.undelivered.push_back(f);
            }
        }
    }
}
