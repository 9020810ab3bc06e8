//! Atomic references: every operation and built-in function, null versus empty, and the
//! size limit (also when a function would grow a value past it).

use super::{err, ok, T};
use crate::machine::reference::{RefFn, RefOp, RefQuery};
use crate::machine::{Error, Limit, Limits, Op, QueryOp, Reply};
use alloc::vec;
use alloc::vec::Vec;

fn op(o: RefOp) -> Op {
    Op::Ref(o)
}

fn set(name: &str, value: Option<&[u8]>) -> Op {
    op(RefOp::Set { name: name.into(), value: value.map(<[u8]>::to_vec) })
}

fn get(t: &T, name: &str) -> Option<Vec<u8>> {
    match t.query(None, QueryOp::Ref(RefQuery::Get { name: name.into() })) {
        Ok(Reply::Value(v)) => v,
        other => panic!("get failed: {other:?}"),
    }
}

fn is_null(t: &T, name: &str) -> bool {
    t.query(None, QueryOp::Ref(RefQuery::IsNull { name: name.into() })) == Ok(Reply::Bool(true))
}

fn contains(t: &T, name: &str, value: Option<&[u8]>) -> Reply {
    let value = value.map(<[u8]>::to_vec);
    t.query(None, QueryOp::Ref(RefQuery::Contains { name: name.into(), value })).unwrap()
}

fn value(v: &[u8]) -> Reply {
    Reply::Value(Some(v.to_vec()))
}

#[test]
fn an_unwritten_reference_is_null() {
    let t = T::new();
    assert_eq!(get(&t, "r"), None);
    assert!(is_null(&t, "r"));
    assert_eq!(contains(&t, "r", None), Reply::Bool(true));
    assert_eq!(contains(&t, "r", Some(b"")), Reply::Bool(false));
}

#[test]
fn set_and_get_and_set_return_what_they_document() {
    let mut t = T::new();
    assert_eq!(ok(t.anon(set("r", Some(b"one")))), Reply::Unit);
    assert_eq!(get(&t, "r"), Some(b"one".to_vec()));
    assert!(!is_null(&t, "r"));
    assert_eq!(contains(&t, "r", Some(b"one")), Reply::Bool(true));
    assert_eq!(contains(&t, "r", Some(b"two")), Reply::Bool(false));
    let gas = |v: Option<&[u8]>| op(RefOp::GetAndSet { name: "r".into(), value: v.map(<[u8]>::to_vec) });
    assert_eq!(ok(t.anon(gas(Some(b"two")))), value(b"one"));
    assert_eq!(ok(t.anon(gas(None))), value(b"two"));
    assert!(is_null(&t, "r"));
    assert_eq!(ok(t.anon(gas(Some(b"three")))), Reply::Value(None));
    // Setting null clears.
    assert_eq!(ok(t.anon(set("r", None))), Reply::Unit);
    assert!(is_null(&t, "r"));
}

#[test]
fn an_empty_value_is_not_null() {
    let mut t = T::new();
    ok(t.anon(set("r", Some(b""))));
    assert!(!is_null(&t, "r"));
    assert_eq!(get(&t, "r"), Some(vec![]));
    assert_eq!(contains(&t, "r", None), Reply::Bool(false));
    assert_eq!(contains(&t, "r", Some(b"")), Reply::Bool(true));
}

#[test]
fn compare_and_set_writes_only_on_a_match() {
    let mut t = T::new();
    let cas = |expect: Option<&[u8]>, update: Option<&[u8]>| {
        op(RefOp::CompareAndSet {
            name: "r".into(),
            expect: expect.map(<[u8]>::to_vec),
            update: update.map(<[u8]>::to_vec),
        })
    };
    assert_eq!(ok(t.anon(cas(Some(b""), Some(b"a")))), Reply::Bool(false), "null is not empty");
    assert!(is_null(&t, "r"));
    assert_eq!(ok(t.anon(cas(None, Some(b"a")))), Reply::Bool(true));
    assert_eq!(ok(t.anon(cas(Some(b"b"), Some(b"c")))), Reply::Bool(false));
    assert_eq!(get(&t, "r"), Some(b"a".to_vec()));
    assert_eq!(ok(t.anon(cas(Some(b"a"), Some(b"c")))), Reply::Bool(true));
    assert_eq!(ok(t.anon(cas(Some(b"c"), None))), Reply::Bool(true));
    assert!(is_null(&t, "r"));
}

