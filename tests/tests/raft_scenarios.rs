//! Raft behaviour, one named scenario per test, in the spirit of etcd's Raft tests. Each
//! runs on the deterministic simulator (safety checkers on after every step) with a
//! fault-free network unless the scenario cuts links or kills nodes itself.

use concord_core::raft::{Persisted, WriteToken};
use concord_core::{
    Config, Consistency, GroupId, Instant, Membership, MembershipChange, Message, MessageBody, Node,
    NodeError, NodeId, Request, RequestError, Response, Role, Start,
};
use concord_tests::harness::{self, H};
use concord_tests::register::{RegisterCommand, RegisterMachine, RegisterOutput, RegisterQuery};
use concord_tests::sim::Sim;

const SECOND: u64 = 1_000_000;

fn write(key: u64, value: u64) -> Request {
    Request::Propose(RegisterCommand::Write { key, value }.encode())
}

fn read(key: u64, consistency: Consistency) -> Request {
    Request::Read { query: RegisterQuery { key }.encode(), consistency }
}

fn cluster(nodes: u64, voters: u64) -> (Sim, u64) {
    let mut sim = Sim::quiet(11, nodes, voters);
    let leader = sim.elect(5 * SECOND).unwrap().expect("a leader is elected");
    // Ready once the leader's first entry of its term is committed.
    let ready = sim
        .run_until(SECOND, |s| s.node(leader).is_some_and(|n| n.commit_index() == n.status().last_index))
        .unwrap();
    assert!(ready, "the leader commits its first entry");
    (sim, leader)
}

/// Writes through the leader and waits for the answer.
fn commit_write(sim: &mut Sim, leader: u64, key: u64, value: u64) -> u64 {
    let id = sim.request(leader, write(key, value));
    match sim.await_reply(id, 2 * SECOND).unwrap() {
        Some(r) => match r.result {
            Ok(Response::Applied { index, output: RegisterOutput::Written }) => index,
            other => panic!("write failed: {other:?}"),
        },
        None => panic!("no reply to write"),
    }
}

fn value_on(sim: &Sim, node: u64, key: u64) -> Option<u64> {
    sim.node(node).and_then(|n| n.machine().get(key))
}

#[test]
fn three_nodes_elect_exactly_one_leader() {
    let (sim, leader) = cluster(3, 3);
    let term = sim.node(leader).unwrap().term();
    for id in 1..=3 {
        let n = sim.node(id).unwrap();
        assert_eq!(n.leader(), Some(NodeId(leader)));
        assert_eq!(n.term(), term);
        assert_eq!(n.role() == Role::Leader, id == leader);
    }
}

#[test]
fn single_node_cluster_commits_alone() {
    let (mut sim, leader) = cluster(1, 1);
    assert_eq!(leader, 1);
    commit_write(&mut sim, 1, 5, 50);
    assert_eq!(value_on(&sim, 1, 5), Some(50));
}

#[test]
fn entries_commit_on_a_quorum_and_apply_everywhere() {
    let (mut sim, leader) = cluster(3, 3);
    for v in 0..50 {
        commit_write(&mut sim, leader, v % 4, v);
    }
    sim.run_for(SECOND).unwrap();
    for id in 1..=3 {
        assert_eq!(value_on(&sim, id, 1), Some(49), "n{id}");
        assert_eq!(sim.node(id).unwrap().applied_index(), sim.node(leader).unwrap().commit_index());
    }
}

#[test]
fn a_minority_cannot_commit_and_a_majority_moves_on() {
    let (mut sim, old) = cluster(3, 3);
    commit_write(&mut sim, old, 1, 1);
    sim.isolate(old);
    let stranded = sim.request(old, write(1, 2));
    let majority: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let won = sim.run_until(3 * SECOND, |s| majority.iter().any(|id| s.is(*id, Role::Leader))).unwrap();
    assert!(won, "the majority elects a new leader");
    let new = *majority.iter().find(|id| sim.is(**id, Role::Leader)).unwrap();
    commit_write(&mut sim, new, 1, 3);
    sim.heal();
    sim.run_for(2 * SECOND).unwrap();
    // The stranded write never committed: everyone holds the majority's value.
    for id in 1..=3 {
        assert_eq!(value_on(&sim, id, 1), Some(3), "n{id}");
    }
    let reply = sim.reply_to(stranded).expect("the stranded proposal is answered").clone();
    assert!(matches!(reply.result, Err(RequestError::OutcomeUnknown)), "{:?}", reply.result);
}

