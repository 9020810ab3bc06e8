//! Leader election: campaigns and fences, FIFO candidates, proclaim, resign, failover,
//! timeouts, limits, exactly-once retries and snapshots.

use super::{err, ok, T};
use crate::machine::election::{
    ElectionChange, ElectionError, ElectionEvent, ElectionOp, ElectionQuery, LeaderInfo,
};
use crate::machine::session::SessionOp;
use crate::machine::{
    Error, Event, Fence, Limit, Limits, Op, Outcome, QueryOp, Reply, SessionEnd, SessionId,
};
use alloc::vec;
use alloc::vec::Vec;

/// Long enough that no session expires unless a test means it to.
const TTL_MS: u64 = 60_000;

fn campaign(name: &str, value: &[u8]) -> Op {
    Op::Election(ElectionOp::Campaign { name: name.into(), value: value.into(), timeout_ms: None })
}

fn campaign_for(name: &str, value: &[u8], timeout_ms: u64) -> Op {
    Op::Election(ElectionOp::Campaign {
        name: name.into(),
        value: value.into(),
        timeout_ms: Some(timeout_ms),
    })
}

fn proclaim(name: &str, value: &[u8]) -> Op {
    Op::Election(ElectionOp::Proclaim { name: name.into(), value: value.into() })
}

fn resign(name: &str) -> Op {
    Op::Election(ElectionOp::Resign { name: name.into() })
}

fn fence(index: u64) -> Reply {
    Reply::Fence(Fence(index))
}

fn not_leader() -> Error {
    Error::Election(ElectionError::NotLeader)
}

fn leader_info(session: SessionId, value: &[u8], index: u64) -> LeaderInfo {
    LeaderInfo { session, value: value.into(), fence: Fence(index) }
}

fn change(name: &str, change: ElectionChange, leader: Option<LeaderInfo>, index: u64) -> Event {
    Event::Election(ElectionEvent { name: name.into(), change, leader, index })
}

fn elected(name: &str, session: SessionId, value: &[u8], index: u64) -> Event {
    change(name, ElectionChange::Elected, Some(leader_info(session, value, index)), index)
}

fn granted(session: SessionId, seq: u64, index: u64) -> Event {
    Event::Completed { session, seq, result: Ok(fence(index)), index }
}

fn failed(session: SessionId, seq: u64, error: Error, index: u64) -> Event {
    Event::Completed { session, seq, result: Err(error), index }
}

/// `s` is elected at once; returns the fence (the index of its election).
fn win(t: &mut T, s: SessionId, name: &str, value: &[u8]) -> u64 {
    let index = t.next_index();
    assert_eq!(ok(t.run(s, campaign(name, value))), fence(index));
    index
}

/// `s` applies `op`, which must queue; returns the sequence it waits with.
fn wait(t: &mut T, s: SessionId, op: Op) -> u64 {
    assert_eq!(t.run(s, op), Outcome::Pending);
    t.last_seq(s)
}

fn leader(t: &T, name: &str) -> Option<LeaderInfo> {
    match t.query(None, QueryOp::Election(ElectionQuery::Leader { name: name.into() })) {
        Ok(Reply::Leader(l)) => l,
        other => panic!("expected Leader, got {other:?}"),
    }
}

#[test]
fn the_first_candidate_leads_with_the_index_of_its_election() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    assert_eq!(leader(&t, "e"), None);
    let i = win(&mut t, a, "e", b"addr-a");
    assert_eq!(leader(&t, "e"), Some(leader_info(a, b"addr-a", i)));
    assert_eq!(t.events(), vec![elected("e", a, b"addr-a", i)]);
    assert_eq!(t.m.view().elections, vec![("e".into(), Some(leader_info(a, b"addr-a", i)))]);
}

