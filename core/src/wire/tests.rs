use super::*;
use crate::raft::{Entry, GroupId, Membership, MessageBody, NodeId, Payload, SnapshotMeta};
use crate::time::Instant;
use alloc::vec;
use proptest::prelude::*;

const MAX: usize = 1 << 16;

fn samples() -> Vec<Envelope> {
    let msg =
        |body| Envelope::Raft(Message { group: GroupId(3), from: NodeId(1), to: NodeId(2), term: 9, body });
    let entry = |index, payload| Entry { term: 9, index, time: Instant::from_micros(index * 10), payload };
    vec![
        msg(MessageBody::PreVote { last_index: 4, last_term: 2 }),
        msg(MessageBody::PreVoteResponse { granted: true }),
        msg(MessageBody::Vote { last_index: 4, last_term: 2, transfer: true }),
        msg(MessageBody::VoteResponse { granted: false }),
        msg(MessageBody::Append {
            prev_index: 4,
            prev_term: 2,
            entries: vec![
                entry(5, Payload::Noop),
                entry(6, Payload::Command(vec![1, 2, 3])),
                entry(7, Payload::Membership(Membership::with_voters([NodeId(1), NodeId(2)]))),
            ],
            commit: 4,
        }),
        msg(MessageBody::AppendResponse { success: false, index: 7, hint_index: 5, hint_term: 2 }),
        msg(MessageBody::Heartbeat { commit: 3, seq: 77 }),
        msg(MessageBody::HeartbeatResponse { seq: 77 }),
        msg(MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                index: 10,
                term: 3,
                time: Instant::from_micros(5),
                membership: Membership::default(),
            },
            offset: 0,
            total: 3,
            data: vec![9, 9, 9],
        }),
        msg(MessageBody::InstallSnapshotResponse { index: 10, next_offset: 3, done: true }),
        msg(MessageBody::TimeoutNow),
    ]
}

#[test]
fn every_message_round_trips_through_a_frame() {
    for envelope in samples() {
        let mut buf = Vec::new();
        encode_frame(&envelope, MAX, &mut buf).unwrap();
        let (decoded, used) = decode_frame(&buf, MAX).unwrap().unwrap();
        assert_eq!(decoded, envelope);
        assert_eq!(used, buf.len());
    }
}

#[test]
fn two_frames_in_one_buffer_decode_in_order() {
    let samples = samples();
    let mut buf = Vec::new();
    encode_frame(&samples[0], MAX, &mut buf).unwrap();
    encode_frame(&samples[4], MAX, &mut buf).unwrap();
    let (first, used) = decode_frame(&buf, MAX).unwrap().unwrap();
    let (second, rest) = decode_frame(&buf[used..], MAX).unwrap().unwrap();
    assert_eq!((first, second), (samples[0].clone(), samples[4].clone()));
    assert_eq!(used + rest, buf.len());
}

#[test]
fn oversize_frame_is_refused_from_its_header() {
    // Only the header is present: the limit must be enforced before the body arrives.
    let header = (MAX as u32 + 1).to_le_bytes();
    assert_eq!(decode_frame(&header, MAX), Err(WireError::FrameTooLarge { size: MAX + 1, max: MAX }));
    let huge = u32::MAX.to_le_bytes();
    assert!(matches!(decode_frame(&huge, MAX), Err(WireError::FrameTooLarge { .. })));
}

#[test]
fn encoder_refuses_frames_over_the_limit() {
    let big = Envelope::Raft(Message {
        group: GroupId(0),
        from: NodeId(1),
        to: NodeId(2),
        term: 1,
        body: MessageBody::InstallSnapshot {
            meta: SnapshotMeta { index: 1, term: 1, time: Instant::ZERO, membership: Membership::default() },
            offset: 0,
            total: 100,
            data: vec![0; 100],
        },
    });
    let mut buf = vec![7];
    assert!(matches!(encode_frame(&big, 64, &mut buf), Err(WireError::FrameTooLarge { .. })));
    assert_eq!(buf, vec![7], "a refused frame leaves the buffer as it was");
}

