//! The record codec: how one part of a [`StorageWrite`](crate::StorageWrite) is framed in a
//! segment.
//!
//! A record is `[u32 LE payload length][u32 LE crc32(payload)][payload]`, the payload a
//! postcard-encoded [`Record`].

use super::DecodeError;
use crate::raft::{Entry, HardState, LogIndex};
use crate::wire::AppendTo;
use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Bytes before each record's payload: its length and its checksum.
pub const FRAME_HEADER_BYTES: usize = 8;

/// One record in a segment. The variant order is part of the on-disk format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record<'a> {
    /// Replaces the hard state.
    HardState(HardState),
    /// Deletes every entry at or after the first one's index, then appends these. Never
    /// empty. A batch larger than one record is split; the later parts start at the previous
    /// part's end, so they truncate nothing.
    Entries(Cow<'a, [Entry]>),
    /// Resets the state to this hard state, the snapshot at `snapshot_index` and an empty
    /// log, so replay forgets every earlier segment. Only ever the first record of a segment
    /// that compaction installed.
    Checkpoint {
        /// Which stored snapshot this is: the first is 1; 0 means none.
        generation: u64,
        /// The index that snapshot covers.
        snapshot_index: LogIndex,
        /// The hard state when the segment was installed.
        hard_state: HardState,
    },
}

/// A record could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is larger than the limit.
    TooLarge {
        /// The payload's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// postcard refused the value (it cannot for the types stored here).
    Unencodable,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { bytes, max } => write!(f, "record of {bytes} bytes exceeds the limit of {max}"),
            Self::Unencodable => f.write_str("the record cannot be encoded"),
        }
    }
}

/// Why bytes at some offset are not a well-framed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes remain than a header needs.
    ShortHeader {
        /// The bytes present.
        present: usize,
    },
    /// The header says the payload is empty; no record is.
    ZeroLength,
    /// The header's length is over the limit (and is never allocated).
    TooLong {
        /// The stored length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is cut short.
    ShortPayload {
        /// The payload bytes present.
        present: usize,
        /// The stored length.
        len: usize,
    },
    /// The payload does not match its checksum.
    Checksum {
        /// The stored checksum.
        stored: u32,
        /// The payload's checksum.
        computed: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortHeader { present } => {
                write!(f, "short record header ({present} of {FRAME_HEADER_BYTES} bytes)")
            }
            Self::ZeroLength => f.write_str("record length is zero"),
            Self::TooLong { len, max } => write!(f, "record length {len} exceeds record_bytes_max ({max})"),
            Self::ShortPayload { present, len } => {
                write!(f, "short record ({present} of {len} payload bytes)")
            }
            Self::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
        }
    }
}

/// Appends `record`, framed, to `out`. A payload over `record_bytes_max` leaves `out` as it
/// was and is [`EncodeError::TooLarge`].
pub fn encode(record: &Record<'_>, record_bytes_max: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    if postcard::serialize_with_flavor(record, AppendTo(out)).is_err() {
        out.truncate(start);
        return Err(EncodeError::Unencodable);
    }
    let payload = &out[start + FRAME_HEADER_BYTES..];
    let too_large = EncodeError::TooLarge { bytes: payload.len(), max: record_bytes_max };
    let len = match u32::try_from(payload.len()) {
        Ok(len) if payload.len() <= record_bytes_max => len,
        _ => {
            out.truncate(start);
            return Err(too_large);
        }
    };
    let crc = crate::crc::crc32(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + FRAME_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends `entries` to `out` in records that fit `record_bytes_max`, halving a batch until
/// each part fits; no entries, no record. One entry too large on its own is
/// [`EncodeError::TooLarge`], and then `out` may hold the parts before it.
pub fn encode_entries(
    entries: &[Entry],
    record_bytes_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if entries.is_empty() {
        return Ok(());
    }
    match encode(&Record::Entries(Cow::Borrowed(entries)), record_bytes_max, out) {
        Err(EncodeError::TooLarge { .. }) if entries.len() > 1 => {
            let (head, tail) = entries.split_at(entries.len() / 2);
            encode_entries(head, record_bytes_max, out)?;
            encode_entries(tail, record_bytes_max, out)
        }
        result => result,
    }
}

/// The payload of the record framed at `offset` in `buf` and the offset after it. The
/// stored length is checked against `record_bytes_max` and the bytes present before the
/// payload is touched, then the checksum.
pub fn frame_at(buf: &[u8], offset: usize, record_bytes_max: usize) -> Result<(&[u8], usize), FrameError> {
    let rest = buf.get(offset..).unwrap_or_default();
    let Some((header, rest)) = rest.split_first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(FrameError::ShortHeader { present: rest.len() });
    };
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let len = usize::try_from(u32::from_le_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    if len > record_bytes_max {
        return Err(FrameError::TooLong { len, max: record_bytes_max });
    }
    let Some(payload) = rest.get(..len) else {
        return Err(FrameError::ShortPayload { present: rest.len(), len });
    };
    let computed = crate::crc::crc32(payload);
    if computed != stored {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok((payload, offset + FRAME_HEADER_BYTES + len))
}

/// Whether a well-framed record (valid length and checksum) starts anywhere at or after
/// `from`: what tells a torn tail (nothing follows) from damage in the middle.
pub(crate) fn frame_follows(buf: &[u8], from: usize, record_bytes_max: usize) -> bool {
    (from..buf.len()).any(|at| frame_at(buf, at, record_bytes_max).is_ok())
}

/// Decodes a checksummed payload. Every byte must belong to the record.
pub fn decode(payload: &[u8]) -> Result<Record<'static>, DecodeError> {
    match postcard::take_from_bytes::<Record<'static>>(payload) {
        Ok((record, [])) => Ok(record),
        Ok((_, rest)) => Err(DecodeError::TrailingBytes { bytes: rest.len() }),
        Err(e) => Err(DecodeError::Malformed(e)),
    }
}
