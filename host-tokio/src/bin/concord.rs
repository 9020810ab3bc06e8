//! `concord`: run a node (`serve`), a local 3-node cluster (`dev`), or talk to a cluster.
//!
//! Exit codes: 0 success; 1 error; 2 bad usage; 3 not acquired or condition not met (a
//! try-lock that found the lock held, a compare-and-set that did not match, a conditional
//! write refused); 4 timeout; 5 the session (and what it held) was lost while a command
//! ran under a lock. A command run under a lock, semaphore or election (`lock NAME --
//! CMD`) exits with CMD's own code once it ran, so a script that must tell CMD's codes
//! from Concord's should keep CMD's codes off 2–5 or use `--output json`, which reports
//! the grant on stderr before CMD starts (`lock`, `semaphore run`, `rwlock`; `elect`
//! prints it on stdout).

use clap::{Args, Parser, Subcommand, ValueEnum};
use concord_core::machine::kv::{KvError, PutMode, WatchFilter};
use concord_core::machine::{Error as MachineError, Etag};
use concord_core::raft::{Membership, MembershipChange};

use concord_core::{Consistency, NodeId};
use concord_tokio::client::{Concord, Endpoint, Error, Fresh, Options, Tripped};
use concord_tokio::config::{parse_peer, ServerConfig};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "Concord: fenced locks, semaphores, elections, counters, KV and watches on Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node of a cluster.
    Serve(Box<ServeArgs>),
    /// Run a 3-node cluster in this process on 127.0.0.1, for development.
    Dev(DevArgs),
    /// Hold a lock while a command runs; the command sees CONCORD_FENCE.
    Lock(ClientArgs<LockArgs>),
    /// Hold semaphore permits while a command runs, or manage a semaphore.
    Semaphore(ClientArgs<SemaphoreArgs>),
    /// Hold a read or write lock while a command runs.
    Rwlock(ClientArgs<RwLockArgs>),
    /// An atomic counter: get, set, incr, add, cas.
    Counter(ClientArgs<CounterArgs>),
    /// An atomic reference (bytes given as UTF-8 text): get, set, cas.
    Ref(ClientArgs<RefArgs>),
    /// A count-down latch: set, count-down, await, count.
    Latch(ClientArgs<LatchArgs>),
    /// Wait at a barrier until its parties arrive.
    Barrier(ClientArgs<BarrierArgs>),
    /// Campaign for leadership (holding it while a command runs), or observe an election.
    Elect(ClientArgs<ElectArgs>),
    /// The key-value store: get, put (conditional), delete, list.
    Kv(ClientArgs<KvArgs>),
    /// Print key-value changes as they happen.
    Watch(ClientArgs<WatchArgs>),
    /// Publish or subscribe to signals.
    Signal(ClientArgs<SignalArgs>),
    /// The status of every node.
    Status(ClientArgs<NoArgs>),
    /// Membership: add, remove, list.
    Member(ClientArgs<MemberArgs>),
    /// Hand leadership to another node.
    TransferLeader(ClientArgs<TransferArgs>),
    /// Save a node's latest snapshot to a file.
    Snapshot(SnapshotArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "CONCORD_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (unique, not 0).
    #[arg(long, env = "CONCORD_ID")]
    id: Option<u64>,
    /// The group id shared by every node and client of the cluster.
    #[arg(long, env = "CONCORD_GROUP")]
    group: Option<u64>,
    /// Address clients connect to.
    #[arg(long, env = "CONCORD_CLIENT_ADDR")]
    client_addr: Option<SocketAddr>,
    /// The client address given to clients and other nodes (HOST:PORT), when it differs
    /// from --client-addr (a wildcard bind, NAT, a DNS name). Clients learn every node
    /// from any one of them through it.
    #[arg(long, env = "CONCORD_ADVERTISE_CLIENT_ADDR")]
    advertise_client_addr: Option<String>,
    /// Address the other nodes connect to.
    #[arg(long, env = "CONCORD_PEER_ADDR")]
    peer_addr: Option<SocketAddr>,
    /// Address of the HTTP endpoint (/metrics, /status, status page).
    #[arg(long, env = "CONCORD_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Another node's peer address, as ID=HOST:PORT; repeat for each. On first start these
    /// ids and this node's are the initial voters.
    #[arg(long = "peer", env = "CONCORD_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    peers: Vec<(u64, SocketAddr)>,
    /// Join an existing cluster (after `concord member add ID`) instead of founding one.
    #[arg(long, env = "CONCORD_JOIN")]
    join: bool,
    /// Where the write-ahead log and snapshots live.
    #[arg(long, env = "CONCORD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Lower bound of the randomised election timeout, ms.
    #[arg(long, env = "CONCORD_ELECTION_TIMEOUT_MIN_MS")]
    election_timeout_min_ms: Option<u64>,
    /// Upper bound of the election timeout, ms.
    #[arg(long, env = "CONCORD_ELECTION_TIMEOUT_MAX_MS")]
    election_timeout_max_ms: Option<u64>,
    /// Leader heartbeat interval, ms (at most half the minimum election timeout).
    #[arg(long, env = "CONCORD_HEARTBEAT_INTERVAL_MS")]
    heartbeat_interval_ms: Option<u64>,
    /// Applied entries between snapshots.
    #[arg(long, env = "CONCORD_SNAPSHOT_THRESHOLD_ENTRIES")]
    snapshot_threshold_entries: Option<u64>,
    /// Largest frame accepted from a client or peer, bytes.
    #[arg(long, env = "CONCORD_FRAME_BYTES_MAX")]
    frame_bytes_max: Option<usize>,
}

