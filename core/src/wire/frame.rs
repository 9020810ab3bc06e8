//! Incremental frame decoders: bytes go in as the transport delivers them, whole
//! envelopes come out. Every limit is checked before a buffer grows for it.
//!
//! - [`StreamDecoder`]: length-prefixed frames on a byte stream (TCP). A framing error
//!   loses the frame boundaries, so the stream is unusable afterwards: the host closes
//!   the connection.
//! - [`CobsDecoder`]: COBS-framed payloads on a serial line, each closed by a zero byte
//!   and carrying a CRC-32 of the payload. Line noise costs the frames it touched, never
//!   the line: after any error the decoder resynchronises at the next zero byte.

use super::{decode_frame, decode_payload, encode_payload, Envelope, WireError, FRAME_HEADER_BYTES};
use alloc::vec::Vec;

/// What an HTTP client or server sends first: a Concord port given an HTTP peer (or the
/// reverse) says so instead of reporting an absurd frame length.
const HTTP_STARTS: [&[u8; 4]; 5] = [b"HTTP", b"GET ", b"POST", b"PUT ", b"HEAD"];

/// Length-prefixed frames from a byte stream, decoded as the bytes arrive.
///
/// ```
/// use concord_core::wire::{encode_frame, Envelope, StreamDecoder, ClientRequest, RequestBody};
/// use concord_core::GroupId;
///
/// let req = Envelope::Request(ClientRequest { id: 1, group: GroupId(1), body: RequestBody::Status });
/// let mut bytes = Vec::new();
/// encode_frame(&req, 1 << 16, &mut bytes)?;
/// let mut d = StreamDecoder::new(1 << 16);
/// d.push(&bytes[..3]); // a read that ends mid-frame
/// assert_eq!(d.next_frame()?, None);
/// d.push(&bytes[3..]);
/// assert_eq!(d.next_frame()?, Some(req));
/// # Ok::<(), concord_core::wire::WireError>(())
/// ```
#[derive(Debug)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed (compacted on the next push).
    start: usize,
    frame_bytes_max: usize,
    /// Nothing decoded yet: the first bytes may reveal a peer of another protocol.
    fresh: bool,
}

impl StreamDecoder {
    /// A decoder refusing frames above `frame_bytes_max`.
    pub fn new(frame_bytes_max: usize) -> Self {
        Self { buf: Vec::new(), start: 0, frame_bytes_max, fresh: true }
    }

    /// Appends bytes read from the stream. Hosts read in bounded chunks and call
    /// [`StreamDecoder::next_frame`] until it returns `None` before reading more, so the
    /// buffer holds at most one frame and one chunk.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Whether no byte of an unfinished frame is buffered (a stream may end here cleanly).
    pub fn is_idle(&self) -> bool {
        self.start == self.buf.len()
    }

    /// The next complete frame, `None` until one is complete. After an error the stream
    /// is unusable: frame boundaries are lost.
    pub fn next_frame(&mut self) -> Result<Option<Envelope>, WireError> {
        let input = &self.buf[self.start..];
        if self.fresh
            && input.len() >= FRAME_HEADER_BYTES
            && HTTP_STARTS.iter().any(|h| input.starts_with(*h))
        {
            return Err(WireError::Http);
        }
        let Some((envelope, used)) = decode_frame(input, self.frame_bytes_max)? else {
            return Ok(None);
        };
        self.start += used;
        self.fresh = false;
        Ok(Some(envelope))
    }
}

/// Bytes of the CRC-32 that closes every COBS frame's payload.
pub const COBS_CRC_BYTES: usize = 4;

/// Appends a serial-line frame for `envelope` to `out`: the payload and its CRC-32 (LE),
/// COBS-encoded, then a zero byte. Fails, leaving `out` as it was, if the payload would
/// exceed `frame_bytes_max`.
pub fn encode_cobs_frame(
    envelope: &Envelope,
    frame_bytes_max: usize,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let mut raw = Vec::new();
    encode_payload(envelope, &mut raw)?;
    encode_cobs_raw(&raw, frame_bytes_max, out)
}

