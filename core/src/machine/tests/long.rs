//! Atomic longs: every operation and built-in function, wrapping arithmetic, and zero
//! values not taking up an object slot.

use super::{err, ok, T};
use crate::machine::long::{LongFn, LongOp, LongQuery};
use crate::machine::{Error, Limit, Limits, Op, QueryOp, Reply};

fn op(o: LongOp) -> Op {
    Op::Long(o)
}

fn set(name: &str, value: i64) -> Op {
    op(LongOp::Set { name: name.into(), value })
}

fn get(t: &T, name: &str) -> i64 {
    match t.query(None, QueryOp::Long(LongQuery::Get { name: name.into() })) {
        Ok(Reply::Long(v)) => v,
        other => panic!("get failed: {other:?}"),
    }
}

fn apply_q(t: &T, name: &str, f: LongFn) -> Reply {
    t.query(None, QueryOp::Long(LongQuery::Apply { name: name.into(), f })).unwrap()
}

#[test]
fn an_unwritten_counter_reads_zero() {
    let t = T::new();
    assert_eq!(get(&t, "c"), 0);
    assert_eq!(apply_q(&t, "c", LongFn::Add(7)), Reply::Long(7));
}

#[test]
fn set_and_get_and_set_return_what_they_document() {
    let mut t = T::new();
    assert_eq!(ok(t.anon(set("c", 5))), Reply::Unit);
    assert_eq!(get(&t, "c"), 5);
    assert_eq!(ok(t.anon(op(LongOp::GetAndSet { name: "c".into(), value: -3 }))), Reply::Long(5));
    assert_eq!(get(&t, "c"), -3);
    assert_eq!(ok(t.anon(op(LongOp::GetAndSet { name: "fresh".into(), value: 9 }))), Reply::Long(0));
    assert_eq!(get(&t, "fresh"), 9);
}

#[test]
fn add_and_get_returns_the_new_value_and_get_and_add_the_old() {
    let mut t = T::new();
    assert_eq!(ok(t.anon(op(LongOp::AddAndGet { name: "c".into(), delta: 5 }))), Reply::Long(5));
    assert_eq!(ok(t.anon(op(LongOp::AddAndGet { name: "c".into(), delta: -1 }))), Reply::Long(4));
    assert_eq!(ok(t.anon(op(LongOp::GetAndAdd { name: "c".into(), delta: 10 }))), Reply::Long(4));
    assert_eq!(ok(t.anon(op(LongOp::GetAndAdd { name: "c".into(), delta: -20 }))), Reply::Long(14));
    assert_eq!(get(&t, "c"), -6);
}

#[test]
fn compare_and_set_writes_only_on_a_match() {
    let mut t = T::new();
    let cas = |expect, update| op(LongOp::CompareAndSet { name: "c".into(), expect, update });
    // Never written means 0.
    assert_eq!(ok(t.anon(cas(1, 2))), Reply::Bool(false));
    assert_eq!(get(&t, "c"), 0);
    assert_eq!(ok(t.anon(cas(0, 2))), Reply::Bool(true));
    assert_eq!(get(&t, "c"), 2);
    assert_eq!(ok(t.anon(cas(0, 3))), Reply::Bool(false));
    assert_eq!(get(&t, "c"), 2);
    assert_eq!(ok(t.anon(cas(2, i64::MIN))), Reply::Bool(true));
    assert_eq!(get(&t, "c"), i64::MIN);
}

#[test]
fn every_function_computes_its_documented_value() {
    // (value before, function, value after)
    let cases = [
        (5, LongFn::Add(3), 8),
        (5, LongFn::Add(-8), -3),
        (5, LongFn::Mul(-3), -15),
        (5, LongFn::Min(2), 2),
        (5, LongFn::Min(9), 5),
        (5, LongFn::Max(9), 9),
        (5, LongFn::Max(-9), 5),
        (0b1100, LongFn::And(0b1010), 0b1000),
        (0b1100, LongFn::Or(0b1010), 0b1110),
        (0b1100, LongFn::Xor(0b1010), 0b0110),
        (5, LongFn::Neg, -5),
        (-5, LongFn::Neg, 5),
        (5, LongFn::Set(-42), -42),
    ];
    for (before, f, after) in cases {
        let mut t = T::new();
        let name = || alloc::string::String::from("c");
        ok(t.anon(set("c", before)));
        // A query applies the function without storing the result.
        assert_eq!(apply_q(&t, "c", f), Reply::Long(after), "apply {f:?} to {before}");
        assert_eq!(get(&t, "c"), before);
        assert_eq!(ok(t.anon(op(LongOp::AlterAndGet { name: name(), f }))), Reply::Long(after), "{f:?}");
        assert_eq!(get(&t, "c"), after);
        ok(t.anon(set("c", before)));
        assert_eq!(ok(t.anon(op(LongOp::GetAndAlter { name: name(), f }))), Reply::Long(before), "{f:?}");
        assert_eq!(get(&t, "c"), after);
        ok(t.anon(set("c", before)));
        assert_eq!(ok(t.anon(op(LongOp::Alter { name: name(), f }))), Reply::Unit, "{f:?}");
        assert_eq!(get(&t, "c"), after, "alter {before} with {f:?}");
    }
}