#[test]
fn pre_vote_keeps_an_isolated_follower_from_inflating_terms() {
    let (mut sim, leader) = cluster(3, 3);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let term = sim.node(leader).unwrap().term();
    sim.isolate(follower);
    sim.run_for(5 * SECOND).unwrap();
    assert_eq!(sim.node(follower).unwrap().term(), term, "pre-votes fail, so the term stays");
    sim.heal();
    sim.run_for(2 * SECOND).unwrap();
    assert_eq!(sim.leader(), Some(leader), "rejoining does not disturb the leader");
    assert_eq!(sim.node(leader).unwrap().term(), term);
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let (mut sim, leader) = cluster(3, 3);
    sim.isolate(leader);
    let stepped = sim.run_until(2 * SECOND, |s| !s.is(leader, Role::Leader)).unwrap();
    assert!(stepped, "the isolated leader steps down by itself");
}

#[test]
fn one_way_cut_from_the_leader_causes_a_new_election_but_no_split_brain() {
    let (mut sim, leader) = cluster(3, 3);
    for id in (1..=3).filter(|id| *id != leader) {
        sim.cut(leader, id);
    }
    let moved = sim.run_until(3 * SECOND, |s| s.leader().is_some_and(|l| l != leader)).unwrap();
    assert!(moved);
    sim.heal();
    let l = sim.elect(3 * SECOND).unwrap().unwrap();
    commit_write(&mut sim, l, 9, 9);
}

#[test]
fn a_lagging_follower_is_sent_a_snapshot_in_chunks() {
    let (mut sim, leader) = cluster(3, 3);
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    sim.kill(lagging);
    for v in 0..200 {
        commit_write(&mut sim, leader, v % 3, v);
    }
    let leader_snapshot = sim.node(leader).unwrap().status().snapshot_index;
    assert!(leader_snapshot > 0, "the leader compacted its log");
    sim.revive(lagging);
    let caught_up = sim
        .run_until(5 * SECOND, |s| {
            s.node(lagging).is_some_and(|n| n.applied_index() == s.node(leader).unwrap().commit_index())
        })
        .unwrap();
    assert!(caught_up);
    let n = sim.node(lagging).unwrap();
    assert!(n.status().snapshot_index >= leader_snapshot, "it caught up through a snapshot");
    for key in 0..3 {
        assert_eq!(n.machine().get(key), sim.node(leader).unwrap().machine().get(key));
    }
}

#[test]
fn a_restarted_cluster_recovers_every_committed_write() {
    let (mut sim, leader) = cluster(3, 3);
    for v in 0..100 {
        commit_write(&mut sim, leader, v % 5, 1000 + v);
    }
    sim.run_for(SECOND).unwrap();
    for id in 1..=3 {
        sim.kill(id);
    }
    for id in 1..=3 {
        sim.revive(id);
    }
    let l = sim.elect(5 * SECOND).unwrap().expect("a leader after restart");
    commit_write(&mut sim, l, 7, 7);
    sim.run_for(SECOND).unwrap();
    for id in 1..=3 {
        for k in 0..5 {
            assert_eq!(value_on(&sim, id, k), Some(1095 + k), "n{id} key {k}");
        }
    }
}

#[test]
fn read_index_reads_see_the_latest_committed_write() {
    let (mut sim, leader) = cluster(3, 3);
    commit_write(&mut sim, leader, 2, 22);
    let id = sim.request(leader, read(2, Consistency::Linearizable));
    assert!(sim.reply_to(id).is_none(), "a ReadIndex read waits for a quorum round");
    let reply = sim.await_reply(id, SECOND).unwrap().unwrap();
    assert!(matches!(reply.result, Ok(Response::Read { output: RegisterOutput::Value(Some(22)), .. })));
}

#[test]
fn lease_reads_are_served_without_a_round_trip_while_the_lease_holds() {
    let (mut sim, leader) = cluster(3, 3);
    commit_write(&mut sim, leader, 2, 23);
    sim.run_for(100_000).unwrap(); // heartbeats renew the lease
    let id = sim.request(leader, read(2, Consistency::Lease));
    let reply = sim.reply_to(id).expect("answered in the same call").clone();
    assert!(matches!(reply.result, Ok(Response::Read { output: RegisterOutput::Value(Some(23)), .. })));
}

