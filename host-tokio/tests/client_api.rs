//! The typed async client against three real `concord serve` processes: every primitive's
//! handle, guards that release on drop, tries that answer `None`, conditional KV writes,
//! paged listings, signals with queue groups, and reads at each consistency. One cluster
//! serves the whole file (the parts run in sequence), bounded by the cluster's timeouts
//! and each wait below.

mod common;

use common::{runtime, Cluster};
use concord_core::machine::kv::{KvError, PutMode, WatchFilter};
use concord_core::machine::lock::LockError;
use concord_core::machine::long::LongFn;
use concord_core::machine::reference::RefFn;
use concord_core::machine::rwlock::RwLockError;
use concord_core::machine::Error as MachineError;
use concord_core::Consistency;
use concord_tokio::client::{Concord, Error, Fresh, Options};
use std::future::Future;
use std::time::Duration;

/// How long a condition that follows from a background release may take to show.
const SETTLE: Duration = Duration::from_secs(5);

async fn connect(c: &Cluster, reads: Consistency) -> Concord {
    let mut opts = c.options();
    opts.session_ttl = Duration::from_secs(15);
    opts.read_consistency = reads;
    Concord::connect(opts).await.expect("connects")
}

/// Polls `check` until it holds, for at most [`SETTLE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {SETTLE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_kv(e: &Error, f: impl Fn(&KvError) -> bool) -> bool {
    matches!(e, Error::Machine(MachineError::Kv(k)) if f(k))
}

#[test]
fn every_primitive_through_the_typed_client() {
    // Small pages, so listing crosses pages, by count and by bytes.
    let cluster = Cluster::start_with(3, Some("[limits]\nlist_max = 3\nlist_bytes_max = 100000\n"));
    let rt = runtime();
    rt.block_on(async {
        let a = connect(&cluster, Consistency::Linearizable).await;
        let b = connect(&cluster, Consistency::Lease).await;
        let c = connect(&cluster, Consistency::Linearizable).await;
        locks(&a, &b).await;
        semaphores(&a, &b).await;
        rwlocks(&a, &b).await;
        latch(&a, &b).await;
        barrier(&a, &b, &c).await;
        counter_and_reference(&a, &b).await;
        kv(&a, &b).await;
        dropped_watches(&c).await;
        signals(&a, &b, &c).await;
        election(&a, &b).await;
        stale_reads(&cluster, &a).await;
        for client in [a, b, c] {
            client.close().await;
        }
    });
}

async fn locks(a: &Concord, b: &Concord) {
    let g = a.lock("L", None).await.expect("lock");
    assert!(g.is_held());
    assert!(b.try_lock("L").await.expect("try").is_none(), "held elsewhere: not acquired");
    assert!(b.is_locked("L").await.expect("query"));
    let again = a.lock("L", None).await.expect("reentrant");
    assert_eq!(again.fence(), g.fence(), "a reentrant grant keeps the fence");
    drop(again);
    drop(g);
    // Both holds are released in the background by the drops.
    eventually("the lock is free after both guards dropped", || async {
        !b.is_locked("L").await.expect("query")
    })
    .await;
    let taken = b.lock("L", Some(Duration::from_secs(2))).await.expect("b takes it");
    let timed_out = a.lock("L", Some(Duration::from_millis(100))).await.err();
    assert_eq!(timed_out, Some(Error::Machine(MachineError::Timeout)));
    // An operator forces it free: the holder's own unlock then finds it not held.
    a.force_unlock("L").await.expect("force");
    assert_eq!(taken.unlock().await, Err(Error::Machine(MachineError::Lock(LockError::NotHeld))));

    // The same session, granted anew after a force-unlock: the old guard cannot give the
    // new grant back.
    let old = a.lock("F", None).await.expect("lock");
    a.force_unlock("F").await.expect("force");
    let new = a.lock("F", None).await.expect("granted again");
    assert!(new.fence() > old.fence());
    assert_eq!(old.unlock().await, Err(Error::Machine(MachineError::Lock(LockError::NotHeld))));
    assert!(b.is_locked("F").await.expect("query"), "the new grant stays");
    new.unlock().await.expect("unlock");
    assert!(!b.is_locked("F").await.expect("query"));

    // A wait given up while queued leaves nothing held: the grant that arrives later is
    // given back by the client.
    let held = a.lock("A", None).await.expect("lock");
    let abandoned = tokio::time::timeout(Duration::from_millis(200), b.lock("A", None)).await;
    assert!(abandoned.is_err(), "b waits behind a");
    held.unlock().await.expect("unlock");
    eventually("the abandoned grant is given back", || async { !a.is_locked("A").await.expect("query") })
        .await;

    let all = a.lock_all(&["M1", "M2"], None).await.expect("lock_all");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].fence(), all[1].fence(), "one fence for the whole set");
    assert!(b.try_lock("M2").await.expect("try").is_none());
    for g in all {
        g.unlock().await.expect("unlock");
    }
    let next = b.try_lock("M2").await.expect("try").expect("free after unlock");
    assert!(next.fence() > 0);
}

