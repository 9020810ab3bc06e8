//! The key-value store: versions and tags, conditional writes, copy and rename, TTLs,
//! listing, and the change history watches resume from.

use super::{err, ok, T};
use crate::machine::kv::{KvEntry, KvError, KvOp, KvQuery, PutMode, WatchEvent, WatchFilter, WatchKind};
use crate::machine::{Error, Etag, Event, Limit, Limits, Op, QueryOp, Reply};
use crate::StateMachine;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

fn put_with(key: &str, value: &[u8], mode: PutMode, ttl_ms: Option<u64>) -> Op {
    Op::Kv(KvOp::Put { key: key.into(), value: value.to_vec(), mode, ttl_ms })
}

fn put(key: &str, value: &[u8]) -> Op {
    put_with(key, value, PutMode::Always, None)
}

fn put_ttl(key: &str, value: &[u8], ttl_ms: u64) -> Op {
    put_with(key, value, PutMode::Always, Some(ttl_ms))
}

fn delete(key: &str, if_match: Option<u64>) -> Op {
    Op::Kv(KvOp::Delete { key: key.into(), if_match: if_match.map(Etag) })
}

fn copy(from: &str, to: &str, if_absent: bool) -> Op {
    Op::Kv(KvOp::Copy { from: from.into(), to: to.into(), if_absent })
}

fn rename(from: &str, to: &str, if_absent: bool) -> Op {
    Op::Kv(KvOp::Rename { from: from.into(), to: to.into(), if_absent })
}

fn written(etag: u64) -> Reply {
    Reply::KvWritten { etag: Etag(etag) }
}

fn get_q(key: &str) -> QueryOp {
    QueryOp::Kv(KvQuery::Get { key: key.into(), if_none_match: None })
}

fn head_q(key: &str) -> QueryOp {
    QueryOp::Kv(KvQuery::Head { key: key.into() })
}

fn list_q(prefix: &str, after: Option<&str>, keys_only: bool) -> QueryOp {
    QueryOp::Kv(KvQuery::List { prefix: prefix.into(), after: after.map(String::from), keys_only })
}

fn history_q(filter: WatchFilter, from: u64) -> QueryOp {
    QueryOp::Kv(KvQuery::History { filter, from })
}

fn get(t: &T, key: &str) -> Option<KvEntry> {
    match t.query(None, get_q(key)) {
        Ok(Reply::KvEntry(e)) => e,
        other => panic!("get failed: {other:?}"),
    }
}

fn head(t: &T, key: &str) -> Option<KvEntry> {
    match t.query(None, head_q(key)) {
        Ok(Reply::KvEntry(e)) => e,
        other => panic!("head failed: {other:?}"),
    }
}

/// The keys (and whether more follow) of a key-only listing.
fn list_keys(t: &T, prefix: &str, after: Option<&str>) -> (Vec<String>, bool) {
    list_page_keys(t, prefix, after, true)
}

/// The keys (and whether more follow) of a listing, with or without values.
fn list_page_keys(t: &T, prefix: &str, after: Option<&str>, keys_only: bool) -> (Vec<String>, bool) {
    match t.query(None, list_q(prefix, after, keys_only)) {
        Ok(Reply::KvList { entries, more }) => (entries.into_iter().map(|e| e.key).collect(), more),
        other => panic!("list failed: {other:?}"),
    }
}

/// The revisions of the history matching `filter` from `from`, with the store's revision
/// and whether more follow.
fn history_revisions(t: &T, filter: WatchFilter, from: u64) -> (Vec<u64>, u64, bool) {
    match t.query(None, history_q(filter, from)) {
        Ok(Reply::WatchHistory { events, revision, more }) => {
            (events.into_iter().map(|e| e.revision).collect(), revision, more)
        }
        other => panic!("history failed: {other:?}"),
    }
}

fn entry(key: &str, value: Option<&[u8]>, etag: u64, version: u64, create_revision: u64) -> KvEntry {
    KvEntry {
        key: key.into(),
        value: value.map(<[u8]>::to_vec),
        etag: Etag(etag),
        version,
        create_revision,
        expires_in_ms: None,
    }
}

fn change(revision: u64, key: &str, kind: WatchKind, value: Option<&[u8]>) -> WatchEvent {
    WatchEvent { revision, key: key.into(), kind, value: value.map(<[u8]>::to_vec) }
}

