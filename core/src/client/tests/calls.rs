//! Every typed call, run against a real machine: the request it builds is the one the
//! machine answers with the reply its decoder expects; and what [`releases`] names for
//! each grant really gives it back.

use crate::client::calls::{self, releases, Fresh, Kv, Ticket, Tripped};
use crate::machine::kv::{PutMode, WatchFilter};
use crate::machine::long::LongFn;
use crate::machine::reference::RefFn;
use crate::machine::rwlock::Mode;
use crate::machine::session::SessionOp;
use crate::machine::{
    Command, Concord, Error, Etag, Fence, Limits, Op, Outcome, Query, Reply, SessionId, SessionRef,
};
use crate::time::Instant;
use crate::{ApplyContext, StateMachine};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// A machine and one session per caller, applied to entry by entry.
struct M {
    m: Concord,
    index: u64,
    seq: u64,
}

impl M {
    fn new() -> Self {
        Self { m: Concord::new(Limits::default()).expect("valid limits"), index: 0, seq: 0 }
    }

    fn apply(&mut self, session: Option<SessionId>, op: Op) -> Result<Reply, Error> {
        self.index += 1;
        self.seq += 1;
        let session = session.map(|id| SessionRef { id, seq: self.seq, acked: self.seq });
        let bytes = postcard::to_allocvec(&Command { session, op }).expect("encodes");
        let ctx = ApplyContext { index: self.index, term: 1, time: Instant::from_micros(self.index * 1000) };
        match self.m.apply(ctx, &bytes) {
            Outcome::Done(r) => r,
            other => panic!("not done at once: {other:?}"),
        }
    }

    fn open(&mut self) -> SessionId {
        match self.apply(None, Op::Session(SessionOp::Open { ttl_ms: 60_000 })) {
            Ok(Reply::Session { id, .. }) => id,
            other => panic!("{other:?}"),
        }
    }

    /// Runs a typed call in `session` and decodes its reply; a machine error as `Err`.
    fn call<T: core::fmt::Debug>(&mut self, session: SessionId, call: calls::Call<T>) -> Result<T, Error> {
        let (request, decode) = call.into_parts();
        let reply = match request {
            calls::Request::Command(op) => self.apply(Some(session), op)?,
            calls::Request::Read(op) => self.m.read(&Query { session: Some(session), op })?,
        };
        Ok(decode.decode(reply).expect("the reply the call documents"))
    }

    /// Runs a grant and gives it back with what [`releases`] names for it.
    fn grant_and_give_back<T: core::fmt::Debug>(&mut self, s: SessionId, call: calls::Call<T>) -> T {
        let (request, decode) = call.into_parts();
        let calls::Request::Command(op) = request else { panic!("a grant is a command") };
        let reply = self.apply(Some(s), op.clone()).expect("granted");
        let give_back = releases(&op, &reply);
        assert!(!give_back.is_empty(), "{op:?} grants something");
        for release in give_back {
            self.apply(Some(s), release).expect("the release applies");
        }
        decode.decode(reply).expect("decodes")
    }
}

#[test]
fn lock_calls() {
    let mut m = M::new();
    let (a, b) = (m.open(), m.open());
    let l = calls::Lock::new("L");
    let fence = m.call(a, l.lock(None)).unwrap();
    assert_eq!(m.call(b, l.try_lock()), Err(Error::Timeout));
    assert!(m.call(b, l.is_locked()).unwrap());
    assert!(m.call(a, l.is_locked_by_me()).unwrap());
    assert!(!m.call(b, l.is_locked_by_me()).unwrap());
    assert_eq!(m.call(a, l.lock(None)).unwrap(), fence, "reentrant: the same fence");
    assert_eq!(m.call(a, l.lock_count()).unwrap(), 2);
    assert_eq!(m.call(b, l.enqueue()).unwrap(), Ticket::Queued { position: 0 });
    assert_eq!(m.call(a, l.release(fence)).unwrap(), 1);
    assert_eq!(m.call(a, l.unlock()).unwrap(), 0);
    let list = m.call(a, calls::list_locks("")).unwrap();
    assert_eq!(list.len(), 1);
    let next = m.call(b, calls::Lock::new("M").enqueue()).unwrap();
    assert!(matches!(next, Ticket::Granted(Fence(_))));
    m.call(a, calls::Lock::new("M").force_unlock()).unwrap();
    let many = m.call(a, calls::lock_all(vec!["X".into(), "Y".into()], None)).unwrap();
    assert!(many > fence);
    assert_eq!(m.call(a, calls::list_sessions()).unwrap().len(), 2);
}

