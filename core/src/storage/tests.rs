//! The store against the storage contract: a model test ([`Persisted::apply`] is the model),
//! torn tails, corruption with its position, checkpoints, a failure at every step of a
//! scenario, and decoders fed random bytes.

use super::record::{self, frame_at, FRAME_HEADER_BYTES};
use super::snapshot::{self, SNAPSHOT_HEADER_BYTES};
use super::*;
use crate::raft::{
    Entry, HardState, Membership, NodeId, Payload, Persisted, Snapshot, SnapshotMeta, SnapshotWrite,
    StorageWrite, WriteToken,
};
use crate::time::Instant;
use alloc::borrow::Cow;
use alloc::vec;
use alloc::vec::Vec;
use core::convert::Infallible;
use core::ops::RangeInclusive;
use proptest::prelude::*;

fn ents(indexes: RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    let payload = |i: u64| Payload::Command(vec![i as u8; (i % 7) as usize]);
    indexes.map(|i| Entry { term, index: i, time: Instant::from_micros(i), payload: payload(i) }).collect()
}

fn snap(index: u64, retain_log_after: bool) -> Option<SnapshotWrite> {
    let membership = Membership::with_voters([NodeId(1)]);
    let meta = SnapshotMeta { index, term: 1, time: Instant::from_micros(index), membership };
    Some(SnapshotWrite { snapshot: Snapshot { meta, data: vec![index as u8; 16] }, retain_log_after })
}

fn hs(term: u64) -> Option<HardState> {
    Some(HardState { term, voted_for: Some(NodeId(term % 3)) })
}

fn write(
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotWrite>,
    entries: Vec<Entry>,
) -> StorageWrite {
    StorageWrite { token: WriteToken(0), hard_state, snapshot, entries }
}

fn opts(segment_bytes_max: u64) -> LogOptions {
    LogOptions { segment_bytes_max, ..LogOptions::default() }
}

type Store = LogStore<MemMedia>;

fn open(media: MemMedia, segment_bytes_max: u64) -> Result<(Store, Recovery), StorageError<Infallible>> {
    LogStore::open(media, opts(segment_bytes_max))
}

/// A store beside the model it must match.
struct Fixture {
    store: Option<Store>,
    model: Persisted,
    segment_bytes_max: u64,
}

impl Fixture {
    fn new(segment_bytes_max: u64) -> Self {
        let (store, recovered) = open(MemMedia::new(), segment_bytes_max).unwrap();
        assert_eq!(recovered, Recovery { persisted: Persisted::default(), torn_tail: None });
        Self { store: Some(store), model: Persisted::default(), segment_bytes_max }
    }

    fn store(&mut self) -> &mut Store {
        self.store.as_mut().unwrap()
    }

    fn put(&mut self, w: StorageWrite) {
        self.store().append(&w).unwrap();
        self.model.apply(&w).unwrap();
        assert_eq!(self.store().stats().last_index, self.model.bounds().last_index);
    }

    /// Appends one synced write per entry.
    fn put_each(&mut self, indexes: RangeInclusive<u64>) {
        for i in indexes {
            self.put(write(None, None, ents(i..=i, 1)));
            self.store().sync().unwrap();
        }
    }

    /// Crashes (losing nothing: every append reached the medium) and checks what comes back.
    fn reopen(&mut self) {
        let mut media = self.store.take().unwrap().into_media();
        media.crash(|_, unsynced| unsynced);
        let (store, recovered) = open(media, self.segment_bytes_max).unwrap();
        assert_eq!(recovered.persisted, self.model);
        assert_eq!(store.stats().last_index, self.model.bounds().last_index);
        self.store = Some(store);
    }

    fn media(&mut self) -> MemMedia {
        self.store.take().unwrap().into_media()
    }
}

fn segments(media: &mut MemMedia) -> Vec<u64> {
    let mut seqs = Vec::new();
    media.segments(&mut seqs).unwrap();
    seqs
}

/// Where each well-framed record of a segment starts.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = vec![0];
    while let Ok((_, next)) = frame_at(bytes, offsets[offsets.len() - 1], usize::MAX) {
        offsets.push(next);
    }
    offsets.pop(); // where framing stopped: the end, or a damaged record
    offsets
}