async fn semaphores(a: &Concord, b: &Concord) {
    let s = a.semaphore("pool");
    assert!(s.init(2).await.expect("init"));
    assert!(!s.init(5).await.expect("init again"), "an existing semaphore is left alone");
    let held = s.acquire(2, None).await.expect("acquire");
    assert_eq!(held.count(), 2);
    assert_eq!(s.available().await.expect("available"), 0);
    assert_eq!(s.held().await.expect("held"), 2);
    assert!(b.semaphore("pool").try_acquire(1).await.expect("try").is_none());
    drop(held);
    let sb = b.semaphore("pool");
    eventually("permits come back when the guard drops", || async {
        sb.available().await.expect("available") == 2
    })
    .await;
    let one = sb.try_acquire(1).await.expect("try").expect("a permit is free");
    one.release().await.expect("release");

    // Sessionless: permits taken by one client, given back by another.
    let t = a.semaphore("tokens");
    assert!(t.init_sessionless(3).await.expect("init"));
    t.take(2, None).await.expect("take");
    b.semaphore("tokens").release(2).await.expect("another client releases");
    assert_eq!(t.available().await.expect("available"), 3);
    t.increase(2).await.expect("increase");
    t.reduce(1).await.expect("reduce");
    assert_eq!(t.drain().await.expect("drain"), 4);
    assert_eq!(t.available().await.expect("available"), 0);
}

async fn rwlocks(a: &Concord, b: &Concord) {
    let ra = a.rwlock("RW").read(None).await.expect("read a");
    assert!(!ra.is_write() && ra.is_held());
    assert!(b.rwlock("RW").try_write().await.expect("try").is_none(), "a reader keeps a writer out");
    let upgrade = a.rwlock("RW").try_write().await.err();
    assert_eq!(upgrade, Some(Error::Machine(MachineError::RwLock(RwLockError::HeldInOtherMode))));
    let rb = b.rwlock("RW").read(None).await.expect("read b");
    assert_eq!(a.rwlock("RW").readers().await.expect("readers"), 2);
    ra.unlock().await.expect("unlock");
    drop(rb);
    let lock = b.rwlock("RW");
    eventually("the write lock is free once the readers left", || async {
        lock.readers().await.expect("readers") == 0
    })
    .await;
    let w = lock.try_write().await.expect("try").expect("free");
    assert!(w.is_write());
    assert!(a.rwlock("RW").is_write_locked().await.expect("query"));
    assert!(a.rwlock("RW").try_read().await.expect("try").is_none(), "a writer keeps readers out");
    w.unlock().await.expect("unlock");
}

async fn latch(a: &Concord, b: &Concord) {
    let l = a.latch("start");
    assert!(l.try_set_count(2).await.expect("set"));
    assert!(!l.try_set_count(5).await.expect("set again"), "still counting down");
    assert!(!l.wait(Some(Duration::from_millis(100))).await.expect("wait"), "times out while counting");
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.latch("start").wait(Some(Duration::from_secs(10))).await })
    };
    assert_eq!(l.count_down().await.expect("count down"), 1);
    assert_eq!(l.count().await.expect("count"), 1);
    assert_eq!(l.count_down().await.expect("count down"), 0);
    assert_eq!(waiter.await.expect("join"), Ok(true), "the waiter sees the latch open");
    assert!(l.wait(Some(Duration::ZERO)).await.expect("check"), "open stays open");
}

async fn barrier(a: &Concord, b: &Concord, c: &Concord) {
    let arrive = |client: &Concord| {
        let client = client.clone();
        tokio::spawn(async move { client.barrier("B", 3).wait(Some(Duration::from_secs(10))).await })
    };
    let (x, y, z) = (arrive(a), arrive(b), arrive(c));
    let trips = [x.await, y.await, z.await].map(|t| t.expect("join").expect("tripped"));
    assert!(trips.iter().all(|t| t.generation == trips[0].generation), "{trips:?}");
    let mut arrivals: Vec<u32> = trips.iter().map(|t| t.arrival).collect();
    arrivals.sort_unstable();
    assert_eq!(arrivals, [0, 1, 2]);
    // A lone party times out and breaks its generation.
    let alone = a.barrier("B", 3).wait(Some(Duration::from_millis(100))).await;
    assert_eq!(alone, Err(Error::Machine(MachineError::Timeout)));
}

