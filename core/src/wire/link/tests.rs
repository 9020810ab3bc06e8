use super::*;
use alloc::vec;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// What a stretch of line does to the bytes crossing it.
#[derive(Clone, Copy, Default)]
struct Noise {
    /// Per byte, out of 10 000: flipped bits, dropped, doubled.
    flip: u64,
    drop: u64,
    dup: u64,
    /// Per write, out of 10 000: the whole write repeated (a duplicated frame).
    repeat: u64,
}

struct Line {
    rng: Xoshiro256PlusPlus,
    noise: Noise,
}

impl Line {
    fn new(seed: u64, noise: Noise) -> Self {
        Self { rng: Xoshiro256PlusPlus::seed_from_u64(seed), noise }
    }

    fn chance(&mut self, per_10k: u64) -> bool {
        self.rng.next_u64() % 10_000 < per_10k
    }

    fn carry(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.chance(self.noise.drop) {
                continue;
            }
            let b = if self.chance(self.noise.flip) { b ^ (1 << (self.rng.next_u64() % 8)) } else { b };
            out.push(b);
            if self.chance(self.noise.dup) {
                out.push(b);
            }
        }
        if self.chance(self.noise.repeat) {
            let again = out.clone();
            out.extend_from_slice(&again);
        }
        out
    }
}

/// Moves bytes both ways and runs due timers, `rounds` times, 10 ms apart; returns the
/// messages each end received.
fn pump(
    a: &mut Link,
    b: &mut Link,
    lines: &mut (Line, Line),
    now: &mut Instant,
    rounds: usize,
) -> (Vec<LinkEvent>, Vec<LinkEvent>) {
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        *now = now.add_us(10_000);
        a.handle_timeout(*now);
        b.handle_timeout(*now);
        let bytes = a.transmit().to_vec();
        a.consumed(bytes.len());
        b.handle_bytes(*now, &lines.0.carry(&bytes));
        let bytes = b.transmit().to_vec();
        b.consumed(bytes.len());
        a.handle_bytes(*now, &lines.1.carry(&bytes));
        got_a.extend(core::iter::from_fn(|| a.poll_event()));
        got_b.extend(core::iter::from_fn(|| b.poll_event()));
    }
    (got_a, got_b)
}

fn payload(chan: u32, n: usize) -> LinkMsg {
    LinkMsg::Payload { chan, bytes: vec![(n % 251) as u8; n % 300] }
}

fn clean() -> (Line, Line) {
    (Line::new(1, Noise::default()), Line::new(2, Noise::default()))
}

#[test]
fn messages_flow_both_ways_in_order_once_both_hellos_went_through() {
    let mut now = Instant::ZERO;
    let (mut a, mut b) =
        (Link::new(LinkConfig::default(), 10, now), Link::new(LinkConfig::default(), 20, now));
    a.send(payload(1, 1)).unwrap();
    assert!(!a.is_up());
    let (ga, gb) = pump(&mut a, &mut b, &mut clean(), &mut now, 5);
    assert!(a.is_up() && b.is_up());
    assert!(ga.is_empty());
    assert_eq!(gb, vec![LinkEvent::Message(payload(1, 1))]);
    for n in 0..40 {
        a.send(payload(2, n)).unwrap_or_else(|_| panic!("room for {n}"));
        b.send(payload(3, n)).unwrap();
        let (ga, gb) = pump(&mut a, &mut b, &mut clean(), &mut now, 1);
        assert_eq!(ga, vec![LinkEvent::Message(payload(3, n))]);
        assert_eq!(gb, vec![LinkEvent::Message(payload(2, n))]);
    }
    pump(&mut a, &mut b, &mut clean(), &mut now, 1);
    assert_eq!(a.backlog() + b.backlog(), 0, "everything acknowledged");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.frames_resent, sb.frames_resent, sa.frames_refused, sb.frames_refused), (0, 0, 0, 0));
    assert_eq!((sa.messages_received, sb.messages_received), (40, 41));
}