fn kv_events(t: &mut T) -> Vec<WatchEvent> {
    t.events()
        .into_iter()
        .map(|e| match e {
            Event::Kv(w) => w,
            other => panic!("unexpected event {other:?}"),
        })
        .collect()
}

#[test]
fn puts_version_entries_and_tag_them_with_the_revision() {
    let mut t = T::new();
    assert_eq!(get(&t, "a"), None);
    assert_eq!(ok(t.anon(put("a", b"1"))), written(1));
    assert_eq!(get(&t, "a"), Some(entry("a", Some(b"1"), 1, 1, 1)));
    assert_eq!(ok(t.anon(put("b", b"x"))), written(2));
    assert_eq!(ok(t.anon(put("a", b"2"))), written(3));
    assert_eq!(get(&t, "a"), Some(entry("a", Some(b"2"), 3, 2, 1)));
    assert_eq!(get(&t, "b"), Some(entry("b", Some(b"x"), 2, 1, 2)));
    assert_eq!(t.m.kv_revision(), 3);
    assert_eq!(
        kv_events(&mut t),
        vec![
            change(1, "a", WatchKind::Put, Some(b"1")),
            change(2, "b", WatchKind::Put, Some(b"x")),
            change(3, "a", WatchKind::Put, Some(b"2")),
        ]
    );
}

#[test]
fn create_only_refuses_an_existing_key() {
    let mut t = T::new();
    assert_eq!(ok(t.anon(put_with("a", b"1", PutMode::IfAbsent, None))), written(1));
    t.events();
    assert_eq!(
        err(t.anon(put_with("a", b"2", PutMode::IfAbsent, None))),
        Error::Kv(KvError::Exists { etag: Etag(1) })
    );
    assert_eq!(get(&t, "a"), Some(entry("a", Some(b"1"), 1, 1, 1)));
    assert_eq!(t.m.kv_revision(), 1);
    assert_eq!(t.events(), vec![]);
}

#[test]
fn if_match_overwrites_only_that_version() {
    let mut t = T::new();
    let if_match = |e| PutMode::IfMatch(Etag(e));
    assert_eq!(
        err(t.anon(put_with("a", b"0", if_match(1), None))),
        Error::Kv(KvError::EtagMismatch { current: None })
    );
    assert_eq!(get(&t, "a"), None);
    ok(t.anon(put("a", b"1")));
    assert_eq!(
        err(t.anon(put_with("a", b"2", if_match(7), None))),
        Error::Kv(KvError::EtagMismatch { current: Some(Etag(1)) })
    );
    assert_eq!(ok(t.anon(put_with("a", b"2", if_match(1), None))), written(2));
    // The old tag is stale now.
    assert_eq!(
        err(t.anon(put_with("a", b"3", if_match(1), None))),
        Error::Kv(KvError::EtagMismatch { current: Some(Etag(2)) })
    );
    assert_eq!(get(&t, "a"), Some(entry("a", Some(b"2"), 2, 2, 1)));
}

#[test]
fn get_with_the_current_tag_answers_not_modified() {
    let mut t = T::new();
    let get_if = |t: &T, key: &str, tag: u64| {
        t.query(None, QueryOp::Kv(KvQuery::Get { key: key.into(), if_none_match: Some(Etag(tag)) }))
    };
    assert_eq!(get_if(&t, "a", 1), Ok(Reply::KvEntry(None)));
    ok(t.anon(put("a", b"1")));
    assert_eq!(get_if(&t, "a", 1), Ok(Reply::NotModified { etag: Etag(1) }));
    ok(t.anon(put("a", b"2")));
    assert_eq!(get_if(&t, "a", 1), Ok(Reply::KvEntry(Some(entry("a", Some(b"2"), 2, 2, 1)))));
    assert_eq!(get_if(&t, "a", 2), Ok(Reply::NotModified { etag: Etag(2) }));
}

#[test]
fn head_answers_without_the_value() {
    let mut t = T::new();
    assert_eq!(head(&t, "a"), None);
    ok(t.anon(put("a", b"large value")));
    ok(t.anon(put("a", b"larger value")));
    assert_eq!(head(&t, "a"), Some(entry("a", None, 2, 2, 1)));
}

