//! Signals: delivery to every matching subscription, one member per queue group in
//! round-robin order, and subscriptions that belong to (and end with) sessions.

use super::{err, ok, T};
use crate::machine::session::SessionOp;
use crate::machine::signal::{SignalDelivery, SignalError, SignalOp};
use crate::machine::{Error, Event, Limit, Limits, Op, Reply, SessionId};
use alloc::vec;
use alloc::vec::Vec;

const TTL_MS: u64 = 60_000;

fn subscribe(pattern: &str, group: Option<&str>) -> Op {
    Op::Signal(SignalOp::Subscribe { pattern: pattern.into(), group: group.map(Into::into) })
}

fn unsubscribe(id: u64) -> Op {
    Op::Signal(SignalOp::Unsubscribe { id })
}

fn publish(subject: &str, payload: &[u8]) -> Op {
    Op::Signal(SignalOp::Publish { subject: subject.into(), payload: payload.to_vec() })
}

/// Subscribes `s` and returns the subscription id.
fn sub(t: &mut T, s: SessionId, pattern: &str, group: Option<&str>) -> u64 {
    match ok(t.run(s, subscribe(pattern, group))) {
        Reply::Subscribed { id } => id,
        other => panic!("subscribe answered {other:?}"),
    }
}

/// Publishes anonymously and returns the receiver count and the (subscription, session)
/// of each delivery, checking every delivery carries the signal and its entry.
fn send(t: &mut T, subject: &str, payload: &[u8]) -> (u64, Vec<(u64, SessionId)>) {
    t.events();
    let index = t.next_index();
    let Reply::Count(n) = ok(t.anon(publish(subject, payload))) else {
        panic!("publish must answer a count")
    };
    let deliveries = t
        .events()
        .into_iter()
        .map(|e| match e {
            Event::Signal(d) => {
                assert_eq!((d.subject.as_str(), d.payload.as_slice(), d.index), (subject, payload, index));
                (d.subscription, d.session)
            }
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    (n, deliveries)
}

#[test]
fn a_signal_reaches_every_matching_subscription() {
    let mut t = T::new();
    let [a, b, c] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    let star = sub(&mut t, a, "orders.*.created", None);
    let tail = sub(&mut t, b, "orders.>", None);
    let exact = sub(&mut t, c, "orders.eu.created", None);
    let other = sub(&mut t, c, "billing.>", None);
    let all = sub(&mut t, a, ">", None);
    assert_eq!(
        send(&mut t, "orders.eu.created", b"o1"),
        (4, vec![(star, a), (tail, b), (exact, c), (all, a)])
    );
    // `>` needs at least one more token, `*` exactly one.
    assert_eq!(send(&mut t, "orders.eu", b""), (2, vec![(tail, b), (all, a)]));
    assert_eq!(send(&mut t, "orders", b""), (1, vec![(all, a)]));
    assert_eq!(send(&mut t, "orders.eu.created.late", b""), (2, vec![(tail, b), (all, a)]));
    assert_eq!(send(&mut t, "billing.x", b"$"), (2, vec![(other, c), (all, a)]));
}

#[test]
fn a_signal_with_no_subscriber_reaches_nobody() {
    let mut t = T::new();
    assert_eq!(send(&mut t, "a.b", b"x"), (0, vec![]));
}

#[test]
fn delivery_events_carry_the_signal() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let id = sub(&mut t, a, "a", None);
    t.events();
    let index = t.next_index();
    assert_eq!(ok(t.run(a, publish("a", b"payload"))), Reply::Count(1));
    assert_eq!(
        t.events(),
        vec![Event::Signal(SignalDelivery {
            session: a,
            subscription: id,
            subject: "a".into(),
            payload: b"payload".to_vec(),
            index,
        })]
    );
}

#[test]
fn the_subscription_id_is_the_index_of_the_subscribe_entry() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let index = t.next_index();
    assert_eq!(sub(&mut t, a, "a", None), index);
    // A retried subscribe does not subscribe twice.
    let seq = t.last_seq(a);
    assert_eq!(ok(t.run_seq(a, seq, seq, subscribe("a", None))), Reply::Subscribed { id: index });
    assert_eq!(send(&mut t, "a", b""), (1, vec![(index, a)]));
}

