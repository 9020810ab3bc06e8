//! The command line: every subcommand, flag and default, as clap reads them.

use clap::{Args, Parser, Subcommand, ValueEnum};

use concord_core::machine::long::LongFn;
use concord_core::machine::reference::RefFn;
use concord_core::Consistency;
use concord_tokio::client::Endpoint;
use concord_tokio::config::{parse_peer, resolve};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "Concord: fenced locks, semaphores, elections, counters, KV and watches on Raft"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run one node of a cluster.
    #[command(after_help = serve_defaults())]
    Serve(Box<ServeArgs>),
    /// Run a 3-node cluster in this process on 127.0.0.1, for development.
    Dev(DevArgs),
    /// Hold one or more locks (atomically) while a command runs, or until interrupted;
    /// the command sees CONCORD_FENCE.
    Lock(ClientArgs<LockArgs>),
    /// Inspect locks: list, show one, force-unlock.
    Locks(ClientArgs<LocksArgs>),
    /// Hold semaphore permits while a command runs, or manage a semaphore.
    Semaphore(ClientArgs<SemaphoreArgs>),
    /// Hold a read or write lock while a command runs, or inspect one.
    Rwlock(ClientArgs<RwLockArgs>),
    /// An atomic counter: get, set, incr, decr, add, get-and-add, cas, alter, apply.
    Counter(ClientArgs<CounterArgs>),
    /// An atomic reference (bytes given as UTF-8 text): get, set, get-and-set, cas,
    /// contains, is-null, clear, alter, apply.
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
    /// Every member's status as a table, each node asked directly (works without a
    /// leader or quorum); `--health` exits 1 unless the cluster can commit.
    Status(ClientArgs<StatusArgs>),
    /// Membership: add, remove, list.
    Member(ClientArgs<MemberArgs>),
    /// Hand leadership to another node.
    TransferLeader(ClientArgs<TransferArgs>),
    /// Save a snapshot of a cluster's state to a file, or seed a new cluster from one.
    Snapshot(SnapshotArgs),
    /// Join a serial line (a microcontroller's client or replica) to the cluster.
    Bridge(crate::bridge_cmd::BridgeArgs),
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "CONCORD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// This node's id (unique, not 0).
    #[arg(long, env = "CONCORD_ID")]
    pub(crate) id: Option<u64>,
    /// The group id shared by every node and client of the cluster.
    #[arg(long, env = "CONCORD_GROUP")]
    pub(crate) group: Option<u64>,
    /// Address clients connect to.
    #[arg(long, env = "CONCORD_CLIENT_ADDR", value_parser = resolve)]
    pub(crate) client_addr: Option<SocketAddr>,
    /// The client address given to clients and other nodes (HOST:PORT), when it differs
    /// from --client-addr (a wildcard bind, NAT, a DNS name). Clients learn every node
    /// from any one of them through it.
    #[arg(long, env = "CONCORD_ADVERTISE_CLIENT_ADDR")]
    pub(crate) advertise_client_addr: Option<String>,
    /// Address the other nodes connect to.
    #[arg(long, env = "CONCORD_PEER_ADDR", value_parser = resolve)]
    pub(crate) peer_addr: Option<SocketAddr>,
    /// Address of the HTTP endpoint (/metrics, /status, status page).
    #[arg(long, env = "CONCORD_HTTP_ADDR", value_parser = resolve)]
    pub(crate) http_addr: Option<SocketAddr>,
    /// Another node's peer address, as ID=HOST:PORT; repeat for each. On first start these
    /// ids and this node's are the initial voters.
    #[arg(long = "peer", env = "CONCORD_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    pub(crate) peers: Vec<(u64, SocketAddr)>,
    /// Join an existing cluster (after `concord member add ID`) instead of founding one.
    #[arg(long, env = "CONCORD_JOIN")]
    pub(crate) join: bool,
    /// Where the write-ahead log and snapshots live.
    #[arg(long, env = "CONCORD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Lower bound of the randomised election timeout, ms.
    #[arg(long, env = "CONCORD_ELECTION_TIMEOUT_MIN_MS")]
    pub(crate) election_timeout_min_ms: Option<u64>,
    /// Upper bound of the election timeout, ms.
    #[arg(long, env = "CONCORD_ELECTION_TIMEOUT_MAX_MS")]
    pub(crate) election_timeout_max_ms: Option<u64>,
    /// Leader heartbeat interval, ms (at most half the minimum election timeout).
    #[arg(long, env = "CONCORD_HEARTBEAT_INTERVAL_MS")]
    pub(crate) heartbeat_interval_ms: Option<u64>,
    /// Applied entries between snapshots.
    #[arg(long, env = "CONCORD_SNAPSHOT_THRESHOLD_ENTRIES")]
    pub(crate) snapshot_threshold_entries: Option<u64>,
    /// Largest frame accepted from a client or peer, bytes.
    #[arg(long, env = "CONCORD_FRAME_BYTES_MAX")]
    pub(crate) frame_bytes_max: Option<usize>,
}