/// Every message arrives once, in order and intact, through corruption, dropped and
/// doubled bytes and repeated frames; the damage shows in the counters.
#[test]
fn a_noisy_line_costs_retransmissions_not_messages() {
    let noise = Noise { flip: 20, drop: 20, dup: 20, repeat: 1_000 };
    for seed in 0..8u64 {
        let mut now = Instant::ZERO;
        let cfg = LinkConfig { retransmit_us: 50_000, ..LinkConfig::default() };
        let (mut a, mut b) = (Link::new(cfg.clone(), 1, now), Link::new(cfg, 2, now));
        let mut lines = (Line::new(seed * 2, noise), Line::new(seed * 2 + 1, noise));
        let total = 150;
        let (mut sent, mut got_a, mut got_b) = (0, Vec::new(), Vec::new());
        for _ in 0..20_000 {
            while sent < total && a.backlog().max(b.backlog()) < 8 {
                a.send(payload(1, sent)).unwrap();
                b.send(payload(2, sent)).unwrap();
                sent += 1;
            }
            let (ga, gb) = pump(&mut a, &mut b, &mut lines, &mut now, 1);
            got_a.extend(ga);
            got_b.extend(gb);
            if got_a.len() == total && got_b.len() == total {
                break;
            }
        }
        let want = |chan| (0..total).map(|n| LinkEvent::Message(payload(chan, n))).collect::<Vec<_>>();
        // (Compared without printing 150 payloads on failure.)
        let first_wrong = |got: &[LinkEvent], want: &[LinkEvent]| {
            (got.len() != want.len() || got != want)
                .then(|| got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len())))
        };
        assert_eq!(first_wrong(&got_b, &want(1)), None, "seed {seed}: {} of {total}", got_b.len());
        assert_eq!(first_wrong(&got_a, &want(2)), None, "seed {seed}: {} of {total}", got_a.len());
        let (sa, sb) = (a.stats(), b.stats());
        assert!(sa.frames_refused + sb.frames_refused > 0, "seed {seed}: the noise damaged frames");
        assert!(sa.frames_resent + sb.frames_resent > 0, "seed {seed}: and cost resends");
        assert_eq!(sa.peer_restarts + sb.peer_restarts, 0, "seed {seed}: noise is not a restart");
    }
}

