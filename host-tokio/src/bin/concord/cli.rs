//! The command line: every subcommand, flag and default, as clap reads them.

use clap::{Args, Parser, Subcommand, ValueEnum};

use concord_core::Consistency;
use concord_tokio::client::Endpoint;
use concord_tokio::config::parse_peer;
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
    #[arg(long, env = "CONCORD_CLIENT_ADDR")]
    pub(crate) client_addr: Option<SocketAddr>,
    /// The client address given to clients and other nodes (HOST:PORT), when it differs
    /// from --client-addr (a wildcard bind, NAT, a DNS name). Clients learn every node
    /// from any one of them through it.
    #[arg(long, env = "CONCORD_ADVERTISE_CLIENT_ADDR")]
    pub(crate) advertise_client_addr: Option<String>,
    /// Address the other nodes connect to.
    #[arg(long, env = "CONCORD_PEER_ADDR")]
    pub(crate) peer_addr: Option<SocketAddr>,
    /// Address of the HTTP endpoint (/metrics, /status, status page).
    #[arg(long, env = "CONCORD_HTTP_ADDR")]
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
pub(crate) struct NoArgs {}

#[derive(Args)]
pub(crate) struct LockArgs {
    /// The lock.
    pub(crate) name: String,
    /// Give up after this long (exit 4); `0` tries once (exit 3 if held).
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// The command to run while holding the lock.
    #[arg(last = true, required = true)]
    pub(crate) cmd: Vec<String>,
}

#[derive(Args)]
pub(crate) struct SemaphoreArgs {
    #[command(subcommand)]
    pub(crate) action: SemaphoreAction,
}

#[derive(Subcommand)]
pub(crate) enum SemaphoreAction {
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
pub(crate) struct RwLockArgs {
    /// The lock.
    pub(crate) name: String,
    /// Take it for writing (default: reading).
    #[arg(long)]
    pub(crate) write: bool,
    /// Give up after this long.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// The command to run while holding it.
    #[arg(last = true, required = true)]
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
    #[arg(long)]
    pub(crate) observe: bool,
    /// Give up campaigning after this long.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// With --observe: stop after this many leadership reports.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Run this while leader, then resign (without it: lead until interrupted).
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
