//! A reliable link over a serial line: the protocol a microcontroller and the `concord
//! bridge` speak, sans-IO like the rest of the core.
//!
//! A serial line loses, corrupts and (through a noisy converter) repeats bytes, and
//! either end may restart at any moment. The link turns it into an ordered, lossless
//! stream of [`LinkMsg`]s, so that line noise costs a retransmission, never a session:
//!
//! - Each [`LinkFrame`] is postcard-encoded, closed by a CRC-32 and COBS-framed
//!   ([`encode_cobs_raw`], [`CobsDecoder::push_raw`]): a damaged frame is dropped whole
//!   and the decoder resynchronises at the next zero byte.
//! - Data frames carry a 16-bit sequence number and the sender's cumulative
//!   acknowledgement (go-back-N): the receiver takes only the next frame in order, and
//!   the sender resends every unacknowledged frame after `retransmit_us` without
//!   progress. At most `window_frames` frames are unacknowledged, so sequence numbers
//!   never wrap into ambiguity.
//! - Each end opens with a [`LinkFrame::Hello`] carrying an *epoch* it picks and the
//!   peer's epoch if it heard one, resent until acknowledged; it sends data only after
//!   that. A hello means the peer restarted when its epoch changed, or when it no longer
//!   knows ours although data flowed since its last hello (a board that restarts with
//!   the same epoch). Both directions then start again from sequence 0, what was in
//!   flight is dropped, and the host is told ([`LinkEvent::PeerRestarted`]) so that it
//!   can drop what it kept for the old peer. A hello resent because its acknowledgement
//!   was lost names our epoch, and a repeated one with nothing in between changes
//!   nothing.
//! - A full receive queue is flow control: the frame is not acknowledged, and arrives
//!   again later.
//!
//! On top of the link, [`LinkMsg`] multiplexes *channels*: the microcontroller asks the
//! bridge to dial an address (a node's client or peer port) and then exchanges payloads
//! on that channel; either side closes it. Payloads are Concord's wire payloads
//! ([`encode_payload`](super::encode_payload)), so the bridge forwards them without
//! decoding them.
//!
//! ```
//! use concord_core::wire::link::{Link, LinkConfig, LinkEvent, LinkMsg};
//! use concord_core::Instant;
//!
//! let now = Instant::ZERO;
//! let (mut mcu, mut bridge) = (Link::new(LinkConfig::default(), 1, now), Link::new(LinkConfig::default(), 2, now));
//! mcu.send(LinkMsg::Dial { chan: 1, addr: "127.0.0.1:7001".into() })?;
//! let mut line = Vec::new();
//! for _ in 0..4 {
//!     // Timers first (the hellos), then each end writes what it has and the other reads it.
//!     mcu.handle_timeout(now);
//!     bridge.handle_timeout(now);
//!     line.clear();
//!     line.extend_from_slice(mcu.transmit());
//!     mcu.consumed(line.len());
//!     bridge.handle_bytes(now, &line);
//!     line.clear();
//!     line.extend_from_slice(bridge.transmit());
//!     bridge.consumed(line.len());
//!     mcu.handle_bytes(now, &line);
//! }
//! assert_eq!(bridge.poll_event(), Some(LinkEvent::Message(LinkMsg::Dial { chan: 1, addr: "127.0.0.1:7001".into() })));
//! # Ok::<(), concord_core::wire::link::LinkError>(())
//! ```

use super::{encode_cobs_raw, AppendTo, CobsDecoder, WireError, COBS_CRC_BYTES};
use crate::time::Instant;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// A frame on the line. Generic over the message so that a frame is encoded from a
/// borrowed message (`LinkFrame<&LinkMsg>`) and decoded into an owned one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkFrame<M> {
    /// Opens (or reopens) the sender's direction: the sender's epoch, chosen at start,
    /// and the receiver's, if the sender has heard its hello.
    Hello {
        /// Chosen by the sender when it started.
        epoch: u32,
        /// The receiver's epoch as the sender knows it.
        known: Option<u32>,
    },
    /// Acknowledges the hello of epoch `epoch`.
    HelloAck {
        /// The epoch acknowledged.
        epoch: u32,
    },
    /// A message, in order.
    Data {
        /// Its sequence number.
        seq: u16,
        /// The next sequence number the sender expects from the receiver.
        ack: u16,
        /// The message.
        msg: M,
    },
    /// A bare acknowledgement: the next sequence number the sender expects.
    Ack {
        /// The next sequence number expected.
        ack: u16,
    },
}