#[test]
fn arithmetic_wraps_on_overflow() {
    let mut t = T::new();
    ok(t.anon(set("c", i64::MAX)));
    assert_eq!(ok(t.anon(op(LongOp::AddAndGet { name: "c".into(), delta: 1 }))), Reply::Long(i64::MIN));
    assert_eq!(ok(t.anon(op(LongOp::GetAndAdd { name: "c".into(), delta: -1 }))), Reply::Long(i64::MIN));
    assert_eq!(get(&t, "c"), i64::MAX);
    let alter = |f| op(LongOp::AlterAndGet { name: "c".into(), f });
    assert_eq!(ok(t.anon(alter(LongFn::Mul(2)))), Reply::Long(-2));
    ok(t.anon(set("c", i64::MIN)));
    assert_eq!(ok(t.anon(alter(LongFn::Neg))), Reply::Long(i64::MIN));
    assert_eq!(ok(t.anon(alter(LongFn::Mul(-1)))), Reply::Long(i64::MIN));
    assert_eq!(ok(t.anon(alter(LongFn::Add(-1)))), Reply::Long(i64::MAX));
    assert_eq!(apply_q(&t, "c", LongFn::Add(1)), Reply::Long(i64::MIN));
}

#[test]
fn a_zero_value_is_not_stored_and_frees_its_slot() {
    let mut t = T::with_limits(Limits { objects_per_kind_max: 1, ..Limits::default() });
    let full = Error::Limit { limit: Limit::Objects, max: 1 };
    ok(t.anon(set("a", 5)));
    assert_eq!(err(t.anon(set("b", 1))), full);
    assert_eq!(err(t.anon(op(LongOp::AddAndGet { name: "b".into(), delta: 1 }))), full);
    assert_eq!(get(&t, "b"), 0, "a refused write must not store anything");
    // Writing zero to another counter needs no slot.
    assert_eq!(ok(t.anon(set("b", 0))), Reply::Unit);
    assert_eq!(
        ok(t.anon(op(LongOp::CompareAndSet { name: "b".into(), expect: 0, update: 0 }))),
        Reply::Bool(true)
    );
    // Each way of reaching zero releases the slot.
    let to_zero = [
        set("a", 0),
        op(LongOp::AddAndGet { name: "a".into(), delta: -5 }),
        op(LongOp::GetAndSet { name: "a".into(), value: 0 }),
        op(LongOp::CompareAndSet { name: "a".into(), expect: 5, update: 0 }),
        op(LongOp::Alter { name: "a".into(), f: LongFn::And(0) }),
    ];
    for zero in to_zero {
        ok(t.anon(zero.clone()));
        assert_eq!(get(&t, "a"), 0);
        assert_eq!(ok(t.anon(set("b", 1))), Reply::Unit, "{zero:?} kept the slot");
        ok(t.anon(set("b", 0)));
        ok(t.anon(set("a", 5)));
    }
    // Overwriting a stored counter needs no new slot.
    assert_eq!(ok(t.anon(set("a", 6))), Reply::Unit);
}

#[test]
fn names_are_checked_on_writes() {
    let mut t = T::with_limits(Limits { name_bytes_max: 4, ..Limits::default() });
    let name = Error::Limit { limit: Limit::NameBytes, max: 4 };
    assert_eq!(err(t.anon(set("", 1))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.anon(set("count", 1))), name);
    assert_eq!(err(t.anon(op(LongOp::AddAndGet { name: "count".into(), delta: 1 }))), name);
    assert_eq!(
        err(t.anon(op(LongOp::CompareAndSet { name: "".into(), expect: 0, update: 1 }))),
        Error::BelowMinimum { limit: Limit::NameBytes, min: 1 }
    );
    assert_eq!(get(&t, "count"), 0);
    assert_eq!(ok(t.anon(set("four", 1))), Reply::Unit);
}

#[test]
fn a_retried_increment_is_applied_once() {
    let mut t = T::new();
    let s = t.open(60_000);
    let add = || op(LongOp::GetAndAdd { name: "c".into(), delta: 10 });
    assert_eq!(ok(t.run_seq(s, 1, 1, add())), Reply::Long(0));
    assert_eq!(ok(t.run_seq(s, 1, 1, add())), Reply::Long(0));
    assert_eq!(get(&t, "c"), 10);
}

#[test]
fn counters_survive_a_snapshot() {
    let mut t = T::new();
    ok(t.anon(set("a", i64::MIN)));
    ok(t.anon(set("b", 42)));
    ok(t.anon(set("z", 7)));
    ok(t.anon(set("z", 0)));
    let probe = ["a", "b", "z", "never"].map(|n| QueryOp::Long(LongQuery::Get { name: n.into() }));
    t.assert_snapshot_round_trips(&probe);
    t.assert_snapshot_round_trips(&[QueryOp::Long(LongQuery::Apply { name: "b".into(), f: LongFn::Neg })]);
}
