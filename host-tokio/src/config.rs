//! What one `concord serve` node runs with: read from a TOML file, then environment
//! variables and flags (in `bin/concord.rs`), over these defaults.

use concord_core::machine::Limits;
use concord_core::server::ServeLimits;
use concord_core::setup::{Bootstrap, NodeSetup};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Configuration of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// This node's id: unique in the group, never 0.
    pub id: u64,
    /// The Raft group id; every node and client of a cluster uses the same one.
    pub group: u64,
    /// Where clients connect (in a file, `HOST:PORT` with a host name or an address).
    #[serde(deserialize_with = "de_addr")]
    pub client_addr: SocketAddr,
    /// The client address told to clients and other nodes, `HOST:PORT` (a name or
    /// address clients can reach); by default the address `client_addr` is bound to.
    pub advertise_client_addr: Option<String>,
    /// Where the other nodes connect.
    #[serde(deserialize_with = "de_addr")]
    pub peer_addr: SocketAddr,
    /// The HTTP endpoint: `/metrics`, `/status` and the status page.
    #[serde(deserialize_with = "de_addr")]
    pub http_addr: SocketAddr,
    /// Peer addresses of the other nodes by id. On first start, these ids and this node's
    /// form the initial voters (unless `join` is set). Host names are resolved when the
    /// node starts.
    #[serde(deserialize_with = "de_peers")]
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Start as a new member of an existing cluster (added with `concord member add`)
    /// instead of bootstrapping one. Ignored once the data directory holds state.
    pub join: bool,
    /// The node's write-ahead log and snapshots.
    pub data_dir: PathBuf,
    /// Lower bound of the randomised election timeout, ms.
    pub election_timeout_min_ms: u64,
    /// Upper bound (exclusive) of the election timeout, ms.
    pub election_timeout_max_ms: u64,
    /// Leader heartbeat interval, ms.
    pub heartbeat_interval_ms: u64,
    /// Applied entries between snapshots (after which the log is truncated).
    pub snapshot_threshold_entries: u64,
    /// Largest frame accepted from a client or peer, bytes.
    pub frame_bytes_max: usize,
    /// Client connections open at once; more are refused.
    pub client_connections_max: usize,
    /// Messages queued for one slow client before its connection is closed.
    pub client_queue_max: usize,
    /// Watches and election observers per client connection.
    pub streams_per_connection_max: u32,
    /// WAL segment size before rolling to a new file, bytes.
    pub wal_segment_bytes_max: u64,
    /// Bounds of the state machine; must be the same on every node of the group.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            id: 1,
            group: 1,
            client_addr: SocketAddr::from(([127, 0, 0, 1], 7001)),
            advertise_client_addr: None,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 7101)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7201)),
            peers: BTreeMap::new(),
            join: false,
            data_dir: PathBuf::from("concord-data"),
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            heartbeat_interval_ms: 50,
            snapshot_threshold_entries: 10_000,
            frame_bytes_max: 4 << 20,
            client_connections_max: 10_000,
            client_queue_max: 4_096,
            streams_per_connection_max: 64,
            wal_segment_bytes_max: 64 << 20,
            limits: Limits::default(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ServerConfig {
    /// Reads a TOML file; fields it leaves out keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(format!("config file: {e}")))
    }

    /// The core's setup of this node: Raft settings, state machine and client limits.
    pub fn setup(&self) -> NodeSetup {
        let mut c =
            concord_core::Config::new(concord_core::NodeId(self.id), concord_core::GroupId(self.group));
        c.election_timeout_min_us = self.election_timeout_min_ms * 1_000;
        c.election_timeout_max_us = self.election_timeout_max_ms * 1_000;
        c.heartbeat_interval_us = self.heartbeat_interval_ms * 1_000;
        c.snapshot_threshold_entries = self.snapshot_threshold_entries;
        let serve = ServeLimits {
            streams_per_connection_max: self.streams_per_connection_max,
            frame_bytes_max: self.frame_bytes_max,
        };
        NodeSetup::new(c, self.limits.clone(), serve)
    }

    /// How this node starts when its data directory is empty: founding a group with its
    /// peers, or joining one.
    pub fn bootstrap(&self) -> Bootstrap {
        if self.join {
            return Bootstrap::Join;
        }
        let ids = self.peers.keys().chain([&self.id]).map(|id| concord_core::NodeId(*id));
        Bootstrap::NewCluster(concord_core::Membership::with_voters(ids))
    }

    /// Checks the whole configuration: the core's rules ([`NodeSetup::validate`]) and
    /// the host's own (ids, connection limits).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError("id must not be 0".into()));
        }
        if self.peers.contains_key(&0) {
            return Err(ConfigError("peer id 0 is not allowed".into()));
        }
        if self.client_queue_max == 0 || self.client_connections_max == 0 {
            return Err(ConfigError("client_queue_max and client_connections_max must be at least 1".into()));
        }
        self.setup().validate().map_err(|e| ConfigError(e.to_string()))
    }
}

