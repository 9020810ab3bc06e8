//! Regression tests for bugs found by review, each driving nodes directly through a
//! small harness with a scripted network: storage writes merged with snapshots, lease
//! reads after a timed-out transfer, replication and snapshot-transfer stalls, proposals
//! stranded on a removed leader, and overflow on absurd but decodable messages.

use concord_core::{
    Config, Consistency, Entry, Instant, Membership, MembershipChange, Message, MessageBody, Node, NodeError,
    NodeId, Reply, Request, RequestError, Response, Role, Start,
};
use concord_tests::harness::{cfg, flush, msg, noop, read, write, Disk, H, N};
use concord_tests::register::{RegisterMachine, RegisterOutput};

// A truncation and the snapshot that swallows its replacement entries land in one storage
// write: the stored tail must still be dropped, so a restart finds the node's own log.
#[test]
fn a_truncation_survives_a_snapshot_that_swallows_its_entries() {
    let mut c = cfg(2);
    c.snapshot_threshold_entries = 2;
    let three = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let mut n: N =
        Node::new(c.clone(), RegisterMachine::new(), Start::NewCluster(three), Instant::ZERO, 2).unwrap();
    let mut disk = Disk::default();
    flush(&mut n, &mut disk);
    let t = Instant::from_micros(1_000);
    // Leader 1 of term 1 appends 1..=3 (uncommitted).
    n.handle_message(
        t,
        msg(
            1,
            2,
            1,
            MessageBody::Append {
                prev_index: 0,
                prev_term: 0,
                entries: vec![noop(1, 1), noop(1, 2), noop(1, 3)],
                commit: 0,
            },
        ),
    )
    .unwrap();
    flush(&mut n, &mut disk);
    assert_eq!(disk.entries.len(), 3);
    // Leader 3 of term 2 overwrites from 1 with 1..=2 (term 2), commit 2.
    n.handle_message(
        t,
        msg(
            3,
            2,
            2,
            MessageBody::Append {
                prev_index: 0,
                prev_term: 0,
                entries: vec![noop(2, 1), noop(2, 2)],
                commit: 2,
            },
        ),
    )
    .unwrap();
    flush(&mut n, &mut disk);
    let restarted = Node::new(c, RegisterMachine::new(), Start::Restart(disk.persisted()), t, 2);
    match restarted {
        Err(e) => panic!("restart from durable state fails: {e:?}"),
        Ok(r) => assert_eq!(r.status().last_index, n.status().last_index, "restart differs from memory"),
    }
}

// An append lost while pipelining must be resent without waiting for a new proposal.
#[test]
fn one_lost_append_does_not_stall_replication() {
    let mut h = H::new(&[1, 2], &[1, 2], cfg);
    h.elect(1);
    // One write to reach Replicate state.
    let r0 = h.request(1, write(1, 1));
    h.all();
    assert!(h.reply(r0).is_some());
    // Second write: its append is lost.
    let r1 = h.request(1, write(1, 2));
    h.pump(|_| false, |m| matches!(m.body, MessageBody::Append { .. }));
    // Time passes, heartbeats flow normally.
    h.heartbeat_rounds(100, &[1, 2]);
    assert!(h.reply(r1).is_some(), "proposal never committed after 3s of healthy heartbeats");
}

// After a transfer times out, a delayed TimeoutNow can still let the target win (with
// votes that bypass the lease check), so the old leader must not trust its lease again.
#[test]
fn no_stale_lease_read_after_a_transfer_times_out() {
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], cfg);
    h.elect(1);
    let r0 = h.request(1, write(7, 1));
    h.all();
    assert!(h.reply(r0).unwrap().result.is_ok());
    let t = h.request(1, Request::TransferLeadership(NodeId(2)));
    // Hold the TimeoutNow.
    let held: Vec<Message> = h.net.iter().filter(|m| m.body == MessageBody::TimeoutNow).cloned().collect();
    assert_eq!(held.len(), 1);
    h.net.retain(|m| m.body != MessageBody::TimeoutNow);
    h.all();
    // Run past the transfer deadline with heartbeats flowing.
    h.heartbeat_rounds(12, &[1]);
    assert!(matches!(h.reply(t).unwrap().result, Err(RequestError::TransferTimedOut)));
    // A fresh heartbeat round: node 1's lease is renewed.
    h.advance(30_000);
    h.tick(1);
    h.all();
    // Now the delayed TimeoutNow arrives; node 1 is cut off from 2 and 3.
    h.deliver_one(held[0].clone());
    let cut = |m: &Message| m.from.0 == 1 || m.to.0 == 1;
    h.pump(|m| !cut(m), cut);
    assert_eq!(h.node(2).role(), Role::Leader, "node 2 won with transfer votes");
    let w = h.request(2, write(7, 2));
    h.pump(|m| !cut(m), cut);
    assert!(
        matches!(h.reply(w).unwrap().result, Ok(Response::Applied { .. })),
        "write acknowledged by node 2"
    );
    // Client now reads from node 1 with a lease read.
    h.advance(1_000);
    let r = h.request(1, read(7, Consistency::Lease));
    let reply = h.reply(r).cloned();
    if let Some(Reply { result: Ok(Response::Read { output: RegisterOutput::Value(v), .. }), .. }) = reply {
        assert_eq!(v, Some(2), "stale lease read after an acknowledged write");
    }
}