#[test]
fn candidates_queue_in_order_and_a_resignation_elects_the_next_in_the_same_entry() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let first = win(&mut t, a, "e", b"a");
    let b_seq = wait(&mut t, b, campaign("e", b"b"));
    let c_seq = wait(&mut t, c, campaign("e", b"c"));
    t.events();
    let i = t.next_index();
    assert_eq!(ok(t.run(a, resign("e"))), Reply::Unit);
    assert_eq!(
        t.events(),
        vec![granted(b, b_seq, i), change("e", ElectionChange::Resigned, None, i), elected("e", b, b"b", i),]
    );
    assert_eq!(leader(&t, "e"), Some(leader_info(b, b"b", i)));
    let j = t.next_index();
    ok(t.run(b, resign("e")));
    assert_eq!(
        t.events(),
        vec![granted(c, c_seq, j), change("e", ElectionChange::Resigned, None, j), elected("e", c, b"c", j)]
    );
    assert!(first < i && i < j);
    // The last leader resigning leaves the election empty, and forgotten.
    ok(t.run(c, resign("e")));
    assert_eq!(t.events(), vec![change("e", ElectionChange::Resigned, None, j + 1)]);
    assert_eq!(leader(&t, "e"), None);
    assert!(t.m.view().elections.is_empty());
    assert_eq!(err(t.run(c, resign("e"))), not_leader());
    // A new campaign is a new election with a larger fence.
    assert!(win(&mut t, a, "e", b"a") > j);
}

#[test]
fn the_leader_proclaims_new_values() {
    let mut t = T::with_limits(Limits { election_value_bytes_max: 4, ..Limits::default() });
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let i = win(&mut t, a, "e", b"v1");
    wait(&mut t, b, campaign("e", b"b"));
    t.events();
    let j = t.next_index();
    assert_eq!(ok(t.run(a, proclaim("e", b"v2"))), Reply::Unit);
    // The fence stays that of the election.
    assert_eq!(t.events(), vec![change("e", ElectionChange::Proclaimed, Some(leader_info(a, b"v2", i)), j)]);
    assert_eq!(leader(&t, "e"), Some(leader_info(a, b"v2", i)));
    assert_eq!(ok(t.run(a, proclaim("e", b""))), Reply::Unit);
    assert_eq!(
        err(t.run(a, proclaim("e", b"12345"))),
        Error::Limit { limit: Limit::ElectionValueBytes, max: 4 }
    );
    assert_eq!(leader(&t, "e"), Some(leader_info(a, b"", i)));
    // Only the leader proclaims: not a candidate, not a stranger, not in an unknown election.
    assert_eq!(err(t.run(b, proclaim("e", b"x"))), not_leader());
    let c = t.open(TTL_MS);
    assert_eq!(err(t.run(c, proclaim("e", b"x"))), not_leader());
    assert_eq!(err(t.run(a, proclaim("other", b"x"))), not_leader());
    assert_eq!(err(t.anon(proclaim("e", b"x"))), Error::SessionRequired);
    t.events();
    assert_eq!(leader(&t, "e"), Some(leader_info(a, b"", i)));
}

#[test]
fn the_leader_campaigning_again_gets_its_fence_back() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let i = win(&mut t, a, "e", b"a");
    t.events();
    assert_eq!(ok(t.run(a, campaign("e", b"other"))), fence(i));
    assert_eq!(ok(t.run(a, campaign_for("e", b"other", 0))), fence(i));
    // Nothing changed, so nothing to observe.
    assert_eq!(t.events(), vec![]);
    assert_eq!(leader(&t, "e"), Some(leader_info(a, b"a", i)));
    wait(&mut t, b, campaign("e", b"b"));
    assert_eq!(err(t.run(b, campaign("e", b"b"))), Error::Election(ElectionError::AlreadyCampaigning));
    assert_eq!(err(t.run(b, campaign_for("e", b"b", 0))), Error::Election(ElectionError::AlreadyCampaigning));
}

#[test]
fn a_candidate_withdraws_by_resigning() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    win(&mut t, a, "e", b"a");
    let b_seq = wait(&mut t, b, campaign("e", b"b"));
    let c_seq = wait(&mut t, c, campaign("e", b"c"));
    t.events();
    let i = t.next_index();
    assert_eq!(ok(t.run(b, resign("e"))), Reply::Unit);
    // The withdrawn campaign is answered; the leader is untouched.
    assert_eq!(t.events(), vec![failed(b, b_seq, Error::Election(ElectionError::Withdrawn), i)]);
    assert_eq!(leader(&t, "e").map(|l| l.session), Some(a));
    let j = t.next_index();
    ok(t.run(a, resign("e")));
    assert!(t.events().contains(&granted(c, c_seq, j)));
    assert_eq!(leader(&t, "e").map(|l| l.session), Some(c));
    assert_eq!(err(t.run(b, resign("e"))), not_leader());
    assert_eq!(err(t.run(b, resign("never"))), not_leader());
    assert_eq!(err(t.anon(resign("e"))), Error::SessionRequired);
}

