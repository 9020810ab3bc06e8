//! Named limits of the coordination state machine.
//!
//! Every replica of a group must run with the same [`Limits`]: they decide what applying
//! an entry does, so replicas with different limits would diverge. Hosts read them from
//! the group's configuration, never from per-node flags.

use core::fmt;
use serde::{Deserialize, Serialize};

/// Bounds on everything the state machine stores. Exceeding one is a typed error
/// ([`crate::machine::Error::Limit`]) naming the limit, never silent truncation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Open sessions at once.
    pub sessions_max: usize,
    /// Shortest session TTL a client may ask for, in milliseconds.
    pub session_ttl_min_ms: u64,
    /// Longest session TTL a client may ask for, in milliseconds.
    pub session_ttl_max_ms: u64,
    /// Completed replies kept per session for retries (the exactly-once window). A client
    /// must not have more requests outstanding than this.
    pub session_replies_max: usize,
    /// Longest name of any primitive (lock, semaphore, key, channel, …), in bytes.
    pub name_bytes_max: usize,
    /// Named primitives of each kind (locks, semaphores, latches, …) existing at once.
    pub objects_per_kind_max: usize,
    /// Queued waiters per primitive.
    pub waiters_per_object_max: usize,
    /// Longest wait a blocking operation may ask for, in milliseconds.
    pub wait_timeout_max_ms: u64,
    /// How many times one session may hold the same lock reentrantly.
    pub lock_reentrancy_max: u32,
    /// Names in one atomic multi-lock.
    pub multi_lock_names_max: usize,
    /// Permits a semaphore may have.
    pub semaphore_permits_max: u64,
    /// Parties of a barrier.
    pub barrier_parties_max: u32,
    /// Largest atomic reference value, in bytes.
    pub reference_bytes_max: usize,
    /// Keys in the key-value store.
    pub kv_keys_max: usize,
    /// Largest key-value store value, in bytes.
    pub kv_value_bytes_max: usize,
    /// Longest key-value TTL, in milliseconds.
    pub kv_ttl_max_ms: u64,
    /// Most entries one list or history read returns.
    pub list_max: usize,
    /// Most bytes of keys and values one key-value list or history read returns, so that
    /// a page fits a frame whatever the values' sizes; a page always holds at least one
    /// entry.
    pub list_bytes_max: usize,
    /// Key-value change events kept for resuming watches.
    pub watch_history_max: usize,
    /// Bytes of keys and values those events may hold.
    pub watch_history_bytes_max: usize,
    /// Largest election candidate value, in bytes.
    pub election_value_bytes_max: usize,
    /// Signal subscriptions at once.
    pub subscriptions_max: usize,
    /// Largest signal payload, in bytes.
    pub signal_payload_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sessions_max: 10_000,
            session_ttl_min_ms: 100,
            session_ttl_max_ms: 3_600_000,
            session_replies_max: 128,
            name_bytes_max: 256,
            objects_per_kind_max: 100_000,
            waiters_per_object_max: 1_024,
            wait_timeout_max_ms: 24 * 3_600_000,
            lock_reentrancy_max: 64,
            multi_lock_names_max: 16,
            semaphore_permits_max: 1 << 32,
            barrier_parties_max: 1_024,
            reference_bytes_max: 64 * 1024,
            kv_keys_max: 100_000,
            kv_value_bytes_max: 64 * 1024,
            kv_ttl_max_ms: 30 * 24 * 3_600_000,
            list_max: 1_000,
            list_bytes_max: 1 << 20,
            watch_history_max: 10_000,
            watch_history_bytes_max: 4 << 20,
            election_value_bytes_max: 4 * 1024,
            subscriptions_max: 10_000,
            signal_payload_bytes_max: 64 * 1024,
        }
    }
}

/// Rules of the machine a simulator can deliberately break to prove that its checkers
/// catch the damage. Only present with the `bug-injection` feature, which no deployment
/// enables.
#[cfg(feature = "bug-injection")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineBugs {
    /// Apply a retried request again instead of answering it from the reply cache.
    pub reply_cache_ignored: bool,
    /// Grant a lock while another session holds it.
    pub lock_ignores_holder: bool,
    /// Release a latch's waiters at the count-down that leaves one, not zero.
    pub latch_releases_one_early: bool,
    /// Keep the locks of a session that ends.
    pub session_end_keeps_locks: bool,
    /// Emit no watch event for a deleted key (its revision still counts).
    pub watch_drops_deletes: bool,
}

