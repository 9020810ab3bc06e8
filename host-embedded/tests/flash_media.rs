//! The flash medium against a simulated NOR flash that keeps the rules real parts keep
//! (a word is programmed only when erased, erasing is per sector) and that loses power
//! at a chosen byte: after every cut, what the medium recovers is the state after some
//! operation between the last durable one and the one cut — never less, never a mix.

mod common;

use common::sim_flash::{SimError, SimFlash, SECTOR};
use concord_core::storage::Media;
use concord_embedded::flash::{FlashMedia, FlashMediaError};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;

/// What a medium holds: its segments and its snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    segments: BTreeMap<u64, Vec<u8>>,
    snapshot: Option<Vec<u8>>,
}

fn contents<M: Media>(m: &mut M) -> Model
where
    M::Error: std::fmt::Debug,
{
    let mut seqs = Vec::new();
    m.segments(&mut seqs).unwrap();
    let mut segments = BTreeMap::new();
    for seq in seqs {
        let mut buf = Vec::new();
        m.read(seq, &mut buf).unwrap();
        segments.insert(seq, buf);
    }
    let mut buf = Vec::new();
    let snapshot = m.read_snapshot(&mut buf).unwrap().then_some(buf);
    Model { segments, snapshot }
}

/// One random operation on the medium, and the model as it would be after it: whether
/// the operation is durable when it returns, and that model (applied to `model` only on
/// success: a cut operation may or may not have taken effect).
fn random_op(
    rng: &mut Xoshiro256PlusPlus,
    media: &mut FlashMedia<SimFlash>,
    model: &mut Model,
    next_seq: &mut u64,
) -> (Result<bool, FlashMediaError<SimError>>, Model) {
    // Keep the state well inside a bank: past 1.5 KiB, only shrink it.
    let total: usize = model.segments.values().map(Vec::len).sum();
    let pick = match rng.next_u32() % 100 {
        _ if total > 1_500 && model.segments.len() > 1 => 85,
        _ if total > 1_500 => 70,
        p => p,
    };
    let live: Vec<u64> = model.segments.keys().copied().collect();
    let some_live = |rng: &mut Xoshiro256PlusPlus| live[rng.next_u32() as usize % live.len()];
    let bytes = |rng: &mut Xoshiro256PlusPlus, max: u32| {
        let n = 1 + rng.next_u32() % max;
        (0..n).map(|_| rng.next_u32() as u8).collect::<Vec<u8>>()
    };
    let mut after = model.clone();
    let result = match pick {
        0..=9 => {
            *next_seq += 1;
            after.segments.insert(*next_seq, Vec::new());
            media.create(*next_seq).map(|()| false)
        }
        10..=49 if !live.is_empty() => {
            let (seq, b) = (some_live(rng), bytes(rng, 160));
            after.segments.get_mut(&seq).unwrap().extend_from_slice(&b);
            media.append(seq, &b).map(|()| false)
        }
        70..=76 if !live.is_empty() => {
            let seq = some_live(rng);
            let len = model.segments[&seq].len() as u64 / 2;
            after.segments.get_mut(&seq).unwrap().truncate(len as usize);
            media.truncate(seq, len).map(|()| true)
        }
        77..=84 => {
            *next_seq += 1;
            let b = bytes(rng, 300);
            after.segments.insert(*next_seq, b.clone());
            media.install(*next_seq, &b).map(|()| true)
        }
        85..=92 if live.len() > 1 => {
            after.segments.remove(&live[0]);
            media.remove(live[0]).map(|()| false)
        }
        93..=99 => {
            let b = bytes(rng, 400);
            after.snapshot = Some(b.clone());
            media.write_snapshot(&b).map(|()| true)
        }
        _ => media.sync().map(|()| true),
    };
    if result.is_ok() {
        *model = after.clone();
    }
    (result, after)
}

/// A region of 8 sectors (two banks of 4 KiB): small, so that compactions are frequent.
const REGION: u32 = 8 * SECTOR as u32;

#[test]
fn everything_synced_survives_a_power_cut_anywhere() {
    let (mut compactions, mut torn_starts, mut cut_opens) = (0, 0, 0);
    for seed in 0..300u64 {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let cells = SimFlash::new(8);
        // What the flash holds durably: any of these states (the last durable one, and
        // each operation after it up to one that was cut).
        let mut may_hold = vec![Model::default()];
        let mut next_seq = 0;
        // A first life without cuts, then lives cut at a random byte (during the start's
        // own recovery too), each followed by a check of what a clean start recovers.
        for life in 0..4 {
            let mut flash = cells.share();
            if life > 0 {
                flash.budget = Some(rng.next_u32() as usize % 6_000);
            }
            let mut media = match FlashMedia::open(flash, 0, REGION) {
                Ok(m) => m,
                Err(FlashMediaError::Flash(SimError::PowerCut)) => {
                    cut_opens += 1;
                    continue;
                }
                Err(e) => panic!("seed {seed} life {life}: {e}"),
            };
            let mut model = contents(&mut media);
            assert!(
                may_hold.contains(&model),
                "seed {seed} life {life}: started with a state that never was durable: {model:?}\nlast durable: {:?}",
                may_hold[0]
            );
            if media.stats().compactions > 0 && life > 0 {
                torn_starts += 1;
            }
            may_hold = vec![model.clone()];
            for _ in 0..200 {
                let (result, after) = random_op(&mut rng, &mut media, &mut model, &mut next_seq);
                match result {
                    Ok(true) => may_hold = vec![model.clone()],
                    Ok(false) => may_hold.push(model.clone()),
                    Err(FlashMediaError::Flash(SimError::PowerCut)) => {
                        may_hold.push(after);
                        break;
                    }
                    Err(e) => panic!("seed {seed} life {life}: {e}"),
                }
            }
            compactions += media.stats().compactions;
        }
        // A last clean start.
        let mut media =
            FlashMedia::open(cells.share(), 0, REGION).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let got = contents(&mut media);
        assert!(may_hold.contains(&got), "seed {seed}: recovered a state that never was durable: {got:?}");
    }
    assert!(compactions > 100, "compactions were exercised: {compactions}");
    assert!(torn_starts > 10, "starts after a torn record were exercised: {torn_starts}");
    assert!(cut_opens > 5, "cuts during a start's recovery were exercised: {cut_opens}");
}