#[test]
fn a_queue_group_takes_turns_in_subscription_order() {
    let mut t = T::new();
    let [a, b, c, d] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    let g1 = sub(&mut t, b, "jobs.*", Some("workers"));
    let g2 = sub(&mut t, c, "jobs.>", Some("workers"));
    let g3 = sub(&mut t, a, "jobs.run", Some("workers"));
    let plain = sub(&mut t, d, "jobs.*", None);
    let mut turns = Vec::new();
    for _ in 0..4 {
        let (n, deliveries) = send(&mut t, "jobs.run", b"");
        assert_eq!(n, 2);
        assert!(deliveries.contains(&(plain, d)), "{deliveries:?}");
        turns.extend(deliveries.into_iter().filter(|(id, _)| *id != plain));
    }
    assert_eq!(turns, vec![(g1, b), (g2, c), (g3, a), (g1, b)]);
}

#[test]
fn each_queue_group_gets_one_copy() {
    let mut t = T::new();
    let [a, b, c] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    let x1 = sub(&mut t, a, "s", Some("x"));
    let x2 = sub(&mut t, b, "s", Some("x"));
    let y1 = sub(&mut t, c, "s", Some("y"));
    assert_eq!(send(&mut t, "s", b""), (2, vec![(x1, a), (y1, c)]));
    assert_eq!(send(&mut t, "s", b""), (2, vec![(x2, b), (y1, c)]));
    assert_eq!(send(&mut t, "s", b""), (2, vec![(x1, a), (y1, c)]));
}

#[test]
fn a_queue_group_rotates_over_its_matching_members_only() {
    let mut t = T::new();
    let [a, b] = [t.open(TTL_MS), t.open(TTL_MS)];
    let any = sub(&mut t, a, "q.*", Some("g"));
    let only_x = sub(&mut t, b, "q.x", Some("g"));
    // "q.y" matches one member: it gets every one of them.
    assert_eq!(send(&mut t, "q.y", b""), (1, vec![(any, a)]));
    assert_eq!(send(&mut t, "q.y", b""), (1, vec![(any, a)]));
    let (_, first) = send(&mut t, "q.x", b"");
    let (_, second) = send(&mut t, "q.x", b"");
    let mut both = [first, second].concat();
    both.sort_unstable();
    assert_eq!(both, vec![(any, a), (only_x, b)]);
}

#[test]
fn wildcard_and_malformed_subjects_are_refused() {
    let mut t = T::with_limits(Limits { name_bytes_max: 8, ..Limits::default() });
    let a = t.open(TTL_MS);
    let invalid = Error::Signal(SignalError::InvalidSubject);
    for subject in ["a.*", "a.>", ">", "*", "a..b", "a.", ".a", "a*"] {
        assert_eq!(err(t.anon(publish(subject, b""))), invalid, "publish on {subject:?}");
    }
    for pattern in ["a..b", "a.>.b", "a*", "a.b>", ".a", "a."] {
        assert_eq!(err(t.run(a, subscribe(pattern, None))), invalid, "subscribe to {pattern:?}");
    }
    let name = Error::Limit { limit: Limit::NameBytes, max: 8 };
    assert_eq!(err(t.anon(publish("", b""))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.anon(publish("abcde.fgh", b""))), name);
    assert_eq!(err(t.run(a, subscribe("", None))), Error::BelowMinimum { limit: Limit::NameBytes, min: 1 });
    assert_eq!(err(t.run(a, subscribe("abcde.fgh", None))), name);
    assert_eq!(
        err(t.run(a, subscribe("a", Some("")))),
        Error::BelowMinimum { limit: Limit::NameBytes, min: 1 }
    );
    assert_eq!(err(t.run(a, subscribe("a", Some("ninechars")))), name);
    // None of the refused subscriptions exists.
    assert_eq!(send(&mut t, "a", b""), (0, vec![]));
    assert!(t.m.owning_sessions().is_empty());
}