#[derive(Args)]
struct DevArgs {
    /// Keep the nodes' data here (default: a temporary directory removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// First client port; nodes use PORT, PORT+1, PORT+2 for clients, +100 for peers and
    /// +200 for HTTP.
    #[arg(long, default_value_t = 7001)]
    port: u16,
}

#[derive(Args)]
struct ClientArgs<T: Args> {
    /// Client endpoints of the cluster: HOST:PORT or ID=HOST:PORT, comma-separated.
    #[arg(
        long,
        env = "CONCORD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
        global = true
    )]
    endpoints: Vec<Endpoint>,
    /// The cluster's group id.
    #[arg(long, env = "CONCORD_GROUP", default_value_t = 1, global = true)]
    group: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    output: Output,
    /// Session TTL, ms: what this command holds is released this long after it dies.
    #[arg(long, default_value_t = 10_000, global = true)]
    session_ttl_ms: u64,
    /// How reads are served: `linearizable` (the leader confirms it still leads with a
    /// quorum), `lease` (the leader trusts its lease, no round trip), or `stale` (any
    /// node answers from what it has applied).
    #[arg(long, value_enum, default_value_t = Reads::Linearizable, global = true)]
    consistency: Reads,
    /// How long to wait, ms, for any endpoint to answer before giving up (then every
    /// endpoint is named with why it failed).
    #[arg(long, default_value_t = 10_000, global = true)]
    connect_timeout_ms: u64,
    /// A TCP connection not established within this many ms has failed.
    #[arg(long, default_value_t = 2_000, global = true)]
    dial_timeout_ms: u64,
    #[command(flatten)]
    args: T,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Human,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Reads {
    Linearizable,
    Lease,
    Stale,
}

impl From<Reads> for Consistency {
    fn from(r: Reads) -> Self {
        match r {
            Reads::Linearizable => Self::Linearizable,
            Reads::Lease => Self::Lease,
            Reads::Stale => Self::Stale,
        }
    }
}

#[derive(Args)]
struct NoArgs {}