#[test]
fn delete_removes_a_key_optionally_only_at_a_tag() {
    let mut t = T::new();
    assert_eq!(ok(t.anon(delete("a", None))), Reply::Bool(false));
    assert_eq!(t.m.kv_revision(), 0, "deleting nothing is not a change");
    assert_eq!(err(t.anon(delete("a", Some(1)))), Error::Kv(KvError::EtagMismatch { current: None }));
    ok(t.anon(put("a", b"1")));
    ok(t.anon(put("b", b"1")));
    t.events();
    assert_eq!(ok(t.anon(delete("a", None))), Reply::Bool(true));
    assert_eq!(get(&t, "a"), None);
    assert_eq!(kv_events(&mut t), vec![change(3, "a", WatchKind::Delete, None)]);
    assert_eq!(
        err(t.anon(delete("b", Some(1)))),
        Error::Kv(KvError::EtagMismatch { current: Some(Etag(2)) })
    );
    assert!(get(&t, "b").is_some());
    assert_eq!(ok(t.anon(delete("b", Some(2)))), Reply::Bool(true));
    assert_eq!(get(&t, "b"), None);
    assert_eq!(t.m.kv_revision(), 4);
    // A recreated key starts over.
    assert_eq!(ok(t.anon(put("a", b"new"))), written(5));
    assert_eq!(get(&t, "a"), Some(entry("a", Some(b"new"), 5, 1, 5)));
}

#[test]
fn copy_writes_the_destination_and_keeps_the_source() {
    let mut t = T::new();
    ok(t.anon(put("a", b"v")));
    t.events();
    assert_eq!(ok(t.anon(copy("a", "b", false))), written(2));
    assert_eq!(get(&t, "b"), Some(entry("b", Some(b"v"), 2, 1, 2)));
    assert_eq!(get(&t, "a"), Some(entry("a", Some(b"v"), 1, 1, 1)));
    assert_eq!(kv_events(&mut t), vec![change(2, "b", WatchKind::Put, Some(b"v"))]);
    // Onto an existing key: an overwrite, unless create-only.
    assert_eq!(ok(t.anon(copy("a", "b", false))), written(3));
    assert_eq!(get(&t, "b"), Some(entry("b", Some(b"v"), 3, 2, 2)));
    t.events();
    assert_eq!(err(t.anon(copy("a", "b", true))), Error::Kv(KvError::Exists { etag: Etag(3) }));
    assert_eq!(err(t.anon(copy("nope", "c", false))), Error::Kv(KvError::NotFound));
    assert_eq!(err(t.anon(copy("nope", "nope", false))), Error::Kv(KvError::NotFound));
    // Onto itself: nothing changes.
    assert_eq!(ok(t.anon(copy("a", "a", false))), written(1));
    assert_eq!(err(t.anon(copy("a", "a", true))), Error::Kv(KvError::Exists { etag: Etag(1) }));
    assert_eq!(t.m.kv_revision(), 3);
    assert_eq!(t.events(), vec![]);
}

#[test]
fn rename_moves_the_entry_in_two_changes() {
    let mut t = T::new();
    ok(t.anon(put("a", b"va")));
    ok(t.anon(put("c", b"vc")));
    t.events();
    assert_eq!(ok(t.anon(rename("a", "b", false))), written(3));
    assert_eq!(get(&t, "a"), None);
    assert_eq!(get(&t, "b"), Some(entry("b", Some(b"va"), 3, 1, 3)));
    assert_eq!(
        kv_events(&mut t),
        vec![change(3, "b", WatchKind::Put, Some(b"va")), change(4, "a", WatchKind::Delete, None)]
    );
    assert_eq!(err(t.anon(rename("b", "c", true))), Error::Kv(KvError::Exists { etag: Etag(2) }));
    assert!(get(&t, "b").is_some());
    // Onto an existing key: it is overwritten.
    assert_eq!(ok(t.anon(rename("b", "c", false))), written(5));
    assert_eq!(get(&t, "c"), Some(entry("c", Some(b"va"), 5, 2, 2)));
    assert_eq!(get(&t, "b"), None);
    assert_eq!(err(t.anon(rename("b", "d", false))), Error::Kv(KvError::NotFound));
    // Onto itself: nothing changes.
    assert_eq!(ok(t.anon(rename("c", "c", false))), written(5));
    assert_eq!(err(t.anon(rename("c", "c", true))), Error::Kv(KvError::Exists { etag: Etag(5) }));
    assert_eq!(t.m.kv_revision(), 6);
}