/// Parses `ID=HOST:PORT` (see [`resolve`]).
pub fn parse_peer(s: &str) -> Result<(u64, SocketAddr), String> {
    let (id, addr) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected ID=HOST:PORT"))?;
    let id: u64 = id.trim().parse().map_err(|_| format!("{s:?}: the id must be a number"))?;
    let addr = resolve(addr.trim()).map_err(|e| format!("{s:?}: {e}"))?;
    Ok((id, addr))
}

/// `HOST:PORT` as a socket address: an IP address as it is, a host name (`localhost`,
/// a DNS name) resolved now, its IPv4 address preferred.
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!("{s:?}: expected HOST:PORT"));
    }
    let all: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(s)
        .map_err(|e| format!("{s:?}: cannot resolve: {e}"))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| format!("{s:?}: resolves to no address"))
}

fn de_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    resolve(&s).map_err(serde::de::Error::custom)
}

fn de_peers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, SocketAddr>, D::Error> {
    let named = BTreeMap::<u64, String>::deserialize(d)?;
    named.into_iter().map(|(id, a)| Ok((id, resolve(&a).map_err(serde::de::Error::custom)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_toml_file_keeps_the_defaults() {
        let c = ServerConfig::from_toml(
            "id = 2\npeers = { 1 = \"127.0.0.1:7101\", 3 = \"127.0.0.1:7103\" }\n[limits]\nsessions_max = 5\n",
        )
        .unwrap();
        assert_eq!(c.id, 2);
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.limits.sessions_max, 5);
        assert_eq!(c.limits.list_max, Limits::default().list_max);
        assert_eq!(c.client_addr, ServerConfig::default().client_addr);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_a_reason() {
        let e = ServerConfig::from_toml("idd = 2").unwrap_err();
        assert!(e.0.contains("idd"), "{e}");
        let c = ServerConfig { heartbeat_interval_ms: 1_000, ..ServerConfig::default() };
        assert!(c.validate().unwrap_err().0.contains("heartbeat"));
        let c = ServerConfig { id: 0, ..ServerConfig::default() };
        assert!(c.validate().is_err());
        // A value limit that cannot fit a frame.
        let mut c = ServerConfig { frame_bytes_max: 64 * 1024, ..ServerConfig::default() };
        assert!(c.validate().unwrap_err().0.contains("frame_bytes_max"));
        c.limits.kv_value_bytes_max = 1024;
        c.limits.reference_bytes_max = 1024;
        c.limits.signal_payload_bytes_max = 1024;
        c.validate().unwrap();
    }

    #[test]
    fn peers_parse_as_id_equals_address() {
        assert_eq!(parse_peer("3=127.0.0.1:7103").unwrap(), (3, "127.0.0.1:7103".parse().unwrap()));
        assert_eq!(parse_peer("3=localhost:7103").unwrap(), (3, "127.0.0.1:7103".parse().unwrap()));
        let c =
            ServerConfig::from_toml("client_addr = \"localhost:7005\"\npeers = { 1 = \"localhost:7101\" }\n")
                .unwrap();
        assert_eq!(c.client_addr, "127.0.0.1:7005".parse().unwrap());
        assert_eq!(c.peers[&1], "127.0.0.1:7101".parse().unwrap());
        assert!(resolve("localhost").is_err(), "a port is needed");
        assert!(parse_peer("127.0.0.1:7103").is_err());
        assert!(parse_peer("x=127.0.0.1:7103").is_err());
    }
}