#[test]
fn a_leaders_session_end_fails_over_to_the_next_candidate() {
    let mut t = T::new();
    let a = t.open(500);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let first = win(&mut t, a, "e", b"a");
    win(&mut t, c, "f", b"c");
    let a_seq = wait(&mut t, a, campaign("f", b"a"));
    let b_seq = wait(&mut t, b, campaign("e", b"b"));
    t.events();
    t.advance_ms(500);
    let i = t.next_index();
    t.tick();
    let events = t.events();
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events.contains(&failed(a, a_seq, Error::SessionLost(a), i)));
    assert!(events.contains(&granted(b, b_seq, i)));
    assert!(events.contains(&Event::SessionEnded { session: a, reason: SessionEnd::Expired, index: i }));
    // Observers see the failover and then the election, in that order.
    let changes: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::Election(_))).collect();
    assert_eq!(changes, vec![&change("e", ElectionChange::Failover, None, i), &elected("e", b, b"b", i)]);
    assert!(i > first);
    assert_eq!(leader(&t, "e"), Some(leader_info(b, b"b", i)));
    // a's candidacy in `f` is gone: c resigning leaves nobody.
    ok(t.run(c, resign("f")));
    assert_eq!(leader(&t, "f"), None);
}

#[test]
fn a_leaders_close_with_no_candidates_leaves_the_election_empty() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    win(&mut t, a, "e", b"a");
    t.events();
    let i = t.next_index();
    ok(t.run(a, Op::Session(SessionOp::Close)));
    assert_eq!(
        t.events(),
        vec![
            change("e", ElectionChange::Failover, None, i),
            Event::SessionEnded { session: a, reason: SessionEnd::Closed, index: i },
        ]
    );
    assert_eq!(leader(&t, "e"), None);
    assert!(t.m.view().elections.is_empty());
}

#[test]
fn a_try_campaign_wins_only_if_nobody_leads() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let i = t.next_index();
    assert_eq!(ok(t.run(a, campaign_for("e", b"a", 0))), fence(i));
    assert_eq!(err(t.run(b, campaign_for("e", b"b", 0))), Error::Timeout);
    // It did not queue: the leader resigning leaves nobody.
    ok(t.run(a, resign("e")));
    assert_eq!(leader(&t, "e"), None);
    assert!(!t.events().iter().any(|e| matches!(e, Event::Completed { .. })));
}

#[test]
fn a_campaign_that_times_out_leaves_the_queue() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    win(&mut t, a, "e", b"a");
    let b_seq = wait(&mut t, b, campaign_for("e", b"b", 100));
    let c_seq = wait(&mut t, c, campaign_for("e", b"c", 300));
    t.events();
    t.advance_ms(99);
    t.tick();
    assert_eq!(t.events(), vec![]);
    t.advance_ms(1);
    let i = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![failed(b, b_seq, Error::Timeout, i)]);
    let j = t.next_index();
    ok(t.run(a, resign("e")));
    assert!(t.events().contains(&granted(c, c_seq, j)));
    assert_eq!(leader(&t, "e"), Some(leader_info(c, b"c", j)));
    // The elected candidate's timer went with its election.
    t.advance_ms(300);
    t.tick();
    assert_eq!(t.events(), vec![]);
    assert_eq!(leader(&t, "e").map(|l| l.session), Some(c));
}