#[test]
fn a_ttl_deletes_the_key_with_an_expire_event() {
    let mut t = T::new();
    ok(t.anon(put_ttl("k", b"v", 100)));
    ok(t.anon(put("stays", b"v")));
    t.events();
    assert_eq!(head(&t, "k").and_then(|e| e.expires_in_ms), Some(100));
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(100_000));
    t.advance_ms(40);
    t.tick();
    assert_eq!(get(&t, "k").and_then(|e| e.expires_in_ms), Some(60));
    t.advance_ms(59);
    t.tick();
    assert!(get(&t, "k").is_some());
    assert_eq!(t.events(), vec![]);
    t.advance_ms(1);
    t.tick();
    assert_eq!(get(&t, "k"), None);
    assert_eq!(kv_events(&mut t), vec![change(3, "k", WatchKind::Expire, None)]);
    assert_eq!(t.m.kv_revision(), 3);
    assert_eq!(t.m.next_deadline(), None);
    assert!(get(&t, "stays").is_some());
    let (revisions, _, _) = history_revisions(&t, WatchFilter::Key("k".into()), 1);
    assert_eq!(revisions, vec![1, 3]);
}

#[test]
fn an_expiry_is_applied_before_the_entry_that_reaches_it() {
    let mut t = T::new();
    ok(t.anon(put_ttl("k", b"v", 100)));
    t.advance_ms(100);
    // No tick: the next command's time passes the TTL, so the key is gone for it.
    assert_eq!(ok(t.anon(put_with("k", b"w", PutMode::IfAbsent, None))), written(3));
    assert_eq!(
        kv_events(&mut t),
        vec![
            change(1, "k", WatchKind::Put, Some(b"v")),
            change(2, "k", WatchKind::Expire, None),
            change(3, "k", WatchKind::Put, Some(b"w")),
        ]
    );
}

#[test]
fn a_put_without_a_ttl_clears_the_earlier_one() {
    let mut t = T::new();
    ok(t.anon(put_ttl("k", b"v", 100)));
    ok(t.anon(put("k", b"w")));
    assert_eq!(head(&t, "k").and_then(|e| e.expires_in_ms), None);
    assert_eq!(t.m.next_deadline(), None);
    t.events();
    t.advance_ms(200);
    t.tick();
    assert_eq!(get(&t, "k").and_then(|e| e.value), Some(b"w".to_vec()));
    assert_eq!(t.events(), vec![]);
}

#[test]
fn a_new_ttl_replaces_the_old_deadline() {
    let mut t = T::new();
    ok(t.anon(put_ttl("k", b"v", 100)));
    t.advance_ms(50);
    ok(t.anon(put_ttl("k", b"w", 100)));
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(150_000));
    t.advance_ms(50);
    t.tick();
    assert!(get(&t, "k").is_some(), "expired at the replaced deadline");
    t.advance_ms(50);
    t.tick();
    assert_eq!(get(&t, "k"), None);
}

#[test]
fn deleting_a_key_cancels_its_ttl() {
    let mut t = T::new();
    ok(t.anon(put_ttl("k", b"v", 100)));
    ok(t.anon(delete("k", None)));
    assert_eq!(t.m.next_deadline(), None);
    ok(t.anon(put("k", b"again")));
    t.events();
    t.advance_ms(200);
    t.tick();
    assert!(get(&t, "k").is_some());
    assert_eq!(t.events(), vec![]);
}

#[test]
fn copy_drops_the_ttl_and_rename_carries_it() {
    let mut t = T::new();
    ok(t.anon(put_ttl("a", b"v", 1000)));
    t.advance_ms(400);
    t.tick();
    ok(t.anon(copy("a", "copied", false)));
    assert_eq!(head(&t, "copied").and_then(|e| e.expires_in_ms), None);
    ok(t.anon(rename("a", "moved", false)));
    assert_eq!(head(&t, "moved").and_then(|e| e.expires_in_ms), Some(600));
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(1_000_000));
    t.events();
    t.advance_ms(599);
    t.tick();
    assert!(get(&t, "moved").is_some());
    t.advance_ms(1);
    t.tick();
    assert_eq!(get(&t, "moved"), None);
    assert!(get(&t, "copied").is_some());
    // Only the moved key expires: the source's timer went with the rename.
    assert_eq!(kv_events(&mut t), vec![change(5, "moved", WatchKind::Expire, None)]);
}

