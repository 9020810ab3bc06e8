//! The key-value store: small values with versions, ETags, TTLs, conditional writes,
//! prefix listing, and a change history that watches read and resume from.
//!
//! - Every change (put, delete, expiry) increments the store's **revision**; an entry's
//!   [`Etag`] is the revision that last wrote it, so any write changes it.
//! - Conditional writes: create-only ([`PutMode::IfAbsent`], HTTP `If-None-Match: *`),
//!   [`PutMode::IfMatch`] (`If-Match`), and reads with `if_none_match` answer
//!   [`Reply::NotModified`] while the tag is unchanged.
//! - A TTL deletes the entry when the log clock passes it (the change is an
//!   [`WatchKind::Expire`] event). A put without a TTL clears any earlier one; copy does
//!   not carry the TTL over, rename does.
//! - The last `watch_history_max` changes (and at most `watch_history_bytes_max` bytes of
//!   them) are kept. A watch may resume from any revision still in that window; older
//!   ones get [`KvError::Compacted`] naming the oldest revision still available.

use super::api::{Error, Reply};
use super::fx::{Fx, Step, Timer};
use super::limits::{Limit, Limits};
use super::pattern;
use super::primitives::{Primitive, ReadCx, Reads};
use super::vocab::{check_name, limit, Etag, SessionId};
use crate::time::Instant;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// An entry as reads return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value (`None` from `Head` and key-only listings).
    pub value: Option<Vec<u8>>,
    /// Its tag: the revision that last wrote it.
    pub etag: Etag,
    /// Writes since it was created (1 for a new entry).
    pub version: u64,
    /// The revision that created it.
    pub create_revision: u64,
    /// Time left before it expires, in milliseconds of log time, if it has a TTL.
    pub expires_in_ms: Option<u64>,
}

/// The condition of a put.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutMode {
    /// Write whatever is there.
    Always,
    /// Create only: fail with [`KvError::Exists`] if the key exists.
    IfAbsent,
    /// Overwrite only this version: fail with [`KvError::EtagMismatch`] otherwise.
    IfMatch(Etag),
}

/// Key-value operations. None needs a session; send one for exactly-once retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Writes `value` under `key` → [`Reply::KvWritten`].
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The condition.
        mode: PutMode,
        /// Delete the entry this long after the write (`None`: keep).
        ttl_ms: Option<u64>,
    },
    /// Deletes `key` → [`Reply::Bool`] whether it existed. With `if_match`, only that
    /// version.
    Delete {
        /// The key.
        key: String,
        /// The required tag.
        if_match: Option<Etag>,
    },
    /// Copies the value of `from` to `to` → [`Reply::KvWritten`] (the new entry's tag).
    Copy {
        /// Source key.
        from: String,
        /// Destination key.
        to: String,
        /// Fail with [`KvError::Exists`] if `to` exists.
        if_absent: bool,
    },
    /// Moves `from` to `to` (with its TTL) → [`Reply::KvWritten`].
    Rename {
        /// Source key.
        from: String,
        /// Destination key.
        to: String,
        /// Fail with [`KvError::Exists`] if `to` exists.
        if_absent: bool,
    },
}

/// Which keys a watch or history read covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchFilter {
    /// One key.
    Key(String),
    /// Every key starting with this.
    Prefix(String),
    /// Keys matching a NATS-style pattern (see [`crate::machine::pattern`]).
    Pattern(String),
}

impl WatchFilter {
    /// Whether the filter is well formed.
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Key(_) | Self::Prefix(_) => true,
            Self::Pattern(p) => pattern::is_valid_pattern(p),
        }
    }

    /// Whether `key` is covered.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Prefix(p) => key.starts_with(p.as_str()),
            Self::Pattern(p) => pattern::matches(p, key),
        }
    }
}