/// What the link carries: channels the microcontroller opens through the bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkMsg {
    /// Open channel `chan` to `addr` (`host:port`): sent by the microcontroller.
    Dial {
        /// Chosen by the microcontroller, unique among its open channels.
        chan: u32,
        /// Where the bridge connects.
        addr: String,
    },
    /// Channel `chan` is closed (the connection failed or ended, or is no longer wanted).
    Close {
        /// The channel.
        chan: u32,
    },
    /// One wire payload on channel `chan`.
    Payload {
        /// The channel.
        chan: u32,
        /// A Concord wire payload (version byte + postcard envelope).
        bytes: Vec<u8>,
    },
}

impl LinkMsg {
    /// Bytes this message may take in a frame, an upper bound.
    fn size_bound(&self) -> usize {
        LINK_HEADER_BYTES_MAX
            + match self {
                Self::Dial { addr, .. } => addr.len(),
                Self::Close { .. } => 0,
                Self::Payload { bytes, .. } => bytes.len(),
            }
    }
}

/// What the link hands its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A message from the peer, in order, exactly once.
    Message(LinkMsg),
    /// The peer restarted: every channel it knew of is gone, and what was queued for it
    /// was dropped.
    PeerRestarted,
}

/// Why the link refused a message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// `send_queue_max` messages wait already: try again after the peer acknowledged some.
    QueueFull {
        /// The limit.
        max: usize,
    },
    /// The message would not fit in one frame.
    TooLarge {
        /// Its size bound, bytes.
        size: usize,
        /// The frame limit, bytes.
        max: usize,
    },
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull { max } => write!(f, "{max} messages wait for the serial link already"),
            Self::TooLarge { size, max } => {
                write!(f, "a message of up to {size} bytes does not fit a serial frame of {max}")
            }
        }
    }
}

impl core::error::Error for LinkError {}

/// Limits and timing of a link. Both ends may differ, except that each end's
/// `frame_bytes_max` must take the largest frame the other sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// Largest frame (postcard bytes before CRC and COBS) sent or accepted.
    pub frame_bytes_max: usize,
    /// Data frames sent and not yet acknowledged (at most 1024).
    pub window_frames: usize,
    /// Messages waiting for room in the window; one more is refused.
    pub send_queue_max: usize,
    /// Messages received and not yet taken by the host; further frames are left
    /// unacknowledged until it takes some.
    pub recv_queue_max: usize,
    /// A hello, or the oldest unacknowledged frame, is resent after this long.
    pub retransmit_us: u64,
}

/// Bytes the link adds around a payload in a frame (tag, channel, sequence numbers,
/// length), an upper bound.
pub const LINK_HEADER_BYTES_MAX: usize = 24;

impl Default for LinkConfig {
    /// Frames that carry a payload of the smallest frame the core allows
    /// ([`FRAME_BYTES_MIN`](crate::setup::FRAME_BYTES_MIN)), a window of 4, 16 messages
    /// queued each way, 200 ms retransmission.
    fn default() -> Self {
        Self {
            frame_bytes_max: crate::setup::FRAME_BYTES_MIN + LINK_HEADER_BYTES_MAX,
            window_frames: 4,
            send_queue_max: 16,
            recv_queue_max: 16,
            retransmit_us: 200_000,
        }
    }
}

/// Largest window: sequence numbers are 16 bits, and go-back-N needs the window to be
/// far below their range.
pub const WINDOW_FRAMES_MAX: usize = 1024;

/// What the link counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames refused: bad COBS, bad CRC, too large, undecodable.
    pub frames_refused: u64,
    /// Data frames received out of order or twice (dropped).
    pub frames_duplicate: u64,
    /// Data frames sent again after a timeout.
    pub frames_resent: u64,
    /// Data frames the peer took, in order.
    pub messages_received: u64,
    /// Times the peer restarted.
    pub peer_restarts: u64,
}

/// One end of a reliable serial link. Sans-IO: bytes read from the line go in with
/// [`Link::handle_bytes`], bytes to write come out of [`Link::transmit`], and
/// [`Link::handle_timeout`] runs when [`Link::poll_timeout`] is due. Every call does
/// bounded work, and every buffer is bounded by the [`LinkConfig`].
#[derive(Debug)]
pub struct Link {
    cfg: LinkConfig,
    /// The latest time a call passed in.
    now: Instant,
    epoch: u32,
    /// Our hello was acknowledged: data may flow to the peer.
    hello_acked: bool,
    hello_due: Instant,
    /// The peer's epoch, once it said hello.
    peer_epoch: Option<u32>,
    /// Data went either way since the peer's last hello.
    traffic_since_hello: bool,
    next_seq: u16,
    /// Sent, not yet acknowledged; the front has the oldest sequence number.
    unacked: VecDeque<(u16, LinkMsg)>,
    queued: VecDeque<LinkMsg>,
    resend_at: Option<Instant>,
    expected: u16,
    ack_due: bool,
    received: VecDeque<LinkEvent>,
    decoder: CobsDecoder,
    out: Vec<u8>,
    out_start: usize,
    scratch: Vec<u8>,
    stats: LinkStats,
}

