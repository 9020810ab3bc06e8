//! The client role: the core's [`Client`] — or several, each with its own session — with
//! its endpoints reached through channels of the serial link, which the bridge dials.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use concord_core::client::{Client, ClientConfig, ClientEvent, Peer};
use concord_core::wire::link::{Link, LinkConfig, LinkEvent, LinkMsg};
use concord_core::wire::{decode_response, encode_request, ClientRequest};
use concord_core::Instant;

/// What the client host counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHostStats {
    /// Requests the link had no room for (the client resends them after its timeout).
    pub requests_dropped: u64,
    /// Payloads from the bridge that were not a server message.
    pub payloads_refused: u64,
}

/// Link channels reserved for each client of a [`ClientHost`]: endpoint `Peer(n)` of
/// the client in place `k`, the `g`-th to hold that place, is channel
/// `(g * CLIENTS_MAX + k) * CHANNELS_PER_CLIENT + n` — a client never gets a channel an
/// earlier client used, so no late answer for the earlier one reaches it. A client's
/// `endpoints_max` is held to this many.
pub const CHANNELS_PER_CLIENT: u32 = 64;

/// Clients one [`ClientHost`] carries at most (the first included).
pub const CLIENTS_MAX: usize = 8;

/// A client of a [`ClientHost`]: [`ClientId::FIRST`] is the one it was made with, the
/// others come from [`ClientHost::add_client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

impl ClientId {
    /// The client the host was made with; it lives as long as the host.
    pub const FIRST: Self = Self(0);
}

/// [`ClientHost::add_client`] found all [`CLIENTS_MAX`] places taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientsFull;

impl core::fmt::Display for ClientsFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "a serial line carries at most {CLIENTS_MAX} clients")
    }
}

/// One client, which holder of its place it is, and the channels it asked the bridge
/// to dial.
struct Slot {
    client: Client,
    generation: u32,
    dialed: BTreeSet<u32>,
}

impl Slot {
    fn new(mut cfg: ClientConfig, now: Instant, seed: u64, generation: u32) -> Self {
        cfg.endpoints_max = cfg.endpoints_max.min(CHANNELS_PER_CLIENT as usize);
        Self { client: Client::new(cfg, now, seed), generation, dialed: BTreeSet::new() }
    }

    /// The first channel of this client, in place `index`.
    fn base(&self, index: usize) -> u32 {
        let places = CLIENTS_MAX as u32;
        self.generation.wrapping_mul(places).wrapping_add(index as u32).wrapping_mul(CHANNELS_PER_CLIENT)
    }
}

/// Generations before channel numbers (32 bits) repeat.
const GENERATIONS: u32 = u32::MAX / (CLIENTS_MAX as u32 * CHANNELS_PER_CLIENT);

/// Concord clients on a serial line: one, or up to [`CLIENTS_MAX`] with sessions of
/// their own (a gateway acting for several devices). Endpoint `Peer(n)` of a core
/// [`Client`] is a channel of the link (see [`CHANNELS_PER_CLIENT`]): the first request
/// for it asks the bridge to dial the endpoint's address, and a channel the bridge closes
/// is a broken connection to that client.
pub struct ClientHost {
    slots: Vec<Option<Slot>>,
    /// How many clients each place has held.
    generations: Vec<u32>,
    link: Link,
    stats: ClientHostStats,
}

impl ClientHost {
    /// A client for `cfg` over a link with `link` limits; `epoch` must differ from the
    /// previous run's (see [`Link::new`]), `seed` seeds the client's randomness.
    pub fn new(cfg: ClientConfig, link: LinkConfig, epoch: u32, now: Instant, seed: u64) -> Self {
        Self {
            slots: alloc::vec![Some(Slot::new(cfg, now, seed, 0))],
            generations: alloc::vec![1],
            link: Link::new(link, epoch, now),
            stats: ClientHostStats::default(),
        }
    }

    /// The first client: start operations here (typed calls with [`Client::call`]),
    /// then [`ClientHost::step`].
    pub fn client(&mut self) -> &mut Client {
        match self.slots.first_mut() {
            Some(Some(slot)) => &mut slot.client,
            // `new` fills the first place and nothing empties it.
            _ => unreachable!("the first client lives as long as the host"),
        }
    }

