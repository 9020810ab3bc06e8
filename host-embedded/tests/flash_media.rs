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

/// One random operation on the medium and the model; whether it is durable when it
/// returns.
fn random_op(
    rng: &mut Xoshiro256PlusPlus,
    media: &mut FlashMedia<SimFlash>,
    model: &mut Model,
    next_seq: &mut u64,
) -> Result<bool, FlashMediaError<SimError>> {
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
    match pick {
        0..=9 => {
            *next_seq += 1;
            media.create(*next_seq)?;
            model.segments.insert(*next_seq, Vec::new());
            Ok(false)
        }
        10..=49 if !live.is_empty() => {
            let (seq, b) = (some_live(rng), bytes(rng, 160));
            media.append(seq, &b)?;
            model.segments.get_mut(&seq).unwrap().extend_from_slice(&b);
            Ok(false)
        }
        50..=69 => media.sync().map(|()| true),
        70..=76 if !live.is_empty() => {
            let seq = some_live(rng);
            let len = model.segments[&seq].len() as u64 / 2;
            media.truncate(seq, len)?;
            model.segments.get_mut(&seq).unwrap().truncate(len as usize);
            Ok(true)
        }
        77..=84 => {
            *next_seq += 1;
            let b = bytes(rng, 300);
            media.install(*next_seq, &b)?;
            model.segments.insert(*next_seq, b);
            Ok(true)
        }
        85..=92 if live.len() > 1 => {
            let seq = live[0];
            media.remove(seq)?;
            model.segments.remove(&seq);
            Ok(false)
        }
        93..=99 => {
            let b = bytes(rng, 400);
            media.write_snapshot(&b)?;
            model.snapshot = Some(b);
            Ok(true)
        }
        _ => media.sync().map(|()| true),
    }
}

/// A region of 8 sectors (two banks of 4 KiB): small, so that compactions are frequent.
const REGION: u32 = 8 * SECTOR as u32;

#[test]
fn everything_synced_survives_a_power_cut_anywhere() {
    let mut compactions = 0;
    let mut torn_starts = 0;
    for seed in 0..400u64 {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut flash = SimFlash::new(8);
        // A first life without cuts, then a life cut at a random byte.
        let mut model = Model::default();
        let mut next_seq = 0;
        for life in 0..2 {
            if life == 1 {
                flash.budget = Some(rng.next_u32() as usize % 6_000);
            }
            let mut media = FlashMedia::open(flash, 0, REGION).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(contents(&mut media), model, "seed {seed}: reopened as left");
            // States since the last durable point: what a cut may leave.
            let mut since_durable = vec![model.clone()];
            let mut cut = false;
            for _ in 0..200 {
                match random_op(&mut rng, &mut media, &mut model, &mut next_seq) {
                    Ok(true) => since_durable = vec![model.clone()],
                    Ok(false) => since_durable.push(model.clone()),
                    Err(FlashMediaError::Flash(SimError::PowerCut)) => {
                        // The operation cut may or may not have taken effect.
                        since_durable.push(model.clone());
                        cut = true;
                        break;
                    }
                    Err(e) => panic!("seed {seed}: {e}"),
                }
            }
            compactions += media.stats().compactions;
            flash = media.into_flash();
            flash.budget = None;
            if !cut {
                media = FlashMedia::open(flash, 0, REGION).unwrap();
                media.sync().unwrap();
                model = contents(&mut media);
                flash = media.into_flash();
                continue;
            }
            let mut reopened = FlashMedia::open(flash, 0, REGION)
                .unwrap_or_else(|e| panic!("seed {seed}: no recovery after a cut: {e}"));
            if reopened.stats().compactions > 0 {
                torn_starts += 1;
            }
            let got = contents(&mut reopened);
            let at = since_durable.iter().position(|m| *m == got);
            assert!(
                at.is_some(),
                "seed {seed}: recovered a state that never was durable: {got:?}\nlast durable: {:?}",
                since_durable[0]
            );
            model = got;
            flash = reopened.into_flash();
        }
    }
    assert!(compactions > 100, "compactions were exercised: {compactions}");
    assert!(torn_starts > 10, "starts after a torn record were exercised: {torn_starts}");
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