#[test]
fn ttls_must_be_positive_and_within_the_limit() {
    let mut t = T::with_limits(Limits { kv_ttl_max_ms: 1000, ..Limits::default() });
    let ttl = Error::Limit { limit: Limit::KvTtl, max: 1000 };
    assert_eq!(err(t.anon(put_ttl("k", b"v", 0))), ttl);
    assert_eq!(err(t.anon(put_ttl("k", b"v", 1001))), ttl);
    assert_eq!(get(&t, "k"), None);
    assert_eq!(ok(t.anon(put_ttl("k", b"v", 1000))), written(1));
}

#[test]
fn list_pages_through_a_prefix_in_key_order() {
    let mut t = T::with_limits(Limits { list_max: 2, ..Limits::default() });
    for k in ["b/1", "a/3", "a", "a/1", "a/2"] {
        ok(t.anon(put(k, k.as_bytes())));
    }
    let s = |v: &[&str]| v.iter().map(|k| String::from(*k)).collect::<Vec<_>>();
    assert_eq!(list_keys(&t, "", None), (s(&["a", "a/1"]), true));
    assert_eq!(list_keys(&t, "", Some("a/1")), (s(&["a/2", "a/3"]), true));
    assert_eq!(list_keys(&t, "", Some("a/3")), (s(&["b/1"]), false));
    assert_eq!(list_keys(&t, "a/", None), (s(&["a/1", "a/2"]), true));
    // Exactly the rest fits: no more.
    assert_eq!(list_keys(&t, "a/", Some("a/1")), (s(&["a/2", "a/3"]), false));
    assert_eq!(list_keys(&t, "a/", Some("a/3")), (s(&[]), false));
    // `after` before the prefix starts at the prefix; past it, nothing.
    assert_eq!(list_keys(&t, "a/", Some("0")), (s(&["a/1", "a/2"]), true));
    assert_eq!(list_keys(&t, "a/", Some("zzz")), (s(&[]), false));
    assert_eq!(list_keys(&t, "c", None), (s(&[]), false));
    // Values, unless keys only.
    let with_values = t.query(None, list_q("b", None, false));
    assert_eq!(
        with_values,
        Ok(Reply::KvList { entries: vec![entry("b/1", Some(b"b/1"), 1, 1, 1)], more: false })
    );
    let keys_only = t.query(None, list_q("b", None, true));
    assert_eq!(keys_only, Ok(Reply::KvList { entries: vec![entry("b/1", None, 1, 1, 1)], more: false }));
}

#[test]
fn list_and_history_pages_stop_at_list_bytes_max_but_hold_at_least_one_entry() {
    // Entries of 1 + 10 bytes; pages of at most 25 bytes hold two of them.
    let mut t = T::with_limits(Limits { list_bytes_max: 25, ..Limits::default() });
    for k in ["a", "b", "c", "d", "e"] {
        ok(t.anon(put(k, &[0u8; 10])));
    }
    ok(t.anon(put("f", &[0u8; 40]))); // alone larger than a page
    let s = |v: &[&str]| v.iter().map(|k| String::from(*k)).collect::<Vec<_>>();
    let with_values = |after: Option<&str>| list_page_keys(&t, "", after, false);
    assert_eq!(with_values(None), (s(&["a", "b"]), true));
    assert_eq!(with_values(Some("d")), (s(&["e"]), true), "f does not fit beside e");
    assert_eq!(with_values(Some("e")), (s(&["f"]), false), "an oversize entry comes alone");
    // Keys only: values do not count.
    assert_eq!(list_keys(&t, "", None), (s(&["a", "b", "c", "d", "e", "f"]), false));
    let all = || WatchFilter::Prefix("".into());
    assert_eq!(history_revisions(&t, all(), 1), (vec![1, 2], 6, true));
    assert_eq!(history_revisions(&t, all(), 5), (vec![5], 6, true));
    assert_eq!(history_revisions(&t, all(), 6), (vec![6], 6, false));
}