// A leader that removes itself steps down when the removal applies, and must answer a
// proposal it made after the removal entry.
#[test]
fn a_self_removed_leader_answers_its_pending_proposals() {
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], cfg);
    h.elect(1);
    let rm = h.request(1, Request::ChangeMembership(MembershipChange::Remove(NodeId(1))));
    // Append with the removal reaches 2 and 3, but their acks are held.
    h.pump(|m| m.from.0 == 1 && matches!(m.body, MessageBody::Append { .. }), |_| false);
    let held: Vec<Message> = h.net.drain(..).collect();
    let p = h.request(1, write(1, 1));
    // Appends carrying the proposal are lost.
    h.net.retain(|m| !matches!(m.body, MessageBody::Append { .. }));
    for m in held {
        h.deliver_one(m);
    }
    assert!(h.reply(rm).is_some());
    assert_eq!(h.node(1).role(), Role::Follower);
    h.heartbeat_rounds(200, &[1, 2, 3]);
    assert!(h.reply(p).is_some(), "proposal on self-removed leader never answered");
}

// A node removed while cut off never receives its removal: it used to campaign forever.
// The leader answers its pre-votes with `Removed`, and it stops campaigning.
#[test]
fn a_node_removed_while_cut_off_learns_it_and_stops_campaigning() {
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], cfg);
    h.elect(1);
    let cut = |m: &Message| m.to.0 == 3 || m.from.0 == 3;
    let rm = h.request(1, Request::ChangeMembership(MembershipChange::Remove(NodeId(3))));
    for _ in 0..10 {
        h.advance(30_000);
        h.tick(1);
        h.tick(2);
        h.pump(|m| !cut(m), cut);
    }
    assert!(h.reply(rm).is_some_and(|r| r.result.is_ok()), "the removal commits without node 3");
    assert!(h.node(3).membership().is_voter(NodeId(3)), "node 3 never heard of it");
    let term = h.node(1).term();
    // Healed: node 3's election timer runs out, and it asks for pre-votes.
    h.advance(1_000_000);
    h.tick(3);
    assert!(h.net.iter().any(|m| m.from.0 == 3 && matches!(m.body, MessageBody::PreVote { .. })));
    h.all();
    assert_eq!(h.removed, vec![3], "node 3 learnt it was removed");
    for _ in 0..5 {
        h.advance(1_000_000);
        h.tick(3);
        assert!(
            !h.net
                .iter()
                .any(|m| m.from.0 == 3
                    && matches!(m.body, MessageBody::PreVote { .. } | MessageBody::Vote { .. })),
            "a removed node campaigns no more"
        );
        h.all();
    }
    assert_eq!((h.node(1).role(), h.node(1).term()), (Role::Leader, term), "the leader was not disturbed");
}

// A removed leader (which never campaigns again) and a removed follower that received its
// removal learn it from the configuration they apply, and say so once.
#[test]
fn removed_members_that_apply_their_removal_report_it() {
    for removed in [1, 3] {
        let mut h = H::new(&[1, 2, 3], &[1, 2, 3], cfg);
        h.elect(1);
        let rm = h.request(1, Request::ChangeMembership(MembershipChange::Remove(NodeId(removed))));
        h.heartbeat_rounds(20, &[1, 2, 3]);
        assert!(h.reply(rm).is_some_and(|r| r.result.is_ok()));
        assert_eq!(h.removed, vec![removed], "node {removed} reports its removal once");
        // The others go on committing.
        let left: Vec<u64> = (1..=3).filter(|n| *n != removed).collect();
        h.heartbeat_rounds(40, &left);
        let leader =
            *left.iter().find(|n| h.node(**n).role() == Role::Leader).expect("a leader among the others");
        let w = h.request(leader, write(1, 7));
        h.heartbeat_rounds(5, &left);
        assert!(h.reply(w).is_some_and(|r| r.result.is_ok()), "removing node {removed}");
    }
}