fn expect_corrupt<T>(result: Result<T, StorageError<Infallible>>, at: Place, at_offset: usize) -> Damage {
    match result {
        Err(StorageError::Corrupt { place, offset, damage }) => {
            assert_eq!((place, offset), (at, at_offset as u64), "{damage}");
            damage
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("expected Corrupt, but the store opened"),
    }
}

#[test]
fn record_bytes_are_the_documented_format() {
    // `[u32 LE len][u32 LE crc32][postcard]`: variant 0, term 1, Some, node 2.
    let mut out = Vec::new();
    let h = HardState { term: 1, voted_for: Some(NodeId(2)) };
    record::encode(&Record::HardState(h), 64, &mut out).unwrap();
    assert_eq!(out, [4, 0, 0, 0, 0x46, 0xe5, 0x93, 0xd7, 0, 1, 1, 2]);
    assert_eq!(frame_at(&out, 0, 64), Ok((&out[FRAME_HEADER_BYTES..], out.len())));
    assert_eq!(
        record::encode(&Record::HardState(h), 3, &mut out),
        Err(EncodeError::TooLarge { bytes: 4, max: 3 })
    );
    assert_eq!(out.len(), 12, "a refused record leaves the buffer as it was");
}

fn any_record() -> impl Strategy<Value = Record<'static>> {
    let entry = (0..u64::MAX, 0..u64::MAX, any::<u64>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(
        |(term, index, time, bytes)| Entry {
            term,
            index,
            time: Instant::from_micros(time),
            payload: if bytes.is_empty() { Payload::Noop } else { Payload::Command(bytes) },
        },
    );
    let hard_state = (any::<u64>(), prop::option::of(any::<u64>()))
        .prop_map(|(term, v)| HardState { term, voted_for: v.map(NodeId) });
    prop_oneof![
        hard_state.clone().prop_map(Record::HardState),
        prop::collection::vec(entry, 1..6).prop_map(|e| Record::Entries(Cow::Owned(e))),
        (any::<u64>(), any::<u64>(), hard_state).prop_map(|(generation, snapshot_index, hard_state)| {
            Record::Checkpoint { generation, snapshot_index, hard_state }
        }),
    ]
}

proptest! {
    #[test]
    fn records_round_trip(records in prop::collection::vec(any_record(), 1..8)) {
        let mut buf = Vec::new();
        for r in &records {
            record::encode(r, 1 << 16, &mut buf).unwrap();
        }
        let mut offset = 0;
        for r in &records {
            let (payload, next) = frame_at(&buf, offset, 1 << 16).unwrap();
            prop_assert_eq!(&record::decode(payload).unwrap(), r);
            offset = next;
        }
        prop_assert_eq!(offset, buf.len());
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), max in 0..400usize) {
        for at in 0..bytes.len() {
            if let Ok((payload, _)) = frame_at(&bytes, at, max) {
                let _ = record::decode(payload);
            }
        }
        let _ = record::decode(&bytes);
        let _ = snapshot::decode(&bytes);
        // As a whole log, and as a log followed by garbage.
        let mut media = MemMedia::new();
        media.append(1, &bytes).unwrap();
        media.sync().unwrap();
        let _ = open(media.clone(), 1 << 20);
        media.write_snapshot(&bytes).unwrap();
        let _ = open(media, 1 << 20);
    }

    /// Every prefix of the last segment is a torn write at worst: it opens with the records
    /// it holds whole, and garbage after them is cut off.
    #[test]
    fn truncated_or_extended_segments_open(cut in 0..1000usize, garbage in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut f = Fixture::new(1 << 20);
        f.put(write(hs(1), None, ents(1..=3, 1)));
        f.put(write(hs(2), None, ents(3..=6, 2)));
        f.put(write(None, None, ents(7..=9, 2)));
        let mut media = f.media();
        let whole = media.segment_mut(1).unwrap().clone();
        let cut = cut % (whole.len() + 1);
        let segment = media.segment_mut(1).unwrap();
        segment.truncate(cut);
        segment.extend_from_slice(&garbage);
        // "Garbage" that happens to repeat the bytes that were cut off is no damage: the
        // records it completes are whole again. What counts is how far the bytes are the
        // original ones.
        let intact = whole.iter().zip(segment.iter()).take_while(|(a, b)| a == b).count();
        let boundary = record_offsets(&whole).into_iter().chain([whole.len()]).filter(|&o| o <= intact).max().unwrap();
        // The well-framed records before the cut, replayed through the model.
        let mut expected = Persisted::default();
        let mut offset = 0;
        while offset < boundary {
            let (payload, next) = frame_at(&whole, offset, usize::MAX).unwrap();
            let w = match record::decode(payload).unwrap() {
                Record::HardState(h) => write(Some(h), None, vec![]),
                Record::Entries(e) => write(None, None, e.into_owned()),
                Record::Checkpoint { .. } => unreachable!(),
            };
            expected.apply(&w).unwrap();
            offset = next;
        }
        match open(media, 1 << 20) {
            Ok((_, recovered)) => prop_assert_eq!(recovered.persisted, expected),
            // Garbage that happens to frame a record is not a torn tail.
            Err(StorageError::Corrupt { .. }) => prop_assert!(!garbage.is_empty()),
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}

#[test]
fn torn_tail_is_cut_and_the_store_goes_on() {
    for keep in [1, 5, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 1, 20] {
        let mut f = Fixture::new(1 << 20);
        f.put_each(1..=10);
        let (model, offset) = (f.model.clone(), f.store().stats().segment_bytes);
        f.put(write(hs(3), None, ents(11..=12, 3))); // appended, never synced
        let mut media = f.media();
        assert!(media.unsynced_bytes() > 20);
        media.crash(|_, _| keep);
        let (store, recovered) = open(media, 1 << 20).unwrap();
        if keep < FRAME_HEADER_BYTES + 4 {
            // Too little for a whole record: the tail is cut where the write began.
            assert_eq!(recovered.torn_tail, Some(TornTail { segment: 1, offset }));
            assert_eq!(recovered.persisted, model);
        } else {
            // The hard state record (12 bytes) survived whole: a shorter write's result.
            let mut shorter = model.clone();
            shorter.apply(&write(hs(3), None, vec![])).unwrap();
            assert_eq!(recovered.persisted, shorter);
            assert_eq!(recovered.torn_tail.map(|t| t.offset), (keep > 12).then_some(offset + 12));
        }
        f.store = Some(store);
        f.model = recovered.persisted;
        f.put_each(11..=11);
        f.reopen();
    }
}

#[test]
fn zeros_or_garbage_after_the_tail_are_cut_off() {
    let mut x = 0x2545_f491_4f6c_dd1d_u64; // xorshift: deterministic garbage
    let garbage: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for tail in [vec![0; 100], garbage] {
        let mut f = Fixture::new(1 << 20);
        f.put_each(1..=10);
        let mut media = f.media();
        let len = media.segment_mut(1).unwrap().len() as u64;
        media.append(1, &tail).unwrap();
        let (store, recovered) = open(media, 1 << 20).unwrap();
        assert_eq!(recovered.torn_tail, Some(TornTail { segment: 1, offset: len }));
        assert_eq!(recovered.persisted, f.model);
        f.store = Some(store);
        f.put_each(11..=12);
        f.reopen();
    }
}

#[test]
fn corruption_in_the_middle_is_refused_with_its_position() {
    let mut f = Fixture::new(1 << 20);
    f.put_each(1..=10);
    let mut media = f.media();
    let at = record_offsets(media.segment_mut(1).unwrap())[2];
    media.segment_mut(1).unwrap()[at + FRAME_HEADER_BYTES + 1] ^= 0xAB;
    let damage = expect_corrupt(open(media.clone(), 1 << 20), Place::Segment(1), at);
    assert!(matches!(
        damage,
        Damage::Frame { problem: FrameError::Checksum { .. }, not_torn: NotTorn::RecordFollows }
    ));
    // An oversize length in the middle is corruption too, and is never allocated.
    let at = record_offsets(media.segment_mut(1).unwrap())[1];
    media.segment_mut(1).unwrap()[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let damage = expect_corrupt(open(media, 1 << 20), Place::Segment(1), at);
    assert!(matches!(damage, Damage::Frame { problem: FrameError::TooLong { .. }, .. }), "{damage}");
}

#[test]
fn damage_in_a_sealed_segment_is_refused() {
    let mut f = Fixture::new(100);
    f.put_each(1..=20);
    let mut media = f.media();
    let first = segments(&mut media)[0];
    let bytes = media.segment_mut(first).unwrap();
    let at = *record_offsets(bytes).last().unwrap();
    bytes.pop();
    let damage = expect_corrupt(open(media, 100), Place::Segment(first), at);
    assert!(matches!(damage, Damage::Frame { not_torn: NotTorn::NotLastSegment, .. }), "{damage}");
}

#[test]
fn a_checksummed_record_that_does_not_decode_is_corrupt_even_at_the_tail() {
    let mut f = Fixture::new(1 << 20);
    f.put_each(1..=3);
    let mut media = f.media();
    let len = media.segment_mut(1).unwrap().len();
    let mut bogus = Vec::new();
    record::encode(&Record::HardState(HardState::default()), 64, &mut bogus).unwrap();
    bogus[FRAME_HEADER_BYTES] = 9; // no such variant
    let crc = crc32fast::hash(&bogus[FRAME_HEADER_BYTES..]);
    bogus[4..8].copy_from_slice(&crc.to_le_bytes());
    media.append(1, &bogus).unwrap();
    let damage = expect_corrupt(open(media, 1 << 20), Place::Segment(1), len);
    assert!(matches!(damage, Damage::Record(_)), "{damage}");
}

#[test]
fn a_checkpoint_mid_log_resets_replay() {
    let mut f = Fixture::new(100);
    f.put(write(hs(1), None, vec![]));
    f.put_each(1..=20);
    let before = f.store().stats().segment_count;
    assert!(before > 3, "{before} segments");
    // A snapshot mid-log, keeping the entries after it.
    f.put(write(hs(2), snap(12, true), vec![]));
    assert_eq!((f.store().stats().segment_count, f.store().generation()), (1, 1));
    f.put(write(None, None, ents(19..=25, 2))); // overwrites 19 and 20 after the checkpoint
    f.reopen();
    assert_eq!(f.model.entries, [ents(13..=18, 1), ents(19..=25, 2)].concat());
    // Segments from before the checkpoint that a crash left behind are ignored, then removed.
    let mut stale = f.media();
    let mut old = Fixture::new(200);
    old.put_each(1..=5);
    let old_bytes = old.media().segment_mut(1).unwrap().clone();
    stale.append(0, &old_bytes).unwrap(); // numbered before every live segment
    stale.sync().unwrap();
    let (store, recovered) = open(stale, 100).unwrap();
    assert_eq!(recovered.persisted, f.model);
    let count = store.stats().segment_count;
    let live = segments(&mut store.into_media());
    assert!(live[0] > 0 && live.len() == count, "{live:?}");
}

#[test]
fn snapshot_damage_or_absence_is_corrupt() {
    let mut f = Fixture::new(1 << 20);
    f.put(write(None, snap(5, false), ents(6..=7, 1)));
    let mut media = f.media();
    assert_eq!(LogStore::read_snapshot(&mut media).unwrap(), f.model.snapshot);
    let mut damaged = media.clone();
    *damaged.snapshot_mut().unwrap().last_mut().unwrap() ^= 0xEE;
    let damage = expect_corrupt(open(damaged.clone(), 1 << 20), Place::Snapshot, SNAPSHOT_HEADER_BYTES);
    assert!(matches!(damage, Damage::SnapshotChecksum { .. }));
    assert!(matches!(LogStore::read_snapshot(&mut damaged), Err(StorageError::Corrupt { .. })));
    damaged.snapshot_mut().unwrap().truncate(3);
    expect_corrupt(open(damaged, 1 << 20), Place::Snapshot, 0);
    // A log that refers to a snapshot no medium holds.
    let mut orphan = MemMedia::new();
    let mut bytes = Vec::new();
    let live = segments(&mut media)[0];
    media.read(live, &mut bytes).unwrap();
    orphan.append(1, &bytes).unwrap();
    let damage = expect_corrupt(open(orphan, 1 << 20), Place::Snapshot, 0);
    assert_eq!(damage, Damage::SnapshotMissing { generation: 1 });
}

#[test]
fn writes_breaking_the_contract_are_refused_and_fail_the_store() {
    let mut f = Fixture::new(1 << 20);
    f.put(write(hs(4), snap(5, false), vec![]));
    let media = f.media();
    let bad = [
        write(None, None, ents(5..=6, 1)),
        write(None, None, ents(7..=8, 1)),
        write(None, None, vec![ents(6..=6, 1)[0].clone(); 2]),
        write(hs(3), None, vec![]),
        write(None, snap(4, true), vec![]),
    ];
    for w in bad {
        let (mut store, _) = open(media.clone(), 1 << 20).unwrap();
        assert!(matches!(store.append(&w), Err(StorageError::InvalidWrite(_))));
        assert!(matches!(store.sync(), Err(StorageError::Failed)));
        let mut model = f.model.clone();
        assert!(model.apply(&w).is_err(), "the contract refuses it too");
        assert_eq!(model, f.model, "and changes nothing");
    }
}

#[test]
fn large_batches_are_split_and_one_oversize_entry_is_refused() {
    let mut f = Fixture::new(1 << 20);
    let mut media = MemMedia::new();
    let small = LogOptions { record_bytes_max: 100, ..opts(1 << 20) };
    let (mut store, _) = LogStore::open(media.clone(), small).unwrap();
    let w = write(None, None, ents(1..=40, 1));
    store.append(&w).unwrap();
    f.model.apply(&w).unwrap();
    media = store.into_media();
    let records = record_offsets(media.segment_mut(1).unwrap()).len();
    assert!(records > 1, "{records} records");
    let (mut store, recovered) = LogStore::open(media, small).unwrap();
    assert_eq!(recovered.persisted, f.model);
    let huge = Entry { term: 1, index: 41, time: Instant::ZERO, payload: Payload::Command(vec![7; 200]) };
    let refused = store.append(&write(None, None, vec![huge]));
    assert!(matches!(refused, Err(StorageError::RecordTooLarge { max: 100, .. })), "{refused:?}");
}

/// A medium that fails its `n`th write-side call, as a crash mid-way would stop the store.
struct Faulty<'a> {
    inner: &'a mut MemMedia,
    calls_left: usize,
}

/// A `MemMedia` result, as a `Faulty` one.
fn ok<T>(result: Result<T, Infallible>) -> Result<T, &'static str> {
    result.map_err(|e| match e {})
}

impl Faulty<'_> {
    fn tick(&mut self) -> Result<(), &'static str> {
        self.calls_left = self.calls_left.checked_sub(1).ok_or("injected failure")?;
        Ok(())
    }
}

