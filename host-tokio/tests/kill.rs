//! Killing `concord serve` processes: the leader under load, every node at once, a torn
//! and a corrupt write-ahead log, and garbage on the client port. Every test is bounded in
//! time and its processes are killed when it ends (the cluster's `Drop`).

mod common;

use common::{http_get, metric, runtime, stdout, Cluster};
use concord_core::machine::kv::{KvOp, KvQuery, PutMode};
use concord_core::machine::{Op, QueryOp, Reply};
use concord_core::Consistency;
use concord_tokio::client::Concord;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn connect(c: &Cluster) -> Concord {
    connect_ttl(c, Duration::from_secs(15)).await
}

async fn connect_ttl(c: &Cluster, ttl: Duration) -> Concord {
    let mut opts = c.options();
    opts.session_ttl = ttl;
    opts.request_timeout = Duration::from_millis(500);
    Concord::connect(opts).await.expect("connects")
}

/// What a load run saw: acknowledged increments (their values), fences of lock grants in
/// order, and when each operation was acknowledged.
#[derive(Default)]
struct Load {
    increments: Vec<i64>,
    fences: Vec<u64>,
    acked_at: Vec<Instant>,
    kv_acked: Vec<u64>,
}

/// Runs counter increments, lock/unlock cycles and KV writes until `stop`.
async fn load(client: Concord, stop: Arc<AtomicBool>, seen: Arc<Mutex<Load>>, kv_from: u64) {
    let counter = {
        let (client, stop, seen) = (client.clone(), stop.clone(), seen.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let v = client.counter("hits").incr().await.expect("an increment completes");
                let mut s = seen.lock().unwrap();
                s.increments.push(v);
                s.acked_at.push(Instant::now());
            }
        })
    };
    let locker = {
        let (client, stop, seen) = (client.clone(), stop.clone(), seen.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let g = client.lock("L", None).await.expect("the lock is granted");
                let f = g.fence();
                g.unlock().await.expect("unlocks");
                let mut s = seen.lock().unwrap();
                s.fences.push(f);
                s.acked_at.push(Instant::now());
            }
        })
    };
    let mut i = kv_from;
    while !stop.load(Ordering::Relaxed) {
        let op = KvOp::Put {
            key: format!("k/{i:06}"),
            value: i.to_le_bytes().to_vec(),
            mode: PutMode::Always,
            ttl_ms: None,
        };
        client.execute(Op::Kv(op)).await.expect("a put completes");
        seen.lock().unwrap().kv_acked.push(i);
        i += 1;
    }
    counter.await.expect("counter task");
    locker.await.expect("lock task");
}

async fn counter_value(client: &Concord) -> i64 {
    client.counter("hits").get().await.expect("reads")
}

async fn kv_present(client: &Concord, keys: &[u64]) -> Vec<u64> {
    let mut missing = Vec::new();
    for i in keys {
        let q = KvQuery::Get { key: format!("k/{i:06}"), if_none_match: None };
        match client.read(QueryOp::Kv(q), Consistency::Linearizable).await.expect("reads").reply {
            Reply::KvEntry(Some(e)) if e.value.as_deref() == Some(&i.to_le_bytes()[..]) => {}
            _ => missing.push(*i),
        }
    }
    missing
}

fn check_once_and_increasing(s: &Load, total: i64) {
    let mut v = s.increments.clone();
    v.sort_unstable();
    v.dedup();
    assert_eq!(v.len(), s.increments.len(), "two increments returned the same value");
    // The load waits for every increment it starts, so none is in doubt.
    assert_eq!(total, s.increments.len() as i64, "every acknowledged increment applied exactly once");
    assert!(s.fences.windows(2).all(|w| w[0] < w[1]), "fences strictly increase: {:?}", s.fences);
}