// Decodable messages with absurd indexes are refused, never overflowed on.
#[test]
fn an_append_with_an_absurd_index_is_refused_without_panic() {
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], cfg);
    h.elect(1);
    let term = h.node(2).term();
    let now = h.now;
    let absurd = msg(
        1,
        2,
        term,
        MessageBody::Append { prev_index: u64::MAX, prev_term: 0, entries: vec![], commit: 0 },
    );
    let result = h.nodes.get_mut(&2).unwrap().handle_message(now, absurd);
    assert!(matches!(result, Err(NodeError::MalformedMessage(_))), "{result:?}");
    let snap = msg(
        1,
        2,
        term,
        MessageBody::InstallSnapshot {
            meta: concord_core::SnapshotMeta {
                index: u64::MAX,
                term,
                time: Instant::ZERO,
                membership: Membership::default(),
            },
            offset: 0,
            total: 1,
            data: vec![0],
        },
    );
    let result = h.nodes.get_mut(&2).unwrap().handle_message(now, snap);
    assert!(matches!(result, Err(NodeError::MalformedMessage(_))), "{result:?}");
    assert!(h.node(2).commit_index() < 1 << 62, "the follower is not wedged");
}

#[test]
fn an_append_response_with_an_absurd_index_is_ignored_without_panic() {
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], cfg);
    h.elect(1);
    let term = h.node(1).term();
    let now = h.now;
    let leader = h.nodes.get_mut(&1).unwrap();
    // Put node 3 back in Probe with a rejection, then send an impossible one.
    let reject = MessageBody::AppendResponse { success: false, index: 2, hint_index: 0, hint_term: 0 };
    leader.handle_message(now, msg(3, 1, term, reject)).unwrap();
    let absurd = MessageBody::AppendResponse { success: false, index: u64::MAX, hint_index: 0, hint_term: 0 };
    let result = leader.handle_message(now, msg(3, 1, term, absurd));
    assert!(matches!(result, Err(NodeError::MalformedMessage(_))), "{result:?}");
    let forged_echo = MessageBody::HeartbeatResponse { seq: u64::MAX };
    leader.handle_message(now, msg(3, 1, term, forged_echo)).unwrap();
    assert_eq!(leader.role(), Role::Leader);
}

// At most one snapshot chunk is in flight to a follower, however slow its link: resends
// and answers to duplicates must not start extra chunk streams.
#[test]
fn snapshot_chunks_do_not_multiply_on_a_slow_link() {
    snapshot_streams(2)
}

#[test]
fn snapshot_installs_on_a_fast_link() {
    snapshot_streams(1000)
}
fn snapshot_streams(deliver_per_round: usize) {
    let (mut h, total) = node3_behind_a_snapshot();
    let mut max_in_flight = 0usize;
    for _ in 0..3000 {
        // A link that delivers `deliver_per_round` messages per 10 ms.
        for _ in 0..deliver_per_round {
            if !h.net.is_empty() {
                let m = h.net.remove(0);
                h.deliver_one(m);
            }
        }
        let in_flight =
            h.net.iter().filter(|m| matches!(m.body, MessageBody::InstallSnapshot { .. })).count();
        max_in_flight = max_in_flight.max(in_flight);
        h.advance(10_000);
        h.tick(1);
        if h.node(3).status().snapshot_index >= total {
            break;
        }
    }
    assert!(max_in_flight <= 2, "{max_in_flight} snapshot chunks in flight to one follower");
    assert!(h.node(3).status().snapshot_index >= total, "the snapshot was installed");
}

