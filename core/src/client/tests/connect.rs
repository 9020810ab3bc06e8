//! The client's connection behaviour, driven by hand: probes, discovery of members from
//! one endpoint, avoiding an endpoint that accepts but never answers, sessions opened
//! only when needed and closed when opened twice.

use super::*;
use crate::machine::long::LongOp;
use alloc::vec;

fn incr() -> Op {
    Op::Long(LongOp::AddAndGet { name: "n".into(), delta: 1 })
}

#[test]
fn every_endpoint_is_probed_at_once_and_nothing_else_goes_out_before_an_answer() {
    let mut c = client(&["a:1", "b:1", "c:1"]);
    let out = sent(&mut c);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|(_, r)| r.body == RequestBody::Hello));
    c.submit(ms(1), incr());
    assert!(sent(&mut c).is_empty(), "no endpoint has answered: nothing to aim at");
    assert!(c.session().is_none());
    assert_eq!(c.in_flight(), 1);
}

#[test]
fn one_endpoint_is_enough_the_others_and_the_leader_are_learnt_from_it() {
    let mut c = client(&["127.0.0.1:7001"]);
    let probe = sent(&mut c).remove(0);
    answer(&mut c, ms(1), probe.0, probe.1.id, Ok(view(1, Some(2), &[1, 2, 3])));
    assert_eq!(events(&mut c), vec![ClientEvent::Reached { node: NodeId(1), peer: Peer(0) }]);
    assert_eq!(c.leader(), Some(NodeId(2)));
    let known: Vec<_> = c.endpoints().map(|(_, addr, node, _, _)| (String::from(addr), node)).collect();
    assert_eq!(
        known,
        vec![
            ("127.0.0.1:7001".into(), Some(NodeId(1))),
            ("127.0.0.1:7002".into(), Some(NodeId(2))),
            ("127.0.0.1:7003".into(), Some(NodeId(3))),
        ]
    );
    // The learnt members are probed, and the session opens at the leader at once.
    c.submit(ms(2), incr());
    let out = sent(&mut c);
    let leader = c.peer_of(NodeId(2)).expect("learnt");
    assert!(out.iter().any(|(p, r)| *p == leader && r.body == RequestBody::Hello));
    let open = out.iter().find(|(_, r)| matches!(r.body, RequestBody::Command(_))).expect("a session open");
    assert_eq!(open.0, leader);
}

#[test]
fn a_websocket_client_learns_the_members_websocket_urls() {
    let cfg = ClientConfig {
        learns: AddrKind::Web,
        ..ClientConfig::new(GroupId(1), vec![Endpoint::addr("ws://127.0.0.1:7201/ws")])
    };
    let mut c = Client::new(cfg, ms(0), 1);
    let probe = sent(&mut c).remove(0);
    answer(&mut c, ms(1), probe.0, probe.1.id, Ok(view(1, Some(2), &[1, 2, 3])));
    let known: Vec<_> = c.endpoints().map(|(_, addr, node, _, _)| (String::from(addr), node)).collect();
    assert_eq!(
        known,
        vec![
            ("ws://127.0.0.1:7201/ws".into(), Some(NodeId(1))),
            ("ws://127.0.0.1:7202/ws".into(), Some(NodeId(2))),
            ("ws://127.0.0.1:7203/ws".into(), Some(NodeId(3))),
        ],
        "the members' WebSocket URLs, not their TCP addresses"
    );
}