#[test]
fn wrong_version_and_empty_payloads_are_typed_errors() {
    let mut payload = Vec::new();
    encode_payload(&samples()[0], &mut payload).unwrap();
    payload[0] = 99;
    assert_eq!(decode_payload(&payload, MAX), Err(WireError::UnsupportedVersion(99)));
    assert_eq!(decode_payload(&[], MAX), Err(WireError::Empty));
    let mut trailing = Vec::new();
    encode_payload(&samples()[1], &mut trailing).unwrap();
    trailing.push(0);
    assert_eq!(decode_payload(&trailing, MAX), Err(WireError::TrailingBytes(1)));
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let mut buf = Vec::new();
    encode_frame(&samples()[4], MAX, &mut buf).unwrap();
    for cut in 0..buf.len() {
        assert_eq!(decode_frame(&buf[..cut], MAX), Ok(None), "cut at {cut}");
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes, MAX);
        let _ = decode_payload(&bytes, MAX);
    }

    #[test]
    fn corrupted_frames_never_panic(which in 0usize..11, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut buf = Vec::new();
        encode_frame(&samples()[which], MAX, &mut buf).unwrap();
        for (pos, val) in flips {
            let len = buf.len();
            buf[pos % len] = val;
        }
        let _ = decode_frame(&buf, MAX);
    }

    #[test]
    fn truncated_payloads_are_errors(which in 0usize..11, cut in 0usize..64) {
        let mut payload = Vec::new();
        encode_payload(&samples()[which], &mut payload).unwrap();
        let cut = cut.min(payload.len() - 1);
        prop_assert!(decode_payload(&payload[..cut], MAX).is_err());
    }
}

#[test]
fn a_peer_hello_round_trips_and_is_refused_for_another_group_its_own_id_or_other_limits() {
    let limits = Limits::default();
    let hello = PeerHello::new(GroupId(3), NodeId(2), &limits, Some("10.0.0.2:7001".into()));
    let mut buf = Vec::new();
    encode_frame(&Envelope::PeerHello(hello.clone()), MAX, &mut buf).unwrap();
    let (back, _) = decode_frame(&buf, MAX).unwrap().unwrap();
    assert_eq!(back, Envelope::PeerHello(hello.clone()));
    assert_eq!(hello.check(GroupId(3), NodeId(1), &limits), Ok(()));
    assert!(matches!(hello.check(GroupId(4), NodeId(1), &limits), Err(HelloError::WrongGroup { .. })));
    assert_eq!(hello.check(GroupId(3), NodeId(2), &limits), Err(HelloError::SameId(NodeId(2))));
    let other = Limits { name_bytes_max: limits.name_bytes_max + 1, ..limits.clone() };
    assert_ne!(other.digest(), limits.digest());
    assert!(matches!(hello.check(GroupId(3), NodeId(1), &other), Err(HelloError::LimitsDiffer { .. })));
    // The digest is a function of the limits alone: the same on every node and build.
    assert_eq!(Limits::default().digest(), limits.digest());
}

/// Every sample, framed for a stream.
fn stream_of_samples() -> Vec<u8> {
    let mut bytes = Vec::new();
    for s in samples() {
        encode_frame(&s, MAX, &mut bytes).unwrap();
    }
    bytes
}

/// Every sample, framed for a serial line.
fn line_of_samples() -> Vec<u8> {
    let mut bytes = Vec::new();
    for s in samples() {
        encode_cobs_frame(&s, MAX, &mut bytes).unwrap();
    }
    bytes
}

/// Feeds `bytes` to a stream decoder in pieces of `piece` bytes; what came out.
fn stream_decode(bytes: &[u8], piece: usize) -> Result<Vec<Envelope>, WireError> {
    let mut d = StreamDecoder::new(MAX);
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece.max(1)) {
        d.push(chunk);
        while let Some(e) = d.next_frame()? {
            out.push(e);
        }
    }
    Ok(out)
}

fn cobs_decode(bytes: &[u8], piece: usize) -> Vec<Result<Envelope, WireError>> {
    let mut d = CobsDecoder::new(MAX);
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece.max(1)) {
        d.push(chunk, |f| out.push(f));
    }
    out
}

#[test]
fn stream_frames_decode_whatever_the_read_sizes() {
    let bytes = stream_of_samples();
    for piece in [1, 2, 3, 7, 64, bytes.len()] {
        assert_eq!(stream_decode(&bytes, piece).unwrap(), samples(), "pieces of {piece}");
    }
}

#[test]
fn a_stream_that_ends_mid_frame_is_not_idle() {
    let bytes = stream_of_samples();
    let mut d = StreamDecoder::new(MAX);
    d.push(&bytes[..bytes.len() - 1]);
    while d.next_frame().unwrap().is_some() {}
    assert!(!d.is_idle(), "the last frame is incomplete");
    d.push(&bytes[bytes.len() - 1..]);
    assert!(d.next_frame().unwrap().is_some());
    assert!(d.is_idle());
}

#[test]
fn a_stream_refuses_an_oversize_frame_before_buffering_it_and_names_http() {
    let mut d = StreamDecoder::new(MAX);
    d.push(&u32::MAX.to_le_bytes());
    assert_eq!(d.next_frame(), Err(WireError::FrameTooLarge { size: u32::MAX as usize, max: MAX }));
    let mut d = StreamDecoder::new(MAX);
    d.push(b"HTTP/1.1 400 Bad Request\r\n");
    assert_eq!(d.next_frame(), Err(WireError::Http));
}

