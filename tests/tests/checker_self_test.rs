//! The checkers must be able to fail: with a deliberately broken Raft rule switched on
//! (feature `bug-injection`, test builds only), the simulator reports a safety violation
//! within a bounded number of seeds.

use concord_core::{Consistency, Message, Response, Role};
use concord_tests::harness::{cfg, read, write, H};
use concord_tests::linearizability::{self, CheckResult, KvInput, KvModel, KvOutput, Operation};
use concord_tests::register::RegisterOutput;
use concord_tests::sim::{self, Faults, SimConfig};

/// Runs seeds with `bug` until one violates a *safety* property; returns that seed and
/// property. A broken rule can also wedge a run (reported as a liveness violation); such
/// seeds are skipped, since the point is that the safety checkers see the damage.
fn first_violation(max_seeds: u64, bug: &str) -> Option<(u64, &'static str)> {
    for seed in 0..max_seeds {
        let mut cfg = SimConfig::for_seed(seed);
        cfg.faults = Faults::all();
        cfg.enable_bug(bug).unwrap();
        if let Err(v) = sim::run(cfg) {
            println!("found: {v}");
            if v.property != "liveness" {
                return Some((seed, v.property));
            }
        }
    }
    None
}

#[test]
fn voting_without_the_log_check_is_caught() {
    let found = first_violation(200, "vote-without-log-check");
    let (seed, property) = found.expect("no safety violation within 200 seeds");
    println!("seed {seed}: {property}");
}

#[test]
fn committing_an_earlier_term_entry_by_counting_is_caught() {
    let found = first_violation(5000, "commit-prior-term-by-count");
    let (seed, property) = found.expect("no safety violation within 5000 seeds");
    println!("seed {seed}: {property}");
}

/// A leader cut off from the others keeps believing it leads until CheckQuorum fires. A
/// read served there in that window, after the new leader committed a write, is stale —
/// unless the read path (ReadIndex confirmation or a correctly sized lease) refuses it.
/// Node 1 is cut off and never ticked, so it has not noticed; the others elect node 2.
/// Returns what node 1 answered, if anything, and the checker's verdict on the history.
fn read_from_a_deposed_leader(
    bug: Option<&str>,
    consistency: Consistency,
) -> (Option<Option<u64>>, CheckResult) {
    let mk = |id| {
        let mut c = cfg(id);
        c.bugs.unsafe_long_lease = bug == Some("unsafe-long-lease");
        c.bugs.read_index_without_quorum = bug == Some("read-index-without-quorum");
        c
    };
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], mk);
    h.elect(1);
    let w1 = h.request(1, write(0, 1));
    h.all();
    assert!(matches!(h.reply(w1).unwrap().result, Ok(Response::Applied { .. })));
    let w1_ret = h.now.as_micros();
    h.advance(30_000); // a heartbeat round renews node 1's lease
    h.tick(1);
    h.all();
    let cut = |m: &Message| m.from.0 == 1 || m.to.0 == 1;
    h.advance(400_000);
    for _ in 0..3 {
        h.tick(2);
        h.pump(|m| !cut(m), cut);
    }
    assert_eq!(h.node(2).role(), Role::Leader, "the majority elects node 2");
    let w2_call = h.now.as_micros();
    let w2 = h.request(2, write(0, 2));
    h.pump(|m| !cut(m), cut);
    assert!(matches!(h.reply(w2).unwrap().result, Ok(Response::Applied { .. })));
    let w2_ret = h.now.as_micros();
    h.advance(1_000); // the read starts strictly after the write returned
    assert_eq!(h.node(1).role(), Role::Leader, "node 1 has not noticed");
    let r_call = h.now.as_micros();
    let r = h.request(1, read(0, consistency));
    let answered = h.reply(r).and_then(|reply| match &reply.result {
        Ok(Response::Read { output: RegisterOutput::Value(v), .. }) => Some(*v),
        _ => None,
    });
    let mut history = vec![
        Operation::completed(0, 0, w1_ret, KvInput::Write { key: 0, value: 1 }, KvOutput::Write),
        Operation::completed(1, w2_call, w2_ret, KvInput::Write { key: 0, value: 2 }, KvOutput::Write),
    ];
    if let Some(v) = answered {
        history.push(Operation::completed(
            2,
            r_call,
            r_call + 1,
            KvInput::Read { key: 0 },
            KvOutput::Read(v),
        ));
    }
    (answered, linearizability::check(&KvModel, &history, 100_000))
}

#[test]
fn read_index_without_quorum_confirmation_is_caught() {
    let (answered, verdict) =
        read_from_a_deposed_leader(Some("read-index-without-quorum"), Consistency::Linearizable);
    assert_eq!(answered, Some(Some(1)), "the broken rule serves the stale value");
    assert!(verdict.is_illegal(), "and the linearizability checker rejects it: {verdict:?}");
    let (answered, verdict) = read_from_a_deposed_leader(None, Consistency::Linearizable);
    assert_eq!(answered, None, "the real rule waits for a quorum that never answers");
    assert!(verdict.is_ok());
}

#[test]
fn a_lease_longer_than_the_election_timeout_is_caught() {
    let (answered, verdict) = read_from_a_deposed_leader(Some("unsafe-long-lease"), Consistency::Lease);
    assert_eq!(answered, Some(Some(1)), "the broken lease serves the stale value");
    assert!(verdict.is_illegal(), "and the linearizability checker rejects it: {verdict:?}");
    let (answered, verdict) = read_from_a_deposed_leader(None, Consistency::Lease);
    assert_eq!(answered, None, "the real lease has expired, and ReadIndex cannot confirm");
    assert!(verdict.is_ok());
}