#[test]
fn an_endpoint_that_accepts_but_never_answers_is_avoided_and_probed_again() {
    let mut c = client(&["a:1", "b:1"]);
    let probes = sent(&mut c);
    // Only b answers; it knows no leader yet.
    answer(&mut c, ms(1), probes[1].0, probes[1].1.id, Ok(view(2, None, &[])));
    let read = c.read(
        ms(2),
        QueryOp::Long(crate::machine::long::LongQuery::Get { name: "n".into() }),
        Consistency::Stale,
    );
    let out = sent(&mut c);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, probes[1].0, "the request goes to the endpoint that answered");
    answer(&mut c, ms(3), out[0].0, out[0].1.id, Ok(Answer::Read { index: 1, result: Ok(Reply::Long(0)) }));
    assert!(matches!(events(&mut c).last(), Some(ClientEvent::Done { op, .. }) if *op == read));
    // a's probe runs out: a is silent, and probed again a reprobe interval later.
    assert_eq!(c.poll_timeout(), Instant::ZERO.add_us(500_000));
    c.handle_timeout(ms(500));
    let a = probes[0].0;
    assert!(
        matches!(c.endpoints().next(), Some((p, _, _, Health::Silent { .. }, Some(PeerError::NoAnswer))) if p == a)
    );
    assert!(sent(&mut c).is_empty());
    c.handle_timeout(ms(1500));
    let again = sent(&mut c);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].0, &again[0].1.body), (a, &RequestBody::Hello));
}

#[test]
fn a_request_to_a_leader_that_stops_answering_moves_on_when_its_probe_runs_out() {
    let mut c = client(&["127.0.0.1:7001", "127.0.0.1:7002"]);
    let probes = sent(&mut c);
    // b answers first and names a as the leader; a's probe is still out.
    answer(&mut c, ms(1), probes[1].0, probes[1].1.id, Ok(view(2, Some(1), &[1, 2])));
    c.submit(ms(1), incr());
    let open = sent(&mut c);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].0, probes[0].0, "the session opens at the leader b named");
    // a never answers: at its probe deadline (before the 1 s request timeout) the open
    // goes to b, the endpoint that answers.
    c.handle_timeout(ms(500));
    let moved = sent(&mut c);
    assert!(
        moved.iter().any(|(p, r)| *p == probes[1].0 && matches!(r.body, RequestBody::Command(_))),
        "{moved:?}"
    );
}

#[test]
fn a_redirect_to_an_unknown_node_asks_for_the_members_then_follows() {
    let mut c = client(&["127.0.0.1:7001"]);
    let probe = sent(&mut c).remove(0);
    // An older view: no addresses, no leader.
    answer(&mut c, ms(1), probe.0, probe.1.id, Ok(view(1, None, &[])));
    c.submit(ms(1), incr());
    let open = sent(&mut c).remove(0);
    answer(
        &mut c,
        ms(2),
        open.0,
        open.1.id,
        Err(ClientError::Raft(RequestError::NotLeader { leader: Some(NodeId(3)) })),
    );
    let asked = sent(&mut c);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].1.body, RequestBody::Hello, "where is node 3?");
    answer(&mut c, ms(3), probe.0, asked[0].1.id, Ok(view(1, Some(3), &[1, 3])));
    c.handle_timeout(ms(60));
    let to_three = c.peer_of(NodeId(3)).expect("learnt");
    let out = sent(&mut c);
    assert!(out.iter().any(|(p, r)| *p == to_three && matches!(r.body, RequestBody::Command(_))), "{out:?}");
}