#[test]
fn an_isolated_leader_stops_serving_lease_reads() {
    // Hand-driven: node 1 is never ticked, so CheckQuorum cannot step it down and the
    // lease alone decides.
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], harness::cfg);
    h.elect(1);
    let w = h.request(1, write(2, 24));
    h.all();
    assert!(h.reply(w).unwrap().result.is_ok());
    h.advance(30_000);
    h.tick(1); // a heartbeat round renews the lease
    h.all();
    let fresh = h.request(1, read(2, Consistency::Lease));
    let answer = h.reply(fresh).map(|r| r.result.clone());
    assert!(
        matches!(answer, Some(Ok(Response::Read { output: RegisterOutput::Value(Some(24)), .. }))),
        "within the lease the read is answered at once: {answer:?}"
    );
    let lease = h.node(1).config().lease_duration_us();
    h.advance(lease + 1_000); // cut off: nothing is delivered from here on
    let late = h.request(1, read(2, Consistency::Lease));
    assert_eq!(h.node(1).role(), Role::Leader);
    assert!(h.reply(late).is_none(), "an expired lease falls back to ReadIndex, which cannot finish");
}

#[test]
fn followers_refuse_linearizable_reads_and_serve_stale_ones() {
    let (mut sim, leader) = cluster(3, 3);
    commit_write(&mut sim, leader, 4, 44);
    sim.run_for(SECOND).unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let lin = sim.request(follower, read(4, Consistency::Linearizable));
    let stale = sim.request(follower, read(4, Consistency::Stale));
    assert_eq!(
        sim.reply_to(lin).unwrap().result,
        Err(RequestError::NotLeader { leader: Some(NodeId(leader)) })
    );
    assert!(matches!(
        sim.reply_to(stale).unwrap().result,
        Ok(Response::Read { output: RegisterOutput::Value(Some(44)), .. })
    ));
}

#[test]
fn leadership_transfers_to_the_chosen_voter() {
    let (mut sim, leader) = cluster(3, 3);
    commit_write(&mut sim, leader, 1, 1);
    let target = (1..=3).find(|id| *id != leader).unwrap();
    let id = sim.request(leader, Request::TransferLeadership(NodeId(target)));
    let reply = sim.await_reply(id, 2 * SECOND).unwrap().expect("transfer answered");
    assert!(matches!(reply.result, Ok(Response::LeadershipTransferred { .. })), "{:?}", reply.result);
    assert_eq!(sim.elect(2 * SECOND).unwrap(), Some(target));
    commit_write(&mut sim, target, 1, 2);
}

#[test]
fn writes_are_refused_during_a_transfer_and_bad_targets_are_rejected() {
    let (mut sim, leader) = cluster(3, 3);
    let bad = sim.request(leader, Request::TransferLeadership(NodeId(9)));
    assert_eq!(sim.reply_to(bad).unwrap().result, Err(RequestError::InvalidTransferTarget(NodeId(9))));
    let me = sim.request(leader, Request::TransferLeadership(NodeId(leader)));
    assert_eq!(sim.reply_to(me).unwrap().result, Err(RequestError::InvalidTransferTarget(NodeId(leader))));
    let target = (1..=3).find(|id| *id != leader).unwrap();
    sim.isolate(target); // the transfer cannot complete
    let t = sim.request(leader, Request::TransferLeadership(NodeId(target)));
    let w = sim.request(leader, write(1, 1));
    assert_eq!(sim.reply_to(w).unwrap().result, Err(RequestError::TransferInProgress));
    let reply = sim.await_reply(t, 2 * SECOND).unwrap().expect("transfer answered");
    assert_eq!(reply.result, Err(RequestError::TransferTimedOut));
}

