//! The wire format shared by peers and clients on every transport.
//!
//! An [`Envelope`] is encoded as one *payload*: a version byte followed by the postcard
//! encoding of the envelope. Stream transports (TCP) put each payload in a *frame*: a
//! 4-byte little-endian length, then the payload. Message transports (WebSocket, COBS on a
//! serial line) carry payloads as they are. Decoders never panic: malformed, truncated or
//! oversized input is an `Err`, and a frame's length is checked against the limit before
//! any buffer is allocated for it.

mod client;
mod frame;
pub mod link;

pub use client::{
    Answer, ClientError, ClientRequest, ClusterView, MemberAddr, Push, RequestBody, ServerMessage,
};
pub use frame::{encode_cobs_frame, encode_cobs_raw, CobsDecoder, StreamDecoder, COBS_CRC_BYTES};

use crate::machine::Limits;
use crate::raft::{GroupId, Message, NodeId};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Version byte that starts every payload. Bumped on incompatible changes.
pub const PROTOCOL_VERSION: u8 = 3;

/// Bytes of the length prefix of a frame.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Everything that travels between Concord processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Envelope {
    /// Raft traffic between the nodes of a group.
    Raft(Message),
    /// A client's request to a node.
    Request(ClientRequest),
    /// A node's answer or push to a client.
    Response(ServerMessage),
    /// The first message on every peer connection.
    PeerHello(PeerHello),
}

/// Opens every peer connection: who dials, for which group, under which limits, and where
/// it serves clients. The accepting node can then answer on the same connection at once
/// (how a node that joined later, whose address nobody was given, is reached), refuses a
/// peer of another group or with other limits with a clear reason, and tells clients the
/// dialling node's address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    /// The group the dialling node serves.
    pub group: GroupId,
    /// The dialling node.
    pub node: NodeId,
    /// [`Limits::digest`] of its state machine limits.
    pub limits_digest: u64,
    /// Where it listens for clients, in its host's terms, if it serves clients.
    pub client_addr: Option<String>,
    /// Where it serves clients over WebSocket (a `ws://` or `wss://` URL), if it does.
    pub web_addr: Option<String>,
}

/// Why a peer's hello was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloError {
    /// The first message was not a hello.
    NotAHello,
    /// The peer serves another group.
    WrongGroup {
        /// The peer's group.
        theirs: GroupId,
        /// This node's group.
        ours: GroupId,
    },
    /// The peer claims this node's own id.
    SameId(NodeId),
    /// The peer runs with other state machine limits.
    LimitsDiffer {
        /// The peer's digest.
        theirs: u64,
        /// This node's digest.
        ours: u64,
    },
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAHello => f.write_str("not a Concord peer (its first message was not a hello)"),
            Self::WrongGroup { theirs, ours } => {
                write!(f, "the peer serves group {}, this node group {}", theirs.0, ours.0)
            }
            Self::SameId(id) => write!(f, "the peer claims this node's own id {}", id.0),
            Self::LimitsDiffer { theirs, ours } => write!(
                f,
                "the peer runs with other state machine limits (digest {theirs:#x}, ours {ours:#x}); \
                 every node of a group needs the same limits"
            ),
        }
    }
}

impl PeerHello {
    /// The hello node `node` of `group` sends, running with `limits`.
    pub fn new(group: GroupId, node: NodeId, limits: &Limits, client_addr: Option<String>) -> Self {
        Self { group, node, limits_digest: limits.digest(), client_addr, web_addr: None }
    }

    /// The same hello, also advertising the node's WebSocket URL.
    #[must_use]
    pub fn with_web_addr(mut self, web_addr: Option<String>) -> Self {
        self.web_addr = web_addr;
        self
    }

    /// Whether node `me` of `group`, running with `limits`, takes this peer.
    pub fn check(&self, group: GroupId, me: NodeId, limits: &Limits) -> Result<(), HelloError> {
        if self.group != group {
            return Err(HelloError::WrongGroup { theirs: self.group, ours: group });
        }
        if self.node == me {
            return Err(HelloError::SameId(me));
        }
        let ours = limits.digest();
        if self.limits_digest != ours {
            return Err(HelloError::LimitsDiffer { theirs: self.limits_digest, ours });
        }
        Ok(())
    }
}

/// Why bytes could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The frame (or payload) is larger than the configured maximum.
    FrameTooLarge {
        /// Declared or actual size.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// A payload with no bytes at all.
    Empty,
    /// The payload was written by an incompatible protocol version.
    UnsupportedVersion(u8),
    /// The payload is not a valid envelope.
    Malformed(postcard::Error),
    /// The frame decoded, but bytes were left over after the envelope.
    TrailingBytes(usize),
    /// The peer speaks HTTP: a Concord port was given an HTTP server's address, or an
    /// HTTP client connected to a Concord port.
    Http,
    /// A serial frame is not valid COBS (line noise).
    Cobs,
    /// A serial frame's CRC does not match its payload (line noise).
    BadChecksum,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the limit of {max}")
            }
            Self::Empty => f.write_str("empty payload"),
            Self::UnsupportedVersion(v) => {
                write!(f, "protocol version {v} is not supported (this build speaks {PROTOCOL_VERSION})")
            }
            Self::Malformed(e) => write!(f, "malformed payload: {e}"),
            Self::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the envelope"),
            Self::Http => f.write_str("the other end speaks HTTP, not Concord's protocol (an HTTP port?)"),
            Self::Cobs => f.write_str("not a valid COBS frame (line noise?)"),
            Self::BadChecksum => f.write_str("frame checksum mismatch (line noise?)"),
        }
    }
}

