//! The client subcommands: each connects, runs its operation through the typed client,
//! prints the result (human or JSON) and maps it to an exit code.

use clap::Args;
use concord_core::machine::kv::{KvError, PutMode, WatchFilter};
use concord_core::machine::{Error as MachineError, Etag};
use concord_core::raft::{Membership, MembershipChange};

use concord_core::NodeId;
use concord_tokio::client::{Concord, Error, Fresh, Options, Tripped};
use serde_json::json;
use std::time::Duration;

use crate::cli::*;
use crate::*;

/// What a client command gets: the connection and how to print.
pub(crate) struct Ctx {
    pub(crate) client: Concord,
    pub(crate) output: Output,
}

impl Ctx {
    /// Prints `human` or, with `--output json`, `value`.
    fn print(&self, human: impl std::fmt::Display, value: serde_json::Value) {
        match self.output {
            Output::Human => println!("{human}"),
            Output::Json => println!("{value}"),
        }
    }
}

pub(crate) async fn with_client<T: Args, F, Fut>(c: ClientArgs<T>, f: F) -> Result<Outcome, CliError>
where
    F: FnOnce(Ctx, T) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, CliError>>,
{
    let mut opts = Options::from_endpoints(c.endpoints)?;
    opts.group = c.group;
    opts.session_ttl = Duration::from_millis(c.session_ttl_ms);
    opts.read_consistency = c.consistency.into();
    opts.connect_timeout = Duration::from_millis(c.connect_timeout_ms);
    opts.dial_timeout = Duration::from_millis(c.dial_timeout_ms);
    let client = Concord::connect(opts).await?;
    let ctx = Ctx { client: client.clone(), output: c.output };
    let result = f(ctx, c.args).await;
    // Closing the session releases anything still held at once.
    client.close().await;
    result
}

pub(crate) fn text(v: &Option<Vec<u8>>) -> String {
    v.as_deref().map_or_else(|| "(none)".into(), |b| String::from_utf8_lossy(b).into_owned())
}

/// Runs `cmd` with `env`, ending it if `lost` fires first: its exit code, or `None` when
/// the session (and what it held) was lost.
pub(crate) async fn run_while(
    cmd: &[String],
    env: &[(&str, String)],
    lost: impl std::future::Future<Output = ()>,
) -> Result<Option<u8>, CliError> {
    let (program, args) = cmd.split_first().ok_or_else(|| "no command given".to_string())?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    tokio::select! {
        status = child.wait() => {
            let status = status.map_err(|e| format!("{program}: {e}"))?;
            Ok(Some(status.code().map_or(EXIT_ERROR, |c| c.clamp(0, 255) as u8)))
        }
        () = lost => {
            let _ = child.kill().await;
            eprintln!("concord: the session was lost, and with it what it held; {program} was stopped");
            Ok(None)
        }
    }
}

/// After a command ran under a hold: release it and pass the command's exit code on, or
/// exit 5 if the session was lost (the cluster released everything already).
pub(crate) async fn release_after(
    ran: Option<u8>,
    release: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<Outcome, CliError> {
    let Some(code) = ran else { return Ok(Outcome::Exit(EXIT_SESSION_LOST)) };
    match release.await {
        // Lost after the command finished: the cluster released it, and the command ran
        // to its end holding it, so its code stands.
        Ok(()) | Err(Error::Machine(MachineError::SessionLost(_))) => Ok(Outcome::Exit(code)),
        Err(e) => Err(e.into()),
    }
}

/// A try (`--timeout-ms 0`) that found the primitive taken is "not acquired"; any other
/// failure is an error.
pub(crate) fn not_acquired(e: Error, tried: bool, what: String) -> Result<Outcome, CliError> {
    match e {
        Error::Machine(MachineError::Timeout) if tried => Ok(Outcome::NotAcquired(what)),
        e => Err(e.into()),
    }
}

pub(crate) async fn lock(ctx: Ctx, a: LockArgs) -> Result<Outcome, CliError> {
    let guard = match ctx.client.lock(&a.name, a.timeout_ms.map(Duration::from_millis)).await {
        Ok(g) => g,
        Err(e) => return not_acquired(e, a.timeout_ms == Some(0), format!("lock {} is held", a.name)),
    };
    let fence = guard.fence();
    if ctx.output == Output::Json {
        eprintln!("{}", json!({"lock": a.name, "fence": fence}));
    }
    let env = [("CONCORD_LOCK", a.name.clone()), ("CONCORD_FENCE", fence.to_string())];
    let ran = run_while(&a.cmd, &env, guard.lost()).await?;
    release_after(ran, guard.unlock()).await
}

pub(crate) async fn semaphore(ctx: Ctx, a: SemaphoreArgs) -> Result<Outcome, CliError> {
    match a.action {
        SemaphoreAction::Init { name, permits } => {
            let created = ctx.client.semaphore(&name).init(permits).await?;
            ctx.print(if created { "created" } else { "exists" }, json!({"created": created}));
            Ok(Outcome::Ok)
        }
        SemaphoreAction::Available { name } => {
            let n = ctx.client.semaphore(&name).available().await?;
            ctx.print(n, json!({"available": n}));
            Ok(Outcome::Ok)
        }
        SemaphoreAction::Run { name, permits, timeout_ms, cmd } => {
            let held = match ctx
                .client
                .semaphore(&name)
                .acquire(permits, timeout_ms.map(Duration::from_millis))
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    let what = format!("semaphore {name} has no {permits} permits free");
                    return not_acquired(e, timeout_ms == Some(0), what);
                }
            };
            if ctx.output == Output::Json {
                eprintln!("{}", json!({"semaphore": name, "permits": permits}));
            }
            let env = [("CONCORD_SEMAPHORE", name), ("CONCORD_PERMITS", permits.to_string())];
            let ran = run_while(&cmd, &env, held.lost()).await?;
            release_after(ran, held.release()).await
        }
    }
}

