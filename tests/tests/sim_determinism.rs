//! Same seed ⇒ byte-identical trace; different seeds ⇒ different runs.

use concord_tests::sim::{self, Faults, SimConfig};

fn traced(seed: u64) -> sim::Report {
    let mut cfg = SimConfig::for_seed(seed);
    cfg.faults = Faults::all();
    cfg.trace = true;
    match sim::run(cfg) {
        Ok(r) => r,
        Err(v) => panic!("{v}"),
    }
}

#[test]
fn same_seed_gives_a_byte_identical_trace() {
    let a = traced(4242);
    let b = traced(4242);
    assert!(a.trace.len() > 1000, "the trace should record the run ({} lines)", a.trace.len());
    assert_eq!(a.trace.join("\n").into_bytes(), b.trace.join("\n").into_bytes());
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!((a.steps, a.ops, a.committed), (b.steps, b.ops, b.committed));
}

#[test]
fn different_seeds_give_different_runs() {
    let a = traced(1);
    let b = traced(2);
    assert_ne!(a.trace_hash, b.trace_hash);
}
