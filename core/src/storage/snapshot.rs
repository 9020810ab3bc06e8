//! The snapshot file codec.
//!
//! The file is `[8-byte magic][u32 LE crc32(payload)][payload]`, the payload (the rest of
//! the file) postcard of `(generation, retain_log_after, snapshot)`. `generation` counts
//! the snapshots ever stored: the first is 1, and 0 means no snapshot. The file keeps
//! `retain_log_after` so that recovery can redo a compaction a crash interrupted.

use super::record::EncodeError;
use super::{Damage, DecodeError};
use crate::raft::{Snapshot, SnapshotWrite};
use crate::wire::AppendTo;
use alloc::borrow::Cow;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The first bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"CNCDSNP1";
/// Bytes before the payload: the magic and the checksum.
pub const SNAPSHOT_HEADER_BYTES: usize = 12;

/// The contents of the snapshot file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile<'a> {
    /// Which stored snapshot this is: the first is 1.
    pub generation: u64,
    /// Whether the log after the snapshot was kept when it was stored.
    pub retain_log_after: bool,
    /// The snapshot.
    pub snapshot: Cow<'a, Snapshot>,
}

/// Replaces `out` with the file for snapshot number `generation`. Fails only if postcard
/// refuses the value, which it cannot for these types.
pub fn encode(generation: u64, s: &SnapshotWrite, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let contents = SnapshotFile {
        generation,
        retain_log_after: s.retain_log_after,
        snapshot: Cow::Borrowed(&s.snapshot),
    };
    out.clear();
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&[0; 4]);
    postcard::serialize_with_flavor(&contents, AppendTo(out)).map_err(|_| EncodeError::Unencodable)?;
    let crc = crate::crc::crc32(&out[SNAPSHOT_HEADER_BYTES..]);
    out[SNAPSHOT_MAGIC.len()..SNAPSHOT_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes a whole snapshot file. The error is where the damage starts and what it is.
pub fn decode(buf: &[u8]) -> Result<SnapshotFile<'static>, (u64, Damage)> {
    let Some((header, payload)) = buf.split_first_chunk::<SNAPSHOT_HEADER_BYTES>() else {
        return Err((0, Damage::SnapshotTooShort { bytes: buf.len() }));
    };
    let [m @ .., c0, c1, c2, c3] = *header;
    if &m != SNAPSHOT_MAGIC {
        return Err((0, Damage::SnapshotMagic));
    }
    let (stored, computed) = (u32::from_le_bytes([c0, c1, c2, c3]), crate::crc::crc32(payload));
    let at = SNAPSHOT_HEADER_BYTES as u64;
    if stored != computed {
        return Err((at, Damage::SnapshotChecksum { stored, computed }));
    }
    match postcard::take_from_bytes(payload) {
        Ok((file, [])) => Ok(file),
        Ok((_, rest)) => {
            Err((at, Damage::SnapshotUndecodable(DecodeError::TrailingBytes { bytes: rest.len() })))
        }
        Err(e) => Err((at, Damage::SnapshotUndecodable(DecodeError::Malformed(e)))),
    }
}
