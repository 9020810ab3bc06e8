//! The checkers must be able to fail: with a deliberately broken Raft rule switched on
//! (feature `bug-injection`, test builds only), the simulator reports a safety violation
//! within a bounded number of seeds.

use concord_tests::sim::{self, Faults, SimConfig};

/// Runs seeds with `bug` until one fails; returns the failing seed and property.
fn first_violation(max_seeds: u64, bug: &str) -> Option<(u64, &'static str)> {
    for seed in 0..max_seeds {
        let mut cfg = SimConfig::for_seed(seed);
        cfg.faults = Faults::all();
        cfg.enable_bug(bug).unwrap();
        if let Err(v) = sim::run(cfg) {
            println!("found: {v}");
            return Some((seed, v.property));
        }
    }
    None
}

#[test]
fn voting_without_the_log_check_is_caught() {
    let found = first_violation(200, "vote-without-log-check");
    let (seed, property) = found.expect("no violation within 200 seeds");
    assert_ne!(property, "liveness", "seed {seed} should fail on safety, not liveness");
}

#[test]
fn committing_an_earlier_term_entry_by_counting_is_caught() {
    let found = first_violation(3000, "commit-prior-term-by-count");
    let (seed, property) = found.expect("no violation within 3000 seeds");
    assert_ne!(property, "liveness", "seed {seed} should fail on safety, not liveness");
}