/// Appends a serial-line frame for any `raw` payload to `out`: `raw` and its CRC-32
/// (LE), COBS-encoded, then a zero byte. Fails, leaving `out` as it was, if `raw` exceeds
/// `frame_bytes_max`. [`CobsDecoder::push_raw`] reads it back.
pub fn encode_cobs_raw(raw: &[u8], frame_bytes_max: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    if raw.len() > frame_bytes_max {
        return Err(WireError::FrameTooLarge { size: raw.len(), max: frame_bytes_max });
    }
    let crc = crate::crc::crc32(raw).to_le_bytes();
    let start = out.len();
    out.resize(start + cobs::max_encoding_length(raw.len() + COBS_CRC_BYTES), 0);
    let mut enc = cobs::CobsEncoder::new(&mut out[start..]);
    let pushed = enc.push(raw).and_then(|()| enc.push(&crc));
    let n = match pushed {
        Ok(()) => enc.finalize(),
        // Cannot happen (the buffer is sized for the encoding); refuse rather than panic.
        Err(_) => {
            out.truncate(start);
            return Err(WireError::Cobs);
        }
    };
    out.truncate(start + n);
    out.push(0);
    Ok(())
}

/// COBS frames from a serial line, decoded as the bytes arrive, resynchronising at the
/// next zero byte after noise.
///
/// ```
/// use concord_core::wire::{encode_cobs_frame, CobsDecoder, Envelope, ClientRequest, RequestBody};
/// use concord_core::GroupId;
///
/// let req = Envelope::Request(ClientRequest { id: 1, group: GroupId(1), body: RequestBody::Status });
/// let mut line = vec![0x42, 0x17, 0]; // noise, then a zero byte
/// encode_cobs_frame(&req, 1 << 16, &mut line)?;
/// let mut got = Vec::new();
/// CobsDecoder::new(1 << 16).push(&line, |frame| got.push(frame));
/// assert!(got[0].is_err(), "the noise is one bad frame");
/// assert_eq!(got[1], Ok(req));
/// # Ok::<(), concord_core::wire::WireError>(())
/// ```
#[derive(Debug)]
pub struct CobsDecoder {
    buf: Vec<u8>,
    frame_bytes_max: usize,
    /// A frame outgrew the limit: its bytes are skipped up to its closing zero.
    skipping: bool,
}

impl CobsDecoder {
    /// A decoder refusing payloads above `frame_bytes_max`.
    pub fn new(frame_bytes_max: usize) -> Self {
        Self { buf: Vec::new(), frame_bytes_max, skipping: false }
    }

    /// The most encoded bytes one frame may take before its zero byte.
    fn encoded_max(&self) -> usize {
        cobs::max_encoding_length(self.frame_bytes_max + COBS_CRC_BYTES)
    }

    /// Feeds bytes from the line; `frame` gets each frame they complete: its envelope, or
    /// why it was refused (too large, bad COBS, bad CRC, malformed payload). Bounded: the
    /// buffer never holds more than one frame's encoded bytes.
    pub fn push(&mut self, bytes: &[u8], mut frame: impl FnMut(Result<Envelope, WireError>)) {
        let max = self.frame_bytes_max;
        self.push_raw(bytes, |raw| frame(raw.and_then(|payload| decode_payload(payload, max))));
    }

    /// Like [`CobsDecoder::push`] for frames written by [`encode_cobs_raw`]: `frame` gets
    /// each payload whose COBS and CRC are intact (its meaning is the caller's), or why
    /// the frame was refused.
    pub fn push_raw(&mut self, bytes: &[u8], mut frame: impl FnMut(Result<&[u8], WireError>)) {
        let max = self.encoded_max();
        for chunk in bytes.split_inclusive(|b| *b == 0) {
            let (body, closed) = match chunk.split_last() {
                Some((0, body)) => (body, true),
                _ => (chunk, false),
            };
            if !self.skipping {
                if self.buf.len() + body.len() > max {
                    let size = self.buf.len() + body.len();
                    self.buf.clear();
                    self.skipping = true;
                    frame(Err(WireError::FrameTooLarge { size, max }));
                } else {
                    self.buf.extend_from_slice(body);
                }
            }
            if closed {
                if !self.skipping && !self.buf.is_empty() {
                    frame(Self::decode(&mut self.buf));
                }
                self.buf.clear();
                self.skipping = false;
            }
        }
    }

    /// Checks and unwraps the frame in `buf`: its payload, CRC removed.
    fn decode(buf: &mut [u8]) -> Result<&[u8], WireError> {
        let n = cobs::decode_in_place(buf).map_err(|_| WireError::Cobs)?;
        let raw = &buf[..n];
        let Some(split) = raw.len().checked_sub(COBS_CRC_BYTES) else {
            return Err(WireError::Cobs);
        };
        let (payload, crc) = raw.split_at(split);
        let mut expected = [0u8; COBS_CRC_BYTES];
        expected.copy_from_slice(crc);
        if crate::crc::crc32(payload) != u32::from_le_bytes(expected) {
            return Err(WireError::BadChecksum);
        }
        Ok(payload)
    }
}
