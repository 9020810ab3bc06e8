//! The simulator over a range of seeds, each with its own fault profile (every fault kind
//! is switched on in about half of them), plus a block of seeds with every fault at once.
//!
//! `CONCORD_SIM_SEEDS=LO..HI` widens the sweep (the default is 0..1000); for long sweeps
//! prefer `cargo run -p concord-tests --profile sim --bin concord-sim -- --seeds 0..100000`.

use concord_tests::sim::{self, Faults, SimConfig};
use std::collections::BTreeMap;

fn seed_range() -> std::ops::Range<u64> {
    let Ok(spec) = std::env::var("CONCORD_SIM_SEEDS") else { return 0..1000 };
    concord_tests::sweep::parse_seeds("CONCORD_SIM_SEEDS", Some(spec)).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the seeds of `range` that are `part` modulo `parts` (so the parts run in
/// parallel), each with its own fault profile or, with `all_faults`, every fault at once.
fn sweep(range: std::ops::Range<u64>, part: u64, parts: u64, all_faults: bool) {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut seeds = 0;
    let mut failures = Vec::new();
    for seed in range.filter(|s| s % parts == part) {
        let mut cfg = SimConfig::for_seed(seed);
        if all_faults {
            cfg.faults = Faults::all();
        }
        for k in cfg.faults.kinds() {
            *kinds.entry(k).or_default() += 1;
        }
        seeds += 1;
        if let Err(v) = sim::run(cfg) {
            eprintln!("FAILED: {v}");
            failures.push(v.seed);
        }
    }
    println!("{seeds} seeds; seeds per fault kind: {kinds:?}");
    assert!(failures.is_empty(), "failing seeds: {failures:?} (replay commands above)");
}

#[test]
fn seeds_part_0() {
    sweep(seed_range(), 0, 4, false);
}

#[test]
fn seeds_part_1() {
    sweep(seed_range(), 1, 4, false);
}

#[test]
fn seeds_part_2() {
    sweep(seed_range(), 2, 4, false);
}

#[test]
fn seeds_part_3() {
    sweep(seed_range(), 3, 4, false);
}

#[test]
fn every_fault_at_once() {
    sweep(10_000..10_060, 0, 1, true);
}