#[test]
fn a_learner_catches_up_and_is_promoted_to_voter() {
    let (mut sim, leader) = cluster(4, 3);
    for v in 0..100 {
        commit_write(&mut sim, leader, 0, v);
    }
    let add = sim.request(leader, Request::ChangeMembership(MembershipChange::AddLearner(NodeId(4))));
    let r = sim.await_reply(add, 2 * SECOND).unwrap().unwrap();
    assert!(matches!(r.result, Ok(Response::MembershipChanged { .. })), "{:?}", r.result);
    let caught = sim.run_until(3 * SECOND, |s| s.node(4).unwrap().machine().get(0) == Some(99)).unwrap();
    assert!(caught, "the learner receives the log (via snapshot)");
    assert!(!sim.node(4).unwrap().membership().is_voter(NodeId(4)));
    let promote = sim.request(leader, Request::ChangeMembership(MembershipChange::Promote(NodeId(4))));
    let r = sim.await_reply(promote, 2 * SECOND).unwrap().unwrap();
    match r.result {
        Ok(Response::MembershipChanged { membership, .. }) => {
            assert_eq!(membership.voters.len(), 4);
            assert_eq!(membership.quorum(), 3);
        }
        other => panic!("{other:?}"),
    }
    commit_write(&mut sim, leader, 0, 1000);
}

#[test]
fn a_leader_that_removes_itself_steps_down_after_the_change_commits() {
    let (mut sim, leader) = cluster(3, 3);
    let rm = sim.request(leader, Request::ChangeMembership(MembershipChange::Remove(NodeId(leader))));
    let r = sim.await_reply(rm, 2 * SECOND).unwrap().unwrap();
    assert!(matches!(r.result, Ok(Response::MembershipChanged { .. })), "{:?}", r.result);
    let new = sim
        .run_until(3 * SECOND, |s| s.leader().is_some_and(|l| l != leader) && !s.is(leader, Role::Leader))
        .unwrap();
    assert!(new, "the remaining voters elect a leader");
    let l = sim.leader().unwrap();
    assert_eq!(sim.node(l).unwrap().membership().voters.len(), 2);
    commit_write(&mut sim, l, 3, 3);
}

#[test]
fn membership_changes_are_one_at_a_time_and_validated() {
    let (mut sim, leader) = cluster(5, 3);
    sim.isolate(if leader == 1 { 2 } else { 1 });
    let other = if leader == 1 { 3 } else { (1..=3).find(|id| *id != leader && *id != 1).unwrap() };
    sim.isolate(other); // no quorum: the first change cannot commit
    let first = sim.request(leader, Request::ChangeMembership(MembershipChange::AddLearner(NodeId(4))));
    let second = sim.request(leader, Request::ChangeMembership(MembershipChange::AddLearner(NodeId(5))));
    assert!(sim.reply_to(first).is_none());
    assert_eq!(sim.reply_to(second).unwrap().result, Err(RequestError::MembershipChangePending));
    sim.heal();
    sim.await_reply(first, 3 * SECOND).unwrap();
    let l = sim.elect(3 * SECOND).unwrap().unwrap();
    let bad = sim.request(l, Request::ChangeMembership(MembershipChange::Promote(NodeId(5))));
    let r = sim.await_reply(bad, SECOND).unwrap().unwrap();
    assert!(matches!(r.result, Err(RequestError::InvalidMembershipChange(_))), "{:?}", r.result);
}

#[test]
fn oversized_proposals_and_floods_get_typed_errors() {
    let (mut sim, leader) = cluster(3, 3);
    let limit = sim.node(leader).unwrap().config().proposal_bytes_max;
    let id = sim.request(leader, Request::Propose(vec![0; limit + 1]));
    assert_eq!(
        sim.reply_to(id).unwrap().result,
        Err(RequestError::ProposalTooLarge { size: limit + 1, max: limit })
    );
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let id = sim.request(follower, write(1, 1));
    assert_eq!(
        sim.reply_to(id).unwrap().result,
        Err(RequestError::NotLeader { leader: Some(NodeId(leader)) })
    );
}

#[test]
fn a_cluster_keeps_committing_while_one_node_keeps_crashing() {
    let (mut sim, mut leader) = cluster(3, 3);
    for round in 0..6u64 {
        let victim = (round % 3) + 1;
        sim.kill(victim);
        if let Some(l) = sim.elect(3 * SECOND).unwrap() {
            leader = l;
        }
        commit_write(&mut sim, leader, 0, round);
        sim.revive(victim);
        sim.run_for(500_000).unwrap();
    }
    sim.run_for(SECOND).unwrap();
    for id in 1..=3 {
        assert_eq!(value_on(&sim, id, 0), Some(5), "n{id}");
    }
}

// ----- direct node scenarios (no simulator) ----------------------------------------

fn node(id: u64, start: Start) -> Node<RegisterMachine> {
    Node::new(Config::new(NodeId(id), GroupId(0)), RegisterMachine::new(), start, Instant::ZERO, id).unwrap()
}

