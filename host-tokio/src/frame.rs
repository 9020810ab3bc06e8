//! Reading and writing length-prefixed frames of the core's wire format on a byte stream.
//!
//! A frame's declared length is checked against the limit before any buffer grows for it,
//! so a peer cannot make the server allocate more than `frame_bytes_max` per connection.

use concord_core::wire::{encode_frame, Envelope, StreamDecoder, WireError};
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
            Self::Wire(e @ WireError::Http) => write!(f, "{e}"),
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

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 16 << 10;

/// Reads frames from a byte stream through the core's incremental [`StreamDecoder`].
/// Cancel-safe: a `next` dropped mid-way loses nothing already read.
pub struct FrameReader<R> {
    r: R,
    decoder: StreamDecoder,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames of at most `frame_bytes_max` bytes from `r`.
    pub fn new(r: R, frame_bytes_max: usize) -> Self {
        Self { r, decoder: StreamDecoder::new(frame_bytes_max), chunk: vec![0; READ_CHUNK_BYTES].into() }
    }

    /// The next frame. `Ok(None)` when the stream ended cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Envelope>, FrameError> {
        loop {
            if let Some(envelope) = self.decoder.next_frame().map_err(FrameError::from)? {
                return Ok(Some(envelope));
            }
            let n = self.r.read(&mut self.chunk).await?;
            if n == 0 {
                if self.decoder.is_idle() {
                    return Ok(None);
                }
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            self.decoder.push(&self.chunk[..n]);
        }
    }
}

impl From<WireError> for FrameError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::FrameTooLarge { size, max } => Self::TooLarge { size, max },
            other => Self::Wire(other),
        }
    }
}

/// Writes one frame (encoded into `buf`, which is reused).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    envelope: &Envelope,
    buf: &mut Vec<u8>,
    frame_bytes_max: usize,
) -> Result<(), FrameError> {
    buf.clear();
    encode_frame(envelope, frame_bytes_max, buf)?;
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
        let mut r = FrameReader::new(&mut b, 1024);
        assert_eq!(r.next().await.unwrap(), Some(status_request(1)));
        assert_eq!(r.next().await.unwrap(), Some(status_request(2)));
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_oversize_length_is_refused_before_reading_the_payload() {
        let (mut a, mut b) = tokio::io::duplex(64);
        // Declares 4 GiB − 1 but sends nothing more: the reader must not wait or allocate.
        a.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let e = FrameReader::new(&mut b, 1024).next().await.unwrap_err();
        assert!(matches!(e, FrameError::TooLarge { max: 1024, .. }), "{e}");
    }

    #[tokio::test]
    async fn garbage_is_a_typed_error() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[5, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]).await.unwrap();
        let e = FrameReader::new(&mut b, 1024).next().await.unwrap_err();
        assert!(matches!(e, FrameError::Wire(_)), "{e}");
    }

    #[tokio::test]
    async fn an_http_peer_is_named() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await.unwrap();
        let e = FrameReader::new(&mut b, 1024).next().await.unwrap_err();
        assert!(e.to_string().contains("HTTP"), "{e}");
    }

    #[tokio::test]
    async fn a_stream_cut_mid_frame_is_an_error_not_a_clean_end() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut buf = Vec::new();
        write_frame(&mut a, &status_request(1), &mut buf, 1024).await.unwrap();
        a.write_all(&buf[..buf.len() - 1]).await.unwrap();
        drop(a);
        let mut r = FrameReader::new(&mut b, 1024);
        assert_eq!(r.next().await.unwrap(), Some(status_request(1)));
        assert!(matches!(r.next().await, Err(FrameError::Io(_))));
    }
}
