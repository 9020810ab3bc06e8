//! The client subcommands: each connects, runs its operation through the typed client,
//! prints the result (human or JSON) and maps it to an exit code.
//!
//! With `--output json` every result is exactly one JSON object on stdout — a value, a
//! refusal (`"acquired": false`, `"found": false`, …), a lost session or an error
//! (`{"error": KIND, "message": …}`) — and a stream (watch, subscribe, observe) prints
//! one object per event. A hold that runs a command reports on stderr instead, since
//! stdout is the command's.

use clap::Args;
use concord_core::machine::kv::{KvEntry, KvError, PutMode, WatchFilter};
use concord_core::machine::{Error as MachineError, Etag};
use concord_core::raft::{Membership, MembershipChange};

use concord_core::client::calls;
use concord_core::NodeId;
use concord_tokio::client::{
    Concord, Enqueued, Error, Fresh, Leadership, LockGuard, Options, Permits, RwGuard, Tripped,
};
use serde_json::{json, Value};
use std::time::Duration;

use crate::child::{hold_until_signal, run_command, signal_exit, Ended, Signals};
use crate::cli::*;
use crate::*;

/// What a client command gets: the connection, how to print, and the signals.
pub(crate) struct Ctx {
    pub(crate) client: Concord,
    pub(crate) output: Output,
    pub(crate) signals: Signals,
}

impl Ctx {
    /// Prints `human` or, with `--output json`, `value`, on stdout.
    pub(crate) fn print(&self, human: impl std::fmt::Display, value: Value) {
        match self.output {
            Output::Human => emit(&human),
            Output::Json => emit(&value),
        }
    }

    /// A refusal (exit 3): `why` on stderr, and with `--output json`, `value` on stdout.
    fn refused(&self, why: impl Into<String>, value: Value) -> Outcome {
        if self.output == Output::Json {
            emit(&value);
        }
        Outcome::NotAcquired(why.into())
    }
}

/// Writes a line on stdout. A reader that went away (`concord watch … | head -1`) ends the
/// CLI quietly with 141, as SIGPIPE would, instead of a panic.
pub(crate) fn emit(line: &dyn std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(141);
    }
}

/// A short, stable name for what went wrong, for `--output json`.
pub(crate) fn error_kind(e: &CliError) -> &'static str {
    match e {
        CliError::Client(Error::Machine(MachineError::Timeout)) => "timeout",
        CliError::Client(Error::Machine(MachineError::SessionLost(_))) => "session_lost",
        CliError::Client(Error::Machine(MachineError::Limit { .. })) => "limit",
        CliError::Client(Error::Machine(MachineError::BelowMinimum { .. })) => "invalid",
        CliError::Client(Error::Machine(_)) => "refused",
        CliError::Client(Error::Unreachable(_)) => "unreachable",
        CliError::Client(Error::Config(_)) => "invalid",
        CliError::Client(Error::Request(_)) => "request",
        CliError::Usage(_) => "usage",
        CliError::Client(_) | CliError::Other(_) => "error",
    }
}

pub(crate) async fn with_client<T: Args, F, Fut>(c: ClientArgs<T>, f: F) -> Result<Outcome, CliError>
where
    F: FnOnce(Ctx, T) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, CliError>>,
{
    let output = c.output;
    let result = connect_and_run(c, f).await;
    if let (Output::Json, Err(e)) = (output, &result) {
        emit(&json!({"error": error_kind(e), "message": e.to_string()}));
    }
    result
}

async fn connect_and_run<T: Args, F, Fut>(c: ClientArgs<T>, f: F) -> Result<Outcome, CliError>
where
    F: FnOnce(Ctx, T) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, CliError>>,
{
    let signals = Signals::install()?;
    let mut opts = Options::from_endpoints(c.endpoints)?;
    opts.group = c.group;
    opts.session_ttl = Duration::from_millis(c.session_ttl_ms);
    opts.read_consistency = c.consistency.into();
    opts.connect_timeout = Duration::from_millis(c.connect_timeout_ms);
    opts.dial_timeout = Duration::from_millis(c.dial_timeout_ms);
    let client = tokio::select! {
        client = Concord::connect(opts) => client?,
        sig = signals.interrupted() => return Ok(interrupted(c.output, sig)),
    };
    let ctx = Ctx { client: client.clone(), output: c.output, signals: signals.clone() };
    // A signal while nothing runs under a hold abandons what the command was doing (a
    // wait in the cluster is given back by the client); a hold's command gets it instead.
    let result = tokio::select! {
        result = f(ctx, c.args) => result,
        sig = signals.interrupted() => Ok(interrupted(c.output, sig)),
    };
    // Closing the session releases anything still held at once.
    client.close().await;
    result
}

