//! What the machine asks of a primitive, and the one table that routes to each.
//!
//! A primitive is a module (`lock.rs`, `kv.rs`, …) whose state implements [`Primitive`],
//! plus [`Reads`] if it answers reads and [`Waits`] if its operations may queue the caller.
//! The machine reaches primitives only through [`Primitives`], generated from the table at
//! the end of this file: applying an operation, answering a read, cancelling a queued
//! request, ending a session, listing owners, and the snapshot (the struct's fields).
//! Adding a primitive means its module, its variants in the enums of `api.rs`, and one
//! row in the table.

use super::api::{Error, Op, QueryOp, Reply};
use super::barrier::Barriers;
use super::election::Elections;
use super::fx::{Caller, Fx, Kind, Step};
use super::kv::Kv;
use super::latch::Latches;
use super::limits::Limits;
use super::lock::Locks;
use super::long::Longs;
use super::reference::Refs;
use super::rwlock::RwLocks;
use super::semaphore::Semaphores;
use super::session::SessionOp;
use super::signal::Signals;
use super::vocab::SessionId;
use crate::time::Instant;
use alloc::collections::BTreeSet;
use serde::{Deserialize, Serialize};

/// What the machine needs of every primitive.
pub(crate) trait Primitive {
    /// Its operations: what its [`Op`] variant carries.
    type Op;

    /// Applies one operation, as part of the entry `fx` stands for.
    fn apply(&mut self, fx: &mut Fx<'_>, op: Self::Op) -> Step;

    /// `session` ended: releases what it held here, handing it to other sessions' waiters.
    /// Its queued requests were cancelled before, through [`Waits::cancel`].
    fn end_session(&mut self, fx: &mut Fx<'_>, session: SessionId);

    /// Adds every session that holds something here (for invariant checks).
    fn owners(&self, out: &mut BTreeSet<SessionId>);
}

/// A primitive that answers reads.
pub(crate) trait Reads {
    /// Its reads: what its [`QueryOp`] variant carries.
    type Query;

    /// Answers a read from the current state.
    fn query(&self, cx: &ReadCx<'_>, q: &Self::Query) -> Result<Reply, Error>;
}

/// A primitive whose operations may queue the caller ([`Step::Wait`] naming its [`Kind`]).
pub(crate) trait Waits {
    /// `caller`'s queued request on `name` timed out or its session ended: drop it. The
    /// machine answers the caller.
    fn cancel(&mut self, fx: &mut Fx<'_>, name: &str, caller: Caller);
}

/// What a read may consult besides the primitive's own state.
pub(crate) struct ReadCx<'a> {
    /// The reader's session, for questions such as "is it locked by me".
    pub(crate) session: Option<SessionId>,
    /// The log clock as of the last applied entry.
    pub(crate) now: Instant,
    /// The machine's limits (the size of a listing's pages).
    pub(crate) limits: &'a Limits,
}

/// Generates [`Primitives`] and its routing from one row per primitive:
/// `field: State => Op variant [, reads QueryOp variant] [, waits Kind variant];`.
macro_rules! primitives {
    ($( $field:ident: $state:ty => $op:ident $(, reads $read:ident)? $(, waits $kind:ident)?; )*) => {
        /// The state of every primitive. The fields follow the table's rows, and so does
        /// the snapshot's encoding: a new primitive goes last.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub(crate) struct Primitives {
            $( pub(crate) $field: $state, )*
        }

        impl Primitives {
            /// Applies a primitive's operation. Session operations are the machine's own:
            /// they come back as `Err`.
            pub(crate) fn apply(&mut self, fx: &mut Fx<'_>, op: Op) -> Result<Step, SessionOp> {
                match op {
                    Op::Session(op) => Err(op),
                    $( Op::$op(op) => Ok(Primitive::apply(&mut self.$field, fx, op)), )*
                }
            }

            /// Answers a primitive's read; `None` for the machine's own (the sessions).
            pub(crate) fn query(&self, cx: &ReadCx<'_>, q: &QueryOp) -> Option<Result<Reply, Error>> {
                match q {
                    QueryOp::Sessions => None,
                    $($( QueryOp::$read(q) => Some(Reads::query(&self.$field, cx, q)), )?)*
                }
            }

            /// Drops `caller`'s queued request from the primitive it waits in.
            pub(crate) fn cancel(&mut self, fx: &mut Fx<'_>, kind: Kind, name: &str, caller: Caller) {
                match kind {
                    $($( Kind::$kind => Waits::cancel(&mut self.$field, fx, name, caller), )?)*
                }
            }

            /// `session` ended: each primitive releases what it held, in the table's order.
            pub(crate) fn end_session(&mut self, fx: &mut Fx<'_>, session: SessionId) {
                $( Primitive::end_session(&mut self.$field, fx, session); )*
            }

            /// Adds every session that holds something in some primitive.
            pub(crate) fn owners(&self, out: &mut BTreeSet<SessionId>) {
                $( Primitive::owners(&self.$field, out); )*
            }
        }
    };
}

primitives! {
    locks: Locks => Lock, reads Lock, waits Lock;
    semaphores: Semaphores => Semaphore, reads Semaphore, waits Semaphore;
    rwlocks: RwLocks => RwLock, reads RwLock, waits RwLock;
    latches: Latches => Latch, reads Latch, waits Latch;
    barriers: Barriers => Barrier, waits Barrier;
    longs: Longs => Long, reads Long;
    refs: Refs => Ref, reads Ref;
    kv: Kv => Kv, reads Kv;
    elections: Elections => Election, reads Election, waits Election;
    signals: Signals => Signal;
}
