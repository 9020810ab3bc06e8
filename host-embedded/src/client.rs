//! The client role: the core's [`Client`] with its endpoints reached through channels of
//! the serial link, which the bridge dials.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use concord_core::client::{Client, ClientConfig, ClientEvent, Peer};
use concord_core::wire::link::{Link, LinkConfig, LinkEvent, LinkMsg};
use concord_core::wire::{decode_payload, encode_payload, Envelope};
use concord_core::Instant;

/// What the client host counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHostStats {
    /// Requests the link had no room for (the client resends them after its timeout).
    pub requests_dropped: u64,
    /// Payloads from the bridge that were not a server message.
    pub payloads_refused: u64,
}

/// A Concord client on a serial line. Endpoint `Peer(n)` of the core's client is channel
/// `n` of the link: the first request for it asks the bridge to dial the endpoint's
/// address, and a channel the bridge closes is a broken connection to the client.
pub struct ClientHost {
    client: Client,
    link: Link,
    dialed: BTreeSet<u32>,
    stats: ClientHostStats,
}

impl ClientHost {
    /// A client for `cfg` over a link with `link` limits; `epoch` must differ from the
    /// previous run's (see [`Link::new`]), `seed` seeds the client's randomness.
    pub fn new(cfg: ClientConfig, link: LinkConfig, epoch: u32, now: Instant, seed: u64) -> Self {
        Self {
            client: Client::new(cfg, now, seed),
            link: Link::new(link, epoch, now),
            dialed: BTreeSet::new(),
            stats: ClientHostStats::default(),
        }
    }

    /// The core's client: start operations here (typed calls with
    /// [`Client::call`]), then [`ClientHost::step`].
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The serial link, for [`crate::serial`] to move its bytes.
    pub fn link(&mut self) -> &mut Link {
        &mut self.link
    }

    /// What the host counted.
    pub fn stats(&self) -> ClientHostStats {
        self.stats
    }

    /// Runs due timers, hands the link's messages to the client and the client's requests
    /// to the link. Call it after bytes moved, after starting an operation, and when
    /// [`ClientHost::poll_timeout`] is due. Bounded: the link's queues bound what it
    /// moves.
    pub fn step(&mut self, now: Instant) {
        if self.link.poll_timeout() <= now {
            self.link.handle_timeout(now);
        }
        if self.client.poll_timeout() <= now {
            self.client.handle_timeout(now);
        }
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Message(msg) => self.on_link_message(now, msg),
                LinkEvent::PeerRestarted => {
                    // The bridge restarted: every connection it held for us is gone.
                    for chan in core::mem::take(&mut self.dialed) {
                        self.client.handle_disconnect(now, Peer(chan));
                    }
                }
            }
        }
        while let Some((peer, req)) = self.client.poll_transmit() {
            self.send(peer, &Envelope::Request(req));
        }
    }

    /// The next result, signal or notice of the client.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.client.poll_event()
    }

    /// When [`ClientHost::step`] is due even if no byte arrives.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.client.poll_timeout().min(self.link.poll_timeout())
    }

    fn on_link_message(&mut self, now: Instant, msg: LinkMsg) {
        match msg {
            LinkMsg::Payload { chan, bytes } => {
                match decode_payload(&bytes, self.link.config().frame_bytes_max) {
                    Ok(Envelope::Response(m)) => self.client.handle_message(now, Peer(chan), m),
                    _ => self.stats.payloads_refused += 1,
                }
            }
            LinkMsg::Close { chan } => {
                if self.dialed.remove(&chan) {
                    self.client.handle_disconnect(now, Peer(chan));
                }
            }
            // The bridge dials; it is never dialled.
            LinkMsg::Dial { chan, .. } => {
                let _ = self.link.send(LinkMsg::Close { chan });
            }
        }
    }

    fn send(&mut self, peer: Peer, envelope: &Envelope) {
        if !self.dialed.contains(&peer.0) {
            let addr = self.client.peer_addr(peer).map(String::from).unwrap_or_default();
            if self.link.send(LinkMsg::Dial { chan: peer.0, addr }).is_err() {
                self.stats.requests_dropped += 1;
                return;
            }
            self.dialed.insert(peer.0);
        }
        let mut bytes = Vec::new();
        let sent = encode_payload(envelope, &mut bytes)
            .ok()
            .and_then(|()| self.link.send(LinkMsg::Payload { chan: peer.0, bytes }).ok());
        if sent.is_none() {
            self.stats.requests_dropped += 1;
        }
    }
}
