//! The checkers must be able to fail: with a deliberately broken Raft rule switched on
//! (feature `bug-injection`, test builds only), the simulator reports a safety violation
//! within a bounded number of seeds.

use concord_core::{Consistency, Request, Response, Role};
use concord_tests::linearizability::{self, CheckResult, KvInput, KvModel, KvOutput, Operation};
use concord_tests::register::{RegisterCommand, RegisterOutput, RegisterQuery};
use concord_tests::sim::{self, Faults, Sim, SimConfig};

fn write(key: u64, value: u64) -> Request {
    Request::Propose(RegisterCommand::Write { key, value }.encode())
}

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
    let found = first_violation(5000, "commit-prior-term-by-count");
    let (seed, property) = found.expect("no violation within 5000 seeds");
    assert_ne!(property, "liveness", "seed {seed} should fail on safety, not liveness");
}

/// A leader cut off from the others keeps believing it leads until CheckQuorum fires. A
/// read served there in that window, after the new leader committed a write, is stale —
/// unless the read path (ReadIndex confirmation or a correctly sized lease) refuses it.
/// Returns the value the old leader answered, if it answered, and the checker's verdict.
fn read_from_a_deposed_leader(
    bug: Option<&str>,
    consistency: Consistency,
) -> (Option<Option<u64>>, CheckResult) {
    let mut cfg = SimConfig::for_seed(3);
    cfg.nodes = 3;
    cfg.initial_voters = 3;
    cfg.clients = 0;
    cfg.faults = Faults::none();
    if let Some(bug) = bug {
        cfg.enable_bug(bug).unwrap();
    }
    let mut sim = Sim::with_config(cfg);
    let old = sim.elect(5_000_000).unwrap().expect("leader");
    let w1 = sim.request(old, write(0, 1));
    let r1 = sim.await_reply(w1, 1_000_000).unwrap().expect("first write");
    assert!(matches!(r1.result, Ok(Response::Applied { .. })), "{:?}", r1.result);
    let t0 = sim.now_us();
    sim.run_for(60_000).unwrap(); // renew the lease
    sim.isolate(old);
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let elected = sim
        .run_until(2_000_000, |s| {
            others.iter().any(|id| {
                s.is(*id, Role::Leader)
                    && s.node(*id).unwrap().commit_index() == s.node(*id).unwrap().status().last_index
            })
        })
        .unwrap();
    assert!(elected, "the majority elects a leader");
    let new = *others.iter().find(|id| sim.is(**id, Role::Leader)).unwrap();
    let w2_call = sim.now_us();
    let w2 = sim.request(new, write(0, 2));
    let r2 = sim.await_reply(w2, 1_000_000).unwrap().expect("second write");
    assert!(matches!(r2.result, Ok(Response::Applied { .. })), "{:?}", r2.result);
    let w2_ret = sim.now_us();
    assert!(sim.is(old, Role::Leader), "the old leader has not noticed yet (CheckQuorum pending)");
    sim.run_for(500).unwrap(); // the read starts strictly after the write returned
    let r_call = sim.now_us();
    let r = sim.request(old, Request::Read { query: RegisterQuery { key: 0 }.encode(), consistency });
    sim.run_for(1_000).unwrap();
    let answered = sim.reply_to(r).and_then(|reply| match &reply.result {
        Ok(Response::Read { output: RegisterOutput::Value(v), .. }) => Some(*v),
        _ => None,
    });
    let mut history = vec![
        Operation::completed(0, 0, t0, KvInput::Write { key: 0, value: 1 }, KvOutput::Write),
        Operation::completed(1, w2_call, w2_ret, KvInput::Write { key: 0, value: 2 }, KvOutput::Write),
    ];
    if let Some(v) = answered {
        history.push(Operation::completed(
            2,
            r_call,
            sim.now_us(),
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
