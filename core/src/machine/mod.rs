//! The coordination state machine: [`Concord`] and its primitives, one module each.
//!
//! [`Concord`] implements Raft's [`StateMachine`]: it is applied to committed entries in
//! log order on every replica and is deterministic.

mod api;
pub mod barrier;
mod concord;
pub mod election;
mod fx;
pub mod kv;
pub mod latch;
mod limits;
pub mod lock;
pub mod long;
pub mod pattern;
mod primitives;
pub mod reference;
pub mod rwlock;
pub mod semaphore;
pub mod session;
pub mod signal;
#[cfg(test)]
mod tests;
mod vocab;

pub use api::{Command, Error, Event, Op, Outcome, Query, QueryOp, Reply};
pub use concord::{BarrierView, Concord, QueuedOutcome, RwLockView, SemaphoreView, View, ViewCounts};
#[cfg(feature = "bug-injection")]
pub use limits::MachineBugs;
pub use limits::{Limit, Limits, LimitsError};
pub use vocab::{Etag, Fence, SessionEnd, SessionId, SessionRef};
// The trait lives with Raft, its consumer; these keep the paths machines were written
// against.
#[doc(no_inline)]
pub use crate::raft::{ApplyContext, RestoreError, StateMachine};