impl Media for Faulty<'_> {
    type Error = &'static str;
    fn segments(&mut self, out: &mut Vec<u64>) -> Result<(), Self::Error> {
        ok(self.inner.segments(out))
    }
    fn read(&mut self, seq: u64, buf: &mut Vec<u8>) -> Result<(), Self::Error> {
        ok(self.inner.read(seq, buf))
    }
    fn create(&mut self, seq: u64) -> Result<(), Self::Error> {
        self.tick()?;
        ok(self.inner.create(seq))
    }
    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), Self::Error> {
        self.tick()?;
        ok(self.inner.append(seq, bytes))
    }
    fn sync(&mut self) -> Result<(), Self::Error> {
        self.tick()?;
        ok(self.inner.sync())
    }
    fn truncate(&mut self, seq: u64, len: u64) -> Result<(), Self::Error> {
        self.tick()?;
        ok(self.inner.truncate(seq, len))
    }
    fn install(&mut self, seq: u64, bytes: &[u8]) -> Result<(), Self::Error> {
        self.tick()?;
        ok(self.inner.install(seq, bytes))
    }
    fn remove(&mut self, seq: u64) -> Result<(), Self::Error> {
        self.tick()?;
        ok(self.inner.remove(seq))
    }
    fn read_snapshot(&mut self, buf: &mut Vec<u8>) -> Result<bool, Self::Error> {
        ok(self.inner.read_snapshot(buf))
    }
    fn write_snapshot(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.tick()?;
        ok(self.inner.write_snapshot(bytes))
    }
}