async fn counter_and_reference(a: &Concord, b: &Concord) {
    let n = a.counter("n");
    n.set(10).await.expect("set");
    assert_eq!(n.get_and_set(11).await.expect("get_and_set"), 10);
    assert_eq!(n.add(4).await.expect("add"), 15);
    assert_eq!(n.get_and_add(5).await.expect("get_and_add"), 15);
    assert_eq!(n.incr().await.expect("incr"), 21);
    assert!(n.compare_and_set(21, 30).await.expect("cas"));
    assert!(!n.compare_and_set(21, 40).await.expect("cas"));
    assert_eq!(n.alter_and_get(LongFn::Mul(2)).await.expect("alter"), 60);
    assert_eq!(n.get_and_alter(LongFn::Neg).await.expect("alter"), 60);
    assert_eq!(n.apply(LongFn::Add(1)).await.expect("apply"), -59, "apply does not store");
    assert_eq!(b.counter("n").get().await.expect("get"), -60);

    let r = a.reference("r");
    assert_eq!(r.get().await.expect("get"), None);
    assert!(r.is_null().await.expect("is_null"));
    r.set(Some(b"ab".to_vec())).await.expect("set");
    assert_eq!(r.get_and_set(Some(b"cd".to_vec())).await.expect("gas"), Some(b"ab".to_vec()));
    assert!(r.compare_and_set(Some(b"cd".to_vec()), Some(b"x".to_vec())).await.expect("cas"));
    assert!(!r.compare_and_set(Some(b"cd".to_vec()), Some(b"y".to_vec())).await.expect("cas"));
    assert_eq!(r.alter_and_get(RefFn::Append(b"yz".to_vec())).await.expect("alter"), Some(b"xyz".to_vec()));
    assert_eq!(r.get_and_alter(RefFn::Reverse).await.expect("alter"), Some(b"xyz".to_vec()));
    assert!(b.reference("r").contains(Some(b"zyx".to_vec())).await.expect("contains"));
    assert_eq!(r.apply(RefFn::Truncate(1)).await.expect("apply"), Some(b"z".to_vec()));
    r.set(None).await.expect("clear");
    assert!(r.is_null().await.expect("is_null"));
}

/// Watches dropped while quiet are cancelled: more of them than a connection may hold
/// streams (64) leave room for one more, which still sees its events.
async fn dropped_watches(c: &Concord) {
    for i in 0..80 {
        let quiet = c.kv().watch(WatchFilter::Key(format!("quiet/{i}")), None);
        drop(quiet);
    }
    let mut live = c.kv().watch(WatchFilter::Key("quiet/live".into()), None);
    // Puts until one lands after the watch is registered.
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        c.kv().put("quiet/live", b"1".to_vec()).await.expect("put");
        match tokio::time::timeout(Duration::from_millis(200), live.recv()).await {
            Ok(Some(Ok(e))) => break assert_eq!(e.key, "quiet/live"),
            Ok(other) => panic!("the 81st watch is refused: {other:?}"),
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "the 81st watch sees nothing"),
        }
    }
}