impl core::error::Error for WireError {}

impl core::error::Error for HelloError {}

/// A postcard output that appends to a caller-owned buffer, so frames and storage records
/// are encoded in place with no allocation of their own.
pub(crate) struct AppendTo<'a>(pub(crate) &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the payload for `envelope` (version byte + postcard) to `out`. On error `out`
/// is left as it was.
pub fn encode_payload(envelope: &Envelope, out: &mut Vec<u8>) -> Result<(), WireError> {
    encode_as(envelope, out)
}

/// A payload of `value`, encoded as an envelope (or a narrower type with the same
/// variant indices): the version byte, then postcard.
fn encode_as<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.push(PROTOCOL_VERSION);
    postcard::serialize_with_flavor(value, AppendTo(out)).map_err(|e| {
        out.truncate(start);
        WireError::Malformed(e)
    })
}

/// Decodes one payload. `payload_bytes_max` bounds its size.
pub fn decode_payload(payload: &[u8], payload_bytes_max: usize) -> Result<Envelope, WireError> {
    decode_as(payload, payload_bytes_max)
}

/// Decodes a payload as `T`: its size, version and trailing bytes checked.
fn decode_as<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    payload_bytes_max: usize,
) -> Result<T, WireError> {
    if payload.len() > payload_bytes_max {
        return Err(WireError::FrameTooLarge { size: payload.len(), max: payload_bytes_max });
    }
    let (&version, body) = payload.split_first().ok_or(WireError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// A type with no values: the envelope variants a client never sends or accepts.
#[derive(Serialize, Deserialize)]
enum Never {}

/// [`Envelope`] as a client sends it: the same variant indices, so the same bytes, with
/// only the variant a client uses (a device keeps the other variants' code out of its
/// flash).
#[derive(Serialize)]
enum RequestEnvelope<'a> {
    #[allow(dead_code)]
    Raft(Never),
    Request(&'a ClientRequest),
}

/// [`Envelope`] as a client reads it; the other variants fail to decode.
#[derive(Deserialize)]
enum ResponseEnvelope {
    #[allow(dead_code)]
    Raft(Never),
    #[allow(dead_code)]
    Request(Never),
    Response(ServerMessage),
    #[allow(dead_code)]
    PeerHello(Never),
}

/// Encodes `Envelope::Request(request)`: the bytes [`encode_payload`] writes for it.
pub fn encode_request(request: &ClientRequest, out: &mut Vec<u8>) -> Result<(), WireError> {
    encode_as(&RequestEnvelope::Request(request), out)
}

/// Decodes a payload a client receives, which must be an `Envelope::Response`: as
/// [`decode_payload`], with any other envelope [`WireError::Malformed`].
pub fn decode_response(payload: &[u8], payload_bytes_max: usize) -> Result<ServerMessage, WireError> {
    match decode_as(payload, payload_bytes_max)? {
        ResponseEnvelope::Response(m) => Ok(m),
        ResponseEnvelope::Raft(n) | ResponseEnvelope::Request(n) | ResponseEnvelope::PeerHello(n) => {
            match n {}
        }
    }
}

/// Appends a length-prefixed frame for `envelope` to `out`, encoding in place (no
/// intermediate buffer). Fails if the payload would exceed `frame_bytes_max` (so a sender
/// never emits a frame its peer must refuse); `out` is then left as it was.
pub fn encode_frame(envelope: &Envelope, frame_bytes_max: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    if let Err(e) = encode_payload(envelope, out) {
        out.truncate(start);
        return Err(e);
    }
    let size = out.len() - start - FRAME_HEADER_BYTES;
    let Some(len) = u32::try_from(size).ok().filter(|_| size <= frame_bytes_max) else {
        out.truncate(start);
        return Err(WireError::FrameTooLarge { size, max: frame_bytes_max });
    };
    out[start..start + FRAME_HEADER_BYTES].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Reads the length of the frame at the start of `input`, checking it against the limit.
/// `Ok(None)` means fewer than [`FRAME_HEADER_BYTES`] bytes are available yet.
pub fn peek_frame_len(input: &[u8], frame_bytes_max: usize) -> Result<Option<usize>, WireError> {
    let Some(header) = input.get(..FRAME_HEADER_BYTES) else {
        return Ok(None);
    };
    let mut len = [0u8; FRAME_HEADER_BYTES];
    len.copy_from_slice(header);
    let size = u32::from_le_bytes(len) as usize;
    if size > frame_bytes_max {
        return Err(WireError::FrameTooLarge { size, max: frame_bytes_max });
    }
    Ok(Some(size))
}

/// Decodes the frame at the start of `input`. Returns the envelope and the bytes consumed,
/// or `Ok(None)` if the frame is not complete yet. The declared length is checked against
/// `frame_bytes_max` before anything else, so a hostile length costs nothing.
pub fn decode_frame(input: &[u8], frame_bytes_max: usize) -> Result<Option<(Envelope, usize)>, WireError> {
    let Some(size) = peek_frame_len(input, frame_bytes_max)? else {
        return Ok(None);
    };
    let Some(payload) = input.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + size) else {
        return Ok(None);
    };
    let envelope = decode_payload(payload, frame_bytes_max)?;
    Ok(Some((envelope, FRAME_HEADER_BYTES + size)))
}

#[cfg(test)]
mod tests;