#[test]
fn a_burst_of_noise_is_skipped_and_the_next_frame_is_taken() {
    let mut now = Instant::ZERO;
    let (mut a, mut b) = (Link::new(LinkConfig::default(), 1, now), Link::new(LinkConfig::default(), 2, now));
    pump(&mut a, &mut b, &mut clean(), &mut now, 3);
    // 2 KiB of garbage with and without zero bytes, then a frame.
    let garbage: Vec<u8> = (0..2048u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    b.handle_bytes(now, &garbage);
    b.handle_bytes(now, &[0xff; 9000]);
    let refused = b.stats().frames_refused;
    assert!(refused > 0);
    a.send(payload(1, 7)).unwrap();
    // The frame that follows the noise may be taken as its end: it is resent.
    let (_, gb) = pump(&mut a, &mut b, &mut clean(), &mut now, 30);
    assert_eq!(gb, vec![LinkEvent::Message(payload(1, 7))]);
}

#[test]
fn a_repeated_hello_with_nothing_in_between_is_not_a_restart() {
    let mut now = Instant::ZERO;
    let (mut a, mut b) = (Link::new(LinkConfig::default(), 1, now), Link::new(LinkConfig::default(), 2, now));
    a.handle_timeout(now);
    let hello = a.transmit().to_vec();
    b.handle_bytes(now, &hello);
    b.handle_bytes(now, &hello);
    let (_, gb) = pump(&mut a, &mut b, &mut clean(), &mut now, 3);
    assert!(gb.is_empty());
    assert_eq!(b.stats().peer_restarts, 0);
}

#[test]
fn a_restarted_peer_is_reported_and_both_directions_start_again() {
    for same_epoch in [false, true] {
        let mut now = Instant::ZERO;
        let (mut a, mut b) =
            (Link::new(LinkConfig::default(), 1, now), Link::new(LinkConfig::default(), 2, now));
        for n in 0..5 {
            a.send(payload(1, n)).unwrap();
            b.send(payload(2, n)).unwrap();
        }
        pump(&mut a, &mut b, &mut clean(), &mut now, 5);
        // `a` restarts (with the same epoch too: a board with no entropy and no storage).
        let epoch = if same_epoch { 1 } else { 3 };
        let mut a = Link::new(LinkConfig::default(), epoch, now);
        b.send(payload(2, 99)).unwrap_or(());
        a.send(payload(1, 100)).unwrap();
        let (ga, gb) = pump(&mut a, &mut b, &mut clean(), &mut now, 10);
        assert_eq!(gb, vec![LinkEvent::PeerRestarted, LinkEvent::Message(payload(1, 100))], "{same_epoch}");
        // What `b` queued for the old `a` was dropped; the new `a` gets what follows.
        assert!(ga.is_empty(), "{same_epoch}: {ga:?}");
        b.send(payload(2, 101)).unwrap();
        let (ga, _) = pump(&mut a, &mut b, &mut clean(), &mut now, 3);
        assert_eq!(ga, vec![LinkEvent::Message(payload(2, 101))]);
    }
}

#[test]
fn a_full_receive_queue_holds_frames_back_until_the_host_takes_some() {
    let mut now = Instant::ZERO;
    let cfg = LinkConfig { recv_queue_max: 2, retransmit_us: 20_000, ..LinkConfig::default() };
    let (mut a, mut b) = (Link::new(cfg.clone(), 1, now), Link::new(cfg, 2, now));
    pump(&mut a, &mut b, &mut clean(), &mut now, 3);
    for n in 0..6 {
        a.send(payload(1, n)).unwrap();
    }
    // Deliver without taking `b`'s events.
    let mut lines = clean();
    for _ in 0..10 {
        now = now.add_us(10_000);
        a.handle_timeout(now);
        b.handle_timeout(now);
        let bytes = a.transmit().to_vec();
        a.consumed(bytes.len());
        b.handle_bytes(now, &lines.0.carry(&bytes));
        let bytes = b.transmit().to_vec();
        b.consumed(bytes.len());
        a.handle_bytes(now, &lines.1.carry(&bytes));
    }
    let first: Vec<_> = core::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(first, vec![LinkEvent::Message(payload(1, 0)), LinkEvent::Message(payload(1, 1))]);
    let (_, rest) = pump(&mut a, &mut b, &mut lines, &mut now, 20);
    assert_eq!(rest, (2..6).map(|n| LinkEvent::Message(payload(1, n))).collect::<Vec<_>>());
}

#[test]
fn limits_are_typed_errors() {
    let cfg = LinkConfig { send_queue_max: 2, frame_bytes_max: 256, ..LinkConfig::default() };
    let mut a = Link::new(cfg, 1, Instant::ZERO);
    assert!(matches!(a.send(payload(1, 299)), Err(LinkError::TooLarge { max: 256, .. })));
    a.send(payload(1, 1)).unwrap();
    a.send(payload(1, 2)).unwrap();
    assert_eq!(a.send(payload(1, 3)), Err(LinkError::QueueFull { max: 2 }));
}

#[test]
fn frames_round_trip_through_cobs_and_a_flipped_bit_is_refused() {
    let frame = LinkFrame::Data { seq: 7, ack: 3, msg: &payload(4, 40) };
    let raw = postcard::to_allocvec(&frame).unwrap();
    let mut line = Vec::new();
    encode_cobs_raw(&raw, 4096, &mut line).unwrap();
    let mut got = Vec::new();
    CobsDecoder::new(4096).push_raw(&line, |f| got.push(f.map(<[u8]>::to_vec)));
    assert_eq!(got, vec![Ok(raw.clone())]);
    let decoded: LinkFrame<LinkMsg> = postcard::from_bytes(&raw).unwrap();
    assert_eq!(decoded, LinkFrame::Data { seq: 7, ack: 3, msg: payload(4, 40) });
    for i in 0..line.len() - 1 {
        for bit in 0..8 {
            let mut bad = line.clone();
            bad[i] ^= 1 << bit;
            let mut got = Vec::new();
            CobsDecoder::new(4096).push_raw(&bad, |f| got.push(f.map(<[u8]>::to_vec)));
            assert!(got.iter().all(|f| f.as_ref() != Ok(&raw)), "byte {i} bit {bit}");
            assert!(got.iter().all(Result::is_err), "byte {i} bit {bit}: a damaged frame was accepted");
        }
    }
}