async fn kv(a: &Concord, b: &Concord) {
    let kv = a.kv();
    let mut changes = kv.watch(WatchFilter::Prefix("cfg/".into()), None);
    let e1 = kv.put("cfg/a", b"1".to_vec()).await.expect("put");
    let got = kv.get("cfg/a").await.expect("get").expect("present");
    assert_eq!((got.value.as_deref(), got.etag, got.version), (Some(&b"1"[..]), e1, 1));
    assert_eq!(kv.get_if_none_match("cfg/a", Some(e1)).await.expect("get"), Fresh::NotModified(e1));
    let err = kv.create("cfg/a", b"x".to_vec()).await.expect_err("exists");
    assert!(is_kv(&err, |k| matches!(k, KvError::Exists { .. })), "{err:?}");
    let e2 = kv.replace("cfg/a", b"2".to_vec(), e1).await.expect("replace with the current tag");
    let err = b.kv().replace("cfg/a", b"3".to_vec(), e1).await.expect_err("stale tag");
    assert!(is_kv(&err, |k| matches!(k, KvError::EtagMismatch { current: Some(c) } if *c == e2)), "{err:?}");
    match kv.get_if_none_match("cfg/a", Some(e1)).await.expect("get") {
        Fresh::Changed(Some(e)) => assert_eq!(e.value.as_deref(), Some(&b"2"[..])),
        other => panic!("expected the new value, got {other:?}"),
    }
    assert!(kv.head("cfg/a").await.expect("head").expect("present").value.is_none());
    kv.create("cfg/b", b"b".to_vec()).await.expect("create");
    kv.copy("cfg/b", "cfg/c", true).await.expect("copy");
    kv.rename("cfg/c", "cfg/d", false).await.expect("rename");
    kv.put_with("cfg/e", b"e".to_vec(), PutMode::Always, None).await.expect("put");
    kv.put_with("tmp/x", b"gone soon".to_vec(), PutMode::Always, Some(Duration::from_millis(200)))
        .await
        .expect("put with ttl");
    // Four keys under cfg/ with pages of three: the listing crosses a page.
    let (page, more) = kv.list_page("cfg/", None, true).await.expect("page");
    assert_eq!((page.len(), more), (3, true));
    let keys: Vec<String> = kv.list("cfg/", false).await.expect("list").into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["cfg/a", "cfg/b", "cfg/d", "cfg/e"]);
    // Two values of 60 KB do not fit one 100 KB page: one per page.
    for k in ["big/1", "big/2"] {
        kv.put(k, vec![7; 60_000]).await.expect("put");
    }
    let (page, more) = kv.list_page("big/", None, false).await.expect("page");
    assert_eq!((page.len(), more), (1, true));
    assert_eq!(kv.list("big/", false).await.expect("list").len(), 2);
    let err = kv.delete("cfg/a", Some(e1)).await.expect_err("a stale tag deletes nothing");
    assert!(is_kv(&err, |k| matches!(k, KvError::EtagMismatch { .. })), "{err:?}");
    assert!(kv.delete("cfg/a", Some(e2)).await.expect("delete"));
    assert!(!kv.delete("cfg/zzz", None).await.expect("delete"), "nothing to delete");
    eventually("the TTL entry expires", || async { kv.get("tmp/x").await.expect("get").is_none() }).await;
    // The watch saw the writes under cfg/ in order, none elsewhere.
    let mut seen = Vec::new();
    while seen.len() < 7 {
        let e = tokio::time::timeout(SETTLE, changes.recv()).await.expect("watch event").expect("open");
        seen.push(e.expect("event").key);
    }
    // A rename writes the new key, then deletes the old one.
    assert_eq!(seen, ["cfg/a", "cfg/a", "cfg/b", "cfg/c", "cfg/d", "cfg/c", "cfg/e"]);
}

async fn signals(a: &Concord, b: &Concord, c: &Concord) {
    // The cluster's own operation (a member's connection closed) is refused from clients.
    let own = concord_core::machine::Op::Signal(concord_core::machine::signal::SignalOp::Disconnected {
        session: concord_core::machine::SessionId(1),
    });
    match a.execute(own).await {
        Err(Error::Request(concord_core::wire::ClientError::Reserved)) => {}
        Err(e) => panic!("a client sent the cluster's own operation: {e}"),
        Ok(_) => panic!("a client sent the cluster's own operation and it was applied"),
    }
    let mut sub = a.subscribe("orders.*", None).await.expect("subscribe");
    let mut w1 = b.subscribe("jobs", Some("workers")).await.expect("subscribe");
    let mut w2 = c.subscribe("jobs", Some("workers")).await.expect("subscribe");
    assert_eq!(b.publish("orders.new", b"o1".to_vec()).await.expect("publish"), 1);
    assert_eq!(b.publish("orders.new.x", b"no".to_vec()).await.expect("publish"), 0, "* is one token");
    let d = tokio::time::timeout(SETTLE, sub.next()).await.expect("in time").expect("delivered");
    assert_eq!((d.subject.as_str(), d.payload.as_slice()), ("orders.new", &b"o1"[..]));
    for i in 0..4u8 {
        assert_eq!(a.publish("jobs", vec![i]).await.expect("publish"), 1, "one member of the group");
    }
    let mut got = Vec::new();
    for w in [&mut w1, &mut w2] {
        for _ in 0..2 {
            let d = tokio::time::timeout(SETTLE, w.next()).await.expect("in time").expect("delivered");
            got.push(d.payload[0]);
        }
    }
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3], "the group shares the jobs, each once");
    sub.unsubscribe().await.expect("unsubscribe");
    assert_eq!(b.publish("orders.new", b"o2".to_vec()).await.expect("publish"), 0);
}