#[test]
fn history_has_gap_free_revisions_and_filters_by_key_prefix_and_pattern() {
    let mut t = T::new();
    ok(t.anon(put("x.a", b"1"))); // 1
    ok(t.anon(put("x.b.c", b"2"))); // 2
    ok(t.anon(delete("x.a", None))); // 3
    ok(t.anon(put("y.a", b"4"))); // 4
    ok(t.anon(put_ttl("x.a", b"5", 10))); // 5
    t.advance_ms(10);
    t.tick(); // 6: x.a expires
    ok(t.anon(rename("y.a", "xy", false))); // 7, 8
    let h = |t: &T, f: WatchFilter, from| history_revisions(t, f, from).0;
    assert_eq!(h(&t, WatchFilter::Pattern(">".into()), 1), (1..=8).collect::<Vec<_>>());
    assert_eq!(h(&t, WatchFilter::Prefix("".into()), 1), (1..=8).collect::<Vec<_>>());
    assert_eq!(h(&t, WatchFilter::Key("x.a".into()), 1), vec![1, 3, 5, 6]);
    assert_eq!(h(&t, WatchFilter::Key("x".into()), 1), vec![]);
    assert_eq!(h(&t, WatchFilter::Prefix("x".into()), 1), vec![1, 2, 3, 5, 6, 7]);
    assert_eq!(h(&t, WatchFilter::Prefix("x.".into()), 1), vec![1, 2, 3, 5, 6]);
    // `*` is one token, `>` one or more at the end.
    assert_eq!(h(&t, WatchFilter::Pattern("x.*".into()), 1), vec![1, 3, 5, 6]);
    assert_eq!(h(&t, WatchFilter::Pattern("*.a".into()), 1), vec![1, 3, 4, 5, 6, 8]);
    assert_eq!(h(&t, WatchFilter::Pattern("x.>".into()), 1), vec![1, 2, 3, 5, 6]);
    assert_eq!(h(&t, WatchFilter::Pattern("x.*.c".into()), 1), vec![2]);
    assert_eq!(h(&t, WatchFilter::Pattern("*".into()), 1), vec![7]);
    assert_eq!(h(&t, WatchFilter::Pattern("x".into()), 1), vec![]);
    // From a later revision; and from the future, nothing yet.
    assert_eq!(h(&t, WatchFilter::Key("x.a".into()), 4), vec![5, 6]);
    assert_eq!(history_revisions(&t, WatchFilter::Key("x.a".into()), 9), (vec![], 8, false));
    let full = t.query(None, history_q(WatchFilter::Key("x.a".into()), 5));
    assert_eq!(
        full,
        Ok(Reply::WatchHistory {
            events: vec![
                change(5, "x.a", WatchKind::Put, Some(b"5")),
                change(6, "x.a", WatchKind::Expire, None)
            ],
            revision: 8,
            more: false,
        })
    );
    // `>` needs at least one token after the prefix.
    ok(t.anon(put("x", b"9"))); // 9
    assert_eq!(h(&t, WatchFilter::Pattern("x.>".into()), 9), vec![]);
    assert_eq!(h(&t, WatchFilter::Pattern("x".into()), 9), vec![9]);
    assert_eq!(h(&t, WatchFilter::Pattern("*".into()), 1), vec![7, 9]);
}

#[test]
fn a_malformed_pattern_is_refused() {
    let mut t = T::new();
    ok(t.anon(put("a.b", b"1")));
    for p in ["", "a..b", "a.>.b", "a*", "a.b>", ".a", "a."] {
        assert_eq!(
            t.query(None, history_q(WatchFilter::Pattern(p.into()), 1)),
            Err(Error::Kv(KvError::InvalidPattern)),
            "pattern {p:?}"
        );
    }
}