#[test]
fn election_limits_and_session_rules_are_typed_errors() {
    let limits = Limits {
        name_bytes_max: 4,
        objects_per_kind_max: 1,
        waiters_per_object_max: 1,
        wait_timeout_max_ms: 1000,
        election_value_bytes_max: 3,
        ..Limits::default()
    };
    let mut t = T::with_limits(limits);
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    assert_eq!(err(t.run(a, campaign("", b""))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.run(a, campaign("abcde", b""))), Error::Limit { limit: Limit::NameBytes, max: 4 });
    assert_eq!(
        err(t.run(a, campaign("e", b"1234"))),
        Error::Limit { limit: Limit::ElectionValueBytes, max: 3 }
    );
    assert_eq!(leader(&t, "e"), None);
    win(&mut t, a, "abcd", b"123");
    assert_eq!(err(t.run(b, campaign("q", b""))), Error::Limit { limit: Limit::Objects, max: 1 });
    assert_eq!(
        err(t.run(b, campaign_for("abcd", b"", 1001))),
        Error::Limit { limit: Limit::WaitTimeout, max: 1000 }
    );
    wait(&mut t, b, campaign_for("abcd", b"", 1000));
    assert_eq!(err(t.run(c, campaign("abcd", b""))), Error::Limit { limit: Limit::Waiters, max: 1 });
    // Campaigning needs a session and a sequence number.
    assert_eq!(err(t.anon(campaign("abcd", b""))), Error::SessionRequired);
    assert_eq!(err(t.run_seq(c, 0, 0, campaign("abcd", b""))), Error::SessionRequired);
    // An election nobody leads or runs in is forgotten and no longer counts.
    ok(t.run(b, resign("abcd")));
    ok(t.run(a, resign("abcd")));
    win(&mut t, c, "q", b"");
}

#[test]
fn a_retried_campaign_is_applied_once() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let i = t.next_index();
    assert_eq!(ok(t.run_seq(a, 1, 1, campaign("e", b"a"))), fence(i));
    assert_eq!(ok(t.run_seq(a, 1, 1, campaign("e", b"a"))), fence(i));
    assert_eq!(t.run_seq(b, 1, 1, campaign("e", b"b")), Outcome::Pending);
    assert_eq!(t.run_seq(b, 1, 1, campaign("e", b"b")), Outcome::Pending);
    t.events();
    let j = t.next_index();
    ok(t.run_seq(a, 2, 2, resign("e")));
    let completions: Vec<Event> =
        t.events().into_iter().filter(|e| matches!(e, Event::Completed { .. })).collect();
    assert_eq!(completions, vec![granted(b, 1, j)]);
    assert_eq!(ok(t.run_seq(b, 1, 1, campaign("e", b"b"))), fence(j));
    // Queued once: when b resigns nobody else is elected.
    ok(t.run_seq(b, 2, 2, resign("e")));
    assert_eq!(leader(&t, "e"), None);
    // A retried resignation does not resign a later leader.
    let k = t.next_index();
    assert_eq!(ok(t.run_seq(a, 3, 3, campaign("e", b"a2"))), fence(k));
    ok(t.run_seq(b, 2, 2, resign("e")));
    assert_eq!(leader(&t, "e").map(|l| l.session), Some(a));
}

#[test]
fn leaders_and_candidates_survive_a_snapshot_and_fail_over_after_restore() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let b = t.open(TTL_MS);
    let c = t.open(TTL_MS);
    let i = win(&mut t, a, "e", b"a");
    let b_seq = wait(&mut t, b, campaign_for("e", b"b", 1000));
    let c_seq = wait(&mut t, c, campaign("e", b"c"));
    t.events();
    t.assert_snapshot_round_trips(&[QueryOp::Election(ElectionQuery::Leader { name: "e".into() })]);
    t.restore_fresh();
    assert_eq!(leader(&t, "e"), Some(leader_info(a, b"a", i)));
    t.advance_ms(1000);
    let j = t.next_index();
    t.tick();
    assert_eq!(t.events(), vec![failed(b, b_seq, Error::Timeout, j)]);
    let k = t.next_index();
    ok(t.run(a, Op::Session(SessionOp::Close)));
    let events = t.events();
    assert!(events.contains(&granted(c, c_seq, k)));
    assert!(events.contains(&change("e", ElectionChange::Failover, None, k)));
    assert!(events.contains(&elected("e", c, b"c", k)));
}