#[test]
fn semaphore_rwlock_latch_and_barrier_calls() {
    let mut m = M::new();
    let a = m.open();
    let s = calls::Semaphore::new("S");
    assert!(m.call(a, s.init(3)).unwrap());
    assert!(!m.call(a, s.init(3)).unwrap());
    m.call(a, s.acquire(1, None)).unwrap();
    assert_eq!(m.call(a, s.available()).unwrap(), 2);
    assert_eq!(m.call(a, s.held()).unwrap(), 1);
    m.call(a, s.release(1)).unwrap();
    m.call(a, s.increase(2)).unwrap();
    m.call(a, s.reduce(1)).unwrap();
    assert_eq!(m.call(a, s.drain()).unwrap(), 4);
    assert!(m.call(a, calls::Semaphore::new("T").init_sessionless(1)).unwrap());

    let rw = calls::RwLock::new("R");
    m.call(a, rw.lock(Mode::Read, None)).unwrap();
    assert_eq!(m.call(a, rw.readers()).unwrap(), 1);
    assert!(!m.call(a, rw.is_write_locked()).unwrap());
    assert_eq!(m.call(a, rw.unlock()).unwrap(), 0);

    let l = calls::Latch::new("D");
    assert!(m.call(a, l.try_set_count(1)).unwrap());
    assert_eq!(m.call(a, l.count()).unwrap(), 1);
    assert_eq!(m.call(a, l.count_down()).unwrap(), 0);
    m.call(a, l.wait(None)).unwrap();

    let tripped = m.call(a, calls::Barrier::new("B", 1).wait(None)).unwrap();
    assert_eq!(tripped, Tripped { generation: 0, arrival: 0 });
}

#[test]
fn counter_and_reference_calls() {
    let mut m = M::new();
    let a = m.open();
    let c = calls::Counter::new("n");
    assert_eq!(m.call(a, c.get()).unwrap(), 0);
    assert_eq!(m.call(a, c.incr()).unwrap(), 1);
    assert_eq!(m.call(a, c.decr()).unwrap(), 0);
    assert_eq!(m.call(a, c.add(5)).unwrap(), 5);
    assert_eq!(m.call(a, c.get_and_add(2)).unwrap(), 5);
    m.call(a, c.set(10)).unwrap();
    assert_eq!(m.call(a, c.get_and_set(3)).unwrap(), 10);
    assert!(m.call(a, c.compare_and_set(3, 4)).unwrap());
    assert!(!m.call(a, c.compare_and_set(3, 5)).unwrap());
    m.call(a, c.alter(LongFn::Mul(2))).unwrap();
    assert_eq!(m.call(a, c.alter_and_get(LongFn::Add(1))).unwrap(), 9);
    assert_eq!(m.call(a, c.get_and_alter(LongFn::Max(20))).unwrap(), 9);
    assert_eq!(m.call(a, c.apply(LongFn::Add(1))).unwrap(), 21);

    let r = calls::Reference::new("r");
    assert!(m.call(a, r.is_null()).unwrap());
    assert!(m.call(a, r.compare_and_set(None, Some(b"x".to_vec()))).unwrap(), "from null");
    assert_eq!(m.call(a, r.get()).unwrap(), Some(b"x".to_vec()));
    assert!(m.call(a, r.contains(Some(b"x".to_vec()))).unwrap());
    assert_eq!(m.call(a, r.get_and_set(Some(b"y".to_vec()))).unwrap(), Some(b"x".to_vec()));
    m.call(a, r.set(Some(b"z".to_vec()))).unwrap();
    m.call(a, r.alter(RefFn::Clear)).unwrap();
    assert_eq!(m.call(a, r.alter_and_get(RefFn::Set(b"v".to_vec()))).unwrap(), Some(b"v".to_vec()));
    assert_eq!(m.call(a, r.get_and_alter(RefFn::Clear)).unwrap(), Some(b"v".to_vec()));
    assert_eq!(m.call(a, r.apply(RefFn::Set(b"w".to_vec()))).unwrap(), Some(b"w".to_vec()));
    m.call(a, r.clear()).unwrap();
    assert!(m.call(a, r.is_null()).unwrap());
}