fn three() -> Membership {
    Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)])
}

fn persist_all(n: &mut Node<RegisterMachine>) -> Vec<concord_core::StorageWrite> {
    let mut writes = Vec::new();
    while let Some(w) = n.poll_storage() {
        writes.push(w);
    }
    writes
}

#[test]
fn a_vote_leaves_only_after_it_is_durable() {
    let mut n = node(2, Start::NewCluster(three()));
    for w in persist_all(&mut n) {
        n.handle_persisted(w.token).unwrap();
    }
    // Past the startup lease, a candidate asks for a vote.
    let now = Instant::from_micros(400_000);
    let vote = Message {
        group: GroupId(0),
        from: NodeId(1),
        to: NodeId(2),
        term: 5,
        body: MessageBody::Vote { last_index: 0, last_term: 0, transfer: false },
    };
    n.handle_message(now, vote).unwrap();
    assert_eq!(n.poll_transmit(), None, "the vote must wait for its write");
    let writes = persist_all(&mut n);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].hard_state.map(|h| (h.term, h.voted_for)), Some((5, Some(NodeId(1)))));
    assert_eq!(n.poll_transmit(), None, "still not durable");
    n.handle_persisted(writes[0].token).unwrap();
    let reply = n.poll_transmit().expect("now it leaves");
    assert_eq!(reply.body, MessageBody::VoteResponse { granted: true });
}

#[test]
fn handle_persisted_rejects_tokens_never_handed_out() {
    let mut n = node(1, Start::NewCluster(three()));
    let w = persist_all(&mut n);
    assert_eq!(n.handle_persisted(WriteToken(99)), Err(NodeError::UnknownWriteToken(WriteToken(99))));
    n.handle_persisted(w[0].token).unwrap();
}

#[test]
fn messages_for_another_group_or_node_are_refused() {
    let mut n = node(1, Start::NewCluster(three()));
    let mut msg = Message {
        group: GroupId(9),
        from: NodeId(2),
        to: NodeId(1),
        term: 1,
        body: MessageBody::HeartbeatResponse { seq: 1 },
    };
    assert_eq!(n.handle_message(Instant::ZERO, msg.clone()), Err(NodeError::WrongGroup));
    msg.group = GroupId(0);
    msg.to = NodeId(3);
    assert_eq!(n.handle_message(Instant::ZERO, msg), Err(NodeError::WrongRecipient));
}

#[test]
fn corrupt_persisted_state_is_refused_on_restart() {
    let mut n = node(1, Start::NewCluster(Membership::with_voters([NodeId(1)])));
    let mut now = Instant::ZERO;
    let mut stored = Vec::new();
    for _ in 0..5 {
        now = n.poll_timeout().max(now);
        n.handle_timeout(now);
        for w in persist_all(&mut n) {
            stored.extend(w.entries.clone());
            n.handle_persisted(w.token).unwrap();
        }
    }
    assert!(!stored.is_empty());
    let mut gap = stored.clone();
    gap[0].index += 5;
    let persisted = Persisted { hard_state: Default::default(), snapshot: None, entries: gap };
    let err = Node::new(
        Config::new(NodeId(1), GroupId(0)),
        RegisterMachine::new(),
        Start::Restart(persisted),
        now,
        1,
    );
    assert!(matches!(err, Err(NodeError::CorruptState(_))));
}

#[test]
fn leader_timestamps_never_go_backwards_across_terms() {
    let mut sim = Sim::quiet(5, 3, 3);
    let first = sim.elect(5 * SECOND).unwrap().unwrap();
    commit_write(&mut sim, first, 1, 1);
    let target = (1..=3).find(|id| *id != first).unwrap();
    let t = sim.request(first, Request::TransferLeadership(NodeId(target)));
    sim.await_reply(t, 2 * SECOND).unwrap();
    let second = sim.elect(3 * SECOND).unwrap().unwrap();
    commit_write(&mut sim, second, 1, 2);
    let n = sim.node(second).unwrap();
    let (lo, hi) = (n.status().snapshot_index + 1, n.status().last_index);
    let mut last = Instant::ZERO;
    for i in lo..=hi {
        let e = n.entry(i).unwrap();
        assert!(e.time >= last, "entry {i} stamped {} after {}", e.time, last);
        last = e.time;
    }
}
