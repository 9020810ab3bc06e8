//! The WebSocket endpoint (`/ws` on a node's HTTP listener) against a real `concord serve`
//! cluster: it carries the TCP protocol's frames (a probe is answered with the cluster
//! view, a command is applied), split and batched frames are reassembled, and a
//! malformed frame, an oversize message or a text message closes that connection only.

mod common;

use common::{runtime, Cluster};
use concord_core::client::calls::{self, Request};
use concord_core::machine::{Command, Outcome, Reply};
use concord_core::wire::{
    encode_frame, Answer, ClientRequest, Envelope, RequestBody, ServerMessage, StreamDecoder,
};
use concord_core::GroupId;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// How long any one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const FRAME_BYTES_MAX: usize = 4 << 20;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(c: &Cluster, id: u64) -> Socket {
    let url = format!("ws://{}/ws", c.node(id).http);
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("the WebSocket opens");
    socket
}

fn frame(id: u64, body: RequestBody) -> Vec<u8> {
    let mut out = Vec::new();
    let req = ClientRequest { id, group: GroupId(1), body };
    encode_frame(&Envelope::Request(req), FRAME_BYTES_MAX, &mut out).expect("encodes");
    out
}

/// The next server message; `None` once the server closed the connection.
async fn answer(socket: &mut Socket, decoder: &mut StreamDecoder) -> Option<ServerMessage> {
    loop {
        if let Some(env) = decoder.next_frame().expect("the server sends valid frames") {
            let Envelope::Response(m) = env else { panic!("not a response: {env:?}") };
            return Some(m);
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, socket.next()).await.expect("answered in time") {
            Some(Ok(Message::Binary(b))) => decoder.push(&b),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
        }
    }
}

#[test]
fn websocket_carries_the_client_protocol_and_refuses_bad_input() {
    let c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(10));
    runtime().block_on(async {
        // A probe is answered with the cluster view, as on TCP.
        let mut s = open(&c, leader).await;
        let mut d = StreamDecoder::new(FRAME_BYTES_MAX);
        s.send(Message::Binary(frame(7, RequestBody::Hello).into())).await.unwrap();
        match answer(&mut s, &mut d).await {
            Some(ServerMessage::Answer { id: 7, result: Ok(Answer::Cluster(view)) }) => {
                assert_eq!(view.node.0, leader);
                assert_eq!(view.leader.map(|l| l.0), Some(leader));
            }
            other => panic!("a probe got {other:?}"),
        }
        // Every member's WebSocket URL is in the view (learnt from the peers' hellos), so
        // a WebSocket client needs one endpoint only.
        let want: Vec<Option<String>> =
            c.nodes.iter().map(|n| Some(format!("ws://127.0.0.1:{}/ws", n.http.port()))).collect();
        let mut seen = Vec::new();
        for probe in 0..50u64 {
            s.send(Message::Binary(frame(1000 + probe, RequestBody::Hello).into())).await.unwrap();
            let Some(ServerMessage::Answer { result: Ok(Answer::Cluster(view)), .. }) =
                answer(&mut s, &mut d).await
            else {
                panic!("a probe went unanswered")
            };
            seen = view.members.iter().map(|m| m.web_addr.clone()).collect();
            if seen == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, want, "the members' WebSocket URLs");
        // Two frames in one message, and one frame split over two messages.
        let (Request::Command(op), _) = calls::Counter::new("ws/visits").incr().into_parts() else {
            panic!("incr is a command")
        };
        let cmd = || RequestBody::Command(Command { session: None, op: op.clone() });
        let mut two = frame(8, cmd());
        two.extend(frame(9, cmd()));
        s.send(Message::Binary(two.into())).await.unwrap();
        let split = frame(10, cmd());
        s.send(Message::Binary(split[..3].to_vec().into())).await.unwrap();
        s.send(Message::Binary(split[3..].to_vec().into())).await.unwrap();
        let mut values = Vec::new();
        for _ in 0..3 {
            match answer(&mut s, &mut d).await {
                Some(ServerMessage::Answer {
                    result: Ok(Answer::Applied { outcome: Outcome::Done(Ok(Reply::Long(v))), .. }),
                    ..
                }) => values.push(v),
                other => panic!("an increment got {other:?}"),
            }
        }
        values.sort_unstable();
        assert_eq!(values, [1, 2, 3]);

        // A malformed frame closes that connection.
        let mut garbage = 5u32.to_le_bytes().to_vec();
        garbage.extend([0xff, 0xff, 0xff, 0xff, 0xff]);
        s.send(Message::Binary(garbage.into())).await.unwrap();
        assert_eq!(answer(&mut s, &mut d).await, None, "a malformed frame must close the connection");

        // A frame that declares more than the limit closes it before any allocation.
        let mut s = open(&c, leader).await;
        let huge = u32::try_from(FRAME_BYTES_MAX + 1).unwrap().to_le_bytes().to_vec();
        s.send(Message::Binary(huge.into())).await.unwrap();
        assert_eq!(answer(&mut s, &mut d).await, None, "an oversize frame must close the connection");

        // A message larger than a frame can be is refused by the socket itself.
        let mut s = open(&c, leader).await;
        let _ = s.send(Message::Binary(vec![0u8; FRAME_BYTES_MAX + 64].into())).await;
        assert_eq!(answer(&mut s, &mut d).await, None, "an oversize message must close the connection");

        // Text is not the protocol.
        let mut s = open(&c, leader).await;
        s.send(Message::Text("hello".into())).await.unwrap();
        assert_eq!(answer(&mut s, &mut d).await, None, "a text message must close the connection");

        // The node still serves new connections.
        let mut s = open(&c, leader).await;
        let mut d = StreamDecoder::new(FRAME_BYTES_MAX);
        s.send(Message::Binary(frame(11, RequestBody::Hello).into())).await.unwrap();
        assert!(matches!(
            answer(&mut s, &mut d).await,
            Some(ServerMessage::Answer { id: 11, result: Ok(Answer::Cluster(_)) })
        ));
    });
}
