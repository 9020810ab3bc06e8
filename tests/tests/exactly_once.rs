//! Exactly-once: a command retried or duplicated — by the network, by the client after a
//! lost answer, or at a new leader after the old one crashed — is applied once and every
//! copy is answered with the same result.
//!
//! Each test counts applications directly: increments of a counter whose values must be
//! exactly 1..=n for n increments, and the log itself, which must hold more than one
//! entry for the same (session, sequence) — so the duplicates did reach the machine and
//! were turned away there. The last test breaks the reply cache on purpose and shows the
//! same checks fail.

use concord_core::client::{ClientEvent, OpId};
use concord_core::machine::lock::{LockOp, LockQuery};
use concord_core::machine::long::{LongOp, LongQuery};
use concord_core::machine::{Command, MachineBugs, Op, QueryOp, Reply};
use concord_core::{Consistency, Payload};
use concord_tests::group::Group;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

const TTL_MS: u64 = 10_000;
/// Virtual time any single step below may take.
const BOUND_US: u64 = 20_000_000;

fn incr() -> Op {
    Op::Long(LongOp::AddAndGet { name: "n".into(), delta: 1 })
}

fn started(nodes: u64, clients: usize, bugs: MachineBugs) -> Group {
    let mut g = Group::new(nodes, clients, TTL_MS, bugs);
    let ok = g.run_until(BOUND_US, |g| g.leader().is_some() && (0..clients).all(|c| g.has_session(c)));
    assert!(ok, "a leader is elected and every client opens a session");
    g
}

fn wait_done(g: &mut Group, c: usize, op: OpId) -> ClientEvent {
    let ok = g.run_until(BOUND_US, |g| g.result(c, op).is_some());
    assert!(ok, "c{c} {op:?} finishes within {BOUND_US} µs");
    g.result(c, op).cloned().expect("finished")
}

fn long_result(e: &ClientEvent) -> i64 {
    match e {
        ClientEvent::Done { result: Ok(Reply::Long(v)), .. } => *v,
        other => panic!("expected a counter value, got {other:?}"),
    }
}

/// The counter's value, read linearizably through client `c`.
fn counter(g: &mut Group, c: usize) -> i64 {
    let op = g.read(c, QueryOp::Long(LongQuery::Get { name: "n".into() }), Consistency::Linearizable);
    long_result(&wait_done(g, c, op))
}

/// How many entries in the log of node `id` carry each (session, sequence).
fn log_copies(g: &Group, id: u64) -> BTreeMap<(u64, u64), usize> {
    let mut copies = BTreeMap::new();
    for e in &g.disks[&id].entries {
        if let Payload::Command(bytes) = &e.payload {
            let cmd: Command = postcard::from_bytes(bytes).expect("log entries hold commands");
            if let Some(s) = cmd.session.filter(|s| s.seq > 0) {
                *copies.entry((s.id.0, s.seq)).or_default() += 1;
            }
        }
    }
    copies
}

fn duplicated_in_log(g: &Group, id: u64) -> usize {
    log_copies(g, id).values().filter(|n| **n > 1).count()
}

/// The increments' results must be exactly 1..=n and the counter must read n: each was
/// applied once.
fn check_applied_once(values: &[i64], unknown: usize, final_value: i64) -> Result<(), String> {
    let distinct: BTreeSet<i64> = values.iter().copied().collect();
    if distinct.len() != values.len() {
        return Err(format!("two increments returned the same value: {values:?}"));
    }
    let applied = values.len() as i64;
    if final_value < applied || final_value > applied + unknown as i64 {
        return Err(format!(
            "{applied} increments acknowledged ({unknown} unknown), but the counter reads {final_value}"
        ));
    }
    if let Some(v) = distinct.iter().find(|v| **v < 1 || **v > final_value) {
        return Err(format!("an increment returned {v}, outside 1..={final_value}"));
    }
    Ok(())
}

/// `n` increments from client 0, every request arriving twice (the copy 3 ms after the
/// original); their values and the counter afterwards.
fn increments_delivered_twice(g: &mut Group, n: usize) -> (Vec<i64>, i64) {
    g.request_fate = Box::new(|_, _, _| vec![500, 3_500]);
    let mut values = Vec::new();
    for _ in 0..n {
        let op = g.submit(0, incr());
        values.push(long_result(&wait_done(g, 0, op)));
    }
    g.run_for(50_000);
    (values, counter(g, 0))
}

#[test]
fn every_request_delivered_twice_is_applied_once() {
    let mut g = started(3, 1, MachineBugs::default());
    let (values, total) = increments_delivered_twice(&mut g, 20);
    check_applied_once(&values, 0, total).unwrap();
    assert_eq!(total, 20);
    let leader = g.leader().expect("a leader");
    assert!(duplicated_in_log(&g, leader) >= 20, "each increment's copy reached the log too");
}