/// Key-value reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// The entry under `key` → [`Reply::KvEntry`], or [`Reply::NotModified`] if its tag
    /// equals `if_none_match`.
    Get {
        /// The key.
        key: String,
        /// The tag the reader already has.
        if_none_match: Option<Etag>,
    },
    /// The entry without its value → [`Reply::KvEntry`].
    Head {
        /// The key.
        key: String,
    },
    /// Entries whose key starts with `prefix`, in key order, after `after` (exclusive),
    /// at most `list_max` of them and `list_bytes_max` bytes of keys and values (but at
    /// least one) → [`Reply::KvList`].
    List {
        /// Key prefix ("" for all).
        prefix: String,
        /// Continue after this key.
        after: Option<String>,
        /// Leave values out.
        keys_only: bool,
    },
    /// Changes covered by `filter` from revision `from` on → [`Reply::WatchHistory`].
    History {
        /// Which keys.
        filter: WatchFilter,
        /// First revision wanted.
        from: u64,
    },
}

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchKind {
    /// Created or overwritten.
    Put,
    /// Deleted.
    Delete,
    /// Deleted by its TTL.
    Expire,
}

/// One change to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The store's revision after this change (1, 2, …, without gaps).
    pub revision: u64,
    /// The key.
    pub key: String,
    /// What happened.
    pub kind: WatchKind,
    /// The value written (for `Put`).
    pub value: Option<Vec<u8>>,
}

impl WatchEvent {
    fn weight(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len) + 32
    }
}

/// Key-value errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KvError {
    /// Create-only write, but the key exists.
    Exists {
        /// The existing entry's tag.
        etag: Etag,
    },
    /// The entry's tag is not the one required.
    EtagMismatch {
        /// The current tag (`None`: no entry).
        current: Option<Etag>,
    },
    /// The source key does not exist.
    NotFound,
    /// The requested revision is no longer in the history window.
    Compacted {
        /// The oldest revision still available.
        oldest: u64,
    },
    /// A watch pattern is malformed.
    InvalidPattern,
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exists { etag } => write!(f, "key exists (etag {})", etag.0),
            Self::EtagMismatch { current: Some(e) } => write!(f, "etag mismatch (current {})", e.0),
            Self::EtagMismatch { current: None } => f.write_str("etag mismatch (no such key)"),
            Self::NotFound => f.write_str("no such key"),
            Self::Compacted { oldest } => {
                write!(f, "revision compacted; the oldest available is {oldest}")
            }
            Self::InvalidPattern => f.write_str("malformed pattern"),
        }
    }
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        Self::Kv(e)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    value: Vec<u8>,
    version: u64,
    create_revision: u64,
    mod_revision: u64,
    expires: Option<Instant>,
}

/// The store and its history window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Kv {
    entries: BTreeMap<String, Stored>,
    revision: u64,
    history: VecDeque<WatchEvent>,
    history_bytes: usize,
    /// Every change from this revision on is in `history`.
    oldest: u64,
}

impl Default for Kv {
    fn default() -> Self {
        Self { entries: BTreeMap::new(), revision: 0, history: VecDeque::new(), history_bytes: 0, oldest: 1 }
    }
}

impl Primitive for Kv {
    type Op = KvOp;

    fn apply(&mut self, fx: &mut Fx<'_>, op: KvOp) -> Step {
        match self.apply_inner(fx, op) {
            Ok(r) => Step::Done(Ok(r)),
            Err(e) => e.into(),
        }
    }

    fn end_session(&mut self, _: &mut Fx<'_>, _: SessionId) {
        // Keys belong to no session (they expire by their own TTL).
    }

    fn owners(&self, _: &mut BTreeSet<SessionId>) {
        // Keys belong to no session.
    }
}

impl Reads for Kv {
    type Query = KvQuery;