/// A value before, a function, and the value after.
type Case = (Option<&'static [u8]>, RefFn, Option<&'static [u8]>);

#[test]
fn every_function_computes_its_documented_value() {
    let cases: [Case; 16] = [
        (Some(b"ab"), RefFn::Append(b"cd".to_vec()), Some(b"abcd")),
        (None, RefFn::Append(b"cd".to_vec()), Some(b"cd")),
        (None, RefFn::Append(vec![]), Some(b"")),
        (Some(b"ab"), RefFn::Prepend(b"cd".to_vec()), Some(b"cdab")),
        (None, RefFn::Prepend(b"cd".to_vec()), Some(b"cd")),
        (Some(b"abcd"), RefFn::Truncate(2), Some(b"ab")),
        (Some(b"abcd"), RefFn::Truncate(9), Some(b"abcd")),
        (Some(b"abcd"), RefFn::Truncate(0), Some(b"")),
        (None, RefFn::Truncate(2), None),
        (Some(b"abc"), RefFn::Reverse, Some(b"cba")),
        (Some(b""), RefFn::Reverse, Some(b"")),
        (None, RefFn::Reverse, None),
        (Some(b"abc"), RefFn::Clear, None),
        (None, RefFn::Clear, None),
        (Some(b"abc"), RefFn::Set(b"x".to_vec()), Some(b"x")),
        (None, RefFn::Set(vec![]), Some(b"")),
    ];
    for (before, f, after) in cases {
        let after = after.map(<[u8]>::to_vec);
        let before_v = before.map(<[u8]>::to_vec);
        let mut t = T::new();
        let name = || alloc::string::String::from("r");
        ok(t.anon(set("r", before)));
        // A query applies the function without storing the result.
        let applied = t.query(None, QueryOp::Ref(RefQuery::Apply { name: name(), f: f.clone() }));
        assert_eq!(applied, Ok(Reply::Value(after.clone())), "apply {f:?} to {before:?}");
        assert_eq!(get(&t, "r"), before_v);
        let alter_and_get = op(RefOp::AlterAndGet { name: name(), f: f.clone() });
        assert_eq!(ok(t.anon(alter_and_get)), Reply::Value(after.clone()), "{f:?}");
        assert_eq!(get(&t, "r"), after);
        ok(t.anon(set("r", before)));
        let get_and_alter = op(RefOp::GetAndAlter { name: name(), f: f.clone() });
        assert_eq!(ok(t.anon(get_and_alter)), Reply::Value(before_v.clone()), "{f:?}");
        assert_eq!(get(&t, "r"), after);
        ok(t.anon(set("r", before)));
        assert_eq!(ok(t.anon(op(RefOp::Alter { name: name(), f: f.clone() }))), Reply::Unit);
        assert_eq!(get(&t, "r"), after, "alter {before:?} with {f:?}");
    }
}