/// The first client port of `concord dev`, which the client's default endpoints name.
pub(crate) const DEFAULT_DEV_PORT: u16 = 7001;

#[derive(Args)]
pub(crate) struct DevArgs {
    /// Keep the nodes' data here (default: a temporary directory removed on exit).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// First client port; nodes use PORT, PORT+1, PORT+2 for clients, +100 for peers and
    /// +200 for HTTP.
    #[arg(long, default_value_t = DEFAULT_DEV_PORT, value_parser = clap::value_parser!(u16).range(1..=65_333))]
    pub(crate) port: u16,
}

#[derive(Args)]
pub(crate) struct ClientArgs<T: Args> {
    /// Client endpoints of the cluster: HOST:PORT or ID=HOST:PORT, comma-separated.
    #[arg(
        long,
        env = "CONCORD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003",
        global = true
    )]
    pub(crate) endpoints: Vec<Endpoint>,
    /// The cluster's group id.
    #[arg(long, env = "CONCORD_GROUP", default_value_t = 1, global = true)]
    pub(crate) group: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    pub(crate) output: Output,
    /// Session TTL, ms: what this command holds is released this long after it dies.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub(crate) session_ttl_ms: u64,
    /// How reads are served: `linearizable` (the leader confirms it still leads with a
    /// quorum), `lease` (the leader trusts its lease, no round trip), or `stale` (any
    /// node answers from what it has applied).
    #[arg(long, value_enum, default_value_t = Reads::Linearizable, global = true)]
    pub(crate) consistency: Reads,
    /// How long to wait, ms, for any endpoint to answer before giving up (then every
    /// endpoint is named with why it failed).
    #[arg(long, default_value_t = 10_000, global = true)]
    pub(crate) connect_timeout_ms: u64,
    /// A TCP connection not established within this many ms has failed.
    #[arg(long, default_value_t = 2_000, global = true)]
    pub(crate) dial_timeout_ms: u64,
    #[command(flatten)]
    pub(crate) args: T,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Human,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Reads {
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
pub(crate) struct StatusArgs {
    /// Also check that the cluster can commit (a leader confirms its leadership with a
    /// quorum); exit 1 if it cannot within --health-timeout-ms.
    #[arg(long)]
    pub(crate) health: bool,
    /// How long the health check may take, ms.
    #[arg(long, default_value_t = 3_000)]
    pub(crate) health_timeout_ms: u64,
}

#[derive(Args)]
pub(crate) struct LockArgs {
    /// The lock; several names take them all at once or none (one fence for all).
    #[arg(required = true)]
    pub(crate) names: Vec<String>,
    /// Give up after this long (exit 4); `0` tries once (exit 3 if held).
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// Take a place in the lock's queue first and report it (`queued at position N`)
    /// before waiting for the grant. One name only.
    #[arg(long)]
    pub(crate) enqueue: bool,
    /// The command to run while holding the lock; without one, the lock is held until
    /// Ctrl-C (SIGINT), SIGTERM or SIGHUP.
    #[arg(last = true)]
    pub(crate) cmd: Vec<String>,
}

#[derive(Args)]
pub(crate) struct LocksArgs {
    #[command(subcommand)]
    pub(crate) action: LocksAction,
}

#[derive(Subcommand)]
pub(crate) enum LocksAction {
    /// Every lock held or waited for, in name order, from START on.
    List {
        /// The first name to list.
        #[arg(long, default_value = "")]
        start: String,
    },
    /// Whether a lock is held, by which session, with which fence, how many holds, and
    /// who waits (exit 3 if it is free).
    Show {
        /// The lock.
        name: String,
    },
    /// Release a lock whoever holds it, every hold (an operator's tool; the holder's next
    /// release fails, and the next grant's fence is larger).
    ForceUnlock {
        /// The lock.
        name: String,
    },
}

#[derive(Args)]
pub(crate) struct SemaphoreArgs {
    #[command(subcommand)]
    pub(crate) action: SemaphoreAction,
}

#[derive(Subcommand)]
pub(crate) enum SemaphoreAction {
    /// Create it with PERMITS if it does not exist; prints `created` or `exists`.
    Init {
        /// The semaphore.
        name: String,
        /// Permits.
        permits: u64,
        /// Permits belong to no session: taken with `take`, they stay taken until
        /// `release` gives them back, from any process.
        #[arg(long)]
        sessionless: bool,
    },
    /// Acquire PERMITS and hold them while a command runs, or until interrupted.
    Run {
        /// The semaphore.
        name: String,
        /// Permits to hold.
        #[arg(long, default_value_t = 1)]
        permits: u64,
        /// Give up after this long (exit 4); `0` tries once (exit 3).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// The command; without one, the permits are held until Ctrl-C, SIGTERM or
        /// SIGHUP.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Take PERMITS of a sessionless semaphore; they stay taken after this exits.
    Take {
        /// The semaphore.
        name: String,
        /// Permits to take.
        #[arg(long, default_value_t = 1)]
        permits: u64,
        /// Give up after this long (exit 4); `0` tries once (exit 3).
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Give back PERMITS taken from a sessionless semaphore.
    Release {
        /// The semaphore.
        name: String,
        /// Permits to give back.
        #[arg(long, default_value_t = 1)]
        permits: u64,
    },
    /// Take every available permit of a sessionless semaphore; prints how many.
    Drain {
        /// The semaphore.
        name: String,
    },
    /// Add PERMITS to the pool.
    Increase {
        /// The semaphore.
        name: String,
        /// Permits to add.
        permits: u64,
    },
    /// Remove PERMITS from the pool (what is available may go below zero).
    Reduce {
        /// The semaphore.
        name: String,
        /// Permits to remove.
        permits: u64,
    },
    /// Permits available.
    Available {
        /// The semaphore.
        name: String,
    },
}

#[derive(Args)]
pub(crate) struct RwLockArgs {
    #[command(subcommand)]
    pub(crate) action: RwLockAction,
}

#[derive(Subcommand)]
pub(crate) enum RwLockAction {
    /// Hold it for reading (shared) while a command runs, or until interrupted.
    Read(RwHoldArgs),
    /// Hold it for writing (exclusive) while a command runs, or until interrupted.
    Write(RwHoldArgs),
    /// Readers holding it and whether it is write-locked.
    Status {
        /// The lock.
        name: String,
    },
}

#[derive(Args)]
pub(crate) struct RwHoldArgs {
    /// The lock.
    pub(crate) name: String,
    /// Give up after this long (exit 4); `0` tries once (exit 3).
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// The command to run while holding it; without one, it is held until Ctrl-C,
    /// SIGTERM or SIGHUP.
    #[arg(last = true)]
    pub(crate) cmd: Vec<String>,
}

#[derive(Args)]
pub(crate) struct CounterArgs {
    #[command(subcommand)]
    pub(crate) action: CounterAction,
}

#[derive(Subcommand)]
pub(crate) enum CounterAction {
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
    /// Subtract one; prints the new value.
    Decr {
        /// The counter.
        name: String,
    },
    /// Add DELTA; prints the previous value.
    GetAndAdd {
        /// The counter.
        name: String,
        /// The amount.
        #[arg(allow_hyphen_values = true)]
        delta: i64,
    },
    /// Replace the value with FN of it; prints the new value (with --previous, the old).
    /// FN: add:N, mul:N, min:N, max:N, and:N, or:N, xor:N, neg, set:N.
    Alter {
        /// The counter.
        name: String,
        /// The function.
        #[arg(value_parser = parse_long_fn, allow_hyphen_values = true)]
        function: LongFn,
        /// Print the value before the change.
        #[arg(long)]
        previous: bool,
    },
    /// Print FN of the value without changing it (FN as for `alter`).
    Apply {
        /// The counter.
        name: String,
        /// The function.
        #[arg(value_parser = parse_long_fn, allow_hyphen_values = true)]
        function: LongFn,
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
pub(crate) struct RefArgs {
    #[command(subcommand)]
    pub(crate) action: RefAction,
}

#[derive(Subcommand)]
pub(crate) enum RefAction {
    /// Print the value (exit 3 if it has none).
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
    /// Set the value; prints the previous one.
    GetAndSet {
        /// The reference.
        name: String,
        /// The value.
        value: String,
    },
    /// Set NEW if the value is EXPECTED (exit 3 otherwise). `--expected-none`: only if it
    /// has no value; `--new-none`: clear it. Values not given as flags are positional,
    /// EXPECTED first.
    Cas {
        /// The reference.
        name: String,
        /// EXPECTED then NEW, less those given as `--expected-none` / `--new-none`.
        #[arg(num_args = 0..=2)]
        values: Vec<String>,
        /// Expect no value.
        #[arg(long)]
        expected_none: bool,
        /// Clear the value instead of setting one.
        #[arg(long)]
        new_none: bool,
    },
    /// Whether the value is VALUE (exit 3 if not).
    Contains {
        /// The reference.
        name: String,
        /// The value.
        value: String,
    },
    /// Whether it has no value (exit 3 if it has one).
    IsNull {
        /// The reference.
        name: String,
    },
    /// Remove the value.
    Clear {
        /// The reference.
        name: String,
    },
    /// Replace the value with FN of it; prints the new value (with --previous, the old).
    /// FN: append:TEXT, prepend:TEXT, truncate:N, reverse, clear, set:TEXT.
    Alter {
        /// The reference.
        name: String,
        /// The function.
        #[arg(value_parser = parse_ref_fn)]
        function: RefFn,
        /// Print the value before the change.
        #[arg(long)]
        previous: bool,
    },
    /// Print FN of the value without changing it (FN as for `alter`).
    Apply {
        /// The reference.
        name: String,
        /// The function.
        #[arg(value_parser = parse_ref_fn)]
        function: RefFn,
    },
}

#[derive(Args)]
pub(crate) struct LatchArgs {
    #[command(subcommand)]
    pub(crate) action: LatchAction,
}

#[derive(Subcommand)]
pub(crate) enum LatchAction {
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
pub(crate) struct BarrierArgs {
    /// The barrier.
    pub(crate) name: String,
    /// Parties that must arrive.
    #[arg(long)]
    pub(crate) parties: u32,
    /// Give up after this long (exit 4; the generation breaks).
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
}

#[derive(Args)]
pub(crate) struct ElectArgs {
    /// The election.
    pub(crate) name: String,
    /// The value to announce as leader.
    pub(crate) value: Option<String>,
    /// Print leadership changes instead of campaigning.
    #[arg(long, conflicts_with = "leader")]
    pub(crate) observe: bool,
    /// Print the current leader and exit (exit 3 if there is none).
    #[arg(long)]
    pub(crate) leader: bool,
    /// While leading without a command: announce each line read from stdin as the new
    /// value (proclaim); resign at the end of stdin.
    #[arg(long, conflicts_with_all = ["observe", "leader"])]
    pub(crate) proclaim_stdin: bool,
    /// Give up campaigning after this long.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// With --observe: stop after this many leadership reports.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Run this while leader, then resign (without it: lead until Ctrl-C, SIGTERM or
    /// SIGHUP, then resign).
    #[arg(last = true)]
    pub(crate) cmd: Vec<String>,
}

#[derive(Args)]
pub(crate) struct KvArgs {
    #[command(subcommand)]
    pub(crate) action: KvAction,
}

#[derive(Subcommand)]
pub(crate) enum KvAction {
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
    /// Delete a key (exit 3 if it does not exist or its ETag does not match).
    Delete {
        /// The key.
        key: String,
        /// Only if the key's ETag is this.
        #[arg(long)]
        if_match: Option<u64>,
    },
    /// Copy FROM's value to TO; prints TO's new ETag (exit 3 if FROM is missing, or with
    /// --if-absent if TO exists).
    Copy {
        /// The source key.
        from: String,
        /// The target key.
        to: String,
        /// Only if TO does not exist.
        #[arg(long)]
        if_absent: bool,
    },
    /// Move FROM's value to TO (FROM is deleted); prints TO's new ETag (exit 3 as for
    /// copy).
    Rename {
        /// The source key.
        from: String,
        /// The target key.
        to: String,
        /// Only if TO does not exist.
        #[arg(long)]
        if_absent: bool,
    },
    /// List keys under a prefix: key, ETag and value, one per line.
    List {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
        /// Keys and ETags only, without values.
        #[arg(long)]
        keys_only: bool,
    },
}

#[derive(Args)]
pub(crate) struct WatchArgs {
    /// A key, or with --prefix a prefix, or with --pattern a `*`/`>` pattern.
    pub(crate) target: String,
    /// Watch every key starting with TARGET.
    #[arg(long, conflicts_with = "pattern")]
    pub(crate) prefix: bool,
    /// TARGET is a pattern of dot-separated tokens (`*` one token, `>` the rest).
    #[arg(long)]
    pub(crate) pattern: bool,
    /// Start from this revision (default: changes from now on).
    #[arg(long)]
    pub(crate) from: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    pub(crate) count: Option<u64>,
}

#[derive(Args)]
pub(crate) struct SignalArgs {
    #[command(subcommand)]
    pub(crate) action: SignalAction,
}

#[derive(Subcommand)]
pub(crate) enum SignalAction {
    /// Publish PAYLOAD on SUBJECT; prints how many subscribers it was given to.
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
pub(crate) struct MemberArgs {
    #[command(subcommand)]
    pub(crate) action: MemberAction,
}

#[derive(Subcommand)]
pub(crate) enum MemberAction {
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
pub(crate) struct TransferArgs {
    /// The node to hand leadership to.
    pub(crate) id: u64,
}

#[derive(Args)]
pub(crate) struct SnapshotArgs {
    #[command(subcommand)]
    pub(crate) action: SnapshotAction,
}

#[derive(Subcommand)]
pub(crate) enum SnapshotAction {
    /// Save a snapshot to FILE: taken now by a running node (--from its HTTP address), or
    /// the latest one a node stored (--data-dir, for a stopped node). The snapshot is
    /// decoded before it is written, so a saved file is a valid one.
    Save {
        /// Where to write it.
        file: PathBuf,
        /// The node's HTTP address (HOST:PORT); it takes a snapshot of what it applied.
        #[arg(long, required_unless_present = "data_dir", conflicts_with = "data_dir", value_parser = resolve)]
        from: Option<SocketAddr>,
        /// The node's data directory: its latest stored snapshot (taken every
        /// snapshot_threshold_entries entries).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Prepare DATA_DIR for one member of a new cluster seeded from the snapshot in FILE:
    /// run it for every member (same FILE and --voters), then start each with `concord
    /// serve --data-dir DATA_DIR` and its peers. Locks, fences, counters, keys and the
    /// rest carry over; fences go on increasing; the old cluster's sessions expire.
    Restore {
        /// The saved snapshot.
        file: PathBuf,
        /// The new member's data directory (must not hold a node's state).
        #[arg(long)]
        data_dir: PathBuf,
        /// The new cluster's voters, by id, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        voters: Vec<u64>,
        /// The cluster's settings file, for its [limits] (default limits otherwise).
        #[arg(long, env = "CONCORD_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Every setting of `concord serve` with its default, as the TOML file spells it.
fn serve_defaults() -> String {
    let defaults = toml::to_string(&concord_tokio::config::ServerConfig::default())
        .unwrap_or_else(|e| format!("(cannot show the defaults: {e})\n"));
    format!(
        "Every setting and its default, as keys of the --config TOML file (flags and \
         CONCORD_* variables override the file; [limits] must be the same on every \
         node):\n\n{}",
        defaults.trim_end()
    )
}

/// A counter function: `add:N`, `mul:N`, `min:N`, `max:N`, `and:N`, `or:N`, `xor:N`,
/// `neg`, `set:N`.
pub(crate) fn parse_long_fn(s: &str) -> Result<LongFn, String> {
    let (name, arg) = s.split_once(':').unwrap_or((s, ""));
    let n = || arg.parse::<i64>().map_err(|e| format!("{name}:N needs a 64-bit integer N ({e})"));
    Ok(match name {
        "add" => LongFn::Add(n()?),
        "mul" => LongFn::Mul(n()?),
        "min" => LongFn::Min(n()?),
        "max" => LongFn::Max(n()?),
        "and" => LongFn::And(n()?),
        "or" => LongFn::Or(n()?),
        "xor" => LongFn::Xor(n()?),
        "set" => LongFn::Set(n()?),
        "neg" if arg.is_empty() => LongFn::Neg,
        _ => {
            return Err(format!(
            "unknown function {s:?}: expected add:N, mul:N, min:N, max:N, and:N, or:N, xor:N, neg or set:N"
        ))
        }
    })
}

/// A reference function: `append:TEXT`, `prepend:TEXT`, `truncate:N`, `reverse`,
/// `clear`, `set:TEXT`.
pub(crate) fn parse_ref_fn(s: &str) -> Result<RefFn, String> {
    let (name, arg) = s.split_once(':').map_or((s, None), |(n, a)| (n, Some(a)));
    let text =
        || arg.map(|a| a.as_bytes().to_vec()).ok_or_else(|| format!("{name} needs a value: {name}:TEXT"));
    Ok(match (name, arg) {
        ("append", _) => RefFn::Append(text()?),
        ("prepend", _) => RefFn::Prepend(text()?),
        ("set", _) => RefFn::Set(text()?),
        ("truncate", Some(n)) => RefFn::Truncate(n.parse().map_err(|e| format!("truncate:N needs a length N ({e})"))?),
        ("reverse", None) => RefFn::Reverse,
        ("clear", None) => RefFn::Clear,
        _ => return Err(format!("unknown function {s:?}: expected append:TEXT, prepend:TEXT, truncate:N, reverse, clear or set:TEXT")),
    })
}