async fn election(a: &Concord, b: &Concord) {
    let lead = a.campaign("svc", b"a:1".to_vec(), None).await.expect("campaign");
    let busy = b.campaign("svc", b"b:1".to_vec(), Some(Duration::ZERO)).await.err();
    assert_eq!(busy, Some(Error::Machine(MachineError::Timeout)));
    let info = b.leader("svc").await.expect("leader").expect("a leader");
    assert_eq!((info.value.as_slice(), info.fence.0), (&b"a:1"[..], lead.fence()));
    lead.proclaim(b"a:2".to_vec()).await.expect("proclaim");
    assert_eq!(b.leader("svc").await.expect("leader").expect("a leader").value, b"a:2");
    let fence = lead.fence();
    drop(lead);
    let next = b.campaign("svc", b"b:1".to_vec(), Some(Duration::from_secs(5))).await.expect("b wins");
    assert!(next.fence() > fence, "the next term's fence is larger");
    next.resign().await.expect("resign");
    assert_eq!(a.leader("svc").await.expect("leader"), None);
}

async fn stale_reads(cluster: &Cluster, a: &Concord) {
    let stale = connect(cluster, Consistency::Stale).await;
    a.counter("seen").set(7).await.expect("set");
    // A stale read may lag; it catches up without a leader round trip.
    eventually("a stale read catches up", || async { stale.counter("seen").get().await.expect("get") == 7 })
        .await;
    stale.close().await;
}

/// A lock guard whose session is lost (every node killed for longer than the TTL) says
/// so, and neither its unlock nor its drop touches the hold the client takes in its next
/// session.
#[test]
fn a_guard_of_a_lost_session_reports_it_and_leaves_the_next_hold_alone() {
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    rt.block_on(async {
        let mut opts = cluster.options();
        opts.session_ttl = Duration::from_secs(1);
        opts.request_timeout = Duration::from_millis(300);
        let client = Concord::connect(opts).await.expect("connects");
        let old = client.lock("L", None).await.expect("lock");
        let old_again = client.lock("L", None).await.expect("reentrant");
        for id in 1..=3 {
            cluster.kill(id);
        }
        tokio::time::timeout(Duration::from_secs(5), old.lost()).await.expect("the loss is reported");
        assert!(!old.is_held() && !old_again.is_held());
        for id in 1..=3 {
            cluster.spawn(id);
        }
        // The restarted cluster keeps the old session one more TTL, then expires it.
        let new = client.lock("L", Some(Duration::from_secs(20))).await.expect("the next session's lock");
        assert_ne!(new.session(), old.session());
        assert!(new.fence() > old.fence());
        let session = old.session();
        assert_eq!(old.unlock().await, Err(Error::Machine(MachineError::SessionLost(session))));
        drop(old_again);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(new.is_held());
        assert!(client.is_locked("L").await.expect("query"), "the new hold survived the old guards");
        new.unlock().await.expect("the new hold is released by its own guard");
        assert!(!client.is_locked("L").await.expect("query"));
        client.close().await;
    });
}

/// A client given bare addresses learns the id of a node that was down when it connected
/// once that node answers, and follows a redirect to it: here the node it learnt late
/// becomes the leader, and the one the client knew first dies.
#[test]
fn an_endpoint_down_at_connect_is_learnt_later_and_followed() {
    let mut cluster = Cluster::start(3);
    cluster.kill(3);
    let rt = runtime();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client.to_string()).collect();
    let client = rt.block_on(async {
        let mut opts = Options::new(&addrs).expect("endpoints");
        opts.request_timeout = Duration::from_millis(300);
        Concord::connect(opts).await.expect("connects")
    });
    // Connected as soon as one answered; the other live one follows within a probe.
    let live = || async { client.nodes().keys().map(|n| n.0).collect::<Vec<_>>() == [1, 2] };
    rt.block_on(eventually("nodes 1 and 2 answer", live));
    cluster.spawn(3);
    rt.block_on(eventually("node 3 is learnt", || async { client.nodes().len() == 3 }));
    // Node 3 leads; node 1 dies: only node 2, which redirects, is left of what the client
    // knew at connect.
    let o = cluster.concord(&["transfer-leader", "3"]);
    assert!(o.status.success(), "{o:?}");
    rt.block_on(eventually("node 3 leads", || async { cluster.leader() == Some(3) }));
    cluster.kill(1);
    rt.block_on(async {
        let n = tokio::time::timeout(Duration::from_secs(10), client.counter("late").incr()).await;
        assert_eq!(n.expect("served within 10 s"), Ok(1));
        client.close().await;
    });
}
