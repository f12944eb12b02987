//! Node configuration: the command line and the TOML file, parsed once into typed settings.
//!
//! Both sources describe the same [`RawConfig`]; command-line values override the file's. The raw
//! form is then validated into [`NodeConfig`] ("parse, don't validate"): every later layer takes
//! typed values and never re-checks them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde::Deserialize;

use sipmesh_actors::engine::{EngineConfig, ListenSpec, RelayPolicy};
use sipmesh_actors::location::RedisStoreConfig;
use sipmesh_actors::media::{InstanceSpec, MediaConfig};
use sipmesh_actors::redis_endpoint::{EndpointUrl, ReplicaWait};
use sipmesh_actors::transport::{TlsConfig, TlsFiles, Transport, WsConfig};
use sipmesh_cluster::tls::ClusterTlsFiles;
use sipmesh_cluster::{ClusterConfig, NodeId, Timing};
use sipmesh_protocol::media::{MediaProfiles, MediaRoute, RouteMatch};
use sipmesh_protocol::proxy::FlowTokenKey;
use sipmesh_protocol::registrar::RegistrarPolicy;

/// Command line of the `sipmesh` binary.
#[derive(Debug, Parser)]
#[command(
    name = "sipmesh",
    version,
    about = "Clustered SIP registrar and stateful proxy"
)]
pub struct Cli {
    /// A subcommand; without one the node runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A listener, `udp:IP:PORT`, `tcp:IP:PORT`, `tls:IP:PORT`, `ws:IP:PORT` or `wss:IP:PORT`
    /// (IPv6 as `udp:[::1]:5060`). Repeatable.
    /// Default: `udp:127.0.0.1:5060` and `tcp:127.0.0.1:5060`.
    #[arg(long = "listen", value_name = "TRANSPORT:IP:PORT")]
    pub listen: Vec<String>,
    /// A SIP domain this node is responsible for. Repeatable. The listen addresses are always local.
    #[arg(long = "domain", value_name = "NAME")]
    pub domain: Vec<String>,
    /// A TOML configuration file with the same settings; command-line values win.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter in `RUST_LOG` syntax (for example `info,sipmesh_actors=debug`).
    #[arg(long = "log-filter", value_name = "FILTER")]
    pub log_filter: Option<String>,
    /// Forward requests for domains that are not ours (default: refuse them with 403).
    #[arg(long = "relay")]
    pub relay: bool,
    /// Keep registrations in Redis (`redis://HOST:PORT[/DB]`, or
    /// `redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]`); without it, in memory.
    #[arg(long = "redis", value_name = "URL")]
    pub redis: Option<String>,
    /// After Redis writes, `WAIT` for this many replicas (0: don't; see docs/REDIS.md).
    #[arg(long = "redis-wait-replicas", value_name = "N")]
    pub redis_wait_replicas: Option<u32>,
    /// PEM certificate chain for TLS and WSS listeners (reloaded on SIGHUP).
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert` (reloaded on SIGHUP).
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: TLS and WSS clients must present a certificate it signed.
    #[arg(long = "tls-client-ca", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA bundle to verify servers we connect to over TLS (default: the system roots).
    #[arg(long = "tls-ca", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Serve the admin HTTP endpoint (`GET /status`) on this address, for example
    /// `127.0.0.1:9060`. Off by default.
    #[arg(long = "admin", value_name = "IP:PORT")]
    pub admin: Option<SocketAddr>,
    /// Enable the fault-injection endpoints (`POST /test/panic/...`) on the admin endpoint.
    /// For tests only: anyone who reaches the admin address can crash actors.
    #[arg(long = "test-hooks")]
    pub test_hooks: bool,
    /// Lifetime of a confirmed dialog without a session timer, in seconds (default 43200); at
    /// its end the node sends a BYE to both sides.
    #[arg(long = "dialog-timeout", value_name = "SECONDS")]
    pub dialog_timeout: Option<u64>,
    /// Seconds an AOR actor may stay idle before it stops (default 10); the next request for
    /// that AOR re-creates it from the store, so memory follows activity.
    #[arg(long = "aor-actor-idle", value_name = "SECONDS")]
    pub aor_actor_idle: Option<u64>,
    /// Join a cluster: the ractor_cluster listener (TCP) and heartbeat socket (UDP) address.
    /// Needs `--redis` (leases) and a cookie.
    #[arg(long = "cluster-listen", value_name = "IP:PORT")]
    pub cluster_listen: Option<SocketAddr>,
    /// A cluster member to dial at start-up. Repeatable.
    #[arg(long = "cluster-seed", value_name = "IP:PORT")]
    pub cluster_seed: Vec<SocketAddr>,
    /// This node's id in the cluster (default: derived from `--cluster-listen`).
    #[arg(long = "node-id", value_name = "NAME")]
    pub node_id: Option<String>,
    /// Seconds a member may hold no lease before it is removed from the registry (default 60).
    #[arg(long = "cluster-prune-after", value_name = "SECONDS")]
    pub cluster_prune_after: Option<u64>,
    /// Shared secret authenticating cluster members to each other.
    #[arg(long = "cluster-cookie", value_name = "SECRET")]
    pub cluster_cookie: Option<String>,
    /// PEM certificate for mutual TLS between members (with `--cluster-tls-key` and
    /// `--cluster-tls-ca`); needs an IP SAN for every member address.
    #[arg(long = "cluster-tls-cert", value_name = "FILE")]
    pub cluster_tls_cert: Option<PathBuf>,
    /// PEM private key of `--cluster-tls-cert`.
    #[arg(long = "cluster-tls-key", value_name = "FILE")]
    pub cluster_tls_key: Option<PathBuf>,
    /// PEM CA every member's certificate chains to.
    #[arg(long = "cluster-tls-ca", value_name = "FILE")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// An rtpengine instance for media relaying, `udp:IP:PORT[=weight]`. Repeatable; without
    /// any, SDP passes untouched.
    #[arg(long = "rtpengine", value_name = "udp:IP:PORT[=WEIGHT]")]
    pub rtpengine: Vec<String>,
    /// Runtime worker threads (default: one per CPU core; `TOKIO_WORKER_THREADS` when set).
    /// One worker caps the node at one core but spares a hop between threads on every task
    /// wake-up (see docs/PERFORMANCE.md, issue 6).
    #[arg(long = "workers", value_name = "N")]
    pub workers: Option<usize>,
    /// Run the signalling hot path (UDP sockets, transaction shards, media sessions, rtpengine
    /// clients) on a dedicated thread of its own, the rest on the workers (see
    /// docs/PERFORMANCE.md, issue 6).
    #[arg(long = "signalling-thread", value_name = "BOOL")]
    pub signalling_thread: Option<bool>,
    /// Send UDP datagrams straight from the transaction shard while the socket's send queue is
    /// empty, rather than always through the socket's writer task (default true).
    #[arg(long = "udp-direct-send", value_name = "BOOL")]
    pub udp_direct_send: Option<bool>,
    /// Allow transparent huge pages for the node's heap (default false: a huge-page fault
    /// stalls the signalling thread for milliseconds; see `sipmesh_node::memory`).
    #[arg(long = "transparent-huge-pages", value_name = "BOOL")]
    pub transparent_huge_pages: Option<bool>,
    /// With the signalling thread and `--redis`: run the location store's Redis connection and
    /// its pipelining on the signalling thread too, so a REGISTER's store call never leaves it
    /// (see docs/PERFORMANCE.md, session 6).
    #[arg(long = "redis-on-signalling-thread", value_name = "BOOL")]
    pub redis_on_signalling_thread: Option<bool>,
}

/// Subcommands of the `sipmesh` binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a self-signed development CA and a server certificate signed by it, for TLS/WSS.
    DevCert {
        /// Directory to write `ca.pem`, `ca-key.pem`, `cert.pem` and `key.pem` into.
        #[arg(long = "out", value_name = "DIR")]
        out: PathBuf,
        /// A host name or IP address for the server certificate. Repeatable. Default:
        /// `localhost`, `127.0.0.1` and `::1`.
        #[arg(long = "host", value_name = "NAME")]
        host: Vec<String>,
    },
    /// Cluster tools.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// `sipmesh cluster …` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print the members as a node sees them (its admin endpoint's `GET /cluster`).
    Status {
        /// The node's admin endpoint (`--admin` of that node).
        #[arg(long = "admin", value_name = "IP:PORT")]
        admin: SocketAddr,
        /// Print the raw JSON instead of a table.
        #[arg(long = "json")]
        json: bool,
    },
}

/// The settings as written by a user, before validation. Field names are the TOML keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listeners, as on the command line (`"udp:127.0.0.1:5060"`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Local domains.
    #[serde(default)]
    pub domain: Vec<String>,
    /// Log filter.
    pub log_filter: Option<String>,
    /// Relay requests for foreign domains.
    pub relay: Option<bool>,
    /// Largest SIP message accepted, in bytes (default 65536).
    pub max_message_size: Option<usize>,
    /// Lifetime of a confirmed dialog without a session timer, seconds (default 43200).
    pub dialog_timeout_s: Option<u64>,
    /// Seconds an idle TCP connection is kept (default 600).
    pub tcp_idle_timeout: Option<u64>,
    /// Seconds given to running transactions on SIGTERM/SIGINT (default 5).
    pub shutdown_grace: Option<u64>,
    /// PEM certificate chain for TLS and WSS listeners.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle required of TLS/WSS clients (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// PEM CA bundle for outgoing TLS (default: system roots).
    pub tls_ca: Option<PathBuf>,
    /// Allowed WebSocket `Origin` values; empty allows all.
    #[serde(default)]
    pub ws_allowed_origins: Vec<String>,
    /// Seconds between WebSocket pings (default 30).
    pub ws_ping_interval: Option<u64>,
    /// Most WS and WSS connections (default 4096); further upgrades get 503.
    pub ws_max_connections: Option<usize>,
    /// Most stream connections (TCP, TLS, WS, WSS together) the node holds (default 4096).
    pub max_connections: Option<usize>,
    /// Redis URL for the location and dialog stores (default: in memory): `redis://…`,
    /// `redis+unix://…` or `redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]`.
    pub redis: Option<String>,
    /// Replicas to `WAIT` for after Redis writes (default 0: don't wait).
    pub redis_wait_replicas: Option<u32>,
    /// Longest `WAIT` in milliseconds (default 100).
    pub redis_wait_timeout_ms: Option<u64>,
    /// Key of the flow tokens in Record-Route: 64 hex digits (32 octets), the same on nodes
    /// that must accept each other's tokens (default: random at every start).
    pub flow_token_key: Option<String>,
    /// Admin endpoint address.
    pub admin: Option<SocketAddr>,
    /// Fault-injection endpoints on the admin endpoint (tests only).
    pub test_hooks: Option<bool>,
    /// Registrar settings.
    #[serde(default)]
    pub registrar: RawRegistrar,
    /// Cluster settings.
    #[serde(default)]
    pub cluster: RawCluster,
    /// Media relaying through rtpengine.
    #[serde(default)]
    pub media: RawMedia,
    /// Runtime worker threads (default: one per CPU core).
    pub workers: Option<usize>,
    /// A dedicated thread for the signalling hot path.
    pub signalling_thread: Option<bool>,
    /// Direct UDP sends from the shards.
    pub udp_direct_send: Option<bool>,
    /// Transparent huge pages for the node's heap.
    pub transparent_huge_pages: Option<bool>,
    /// The location store's Redis connection on the signalling thread.
    pub redis_on_signalling_thread: Option<bool>,
}