#[test]
fn a_retry_after_a_lost_answer_is_answered_from_the_reply_cache() {
    let mut g = started(3, 1, MachineBugs::default());
    // The first answer to an increment is lost with its connection.
    let lost = Rc::new(RefCell::new(0));
    let l = lost.clone();
    g.answer_fate = Box::new(move |_, _, msg| {
        let is_long = format!("{msg:?}").contains("Long(");
        if is_long && *l.borrow() == 0 {
            *l.borrow_mut() += 1;
            return false;
        }
        true
    });
    let op = g.submit(0, incr());
    let first = long_result(&wait_done(&mut g, 0, op));
    assert_eq!(*lost.borrow(), 1, "the first answer was lost");
    assert_eq!(first, 1, "the retry got the original result");
    let op = g.submit(0, incr());
    assert_eq!(long_result(&wait_done(&mut g, 0, op)), 2);
    assert_eq!(counter(&mut g, 0), 2);
    let leader = g.leader().expect("a leader");
    assert_eq!(duplicated_in_log(&g, leader), 1, "the retry reached the log and was turned away");
}

#[test]
fn a_retry_at_a_new_leader_after_a_crash_is_applied_once() {
    let mut g = started(3, 1, MachineBugs::default());
    let old = g.leader().expect("a leader");
    // The leader commits the increment, and then crashes before its answer leaves.
    let crash_now = Rc::new(RefCell::new(false));
    let flag = crash_now.clone();
    g.answer_fate = Box::new(move |node, _, msg| {
        if node == old && format!("{msg:?}").contains("Long(") {
            *flag.borrow_mut() = true;
            return false;
        }
        true
    });
    let op = g.submit(0, incr());
    assert!(g.run_until(BOUND_US, |_| *crash_now.borrow()), "the increment was applied at n{old}");
    g.crash(old);
    let v = long_result(&wait_done(&mut g, 0, op));
    let new = g.leader().expect("a new leader");
    assert_ne!(new, old);
    assert_eq!(v, 1, "the retry at n{new} was answered from the replicated reply cache");
    assert_eq!(counter(&mut g, 0), 1);
    assert_eq!(duplicated_in_log(&g, new), 1, "the retry was appended at n{new} and turned away");
    // The old leader comes back and agrees.
    g.restart(old);
    let op = g.submit(0, incr());
    assert_eq!(long_result(&wait_done(&mut g, 0, op)), 2);
    g.run_for(200_000);
    let machine = g.replicas[&old].node().machine();
    assert_eq!(
        machine.read(&concord_core::machine::Query {
            session: None,
            op: QueryOp::Long(LongQuery::Get { name: "n".into() })
        }),
        Ok(Reply::Long(2))
    );
}

#[test]
fn a_queued_lock_request_retried_across_a_leader_change_is_granted_once() {
    let mut g = started(3, 2, MachineBugs::default());
    let lock = |name: &str| Op::Lock(LockOp::Lock { name: name.into(), timeout_ms: None });
    let held = g.submit(0, lock("L"));
    let ClientEvent::Done { result: Ok(Reply::Fence(f0)), .. } = wait_done(&mut g, 0, held) else {
        panic!("c0 takes the lock")
    };
    // c1 queues behind c0, its request delivered three times.
    g.request_fate = Box::new(|_, _, _| vec![500, 2_000, 9_000]);
    let queued = g.submit(1, lock("L"));
    g.run_for(100_000);
    assert!(g.result(1, queued).is_none(), "c1 waits");
    // The leader crashes; c1 resends its pending request to the new leader.
    let old = g.leader().expect("a leader");
    g.crash(old);
    assert!(g.run_until(BOUND_US, |g| g.leader().is_some_and(|l| l != old)));
    g.run_for(1_000_000);
    // c0 releases; c1 is granted once, with one hold.
    let unlock = g.submit(0, Op::Lock(LockOp::Unlock { name: "L".into() }));
    wait_done(&mut g, 0, unlock);
    let ClientEvent::Done { result: Ok(Reply::Fence(f1)), queued: true, .. } = wait_done(&mut g, 1, queued)
    else {
        panic!("c1 is granted the lock by c0's unlock")
    };
    assert!(f1 > f0, "fences increase");
    let count =
        g.read(1, QueryOp::Lock(LockQuery::LockCount { name: "L".into() }), Consistency::Linearizable);
    let ClientEvent::Done { result: Ok(Reply::Count(holds)), .. } = wait_done(&mut g, 1, count) else {
        panic!("lock count")
    };
    assert_eq!(holds, 1, "the duplicates did not add holds");
    let unlock = g.submit(1, Op::Lock(LockOp::Unlock { name: "L".into() }));
    let ClientEvent::Done { result: Ok(Reply::Count(0)), .. } = wait_done(&mut g, 1, unlock) else {
        panic!("one unlock releases it")
    };
    // Nobody is left queued: c0 takes it at once.
    let again = g.submit(0, Op::Lock(LockOp::Lock { name: "L".into(), timeout_ms: Some(0) }));
    let ClientEvent::Done { result: Ok(Reply::Fence(_)), .. } = wait_done(&mut g, 0, again) else {
        panic!("the lock is free after c1's single unlock")
    };
}