impl Limits {
    /// A fingerprint of every limit: nodes exchange it when they connect and refuse a
    /// peer whose limits differ, since replicas applying the same log under different
    /// limits would diverge. FNV-1a over the postcard encoding: stable across builds and
    /// targets.
    pub fn digest(&self) -> u64 {
        let bytes = postcard::to_allocvec(self).unwrap_or_default();
        bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// Checks the limits make sense: every bound at least 1 (a zero reply cache would
    /// defeat exactly-once; a zero name length would refuse every primitive) and a TTL
    /// range that is not empty.
    ///
    /// ```
    /// use concord_core::machine::{Limits, LimitsError};
    /// assert!(Limits::default().validate().is_ok());
    /// let zero = Limits { session_replies_max: 0, ..Limits::default() };
    /// assert_eq!(zero.validate(), Err(LimitsError::Zero("session_replies_max")));
    /// ```
    pub fn validate(&self) -> Result<(), LimitsError> {
        let sizes = [
            ("sessions_max", self.sessions_max),
            ("session_replies_max", self.session_replies_max),
            ("name_bytes_max", self.name_bytes_max),
            ("objects_per_kind_max", self.objects_per_kind_max),
            ("waiters_per_object_max", self.waiters_per_object_max),
            ("multi_lock_names_max", self.multi_lock_names_max),
            ("reference_bytes_max", self.reference_bytes_max),
            ("kv_keys_max", self.kv_keys_max),
            ("kv_value_bytes_max", self.kv_value_bytes_max),
            ("list_max", self.list_max),
            ("list_bytes_max", self.list_bytes_max),
            ("watch_history_max", self.watch_history_max),
            ("watch_history_bytes_max", self.watch_history_bytes_max),
            ("election_value_bytes_max", self.election_value_bytes_max),
            ("subscriptions_max", self.subscriptions_max),
            ("signal_payload_bytes_max", self.signal_payload_bytes_max),
        ];
        let counts = [
            ("session_ttl_min_ms", self.session_ttl_min_ms),
            ("wait_timeout_max_ms", self.wait_timeout_max_ms),
            ("lock_reentrancy_max", u64::from(self.lock_reentrancy_max)),
            ("semaphore_permits_max", self.semaphore_permits_max),
            ("barrier_parties_max", u64::from(self.barrier_parties_max)),
            ("kv_ttl_max_ms", self.kv_ttl_max_ms),
        ];
        let zero = sizes.iter().find(|(_, v)| *v == 0).map(|(n, _)| *n);
        if let Some(name) = zero.or_else(|| counts.iter().find(|(_, v)| *v == 0).map(|(n, _)| *n)) {
            return Err(LimitsError::Zero(name));
        }
        if self.session_ttl_max_ms < self.session_ttl_min_ms {
            return Err(LimitsError::SessionTtlRange);
        }
        Ok(())
    }
}

/// Why [`Limits`] were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitsError {
    /// This limit is zero; every limit must be at least 1.
    Zero(&'static str),
    /// `session_ttl_max_ms` is below `session_ttl_min_ms`.
    SessionTtlRange,
}

impl fmt::Display for LimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero(name) => write!(f, "limit {name} must be at least 1"),
            Self::SessionTtlRange => f.write_str("session_ttl_max_ms must be at least session_ttl_min_ms"),
        }
    }
}

/// Which limit was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::sessions_max`].
    Sessions,
    /// [`Limits::session_ttl_min_ms`] or [`Limits::session_ttl_max_ms`].
    SessionTtl,
    /// [`Limits::name_bytes_max`] (or an empty name).
    NameBytes,
    /// [`Limits::objects_per_kind_max`].
    Objects,
    /// [`Limits::waiters_per_object_max`].
    Waiters,
    /// [`Limits::wait_timeout_max_ms`].
    WaitTimeout,
    /// [`Limits::lock_reentrancy_max`].
    LockReentrancy,
    /// [`Limits::multi_lock_names_max`] (or an empty or repeating name list).
    MultiLockNames,
    /// [`Limits::semaphore_permits_max`].
    SemaphorePermits,
    /// [`Limits::barrier_parties_max`] (or zero parties).
    BarrierParties,
    /// [`Limits::reference_bytes_max`].
    ReferenceBytes,
    /// [`Limits::kv_keys_max`].
    KvKeys,
    /// [`Limits::kv_value_bytes_max`].
    KvValueBytes,
    /// [`Limits::kv_ttl_max_ms`].
    KvTtl,
    /// [`Limits::list_max`].
    List,
    /// [`Limits::election_value_bytes_max`].
    ElectionValueBytes,
    /// [`Limits::subscriptions_max`].
    Subscriptions,
    /// [`Limits::signal_payload_bytes_max`].
    SignalPayloadBytes,
}

impl Limit {
    /// The name of the limit's field in [`Limits`].
    pub fn field(self) -> &'static str {
        match self {
            Self::Sessions => "sessions_max",
            Self::SessionTtl => "session_ttl_min_ms/session_ttl_max_ms",
            Self::NameBytes => "name_bytes_max",
            Self::Objects => "objects_per_kind_max",
            Self::Waiters => "waiters_per_object_max",
            Self::WaitTimeout => "wait_timeout_max_ms",
            Self::LockReentrancy => "lock_reentrancy_max",
            Self::MultiLockNames => "multi_lock_names_max",
            Self::SemaphorePermits => "semaphore_permits_max",
            Self::BarrierParties => "barrier_parties_max",
            Self::ReferenceBytes => "reference_bytes_max",
            Self::KvKeys => "kv_keys_max",
            Self::KvValueBytes => "kv_value_bytes_max",
            Self::KvTtl => "kv_ttl_max_ms",
            Self::List => "list_max",
            Self::ElectionValueBytes => "election_value_bytes_max",
            Self::Subscriptions => "subscriptions_max",
            Self::SignalPayloadBytes => "signal_payload_bytes_max",
        }
    }
}