#[derive(Args)]
struct LockArgs {
    /// The lock.
    name: String,
    /// Give up after this long (exit 4); `0` tries once (exit 3 if held).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// The command to run while holding the lock.
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

#[derive(Args)]
struct SemaphoreArgs {
    #[command(subcommand)]
    action: SemaphoreAction,
}

#[derive(Subcommand)]
enum SemaphoreAction {
    /// Create it with PERMITS if it does not exist.
    Init {
        /// The semaphore.
        name: String,
        /// Permits.
        permits: u64,
    },
    /// Acquire PERMITS, run a command, release.
    Run {
        /// The semaphore.
        name: String,
        /// Permits to hold.
        #[arg(long, default_value_t = 1)]
        permits: u64,
        /// Give up after this long.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// The command.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Permits available.
    Available {
        /// The semaphore.
        name: String,
    },
}

#[derive(Args)]
struct RwLockArgs {
    /// The lock.
    name: String,
    /// Take it for writing (default: reading).
    #[arg(long)]
    write: bool,
    /// Give up after this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// The command to run while holding it.
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

#[derive(Args)]
struct CounterArgs {
    #[command(subcommand)]
    action: CounterAction,
}

#[derive(Subcommand)]
enum CounterAction {
    /// Print the value.
    Get {
        /// The counter.
        name: String,
    },
    /// Set the value; prints the previous one.
    Set {
        /// The counter.
        name: String,
        /// The value.
        #[arg(allow_hyphen_values = true)]
        value: i64,
    },
    /// Add one; prints the new value.
    Incr {
        /// The counter.
        name: String,
    },
    /// Add DELTA; prints the new value.
    Add {
        /// The counter.
        name: String,
        /// The amount.
        #[arg(allow_hyphen_values = true)]
        delta: i64,
    },
    /// Set NEW if the value is EXPECTED (exit 3 otherwise).
    Cas {
        /// The counter.
        name: String,
        /// Expected value.
        #[arg(allow_hyphen_values = true)]
        expected: i64,
        /// New value.
        #[arg(allow_hyphen_values = true)]
        new: i64,
    },
}

#[derive(Args)]
struct RefArgs {
    #[command(subcommand)]
    action: RefAction,
}

#[derive(Subcommand)]
enum RefAction {
    /// Print the value.
    Get {
        /// The reference.
        name: String,
    },
    /// Set the value.
    Set {
        /// The reference.
        name: String,
        /// The value.
        value: String,
    },
    /// Set NEW if the value is EXPECTED (exit 3 otherwise).
    Cas {
        /// The reference.
        name: String,
        /// Expected value.
        expected: String,
        /// New value.
        new: String,
    },
}

#[derive(Args)]
struct LatchArgs {
    #[command(subcommand)]
    action: LatchAction,
}

#[derive(Subcommand)]
enum LatchAction {
    /// Set the count if the latch is open (exit 3 if it is still counting).
    Set {
        /// The latch.
        name: String,
        /// The count.
        count: u64,
    },
    /// Count down by one; prints what is left.
    CountDown {
        /// The latch.
        name: String,
    },
    /// Wait until the count reaches zero.
    Await {
        /// The latch.
        name: String,
        /// Give up after this long (exit 4).
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Print the count.
    Count {
        /// The latch.
        name: String,
    },
}

#[derive(Args)]
struct BarrierArgs {
    /// The barrier.
    name: String,
    /// Parties that must arrive.
    #[arg(long)]
    parties: u32,
    /// Give up after this long (exit 4; the generation breaks).
    #[arg(long)]
    timeout_ms: Option<u64>,
}

#[derive(Args)]
struct ElectArgs {
    /// The election.
    name: String,
    /// The value to announce as leader.
    value: Option<String>,
    /// Print leadership changes instead of campaigning.
    #[arg(long)]
    observe: bool,
    /// Give up campaigning after this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// With --observe: stop after this many leadership reports.
    #[arg(long)]
    count: Option<u64>,
    /// Run this while leader, then resign (without it: lead until interrupted).
    #[arg(last = true)]
    cmd: Vec<String>,
}

#[derive(Args)]
struct KvArgs {
    #[command(subcommand)]
    action: KvAction,
}

#[derive(Subcommand)]
enum KvAction {
    /// Print a key's value.
    Get {
        /// The key.
        key: String,
        /// Print nothing new if the ETag still matches (exit 3).
        #[arg(long)]
        if_none_match: Option<u64>,
    },
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Only if the key does not exist (exit 3 otherwise).
        #[arg(long, conflicts_with = "if_match")]
        create_only: bool,
        /// Only if the key's ETag is this (exit 3 otherwise).
        #[arg(long)]
        if_match: Option<u64>,
        /// Expire the key after this long.
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
        /// Only if the key's ETag is this.
        #[arg(long)]
        if_match: Option<u64>,
    },
    /// List keys under a prefix.
    List {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
    },
}

#[derive(Args)]
struct WatchArgs {
    /// A key, or with --prefix a prefix, or with --pattern a `*`/`>` pattern.
    target: String,
    /// Watch every key starting with TARGET.
    #[arg(long, conflicts_with = "pattern")]
    prefix: bool,
    /// TARGET is a pattern of dot-separated tokens (`*` one token, `>` the rest).
    #[arg(long)]
    pattern: bool,
    /// Start from this revision (default: changes from now on).
    #[arg(long)]
    from: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Args)]
struct SignalArgs {
    #[command(subcommand)]
    action: SignalAction,
}

#[derive(Subcommand)]
enum SignalAction {
    /// Publish PAYLOAD on SUBJECT; prints how many received it.
    Publish {
        /// The subject.
        subject: String,
        /// The payload.
        payload: String,
    },
    /// Print signals matching PATTERN as they arrive.
    Subscribe {
        /// The subject pattern.
        pattern: String,
        /// Join this queue group (each signal goes to one member of the group).
        #[arg(long)]
        queue_group: Option<String>,
        /// Stop after this many signals.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Args)]
struct MemberArgs {
    #[command(subcommand)]
    action: MemberAction,
}

#[derive(Subcommand)]
enum MemberAction {
    /// Add node ID as a voter (start it with `serve --join` and its peers).
    Add {
        /// The node.
        id: u64,
        /// Add it as a learner (receives the log, does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Remove node ID.
    Remove {
        /// The node.
        id: u64,
    },
    /// List the members.
    List,
}

#[derive(Args)]
struct TransferArgs {
    /// The node to hand leadership to.
    id: u64,
}

#[derive(Args)]
struct SnapshotArgs {
    #[command(subcommand)]
    action: SnapshotAction,
}

#[derive(Subcommand)]
enum SnapshotAction {
    /// Save a node's latest snapshot to FILE: fetched from its HTTP endpoint (--from), or
    /// read from its data directory (--data-dir). The snapshot is decoded before it is
    /// written, so a saved file is a valid one.
    Save {
        /// Where to write it.
        file: PathBuf,
        /// The node's HTTP address (HOST:PORT).
        #[arg(long, required_unless_present = "data_dir", conflicts_with = "data_dir")]
        from: Option<SocketAddr>,
        /// The node's data directory (when the node runs on this machine, or is stopped).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// How a command ended.
enum Outcome {
    Ok,
    NotAcquired(String),
    Exit(u8),
}

const EXIT_ERROR: u8 = 1;
const EXIT_NOT_ACQUIRED: u8 = 3;
const EXIT_TIMEOUT: u8 = 4;
const EXIT_SESSION_LOST: u8 = 5;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONCORD_LOG").unwrap_or_else(|_| {
        let default =
            if matches!(cli.command, Command::Serve(_) | Command::Dev(_)) { "info" } else { "warn" };
        tracing_subscriber::EnvFilter::new(default)
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("concord: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::NotAcquired(why)) => {
            eprintln!("concord: {why}");
            ExitCode::from(EXIT_NOT_ACQUIRED)
        }
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("concord: {e}");
            let timeout = matches!(e, CliError::Client(Error::Machine(MachineError::Timeout)));
            ExitCode::from(if timeout { EXIT_TIMEOUT } else { EXIT_ERROR })
        }
    }
}

/// Everything a command can fail with.
#[derive(Debug)]
enum CliError {
    Client(Error),
    Other(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client(e) => write!(f, "{e}"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        Self::Client(e)
    }
}

impl From<String> for CliError {
    fn from(e: String) -> Self {
        Self::Other(e)
    }
}

async fn run(command: Command) -> Result<Outcome, CliError> {
    match command {
        Command::Serve(a) => serve(*a).await,
        Command::Dev(a) => dev(a).await,
        Command::Snapshot(a) => snapshot(a).await,
        Command::Lock(c) => with_client(c, lock).await,
        Command::Semaphore(c) => with_client(c, semaphore).await,
        Command::Rwlock(c) => with_client(c, rwlock).await,
        Command::Counter(c) => with_client(c, counter).await,
        Command::Ref(c) => with_client(c, reference).await,
        Command::Latch(c) => with_client(c, latch).await,
        Command::Barrier(c) => with_client(c, barrier).await,
        Command::Elect(c) => with_client(c, elect).await,
        Command::Kv(c) => with_client(c, kv).await,
        Command::Watch(c) => with_client(c, watch).await,
        Command::Signal(c) => with_client(c, signal).await,
        Command::Status(c) => with_client(c, status).await,
        Command::Member(c) => with_client(c, member).await,
        Command::TransferLeader(c) => with_client(c, transfer).await,
    }
}

/// What a client command gets: the connection and how to print.
struct Ctx {
    client: Concord,
    output: Output,
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

async fn with_client<T: Args, F, Fut>(c: ClientArgs<T>, f: F) -> Result<Outcome, CliError>
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

fn text(v: &Option<Vec<u8>>) -> String {
    v.as_deref().map_or_else(|| "(none)".into(), |b| String::from_utf8_lossy(b).into_owned())
}

/// Runs `cmd` with `env`, ending it if `lost` fires first: its exit code, or `None` when
/// the session (and what it held) was lost.
async fn run_while(
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
async fn release_after(
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
fn not_acquired(e: Error, tried: bool, what: String) -> Result<Outcome, CliError> {
    match e {
        Error::Machine(MachineError::Timeout) if tried => Ok(Outcome::NotAcquired(what)),
        e => Err(e.into()),
    }
}

async fn lock(ctx: Ctx, a: LockArgs) -> Result<Outcome, CliError> {
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

async fn semaphore(ctx: Ctx, a: SemaphoreArgs) -> Result<Outcome, CliError> {
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

async fn rwlock(ctx: Ctx, a: RwLockArgs) -> Result<Outcome, CliError> {
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

async fn counter(ctx: Ctx, a: CounterArgs) -> Result<Outcome, CliError> {
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

async fn reference(ctx: Ctx, a: RefArgs) -> Result<Outcome, CliError> {
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

async fn latch(ctx: Ctx, a: LatchArgs) -> Result<Outcome, CliError> {
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

async fn barrier(ctx: Ctx, a: BarrierArgs) -> Result<Outcome, CliError> {
    let barrier = ctx.client.barrier(&a.name, a.parties);
    let Tripped { generation, arrival } = barrier.wait(a.timeout_ms.map(Duration::from_millis)).await?;
    ctx.print(
        format!("tripped: generation {generation}, arrived {arrival} of {}", a.parties),
        json!({"barrier": a.name, "generation": generation, "arrival": arrival}),
    );
    Ok(Outcome::Ok)
}

async fn elect(ctx: Ctx, a: ElectArgs) -> Result<Outcome, CliError> {
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

fn print_leader(ctx: &Ctx, name: &str, l: Option<(u64, u64, &Vec<u8>)>) {
    match l {
        Some((session, fence, value)) => ctx.print(
            format!("{name}: {} (session {session}, fence {fence})", String::from_utf8_lossy(value)),
            json!({"election": name, "session": session, "fence": fence, "value": String::from_utf8_lossy(value)}),
        ),
        None => ctx.print(format!("{name}: no leader"), json!({"election": name, "leader": null})),
    }
}

/// A conditional write that found its condition false is "not acquired".
fn condition_failed<T>(r: Result<T, Error>, key: &str) -> Result<Result<T, Outcome>, CliError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Error::Machine(e @ MachineError::Kv(KvError::Exists { .. } | KvError::EtagMismatch { .. }))) => {
            Ok(Err(Outcome::NotAcquired(format!("{key}: {e}"))))
        }
        Err(e) => Err(e.into()),
    }
}

async fn kv(ctx: Ctx, a: KvArgs) -> Result<Outcome, CliError> {
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

async fn watch(ctx: Ctx, a: WatchArgs) -> Result<Outcome, CliError> {
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

async fn signal(ctx: Ctx, a: SignalArgs) -> Result<Outcome, CliError> {
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

async fn status(ctx: Ctx, _: NoArgs) -> Result<Outcome, CliError> {
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
fn ids(m: &Membership) -> (Vec<u64>, Vec<u64>) {
    (m.voters.iter().map(|v| v.0).collect(), m.learners.iter().map(|v| v.0).collect())
}

async fn member(ctx: Ctx, a: MemberArgs) -> Result<Outcome, CliError> {
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

async fn transfer(ctx: Ctx, a: TransferArgs) -> Result<Outcome, CliError> {
    let term = ctx.client.transfer_leadership(NodeId(a.id)).await?;
    ctx.print(format!("node {} leads in term {term}", a.id), json!({"leader": a.id, "term": term}));
    Ok(Outcome::Ok)
}

async fn snapshot(a: SnapshotArgs) -> Result<Outcome, CliError> {
    let SnapshotAction::Save { file, from, data_dir } = a.action;
    // The fetched bytes are written as they came, once they decode as a snapshot.
    let (snap, bytes): (concord_core::Snapshot, Vec<u8>) = match (from, data_dir) {
        (Some(addr), _) => {
            let bytes = http_get(addr, "/snapshot").await?;
            let snap = postcard::from_bytes(&bytes).map_err(|e| format!("{addr}: not a snapshot: {e}"))?;
            (snap, bytes)
        }
        (None, Some(dir)) => {
            let snap = concord_tokio::wal::Wal::read_snapshot(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .ok_or_else(|| format!("{}: no snapshot yet", dir.display()))?;
            let bytes = postcard::to_allocvec(&snap).map_err(|e| e.to_string())?;
            (snap, bytes)
        }
        (None, None) => return Err(CliError::Other("give --from HOST:PORT or --data-dir DIR".into())),
    };
    std::fs::write(&file, &bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    println!(
        "saved the snapshot at index {} (term {}) to {}",
        snap.meta.index,
        snap.meta.term,
        file.display()
    );
    Ok(Outcome::Ok)
}

/// How long `snapshot save --from` waits for the node's answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// A bare HTTP/1.0 GET against a node's own endpoint; the body of a 200 answer, within
/// [`HTTP_TIMEOUT`].
async fn http_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, CliError> {
    tokio::time::timeout(HTTP_TIMEOUT, http_get_unbounded(addr, path))
        .await
        .map_err(|_| CliError::Other(format!("{addr}{path}: no answer within {HTTP_TIMEOUT:?}")))?
}

async fn http_get_unbounded(addr: SocketAddr, path: &str) -> Result<Vec<u8>, CliError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fail = |e: &dyn std::fmt::Display| CliError::Other(format!("{addr}{path}: {e}"));
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| fail(&e))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| fail(&e))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.map_err(|e| fail(&e))?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| fail(&"no HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.split_off(split + 4);
    if head.split_whitespace().nth(1) != Some("200") {
        let status = head.lines().next().unwrap_or_default().to_string();
        return Err(fail(&format!("{status}: {}", String::from_utf8_lossy(&body))));
    }
    Ok(body)
}

async fn serve(a: ServeArgs) -> Result<Outcome, CliError> {
    let mut signals = Signals::catch();
    let mut cfg = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            ServerConfig::from_toml(&text).map_err(|e| e.to_string())?
        }
        None => ServerConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { cfg.$f = v; } )* };
    }
    set!(
        id,
        group,
        client_addr,
        peer_addr,
        http_addr,
        data_dir,
        election_timeout_min_ms,
        election_timeout_max_ms
    );
    set!(heartbeat_interval_ms, snapshot_threshold_entries, frame_bytes_max);
    if !a.peers.is_empty() {
        cfg.peers = a.peers.iter().copied().collect();
    }
    cfg.join |= a.join;
    if a.advertise_client_addr.is_some() {
        cfg.advertise_client_addr = a.advertise_client_addr.clone();
    }
    let mut node = concord_tokio::server::start(cfg).await.map_err(|e| e.to_string())?;
    tokio::select! {
        stopped = signals.recv() => {
            tracing::info!(signal = stopped, "shutting down");
            node.shutdown().await.map_err(|e| e.to_string())?;
        }
        // The node stopped by itself: a fatal error, reported and turned into exit 1.
        r = node.finished() => r.map_err(|e| e.to_string())?,
    }
    Ok(Outcome::Ok)
}

/// Resolves when the first of `nodes` stops by itself.
async fn first_stopped(
    nodes: &mut [concord_tokio::server::NodeHandle],
) -> Result<(), concord_tokio::server::ServerError> {
    use std::future::Future;
    use std::task::Poll;
    let mut waits: Vec<_> = nodes.iter_mut().map(|n| Box::pin(n.finished())).collect();
    std::future::poll_fn(|cx| {
        for w in &mut waits {
            if let Poll::Ready(r) = w.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    })
    .await
}

/// Ctrl-C and SIGTERM, caught from the moment this is made: a signal that arrives while
/// a node is still starting is kept, and stops it once started, instead of killing the
/// process on the spot.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn catch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for the next signal; names it.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if self.term.is_none() && self.int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return "interrupt";
            }
            tokio::select! {
                () = next(&mut self.int) => "interrupt",
                () = next(&mut self.term) => "terminate",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupt"
        }
    }
}

async fn dev(a: DevArgs) -> Result<Outcome, CliError> {
    let mut signals = Signals::catch();
    let temp;
    let root = match a.data_dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new().prefix("concord-dev-").tempdir().map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
    };
    let addr = |offset: u16| SocketAddr::from(([127, 0, 0, 1], a.port + offset));
    let peers: std::collections::BTreeMap<u64, SocketAddr> =
        (0..3).map(|i| (i as u64 + 1, addr(100 + i))).collect();
    let mut nodes = Vec::new();
    for i in 0..3u16 {
        let id = u64::from(i) + 1;
        let cfg = ServerConfig {
            id,
            client_addr: addr(i),
            peer_addr: addr(100 + i),
            http_addr: addr(200 + i),
            peers: peers.clone(),
            data_dir: root.join(format!("node-{id}")),
            ..ServerConfig::default()
        };
        nodes.push(concord_tokio::server::start(cfg).await.map_err(|e| e.to_string())?);
    }
    let endpoints: Vec<String> = nodes.iter().map(|n| format!("{}={}", n.id, n.client_addr)).collect();
    println!("Concord dev cluster: 3 nodes, data in {}", root.display());
    for n in &nodes {
        println!(
            "  node {}: clients {}  peers {}  status http://{}/",
            n.id, n.client_addr, n.peer_addr, n.http_addr
        );
    }
    println!("Try:  concord counter incr visits --endpoints {}", endpoints.join(","));
    println!("      (the default endpoints already point here)   Ctrl-C stops the cluster.");
    let any_stopped = first_stopped(&mut nodes);
    tokio::select! {
        stopped = signals.recv() => tracing::info!(signal = stopped, "stopping the dev cluster"),
        r = any_stopped => tracing::error!(error = ?r.err().map(|e| e.to_string()), "a node stopped; stopping the dev cluster"),
    }
    for n in nodes {
        n.shutdown().await.map_err(|e| e.to_string())?;
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_parses_with_the_global_client_flags() {
        for args in [
            &["concord", "signal", "subscribe", "a.*", "--queue-group", "g", "--group", "3"][..],
            &["concord", "counter", "--endpoints", "1=127.0.0.1:1", "incr", "n", "--output", "json"],
            &["concord", "lock", "L", "--timeout-ms", "0", "--", "sh", "-c", "true"],
            &["concord", "kv", "put", "k", "v", "--if-match", "3", "--ttl-ms", "10"],
            &["concord", "elect", "E", "--observe", "--count", "2"],
        ] {
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
