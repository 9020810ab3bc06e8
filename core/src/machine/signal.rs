//! Signals: publish/subscribe on NATS-style subjects, with queue groups.
//!
//! Subscriptions belong to sessions and end with them. A publish is delivered to every
//! matching subscription outside queue groups, and to one matching member of each queue
//! group, chosen round-robin per group. The publisher learns how many received it.
//! Delivery is at most once: a subscriber not connected when the signal is applied
//! misses it (use the key-value store and watches for durable, resumable streams).

use super::api::{Error, Event, Reply};
use super::fx::{Fx, Step};
use super::limits::Limit;
use super::pattern;
use super::primitives::Primitive;
use super::vocab::{check_name, limit, SessionId};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Signal operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalOp {
    /// Subscribes the session to subjects matching `pattern` → [`Reply::Subscribed`].
    /// Needs a session.
    Subscribe {
        /// The subject pattern.
        pattern: String,
        /// A queue group: each signal goes to one member of the group.
        group: Option<String>,
    },
    /// Ends a subscription of the session → [`Reply::Unit`].
    Unsubscribe {
        /// The subscription.
        id: u64,
    },
    /// Publishes `payload` on `subject` → [`Reply::Count`] of receivers.
    Publish {
        /// A concrete subject (no wildcards).
        subject: String,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Proposed by the leader when the connection a session used closes, if the session
    /// is in a queue group → [`Reply::Unit`]: until the session sends anything again, its
    /// groups give signals to members still connected (to it only if none is). Needs no
    /// session.
    Disconnected {
        /// The session.
        session: SessionId,
    },
}

/// A signal for one subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalDelivery {
    /// The receiving session.
    pub session: SessionId,
    /// Its subscription.
    pub subscription: u64,
    /// The subject published on.
    pub subject: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The publishing entry.
    pub index: u64,
}

/// Signal errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SignalError {
    /// The pattern or subject is malformed (or a subject has wildcards).
    InvalidSubject,
    /// No such subscription of this session.
    NotSubscribed,
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidSubject => "malformed subject or pattern",
            Self::NotSubscribed => "no such subscription of this session",
        })
    }
}

impl From<SignalError> for Error {
    fn from(e: SignalError) -> Self {
        Self::Signal(e)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Subscription {
    session: SessionId,
    pattern: String,
    group: Option<String>,
}

/// Every subscription, the round-robin position of every queue group, and the sessions
/// whose connection closed since they last sent anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Signals {
    subs: BTreeMap<u64, Subscription>,
    cursors: BTreeMap<String, u64>,
    away: BTreeSet<SessionId>,
}

impl Primitive for Signals {
    type Op = SignalOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: SignalOp) -> Step {
        self.apply_inner(fx, op).map_or_else(Step::from, |r| Step::Done(Ok(r)))
    }

    /// Ends every subscription of `session`.
    fn end_session(&mut self, _: &mut Fx<'_>, session: SessionId) {
        let ids: Vec<u64> =
            self.subs.iter().filter(|(_, s)| s.session == session).map(|(id, _)| *id).collect();
        for id in ids {
            self.remove(id);
        }
        self.away.remove(&session);
    }

    fn owners(&self, out: &mut BTreeSet<SessionId>) {
        out.extend(self.subscriptions().map(|(_, session)| session));
    }
}

impl Signals {
    fn apply_inner(&mut self, fx: &mut Fx<'_>, op: SignalOp) -> Result<Reply, Error> {
        let limits = fx.limits;
        match op {
            SignalOp::Subscribe { pattern, group } => {
                let session = fx.session()?;
                check_name(limits, &pattern)?;
                if !pattern::is_valid_pattern(&pattern) {
                    return Err(SignalError::InvalidSubject.into());
                }
                if let Some(g) = &group {
                    check_name(limits, g)?;
                }
                if self.subs.len() >= limits.subscriptions_max {
                    return Err(limit(Limit::Subscriptions, limits.subscriptions_max));
                }
                let id = fx.index;
                self.subs.insert(id, Subscription { session, pattern, group });
                Ok(Reply::Subscribed { id })
            }
            SignalOp::Unsubscribe { id } => {
                let session = fx.session()?;
                if self.subs.get(&id).is_none_or(|s| s.session != session) {
                    return Err(SignalError::NotSubscribed.into());
                }
                self.remove(id);
                Ok(Reply::Unit)
            }
            SignalOp::Disconnected { session } => {
                if self.in_queue_group(session) {
                    self.away.insert(session);
                }
                Ok(Reply::Unit)
            }
            SignalOp::Publish { subject, payload } => {
                check_name(limits, &subject)?;
                if !pattern::is_valid_subject(&subject) {
                    return Err(SignalError::InvalidSubject.into());
                }
                if payload.len() > limits.signal_payload_bytes_max {
                    return Err(limit(Limit::SignalPayloadBytes, limits.signal_payload_bytes_max));
                }
                let mut receivers: Vec<(u64, SessionId)> = Vec::new();
                let mut groups: BTreeMap<&str, Vec<(u64, SessionId)>> = BTreeMap::new();
                for (id, s) in &self.subs {
                    if !pattern::matches(&s.pattern, &subject) {
                        continue;
                    }
                    match &s.group {
                        None => receivers.push((*id, s.session)),
                        Some(g) => groups.entry(g.as_str()).or_default().push((*id, s.session)),
                    }
                }
                for (g, members) in groups {
                    // Members still connected first: a signal given to a member whose
                    // client is gone would be lost.
                    let live: Vec<(u64, SessionId)> =
                        members.iter().copied().filter(|(_, s)| !self.away.contains(s)).collect();
                    let pool = if live.is_empty() { members } else { live };
                    let cursor = self.cursors.get(g).copied().unwrap_or(0);
                    receivers.push(pool[(cursor % pool.len() as u64) as usize]);
                    self.cursors.insert(g.into(), cursor.wrapping_add(1));
                }
                receivers.sort_unstable();
                for (subscription, session) in &receivers {
                    fx.events.push(Event::Signal(SignalDelivery {
                        session: *session,
                        subscription: *subscription,
                        subject: subject.clone(),
                        payload: payload.clone(),
                        index: fx.index,
                    }));
                }
                Ok(Reply::Count(receivers.len() as u64))
            }
        }
    }

    /// Whether `session` is a member of some queue group.
    pub(crate) fn in_queue_group(&self, session: SessionId) -> bool {
        self.subs.values().any(|s| s.session == session && s.group.is_some())
    }

    /// `session` sent something: it is connected again.
    pub(crate) fn present(&mut self, session: SessionId) {
        self.away.remove(&session);
    }

    fn remove(&mut self, id: u64) {
        if let Some(Subscription { group: Some(g), .. }) = self.subs.remove(&id) {
            if !self.subs.values().any(|s| s.group.as_deref() == Some(g.as_str())) {
                self.cursors.remove(&g);
            }
        }
    }

    /// (subscription, session) of every subscription. For invariant checks.
    pub(crate) fn subscriptions(&self) -> impl Iterator<Item = (u64, SessionId)> + '_ {
        self.subs.iter().map(|(id, s)| (*id, s.session))
    }
}