/// `[media]` section: rtpengine instances and flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMedia {
    /// Instances, `"udp:IP:PORT[=weight]"` (the `--rtpengine` values are added).
    #[serde(default)]
    pub rtpengine: Vec<String>,
    /// ng `replace` for every leg (default `["origin", "session-connection"]`).
    pub replace: Option<Vec<String>>,
    /// Extra ng `flags` for every leg.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Calls between two legs of the same kind bypass rtpengine (default false).
    pub bypass_same_kind: Option<bool>,
    /// Milliseconds between health pings of each instance (default 500).
    pub ping_interval_ms: Option<u64>,
    /// Longest wait for one ng request, in milliseconds (default 1000).
    pub request_timeout_ms: Option<u64>,
    /// A call with no media for this many milliseconds is ended (default 60000).
    pub media_timeout_ms: Option<u64>,
    /// Milliseconds between media-activity queries of an answered call (default 5000).
    pub poll_interval_ms: Option<u64>,
    /// Per-route flags, `[[media.route]]`, first match wins.
    #[serde(default)]
    pub route: Vec<RawMediaRoute>,
}

/// One `[[media.route]]`: which calls (every key given must match) and what changes for them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMediaRoute {
    /// The Request-URI's domain.
    pub domain: Option<String>,
    /// A prefix of the Request-URI's user part.
    pub user_prefix: Option<String>,
    /// The transport the request came in on (`udp`, `tcp`, `tls`, `ws`, `wss`).
    pub transport: Option<String>,
    /// No rtpengine for these calls (SDP untouched).
    pub bypass: Option<bool>,
    /// ng `ICE` for every leg (`remove`, `force`, `default`).
    pub ice: Option<String>,
    /// ng `DTLS` for every leg (`off`, `passive`, `active`).
    pub dtls: Option<String>,
    /// ng `flags` added to the global ones.
    #[serde(default)]
    pub flags: Vec<String>,
    /// ng `replace` instead of the global list.
    pub replace: Option<Vec<String>>,
    /// Overrides the global `bypass_same_kind`.
    pub bypass_same_kind: Option<bool>,
}