pub(crate) async fn rwlock(ctx: Ctx, a: RwLockArgs) -> Result<Outcome, CliError> {
    let lock = ctx.client.rwlock(&a.name);
    let timeout = a.timeout_ms.map(Duration::from_millis);
    let taken = if a.write { lock.write(timeout).await } else { lock.read(timeout).await };
    let guard = match taken {
        Ok(g) => g,
        Err(e) => {
            let what = format!("read-write lock {} is not available", a.name);
            return not_acquired(e, a.timeout_ms == Some(0), what);
        }
    };
    if ctx.output == Output::Json {
        eprintln!("{}", json!({"rwlock": a.name, "write": a.write, "fence": guard.fence()}));
    }
    let env = [("CONCORD_RWLOCK", a.name.clone()), ("CONCORD_FENCE", guard.fence().to_string())];
    let ran = run_while(&a.cmd, &env, guard.lost()).await?;
    release_after(ran, guard.unlock()).await
}

pub(crate) async fn counter(ctx: Ctx, a: CounterArgs) -> Result<Outcome, CliError> {
    let (name, value) = match a.action {
        CounterAction::Get { name } => {
            let v = ctx.client.counter(&name).get().await?;
            (name, v)
        }
        CounterAction::Set { name, value } => {
            let v = ctx.client.counter(&name).get_and_set(value).await?;
            (name, v)
        }
        CounterAction::Incr { name } => {
            let v = ctx.client.counter(&name).incr().await?;
            (name, v)
        }
        CounterAction::Add { name, delta } => {
            let v = ctx.client.counter(&name).add(delta).await?;
            (name, v)
        }
        CounterAction::Cas { name, expected, new } => {
            let done = ctx.client.counter(&name).compare_and_set(expected, new).await?;
            ctx.print(done, json!({"counter": name, "swapped": done}));
            return Ok(if done {
                Outcome::Ok
            } else {
                Outcome::NotAcquired(format!("{name} is not {expected}"))
            });
        }
    };
    ctx.print(value, json!({"counter": name, "value": value}));
    Ok(Outcome::Ok)
}