#[test]
fn kv_election_and_signal_calls() {
    let mut m = M::new();
    let a = m.open();
    let etag: Etag = m.call(a, Kv.put("k", b"v".to_vec(), PutMode::Always, None)).unwrap();
    assert_eq!(m.call(a, Kv.get("k")).unwrap().and_then(|e| e.value), Some(b"v".to_vec()));
    assert_eq!(m.call(a, Kv.get_if_none_match("k", Some(etag))).unwrap(), Fresh::NotModified(etag));
    assert!(m.call(a, Kv.head("k")).unwrap().is_some());
    assert!(m.call(a, Kv.put("k", b"w".to_vec(), PutMode::IfMatch(Etag(etag.0 + 9)), None)).is_err());
    m.call(a, Kv.copy("k", "c", true)).unwrap();
    m.call(a, Kv.rename("c", "d", false)).unwrap();
    let page = m.call(a, Kv.list_page("", None, false)).unwrap();
    let keys: Vec<String> = page.entries.into_iter().map(|e| e.key).collect();
    assert_eq!((keys, page.more), (vec![String::from("d"), String::from("k")], false));
    let history = m.call(a, Kv.history(WatchFilter::Prefix(String::new()), 1)).unwrap();
    // put k, copy to c, and the rename: c deleted, d written.
    assert_eq!(history.events.len(), 4);
    assert!(m.call(a, Kv.delete("k", Some(etag))).unwrap());

    let e = calls::Election::new("E");
    let fence = m.call(a, e.campaign(b"me".to_vec(), None)).unwrap();
    assert_eq!(m.call(a, e.leader()).unwrap().map(|l| l.fence), Some(fence));
    m.call(a, e.proclaim(b"still me".to_vec())).unwrap();
    m.call(a, e.resign()).unwrap();
    assert_eq!(m.call(a, e.leader()).unwrap(), None);

    let id = m.call(a, calls::subscribe("jobs.*", None)).unwrap();
    assert_eq!(m.call(a, calls::publish("jobs.a", b"x".to_vec())).unwrap(), 1);
    m.call(a, calls::unsubscribe(id)).unwrap();
    assert_eq!(m.call(a, calls::publish("jobs.a", b"x".to_vec())).unwrap(), 0);
}

#[test]
fn what_releases_names_gives_every_grant_back() {
    let mut m = M::new();
    let (a, b) = (m.open(), m.open());
    m.grant_and_give_back(a, calls::Lock::new("L").lock(None));
    assert_eq!(m.call(b, calls::Lock::new("L").try_lock()).map(|_| ()), Ok(()), "free again");
    m.grant_and_give_back(a, calls::lock_all(vec!["X".into(), "Y".into()], None));
    assert!(!m.call(a, calls::Lock::new("Y").is_locked()).unwrap());
    m.call(a, calls::Semaphore::new("S").init(1)).unwrap();
    m.grant_and_give_back(a, calls::Semaphore::new("S").acquire(1, None));
    assert_eq!(m.call(a, calls::Semaphore::new("S").available()).unwrap(), 1);
    m.grant_and_give_back(a, calls::RwLock::new("R").lock(Mode::Write, None));
    assert!(!m.call(a, calls::RwLock::new("R").is_write_locked()).unwrap());
    m.grant_and_give_back(a, calls::Election::new("E").campaign(b"a".to_vec(), None));
    assert_eq!(m.call(a, calls::Election::new("E").leader()).unwrap(), None);
    m.grant_and_give_back(a, calls::subscribe("s", None));
    assert_eq!(m.call(a, calls::publish("s", Vec::new())).unwrap(), 0);
    // Lock grants go back by fence: an old grant's release cannot reach a new one.
    let old = m.call(a, calls::Lock::new("F").lock(None)).unwrap();
    m.call(b, calls::Lock::new("F").force_unlock()).unwrap();
    m.call(a, calls::Lock::new("F").lock(None)).unwrap();
    let stale = releases(
        &Op::Lock(crate::machine::lock::LockOp::Lock { name: "F".into(), timeout_ms: None }),
        &Reply::Fence(old),
    );
    assert!(m.apply(Some(a), stale[0].clone()).is_err());
    assert!(m.call(a, calls::Lock::new("F").is_locked_by_me()).unwrap());
    // Nothing granted, nothing to give back.
    assert!(releases(
        &Op::Lock(crate::machine::lock::LockOp::Lock { name: "F".into(), timeout_ms: None }),
        &Reply::Unit
    )
    .is_empty());
}