impl RawMediaRoute {
    fn parse(&self) -> anyhow::Result<MediaRoute> {
        use sipmesh_protocol::media::route::{parse_dtls, parse_ice, parse_transport};
        Ok(MediaRoute {
            matches: RouteMatch {
                domain: self.domain.clone(),
                user_prefix: self.user_prefix.clone(),
                transport: self.transport.as_deref().map(parse_transport).transpose()?,
            },
            bypass: self.bypass,
            ice: self.ice.as_deref().map(parse_ice).transpose()?,
            dtls: self.dtls.as_deref().map(parse_dtls).transpose()?,
            flags: self.flags.clone(),
            replace: self.replace.clone(),
            bypass_same_kind: self.bypass_same_kind,
        })
    }
}

/// `[cluster]` section; the node is clustered when `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Cluster address (`"127.0.0.11:7000"`): ractor_cluster TCP and heartbeat UDP.
    pub listen: Option<SocketAddr>,
    /// Members dialed at start-up.
    #[serde(default)]
    pub seeds: Vec<SocketAddr>,
    /// This node's id (default derived from `listen`).
    pub node_id: Option<String>,
    /// Shared secret of the members (required with `listen`).
    pub cookie: Option<String>,
    /// Key prefix of the cluster keys in Redis (default `sipmesh:`).
    pub key_prefix: Option<String>,
    /// Seconds a member may hold no lease before it leaves the registry (default 60).
    pub prune_after_s: Option<u64>,
    /// Mutual TLS between members: this node's certificate (all three `tls_*` or none).
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    pub tls_key: Option<PathBuf>,
    /// The members' CA.
    pub tls_ca: Option<PathBuf>,
}

/// `[registrar]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistrar {
    /// Shortest registration accepted (423 below), seconds.
    pub min_expires: Option<u32>,
    /// Longest registration granted (longer requests are lowered), seconds.
    pub max_expires: Option<u32>,
    /// Registration time when the request names none, seconds.
    pub default_expires: Option<u32>,
    /// Most contacts one AOR may hold.
    pub max_contacts: Option<usize>,
    /// Most live AOR actors with Redis (default 4096; 0: none, every request is a plain store
    /// call).
    pub max_aor_actors: Option<usize>,
    /// Seconds an AOR actor may stay idle before it stops (default 10; at least 1).
    pub actor_idle_s: Option<u64>,
}

/// Validated configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Log filter directive.
    pub log_filter: String,
    /// The engine's settings (listeners, domains, registrar policy, limits).
    pub engine: EngineConfig,
    /// How long a graceful shutdown waits for transactions to finish.
    pub shutdown_grace: Duration,
    /// Certificates for TLS/WSS listeners and outgoing TLS, when configured (also when only
    /// `tls_ca` is set). Reloaded on SIGHUP.
    pub tls: Option<TlsConfig>,
    /// WebSocket settings.
    pub ws: WsConfig,
    /// Admin endpoint address (None: no admin endpoint).
    pub admin: Option<SocketAddr>,
    /// Fault-injection endpoints on the admin endpoint.
    pub test_hooks: bool,
    /// Cluster membership, when the node is clustered (`cluster.listen` set).
    pub cluster: Option<ClusterConfig>,
    /// Runtime worker threads (None: tokio's default, one per core or `TOKIO_WORKER_THREADS`).
    pub workers: Option<usize>,
    /// Whether the signalling hot path runs on a thread of its own
    /// ([`crate::signalling::SignallingThread`]).
    pub signalling_thread: bool,
    /// Whether the process keeps transparent huge pages ([`crate::memory`]); applied by the
    /// binary at startup.
    pub transparent_huge_pages: bool,
}