/// A signal ended what the command was doing (nothing ran under a hold): 128+N, and with
/// `--output json` an object saying so.
fn interrupted(output: Output, sig: nix::sys::signal::Signal) -> Outcome {
    if output == Output::Json {
        emit(&json!({"interrupted": sig.as_str()}));
    }
    Outcome::Exit(signal_exit(sig as i32))
}

pub(crate) fn text(v: &Option<Vec<u8>>) -> String {
    v.as_deref().map_or_else(|| "(none)".into(), |b| String::from_utf8_lossy(b).into_owned())
}

fn json_text(v: &Option<Vec<u8>>) -> Value {
    v.as_deref().map_or(Value::Null, |b| Value::String(String::from_utf8_lossy(b).into_owned()))
}

fn timeout(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

/// A grant a hold subcommand holds: how it is lost, and how it is given back.
pub(crate) trait Held {
    fn lost(&self) -> impl std::future::Future<Output = ()>;
    fn give_back(self) -> impl std::future::Future<Output = Result<(), Error>>;
}

impl Held for Vec<LockGuard> {
    async fn lost(&self) {
        if let Some(g) = self.first() {
            g.lost().await;
        }
    }
    async fn give_back(self) -> Result<(), Error> {
        for g in self {
            g.unlock().await?;
        }
        Ok(())
    }
}

macro_rules! held {
    ($($guard:ty => $release:ident),* $(,)?) => {$(
        impl Held for $guard {
            async fn lost(&self) {
                <$guard>::lost(self).await;
            }
            async fn give_back(self) -> Result<(), Error> {
                self.$release().await
            }
        }
    )*};
}
held!(Permits => release, RwGuard => unlock, Leadership => resign);

/// Holds `held` while `cmd` runs — or, without a command, until a signal — then gives
/// it back. `grant` describes the grant (`CONCORD_*` variables for the command come
/// from `env`). Exit codes: the command's own (128+N if a signal ended it); 128+N after
/// the CLI was sent signal N during a command; 0 for a hold without a command ended by
/// a signal; 5 when the session was lost.
async fn hold(
    ctx: &Ctx,
    held: impl Held,
    grant: Value,
    human: String,
    env: &[(&str, String)],
    cmd: &[String],
) -> Result<Outcome, CliError> {
    let json = ctx.output == Output::Json;
    if cmd.is_empty() {
        ctx.print(human, grant.clone());
    } else if json {
        eprintln!("{grant}");
    }
    let ended = if cmd.is_empty() {
        hold_until_signal(&ctx.signals, held.lost()).await
    } else {
        run_command(cmd, env, &ctx.signals, held.lost()).await?
    };
    let code = match ended {
        Ended::Lost => {
            if json {
                let mut lost = grant;
                lost["session_lost"] = Value::Bool(true);
                if cmd.is_empty() {
                    emit(&lost);
                } else {
                    eprintln!("{lost}");
                }
            } else if cmd.is_empty() {
                eprintln!("concord: the session was lost, and with it what it held");
            }
            return Ok(Outcome::Exit(EXIT_SESSION_LOST));
        }
        Ended::Exited(code) => code,
        Ended::Signalled(_) if cmd.is_empty() => 0,
        Ended::Signalled(sig) => signal_exit(sig as i32),
    };
    match held.give_back().await {
        // Lost after the command finished: the cluster released it, and the command ran
        // to its end holding it, so its code stands.
        Ok(()) | Err(Error::Machine(MachineError::SessionLost(_))) => Ok(Outcome::Exit(code)),
        Err(e) => Err(e.into()),
    }
}

/// A try (`--timeout-ms 0`) that found the primitive taken is "not acquired"; any other
/// failure is an error.
fn not_acquired(ctx: &Ctx, e: Error, tried: bool, why: String, value: Value) -> Result<Outcome, CliError> {
    match e {
        Error::Machine(MachineError::Timeout) if tried => Ok(ctx.refused(why, value)),
        e => Err(e.into()),
    }
}

pub(crate) async fn lock(ctx: Ctx, a: LockArgs) -> Result<Outcome, CliError> {
    let tried = a.timeout_ms == Some(0);
    let names = a.names.join(",");
    let refused = json!({"lock": names, "acquired": false});
    let taken = if a.enqueue {
        let [name] = &a.names[..] else {
            return Err(CliError::Usage("--enqueue takes one lock name".into()));
        };
        match ctx.client.enqueue(name).await {
            Ok(Enqueued::Granted(g)) => Ok(vec![g]),
            Ok(Enqueued::Queued { position }) => {
                eprintln!("concord: {name}: queued at position {position}");
                ctx.client.await_lock(name, timeout(a.timeout_ms)).await.map(|g| vec![g])
            }
            Err(e) => Err(e),
        }
    } else if let [name] = &a.names[..] {
        ctx.client.lock(name, timeout(a.timeout_ms)).await.map(|g| vec![g])
    } else {
        let names: Vec<&str> = a.names.iter().map(String::as_str).collect();
        ctx.client.lock_all(&names, timeout(a.timeout_ms)).await
    };
    let guards = match taken {
        Ok(g) => g,
        Err(e) => return not_acquired(&ctx, e, tried, format!("lock {names} is held"), refused),
    };
    let fence = guards.first().map_or(0, LockGuard::fence);
    let grant = json!({"lock": names, "acquired": true, "fence": fence});
    let env = [("CONCORD_LOCK", names.clone()), ("CONCORD_FENCE", fence.to_string())];
    hold(&ctx, guards, grant, format!("{names} locked, fence {fence}"), &env, &a.cmd).await
}

pub(crate) async fn locks(ctx: Ctx, a: LocksArgs) -> Result<Outcome, CliError> {
    let info = |l: &concord_core::machine::lock::LockInfo| {
        json!({
            "lock": l.name,
            "locked": l.holder.is_some(),
            "holder": l.holder.map(|s| s.0),
            "fence": l.fence.map(|f| f.0),
            "holds": l.count,
            "waiters": l.waiters.iter().map(|s| s.0).collect::<Vec<_>>(),
        })
    };
    let human = |l: &concord_core::machine::lock::LockInfo| match (l.holder, l.fence) {
        (Some(s), Some(f)) => format!(
            "{}\theld by session {} (fence {}, {} hold{}), {} waiting",
            l.name,
            s.0,
            f.0,
            l.count,
            if l.count == 1 { "" } else { "s" },
            l.waiters.len()
        ),
        _ => format!("{}\tfree, {} waiting", l.name, l.waiters.len()),
    };
    match a.action {
        LocksAction::List { start } => {
            let all = ctx.client.locks(&start).await?;
            let lines: Vec<String> = all.iter().map(human).collect();
            ctx.print(lines.join("\n"), json!({"locks": all.iter().map(info).collect::<Vec<_>>()}));
            if ctx.output == Output::Human && all.is_empty() {
                eprintln!("concord: no lock is held or waited for");
            }
        }
        LocksAction::Show { name } => {
            let page = ctx.client.locks(&name).await?;
            match page.into_iter().next().filter(|l| l.name == name) {
                Some(l) if l.holder.is_some() => ctx.print(human(&l), info(&l)),
                found => {
                    let waiting = found.map_or(0, |l| l.waiters.len());
                    let value = json!({"lock": name, "locked": false, "holder": null, "fence": null, "holds": 0, "waiters": []});
                    return Ok(ctx.refused(format!("lock {name} is free ({waiting} waiting)"), value));
                }
            }
        }
        LocksAction::ForceUnlock { name } => {
            ctx.client.force_unlock(&name).await?;
            ctx.print(format!("{name} unlocked"), json!({"lock": name, "unlocked": true}));
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) async fn semaphore(ctx: Ctx, a: SemaphoreArgs) -> Result<Outcome, CliError> {
    match a.action {
        SemaphoreAction::Init { name, permits, sessionless } => {
            let s = ctx.client.semaphore(&name);
            let created =
                if sessionless { s.init_sessionless(permits).await? } else { s.init(permits).await? };
            ctx.print(
                if created { "created" } else { "exists" },
                json!({"semaphore": name, "created": created}),
            );
        }
        SemaphoreAction::Available { name } => {
            let n = ctx.client.semaphore(&name).available().await?;
            ctx.print(n, json!({"semaphore": name, "available": n}));
        }
        SemaphoreAction::Run { name, permits, timeout_ms, cmd } => {
            let refused = json!({"semaphore": name, "permits": permits, "acquired": false});
            let held = match ctx.client.semaphore(&name).acquire(permits, timeout(timeout_ms)).await {
                Ok(p) => p,
                Err(e) => {
                    let why = format!("semaphore {name} has no {permits} permits free");
                    return not_acquired(&ctx, e, timeout_ms == Some(0), why, refused);
                }
            };
            let grant = json!({"semaphore": name, "permits": permits, "acquired": true});
            let env = [("CONCORD_SEMAPHORE", name.clone()), ("CONCORD_PERMITS", permits.to_string())];
            return hold(&ctx, held, grant, format!("{name}: {permits} held"), &env, &cmd).await;
        }
        SemaphoreAction::Take { name, permits, timeout_ms } => {
            let s = ctx.client.semaphore(&name);
            let refused = json!({"semaphore": name, "permits": permits, "acquired": false});
            if let Err(e) = s.take(permits, timeout(timeout_ms)).await {
                let why = format!("semaphore {name} has no {permits} permits free");
                return not_acquired(&ctx, e, timeout_ms == Some(0), why, refused);
            }
            // Permits of a semaphore made for sessions would go back as this exits: that
            // is a mistake the caller should hear of, not a silent no-op.
            if s.held().await? > 0 {
                s.release(permits).await?;
                return Err(format!(
                    "semaphore {name} gives permits to sessions: they would come back as this \
                     command exits; hold them with `concord semaphore run`, or create the \
                     semaphore with `init --sessionless`"
                )
                .into());
            }
            ctx.print(
                format!("{name}: {permits} taken"),
                json!({"semaphore": name, "permits": permits, "acquired": true}),
            );
        }
        SemaphoreAction::Release { name, permits } => {
            ctx.client.semaphore(&name).release(permits).await?;
            ctx.print(format!("{name}: {permits} released"), json!({"semaphore": name, "released": permits}));
        }
        SemaphoreAction::Drain { name } => {
            let s = ctx.client.semaphore(&name);
            let n = s.drain().await?;
            if n > 0 && s.held().await? > 0 {
                s.release(n).await?;
                return Err(format!(
                    "semaphore {name} gives permits to sessions: drained permits would come back \
                     as this command exits; drain only a semaphore made with `init --sessionless`"
                )
                .into());
            }
            ctx.print(n, json!({"semaphore": name, "drained": n}));
        }
        SemaphoreAction::Increase { name, permits } => {
            ctx.client.semaphore(&name).increase(permits).await?;
            let n = ctx.client.semaphore(&name).available().await?;
            ctx.print(n, json!({"semaphore": name, "available": n}));
        }
        SemaphoreAction::Reduce { name, permits } => {
            ctx.client.semaphore(&name).reduce(permits).await?;
            let n = ctx.client.semaphore(&name).available().await?;
            ctx.print(n, json!({"semaphore": name, "available": n}));
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) async fn rwlock(ctx: Ctx, a: RwLockArgs) -> Result<Outcome, CliError> {
    let (a, write) = match a.action {
        RwLockAction::Read(a) => (a, false),
        RwLockAction::Write(a) => (a, true),
        RwLockAction::Status { name } => {
            let lock = ctx.client.rwlock(&name);
            let (readers, write_locked) = (lock.readers().await?, lock.is_write_locked().await?);
            let state = if write_locked { "write-locked".to_string() } else { format!("{readers} readers") };
            ctx.print(
                format!("{name}: {state}"),
                json!({"rwlock": name, "readers": readers, "write_locked": write_locked}),
            );
            return Ok(Outcome::Ok);
        }
    };
    let lock = ctx.client.rwlock(&a.name);
    let taken =
        if write { lock.write(timeout(a.timeout_ms)).await } else { lock.read(timeout(a.timeout_ms)).await };
    let guard = match taken {
        Ok(g) => g,
        Err(e) => {
            let why = format!("read-write lock {} is not available", a.name);
            let refused = json!({"rwlock": a.name, "write": write, "acquired": false});
            return not_acquired(&ctx, e, a.timeout_ms == Some(0), why, refused);
        }
    };
    let fence = guard.fence();
    let grant = json!({"rwlock": a.name, "write": write, "acquired": true, "fence": fence});
    let env = [("CONCORD_RWLOCK", a.name.clone()), ("CONCORD_FENCE", fence.to_string())];
    let mode = if write { "write" } else { "read" };
    hold(&ctx, guard, grant, format!("{} {mode}-locked, fence {fence}", a.name), &env, &a.cmd).await
}

pub(crate) async fn counter(ctx: Ctx, a: CounterArgs) -> Result<Outcome, CliError> {
    let (name, value) = match a.action {
        CounterAction::Get { name } => {
            // A read also reports the applied index it read at.
            let (v, done) = ctx.client.call_done(calls::Counter::new(&name).get()).await?;
            ctx.print(v, json!({"counter": name, "value": v, "index": done.index}));
            return Ok(Outcome::Ok);
        }
        CounterAction::Set { name, value } => {
            let v = ctx.client.counter(&name).get_and_set(value).await?;
            (name, v)
        }
        CounterAction::Incr { name } => {
            let v = ctx.client.counter(&name).incr().await?;
            (name, v)
        }
        CounterAction::Decr { name } => {
            let v = ctx.client.counter(&name).decr().await?;
            (name, v)
        }
        CounterAction::Add { name, delta } => {
            let v = ctx.client.counter(&name).add(delta).await?;
            (name, v)
        }
        CounterAction::GetAndAdd { name, delta } => {
            let v = ctx.client.counter(&name).get_and_add(delta).await?;
            (name, v)
        }
        CounterAction::Alter { name, function, previous } => {
            let c = ctx.client.counter(&name);
            let v =
                if previous { c.get_and_alter(function).await? } else { c.alter_and_get(function).await? };
            (name, v)
        }
        CounterAction::Apply { name, function } => {
            let v = ctx.client.counter(&name).apply(function).await?;
            (name, v)
        }
        CounterAction::Cas { name, expected, new } => {
            if ctx.client.counter(&name).compare_and_set(expected, new).await? {
                ctx.print(true, json!({"counter": name, "swapped": true}));
                return Ok(Outcome::Ok);
            }
            return Ok(
                ctx.refused(format!("{name} is not {expected}"), json!({"counter": name, "swapped": false}))
            );
        }
    };
    ctx.print(value, json!({"counter": name, "value": value}));
    Ok(Outcome::Ok)
}

pub(crate) async fn reference(ctx: Ctx, a: RefArgs) -> Result<Outcome, CliError> {
    let print_value =
        |name: &str, v: &Option<Vec<u8>>| ctx.print(text(v), json!({"ref": name, "value": json_text(v)}));
    match a.action {
        RefAction::Get { name } => {
            let (v, done) = ctx.client.call_done(calls::Reference::new(&name).get()).await?;
            let value = json!({"ref": name, "value": json_text(&v), "index": done.index});
            if v.is_none() {
                return Ok(ctx.refused(format!("{name} has no value"), value));
            }
            ctx.print(text(&v), value);
        }
        RefAction::Set { name, value } => {
            ctx.client.reference(&name).set(Some(value.into_bytes())).await?;
            ctx.print("OK", json!({"ref": name, "set": true}));
        }
        RefAction::GetAndSet { name, value } => {
            let v = ctx.client.reference(&name).get_and_set(Some(value.into_bytes())).await?;
            print_value(&name, &v);
        }
        RefAction::Cas { name, values, expected_none, new_none } => {
            let wanted = 2 - usize::from(expected_none) - usize::from(new_none);
            if values.len() != wanted {
                return Err(CliError::Usage(format!(
                    "ref cas takes {wanted} value(s) besides --expected-none/--new-none, got {}",
                    values.len()
                )));
            }
            let mut values = values.into_iter().map(String::into_bytes);
            let expected = if expected_none { None } else { values.next() };
            let new = if new_none { None } else { values.next() };
            let shown = expected
                .as_ref()
                .map_or_else(|| "without a value".into(), |e| format!("{:?}", String::from_utf8_lossy(e)));
            if ctx.client.reference(&name).compare_and_set(expected, new).await? {
                ctx.print(true, json!({"ref": name, "swapped": true}));
            } else {
                return Ok(
                    ctx.refused(format!("{name} is not {shown}"), json!({"ref": name, "swapped": false}))
                );
            }
        }
        RefAction::Contains { name, value } => {
            let found = ctx.client.reference(&name).contains(Some(value.clone().into_bytes())).await?;
            let v = json!({"ref": name, "contains": found});
            if !found {
                return Ok(ctx.refused(format!("{name} is not {value:?}"), v));
            }
            ctx.print(true, v);
        }
        RefAction::IsNull { name } => {
            let is_null = ctx.client.reference(&name).is_null().await?;
            let v = json!({"ref": name, "null": is_null});
            if !is_null {
                return Ok(ctx.refused(format!("{name} has a value"), v));
            }
            ctx.print(true, v);
        }
        RefAction::Clear { name } => {
            ctx.client.reference(&name).set(None).await?;
            ctx.print("OK", json!({"ref": name, "cleared": true}));
        }
        RefAction::Alter { name, function, previous } => {
            let r = ctx.client.reference(&name);
            let v =
                if previous { r.get_and_alter(function).await? } else { r.alter_and_get(function).await? };
            print_value(&name, &v);
        }
        RefAction::Apply { name, function } => {
            let v = ctx.client.reference(&name).apply(function).await?;
            print_value(&name, &v);
        }
    }
    Ok(Outcome::Ok)
}

pub(crate) async fn latch(ctx: Ctx, a: LatchArgs) -> Result<Outcome, CliError> {
    match a.action {
        LatchAction::Set { name, count } => {
            if !ctx.client.latch(&name).try_set_count(count).await? {
                let v = json!({"latch": name, "set": false});
                return Ok(ctx.refused(format!("latch {name} is still counting down"), v));
            }
            ctx.print(true, json!({"latch": name, "set": true}));
        }
        LatchAction::CountDown { name } => {
            let left = ctx.client.latch(&name).count_down().await?;
            ctx.print(left, json!({"latch": name, "count": left}));
        }
        LatchAction::Await { name, timeout_ms } => {
            if !ctx.client.latch(&name).wait(timeout(timeout_ms)).await? {
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
    let Tripped { generation, arrival } = barrier.wait(timeout(a.timeout_ms)).await?;
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
    if a.leader {
        return Ok(match ctx.client.leader(&a.name).await? {
            Some(l) => {
                print_leader(&ctx, &a.name, Some((l.session.0, l.fence.0, &l.value)));
                Outcome::Ok
            }
            None => ctx.refused(
                format!("election {} has no leader", a.name),
                json!({"election": a.name, "leader": null}),
            ),
        });
    }
    let value = a.value.clone().unwrap_or_default().into_bytes();
    let leadership = match ctx.client.campaign(&a.name, value, timeout(a.timeout_ms)).await {
        Ok(l) => l,
        Err(e) => {
            let refused = json!({"election": a.name, "elected": false});
            return not_acquired(
                &ctx,
                e,
                a.timeout_ms == Some(0),
                format!("election {} has a leader", a.name),
                refused,
            );
        }
    };
    let fence = leadership.fence();
    let grant = json!({"election": a.name, "elected": true, "fence": fence});
    let human = format!("elected: {} (fence {fence})", a.name);
    if a.proclaim_stdin {
        return lead_from_stdin(&ctx, &a.name, leadership, grant, human).await;
    }
    let env = [("CONCORD_ELECTION", a.name.clone()), ("CONCORD_FENCE", fence.to_string())];
    hold(&ctx, leadership, grant, human, &env, &a.cmd).await
}

/// Leads, announcing each line of stdin as the new value, until stdin ends (then
/// resigns), a signal arrives, or leadership is lost.
async fn lead_from_stdin(
    ctx: &Ctx,
    name: &str,
    leadership: Leadership,
    grant: Value,
    human: String,
) -> Result<Outcome, CliError> {
    use tokio::io::AsyncBufReadExt;
    ctx.print(human, grant);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut claim = ctx.signals.claim();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = line.map_err(|e| format!("reading stdin: {e}"))?;
                let Some(line) = line else { break };
                leadership.proclaim(line.clone().into_bytes()).await?;
                ctx.print(format!("proclaimed: {line}"), json!({"election": name, "proclaimed": line}));
            }
            () = leadership.lost() => {
                eprintln!("concord: the session was lost, and with it the leadership");
                return Ok(Outcome::Exit(EXIT_SESSION_LOST));
            }
            _ = claim.next() => break,
        }
    }
    leadership.resign().await?;
    ctx.print("resigned", json!({"election": name, "resigned": true}));
    Ok(Outcome::Ok)
}

pub(crate) fn print_leader(ctx: &Ctx, name: &str, l: Option<(u64, u64, &Vec<u8>)>) {
    match l {
        Some((session, fence, value)) => ctx.print(
            format!("{name}: {} (session {session}, fence {fence})", String::from_utf8_lossy(value)),
            json!({"election": name, "leader": {"session": session, "fence": fence, "value": String::from_utf8_lossy(value)}}),
        ),
        None => ctx.print(format!("{name}: no leader"), json!({"election": name, "leader": null})),
    }
}

/// A conditional write that found its condition false is "not acquired".
fn condition_failed<T>(ctx: &Ctx, r: Result<T, Error>, key: &str) -> Result<Result<T, Outcome>, CliError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Error::Machine(
            e @ MachineError::Kv(KvError::Exists { .. } | KvError::EtagMismatch { .. } | KvError::NotFound),
        )) => {
            let current = match e {
                MachineError::Kv(KvError::Exists { etag }) => Some(etag.0),
                MachineError::Kv(KvError::EtagMismatch { current }) => current.map(|e| e.0),
                _ => None,
            };
            let v = json!({"key": key, "written": false, "reason": e.to_string(), "etag": current});
            Ok(Err(ctx.refused(format!("{key}: {e}"), v)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The result of a copy or rename from `from` to `to`.
fn moved(ctx: &Ctx, r: Result<Etag, Error>, from: &str, to: &str) -> Result<Outcome, CliError> {
    match condition_failed(ctx, r, to)? {
        Ok(etag) => {
            ctx.print(
                format!("etag {}", etag.0),
                json!({"key": to, "from": from, "written": true, "etag": etag.0}),
            );
            Ok(Outcome::Ok)
        }
        Err(refused) => Ok(refused),
    }
}

fn entry_json(e: &KvEntry) -> Value {
    json!({"key": e.key, "value": json_text(&e.value), "etag": e.etag.0, "version": e.version})
}

pub(crate) async fn kv(ctx: Ctx, a: KvArgs) -> Result<Outcome, CliError> {
    let kv = ctx.client.kv();
    match a.action {
        KvAction::Get { key, if_none_match } => {
            // A read also reports the applied index it read at.
            let (fresh, done) =
                ctx.client.call_done(calls::Kv.get_if_none_match(&key, if_none_match.map(Etag))).await?;
            let index = done.index;
            match fresh {
                Fresh::Changed(Some(e)) => {
                    let mut v = entry_json(&e);
                    v["index"] = index.into();
                    ctx.print(text(&e.value), v);
                }
                Fresh::Changed(None) => {
                    let v = json!({"key": key, "found": false, "index": index});
                    return Ok(ctx.refused(format!("{key}: not found"), v));
                }
                Fresh::NotModified(etag) => {
                    let v = json!({"key": key, "etag": etag.0, "modified": false, "index": index});
                    return Ok(ctx.refused(format!("{key}: not modified"), v));
                }
            }
        }
        KvAction::Put { key, value, create_only, if_match, ttl_ms } => {
            let mode = match (create_only, if_match) {
                (true, _) => PutMode::IfAbsent,
                (false, Some(e)) => PutMode::IfMatch(Etag(e)),
                (false, None) => PutMode::Always,
            };
            let put = kv.put_with(&key, value.into_bytes(), mode, timeout(ttl_ms)).await;
            match condition_failed(&ctx, put, &key)? {
                Ok(etag) => ctx
                    .print(format!("etag {}", etag.0), json!({"key": key, "written": true, "etag": etag.0})),
                Err(refused) => return Ok(refused),
            }
        }
        KvAction::Delete { key, if_match } => {
            match condition_failed(&ctx, kv.delete(&key, if_match.map(Etag)).await, &key)? {
                Ok(true) => ctx.print("deleted", json!({"key": key, "deleted": true})),
                Ok(false) => {
                    return Ok(ctx.refused(
                        format!("{key}: not found"),
                        json!({"key": key, "deleted": false, "found": false}),
                    ));
                }
                Err(refused) => return Ok(refused),
            }
        }
        KvAction::Copy { from, to, if_absent } => {
            return moved(&ctx, kv.copy(&from, &to, if_absent).await, &from, &to)
        }
        KvAction::Rename { from, to, if_absent } => {
            return moved(&ctx, kv.rename(&from, &to, if_absent).await, &from, &to);
        }
        KvAction::List { prefix, keys_only } => {
            let all = kv.list(&prefix, keys_only).await?;
            let lines: Vec<String> = all
                .iter()
                .map(|e| {
                    if keys_only {
                        format!("{}\t{}", e.key, e.etag.0)
                    } else {
                        format!("{}\t{}\t{}", e.key, e.etag.0, text(&e.value))
                    }
                })
                .collect();
            let entries: Vec<Value> = all
                .iter()
                .map(|e| {
                    if keys_only {
                        json!({"key": e.key, "etag": e.etag.0, "version": e.version})
                    } else {
                        entry_json(e)
                    }
                })
                .collect();
            match ctx.output {
                Output::Human if lines.is_empty() => {}
                _ => ctx.print(lines.join("\n"), json!({"prefix": prefix, "entries": entries})),
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
            json!({"revision": e.revision, "kind": format!("{:?}", e.kind), "key": e.key, "value": json_text(&e.value)}),
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
                    if ctx.output == Output::Json {
                        emit(&json!({"pattern": pattern, "session_lost": true}));
                    }
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

pub(crate) async fn status(ctx: Ctx, a: StatusArgs) -> Result<Outcome, CliError> {
    // Every node the client knows of is asked at once, directly.
    let known: std::collections::BTreeMap<NodeId, concord_tokio::client::Member> =
        ctx.client.members().await.into_iter().map(|m| (m.id, m)).collect();
    let mut asking = tokio::task::JoinSet::new();
    for &node in known.keys() {
        let client = ctx.client.clone();
        asking.spawn(async move { (node, client.status_of(node).await) });
    }
    let mut answers = std::collections::BTreeMap::new();
    while let Some(answered) = asking.join_next().await {
        if let Ok((node, status)) = answered {
            answers.insert(node, status);
        }
    }
    // Members named by any node but never reached are listed too.
    let mut members: std::collections::BTreeSet<NodeId> = known.keys().copied().collect();
    for s in answers.values().flatten() {
        members.extend(s.membership.voters.iter().chain(&s.membership.learners).copied());
    }
    let commit_max = answers.values().flatten().map(|s| s.commit_index).max().unwrap_or(0);
    let mut rows = Vec::new();
    let mut table = vec!["ID\tADDRESS\tROLE\tTERM\tLEADER\tCOMMIT\tAPPLIED\tLAG\tREACHABLE".to_string()];
    for node in &members {
        let addr = known.get(node).map_or_else(|| "?".into(), |m| m.addr.clone());
        match answers.get(node) {
            Some(Ok(s)) => {
                let leader = s.leader.map(|l| l.0);
                let lag = commit_max.saturating_sub(s.applied_index);
                table.push(format!(
                    "{}\t{addr}\t{:?}\t{}\t{}\t{}\t{}\t{lag}\tyes",
                    node.0,
                    s.role,
                    s.term,
                    leader.map_or("-".into(), |l| l.to_string()),
                    s.commit_index,
                    s.applied_index
                ));
                rows.push(json!({
                    "id": node.0, "address": addr, "reachable": true, "role": format!("{:?}", s.role),
                    "term": s.term, "leader": leader, "commit_index": s.commit_index,
                    "applied_index": s.applied_index, "last_index": s.last_index,
                    "snapshot_index": s.snapshot_index, "lag": lag,
                    "voters": ids(&s.membership).0, "learners": ids(&s.membership).1,
                }));
            }
            failed => {
                let why = match (known.get(node).and_then(|m| m.trouble.clone()), failed) {
                    (Some(trouble), _) => trouble,
                    (None, Some(Err(e))) => e.to_string(),
                    (None, _) => "its client address is unknown".to_string(),
                };
                table.push(format!("{}\t{addr}\t-\t-\t-\t-\t-\t-\tno ({why})", node.0));
                rows.push(json!({"id": node.0, "address": addr, "reachable": false, "error": why}));
            }
        }
    }
    let mut value = json!({"nodes": rows});
    let mut unhealthy = None;
    if a.health {
        // A linearizable read: the leader confirms with a quorum that it still leads.
        let (request, _) = concord_core::client::calls::Lock::new("concord.health").is_locked().into_parts();
        let concord_core::client::calls::Request::Read(query) = request else {
            return Err("the health check's read is not a read".to_string().into());
        };
        let wait = Duration::from_millis(a.health_timeout_ms);
        let checked =
            tokio::time::timeout(wait, ctx.client.read(query, concord_core::Consistency::Linearizable)).await;
        let healthy = match checked {
            Ok(Ok(done)) => Ok(done.index),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no quorum confirmed a leader within {wait:?}")),
        };
        value["healthy"] = Value::Bool(healthy.is_ok());
        match healthy {
            Ok(index) => table.push(format!("healthy: a leader confirmed its quorum at index {index}")),
            Err(why) => {
                table.push(format!("unhealthy: the cluster cannot commit: {why}"));
                value["error"] = Value::String(why.clone());
                unhealthy = Some(why);
            }
        }
    }
    ctx.print(aligned(&table), value);
    Ok(match unhealthy {
        Some(_) => Outcome::Exit(EXIT_ERROR),
        None => Outcome::Ok,
    })
}

/// Lines of tab-separated cells as columns padded to their widest cell; lines without a
/// tab are left as they are.
fn aligned(lines: &[String]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for line in lines.iter().filter(|l| l.contains('\t')) {
        for (i, cell) in line.split('\t').enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let pad = |line: &String| {
        if !line.contains('\t') {
            return line.clone();
        }
        let cells: Vec<String> =
            line.split('\t').enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        cells.join("  ").trim_end().to_string()
    };
    lines.iter().map(pad).collect::<Vec<_>>().join("\n")
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
    let (voters, learners) = ids(&membership);
    ctx.print(
        format!("membership at index {index}: voters {voters:?}, learners {learners:?}"),
        json!({"index": index, "voters": voters, "learners": learners}),
    );
    Ok(Outcome::Ok)
}

pub(crate) async fn transfer(ctx: Ctx, a: TransferArgs) -> Result<Outcome, CliError> {
    let term = ctx.client.transfer_leadership(NodeId(a.id)).await?;
    ctx.print(format!("node {} leads in term {term}", a.id), json!({"leader": a.id, "term": term}));
    Ok(Outcome::Ok)
}
