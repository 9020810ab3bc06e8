//! AtomicLong: named 64-bit signed counters. A counter never written reads as 0.
//! Arithmetic wraps on overflow, as `java.util.concurrent.atomic.AtomicLong` does.

use super::api::{Error, Reply};
use super::fx::{Fx, Step};
use super::primitives::{Primitive, ReadCx, Reads};
use super::vocab::{check_name, check_objects, SessionId};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use serde::{Deserialize, Serialize};

/// A built-in function of the current value, for the alter and apply operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LongFn {
    /// `v + x` (wrapping).
    Add(i64),
    /// `v * x` (wrapping).
    Mul(i64),
    /// `min(v, x)`.
    Min(i64),
    /// `max(v, x)`.
    Max(i64),
    /// `v & x`.
    And(i64),
    /// `v | x`.
    Or(i64),
    /// `v ^ x`.
    Xor(i64),
    /// `-v` (wrapping).
    Neg,
    /// `x`, whatever `v` is.
    Set(i64),
}

impl LongFn {
    /// Applies the function to `v`.
    pub fn call(self, v: i64) -> i64 {
        match self {
            Self::Add(x) => v.wrapping_add(x),
            Self::Mul(x) => v.wrapping_mul(x),
            Self::Min(x) => v.min(x),
            Self::Max(x) => v.max(x),
            Self::And(x) => v & x,
            Self::Or(x) => v | x,
            Self::Xor(x) => v ^ x,
            Self::Neg => v.wrapping_neg(),
            Self::Set(x) => x,
        }
    }
}

/// Atomic long operations. None needs a session; send one for exactly-once retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LongOp {
    /// Sets the value → [`Reply::Unit`].
    Set {
        /// The counter.
        name: String,
        /// New value.
        value: i64,
    },
    /// Sets the value → [`Reply::Long`] old value.
    GetAndSet {
        /// The counter.
        name: String,
        /// New value.
        value: i64,
    },
    /// Adds `delta` → [`Reply::Long`] new value (increment/decrement: ±1).
    AddAndGet {
        /// The counter.
        name: String,
        /// Amount.
        delta: i64,
    },
    /// Adds `delta` → [`Reply::Long`] old value.
    GetAndAdd {
        /// The counter.
        name: String,
        /// Amount.
        delta: i64,
    },
    /// Sets `update` if the value is `expect` → [`Reply::Bool`] whether it did.
    CompareAndSet {
        /// The counter.
        name: String,
        /// Expected value.
        expect: i64,
        /// New value.
        update: i64,
    },
    /// Replaces the value with `f(value)` → [`Reply::Unit`].
    Alter {
        /// The counter.
        name: String,
        /// The function.
        f: LongFn,
    },
    /// Replaces the value with `f(value)` → [`Reply::Long`] new value.
    AlterAndGet {
        /// The counter.
        name: String,
        /// The function.
        f: LongFn,
    },
    /// Replaces the value with `f(value)` → [`Reply::Long`] old value.
    GetAndAlter {
        /// The counter.
        name: String,
        /// The function.
        f: LongFn,
    },
}

/// Atomic long reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LongQuery {
    /// The value → [`Reply::Long`].
    Get {
        /// The counter.
        name: String,
    },
    /// `f(value)` without storing it → [`Reply::Long`].
    Apply {
        /// The counter.
        name: String,
        /// The function.
        f: LongFn,
    },
}

/// Every counter with a non-zero value (zero is not stored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Longs {
    values: BTreeMap<String, i64>,
}

impl Primitive for Longs {
    type Op = LongOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: LongOp) -> Step {
        let (name, f, reply): (String, LongFn, fn(i64, i64) -> Reply) = match op {
            LongOp::Set { name, value } => (name, LongFn::Set(value), |_, _| Reply::Unit),
            LongOp::GetAndSet { name, value } => (name, LongFn::Set(value), |old, _| Reply::Long(old)),
            LongOp::AddAndGet { name, delta } => (name, LongFn::Add(delta), |_, new| Reply::Long(new)),
            LongOp::GetAndAdd { name, delta } => (name, LongFn::Add(delta), |old, _| Reply::Long(old)),
            LongOp::Alter { name, f } => (name, f, |_, _| Reply::Unit),
            LongOp::AlterAndGet { name, f } => (name, f, |_, new| Reply::Long(new)),
            LongOp::GetAndAlter { name, f } => (name, f, |old, _| Reply::Long(old)),
            LongOp::CompareAndSet { name, expect, update } => {
                let current = self.get(&name);
                if current != expect {
                    return Step::Done(Ok(Reply::Bool(false)));
                }
                return match self.store(fx, name, update) {
                    Ok(()) => Step::Done(Ok(Reply::Bool(true))),
                    Err(e) => e.into(),
                };
            }
        };
        let old = self.get(&name);
        let new = f.call(old);
        match self.store(fx, name, new) {
            Ok(()) => Step::Done(Ok(reply(old, new))),
            Err(e) => e.into(),
        }
    }

    fn end_session(&mut self, _: &mut Fx<'_>, _: SessionId) {
        // Counters belong to no session.
    }

    fn owners(&self, _: &mut BTreeSet<SessionId>) {
        // Counters belong to no session.
    }
}

impl Reads for Longs {
    type Query = LongQuery;

    fn query(&self, _: &ReadCx<'_>, q: &LongQuery) -> Result<Reply, Error> {
        Ok(match q {
            LongQuery::Get { name } => Reply::Long(self.get(name)),
            LongQuery::Apply { name, f } => Reply::Long(f.call(self.get(name))),
        })
    }
}

impl Longs {
    fn get(&self, name: &str) -> i64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    fn store(&mut self, fx: &Fx<'_>, name: String, value: i64) -> Result<(), Error> {
        check_name(fx.limits, &name)?;
        if value == 0 {
            self.values.remove(&name);
        } else if let Some(v) = self.values.get_mut(&name) {
            *v = value;
        } else {
            check_objects(fx.limits, self.values.len())?;
            self.values.insert(name, value);
        }
        Ok(())
    }
}