#[test]
fn a_killed_leader_is_replaced_under_load_and_nothing_acknowledged_is_lost() {
    const ROUNDS: usize = 3;
    let mut c = Cluster::start(3);
    let rt = runtime();
    let client = rt.block_on(connect(&c));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Load::default()));
    let load_task = rt.spawn(load(client.clone(), stop.clone(), seen.clone(), 0));
    let mut gaps = Vec::new();
    for _ in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(1500));
        let leader = c.wait_leader(Duration::from_secs(10));
        let before = seen.lock().unwrap().acked_at.len();
        let killed_at = Instant::now();
        c.kill(leader);
        // A new leader must serve the load within the bound. The load has three operations
        // in flight at most, so a fourth acknowledgement after the kill came through a new
        // leader.
        let deadline = killed_at + Duration::from_secs(10);
        loop {
            let s = seen.lock().unwrap();
            let after: Vec<&Instant> =
                s.acked_at.get(before..).unwrap_or_default().iter().filter(|t| **t > killed_at).collect();
            if let Some(t) = after.get(3) {
                gaps.push(t.duration_since(killed_at));
                break;
            }
            drop(s);
            assert!(
                Instant::now() < deadline,
                "no operation completed within 10 s of killing leader n{leader}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
        c.spawn(leader);
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(load_task).expect("load finished");
    let total = rt.block_on(counter_value(&client));
    let s = seen.lock().unwrap();
    println!(
        "{} increments, {} lock cycles, {} puts; service resumed after {gaps:?}",
        s.increments.len(),
        s.fences.len(),
        s.kv_acked.len()
    );
    check_once_and_increasing(&s, total);
    let missing = rt.block_on(kv_present(&client, &s.kv_acked));
    assert!(missing.is_empty(), "acknowledged puts lost: {missing:?}");
    assert!(s.increments.len() > 20 && s.fences.len() > 5, "the load made progress");
    // Every node counted the lock cycles it applied in its hold and wait histograms.
    let leader = c.wait_leader(Duration::from_secs(10));
    let metrics = http_get(c.node(leader).http, "/metrics").expect("metrics");
    let count = |name: &str| metric(&metrics, name).unwrap_or(0);
    assert!(count("concord_lock_hold_seconds_count") > 0, "{metrics}");
    assert!(count("concord_lock_wait_seconds_count") > 0, "{metrics}");
    assert!(count("concord_wal_fsync_seconds_count") > 0, "{metrics}");
}

#[test]
fn killing_every_node_at_once_loses_nothing_acknowledged_and_fences_keep_increasing() {
    let mut c = Cluster::start(3);
    let rt = runtime();
    // A short TTL: the killed client's session may hold the lock, and the restarted group
    // keeps it (extended by one TTL) before expiring it.
    let client = rt.block_on(connect_ttl(&c, Duration::from_secs(2)));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Load::default()));
    let load_task = rt.spawn(load(client.clone(), stop.clone(), seen.clone(), 0));
    std::thread::sleep(Duration::from_millis(2500));
    // Kill everything with the load running. Once every node is dead nothing more can be
    // acknowledged, so what the load saw by then is exactly what must survive.
    for id in 1..=3 {
        c.kill(id);
    }
    // (Answers already on their way are taken in first.)
    std::thread::sleep(Duration::from_millis(300));
    let (acked_increments, acked_puts, last_fence) = {
        let s = seen.lock().unwrap();
        (s.increments.len() as i64, s.kv_acked.clone(), s.fences.last().copied().unwrap_or(0))
    };
    // The client is left retrying against nothing; drop it with the runtime.
    stop.store(true, Ordering::Relaxed);
    drop(load_task);
    drop(client);
    drop(rt);
    for id in 1..=3 {
        c.spawn(id);
    }
    c.wait_leader(Duration::from_secs(20));
    let rt = runtime();
    let client = rt.block_on(connect(&c));
    let total = rt.block_on(counter_value(&client));
    // In-flight increments at the kill may or may not have applied (one at a time).
    assert!(
        total >= acked_increments && total <= acked_increments + 1,
        "counter {total} after restart, {acked_increments} acknowledged before the kill"
    );
    let missing = rt.block_on(kv_present(&client, &acked_puts));
    assert!(missing.is_empty(), "acknowledged puts lost: {missing:?}");
    let g = rt.block_on(client.lock("L", Some(Duration::from_secs(15)))).expect("the lock is granted");
    assert!(g.fence() > last_fence, "fence {} after restart, {last_fence} before", g.fence());
    rt.block_on(g.unlock()).expect("unlocks");
    println!(
        "{acked_increments} increments and {} puts acknowledged before the kill; all there",
        acked_puts.len()
    );
    assert!(acked_increments > 10 && !acked_puts.is_empty(), "the load made progress");
}

/// The newest WAL segment of node `id`.
fn last_segment(c: &Cluster, id: u64) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(c.data_dir(id))
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

