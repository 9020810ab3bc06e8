//! AtomicReference: named byte values, or null. A reference never written is null.

use super::api::{Error, Reply};
use super::fx::{Fx, Step};
use super::limits::Limit;
use super::primitives::{Primitive, ReadCx, Reads};
use super::vocab::{check_name, check_objects, limit, SessionId};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// A built-in function of the current value, for the alter and apply operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefFn {
    /// Appends bytes (null counts as empty).
    Append(Vec<u8>),
    /// Prepends bytes (null counts as empty).
    Prepend(Vec<u8>),
    /// Keeps at most the first `n` bytes (null stays null).
    Truncate(u32),
    /// Reverses the bytes.
    Reverse,
    /// Becomes null.
    Clear,
    /// Becomes these bytes.
    Set(Vec<u8>),
}

impl RefFn {
    /// Applies the function to `v`.
    pub fn call(&self, v: Option<&[u8]>) -> Option<Vec<u8>> {
        let joined = |a: &[u8], b: &[u8]| Some([a, b].concat());
        match self {
            Self::Append(x) => joined(v.unwrap_or_default(), x),
            Self::Prepend(x) => joined(x, v.unwrap_or_default()),
            Self::Truncate(n) => v.map(|v| v[..v.len().min(*n as usize)].to_vec()),
            Self::Reverse => v.map(|v| v.iter().rev().copied().collect()),
            Self::Clear => None,
            Self::Set(x) => Some(x.clone()),
        }
    }
}

/// Atomic reference operations. None needs a session; send one for exactly-once retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefOp {
    /// Sets the value (`None`: null, i.e. clear) → [`Reply::Unit`].
    Set {
        /// The reference.
        name: String,
        /// New value.
        value: Option<Vec<u8>>,
    },
    /// Sets the value → [`Reply::Value`] old value.
    GetAndSet {
        /// The reference.
        name: String,
        /// New value.
        value: Option<Vec<u8>>,
    },
    /// Sets `update` if the value equals `expect` → [`Reply::Bool`] whether it did.
    CompareAndSet {
        /// The reference.
        name: String,
        /// Expected value.
        expect: Option<Vec<u8>>,
        /// New value.
        update: Option<Vec<u8>>,
    },
    /// Replaces the value with `f(value)` → [`Reply::Unit`].
    Alter {
        /// The reference.
        name: String,
        /// The function.
        f: RefFn,
    },
    /// Replaces the value with `f(value)` → [`Reply::Value`] new value.
    AlterAndGet {
        /// The reference.
        name: String,
        /// The function.
        f: RefFn,
    },
    /// Replaces the value with `f(value)` → [`Reply::Value`] old value.
    GetAndAlter {
        /// The reference.
        name: String,
        /// The function.
        f: RefFn,
    },
}

/// Atomic reference reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefQuery {
    /// The value → [`Reply::Value`].
    Get {
        /// The reference.
        name: String,
    },
    /// Whether it is null → [`Reply::Bool`].
    IsNull {
        /// The reference.
        name: String,
    },
    /// Whether it equals `value` → [`Reply::Bool`].
    Contains {
        /// The reference.
        name: String,
        /// The value to compare with.
        value: Option<Vec<u8>>,
    },
    /// `f(value)` without storing it → [`Reply::Value`].
    Apply {
        /// The reference.
        name: String,
        /// The function.
        f: RefFn,
    },
}

/// Every non-null reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Refs {
    values: BTreeMap<String, Vec<u8>>,
}

impl Primitive for Refs {
    type Op = RefOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: RefOp) -> Step {
        match self.apply_inner(fx, op) {
            Ok(r) => Step::Done(Ok(r)),
            Err(e) => e.into(),
        }
    }

    fn end_session(&mut self, _: &mut Fx<'_>, _: SessionId) {
        // References belong to no session.
    }

    fn owners(&self, _: &mut BTreeSet<SessionId>) {
        // References belong to no session.
    }
}

impl Reads for Refs {
    type Query = RefQuery;

    fn query(&self, _: &ReadCx<'_>, q: &RefQuery) -> Result<Reply, Error> {
        let get = |name: &str| self.values.get(name).map(Vec::as_slice);
        Ok(match q {
            RefQuery::Get { name } => Reply::Value(get(name).map(<[u8]>::to_vec)),
            RefQuery::IsNull { name } => Reply::Bool(get(name).is_none()),
            RefQuery::Contains { name, value } => Reply::Bool(get(name) == value.as_deref()),
            RefQuery::Apply { name, f } => Reply::Value(f.call(get(name))),
        })
    }
}

impl Refs {
    fn apply_inner(&mut self, fx: &mut Fx<'_>, op: RefOp) -> Result<Reply, Error> {
        let old = |s: &Self, name: &str| s.values.get(name).cloned();
        Ok(match op {
            RefOp::Set { name, value } => {
                self.store(fx, name, value)?;
                Reply::Unit
            }
            RefOp::GetAndSet { name, value } => {
                let prev = old(self, &name);
                self.store(fx, name, value)?;
                Reply::Value(prev)
            }
            RefOp::CompareAndSet { name, expect, update } => {
                if old(self, &name) != expect {
                    return Ok(Reply::Bool(false));
                }
                self.store(fx, name, update)?;
                Reply::Bool(true)
            }
            RefOp::Alter { name, f } => {
                let new = f.call(self.values.get(&name).map(Vec::as_slice));
                self.store(fx, name, new)?;
                Reply::Unit
            }
            RefOp::AlterAndGet { name, f } => {
                let new = f.call(self.values.get(&name).map(Vec::as_slice));
                self.store(fx, name, new.clone())?;
                Reply::Value(new)
            }
            RefOp::GetAndAlter { name, f } => {
                let prev = old(self, &name);
                let new = f.call(prev.as_deref());
                self.store(fx, name, new)?;
                Reply::Value(prev)
            }
        })
    }

    fn store(&mut self, fx: &Fx<'_>, name: String, value: Option<Vec<u8>>) -> Result<(), Error> {
        check_name(fx.limits, &name)?;
        let Some(value) = value else {
            self.values.remove(&name);
            return Ok(());
        };
        if value.len() > fx.limits.reference_bytes_max {
            return Err(limit(Limit::ReferenceBytes, fx.limits.reference_bytes_max));
        }
        if !self.values.contains_key(&name) {
            check_objects(fx.limits, self.values.len())?;
        }
        self.values.insert(name, value);
        Ok(())
    }
}