#[test]
fn sessions_open_only_for_commands_and_a_second_one_is_closed() {
    let mut c = client(&["a:1"]);
    let probe = sent(&mut c).remove(0);
    answer(&mut c, ms(1), probe.0, probe.1.id, Ok(view(1, Some(1), &[])));
    assert!(sent(&mut c).is_empty(), "no command, no session");
    c.submit(ms(2), incr());
    let first = sent(&mut c).remove(0);
    // Unanswered within the request timeout: the endpoint is probed again, and once it
    // answers, the open is sent again.
    c.handle_timeout(ms(1002));
    let reprobe = sent(&mut c).remove(0);
    assert_eq!(reprobe.1.body, RequestBody::Hello);
    answer(&mut c, ms(1002), reprobe.0, reprobe.1.id, Ok(view(1, Some(1), &[])));
    let retry =
        sent(&mut c).into_iter().find(|(_, r)| matches!(r.body, RequestBody::Command(_))).expect("resent");
    answer(
        &mut c,
        ms(1003),
        retry.0,
        retry.1.id,
        applied(Ok(Reply::Session { id: SessionId(7), ttl_ms: 10_000 })),
    );
    assert_eq!(c.session(), Some(SessionId(7)));
    // The first attempt was applied after all: that second session is closed at once.
    answer(
        &mut c,
        ms(1004),
        first.0,
        first.1.id,
        applied(Ok(Reply::Session { id: SessionId(6), ttl_ms: 10_000 })),
    );
    let out = sent(&mut c);
    let closes: Vec<_> = out
        .iter()
        .filter_map(|(_, r)| match &r.body {
            RequestBody::Command(Command { session: Some(s), op: Op::Session(SessionOp::Close) }) => {
                Some(s.id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(closes, vec![SessionId(6)]);
    assert_eq!(c.session(), Some(SessionId(7)), "the client's own session stays");
}

#[test]
fn closing_without_a_session_succeeds_at_once_and_opens_none() {
    let mut c = client(&["a:1"]);
    let _ = sent(&mut c);
    let op = c.close(ms(1));
    assert!(
        matches!(events(&mut c).as_slice(), [ClientEvent::Done { op: o, result: Ok(Reply::Unit), .. }] if *o == op)
    );
    assert!(sent(&mut c).is_empty());
}

#[test]
fn endpoints_of_another_group_are_refused_for_good() {
    let mut c = client(&["a:1", "b:1"]);
    let probes = sent(&mut c);
    for (peer, req) in &probes {
        answer(&mut c, ms(1), *peer, req.id, Err(ClientError::WrongGroup { serves: GroupId(9) }));
    }
    assert!(c.all_refused());
    c.handle_timeout(ms(5000));
    assert!(sent(&mut c).is_empty(), "never asked again");
}

#[test]
fn closing_while_the_session_opens_closes_that_session_once_it_is_open() {
    let mut c = client(&["a:1"]);
    let probe = sent(&mut c).remove(0);
    answer(&mut c, ms(1), probe.0, probe.1.id, Ok(view(1, Some(1), &[])));
    c.submit(ms(2), incr());
    let open = sent(&mut c).remove(0);
    let close = c.close(ms(3));
    answer(
        &mut c,
        ms(4),
        open.0,
        open.1.id,
        applied(Ok(Reply::Session { id: SessionId(5), ttl_ms: 10_000 })),
    );
    assert_eq!(c.session(), Some(SessionId(5)), "the open completes");
    let out = sent(&mut c);
    let close_req = out
        .iter()
        .find(|(_, r)| {
            matches!(&r.body, RequestBody::Command(Command { op: Op::Session(SessionOp::Close), .. }))
        })
        .expect("the close goes out in the session");
    answer(&mut c, ms(5), close_req.0, close_req.1.id, applied(Ok(Reply::Unit)));
    assert!(events(&mut c)
        .iter()
        .any(|e| matches!(e, ClientEvent::Done { op, result: Ok(Reply::Unit), .. } if *op == close)));
    // The session ends; nothing reopens one.
    c.handle_message(
        ms(6),
        close_req.0,
        ServerMessage::Push(Push::SessionEnded {
            session: SessionId(5),
            reason: crate::machine::SessionEnd::Closed,
        }),
    );
    c.handle_timeout(ms(5000));
    assert!(
        sent(&mut c)
            .iter()
            .all(|(_, r)| !matches!(&r.body, RequestBody::Command(Command { session: None, .. }))),
        "no new session"
    );
}

#[test]
fn a_request_for_one_node_goes_there_even_with_a_leader_elsewhere() {
    let mut c = client(&["127.0.0.1:7001"]);
    let probe = sent(&mut c).remove(0);
    answer(&mut c, ms(1), probe.0, probe.1.id, Ok(view(1, Some(2), &[1, 2, 3])));
    let _ = events(&mut c);
    let _ = sent(&mut c); // probes of the learnt members
    let op = c.admin_at(ms(2), NodeId(3), RequestBody::Status);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, c.peer_of(NodeId(3)).expect("learnt"), "to node 3, not the leader 2");
    assert_eq!(out[0].1.body, RequestBody::Status);
    let status = view(3, None, &[]);
    answer(&mut c, ms(3), out[0].0, out[0].1.id, Ok(status.clone()));
    assert_eq!(events(&mut c), vec![ClientEvent::Admin { op, answer: status }]);
}

#[test]
fn a_request_for_one_node_fails_when_that_node_is_unknown_or_silent_and_goes_nowhere_else() {
    let mut c = client(&["127.0.0.1:7001", "127.0.0.1:7002"]);
    let probes = sent(&mut c);
    answer(&mut c, ms(1), probes[0].0, probes[0].1.id, Ok(view(1, Some(1), &[1, 2])));
    let _ = events(&mut c);
    let _ = sent(&mut c);
    // Never heard of node 9.
    let unknown = c.admin_at(ms(2), NodeId(9), RequestBody::Status);
    assert!(sent(&mut c).is_empty());
    assert_eq!(
        events(&mut c),
        vec![ClientEvent::Failed { op: unknown, error: ClientError::NodeUnreachable { node: NodeId(9) } }]
    );
    // Node 2 (learnt, its probe out) is asked, never answers, and the request fails once
    // node 2 counts as silent, without going to node 1.
    let quiet = c.admin_at(ms(2), NodeId(2), RequestBody::Status);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(Some(out[0].0), c.peer_of(NodeId(2)));
    c.handle_timeout(ms(600));
    let after = sent(&mut c);
    assert!(after.iter().all(|(_, r)| r.body != RequestBody::Status), "{after:?}");
    assert_eq!(
        events(&mut c),
        vec![ClientEvent::Failed { op: quiet, error: ClientError::NodeUnreachable { node: NodeId(2) } }]
    );
}

#[test]
fn a_session_ttl_the_cluster_refuses_fails_the_commands_waiting_for_it_and_is_not_retried() {
    let mut c = client(&["a:1"]);
    let probe = sent(&mut c).remove(0);
    answer(&mut c, ms(1), probe.0, probe.1.id, Ok(view(1, Some(1), &[])));
    let _ = events(&mut c);
    let first = c.submit(ms(2), incr());
    let second = c.submit(ms(2), incr());
    let out = sent(&mut c);
    assert_eq!(out.len(), 1, "only the session open goes out: {out:?}");
    let refused = Error::BelowMinimum { limit: crate::machine::Limit::SessionTtl, min: 1000 };
    answer(&mut c, ms(3), out[0].0, out[0].1.id, applied(Err(refused.clone())));
    let done: Vec<(OpId, Result<Reply, Error>)> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Done { op, result, .. } => Some((op, result)),
            _ => None,
        })
        .collect();
    assert_eq!(done, vec![(first, Err(refused.clone())), (second, Err(refused))]);
    c.handle_timeout(ms(5_000));
    assert!(sent(&mut c).iter().all(|(_, r)| !matches!(r.body, RequestBody::Command(_))), "no second open");
    assert_eq!(c.in_flight(), 0);
}

/// A close whose first try closed the session and whose answer was lost is retried and
/// answered "session lost": the close succeeds, since the session is gone as asked.
#[test]
fn a_retried_close_answered_session_lost_succeeds() {
    let mut c = with_session(7);
    let close = c.close(ms(10));
    let first = sent(&mut c)
        .into_iter()
        .find(|(_, r)| {
            matches!(&r.body, RequestBody::Command(Command { op: Op::Session(SessionOp::Close), .. }))
        })
        .expect("the close goes out");
    // Its answer is lost: the retry, after the request timeout, finds the session gone.
    c.handle_timeout(ms(10 + 1_500));
    let retry = sent(&mut c)
        .into_iter()
        .find(|(_, r)| {
            matches!(&r.body, RequestBody::Command(Command { op: Op::Session(SessionOp::Close), .. }))
        })
        .unwrap_or(first);
    answer(&mut c, ms(1_600), retry.0, retry.1.id, applied(Err(Error::SessionLost(SessionId(7)))));
    let ev = events(&mut c);
    assert!(
        ev.iter().any(|e| matches!(e, ClientEvent::Done { op, result: Ok(Reply::Unit), .. } if *op == close)),
        "{ev:?}"
    );
    assert_eq!(c.session(), None);
}