#[test]
fn a_torn_last_wal_record_is_cut_off_and_corruption_in_the_middle_is_refused() {
    let mut c = Cluster::start(3);
    for _ in 0..20 {
        let o = c.concord(&["counter", "incr", "n"]);
        assert!(o.status.success());
    }
    for id in 1..=3 {
        c.kill(id);
    }
    // Node 1: the last record loses its last bytes, as a write torn by a power cut.
    let seg = last_segment(&c, 1);
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    // Node 2: a byte in the middle of its log flips.
    let seg2 = last_segment(&c, 2);
    let mut bytes = std::fs::read(&seg2).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x5a;
    std::fs::write(&seg2, &bytes).unwrap();

    c.spawn(1);
    c.spawn(3);
    c.spawn(2);
    c.wait_leader(Duration::from_secs(20));
    // Node 2 refuses to start, saying why; nodes 1 and 3 serve with everything acknowledged.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = c.nodes[1].child.as_mut().and_then(|ch| ch.try_wait().ok().flatten()) {
            break s;
        }
        assert!(Instant::now() < deadline, "node 2 started on a corrupt log");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    c.nodes[1].child = None;
    let log2 = std::fs::read_to_string(c.dir.path().join("node-2.log")).unwrap();
    assert!(log2.to_lowercase().contains("corrupt"), "node 2 says its log is corrupt: {log2}");
    let log1 = std::fs::read_to_string(c.dir.path().join("node-1.log")).unwrap();
    assert!(log1.contains("torn"), "node 1 reports the torn tail it cut off: {log1}");
    let o = c.concord(&["counter", "get", "n"]);
    assert_eq!(stdout(&o), "20");
    let o = c.concord(&["counter", "incr", "n"]);
    assert_eq!(stdout(&o), "21");
}

#[test]
fn garbage_and_oversize_frames_close_only_their_connection_and_oversize_answers_fail_cleanly() {
    // Listing pages larger than a frame (the default pages are 1 MiB), so that an answer
    // can outgrow the 4 MiB frame limit.
    let c = Cluster::start_with(3, Some("[limits]\nlist_bytes_max = 16777216\n"));
    let leader = c.wait_leader(Duration::from_secs(10));
    let node = c.node(leader);
    let rt = runtime();
    let client = rt.block_on(connect(&c));
    assert_eq!(rt.block_on(client.counter("g").incr()).unwrap(), 1);
    let send = |bytes: &[u8]| {
        let mut s = TcpStream::connect(node.client).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        // The node closes the connection: a read returns end-of-stream (or a reset).
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the node answered garbage instead of closing");
    };
    // A length prefix of 4 GiB: refused before anything is allocated or read.
    send(&u32::MAX.to_le_bytes());
    // A well-sized frame of nonsense.
    send(&[8, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0xfe, 0xed, 0xfa, 0xce]);
    // A frame with the wrong version byte.
    send(&[2, 0, 0, 0, 99, 0]);
    // The other client never noticed.
    assert_eq!(rt.block_on(client.counter("g").incr()).unwrap(), 2);
    let metrics = http_get(node.http, "/metrics").expect("metrics");
    let refused = metric(&metrics, "concord_client_frames_refused_total").expect("the refusal counter");
    assert!(refused >= 3, "{refused} frames refused");
    // An answer larger than a frame (a listing of 70 values of 60 KiB, over the 4 MiB
    // limit) fails that request with a clear error instead of being retried forever.
    for i in 0..70 {
        let op = KvOp::Put {
            key: format!("big/{i:02}"),
            value: vec![7u8; 60 << 10],
            mode: PutMode::Always,
            ttl_ms: None,
        };
        rt.block_on(client.execute(Op::Kv(op))).expect("a put");
    }
    let list = KvQuery::List { prefix: "big/".into(), after: None, keys_only: false };
    let r = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            client.read(QueryOp::Kv(list), Consistency::Linearizable),
        )
        .await
    });
    match r {
        Ok(Err(concord_tokio::client::Error::Request(e))) => {
            assert!(e.to_string().contains("frame limit"), "{e}")
        }
        other => panic!("expected an answer-too-large error, got {other:?}"),
    }
    assert_eq!(rt.block_on(client.counter("g").incr()).unwrap(), 3, "and the client carries on");
    // Garbage on the peer port does not disturb the group either.
    let peer = node.peer;
    let mut s = TcpStream::connect(peer).unwrap();
    let _ = s.write_all(&[0xff; 64]);
    drop(s);
    assert_eq!(rt.block_on(client.counter("g").incr()).unwrap(), 4);
}

#[test]
fn sigterm_stops_a_node_gracefully_and_it_restarts_from_its_log() {
    let mut c = Cluster::start(3);
    for _ in 0..5 {
        assert!(c.concord(&["counter", "incr", "t"]).status.success());
    }
    for id in 1..=3 {
        let status = c.terminate(id);
        assert!(status.success(), "node {id} exited with {status} after SIGTERM");
        let log = std::fs::read_to_string(c.dir.path().join(format!("node-{id}.log"))).unwrap();
        assert!(log.contains("shutting down") && log.contains("node stopped"), "node {id}: {log}");
    }
    for id in 1..=3 {
        c.spawn(id);
    }
    c.wait_leader(Duration::from_secs(20));
    assert_eq!(stdout(&c.concord(&["counter", "get", "t"])), "5");
    assert_eq!(stdout(&c.concord(&["counter", "incr", "t"])), "6");
}
