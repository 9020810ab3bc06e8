//! A tiny logging shim: the core's diagnostics go to the `log` crate when the `log`
//! feature is on, and compile to nothing otherwise, so the core is not tied to a logger
//! (hosts pick `tracing`, `defmt` or the browser console on their side).

#![allow(unused_macros)]

#[cfg(feature = "log")]
macro_rules! trace {
    ($($arg:tt)*) => { ::log::trace!($($arg)*) };
}
#[cfg(not(feature = "log"))]
macro_rules! trace {
    ($($arg:tt)*) => {{ if false { let _ = ::core::format_args!($($arg)*); } }};
}

#[cfg(feature = "log")]
macro_rules! debug {
    ($($arg:tt)*) => { ::log::debug!($($arg)*) };
}
#[cfg(not(feature = "log"))]
macro_rules! debug {
    ($($arg:tt)*) => {{ if false { let _ = ::core::format_args!($($arg)*); } }};
}

#[cfg(feature = "log")]
macro_rules! warn {
    ($($arg:tt)*) => { ::log::warn!($($arg)*) };
}
#[cfg(not(feature = "log"))]
macro_rules! warn {
    ($($arg:tt)*) => {{ if false { let _ = ::core::format_args!($($arg)*); } }};
}