/// A record header torn after its marker, with an erased length (`0xFFFF_FFFF`): the
/// journal ends there (and the state moves banks), on any word size.
#[test]
fn a_torn_record_length_ends_the_journal() {
    let cells = SimFlash::new(8);
    let mut media = FlashMedia::open(cells.share(), 0, REGION).unwrap();
    media.create(1).unwrap();
    media.append(1, b"kept").unwrap();
    media.sync().unwrap();
    let tail = media.stats().used_bytes as usize;
    drop(media);
    // Bank 0 is active (a new region is formatted there): the marker programmed, the
    // rest of the header not.
    cells.bytes.borrow_mut()[tail..tail + 4].copy_from_slice(&[0xA5, 0, 0, 0]);
    let mut again = FlashMedia::open(cells.share(), 0, REGION).unwrap();
    assert_eq!(contents(&mut again).segments[&1], b"kept");
    assert_eq!(again.stats().bank, 1, "the torn tail moved the state to the other bank");
}

/// A region opened with another size is refused, and keeps its state.
#[test]
fn another_region_size_is_refused_not_formatted() {
    let cells = SimFlash::new(16);
    let mut media = FlashMedia::open(cells.share(), 0, REGION).unwrap();
    media.install(1, b"vote and log").unwrap();
    drop(media);
    let e = FlashMedia::open(cells.share(), 0, 2 * REGION).err().unwrap();
    assert!(matches!(e, FlashMediaError::Geometry { .. }), "{e:?}");
    let mut again = FlashMedia::open(cells.share(), 0, REGION).unwrap();
    assert_eq!(contents(&mut again).segments[&1], b"vote and log");
}

#[test]
fn a_new_region_is_formatted_and_a_reopened_one_keeps_its_state() {
    let mut media = FlashMedia::open(SimFlash::new(8), 0, REGION).unwrap();
    assert_eq!(media.stats().generation, 1);
    media.create(1).unwrap();
    media.append(1, b"abc").unwrap();
    media.sync().unwrap();
    media.write_snapshot(b"snap").unwrap();
    let flash = media.into_flash();
    let mut again = FlashMedia::open(flash, 0, REGION).unwrap();
    let got = contents(&mut again);
    assert_eq!(got.segments.get(&1).map(Vec::as_slice), Some(&b"abc"[..]));
    assert_eq!(got.snapshot.as_deref(), Some(&b"snap"[..]));
}

#[test]
fn appends_not_synced_may_be_lost_but_never_torn() {
    let mut media = FlashMedia::open(SimFlash::new(8), 0, REGION).unwrap();
    media.create(1).unwrap();
    media.append(1, b"kept").unwrap();
    media.sync().unwrap();
    media.append(1, b"not synced").unwrap();
    let mut again = FlashMedia::open(media.into_flash(), 0, REGION).unwrap();
    assert_eq!(contents(&mut again).segments[&1], b"kept");
}

#[test]
fn bad_geometry_and_a_full_region_are_typed_errors() {
    // Not two whole sectors per bank.
    let e = FlashMedia::open(SimFlash::new(8), 0, SECTOR as u32).err().unwrap();
    assert!(matches!(e, FlashMediaError::Geometry { .. }), "{e:?}");
    // Not aligned to a sector.
    let e = FlashMedia::open(SimFlash::new(8), 100, 4 * SECTOR as u32).err().unwrap();
    assert!(matches!(e, FlashMediaError::Geometry { .. }), "{e:?}");
    // Beyond the device.
    let e = FlashMedia::open(SimFlash::new(2), 0, REGION).err().unwrap();
    assert!(matches!(e, FlashMediaError::Geometry { .. }), "{e:?}");
    // A state larger than a bank.
    let mut media = FlashMedia::open(SimFlash::new(8), 0, REGION).unwrap();
    let e = media.install(1, &vec![7u8; 5 * SECTOR]).unwrap_err();
    assert!(matches!(e, FlashMediaError::Full { .. }), "{e:?}");
    assert!(e.to_string().contains("a bank holds"), "{e}");
}
