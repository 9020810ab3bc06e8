//! Reading and writing length-prefixed frames of the core's wire format on a byte stream.
//!
//! A frame's declared length is checked against the limit before any buffer grows for it,
//! so a peer cannot make the server allocate more than `frame_bytes_max` per connection.

use concord_core::wire::{decode_payload, encode_frame, Envelope, WireError, FRAME_HEADER_BYTES};
use std::fmt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The connection failed or closed in the middle of a frame.
    Io(std::io::Error),
    /// The frame declared more bytes than the limit.
    TooLarge {
        /// Declared payload bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid envelope of this protocol version.
    Wire(WireError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "connection error: {e}"),
            Self::TooLarge { size, max } => write!(f, "frame of {size} bytes exceeds the limit of {max}"),
            Self::Wire(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads one frame. `Ok(None)` when the stream ended cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    frame_bytes_max: usize,
) -> Result<Option<Envelope>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_le_bytes(header) as usize;
    if size > frame_bytes_max {
        return Err(FrameError::TooLarge { size, max: frame_bytes_max });
    }
    buf.clear();
    buf.resize(size, 0);
    r.read_exact(buf).await?;
    decode_payload(buf, frame_bytes_max).map(Some).map_err(FrameError::Wire)
}

/// Writes one frame (encoded into `buf`, which is reused).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    envelope: &Envelope,
    buf: &mut Vec<u8>,
    frame_bytes_max: usize,
) -> Result<(), FrameError> {
    buf.clear();
    encode_frame(envelope, frame_bytes_max, buf).map_err(|e| match e {
        WireError::FrameTooLarge { size, max } => FrameError::TooLarge { size, max },
        other => FrameError::Wire(other),
    })?;
    w.write_all(buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::wire::{ClientRequest, RequestBody};
    use concord_core::GroupId;

    fn status_request(id: u64) -> Envelope {
        Envelope::Request(ClientRequest { id, group: GroupId(1), body: RequestBody::Status })
    }

    #[tokio::test]
    async fn frames_round_trip_and_a_clean_end_is_none() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut buf = Vec::new();
        write_frame(&mut a, &status_request(1), &mut buf, 1024).await.unwrap();
        write_frame(&mut a, &status_request(2), &mut buf, 1024).await.unwrap();
        drop(a);
        let mut rbuf = Vec::new();
        assert_eq!(read_frame(&mut b, &mut rbuf, 1024).await.unwrap(), Some(status_request(1)));
        assert_eq!(read_frame(&mut b, &mut rbuf, 1024).await.unwrap(), Some(status_request(2)));
        assert_eq!(read_frame(&mut b, &mut rbuf, 1024).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_oversize_length_is_refused_before_reading_the_payload() {
        let (mut a, mut b) = tokio::io::duplex(64);
        // Declares 4 GiB − 1 but sends nothing more: the reader must not wait or allocate.
        a.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let mut rbuf = Vec::new();
        let e = read_frame(&mut b, &mut rbuf, 1024).await.unwrap_err();
        assert!(matches!(e, FrameError::TooLarge { max: 1024, .. }), "{e}");
        assert!(rbuf.capacity() < 1024);
    }

    #[tokio::test]
    async fn garbage_is_a_typed_error() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[5, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]).await.unwrap();
        let mut rbuf = Vec::new();
        let e = read_frame(&mut b, &mut rbuf, 1024).await.unwrap_err();
        assert!(matches!(e, FrameError::Wire(_)), "{e}");
    }
}