    /// Adds a client with a session of its own; its events come from
    /// [`ClientHost::client_at`]`(id).poll_event()`.
    pub fn add_client(
        &mut self,
        cfg: ClientConfig,
        now: Instant,
        seed: u64,
    ) -> Result<ClientId, ClientsFull> {
        let free = self.slots.iter().position(Option::is_none);
        let index = match free {
            Some(i) => i,
            None if self.slots.len() < CLIENTS_MAX => {
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
            None => return Err(ClientsFull),
        };
        let generation = self.generations[index];
        self.generations[index] = (generation + 1) % GENERATIONS;
        self.slots[index] = Some(Slot::new(cfg, now, seed, generation));
        Ok(ClientId(index as u32))
    }

    /// Client `id`, if it is there.
    pub fn client_at(&mut self, id: ClientId) -> Option<&mut Client> {
        self.slots.get_mut(id.0 as usize).and_then(Option::as_mut).map(|s| &mut s.client)
    }

    /// Drops client `id` (not the first) and closes its channels, without closing its
    /// session: close it first ([`Client::close`]) to release what it holds at once, or
    /// the cluster expires it after its TTL, as it would a crashed device's.
    pub fn remove_client(&mut self, id: ClientId) {
        if id == ClientId::FIRST {
            return;
        }
        if let Some(slot) = self.slots.get_mut(id.0 as usize).and_then(Option::take) {
            for chan in slot.dialed {
                // A full queue leaves the channel to the bridge's idle handling.
                let _ = self.link.send(LinkMsg::Close { chan });
            }
        }
    }

    /// The serial link, for [`crate::serial`] to move its bytes.
    pub fn link(&mut self) -> &mut Link {
        &mut self.link
    }

    /// What the host counted.
    pub fn stats(&self) -> ClientHostStats {
        self.stats
    }

    /// Runs due timers, hands the link's messages to the clients and the clients'
    /// requests to the link. Call it after bytes moved, after starting an operation, and
    /// when [`ClientHost::poll_timeout`] is due. Bounded: the link's queues bound what it
    /// moves.
    pub fn step(&mut self, now: Instant) {
        if self.link.poll_timeout() <= now {
            self.link.handle_timeout(now);
        }
        for slot in self.slots.iter_mut().flatten() {
            if slot.client.poll_timeout() <= now {
                slot.client.handle_timeout(now);
            }
        }
        while let Some(event) = self.link.poll_event() {
            match event {
                LinkEvent::Message(msg) => self.on_link_message(now, msg),
                LinkEvent::PeerRestarted => {
                    // The bridge restarted: every connection it held for us is gone.
                    for slot in self.slots.iter_mut().flatten() {
                        for chan in core::mem::take(&mut slot.dialed) {
                            slot.client.handle_disconnect(now, Peer(chan % CHANNELS_PER_CLIENT));
                        }
                    }
                }
            }
        }
        for index in 0..self.slots.len() {
            while let Some((peer, req)) = self.slots[index].as_mut().and_then(|s| s.client.poll_transmit()) {
                self.send(index, peer, &req);
            }
        }
    }

    /// The first client's next result, signal or notice.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.client().poll_event()
    }

    /// When [`ClientHost::step`] is due even if no byte arrives.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.slots
            .iter()
            .flatten()
            .map(|s| s.client.poll_timeout())
            .fold(self.link.poll_timeout(), Instant::min)
    }

    /// The client that owns channel `chan`, and the endpoint it is for that client;
    /// `None` for a channel of a client that is gone.
    fn route(&mut self, chan: u32) -> Option<(&mut Slot, Peer)> {
        let index = (chan / CHANNELS_PER_CLIENT) as usize % CLIENTS_MAX;
        let slot = self.slots.get_mut(index)?.as_mut()?;
        let peer = Peer(chan % CHANNELS_PER_CLIENT);
        (slot.base(index) == chan - peer.0).then_some((slot, peer))
    }

    fn on_link_message(&mut self, now: Instant, msg: LinkMsg) {
        match msg {
            LinkMsg::Payload { chan, bytes } => {
                let decoded = decode_response(&bytes, self.link.config().frame_bytes_max);
                match (decoded, self.route(chan)) {
                    (Ok(m), Some((slot, peer))) => slot.client.handle_message(now, peer, m),
                    _ => self.stats.payloads_refused += 1,
                }
            }
            LinkMsg::Close { chan } => {
                if let Some((slot, peer)) = self.route(chan) {
                    if slot.dialed.remove(&chan) {
                        slot.client.handle_disconnect(now, peer);
                    }
                }
            }
            // The bridge dials; it is never dialled.
            LinkMsg::Dial { chan, .. } => {
                let _ = self.link.send(LinkMsg::Close { chan });
            }
        }
    }

    fn send(&mut self, index: usize, peer: Peer, request: &ClientRequest) {
        let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else { return };
        let chan = slot.base(index) + peer.0;
        if !slot.dialed.contains(&chan) {
            let addr = slot.client.peer_addr(peer).map(String::from).unwrap_or_default();
            if self.link.send(LinkMsg::Dial { chan, addr }).is_err() {
                self.stats.requests_dropped += 1;
                return;
            }
            slot.dialed.insert(chan);
        }
        let mut bytes = Vec::new();
        let sent = encode_request(request, &mut bytes)
            .ok()
            .and_then(|()| self.link.send(LinkMsg::Payload { chan, bytes }).ok());
        if sent.is_none() {
            self.stats.requests_dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::client::Endpoint;
    use concord_core::GroupId;

    fn cfg() -> ClientConfig {
        ClientConfig::new(GroupId(1), alloc::vec![Endpoint::addr("a:1")])
    }

    /// A client in a place another client held gets channels of its own: what arrives on
    /// the earlier client's channels reaches nobody.
    #[test]
    fn a_reused_place_gets_new_channels() {
        let mut host = ClientHost::new(cfg(), LinkConfig::default(), 1, Instant::ZERO, 1);
        let b = host.add_client(cfg(), Instant::ZERO, 2).unwrap();
        let old = host.slots[b.0 as usize].as_ref().unwrap().base(b.0 as usize);
        assert!(host.route(old).is_some());
        host.remove_client(b);
        assert!(host.route(old).is_none(), "a gone client's channel routes nowhere");
        assert_eq!(host.add_client(cfg(), Instant::ZERO, 3), Ok(b), "the place is reused");
        let new = host.slots[b.0 as usize].as_ref().unwrap().base(b.0 as usize);
        assert_ne!(new, old);
        assert!(host.route(old).is_none(), "the earlier client's channels stay dead");
        assert!(host.route(new + 2).is_some_and(|(_, p)| p == Peer(2)));
        // The first client keeps channels 0..64.
        assert!(host.route(5).is_some_and(|(_, p)| p == Peer(5)));
    }
}
