//! Errors as JavaScript sees them: an `Error` with a stable `code` string (the package's
//! wrapper turns it into the matching `ConcordError` subclass).

use concord_core::machine::Error as MachineError;
use concord_core::wire::ClientError;
use std::fmt;
use wasm_bindgen::JsValue;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The state machine refused or failed the operation.
    Machine(MachineError),
    /// The cluster refused the request outside the machine.
    Request(ClientError),
    /// A JS argument has the wrong type or value.
    InvalidArgument(String),
    /// No endpoint answered in time.
    Unreachable(String),
    /// The client was closed.
    Closed,
    /// A reply of the wrong shape (client and server versions differ).
    Unexpected(String),
    /// A bounded queue was full.
    Overloaded(&'static str),
    /// A replica's storage failed (a medium's call threw, or a deferred write failed):
    /// the replica stops; build it again from the medium to go on.
    Storage(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machine(e) => write!(f, "{e}"),
            Self::Request(e) => write!(f, "{e}"),
            Self::InvalidArgument(e) => write!(f, "invalid argument: {e}"),
            Self::Unreachable(e) => write!(f, "no node reachable: {e}"),
            Self::Closed => f.write_str("the client is closed"),
            Self::Unexpected(e) => write!(f, "unexpected reply: {e}"),
            Self::Overloaded(e) => write!(f, "overloaded: {e}"),
            Self::Storage(e) => write!(f, "storage failed: {e}"),
        }
    }
}

/// `SomeVariant { .. }` → `SOME_VARIANT`: the leading identifier of a `Debug` rendering.
fn screaming(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().take_while(char::is_ascii_alphanumeric).enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The variant inside a one-field tuple variant's `Debug` (`Lock(NotHeld)` → `NotHeld`).
fn inner(debug: &str) -> &str {
    debug.split_once('(').map_or(debug, |(_, rest)| rest)
}

impl Error {
    /// The stable code: `TIMEOUT`, `SESSION_LOST`, `LIMIT_EXCEEDED`, `LOCK_NOT_HELD`,
    /// `KV_ETAG_MISMATCH`, `KV_EXISTS`, `BARRIER_PARTIES_MISMATCH`, …; `REQUEST_*` for
    /// refusals outside the machine; `INVALID_ARGUMENT`, `UNREACHABLE`, `CLOSED`,
    /// `UNEXPECTED_REPLY`, `OVERLOADED` from the client itself; `STORAGE_FAILED` from a
    /// replica whose storage failed.
    pub fn code(&self) -> String {
        match self {
            Self::Machine(MachineError::Limit { .. }) => "LIMIT_EXCEEDED".into(),
            Self::Machine(e) => {
                let d = format!("{e:?}");
                match e {
                    MachineError::Lock(_) => format!("LOCK_{}", screaming(inner(&d))),
                    MachineError::Semaphore(_) => format!("SEMAPHORE_{}", screaming(inner(&d))),
                    MachineError::RwLock(_) => format!("RWLOCK_{}", screaming(inner(&d))),
                    MachineError::Latch(_) => format!("LATCH_{}", screaming(inner(&d))),
                    MachineError::Barrier(_) => format!("BARRIER_{}", screaming(inner(&d))),
                    MachineError::Kv(_) => format!("KV_{}", screaming(inner(&d))),
                    MachineError::Election(_) => format!("ELECTION_{}", screaming(inner(&d))),
                    MachineError::Signal(_) => format!("SIGNAL_{}", screaming(inner(&d))),
                    _ => screaming(&d),
                }
            }
            Self::Request(ClientError::Raft(e)) => format!("REQUEST_{}", screaming(&format!("{e:?}"))),
            Self::Request(e) => format!("REQUEST_{}", screaming(&format!("{e:?}"))),
            Self::InvalidArgument(_) => "INVALID_ARGUMENT".into(),
            Self::Unreachable(_) => "UNREACHABLE".into(),
            Self::Closed => "CLOSED".into(),
            Self::Unexpected(_) => "UNEXPECTED_REPLY".into(),
            Self::Overloaded(_) => "OVERLOADED".into(),
            Self::Storage(_) => "STORAGE_FAILED".into(),
        }
    }

    /// The JS `Error`, with `code` (and `session` for a lost session).
    pub fn to_js(&self) -> JsValue {
        let e = js_sys::Error::new(&self.to_string());
        e.set_name("ConcordError");
        let _ = js_sys::Reflect::set(&e, &"code".into(), &self.code().into());
        if let Self::Machine(MachineError::SessionLost(s)) = self {
            let _ = js_sys::Reflect::set(&e, &"session".into(), &JsValue::from_f64(s.0 as f64));
        }
        e.into()
    }
}

impl From<Error> for JsValue {
    fn from(e: Error) -> Self {
        e.to_js()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::machine::kv::KvError;
    use concord_core::machine::lock::LockError;
    use concord_core::machine::{Etag, Limit, SessionId};
    use concord_core::RequestError;

    #[test]
    fn codes_are_stable_screaming_snake_names() {
        let cases = [
            (Error::Machine(MachineError::Timeout), "TIMEOUT"),
            (Error::Machine(MachineError::SessionLost(SessionId(3))), "SESSION_LOST"),
            (Error::Machine(MachineError::Limit { limit: Limit::LockReentrancy, max: 64 }), "LIMIT_EXCEEDED"),
            (Error::Machine(MachineError::Lock(LockError::NotHeld)), "LOCK_NOT_HELD"),
            (
                Error::Machine(MachineError::Kv(KvError::EtagMismatch { current: Some(Etag(4)) })),
                "KV_ETAG_MISMATCH",
            ),
            (Error::Machine(MachineError::Kv(KvError::Exists { etag: Etag(4) })), "KV_EXISTS"),
            (
                Error::Request(ClientError::Raft(RequestError::ProposalTooLarge { size: 9, max: 1 })),
                "REQUEST_PROPOSAL_TOO_LARGE",
            ),
            (Error::Request(ClientError::TooManyOperations { max: 1 }), "REQUEST_TOO_MANY_OPERATIONS"),
            (Error::InvalidArgument("x".into()), "INVALID_ARGUMENT"),
            (Error::Closed, "CLOSED"),
            (Error::Storage("x".into()), "STORAGE_FAILED"),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }
}
