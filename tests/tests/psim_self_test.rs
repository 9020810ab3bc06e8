//! The primitives simulator's checks must be able to fail: with a machine rule deliberately
//! broken in every replica (feature `bug-injection`, test builds only), each bug is reported
//! as a violation of the property it breaks, within a bounded number of seeds.

use concord_tests::psim::{self, PsimConfig};

/// Runs standard seeds with `bug` until one fails; returns the seed and the property.
fn first_violation(bug: &str, max_seeds: u64) -> (u64, &'static str) {
    for seed in 0..max_seeds {
        let mut cfg = PsimConfig::for_seed(seed);
        cfg.enable_bug(bug).unwrap();
        if let Err(v) = psim::run(cfg) {
            println!("{bug}: {v}");
            assert!(v.replay.contains(&format!("--bug {bug}")), "the replay command names the bug");
            return (seed, v.property);
        }
    }
    panic!("{bug}: no violation within {max_seeds} seeds");
}

/// Each bug with the property that must report it.
const CAUGHT_AS: [(&str, &str); 5] = [
    ("reply-cache-ignored", "linearizability"),
    ("lock-ignores-holder", "mutual exclusion"),
    ("latch-releases-one-early", "latch never opens early"),
    ("session-end-keeps-locks", "session effects vanish"),
    ("watch-drops-deletes", "watch gap-free and in order"),
];

#[test]
fn every_machine_bug_is_caught_as_the_property_it_breaks() {
    assert_eq!(CAUGHT_AS.map(|(b, _)| b), PsimConfig::BUGS, "every bug has an expected property");
    for (bug, expected) in CAUGHT_AS {
        let (seed, property) = first_violation(bug, 40);
        assert_eq!(property, expected, "{bug} (seed {seed}) was reported as {property}");
    }
}

#[test]
fn unknown_bugs_are_refused() {
    let mut cfg = PsimConfig::for_seed(0);
    assert!(cfg.enable_bug("no-such-bug").is_err());
    for b in PsimConfig::BUGS {
        cfg.enable_bug(b).unwrap();
    }
}