/// What storage may hold after a crash during `w`: a prefix of its parts, applied to `before`.
fn prefixes(before: &Persisted, w: &StorageWrite) -> Vec<Persisted> {
    let mut states = vec![before.clone()];
    let parts = [
        write(w.hard_state, None, vec![]),
        write(None, w.snapshot.clone(), vec![]),
        write(None, None, w.entries.clone()),
    ];
    let mut state = before.clone();
    for part in parts {
        state.apply(&part).unwrap();
        states.push(state.clone());
    }
    states
}

/// A crash at every step of a scenario with rollovers and snapshots (each write synced):
/// whatever survives, recovery finds every acknowledged write and a prefix of the next.
#[test]
fn a_crash_at_any_step_loses_no_acknowledged_write() {
    let scenario = [
        write(hs(1), None, ents(1..=6, 1)),
        write(None, None, ents(4..=9, 1)),
        write(hs(2), snap(5, true), ents(10..=12, 2)),
        write(None, None, ents(13..=20, 2)),
        write(hs(3), snap(15, false), ents(16..=17, 3)),
        write(None, snap(17, true), ents(18..=30, 3)),
        write(hs(4), None, ents(31..=33, 4)),
    ];
    for keep in [0, usize::MAX, 10] {
        let mut crashes = 0;
        for fail_at in 0.. {
            let mut media = MemMedia::new();
            let (mut acked, mut candidates) = (Persisted::default(), vec![]);
            match LogStore::open(Faulty { inner: &mut media, calls_left: fail_at }, opts(150)) {
                Err(_) => candidates.push(Persisted::default()),
                Ok((mut store, _)) => {
                    for w in &scenario {
                        if store.append(w).and_then(|()| store.sync()).is_err() {
                            candidates = prefixes(&acked, w);
                            break;
                        }
                        acked.apply(w).unwrap();
                    }
                }
            }
            if candidates.is_empty() {
                break; // the scenario ran to its end without reaching call `fail_at`
            }
            media.crash(|seq, unsynced| keep.min(unsynced) / (1 + seq as usize % 2));
            let (_, recovered) = open(media, 150).unwrap();
            candidates.push(acked);
            assert!(
                candidates.contains(&recovered.persisted),
                "failing call {fail_at} (keep {keep}): recovered {:?}",
                recovered.persisted.bounds()
            );
            crashes += 1;
        }
        assert!(crashes > 30, "only {crashes} places to crash");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Replay equals applying the writes. Each op: a hard state term, a snapshot (how far
    /// ahead, retain), entries (how far back from the end to start overwriting, how many),
    /// whether to sync, and whether to reopen after (a crash that loses no appended byte).
    #[test]
    fn replay_equals_applying_the_writes(ops in prop::collection::vec((
        prop::option::of(1..5u64),
        prop::option::weighted(0.15, (0..8u64, any::<bool>())),
        prop::option::weighted(0.8, (0..4u64, 1..5u64)),
        any::<bool>(),
        prop::bool::weighted(0.2),
    ), 1..40)) {
        let mut f = Fixture::new(300);
        let mut term = 0;
        for (t, snapshot, entries, sync, reopen) in ops {
            // A snapshot index in (stored snapshot, last + 2].
            let bounds = f.model.bounds();
            let span = bounds.last_index - bounds.snapshot_index + 2;
            let snapshot =
                snapshot.and_then(|(ahead, retain)| snap(bounds.snapshot_index + 1 + ahead % span, retain));
            // Entries start in (snapshot, last + 1], as of after this write's snapshot.
            let mut probe = f.model.clone();
            probe.apply(&write(None, snapshot.clone(), vec![])).unwrap();
            let floor = probe.bounds().snapshot_index + 1;
            let entries = entries.map_or(vec![], |(back, n)| {
                let first = (probe.bounds().last_index + 1).saturating_sub(back).max(floor);
                ents(first..=first + n - 1, t.unwrap_or(1))
            });
            term = t.map_or(term, |t| term.max(t));
            f.put(write(t.map(|_| term).and_then(hs), snapshot, entries));
            if sync {
                f.store().sync().unwrap();
            }
            if reopen {
                f.reopen();
            }
        }
        f.reopen();
    }
}