// The bootstrap snapshot (which drops the stored log) is still in the unsealed write when
// the host's first drain comes after its first handle_* call; a compaction in that call
// must keep the entries appended since, which the node already acknowledged.
#[test]
fn acknowledged_entries_are_stored_when_a_snapshot_joins_the_bootstrap_write() {
    let mut c = cfg(3);
    c.snapshot_threshold_entries = 5;
    let three = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let mut n: N =
        Node::new(c.clone(), RegisterMachine::new(), Start::NewCluster(three), Instant::ZERO, 3).unwrap();
    let mut disk = Disk::default();
    let t = Instant::from_micros(1_000);
    let entries: Vec<Entry> = (1..=10).map(|i| noop(1, i)).collect();
    n.handle_message(
        t,
        msg(1, 3, 1, MessageBody::Append { prev_index: 0, prev_term: 0, entries, commit: 6 }),
    )
    .unwrap();
    let acks = flush(&mut n, &mut disk);
    let acked = MessageBody::AppendResponse { success: true, index: 10, hint_index: 0, hint_term: 0 };
    assert!(acks.iter().any(|m| m.body == acked), "the follower acknowledged all ten entries");
    let r = Node::new(c, RegisterMachine::new(), Start::Restart(disk.persisted()), t, 3).unwrap();
    assert_eq!(r.status().last_index, 10, "acknowledged entries missing after restart");
}

// A follower restarts mid-transfer and then receives a duplicated first chunk: it holds
// less than the leader believes, and the transfer must resume from what it holds.
#[test]
fn a_snapshot_transfer_resumes_after_the_follower_restarts() {
    let (mut h, total) = node3_behind_a_snapshot();
    h.advance(30_000);
    h.tick(1);
    let mut dup: Option<Message> = None;
    loop {
        let m = h.net.remove(0);
        if let MessageBody::InstallSnapshot { offset, .. } = &m.body {
            if *offset == 0 && dup.is_none() {
                dup = Some(m.clone());
            }
            if *offset >= 12 {
                h.net.insert(0, m);
                break;
            }
        }
        h.deliver_one(m);
    }
    let n3 = Node::new(
        small_snapshots(3),
        RegisterMachine::new(),
        Start::Restart(h.disks[&3].persisted()),
        h.now,
        33,
    )
    .unwrap();
    h.nodes.insert(3, n3);
    h.drain(3);
    h.deliver_one(dup.unwrap());
    for _ in 0..500 {
        h.all();
        h.advance(10_000);
        h.tick(1);
        h.tick(2);
        if h.node(3).status().snapshot_index >= total {
            break;
        }
    }
    assert!(h.node(3).status().snapshot_index >= total, "snapshot transfer stuck");
}

// A leader loses its quorum with a proposal in flight, and the new leader removes it:
// it never sees the log again, so it must answer the proposal when it steps down.
#[test]
fn a_deposed_then_removed_leader_answers_its_proposals() {
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], cfg);
    h.elect(1);
    let r0 = h.request(1, write(1, 1));
    h.all();
    assert!(h.reply(r0).is_some());
    let p = h.request(1, write(1, 2));
    h.net.clear();
    let cut = |m: &Message| m.from.0 == 1 || m.to.0 == 1;
    h.advance(400_000);
    h.tick(2);
    h.pump(|m| !cut(m), cut);
    h.tick(2);
    h.pump(|m| !cut(m), cut);
    assert_eq!(h.node(2).role(), Role::Leader);
    let rm = h.request(2, Request::ChangeMembership(MembershipChange::Remove(NodeId(1))));
    h.pump(|m| !cut(m), cut);
    assert!(h.reply(rm).unwrap().result.is_ok());
    h.heartbeat_rounds(200, &[1, 2, 3]);
    let reply = h.reply(p).expect("the proposal is answered");
    assert_eq!(reply.result, Err(RequestError::OutcomeUnknown));
}

/// Small snapshots sent in 4-byte chunks.
fn small_snapshots(id: u64) -> Config {
    let mut c = cfg(id);
    c.snapshot_threshold_entries = 5;
    c.snapshot_chunk_bytes = 4;
    c
}

/// Three nodes where node 3 missed 40 writes that leader 1 compacted into a snapshot.
/// Returns the harness and the snapshot index node 3 must reach.
fn node3_behind_a_snapshot() -> (H, u64) {
    let mut h = H::new(&[1, 2, 3], &[1, 2, 3], small_snapshots);
    h.elect(1);
    let cut = |m: &Message| m.from.0 == 3 || m.to.0 == 3;
    for k in 0..40 {
        let r = h.request(1, write(k, k + 1000));
        h.pump(|m| !cut(m), cut);
        assert!(h.reply(r).is_some());
    }
    h.net.retain(|m| !cut(m));
    let total = h.node(1).status().snapshot_index;
    (h, total)
}
