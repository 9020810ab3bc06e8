//! Named limits of the coordination state machine.
//!
//! Every replica of a group must run with the same [`Limits`]: they decide what applying
//! an entry does, so replicas with different limits would diverge. Hosts read them from
//! the group's configuration, never from per-node flags.

use serde::{Deserialize, Serialize};

/// Bounds on everything the state machine stores. Exceeding one is a typed error
/// ([`crate::machine::Error::Limit`]) naming the limit, never silent truncation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
            watch_history_max: 10_000,
            watch_history_bytes_max: 4 << 20,
            election_value_bytes_max: 4 * 1024,
            subscriptions_max: 10_000,
            signal_payload_bytes_max: 64 * 1024,
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