impl Cli {
    /// Merges the command line over the configuration file (if any) and validates the result.
    pub fn into_config(self) -> anyhow::Result<NodeConfig> {
        let mut raw = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<RawConfig>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => RawConfig::default(),
        };
        if !self.listen.is_empty() {
            raw.listen = self.listen;
        }
        raw.domain.extend(self.domain);
        if self.log_filter.is_some() {
            raw.log_filter = self.log_filter;
        }
        if self.relay {
            raw.relay = Some(true);
        }
        if self.redis.is_some() {
            raw.redis = self.redis;
        }
        if self.redis_wait_replicas.is_some() {
            raw.redis_wait_replicas = self.redis_wait_replicas;
        }
        if self.admin.is_some() {
            raw.admin = self.admin;
        }
        if self.aor_actor_idle.is_some() {
            raw.registrar.actor_idle_s = self.aor_actor_idle;
        }
        if self.dialog_timeout.is_some() {
            raw.dialog_timeout_s = self.dialog_timeout;
        }
        if self.test_hooks {
            raw.test_hooks = Some(true);
        }
        if self.cluster_listen.is_some() {
            raw.cluster.listen = self.cluster_listen;
        }
        raw.cluster.seeds.extend(self.cluster_seed);
        raw.media.rtpengine.extend(self.rtpengine);
        if self.workers.is_some() {
            raw.workers = self.workers;
        }
        if self.signalling_thread.is_some() {
            raw.signalling_thread = self.signalling_thread;
        }
        if self.transparent_huge_pages.is_some() {
            raw.transparent_huge_pages = self.transparent_huge_pages;
        }
        if self.udp_direct_send.is_some() {
            raw.udp_direct_send = self.udp_direct_send;
        }
        if self.redis_on_signalling_thread.is_some() {
            raw.redis_on_signalling_thread = self.redis_on_signalling_thread;
        }
        if self.node_id.is_some() {
            raw.cluster.node_id = self.node_id;
        }
        if self.cluster_cookie.is_some() {
            raw.cluster.cookie = self.cluster_cookie;
        }
        if self.cluster_prune_after.is_some() {
            raw.cluster.prune_after_s = self.cluster_prune_after;
        }
        for (flag, key) in [
            (self.cluster_tls_cert, &mut raw.cluster.tls_cert),
            (self.cluster_tls_key, &mut raw.cluster.tls_key),
            (self.cluster_tls_ca, &mut raw.cluster.tls_ca),
        ] {
            if flag.is_some() {
                *key = flag;
            }
        }
        for (flag, key) in [
            (self.tls_cert, &mut raw.tls_cert),
            (self.tls_key, &mut raw.tls_key),
            (self.tls_client_ca, &mut raw.tls_client_ca),
            (self.tls_ca, &mut raw.tls_ca),
        ] {
            if flag.is_some() {
                *key = flag;
            }
        }
        NodeConfig::try_from(raw)
    }
}

impl TryFrom<RawConfig> for NodeConfig {
    type Error = anyhow::Error;

    fn try_from(raw: RawConfig) -> anyhow::Result<Self> {
        let mut listen = raw
            .listen
            .iter()
            .map(|s| parse_listen(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if listen.is_empty() {
            let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5060);
            listen.push(ListenSpec {
                kind: Transport::Udp,
                addr: local,
            });
            listen.push(ListenSpec {
                kind: Transport::Tcp,
                addr: local,
            });
        }
        let defaults = RegistrarPolicy::default();
        let registrar = RegistrarPolicy {
            min_expires: raw.registrar.min_expires.unwrap_or(defaults.min_expires),
            max_expires: raw.registrar.max_expires.unwrap_or(defaults.max_expires),
            default_expires: raw
                .registrar
                .default_expires
                .unwrap_or(defaults.default_expires),
            max_contacts: raw.registrar.max_contacts.unwrap_or(defaults.max_contacts),
            default_q: defaults.default_q,
        };
        if registrar.min_expires > registrar.max_expires {
            bail!(
                "registrar.min_expires ({}) is above registrar.max_expires ({})",
                registrar.min_expires,
                registrar.max_expires
            );
        }
        if raw.registrar.actor_idle_s == Some(0) {
            bail!("registrar.actor_idle_s (--aor-actor-idle) must be at least 1 second");
        }
        if registrar.max_contacts == 0 {
            bail!("registrar.max_contacts must be at least 1");
        }
        let max_message_size = raw.max_message_size.unwrap_or(65_536);
        if !(1024..=16 * 1024 * 1024).contains(&max_message_size) {
            bail!("max_message_size must be between 1024 and 16777216 bytes");
        }
        for d in &raw.domain {
            if d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == '@') {
                bail!("invalid domain {d:?}");
            }
        }
        let tls = tls_config(&raw, &listen)?;
        let ws = ws_config(&raw)?;
        let redis = redis_config(&raw)?;
        let cluster = cluster_config(&raw)?;
        let media = media_config(&raw)?;
        if raw.workers == Some(0) {
            bail!("workers must be at least 1");
        }
        Ok(Self {
            workers: raw.workers,
            signalling_thread: raw
                .signalling_thread
                .unwrap_or(crate::signalling::DEFAULT_SIGNALLING_THREAD),
            transparent_huge_pages: raw
                .transparent_huge_pages
                .unwrap_or(crate::memory::DEFAULT_TRANSPARENT_HUGE_PAGES),
            cluster,
            tls: tls.clone(),
            ws: ws.clone(),
            log_filter: raw.log_filter.unwrap_or_else(|| "info".to_owned()),
            admin: raw.admin,
            test_hooks: raw.test_hooks.unwrap_or(false),
            shutdown_grace: Duration::from_secs(raw.shutdown_grace.unwrap_or(5)),
            engine: EngineConfig {
                listen,
                domains: raw.domain.iter().map(|d| d.to_ascii_lowercase()).collect(),
                relay: if raw.relay.unwrap_or(false) {
                    RelayPolicy::Relay
                } else {
                    RelayPolicy::Refuse
                },
                max_message_size,
                tcp_idle_timeout: Duration::from_secs(raw.tcp_idle_timeout.unwrap_or(600)),
                max_connections: match raw.max_connections {
                    Some(0) => bail!("max_connections must be at least 1"),
                    Some(n) => n,
                    None => 4096,
                },
                registrar,
                tls,
                ws,
                redis,
                flow_token_key: raw
                    .flow_token_key
                    .as_deref()
                    .map(FlowTokenKey::from_hex)
                    .transpose()
                    .context("flow_token_key")?,
                dialog: sipmesh_protocol::dialog::DialogConfig {
                    default_timeout: raw.dialog_timeout_s.map_or_else(
                        || sipmesh_protocol::dialog::DialogConfig::default().default_timeout,
                        Duration::from_secs,
                    ),
                    ..sipmesh_protocol::dialog::DialogConfig::default()
                },
                // Set by `run` when clustered (it needs the running cluster layer).
                fence: None,
                max_aor_actors: raw.registrar.max_aor_actors.unwrap_or(4096),
                aor_idle_after: raw.registrar.actor_idle_s.map_or(
                    sipmesh_actors::registrar::RegistrarConfig::DEFAULT_IDLE_AFTER,
                    Duration::from_secs,
                ),
                // Set by `run` when clustered (a Redis counter).
                incarnation: Default::default(),
                media,
                // Set by `run` when `signalling_thread` is on (it owns the thread).
                signalling: None,
                udp_direct_send: raw.udp_direct_send.unwrap_or(true),
                location_on_signalling: raw
                    .redis_on_signalling_thread
                    .unwrap_or(crate::signalling::DEFAULT_REDIS_ON_SIGNALLING),
            },
        })
    }
}

