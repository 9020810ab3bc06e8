//! Grants whose caller stopped waiting are given back; signals reach the operation that
//! subscribed, even those that arrive before its reply.

use super::*;
use crate::machine::lock::{LockOp, LockQuery};
use crate::machine::signal::SignalDelivery;
use crate::machine::Fence;
use alloc::vec;

fn lock() -> Op {
    Op::Lock(LockOp::Lock { name: "L".into(), timeout_ms: None })
}

fn commands(out: &[(Peer, ClientRequest)]) -> Vec<(SessionRef, Op)> {
    out.iter()
        .filter_map(|(_, r)| match &r.body {
            RequestBody::Command(Command { session: Some(s), op }) => Some((*s, op.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_abandoned_grant_is_given_back_in_its_session_and_not_reported() {
    let mut c = with_session(7);
    let op = c.submit(ms(3), lock());
    let (peer, req) = sent(&mut c).remove(0);
    c.abandon(ms(4), op);
    // Queued in the cluster, granted later: nobody waits for it any more.
    answer(&mut c, ms(5), peer, req.id, Ok(Answer::Applied { index: 9, outcome: Outcome::Pending }));
    c.handle_message(
        ms(6),
        peer,
        ServerMessage::Push(Push::Completed {
            session: SessionId(7),
            seq: 1,
            result: Ok(Reply::Fence(Fence(9))),
            index: 12,
        }),
    );
    assert!(events(&mut c).is_empty(), "an abandoned operation is not reported");
    let given_back = commands(&sent(&mut c));
    assert_eq!(given_back.len(), 1);
    assert_eq!(given_back[0].0.id, SessionId(7));
    assert_eq!(given_back[0].1, Op::Lock(LockOp::Release { name: "L".into(), fence: Fence(9) }));
}

#[test]
fn an_abandoned_command_that_fails_is_not_reported_and_nothing_is_kept() {
    let mut c = with_session(7);
    let op = c.submit(ms(3), lock());
    let (peer, req) = sent(&mut c).remove(0);
    c.abandon(ms(4), op);
    answer(&mut c, ms(5), peer, req.id, Err(ClientError::AnswerTooLarge { size: 9, max: 8 }));
    assert!(events(&mut c).is_empty(), "its caller is gone");
    assert!(commands(&sent(&mut c)).is_empty(), "a failure grants nothing to give back");
    assert!(c.abandoned.is_empty());
}

#[test]
fn an_abandoned_read_in_flight_is_forgotten_and_its_answer_ignored() {
    let mut c = with_session(7);
    let op =
        c.read(ms(3), QueryOp::Lock(LockQuery::LockCount { name: "L".into() }), Consistency::Linearizable);
    let (peer, req) = sent(&mut c).remove(0);
    c.abandon(ms(4), op);
    assert_eq!(c.in_flight(), 0);
    answer(&mut c, ms(5), peer, req.id, Ok(Answer::Read { index: 3, result: Ok(Reply::Count(0)) }));
    assert!(events(&mut c).is_empty());
    assert!(c.abandoned.is_empty());
}

#[test]
fn an_operation_abandoned_before_it_is_sent_is_dropped() {
    let mut c = client(&["a:1"]);
    let probe = sent(&mut c).remove(0);
    let op = c.submit(ms(1), lock());
    c.abandon(ms(2), op);
    assert_eq!(c.in_flight(), 0);
    // The cluster answers: nothing goes out for the abandoned lock, not even a session.
    answer(&mut c, ms(3), probe.0, probe.1.id, Ok(view(1, Some(1), &[])));
    assert!(sent(&mut c).is_empty());
    assert!(events(&mut c).iter().all(|e| matches!(e, ClientEvent::Reached { .. })));
}

#[test]
fn a_reply_reports_what_releases_its_grant() {
    let mut c = with_session(7);
    let op = c.submit(ms(3), lock());
    let (peer, req) = sent(&mut c).remove(0);
    answer(&mut c, ms(4), peer, req.id, applied(Ok(Reply::Fence(Fence(4)))));
    match events(&mut c).as_slice() {
        [ClientEvent::Done { op: o, releases, session: Some(SessionId(7)), .. }] if *o == op => {
            assert_eq!(releases, &vec![Op::Lock(LockOp::Release { name: "L".into(), fence: Fence(4) })]);
        }
        other => panic!("{other:?}"),
    }
}

fn signal(subscription: u64, index: u64) -> ServerMessage {
    ServerMessage::Push(Push::Signal(SignalDelivery {
        session: SessionId(7),
        subscription,
        subject: "s".into(),
        payload: Vec::new(),
        index,
    }))
}

#[test]
fn signals_reach_the_subscribing_operation_even_before_its_reply() {
    let mut c = with_session(7);
    let sub = c.submit(ms(3), Op::Signal(SignalOp::Subscribe { pattern: "s".into(), group: None }));
    let (peer, req) = sent(&mut c).remove(0);
    // Its first signal overtakes the reply; another subscription's is not ours.
    c.handle_message(ms(4), peer, signal(10, 11));
    c.handle_message(ms(4), peer, signal(99, 12));
    assert!(events(&mut c).is_empty());
    answer(&mut c, ms(5), peer, req.id, applied(Ok(Reply::Subscribed { id: 10 })));
    c.handle_message(ms(6), peer, signal(10, 13));
    c.handle_message(ms(6), peer, signal(10, 13)); // pushed twice: delivered once
    let got: Vec<(OpId, u64)> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Signal { op, delivery } => Some((op, delivery.index)),
            ClientEvent::Done { op, .. } => Some((op, 0)),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![(sub, 0), (sub, 11), (sub, 13)]);
}

#[test]
fn one_operation_over_the_bound_fails_at_once_with_a_typed_error() {
    let eps = vec![Endpoint::addr("a:1")];
    let mut cfg = ClientConfig::new(GROUP, eps);
    cfg.operations_max = 3;
    let mut c = Client::new(cfg, Instant::ZERO, 0);
    let _ = sent(&mut c);
    let ops: Vec<OpId> = (0..4).map(|_| c.submit(ms(1), lock())).collect();
    // Three held (with the session they opened); the fourth refused.
    let failed: Vec<OpId> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Failed { op, error: ClientError::TooManyOperations { max: 3 } } => Some(op),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![ops[2], ops[3]], "the session open counts as one of the three");
    assert_eq!(c.in_flight(), 2);
}
