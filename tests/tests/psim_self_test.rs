//! The primitives simulator's checks must be able to fail: with a machine rule deliberately
//! broken in every replica (feature `bug-injection`, test builds only), each bug is reported
//! as a violation of the property it breaks, within a bounded number of seeds.

use concord_tests::psim::{self, PsimConfig};

/// Runs standard seeds with `bug` until one is reported as `expected`; the seed. A bug
/// may break other properties first (a command applied twice can also leave a waiter
/// unanswered): those seeds are printed and passed over.
fn caught_as(bug: &str, expected: &str, max_seeds: u64) -> u64 {
    for seed in 0..max_seeds {
        let mut cfg = PsimConfig::for_seed(seed);
        cfg.enable_bug(bug).unwrap();
        let Err(v) = psim::run(cfg) else { continue };
        println!("{bug}: {v}");
        assert!(v.replay.contains(&format!("--bug {bug}")), "the replay command names the bug");
        if v.property == expected {
            return seed;
        }
    }
    panic!("{bug}: not reported as {expected} within {max_seeds} seeds");
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
        let seed = caught_as(bug, expected, 40);
        println!("{bug}: caught as {expected} at seed {seed}");
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