    fn query(&self, cx: &ReadCx<'_>, q: &KvQuery) -> Result<Reply, Error> {
        let (now, list_max, list_bytes_max) = (cx.now, cx.limits.list_max, cx.limits.list_bytes_max);
        match q {
            KvQuery::Get { key, if_none_match } => {
                let Some(s) = self.entries.get(key) else { return Ok(Reply::KvEntry(None)) };
                if *if_none_match == Some(Etag(s.mod_revision)) {
                    return Ok(Reply::NotModified { etag: Etag(s.mod_revision) });
                }
                Ok(Reply::KvEntry(Some(self.entry(key, s, now, true))))
            }
            KvQuery::Head { key } => {
                Ok(Reply::KvEntry(self.entries.get(key).map(|s| self.entry(key, s, now, false))))
            }
            KvQuery::List { prefix, after, keys_only } => {
                use core::ops::Bound;
                let start = match after {
                    Some(a) if a.as_str() >= prefix.as_str() => Bound::Excluded(a.clone()),
                    _ => Bound::Included(prefix.clone()),
                };
                let it = self
                    .entries
                    .range((start, Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .map(|(k, s)| self.entry(k, s, now, !keys_only));
                let (entries, more) = page(it, list_max, list_bytes_max, |e| kv_bytes(&e.key, &e.value));
                Ok(Reply::KvList { entries, more })
            }
            KvQuery::History { filter, from } => {
                if !filter.is_valid() {
                    return Err(KvError::InvalidPattern.into());
                }
                // Revision 0 never existed: from 0 means from the first change, which is
                // compacted only once that change was dropped.
                if (*from).max(1) < self.oldest {
                    return Err(KvError::Compacted { oldest: self.oldest }.into());
                }
                let start = self.history.partition_point(|e| e.revision < *from);
                let it = self.history.range(start..).filter(|e| filter.matches(&e.key)).cloned();
                let (events, more) = page(it, list_max, list_bytes_max, |e| kv_bytes(&e.key, &e.value));
                Ok(Reply::WatchHistory { events, revision: self.revision, more })
            }
        }
    }
}

impl Kv {
    fn apply_inner(&mut self, fx: &mut Fx<'_>, op: KvOp) -> Result<Reply, Error> {
        let limits = fx.limits;
        match op {
            KvOp::Put { key, value, mode, ttl_ms } => {
                check_name(limits, &key)?;
                let current = self.entries.get(&key).map(|s| Etag(s.mod_revision));
                match (mode, current) {
                    (PutMode::IfAbsent, Some(etag)) => return Err(KvError::Exists { etag }.into()),
                    (PutMode::IfMatch(want), current) if current != Some(want) => {
                        return Err(KvError::EtagMismatch { current }.into())
                    }
                    _ => {}
                }
                let expires = match ttl_ms {
                    Some(ms) if ms > limits.kv_ttl_max_ms || ms == 0 => {
                        return Err(limit(Limit::KvTtl, limits.kv_ttl_max_ms))
                    }
                    Some(ms) => Some(fx.time.add_us(ms * 1000)),
                    None => None,
                };
                self.write(fx, key, value, expires, false)
            }
            KvOp::Delete { key, if_match } => {
                let current = self.entries.get(&key).map(|s| Etag(s.mod_revision));
                if let Some(want) = if_match {
                    if current != Some(want) {
                        return Err(KvError::EtagMismatch { current }.into());
                    }
                }
                if current.is_none() {
                    return Ok(Reply::Bool(false));
                }
                self.remove(fx, &key, WatchKind::Delete);
                Ok(Reply::Bool(true))
            }
            KvOp::Copy { from, to, if_absent } => self.copy(fx, &from, to, if_absent, false),
            KvOp::Rename { from, to, if_absent } => self.copy(fx, &from, to, if_absent, true),
        }
    }

    /// Copies (or, with `rename`, moves) the entry under `from` to `to`. Copying a key onto
    /// itself changes nothing.
    fn copy(
        &mut self,
        fx: &mut Fx<'_>,
        from: &str,
        to: String,
        if_absent: bool,
        rename: bool,
    ) -> Result<Reply, Error> {
        check_name(fx.limits, &to)?;
        let source = self.entries.get(from).ok_or(KvError::NotFound)?;
        if let Some(existing) = self.entries.get(&to) {
            let etag = Etag(existing.mod_revision);
            if if_absent {
                return Err(KvError::Exists { etag }.into());
            }
            if from == to {
                return Ok(Reply::KvWritten { etag });
            }
        }
        let (value, expires) = (source.value.clone(), source.expires);
        if rename {
            let reply = self.write(fx, to, value, expires, true)?;
            self.remove(fx, from, WatchKind::Delete);
            Ok(reply)
        } else {
            self.write(fx, to, value, None, false)
        }
    }

    /// Writes `key`. `moving` marks the first half of a rename, whose source key is removed
    /// next: the write then adds no key to the count.
    fn write(
        &mut self,
        fx: &mut Fx<'_>,
        key: String,
        value: Vec<u8>,
        expires: Option<Instant>,
        moving: bool,
    ) -> Result<Reply, Error> {
        let limits = fx.limits;
        if value.len() > limits.kv_value_bytes_max {
            return Err(limit(Limit::KvValueBytes, limits.kv_value_bytes_max));
        }
        let existing = self.entries.get(&key);
        let keys = self.entries.len() - usize::from(moving);
        if existing.is_none() && keys >= limits.kv_keys_max {
            return Err(limit(Limit::KvKeys, limits.kv_keys_max));
        }
        if let Some(old) = existing.and_then(|s| s.expires) {
            fx.timers_removed.push((old, Timer::Key(key.clone())));
        }
        if let Some(t) = expires {
            fx.timers_added.push((t, Timer::Key(key.clone())));
        }
        self.revision += 1;
        let revision = self.revision;
        let (version, create_revision) =
            existing.map_or((1, revision), |s| (s.version + 1, s.create_revision));
        let stored =
            Stored { value: value.clone(), version, create_revision, mod_revision: revision, expires };
        self.entries.insert(key.clone(), stored);
        self.record(fx, limits, WatchEvent { revision, key, kind: WatchKind::Put, value: Some(value) });
        Ok(Reply::KvWritten { etag: Etag(revision) })
    }

    fn remove(&mut self, fx: &mut Fx<'_>, key: &str, kind: WatchKind) {
        let Some(old) = self.entries.remove(key) else { return };
        if let (Some(t), WatchKind::Delete) = (old.expires, kind) {
            fx.timers_removed.push((t, Timer::Key(key.into())));
        }
        self.revision += 1;
        let event = WatchEvent { revision: self.revision, key: key.into(), kind, value: None };
        self.record(fx, fx.limits, event);
    }

    fn record(&mut self, fx: &mut Fx<'_>, limits: &Limits, event: WatchEvent) {
        self.history_bytes += event.weight();
        self.history.push_back(event.clone());
        while self.history.len() > limits.watch_history_max
            || self.history_bytes > limits.watch_history_bytes_max
        {
            let Some(old) = self.history.pop_front() else { break };
            self.history_bytes -= old.weight();
            self.oldest = old.revision + 1;
        }
        #[cfg(feature = "bug-injection")]
        if fx.bugs.watch_drops_deletes && event.kind == WatchKind::Delete {
            return;
        }
        fx.events.push(super::api::Event::Kv(event));
    }

    /// The TTL of `key` ran out (the timer fired at `now`).
    pub(crate) fn expire(&mut self, fx: &mut Fx<'_>, key: &str) {
        if self.entries.get(key).and_then(|s| s.expires).is_some_and(|t| t <= fx.time) {
            self.remove(fx, key, WatchKind::Expire);
        }
    }

    fn entry(&self, key: &str, s: &Stored, now: Instant, with_value: bool) -> KvEntry {
        KvEntry {
            key: key.into(),
            value: with_value.then(|| s.value.clone()),
            etag: Etag(s.mod_revision),
            version: s.version,
            create_revision: s.create_revision,
            expires_in_ms: s.expires.map(|t| t.saturating_since_us(now) / 1000),
        }
    }

    /// The current revision.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// Keys stored.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of keys and values stored.
    pub(crate) fn bytes(&self) -> u64 {
        self.entries.iter().map(|(k, v)| (k.len() + v.value.len()) as u64).sum()
    }
}

/// What a key and its value weigh in a page.
fn kv_bytes(key: &str, value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len)
}

/// The first items of `it`, at most `items_max` of them and `bytes_max` bytes by `size`,
/// but at least one; and whether any are left.
fn page<T>(
    mut it: impl Iterator<Item = T>,
    items_max: usize,
    bytes_max: usize,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for item in it.by_ref() {
        bytes = bytes.saturating_add(size(&item));
        if !out.is_empty() && (out.len() >= items_max || bytes > bytes_max) {
            return (out, true);
        }
        out.push(item);
    }
    (out, false)
}