/// The media settings: `None` without any rtpengine instance (SDP passes untouched).
fn media_config(raw: &RawConfig) -> anyhow::Result<Option<MediaConfig>> {
    let m = &raw.media;
    if m.rtpengine.is_empty() {
        return Ok(None);
    }
    let instances = m
        .rtpengine
        .iter()
        .map(|s| InstanceSpec::parse(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("rtpengine")?;
    let defaults = MediaConfig::default();
    let ms = |v: Option<u64>, d: Duration, name: &str| -> anyhow::Result<Duration> {
        match v {
            Some(0) => bail!("media.{name} must be above 0"),
            Some(n) => Ok(Duration::from_millis(n)),
            None => Ok(d),
        }
    };
    let mut profiles = MediaProfiles::default();
    if let Some(r) = &m.replace {
        profiles.replace.clone_from(r);
    }
    profiles.flags.clone_from(&m.flags);
    profiles.bypass_same_kind = m.bypass_same_kind.unwrap_or(false);
    profiles.routes = m
        .route
        .iter()
        .enumerate()
        .map(|(i, r)| r.parse().with_context(|| format!("media.route[{i}]")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(MediaConfig {
        instances,
        profiles,
        ping_interval: ms(
            m.ping_interval_ms,
            defaults.ping_interval,
            "ping_interval_ms",
        )?,
        request_timeout: ms(
            m.request_timeout_ms,
            defaults.request_timeout,
            "request_timeout_ms",
        )?,
        media_timeout: ms(
            m.media_timeout_ms,
            defaults.media_timeout,
            "media_timeout_ms",
        )?,
        poll_interval: ms(
            m.poll_interval_ms,
            defaults.poll_interval,
            "poll_interval_ms",
        )?,
    }))
}

/// The Redis store settings: the URL checked now (a refused form fails at startup, not at the
/// first REGISTER) and the optional replica `WAIT`.
fn redis_config(raw: &RawConfig) -> anyhow::Result<Option<RedisStoreConfig>> {
    let Some(url) = raw.redis.as_deref() else {
        return Ok(None);
    };
    let parsed = EndpointUrl::parse(url).context("redis")?;
    if matches!(parsed, EndpointUrl::Cluster(_)) && raw.redis_wait_replicas.unwrap_or(0) > 0 {
        bail!("redis_wait_replicas is not supported with a Redis Cluster URL (WAIT is per master)");
    }
    let mut config = RedisStoreConfig::new(url);
    let timeout = Duration::from_millis(raw.redis_wait_timeout_ms.unwrap_or(100));
    if timeout >= config.timeout {
        bail!(
            "redis_wait_timeout_ms must be below the Redis call timeout ({:?})",
            config.timeout
        );
    }
    config.replica_wait = match raw.redis_wait_replicas.unwrap_or(0) {
        0 => None,
        replicas => Some(ReplicaWait { replicas, timeout }),
    };
    Ok(Some(config))
}

/// Loads the TLS files when any is configured; TLS and WSS listeners need a certificate.
fn tls_config(raw: &RawConfig, listen: &[ListenSpec]) -> anyhow::Result<Option<TlsConfig>> {
    let files = TlsFiles {
        cert: raw.tls_cert.clone(),
        key: raw.tls_key.clone(),
        client_ca: raw.tls_client_ca.clone(),
        server_ca: raw.tls_ca.clone(),
    };
    let secure_listener = listen
        .iter()
        .any(|l| matches!(l.kind, Transport::Tls | Transport::Wss));
    match (&files.cert, &files.key) {
        (Some(_), None) | (None, Some(_)) => bail!("tls_cert and tls_key go together"),
        (None, None) if secure_listener => {
            bail!(
                "tls and wss listeners need tls_cert and tls_key (try `sipmesh dev-cert --out DIR`)"
            )
        }
        (None, None) if files == TlsFiles::default() => return Ok(None),
        _ => {}
    }
    TlsConfig::load(&files)
        .map(Some)
        .context("loading the TLS certificates")
}

/// Validates the `[cluster]` section: a clustered node needs Redis (for its lease) and a
/// cookie.
fn cluster_config(raw: &RawConfig) -> anyhow::Result<Option<ClusterConfig>> {
    let c = &raw.cluster;
    let Some(listen) = c.listen else {
        if c.node_id.is_some() || !c.seeds.is_empty() || c.cookie.is_some() || c.tls_cert.is_some()
        {
            bail!("cluster settings need cluster.listen (--cluster-listen)");
        }
        return Ok(None);
    };
    let Some(redis_url) = raw.redis.clone() else {
        bail!("a clustered node needs redis (--redis): leases live there");
    };
    let cookie = match &c.cookie {
        Some(cookie) if !cookie.is_empty() => cookie.clone(),
        _ => bail!("a clustered node needs cluster.cookie (--cluster-cookie)"),
    };
    let node_id = match &c.node_id {
        Some(id) => NodeId::new(id).with_context(|| format!("cluster.node_id {id:?}"))?,
        None => NodeId::from_listen_addr(listen),
    };
    let key_prefix = c
        .key_prefix
        .clone()
        .unwrap_or_else(|| "sipmesh:".to_owned());
    let tls = match (&c.tls_cert, &c.tls_key, &c.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(ClusterTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        }),
        (None, None, None) => None,
        _ => bail!("cluster.tls_cert, cluster.tls_key and cluster.tls_ca go together"),
    };
    let mut timing = Timing::default();
    if let Some(s) = c.prune_after_s {
        timing.prune_after = Duration::from_secs(s);
    }
    timing.validate()?;
    Ok(Some(ClusterConfig {
        node_id,
        listen,
        seeds: c.seeds.iter().copied().filter(|s| *s != listen).collect(),
        cookie,
        redis_url,
        key_prefix,
        timing,
        tls,
    }))
}

fn ws_config(raw: &RawConfig) -> anyhow::Result<WsConfig> {
    let defaults = WsConfig::default();
    let ping = raw
        .ws_ping_interval
        .map_or(defaults.ping_interval, Duration::from_secs);
    if ping.is_zero() {
        bail!("ws_ping_interval must be at least 1 second");
    }
    let max_connections = raw.ws_max_connections.unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        bail!("ws_max_connections must be at least 1");
    }
    Ok(WsConfig {
        allowed_origins: raw.ws_allowed_origins.clone(),
        ping_interval: ping,
        max_connections,
        ..defaults
    })
}

/// Parses `udp:IP:PORT` / `tcp:[IPv6]:PORT` (also `tls`, `ws`, `wss`).
pub fn parse_listen(spec: &str) -> anyhow::Result<ListenSpec> {
    let Some((kind, addr)) = spec.split_once(':') else {
        bail!("listen spec {spec:?} is not TRANSPORT:IP:PORT");
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "ws" => Transport::Ws,
        "wss" => Transport::Wss,
        other => bail!(
            "listen spec {spec:?}: transport {other:?} is not supported (udp, tcp, tls, ws, wss)"
        ),
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("listen spec {spec:?}: {addr:?} is not IP:PORT"))?;
    Ok(ListenSpec { kind, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_parse_v4_and_v6() {
        let s = parse_listen("udp:127.0.0.1:5060").unwrap();
        assert_eq!(s.kind, Transport::Udp);
        assert_eq!(s.addr, "127.0.0.1:5060".parse().unwrap());
        let s = parse_listen("TCP:[::1]:5070").unwrap();
        assert_eq!(s.kind, Transport::Tcp);
        assert_eq!(s.addr, "[::1]:5070".parse().unwrap());
        assert!(parse_listen("sctp:127.0.0.1:5060").is_err());
        assert_eq!(
            parse_listen("wss:127.0.0.1:443").unwrap().kind,
            Transport::Wss
        );
        assert_eq!(parse_listen("ws:[::1]:80").unwrap().kind, Transport::Ws);
        assert_eq!(
            parse_listen("TLS:0.0.0.0:5061").unwrap().kind,
            Transport::Tls
        );
        assert!(parse_listen("udp:127.0.0.1").is_err());
    }

    #[test]
    fn media_section_and_rtpengine_flags() {
        let cfg = NodeConfig::try_from(RawConfig::default()).unwrap();
        assert!(cfg.engine.media.is_none(), "no rtpengine: SDP untouched");
        let raw: RawConfig = toml::from_str(
            "[media]\nrtpengine = [\"udp:127.0.0.1:2223=3\", \"127.0.0.2:2223\"]\n\
             media_timeout_ms = 1500\nbypass_same_kind = true\nflags = [\"trust-address\"]\n",
        )
        .unwrap();
        let media = NodeConfig::try_from(raw).unwrap().engine.media.unwrap();
        assert_eq!(media.instances.len(), 2);
        assert_eq!(media.instances[0].weight, 3);
        assert_eq!(media.instances[1].weight, 1);
        assert_eq!(media.media_timeout, Duration::from_millis(1500));
        assert_eq!(media.ping_interval, Duration::from_millis(500));
        assert!(media.profiles.bypass_same_kind);
        assert_eq!(media.profiles.flags, vec!["trust-address"]);
        assert_eq!(media.profiles.replace, vec!["origin", "session-connection"]);
        let routed: RawConfig = toml::from_str(
            "[media]\nrtpengine = [\"udp:127.0.0.1:2223\"]\n\
             [[media.route]]\ndomain = \"lan.example\"\nbypass = true\n\
             [[media.route]]\nuser_prefix = \"9\"\ntransport = \"ws\"\nice = \"force\"\n\
             dtls = \"passive\"\nflags = [\"strict-source\"]\n",
        )
        .unwrap();
        let routes = NodeConfig::try_from(routed)
            .unwrap()
            .engine
            .media
            .unwrap()
            .profiles
            .routes;
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].matches.domain.as_deref(), Some("lan.example"));
        assert_eq!(routes[0].bypass, Some(true));
        assert_eq!(routes[1].matches.transport, Some(Transport::Ws));
        assert_eq!(routes[1].ice, Some(sipmesh_protocol::ng::IceMode::Force));
        assert_eq!(routes[1].flags, vec!["strict-source"]);
        let bad_route: RawConfig = toml::from_str(
            "[media]\nrtpengine = [\"udp:127.0.0.1:2223\"]\n[[media.route]]\nice = \"maybe\"\n",
        )
        .unwrap();
        assert!(NodeConfig::try_from(bad_route).is_err());
        let bad: RawConfig = toml::from_str("[media]\nrtpengine = [\"udp:nowhere\"]\n").unwrap();
        assert!(NodeConfig::try_from(bad).is_err());
        let zero: RawConfig =
            toml::from_str("[media]\nrtpengine = [\"udp:127.0.0.1:1\"]\nping_interval_ms = 0\n")
                .unwrap();
        assert!(NodeConfig::try_from(zero).is_err());
    }

    #[test]
    fn signalling_thread_and_direct_udp_sends_from_toml_and_command_line() {
        let default = NodeConfig::try_from(RawConfig::default()).unwrap();
        assert_eq!(
            default.signalling_thread,
            crate::signalling::DEFAULT_SIGNALLING_THREAD
        );
        assert!(default.engine.udp_direct_send);
        assert!(default.engine.signalling.is_none(), "set by `run`");
        let raw: RawConfig =
            toml::from_str("signalling_thread = false\nudp_direct_send = false\n").unwrap();
        let off = NodeConfig::try_from(raw).unwrap();
        assert!(!off.signalling_thread);
        assert!(!off.engine.udp_direct_send);
        let cli = Cli::try_parse_from([
            "sipmesh",
            "--signalling-thread",
            "true",
            "--udp-direct-send",
            "false",
        ])
        .unwrap();
        let config = cli.into_config().unwrap();
        assert!(config.signalling_thread);
        assert!(!config.engine.udp_direct_send);
    }

    #[test]
    fn transparent_huge_pages_off_unless_configured() {
        let default = NodeConfig::try_from(RawConfig::default()).unwrap();
        assert!(!default.transparent_huge_pages);
        let raw: RawConfig = toml::from_str("transparent_huge_pages = true\n").unwrap();
        assert!(NodeConfig::try_from(raw).unwrap().transparent_huge_pages);
        let cli = Cli::try_parse_from(["sipmesh", "--transparent-huge-pages", "true"]).unwrap();
        assert!(cli.into_config().unwrap().transparent_huge_pages);
    }

    #[test]
    fn redis_on_the_signalling_thread_from_toml_and_command_line() {
        let default = NodeConfig::try_from(RawConfig::default()).unwrap();
        assert_eq!(
            default.engine.location_on_signalling,
            crate::signalling::DEFAULT_REDIS_ON_SIGNALLING
        );
        let raw: RawConfig = toml::from_str("redis_on_signalling_thread = false\n").unwrap();
        assert!(
            !NodeConfig::try_from(raw)
                .unwrap()
                .engine
                .location_on_signalling
        );
        let cli = Cli::try_parse_from(["sipmesh", "--redis-on-signalling-thread", "true"]).unwrap();
        assert!(cli.into_config().unwrap().engine.location_on_signalling);
    }

    #[test]
    fn worker_count_from_toml_and_command_line() {
        assert_eq!(
            NodeConfig::try_from(RawConfig::default()).unwrap().workers,
            None
        );
        let raw: RawConfig = toml::from_str("workers = 1\n").unwrap();
        assert_eq!(NodeConfig::try_from(raw).unwrap().workers, Some(1));
        let zero: RawConfig = toml::from_str("workers = 0\n").unwrap();
        assert!(NodeConfig::try_from(zero).is_err());
        let cli = Cli::try_parse_from(["sipmesh", "--workers", "2"]).unwrap();
        assert_eq!(cli.into_config().unwrap().workers, Some(2));
    }

    #[test]
    fn aor_actor_idle_from_toml_and_command_line() {
        let idle = |raw: RawConfig| NodeConfig::try_from(raw).map(|c| c.engine.aor_idle_after);
        assert_eq!(
            idle(RawConfig::default()).unwrap(),
            sipmesh_actors::registrar::RegistrarConfig::DEFAULT_IDLE_AFTER
        );
        let raw: RawConfig = toml::from_str("[registrar]\nactor_idle_s = 120\n").unwrap();
        assert_eq!(idle(raw).unwrap(), Duration::from_secs(120));
        let zero: RawConfig = toml::from_str("[registrar]\nactor_idle_s = 0\n").unwrap();
        let err = idle(zero).unwrap_err();
        assert!(format!("{err:#}").contains("actor_idle_s"), "{err:#}");
        let cli = Cli::try_parse_from(["sipmesh", "--aor-actor-idle", "3"]).unwrap();
        assert_eq!(
            cli.into_config().unwrap().engine.aor_idle_after,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn defaults_listen_on_loopback_udp_and_tcp() {
        let cfg = NodeConfig::try_from(RawConfig::default()).unwrap();
        assert_eq!(cfg.engine.listen.len(), 2);
        assert_eq!(cfg.engine.max_message_size, 65_536);
        assert_eq!(cfg.engine.relay, RelayPolicy::Refuse);
    }

    #[test]
    fn toml_file_is_read_and_validated() {
        let raw: RawConfig = toml::from_str(
            "listen = [\"udp:127.0.0.1:5070\"]\ndomain = [\"Example.COM\"]\n\
             [registrar]\nmin_expires = 30\nmax_expires = 600\n",
        )
        .unwrap();
        let cfg = NodeConfig::try_from(raw).unwrap();
        assert_eq!(cfg.engine.domains, vec!["example.com".to_owned()]);
        assert_eq!(cfg.engine.registrar.min_expires, 30);
        let bad: RawConfig =
            toml::from_str("[registrar]\nmin_expires = 900\nmax_expires = 600\n").unwrap();
        assert!(NodeConfig::try_from(bad).is_err());
        assert!(toml::from_str::<RawConfig>("unknown_key = 1").is_err());
    }

    #[test]
    fn redis_urls_and_replica_wait_are_checked_at_startup() {
        let cfg = |text: &str| toml::from_str::<RawConfig>(text).map(NodeConfig::try_from);
        let err = |text: &str| match cfg(text) {
            Ok(Err(e)) => format!("{e:#}"),
            other => panic!("{text}: accepted: {other:?}"),
        };
        assert!(err("redis = \"redis+cluster://h:7000/1\"").contains("Cluster"));
        assert!(err("redis = \"redis://a:1,b:2/\"").contains("redis+cluster://"));
        assert!(
            err("redis = \"redis+cluster://h:7000\"\nredis_wait_replicas = 1")
                .contains("redis_wait_replicas")
        );
        assert!(matches!(
            cfg("redis = \"redis+cluster://a:7000,b:7001/\""),
            Ok(Ok(_))
        ));
        assert!(err("redis = \"redis+sentinel://h:26379\"").contains("service"));
        assert!(
            err("redis = \"redis://h/\"\nredis_wait_replicas = 1\nredis_wait_timeout_ms = 900")
                .contains("redis_wait_timeout_ms")
        );
        let Ok(Ok(ok)) = cfg(
            "redis = \"redis+sentinel://a:1,b:2/main/1\"\nredis_wait_replicas = 1\n\
             redis_wait_timeout_ms = 50",
        ) else {
            panic!("a sentinel URL with WAIT is accepted");
        };
        let redis = ok.engine.redis.unwrap();
        assert_eq!(
            redis.replica_wait,
            Some(ReplicaWait {
                replicas: 1,
                timeout: Duration::from_millis(50)
            })
        );
        let Ok(Ok(plain)) = cfg("redis = \"redis://h/\"") else {
            panic!("a redis:// URL is accepted");
        };
        assert_eq!(plain.engine.redis.unwrap().replica_wait, None);
    }

    #[test]
    fn secure_listeners_need_a_certificate() {
        let raw: RawConfig = toml::from_str("listen = [\"wss:127.0.0.1:0\"]").unwrap();
        let err = NodeConfig::try_from(raw).unwrap_err().to_string();
        assert!(err.contains("dev-cert"), "{err}");
        let raw: RawConfig = toml::from_str("tls_cert = \"/nonexistent.pem\"").unwrap();
        assert!(NodeConfig::try_from(raw).is_err());
    }

    #[test]
    fn cluster_keys_are_read_and_checked() {
        let raw: RawConfig = toml::from_str(
            "redis = \"redis://127.0.0.1:6379/\"\n[cluster]\nlisten = \"127.0.0.11:7000\"\n\
             seeds = [\"127.0.0.12:7000\", \"127.0.0.11:7000\"]\ncookie = \"s3cret\"\n",
        )
        .unwrap();
        let cfg = NodeConfig::try_from(raw).unwrap().cluster.unwrap();
        assert_eq!(cfg.node_id.as_str(), "n-127.0.0.11-7000");
        assert_eq!(
            cfg.seeds,
            vec!["127.0.0.12:7000".parse().unwrap()],
            "self is dropped"
        );
        assert_eq!(cfg.cookie, "s3cret");
        assert_eq!(cfg.key_prefix, "sipmesh:");

        let cli = Cli::parse_from([
            "sipmesh",
            "--redis",
            "redis://127.0.0.1:1/",
            "--cluster-listen",
            "127.0.0.13:7001",
            "--cluster-seed",
            "127.0.0.11:7000",
            "--node-id",
            "c",
            "--cluster-cookie",
            "k",
        ]);
        let cfg = cli.into_config().unwrap().cluster.unwrap();
        assert_eq!(cfg.node_id.as_str(), "c");
        assert_eq!(cfg.listen, "127.0.0.13:7001".parse().unwrap());

        for bad in [
            // No Redis.
            "[cluster]\nlisten = \"127.0.0.1:7000\"\ncookie = \"k\"\n",
            // No cookie.
            "redis = \"redis://x/\"\n[cluster]\nlisten = \"127.0.0.1:7000\"\n",
            // Seeds without listen.
            "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n",
            // Half the TLS files.
            "redis = \"redis://x/\"\n[cluster]\nlisten = \"127.0.0.1:7000\"\ncookie = \"k\"\ntls_cert = \"c.pem\"\n",
            // Bad id.
            "redis = \"redis://x/\"\n[cluster]\nlisten = \"127.0.0.1:7000\"\ncookie = \"k\"\nnode_id = \"a b\"\n",
        ] {
            let raw: RawConfig = toml::from_str(bad).unwrap();
            assert!(NodeConfig::try_from(raw).is_err(), "{bad}");
        }
        assert!(
            NodeConfig::try_from(RawConfig::default())
                .unwrap()
                .cluster
                .is_none()
        );
    }

    #[test]
    fn ws_keys_are_read() {
        let raw: RawConfig = toml::from_str(
            "listen = [\"ws:127.0.0.1:0\"]\nws_allowed_origins = [\"https://a.example\"]\n\
             ws_ping_interval = 10\nws_max_connections = 7\n",
        )
        .unwrap();
        let cfg = NodeConfig::try_from(raw).unwrap();
        assert_eq!(cfg.ws.allowed_origins, vec!["https://a.example".to_owned()]);
        assert_eq!(cfg.ws.ping_interval, Duration::from_secs(10));
        assert_eq!(cfg.ws.max_connections, 7);
        assert!(cfg.tls.is_none());
        let bad: RawConfig = toml::from_str("ws_ping_interval = 0").unwrap();
        assert!(NodeConfig::try_from(bad).is_err());
    }

    #[test]
    fn flow_token_key_is_read_or_left_to_the_engine() {
        let cfg = NodeConfig::try_from(RawConfig::default()).unwrap();
        assert!(cfg.engine.flow_token_key.is_none(), "random at start");
        let raw: RawConfig =
            toml::from_str(&format!("flow_token_key = \"{}\"", "ab".repeat(32))).unwrap();
        let cfg = NodeConfig::try_from(raw).unwrap();
        assert!(cfg.engine.flow_token_key.is_some());
        let bad: RawConfig = toml::from_str("flow_token_key = \"abcd\"").unwrap();
        let err = format!("{:#}", NodeConfig::try_from(bad).unwrap_err());
        assert!(
            err.contains("flow_token_key") && err.contains("64"),
            "{err}"
        );
    }
}
