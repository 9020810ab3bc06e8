//! The sweep must exercise every protocol path it claims to test: this runs the standard
//! seed profiles and checks that each Raft mechanism actually fired (and that no node
//! ever saw a malformed message from a correct peer).

use concord_core::Metrics;
use concord_tests::sim::{self, SimConfig};

#[test]
fn the_standard_seeds_exercise_every_raft_mechanism() {
    let mut total = Metrics::default();
    let mut reports = Vec::new();
    for seed in 0..120 {
        match sim::run(SimConfig::for_seed(seed)) {
            Ok(r) => {
                total.add(&r.metrics);
                reports.push((r.crashes, r.partitions, r.membership_changes, r.transfers, r.pauses));
            }
            Err(v) => panic!("{v}"),
        }
    }
    println!("{total:#?}");
    for (name, value) in total.named() {
        if name == "malformed_messages" {
            assert_eq!(value, 0, "correct peers never send malformed messages");
        } else if name == "ticks_proposed" {
            // The register machine has no deadlines; ticks are exercised by the primitives
            // simulator (`psim_seeds.rs`).
            assert_eq!(value, 0, "a machine without deadlines never needs a tick");
        } else {
            assert!(value > 0, "no seed exercised {name}");
        }
    }
    assert!(reports.iter().any(|r| r.0 > 0), "crash-restarts happened");
    assert!(reports.iter().any(|r| r.1 > 0), "link faults happened");
    assert!(reports.iter().any(|r| r.2 > 0), "membership changes committed");
    assert!(reports.iter().any(|r| r.3 > 0), "leadership transfers completed");
    assert!(reports.iter().any(|r| r.4 > 0), "process pauses happened");
}