#[test]
fn cobs_frames_round_trip_whatever_the_read_sizes() {
    let bytes = line_of_samples();
    assert_eq!(bytes.iter().filter(|b| **b == 0).count(), samples().len(), "one zero byte per frame");
    for piece in [1, 2, 5, 64, bytes.len()] {
        let got: Vec<Envelope> = cobs_decode(&bytes, piece).into_iter().map(Result::unwrap).collect();
        assert_eq!(got, samples(), "pieces of {piece}");
    }
}

#[test]
fn cobs_resynchronises_after_noise_and_refuses_corrupt_frames() {
    let good = line_of_samples();
    // Noise before, a frame with one flipped byte, then the good frames again.
    let mut line = vec![0x13, 0x37, 0xff, 0x00];
    let mut damaged = Vec::new();
    encode_cobs_frame(&samples()[0], MAX, &mut damaged).unwrap();
    damaged[3] ^= 0x40;
    line.extend_from_slice(&damaged);
    line.extend_from_slice(&good);
    let got = cobs_decode(&line, 3);
    let (bad, ok): (Vec<_>, Vec<_>) = got.into_iter().partition(Result::is_err);
    assert_eq!(bad.len(), 2, "the noise and the damaged frame: {bad:?}");
    assert_eq!(
        ok.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        samples(),
        "every good frame after them"
    );
}

#[test]
fn cobs_skips_an_endless_frame_and_recovers_at_the_next_zero() {
    let mut line = vec![0x55; 3 * MAX];
    line.push(0);
    line.extend_from_slice(&line_of_samples());
    let got = cobs_decode(&line, 4096);
    assert!(matches!(got[0], Err(WireError::FrameTooLarge { .. })));
    assert_eq!(got.len(), 1 + samples().len(), "one refusal, then every frame");
    assert!(got[1..].iter().all(Result::is_ok));
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..2048), piece in 1usize..64) {
        let _ = stream_decode(&bytes, piece);
        let _ = cobs_decode(&bytes, piece);
    }

    #[test]
    fn a_corrupted_serial_frame_is_never_accepted(which in 0usize..11, pos in any::<usize>(), flip in 1u8..=255) {
        let mut line = Vec::new();
        encode_cobs_frame(&samples()[which], MAX, &mut line).unwrap();
        let i = pos % (line.len() - 1); // not the closing zero
        line[i] ^= flip;
        // A flipped byte may split the frame (a new zero) or break COBS or the CRC:
        // whatever comes out is never a different envelope.
        for e in cobs_decode(&line, 7).into_iter().flatten() {
            prop_assert_eq!(e, samples()[which].clone());
        }
    }

    #[test]
    fn truncated_streams_yield_a_prefix_of_the_frames(cut in 0usize..4096) {
        let bytes = stream_of_samples();
        let cut = cut % bytes.len();
        let got = stream_decode(&bytes[..cut], 5).unwrap();
        prop_assert!(got.len() < samples().len());
        prop_assert_eq!(&got[..], &samples()[..got.len()]);
    }
}

/// The client's narrow encoder and decoder agree with the envelope's, byte for byte, and
/// the decoder refuses every envelope a client is not sent.
#[test]
fn client_requests_and_responses_have_the_envelopes_bytes() {
    let (mut requests, mut responses) = (0, 0);
    let mut all = samples();
    all.push(Envelope::Request(ClientRequest { id: 7, group: GroupId(1), body: RequestBody::Status }));
    all.push(Envelope::Response(ServerMessage::Answer {
        id: 7,
        result: Err(ClientError::Raft(crate::raft::RequestError::NotLeader { leader: Some(NodeId(2)) })),
    }));
    all.push(Envelope::Response(ServerMessage::Answer { id: 8, result: Err(ClientError::Reserved) }));
    for env in all {
        let mut bytes = Vec::new();
        encode_payload(&env, &mut bytes).unwrap();
        match &env {
            Envelope::Request(r) => {
                let mut narrow = Vec::new();
                encode_request(r, &mut narrow).unwrap();
                assert_eq!(narrow, bytes, "{env:?}");
                requests += 1;
            }
            Envelope::Response(m) => {
                assert_eq!(&decode_response(&bytes, MAX).unwrap(), m);
                responses += 1;
            }
            _ => {}
        }
        if !matches!(env, Envelope::Response(_)) {
            assert!(matches!(decode_response(&bytes, MAX), Err(WireError::Malformed(_))), "{env:?}");
        }
    }
    assert!(requests > 0 && responses > 0, "the samples hold both");
    assert_eq!(decode_response(&[], MAX), Err(WireError::Empty));
    assert_eq!(
        decode_response(&[PROTOCOL_VERSION + 1, 2], MAX),
        Err(WireError::UnsupportedVersion(PROTOCOL_VERSION + 1))
    );
    assert!(matches!(decode_response(&[0; 10], 4), Err(WireError::FrameTooLarge { .. })));
}