#[test]
fn subscribing_needs_a_session_and_publishing_does_not() {
    let mut t = T::new();
    let a = t.open(TTL_MS);
    let id = sub(&mut t, a, "a", None);
    assert_eq!(err(t.anon(subscribe("a", None))), Error::SessionRequired);
    assert_eq!(err(t.anon(unsubscribe(id))), Error::SessionRequired);
    assert_eq!(send(&mut t, "a", b""), (1, vec![(id, a)]));
}

#[test]
fn only_the_owning_session_can_unsubscribe() {
    let mut t = T::new();
    let [a, b] = [t.open(TTL_MS), t.open(TTL_MS)];
    let id = sub(&mut t, a, "a", None);
    let not_subscribed = Error::Signal(SignalError::NotSubscribed);
    assert_eq!(err(t.run(b, unsubscribe(id))), not_subscribed);
    assert_eq!(send(&mut t, "a", b""), (1, vec![(id, a)]));
    assert_eq!(ok(t.run(a, unsubscribe(id))), Reply::Unit);
    assert_eq!(err(t.run(a, unsubscribe(id))), not_subscribed);
    assert_eq!(err(t.run(a, unsubscribe(12345))), not_subscribed);
    assert_eq!(send(&mut t, "a", b""), (0, vec![]));
}

#[test]
fn subscriptions_end_with_their_session() {
    let mut t = T::new();
    let closing = t.open(TTL_MS);
    let expiring = t.open(500);
    let staying = t.open(TTL_MS);
    sub(&mut t, closing, "a", None);
    sub(&mut t, closing, "a", Some("g"));
    sub(&mut t, expiring, "a", Some("g"));
    let kept = sub(&mut t, staying, "a", None);
    ok(t.run(closing, Op::Session(SessionOp::Close)));
    let (n, _) = send(&mut t, "a", b"");
    assert_eq!(n, 2);
    t.advance_ms(500);
    t.tick();
    assert_eq!(send(&mut t, "a", b""), (1, vec![(kept, staying)]));
    assert_eq!(t.m.owning_sessions().into_iter().collect::<Vec<_>>(), vec![staying]);
}

#[test]
fn payloads_and_subscriptions_are_limited() {
    let limits = Limits { signal_payload_bytes_max: 4, subscriptions_max: 2, ..Limits::default() };
    let mut t = T::with_limits(limits);
    let [a, b] = [t.open(TTL_MS), t.open(TTL_MS)];
    let first = sub(&mut t, a, "a", None);
    sub(&mut t, b, "a", Some("g"));
    let full = Error::Limit { limit: Limit::Subscriptions, max: 2 };
    assert_eq!(err(t.run(a, subscribe("b", None))), full);
    assert_eq!(err(t.run(b, subscribe("b", None))), full);
    assert_eq!(
        err(t.anon(publish("a", b"12345"))),
        Error::Limit { limit: Limit::SignalPayloadBytes, max: 4 }
    );
    assert_eq!(t.events(), vec![], "a refused signal must not be delivered");
    assert_eq!(send(&mut t, "a", b"1234").0, 2);
    // Unsubscribing frees a slot.
    ok(t.run(a, unsubscribe(first)));
    sub(&mut t, a, "b", None);
}

#[test]
fn subscriptions_and_group_turns_survive_a_snapshot() {
    let mut t = T::new();
    let [a, b, c] = [t.open(TTL_MS), t.open(TTL_MS), t.open(TTL_MS)];
    let g1 = sub(&mut t, a, "s.>", Some("g"));
    let g2 = sub(&mut t, b, "s.>", Some("g"));
    let plain = sub(&mut t, c, "s.*", None);
    assert_eq!(send(&mut t, "s.x", b""), (2, vec![(g1, a), (plain, c)]));
    t.assert_snapshot_round_trips(&[]);
    t.restore_fresh();
    // The group's turn came across: the next signal goes to the second member.
    assert_eq!(send(&mut t, "s.x", b""), (2, vec![(g2, b), (plain, c)]));
    assert_eq!(err(t.run(c, unsubscribe(g1))), Error::Signal(SignalError::NotSubscribed));
    ok(t.run(a, unsubscribe(g1)));
    assert_eq!(send(&mut t, "s.x.y", b""), (1, vec![(g2, b)]));
}
