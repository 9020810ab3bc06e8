//! Time as the core sees it: an integer the host passes in.

use core::fmt;
use serde::{Deserialize, Serialize};

/// A point on a monotonic clock, in microseconds since an arbitrary origin chosen by the
/// host. The core never reads a clock: every `handle_*` call takes the current `Instant`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the host's clock.
    pub const ZERO: Self = Self(0);
    /// The far future: used where no deadline is set.
    pub const MAX: Self = Self(u64::MAX);

    /// An instant `us` microseconds after the origin.
    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// This instant plus `us` microseconds, saturating at [`Instant::MAX`].
    #[must_use]
    pub const fn add_us(self, us: u64) -> Self {
        Self(self.0.saturating_add(us))
    }

    /// Microseconds from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since_us(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}