/// Three clients increment under a network that loses, duplicates and delays requests,
/// loses answers (with their connections), and a leader that crashes and comes back.
/// What one faulty run of increments saw.
struct Run {
    /// The values increments returned.
    values: Vec<i64>,
    /// Increments whose outcome stayed unknown.
    unknown: usize,
    /// The counter at the end.
    total: i64,
    /// (session, sequence) pairs the leader's log holds more than once.
    duplicated: usize,
    /// Leader crashes.
    crashes: usize,
}

fn increments_under_faults(seed: u64, bugs: MachineBugs) -> Run {
    const CLIENTS: usize = 3;
    const PER_CLIENT: usize = 25;
    let mut g = started(3, CLIENTS, bugs);
    let rng = Rc::new(RefCell::new(Xoshiro256PlusPlus::seed_from_u64(seed)));
    let r = rng.clone();
    g.request_fate = Box::new(move |_, _, _| {
        let mut r = r.borrow_mut();
        let copies = [0, 1, 1, 2, 2, 3][(r.next_u64() % 6) as usize];
        (0..copies).map(|_| 300 + r.next_u64() % 40_000).collect()
    });
    let r = rng.clone();
    g.answer_fate = Box::new(move |_, _, _| r.borrow_mut().next_u64() % 6 != 0);
    let mut pending: Vec<Option<OpId>> = vec![None; CLIENTS];
    let mut issued = [0usize; CLIENTS];
    let (mut values, mut unknown) = (Vec::new(), 0);
    let mut down: Option<(u64, u64)> = None;
    let mut crashes = 0;
    let end = g.now + 60_000_000;
    while g.now < end && (issued.iter().any(|n| *n < PER_CLIENT) || pending.iter().any(Option::is_some)) {
        for c in 0..CLIENTS {
            if let Some(op) = pending[c] {
                match g.result(c, op).cloned() {
                    Some(ClientEvent::Done { result: Ok(Reply::Long(v)), .. }) => values.push(v),
                    Some(ClientEvent::Done { result: Err(_), .. }) => unknown += 1,
                    Some(other) => panic!("unexpected {other:?}"),
                    None => continue,
                }
                pending[c] = None;
            }
            if pending[c].is_none() && issued[c] < PER_CLIENT {
                issued[c] += 1;
                pending[c] = Some(g.submit(c, incr()));
            }
        }
        // Now and then the leader crashes; it restarts 0.5–1.5 s later.
        let roll = rng.borrow_mut().next_u64();
        match down {
            None if roll % 700 == 0 => {
                if let Some(l) = g.leader() {
                    g.crash(l);
                    crashes += 1;
                    down = Some((l, g.now + 500_000 + roll % 1_000_000));
                }
            }
            Some((id, at)) if g.now >= at => {
                g.restart(id);
                down = None;
            }
            _ => {}
        }
        g.run_for(1_000);
    }
    assert!(pending.iter().all(Option::is_none), "seed {seed}: every increment finished");
    if let Some((id, _)) = down {
        g.restart(id);
    }
    g.answer_fate = Box::new(|_, _, _| true);
    g.request_fate = Box::new(|_, _, _| vec![500]);
    let total = counter(&mut g, 0);
    let leader = g.leader().expect("a leader");
    Run { values, unknown, total, duplicated: duplicated_in_log(&g, leader), crashes }
}

#[test]
fn increments_under_loss_duplication_and_leader_crashes_are_each_applied_once() {
    let (mut duplicated, mut acked, mut crashes, mut unknown) = (0, 0, 0, 0);
    for seed in 0..6 {
        let run = increments_under_faults(seed, MachineBugs::default());
        if let Err(e) = check_applied_once(&run.values, run.unknown, run.total) {
            panic!("seed {seed}: {e}");
        }
        duplicated += run.duplicated;
        acked += run.values.len();
        crashes += run.crashes;
        unknown += run.unknown;
    }
    println!(
        "{acked} increments acknowledged, {unknown} unknown; {crashes} leader crashes; \
         {duplicated} (session, seq) pairs duplicated in the log"
    );
    assert!(acked >= 6 * 70, "most increments were acknowledged");
    assert!(duplicated > 0, "duplicates reached the log");
    assert!(crashes >= 6, "leaders crashed under the load");
}

/// The checks above can fail: with the reply cache ignored, duplicates are applied again.
#[test]
fn with_the_reply_cache_broken_the_same_checks_fail() {
    let bugs = MachineBugs { reply_cache_ignored: true, ..MachineBugs::default() };
    let mut g = started(3, 1, bugs);
    let (values, total) = increments_delivered_twice(&mut g, 5);
    let err = check_applied_once(&values, 0, total).expect_err("duplicates were applied twice");
    println!("caught: {err}");
    let run = increments_under_faults(0, bugs);
    assert!(check_applied_once(&run.values, run.unknown, run.total).is_err());
}
