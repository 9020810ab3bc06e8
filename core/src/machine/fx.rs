//! The context a primitive applies an operation in, and what it hands back to the
//! machine: completions of queued waiters, events, timers.

use super::api::{Error, Event, Reply};
use super::limits::{Limit, Limits};
use super::vocab::{limit, Fence, SessionId};
use crate::raft::LogIndex;
use crate::time::Instant;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// A (session, sequence) pair: who is asking, and which request of theirs this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Caller {
    pub(crate) session: SessionId,
    pub(crate) seq: u64,
}

/// Something with a deadline in log time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Timer {
    /// A session's lease.
    Session(SessionId),
    /// A queued waiter's timeout.
    Wait(Caller),
    /// A key-value entry's TTL.
    Key(String),
}

/// The kind of primitive a queued request waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Lock,
    Semaphore,
    RwLock,
    Latch,
    Barrier,
    Election,
}

/// How a primitive answered an operation.
#[derive(Debug)]
pub(crate) enum Step {
    /// Answered now.
    Done(Result<Reply, Error>),
    /// The caller is queued in `kind` `name` until `deadline` (or forever); it completes
    /// through [`Fx::complete`].
    Wait { deadline: Option<Instant>, kind: Kind, name: String },
}

impl From<Result<Reply, Error>> for Step {
    fn from(r: Result<Reply, Error>) -> Self {
        Self::Done(r)
    }
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        Self::Done(Err(e))
    }
}

/// The applying entry and the effects collected while applying it.
pub(crate) struct Fx<'a> {
    pub(crate) index: LogIndex,
    pub(crate) time: Instant,
    pub(crate) limits: &'a Limits,
    /// The session (and sequence, 0 if none) of the command being applied.
    pub(crate) caller: Option<Caller>,
    pub(crate) completions: Vec<(Caller, Result<Reply, Error>)>,
    pub(crate) events: Vec<Event>,
    pub(crate) timers_added: Vec<(Instant, Timer)>,
    pub(crate) timers_removed: Vec<(Instant, Timer)>,
    /// Rules deliberately broken for checker tests.
    #[cfg(feature = "bug-injection")]
    pub(crate) bugs: super::limits::MachineBugs,
}

impl<'a> Fx<'a> {
    pub(crate) fn new(index: LogIndex, time: Instant, limits: &'a Limits) -> Self {
        Self {
            index,
            time,
            limits,
            caller: None,
            completions: Vec::new(),
            events: Vec::new(),
            timers_added: Vec::new(),
            timers_removed: Vec::new(),
            #[cfg(feature = "bug-injection")]
            bugs: super::limits::MachineBugs::default(),
        }
    }

    /// The caller's session, required by operations that own something.
    pub(crate) fn session(&self) -> Result<SessionId, Error> {
        self.caller.map(|c| c.session).ok_or(Error::SessionRequired)
    }

    /// The caller, required (with a sequence number) by operations that may wait.
    pub(crate) fn waiter(&self) -> Result<Caller, Error> {
        self.caller.filter(|c| c.seq > 0).ok_or(Error::SessionRequired)
    }

    /// The deadline of a wait of `timeout_ms` (`None` = forever) from now.
    pub(crate) fn deadline(&self, timeout_ms: Option<u64>) -> Result<Option<Instant>, Error> {
        match timeout_ms {
            None => Ok(None),
            Some(ms) if ms > self.limits.wait_timeout_max_ms => {
                Err(limit(Limit::WaitTimeout, self.limits.wait_timeout_max_ms))
            }
            Some(ms) => Ok(Some(self.time.add_us(ms * 1000))),
        }
    }

    /// Answers a queued waiter.
    pub(crate) fn complete(&mut self, to: Caller, result: Result<Reply, Error>) {
        self.completions.push((to, result));
    }

    /// The fence a grant made by this entry carries.
    pub(crate) fn fence(&self) -> Fence {
        Fence(self.index)
    }

    /// Whether a simulator broke a rule on purpose: the machine's own invariant
    /// assertions then stand aside, so that the simulator's checkers report the damage.
    pub(crate) fn rules_broken(&self) -> bool {
        #[cfg(feature = "bug-injection")]
        if self.bugs != super::limits::MachineBugs::default() {
            return true;
        }
        false
    }
}
