//! Tests of the sans-IO client: finding the cluster, and the typed calls against a real
//! machine.

mod calls;
mod connect;
mod grants;

pub(super) use super::*;
use crate::wire::MemberAddr;

pub(super) const GROUP: GroupId = GroupId(1);

pub(super) fn client(endpoints: &[&str]) -> Client {
    let eps = endpoints.iter().map(|a| Endpoint::addr(*a)).collect();
    Client::new(ClientConfig::new(GROUP, eps), Instant::ZERO, 0)
}

pub(super) fn sent(c: &mut Client) -> Vec<(Peer, ClientRequest)> {
    core::iter::from_fn(|| c.poll_transmit()).collect()
}

pub(super) fn events(c: &mut Client) -> Vec<ClientEvent> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

/// Node `node`'s view: `leader` leads, and the members listen at `127.0.0.1:700N`.
pub(super) fn view(node: u64, leader: Option<u64>, members: &[u64]) -> Answer {
    Answer::Cluster(ClusterView {
        node: NodeId(node),
        term: 3,
        leader: leader.map(NodeId),
        members: members
            .iter()
            .map(|m| MemberAddr {
                node: NodeId(*m),
                client_addr: Some(alloc::format!("127.0.0.1:700{m}")),
                web_addr: Some(alloc::format!("ws://127.0.0.1:720{m}/ws")),
                voter: true,
            })
            .collect(),
    })
}

pub(super) fn answer(c: &mut Client, now: Instant, peer: Peer, id: u64, result: Result<Answer, ClientError>) {
    c.handle_message(now, peer, ServerMessage::Answer { id, result });
}

pub(super) fn applied(outcome: Result<Reply, Error>) -> Result<Answer, ClientError> {
    Ok(Answer::Applied { index: 5, outcome: Outcome::Done(outcome) })
}

pub(super) fn ms(n: u64) -> Instant {
    Instant::from_micros(n * 1000)
}

/// A client whose one endpoint answered as leader and whose session `sid` is open.
pub(super) fn with_session(sid: u64) -> Client {
    let mut c = client(&["a:1"]);
    let probe = sent(&mut c).remove(0);
    answer(&mut c, ms(1), probe.0, probe.1.id, Ok(view(1, Some(1), &[])));
    c.open_session(ms(1));
    let open = sent(&mut c).remove(0);
    answer(
        &mut c,
        ms(2),
        open.0,
        open.1.id,
        applied(Ok(Reply::Session { id: SessionId(sid), ttl_ms: 10_000 })),
    );
    let _ = events(&mut c);
    c
}