#[test]
fn no_write_may_exceed_the_size_limit() {
    let mut t = T::with_limits(Limits { reference_bytes_max: 4, ..Limits::default() });
    let too_big = Error::Limit { limit: Limit::ReferenceBytes, max: 4 };
    assert_eq!(err(t.anon(set("r", Some(b"abcde")))), too_big);
    assert!(is_null(&t, "r"));
    assert_eq!(ok(t.anon(set("r", Some(b"abcd")))), Reply::Unit);
    // A function that would grow the value past the limit fails and changes nothing.
    let grow = [
        RefOp::Alter { name: "r".into(), f: RefFn::Append(b"e".to_vec()) },
        RefOp::AlterAndGet { name: "r".into(), f: RefFn::Prepend(b"e".to_vec()) },
        RefOp::GetAndAlter { name: "r".into(), f: RefFn::Set(b"vwxyz".to_vec()) },
        RefOp::GetAndSet { name: "r".into(), value: Some(b"vwxyz".to_vec()) },
        RefOp::CompareAndSet {
            name: "r".into(),
            expect: Some(b"abcd".to_vec()),
            update: Some(b"vwxyz".to_vec()),
        },
    ];
    for g in grow {
        assert_eq!(err(t.anon(op(g.clone()))), too_big, "{g:?}");
        assert_eq!(get(&t, "r"), Some(b"abcd".to_vec()), "{g:?} changed the value");
    }
    // Shrinking functions still work at the limit.
    let shrink = op(RefOp::AlterAndGet { name: "r".into(), f: RefFn::Truncate(3) });
    assert_eq!(ok(t.anon(shrink)), value(b"abc"));
    let append = op(RefOp::AlterAndGet { name: "r".into(), f: RefFn::Append(b"d".to_vec()) });
    assert_eq!(ok(t.anon(append)), value(b"abcd"));
    // A read may compute a larger value: it is not stored.
    let read = QueryOp::Ref(RefQuery::Apply { name: "r".into(), f: RefFn::Append(b"e".to_vec()) });
    assert_eq!(t.query(None, read), Ok(value(b"abcde")));
}

#[test]
fn null_references_take_no_object_slot() {
    let mut t = T::with_limits(Limits { objects_per_kind_max: 1, ..Limits::default() });
    let full = Error::Limit { limit: Limit::Objects, max: 1 };
    ok(t.anon(set("a", Some(b"x"))));
    assert_eq!(err(t.anon(set("b", Some(b"y")))), full);
    assert_eq!(err(t.anon(op(RefOp::Alter { name: "b".into(), f: RefFn::Append(vec![]) }))), full);
    assert!(is_null(&t, "b"));
    assert_eq!(ok(t.anon(set("b", None))), Reply::Unit);
    ok(t.anon(set("a", Some(b"overwrite"))));
    ok(t.anon(op(RefOp::Alter { name: "a".into(), f: RefFn::Clear })));
    assert_eq!(ok(t.anon(set("b", Some(b"y")))), Reply::Unit);
}

#[test]
fn names_are_checked_on_writes() {
    let mut t = T::with_limits(Limits { name_bytes_max: 4, ..Limits::default() });
    let name = Error::Limit { limit: Limit::NameBytes, max: 4 };
    assert_eq!(err(t.anon(set("", Some(b"x")))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.anon(set("refer", Some(b"x")))), name);
    assert_eq!(err(t.anon(op(RefOp::AlterAndGet { name: "refer".into(), f: RefFn::Reverse }))), name);
    assert_eq!(ok(t.anon(set("four", Some(b"x")))), Reply::Unit);
}

#[test]
fn references_survive_a_snapshot() {
    let mut t = T::new();
    ok(t.anon(set("a", Some(b"alpha"))));
    ok(t.anon(set("empty", Some(b""))));
    ok(t.anon(set("gone", Some(b"x"))));
    ok(t.anon(set("gone", None)));
    let mut probe: Vec<QueryOp> = ["a", "empty", "gone", "never"]
        .into_iter()
        .flat_map(|n| {
            [
                QueryOp::Ref(RefQuery::Get { name: n.into() }),
                QueryOp::Ref(RefQuery::IsNull { name: n.into() }),
            ]
        })
        .collect();
    probe.push(QueryOp::Ref(RefQuery::Apply { name: "a".into(), f: RefFn::Reverse }));
    t.assert_snapshot_round_trips(&probe);
}