impl Link {
    /// A link end that starts now with `epoch` (any value that differs from the one its
    /// previous run used: a boot counter, a clock reading, a random draw).
    pub fn new(mut cfg: LinkConfig, epoch: u32, now: Instant) -> Self {
        cfg.window_frames = cfg.window_frames.clamp(1, WINDOW_FRAMES_MAX);
        let decoder = CobsDecoder::new(cfg.frame_bytes_max);
        Self {
            cfg,
            now,
            epoch,
            hello_acked: false,
            hello_due: now,
            peer_epoch: None,
            traffic_since_hello: false,
            next_seq: 0,
            unacked: VecDeque::new(),
            queued: VecDeque::new(),
            resend_at: None,
            expected: 0,
            ack_due: false,
            received: VecDeque::new(),
            decoder,
            out: Vec::new(),
            out_start: 0,
            scratch: Vec::new(),
            stats: LinkStats::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Whether both hellos went through: messages flow both ways.
    pub fn is_up(&self) -> bool {
        self.hello_acked && self.peer_epoch.is_some()
    }

    /// What the link counted.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Messages accepted and not yet acknowledged by the peer.
    pub fn backlog(&self) -> usize {
        self.unacked.len() + self.queued.len()
    }

    /// Queues `msg` for the peer; it goes out as soon as the window has room (within this
    /// call if it has). Refused when `send_queue_max` messages wait, or when the message
    /// cannot fit a frame.
    pub fn send(&mut self, msg: LinkMsg) -> Result<(), LinkError> {
        let size = msg.size_bound();
        if size > self.cfg.frame_bytes_max {
            return Err(LinkError::TooLarge { size, max: self.cfg.frame_bytes_max });
        }
        if self.queued.len() >= self.cfg.send_queue_max {
            return Err(LinkError::QueueFull { max: self.cfg.send_queue_max });
        }
        self.queued.push_back(msg);
        self.fill_window();
        Ok(())
    }

    /// Bytes read from the line. Frames they complete are checked and taken in; the
    /// answers they call for (acknowledgements, data the window now lets out) are queued
    /// for [`Link::transmit`].
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.now = self.now.max(now);
        let now = self.now;
        let mut decoder = core::mem::replace(&mut self.decoder, CobsDecoder::new(0));
        decoder.push_raw(bytes, |raw| {
            let frame = raw.and_then(|raw| {
                let (frame, rest) =
                    postcard::take_from_bytes::<LinkFrame<LinkMsg>>(raw).map_err(WireError::Malformed)?;
                if rest.is_empty() {
                    Ok(frame)
                } else {
                    Err(WireError::TrailingBytes(rest.len()))
                }
            });
            match frame {
                Ok(frame) => self.on_frame(now, frame),
                Err(_) => self.stats.frames_refused += 1,
            }
        });
        self.decoder = decoder;
        if self.ack_due {
            self.ack_due = false;
            self.emit_control(&LinkFrame::Ack { ack: self.expected });
        }
    }

    /// Time passed: resend the hello or the unacknowledged frames when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let now = self.now;
        if !self.hello_acked && self.hello_due <= now {
            self.send_hello(now);
        }
        if self.resend_at.is_some_and(|at| at <= now) {
            // Bytes not even written yet make more copies pointless.
            if self.pending_out().is_empty() {
                for i in 0..self.unacked.len() {
                    self.emit_data(i);
                    self.stats.frames_resent += 1;
                }
            }
            self.resend_at = Some(now.add_us(self.cfg.retransmit_us));
        }
    }