#[test]
fn history_pages_by_list_max() {
    let mut t = T::with_limits(Limits { list_max: 2, ..Limits::default() });
    for i in 0..5u8 {
        ok(t.anon(put(if i % 2 == 0 { "even" } else { "odd" }, &[i])));
    }
    let all = || WatchFilter::Prefix("".into());
    assert_eq!(history_revisions(&t, all(), 1), (vec![1, 2], 5, true));
    assert_eq!(history_revisions(&t, all(), 3), (vec![3, 4], 5, true));
    assert_eq!(history_revisions(&t, all(), 5), (vec![5], 5, false));
    // Pages count matching events only.
    let even = || WatchFilter::Key("even".into());
    assert_eq!(history_revisions(&t, even(), 1), (vec![1, 3], 5, true));
    assert_eq!(history_revisions(&t, even(), 4), (vec![5], 5, false));
    assert_eq!(history_revisions(&t, WatchFilter::Key("odd".into()), 1), (vec![2, 4], 5, false));
}

#[test]
fn history_from_zero_is_everything_until_events_are_dropped() {
    let mut t = T::with_limits(Limits { watch_history_max: 2, ..Limits::default() });
    let all = || WatchFilter::Prefix("".into());
    assert_eq!(history_revisions(&t, all(), 0), (vec![], 0, false));
    ok(t.anon(put("a", b"1")));
    ok(t.anon(put("a", b"2")));
    assert_eq!(history_revisions(&t, all(), 0), (vec![1, 2], 2, false));
    ok(t.anon(put("a", b"3")));
    assert_eq!(t.query(None, history_q(all(), 0)), Err(Error::Kv(KvError::Compacted { oldest: 2 })));
}

#[test]
fn history_is_compacted_beyond_the_event_count_window() {
    let mut t = T::with_limits(Limits { watch_history_max: 3, ..Limits::default() });
    let all = || WatchFilter::Prefix("".into());
    for i in 0..3u8 {
        ok(t.anon(put("k", &[i])));
    }
    assert_eq!(history_revisions(&t, all(), 1), (vec![1, 2, 3], 3, false));
    ok(t.anon(put("k", b"4")));
    ok(t.anon(delete("k", None)));
    let compacted = Err(Error::Kv(KvError::Compacted { oldest: 3 }));
    assert_eq!(t.query(None, history_q(all(), 1)), compacted);
    assert_eq!(t.query(None, history_q(all(), 2)), compacted);
    // Whatever the filter.
    assert_eq!(t.query(None, history_q(WatchFilter::Key("other".into()), 2)), compacted);
    assert_eq!(history_revisions(&t, all(), 3), (vec![3, 4, 5], 5, false));
    assert_eq!(history_revisions(&t, all(), 6), (vec![], 5, false));
}

#[test]
fn history_is_compacted_beyond_the_byte_window() {
    // Each event weighs its key and value plus 32 bytes: 1 + 10 + 32 = 43 here.
    let mut t = T::with_limits(Limits { watch_history_bytes_max: 120, ..Limits::default() });
    let all = || WatchFilter::Prefix("".into());
    ok(t.anon(put("a", b"0123456789")));
    ok(t.anon(put("b", b"0123456789")));
    assert_eq!(history_revisions(&t, all(), 1), (vec![1, 2], 2, false));
    ok(t.anon(put("c", b"0123456789")));
    assert_eq!(t.query(None, history_q(all(), 1)), Err(Error::Kv(KvError::Compacted { oldest: 2 })));
    assert_eq!(history_revisions(&t, all(), 2), (vec![2, 3], 3, false));
    // Lighter events (a delete has no value) fit more of them.
    ok(t.anon(delete("a", None))); // 1 + 32: three events weigh 119
    assert_eq!(history_revisions(&t, all(), 2), (vec![2, 3, 4], 4, false));
    // An event heavier than the whole window empties it, but is still delivered live.
    t.events();
    ok(t.anon(put("d", &[0; 120])));
    assert_eq!(kv_events(&mut t), vec![change(5, "d", WatchKind::Put, Some(&[0; 120]))]);
    assert_eq!(t.query(None, history_q(all(), 5)), Err(Error::Kv(KvError::Compacted { oldest: 6 })));
    assert_eq!(history_revisions(&t, all(), 6), (vec![], 5, false));
    ok(t.anon(put("e", b"x")));
    assert_eq!(history_revisions(&t, all(), 6), (vec![6], 6, false));
}