pub(crate) async fn reference(ctx: Ctx, a: RefArgs) -> Result<Outcome, CliError> {
    match a.action {
        RefAction::Get { name } => {
            let v = ctx.client.reference(&name).get().await?;
            ctx.print(text(&v), json!({"ref": name, "value": v.as_deref().map(String::from_utf8_lossy)}));
        }
        RefAction::Set { name, value } => {
            ctx.client.reference(&name).set(Some(value.into_bytes())).await?;
            ctx.print("OK", json!({"ref": name, "set": true}));
        }
        RefAction::Cas { name, expected, new } => {
            let r = ctx.client.reference(&name);
            let done = r.compare_and_set(Some(expected.clone().into_bytes()), Some(new.into_bytes())).await?;
            ctx.print(done, json!({"ref": name, "swapped": done}));
            if !done {
                return Ok(Outcome::NotAcquired(format!("{name} is not {expected:?}")));
            }
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) async fn latch(ctx: Ctx, a: LatchArgs) -> Result<Outcome, CliError> {
    match a.action {
        LatchAction::Set { name, count } => {
            let set = ctx.client.latch(&name).try_set_count(count).await?;
            ctx.print(set, json!({"latch": name, "set": set}));
            if !set {
                return Ok(Outcome::NotAcquired(format!("latch {name} is still counting down")));
            }
        }
        LatchAction::CountDown { name } => {
            let left = ctx.client.latch(&name).count_down().await?;
            ctx.print(left, json!({"latch": name, "count": left}));
        }
        LatchAction::Await { name, timeout_ms } => {
            if !ctx.client.latch(&name).wait(timeout_ms.map(Duration::from_millis)).await? {
                return Err(Error::Machine(MachineError::Timeout).into());
            }
            ctx.print("open", json!({"latch": name, "open": true}));
        }
        LatchAction::Count { name } => {
            let n = ctx.client.latch(&name).count().await?;
            ctx.print(n, json!({"latch": name, "count": n}));
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) async fn barrier(ctx: Ctx, a: BarrierArgs) -> Result<Outcome, CliError> {
    let barrier = ctx.client.barrier(&a.name, a.parties);
    let Tripped { generation, arrival } = barrier.wait(a.timeout_ms.map(Duration::from_millis)).await?;
    ctx.print(
        format!("tripped: generation {generation}, arrived {arrival} of {}", a.parties),
        json!({"barrier": a.name, "generation": generation, "arrival": arrival}),
    );
    Ok(Outcome::Ok)
}

pub(crate) async fn elect(ctx: Ctx, a: ElectArgs) -> Result<Outcome, CliError> {
    if a.observe {
        // The first event is the current leader, then every change.
        let mut seen = 0;
        let mut events = ctx.client.observe(&a.name);
        while a.count.is_none_or(|c| seen < c) {
            let Some(e) = events.recv().await else { break };
            let e = e?;
            print_leader(&ctx, &e.name, e.leader.as_ref().map(|l| (l.session.0, l.fence.0, &l.value)));
            seen += 1;
        }
        return Ok(Outcome::Ok);
    }
    let value = a.value.clone().unwrap_or_default().into_bytes();
    let leadership = match ctx.client.campaign(&a.name, value, a.timeout_ms.map(Duration::from_millis)).await
    {
        Ok(l) => l,
        Err(e) => {
            return not_acquired(e, a.timeout_ms == Some(0), format!("election {} has a leader", a.name))
        }
    };
    let fence = leadership.fence();
    ctx.print(format!("elected: {} (fence {fence})", a.name), json!({"election": a.name, "fence": fence}));
    let ran = if a.cmd.is_empty() {
        tokio::select! {
            () = leadership.lost() => None,
            _ = tokio::signal::ctrl_c() => Some(0),
        }
    } else {
        let env = [("CONCORD_ELECTION", a.name.clone()), ("CONCORD_FENCE", fence.to_string())];
        run_while(&a.cmd, &env, leadership.lost()).await?
    };
    release_after(ran, leadership.resign()).await
}

pub(crate) fn print_leader(ctx: &Ctx, name: &str, l: Option<(u64, u64, &Vec<u8>)>) {
    match l {
        Some((session, fence, value)) => ctx.print(
            format!("{name}: {} (session {session}, fence {fence})", String::from_utf8_lossy(value)),
            json!({"election": name, "session": session, "fence": fence, "value": String::from_utf8_lossy(value)}),
        ),
        None => ctx.print(format!("{name}: no leader"), json!({"election": name, "leader": null})),
    }
}

/// A conditional write that found its condition false is "not acquired".
pub(crate) fn condition_failed<T>(r: Result<T, Error>, key: &str) -> Result<Result<T, Outcome>, CliError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Error::Machine(e @ MachineError::Kv(KvError::Exists { .. } | KvError::EtagMismatch { .. }))) => {
            Ok(Err(Outcome::NotAcquired(format!("{key}: {e}"))))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn kv(ctx: Ctx, a: KvArgs) -> Result<Outcome, CliError> {
    let kv = ctx.client.kv();
    match a.action {
        KvAction::Get { key, if_none_match } => match kv.get_if_none_match(&key, if_none_match.map(Etag)).await? {
            Fresh::Changed(Some(e)) => ctx.print(
                text(&e.value),
                json!({"key": e.key, "value": e.value.as_deref().map(String::from_utf8_lossy), "etag": e.etag.0, "version": e.version}),
            ),
            Fresh::Changed(None) => return Ok(Outcome::NotAcquired(format!("{key}: not found"))),
            Fresh::NotModified(etag) => {
                ctx.print("not modified", json!({"key": key, "etag": etag.0, "modified": false}));
                return Ok(Outcome::NotAcquired(format!("{key}: not modified")));
            }
        },
        KvAction::Put { key, value, create_only, if_match, ttl_ms } => {
            let mode = match (create_only, if_match) {
                (true, _) => PutMode::IfAbsent,
                (false, Some(e)) => PutMode::IfMatch(Etag(e)),
                (false, None) => PutMode::Always,
            };
            let put = kv.put_with(&key, value.into_bytes(), mode, ttl_ms.map(Duration::from_millis)).await;
            match condition_failed(put, &key)? {
                Ok(etag) => ctx.print(format!("etag {}", etag.0), json!({"key": key, "etag": etag.0})),
                Err(refused) => return Ok(refused),
            }
        }
        KvAction::Delete { key, if_match } => {
            let deleted = match condition_failed(kv.delete(&key, if_match.map(Etag)).await, &key)? {
                Ok(d) => d,
                Err(refused) => return Ok(refused),
            };
            ctx.print(if deleted { "deleted" } else { "not found" }, json!({"key": key, "deleted": deleted}));
        }
        KvAction::List { prefix } => {
            let all = kv.list(&prefix, false).await?;
            match ctx.output {
                Output::Human => {
                    for e in &all {
                        println!("{}\t{}", e.key, text(&e.value));
                    }
                }
                Output::Json => {
                    let v: Vec<_> = all
                        .iter()
                        .map(|e| json!({"key": e.key, "value": e.value.as_deref().map(String::from_utf8_lossy), "etag": e.etag.0}))
                        .collect();
                    println!("{}", serde_json::Value::Array(v));
                }
            }
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) async fn watch(ctx: Ctx, a: WatchArgs) -> Result<Outcome, CliError> {
    let filter = if a.prefix {
        WatchFilter::Prefix(a.target)
    } else if a.pattern {
        WatchFilter::Pattern(a.target)
    } else {
        WatchFilter::Key(a.target)
    };
    let mut events = ctx.client.watch(filter, a.from);
    let mut seen = 0;
    while let Some(e) = events.recv().await {
        let e = e?;
        ctx.print(
            format!("{} {:?} {} {}", e.revision, e.kind, e.key, text(&e.value)),
            json!({"revision": e.revision, "kind": format!("{:?}", e.kind), "key": e.key, "value": e.value.as_deref().map(String::from_utf8_lossy)}),
        );
        seen += 1;
        if a.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) async fn signal(ctx: Ctx, a: SignalArgs) -> Result<Outcome, CliError> {
    match a.action {
        SignalAction::Publish { subject, payload } => {
            let n = ctx.client.publish(&subject, payload.into_bytes()).await?;
            ctx.print(format!("{n} received"), json!({"subject": subject, "receivers": n}));
        }
        SignalAction::Subscribe { pattern, queue_group, count } => {
            let mut sub = ctx.client.subscribe(&pattern, queue_group.as_deref()).await?;
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                let Some(d) = sub.next().await else {
                    eprintln!("concord: the session was lost, and the subscription with it");
                    return Ok(Outcome::Exit(EXIT_SESSION_LOST));
                };
                ctx.print(
                    format!("{} {}", d.subject, String::from_utf8_lossy(&d.payload)),
                    json!({"subject": d.subject, "payload": String::from_utf8_lossy(&d.payload), "index": d.index}),
                );
                seen += 1;
            }
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) async fn status(ctx: Ctx, _: NoArgs) -> Result<Outcome, CliError> {
    let s = ctx.client.status().await?;
    let (voters, learners) = ids(&s.membership);
    ctx.print(
        format!(
            "node {} ({:?}), term {}, leader {}, commit {}, applied {}, voters {voters:?}, learners {learners:?}",
            s.id.0,
            s.role,
            s.term,
            s.leader.map_or("none".into(), |l| l.0.to_string()),
            s.commit_index,
            s.applied_index
        ),
        serde_json::to_value(&s).unwrap_or_default(),
    );
    Ok(Outcome::Ok)
}

/// The voters' and learners' ids.
pub(crate) fn ids(m: &Membership) -> (Vec<u64>, Vec<u64>) {
    (m.voters.iter().map(|v| v.0).collect(), m.learners.iter().map(|v| v.0).collect())
}

pub(crate) async fn member(ctx: Ctx, a: MemberArgs) -> Result<Outcome, CliError> {
    let change = match a.action {
        MemberAction::Add { id, learner: false } => MembershipChange::AddVoter(NodeId(id)),
        MemberAction::Add { id, learner: true } => MembershipChange::AddLearner(NodeId(id)),
        MemberAction::Remove { id } => MembershipChange::Remove(NodeId(id)),
        MemberAction::List => {
            let (voters, learners) = ids(&ctx.client.status().await?.membership);
            ctx.print(
                format!("voters {voters:?}, learners {learners:?}"),
                json!({"voters": voters, "learners": learners}),
            );
            return Ok(Outcome::Ok);
        }
    };
    let (index, membership) = ctx.client.change_membership(change).await?;
    let (voters, _) = ids(&membership);
    ctx.print(
        format!("membership at index {index}: voters {voters:?}"),
        json!({"index": index, "voters": voters}),
    );
    Ok(Outcome::Ok)
}

pub(crate) async fn transfer(ctx: Ctx, a: TransferArgs) -> Result<Outcome, CliError> {
    let term = ctx.client.transfer_leadership(NodeId(a.id)).await?;
    ctx.print(format!("node {} leads in term {term}", a.id), json!({"leader": a.id, "term": term}));
    Ok(Outcome::Ok)
}