    /// When to call [`Link::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let hello = if self.hello_acked { Instant::MAX } else { self.hello_due };
        hello.min(self.resend_at.unwrap_or(Instant::MAX))
    }

    /// The next message or notice from the peer. Filled by [`Link::handle_bytes`].
    #[must_use]
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.received.pop_front()
    }

    /// Bytes waiting to be written to the line; report what was written with
    /// [`Link::consumed`].
    #[must_use]
    pub fn transmit(&self) -> &[u8] {
        self.pending_out()
    }

    /// `n` bytes of [`Link::transmit`] were written.
    pub fn consumed(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        }
    }

    fn pending_out(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// The most bytes waiting to be written: a window of data frames and a few control
    /// frames. Beyond it, control frames are skipped (they are sent again) and resends
    /// wait.
    fn out_bytes_max(&self) -> usize {
        let frame = cobs::max_encoding_length(self.cfg.frame_bytes_max + COBS_CRC_BYTES) + 1;
        frame.saturating_mul(self.cfg.window_frames + 4)
    }

    fn on_frame(&mut self, now: Instant, frame: LinkFrame<LinkMsg>) {
        match frame {
            LinkFrame::Hello { epoch, known } => self.on_hello(now, epoch, known),
            LinkFrame::HelloAck { epoch } => {
                if epoch == self.epoch && !self.hello_acked {
                    self.hello_acked = true;
                    self.fill_window();
                }
            }
            LinkFrame::Data { seq, ack, msg } => {
                if self.peer_epoch.is_none() {
                    // Data from a peer that has not said hello to us (we restarted): its
                    // hello will follow ours; this frame comes again.
                    return;
                }
                self.traffic_since_hello = true;
                self.on_ack(now, ack);
                self.ack_due = true;
                if seq != self.expected {
                    self.stats.frames_duplicate += 1;
                } else if self.received.len() < self.cfg.recv_queue_max {
                    self.expected = self.expected.wrapping_add(1);
                    self.stats.messages_received += 1;
                    self.received.push_back(LinkEvent::Message(msg));
                }
            }
            LinkFrame::Ack { ack } => {
                if self.peer_epoch.is_some() {
                    self.on_ack(now, ack);
                }
            }
        }
    }

    fn on_hello(&mut self, now: Instant, epoch: u32, known: Option<u32>) {
        let same_peer = self.peer_epoch == Some(epoch)
            && (known == Some(self.epoch) || (known.is_none() && !self.traffic_since_hello));
        if !same_peer {
            if self.peer_epoch.is_some() {
                // A new peer: nothing in flight means anything to it, and it knows
                // neither our epoch nor our sequence numbers.
                self.stats.peer_restarts += 1;
                self.next_seq = 0;
                self.expected = 0;
                self.unacked.clear();
                self.queued.clear();
                self.resend_at = None;
                self.received.push_back(LinkEvent::PeerRestarted);
                self.hello_acked = false;
                self.hello_due = now;
            }
            self.peer_epoch = Some(epoch);
            self.traffic_since_hello = false;
        }
        self.emit_control(&LinkFrame::HelloAck { epoch });
        if !self.hello_acked && self.hello_due <= now {
            self.send_hello(now);
        }
        self.fill_window();
    }

    fn send_hello(&mut self, now: Instant) {
        self.hello_due = now.add_us(self.cfg.retransmit_us);
        self.emit_control(&LinkFrame::Hello { epoch: self.epoch, known: self.peer_epoch });
    }

    /// The peer expects `ack` next: everything before it arrived.
    fn on_ack(&mut self, now: Instant, ack: u16) {
        let Some(&(base, _)) = self.unacked.front() else { return };
        let n = usize::from(ack.wrapping_sub(base));
        if n == 0 || n > self.unacked.len() {
            return;
        }
        self.unacked.drain(..n);
        self.resend_at = (!self.unacked.is_empty()).then(|| now.add_us(self.cfg.retransmit_us));
        self.fill_window();
    }

    /// Moves queued messages into the window while it has room, and sends them.
    fn fill_window(&mut self) {
        if !self.is_up() {
            return;
        }
        while self.unacked.len() < self.cfg.window_frames {
            let Some(msg) = self.queued.pop_front() else { break };
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            self.unacked.push_back((seq, msg));
            self.traffic_since_hello = true;
            self.emit_data(self.unacked.len() - 1);
            if self.resend_at.is_none() {
                self.resend_at = Some(self.now.add_us(self.cfg.retransmit_us));
            }
        }
    }

    /// Writes the unacknowledged frame at `i` of the window, with the current ack.
    fn emit_data(&mut self, i: usize) {
        let Some((seq, msg)) = self.unacked.get(i) else { return };
        let frame = LinkFrame::Data { seq: *seq, ack: self.expected, msg };
        self.scratch.clear();
        if postcard::serialize_with_flavor(&frame, AppendTo(&mut self.scratch)).is_ok()
            && encode_cobs_raw(&self.scratch, self.cfg.frame_bytes_max, &mut self.out).is_ok()
        {
            // The peer learnt our ack from this frame.
            self.ack_due = false;
        }
    }

    /// Writes a control frame unless the output is full (control frames are repeated by
    /// whatever needs them).
    fn emit_control(&mut self, frame: &LinkFrame<&LinkMsg>) {
        if self.pending_out().len() >= self.out_bytes_max() {
            return;
        }
        self.scratch.clear();
        if postcard::serialize_with_flavor(frame, AppendTo(&mut self.scratch)).is_ok() {
            let _ = encode_cobs_raw(&self.scratch, self.cfg.frame_bytes_max, &mut self.out);
        }
    }
}

#[cfg(test)]
mod tests;