#[test]
fn values_keys_and_names_are_limited() {
    let limits = Limits { kv_value_bytes_max: 4, kv_keys_max: 2, name_bytes_max: 4, ..Limits::default() };
    let mut t = T::with_limits(limits);
    let value = Error::Limit { limit: Limit::KvValueBytes, max: 4 };
    let keys = Error::Limit { limit: Limit::KvKeys, max: 2 };
    let name = Error::Limit { limit: Limit::NameBytes, max: 4 };
    assert_eq!(err(t.anon(put("a", b"12345"))), value);
    assert_eq!(err(t.anon(put("", b"1"))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.anon(put("abcde", b"1"))), name);
    assert_eq!(t.m.kv_revision(), 0, "a refused put is not a change");
    assert_eq!(ok(t.anon(put("a", b"1234"))), written(1));
    ok(t.anon(put("b", b"1")));
    assert_eq!(err(t.anon(put("c", b"1"))), keys);
    assert_eq!(err(t.anon(copy("a", "c", false))), keys);
    assert_eq!(err(t.anon(copy("a", "abcde", false))), name);
    assert_eq!(err(t.anon(rename("a", "", false))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    // Overwrites need no new key.
    assert_eq!(ok(t.anon(put("b", b"2"))), written(3));
    assert_eq!(ok(t.anon(copy("a", "b", false))), written(4));
    ok(t.anon(delete("b", None)));
    assert_eq!(ok(t.anon(put("c", b"1"))), written(6));
    assert_eq!(get(&t, "a").and_then(|e| e.value), Some(b"1234".to_vec()));
}

#[test]
fn a_rename_at_the_key_limit_succeeds_since_it_adds_no_key() {
    let mut t = T::with_limits(Limits { kv_keys_max: 2, ..Limits::default() });
    ok(t.anon(put("a", b"1")));
    ok(t.anon(put("b", b"2")));
    assert_eq!(ok(t.anon(rename("a", "c", false))), written(3));
    assert_eq!(get(&t, "a"), None);
    assert_eq!(get(&t, "c").and_then(|e| e.value), Some(b"1".to_vec()));
    // Still full.
    assert_eq!(err(t.anon(put("d", b"1"))), Error::Limit { limit: Limit::KvKeys, max: 2 });
}

#[test]
fn a_retried_conditional_put_is_answered_from_the_cache() {
    let mut t = T::new();
    let s = t.open(60_000);
    let create = || put_with("k", b"v", PutMode::IfAbsent, None);
    assert_eq!(ok(t.run_seq(s, 1, 1, create())), written(1));
    // Applied again it would fail with `Exists`; the retry gets the original answer.
    assert_eq!(ok(t.run_seq(s, 1, 1, create())), written(1));
    assert_eq!(t.m.kv_revision(), 1);
}

#[test]
fn the_store_ttls_and_history_survive_a_snapshot() {
    let mut t = T::with_limits(Limits { watch_history_max: 4, ..Limits::default() });
    ok(t.anon(put("a/1", b"one")));
    ok(t.anon(put("a/2", b"two")));
    ok(t.anon(put_ttl("a/ttl", b"short", 100)));
    ok(t.anon(put_ttl("b", b"long", 5_000)));
    ok(t.anon(delete("a/1", None)));
    t.events();
    let probe = [
        get_q("a/2"),
        head_q("a/ttl"),
        head_q("b"),
        list_q("", None, false),
        list_q("a/", Some("a/1"), true),
        history_q(WatchFilter::Prefix("".into()), 2),
        history_q(WatchFilter::Pattern("a.>".into()), 1),
    ];
    t.assert_snapshot_round_trips(&probe);
    t.restore_fresh();
    // The window and the revision counter came across.
    assert_eq!(
        t.query(None, history_q(WatchFilter::Key("a/1".into()), 1)),
        Err(Error::Kv(KvError::Compacted { oldest: 2 }))
    );
    assert_eq!(t.m.kv_revision(), 5);
    // So did the TTL timers.
    assert_eq!(t.m.next_deadline().map(|d| d.as_micros()), Some(100_000));
    t.advance_ms(100);
    t.tick();
    assert_eq!(get(&t, "a/ttl"), None);
    assert_eq!(kv_events(&mut t), vec![change(6, "a/ttl", WatchKind::Expire, None)]);
    assert_eq!(ok(t.anon(put("a/3", b"three"))), written(7));
    assert_eq!(head(&t, "b").and_then(|e| e.expires_in_ms), Some(4_900));
}
