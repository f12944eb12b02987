//! # The SIP engine of one node: transports → ingress → transaction shards → transports
//!
//! ```text
//!  UDP/TCP readers ──► Ingress::deliver ──(hash of branch / Call-ID)──► Shard 0..N
//!   (transport)        parse once, 400/513         bounded channels      proxy::Core (sans-IO)
//!        ▲             or drop malformed input                            │  │
//!        └────────────── TransportHandle::send ◄── Transmit ──────────────┘  └─► Registrar
//!                                                         (one actor per active AOR) ─► LocationStore
//! ```
//!
//! A shard is a tokio task that owns one sans-IO [`Core`](sipmesh_protocol::proxy::Core): its
//! transactions, response contexts and one timer (the core's earliest deadline). Requests of one
//! transaction always reach the same shard because the shard is chosen from the top Via branch
//! (or the Call-ID for RFC 2543 peers), and responses carry our own branch, which names the shard.

mod admin;
mod dialog_end;
mod ingress;
mod remote;
mod shard;

pub use admin::{EngineAdmin, EngineStatus, HookError, HookTarget, LocalCounts, RtpengineStatus};
pub use remote::{EngineFlows, FlowRelay, RelayFuture, RemoteFrame};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use sipmesh_protocol::dialog::DialogConfig;
use sipmesh_protocol::proxy::{CoreConfig, FlowTokenKey, Incarnation, Listener};
use sipmesh_protocol::registrar::RegistrarPolicy;
use sipmesh_protocol::transaction::TimerConfig;

use crate::dialog::{DialogStore, Dialogs, MemoryDialogStore, RedisDialogStore};
use crate::location::{LocationStore, MemoryLocationStore, RedisLocationStore, RedisStoreConfig};
use crate::registrar::{Registrar, RegistrarConfig};
use crate::transport::{self, Transport, TransportConfig, TransportError, TransportHandle};

pub(crate) use ingress::Ingress;

/// Capacity of each shard's inbound queue; beyond it datagrams are dropped (the peer
/// retransmits) rather than buffered without bound.
const SHARD_QUEUE: usize = 16_384;

/// One listener to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    /// Transport.
    pub kind: Transport,
    /// Address to bind (port 0 picks a free one).
    pub addr: SocketAddr,
}

/// What to do with a request for a domain that is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPolicy {
    /// Answer 403 (the default: an open relay is a toll-fraud hole).
    Refuse,
    /// Forward it to the Request-URI's host.
    Relay,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Listeners.
    pub listen: Vec<ListenSpec>,
    /// Local domains (lowercase).
    pub domains: Vec<String>,
    /// Relay policy for foreign domains.
    pub relay: RelayPolicy,
    /// Largest message accepted.
    pub max_message_size: usize,
    /// Idle TCP connections are closed after this long.
    pub tcp_idle_timeout: Duration,
    /// Most stream connections held at once (all stream transports together).
    pub max_connections: usize,
    /// Registrar rules.
    pub registrar: RegistrarPolicy,
    /// Certificates for TLS and WSS listeners and outgoing TLS (None: no TLS).
    pub tls: Option<transport::TlsConfig>,
    /// WebSocket settings.
    pub ws: transport::WsConfig,
    /// Keep registrations in Redis (None: in memory, the single-node default).
    pub redis: Option<RedisStoreConfig>,
    /// Key of the flow tokens in Record-Route (RFC 5626 §5.2); None: a fresh one from the OS
    /// RNG at start (tokens written before a restart then get 403).
    pub flow_token_key: Option<FlowTokenKey>,
    /// Dialog timeouts (the dialog records go to Redis too when `redis` is set).
    pub dialog: DialogConfig,
    /// Fencing of the Redis stores' owner writes (a clustered node; None: unfenced). Unused
    /// without `redis`.
    pub fence: Option<crate::fence::Fence>,
    /// Most live AOR actors with a networked store (Redis); past it, REGISTERs and lookups
    /// for AORs without an actor are plain store calls. See
    /// [`RegistrarConfig::max_live_actors`].
    pub max_aor_actors: usize,
    /// How long an AOR actor may stay idle before it stops ([`RegistrarConfig::idle_after`]).
    pub aor_idle_after: Duration,
    /// This process's cluster incarnation (0: not clustered): the high bits of its connection
    /// ids, so other nodes know who holds a flow (see [`Incarnation`], [`EngineFlows`]).
    pub incarnation: Incarnation,
    /// Media relaying through rtpengine (None, or no instance: SDP passes untouched).
    pub media: Option<crate::media::MediaConfig>,
    /// The runtime of the signalling hot path (issue 6): a current-thread runtime on a thread of
    /// its own runs the UDP readers and writers, the transaction shards, the media sessions and
    /// the rtpengine ng clients, so one call's datagrams and task hops wake that one thread
    /// rather than ping-ponging between worker threads. The dialog actors run there too when
    /// their store is in memory (no `redis`). The registrar's actors, Redis-backed dialog
    /// actors, stream connections and everything else stay on the runtime that calls
    /// [`Engine::start`]. None: everything on that runtime.
    pub signalling: Option<tokio::runtime::Handle>,
    /// UDP datagrams go straight from the shard to the kernel while the socket's queue is empty
    /// ([`TransportConfig::udp_direct_send`]).
    pub udp_direct_send: bool,
    /// With `signalling` and `redis`: the location store's Redis connection, its pipelining
    /// collector and their tasks run on the signalling runtime too (session 6, issue 4), so a
    /// REGISTER the shard drives never crosses to a worker thread and back (no wake-up per
    /// batch). False: they run on the runtime that calls [`Engine::start`].
    pub location_on_signalling: bool,
}

/// Starts the shards and the expiry sweeper over one store type.
struct ShardSpawn<'a> {
    listeners: Vec<Listener>,
    /// One key for every shard: a token written by one is checked by another.
    flow_token_key: FlowTokenKey,
    config: &'a EngineConfig,
    transport: &'a TransportHandle,
    dialogs: &'a Dialogs,
    flows: &'a Arc<remote::Flows>,
    media: Option<crate::media::MediaSessions>,
}

/// What [`ShardSpawn::start`] started.
struct Started {
    sweeper: JoinHandle<()>,
    shards: Vec<JoinHandle<()>>,
    store_stats: admin::StoreStatsFn,
    registrar: admin::RegistrarHooks,
}

impl ShardSpawn<'_> {
    async fn start<S: LocationStore>(
        self,
        store: Arc<S>,
        registrar_config: RegistrarConfig,
        receivers: Vec<mpsc::Receiver<shard::ShardInput>>,
    ) -> Result<Started, EngineError> {
        let registrar = Registrar::start(store.clone(), registrar_config)
            .await
            .map_err(|e| EngineError::Registrar(e.to_string()))?;
        if self.config.signalling.is_some() {
            // The shards run elsewhere: the AOR actors stay here (and the store's connections,
            // unless `location_on_signalling` put them on the shards' runtime).
            registrar.keep_on(tokio::runtime::Handle::current());
        }
        let stats_store = store.clone();
        let store_stats: admin::StoreStatsFn = Arc::new(move || {
            let store = stats_store.clone();
            Box::pin(async move { store.stats().await })
        });
        let sweeper = tokio::spawn(sweep_expired(store.clone()));
        let shards = receivers
            .into_iter()
            .enumerate()
            .map(|(index, rx)| {
                let core_config = CoreConfig {
                    listeners: self.listeners.clone(),
                    domains: self.config.domains.clone(),
                    relay: self.config.relay == RelayPolicy::Relay,
                    timers: TimerConfig::default(),
                    shard: u8::try_from(index).unwrap_or(u8::MAX),
                    rng_seed: rand::random(),
                    flow_token_key: self.flow_token_key.clone(),
                    incarnation: self.config.incarnation,
                };
                let services = shard::ShardServices {
                    transport: self.transport.clone(),
                    registrar: registrar.clone(),
                    policy: self.config.registrar,
                    dialogs: self.dialogs.clone(),
                    flows: self.flows.clone(),
                    media: self
                        .media
                        .clone()
                        .zip(self.config.media.as_ref().map(|m| m.profiles.clone())),
                };
                let run = shard::run(core_config, rx, services);
                match &self.config.signalling {
                    Some(runtime) => runtime.spawn(run),
                    None => tokio::spawn(run),
                }
            })
            .collect();
        Ok(Started {
            sweeper,
            shards,
            store_stats,
            registrar: admin::RegistrarHooks::new(registrar),
        })
    }
}

/// Why the engine could not start.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A listener could not be opened.
    #[error("opening transports: {0}")]
    Transport(#[from] TransportError),
    /// The Redis URL is not usable.
    #[error("location store: {0}")]
    Redis(crate::location::RedisStoreError),
    /// The rtpengine clients could not be opened.
    #[error("media: {0}")]
    Media(#[from] crate::rtpengine::NgError),
    /// The dialog supervisor did not start.
    #[error("dialog supervisor: {0}")]
    Dialogs(#[source] ractor::SpawnErr),
    /// The registrar's supervisor actor could not start.
    #[error("registrar actors: {0}")]
    Registrar(String),
    /// A start-up step on the signalling runtime did not finish (that runtime shut down).
    #[error("signalling runtime: {0}")]
    Signalling(#[source] tokio::task::JoinError),
}

/// A running engine.
pub struct Engine {
    transport: TransportHandle,
    /// The transport's listener tasks: dropping the set would abort them.
    transport_tasks: tokio::task::JoinSet<()>,
    /// Removes expired bindings from the store.
    sweeper: JoinHandle<()>,
    shards: Vec<JoinHandle<()>>,
    shutdown: Vec<mpsc::Sender<shard::ShardInput>>,
    /// The dialog actors (stopped last; their records stay in the store).
    dialogs: Dialogs,
    local: Vec<(Transport, SocketAddr)>,
    admin: EngineAdmin,
    flows: EngineFlows,
}

impl Engine {
    /// Binds the listeners and starts one shard per worker thread.
    pub async fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let shard_count = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 16);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shard_count).map(|_| mpsc::channel(SHARD_QUEUE)).unzip();
        let flows = Arc::new(remote::Flows::new(config.incarnation));
        let ingress = Arc::new(Ingress::new(senders.clone(), flows.clone()));
        let transport_config = TransportConfig {
            listen: config.listen.iter().map(|l| (l.kind, l.addr)).collect(),
            max_message_size: config.max_message_size,
            tcp_idle_timeout: config.tcp_idle_timeout,
            max_connections: config.max_connections,
            tls: config.tls.clone(),
            ws: config.ws.clone(),
            connection_id_base: config.incarnation.connection_base(),
            udp_direct_send: config.udp_direct_send,
            ..TransportConfig::default()
        };
        let (transport, transport_tasks) =
            transport::start_on(transport_config, ingress.clone(), config.signalling.clone())
                .await?;
        let local = transport.local_addrs().to_vec();
        ingress.set_transport(transport.clone());
        let listeners: Vec<Listener> = local
            .iter()
            .map(|(kind, addr)| Listener {
                transport: *kind,
                addr: *addr,
            })
            .collect();
        let flow_token_key = config.flow_token_key.clone().unwrap_or_else(|| {
            let mut bytes = [0u8; FlowTokenKey::LEN];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            FlowTokenKey::new(bytes)
        });
        let dialog_store: Arc<dyn DialogStore> = match &config.redis {
            Some(redis) => Arc::new(
                RedisDialogStore::new(redis, crate::dialog::redis::DEFAULT_PREFIX)
                    .map_err(EngineError::Redis)?
                    .with_fence(config.fence.clone()),
            ),
            None => Arc::new(MemoryDialogStore::new()),
        };
        let starting = Dialogs::start(dialog_store.clone(), config.dialog);
        // In-memory dialog actors are part of the hot path (a shard tells them of every
        // call's 200, ACK and BYE): on the signalling runtime with the shards. Redis-backed
        // ones write to Redis and stay on this runtime.
        let dialogs = match (&config.signalling, &config.redis) {
            (Some(runtime), None) => runtime
                .spawn(starting)
                .await
                .map_err(EngineError::Signalling)?,
            _ => starting.await,
        }
        .map_err(EngineError::Dialogs)?;
        let cluster_peers = Arc::new(std::sync::RwLock::new(Vec::new()));
        // The node's own BYEs run in shard 0's client transactions (issue 6).
        let originator = dialog_end::Originator {
            // There is always a shard; without one BYEs would go out once, untracked.
            shard: senders
                .first()
                .cloned()
                .unwrap_or_else(|| mpsc::channel(1).0),
            transport: transport.clone(),
        };
        let media = match &config.media {
            Some(m) if !m.instances.is_empty() => {
                let opening =
                    crate::media::MediaSessions::start(m.clone(), Some(dialog_store.clone()));
                // The ng clients' sockets and drivers belong on the signalling runtime.
                let (sessions, timeouts) = match &config.signalling {
                    Some(runtime) => runtime
                        .spawn(opening)
                        .await
                        .map_err(EngineError::Signalling)??,
                    None => opening.await?,
                };
                // Issue 6: a clustered node logs its offered, unconfirmed calls in Redis, so
                // that a survivor deletes their sessions if this node dies.
                if let (Some(redis), Some(fence)) = (&config.redis, &config.fence) {
                    let conn = redis.open_endpoint().map_err(EngineError::Redis)?;
                    sessions.set_pending(crate::media::PendingMedia::start(
                        conn,
                        fence.lease_key(),
                        redis.timeout,
                    ));
                    // Issue 6: CSeq offsets of failed-over calls are shared by every node.
                    let conn = redis.open_endpoint().map_err(EngineError::Redis)?;
                    let single = redis.url.starts_with("redis://")
                        || redis.url.starts_with("rediss://")
                        || redis.url.starts_with("redis+unix://");
                    sessions.share_shifts(
                        crate::media::ShiftSync::new(conn, Some(fence.clone()), redis.timeout),
                        single.then(|| redis.url.clone()),
                    );
                }
                let ends = MediaEnds {
                    store: dialog_store.clone(),
                    dialogs: dialogs.clone(),
                    transport: originator.clone(),
                    local: local.clone(),
                    peers: Arc::clone(&cluster_peers),
                };
                tokio::spawn(media_timeouts(sessions.clone(), timeouts, ends));
                // Issue 6: calls on an instance that died move to a healthy one (re-INVITEs).
                let replies = Arc::new(crate::media::OwnReplies::default());
                ingress.set_own_replies(replies.clone());
                sessions.start_failover(crate::media::FailoverShell {
                    transport: transport.clone(),
                    local: local.clone(),
                    peers: Arc::clone(&cluster_peers),
                    store: dialog_store.clone(),
                    dialogs: dialogs.clone(),
                    replies,
                    down_after: crate::media::DOWN_AFTER,
                });
                Some(sessions)
            }
            _ => None,
        };
        dialogs.set_timeout_hook(dialog_end::bye_both_ends(
            originator,
            local.clone(),
            Arc::clone(&cluster_peers),
            media.clone(),
        ));
        let engine_flows = EngineFlows {
            flows: flows.clone(),
            ingress: ingress.clone(),
            transport: transport.clone(),
            shards: senders.clone(),
            listeners: listeners.clone(),
            cluster_peers,
        };
        let spawn = ShardSpawn {
            flows: &flows,
            listeners,
            flow_token_key,
            config: &config,
            transport: &transport,
            dialogs: &dialogs,
            media: media.clone(),
        };
        let (store_kind, started) = match &config.redis {
            Some(redis) => {
                let store = match (&config.signalling, config.location_on_signalling) {
                    (Some(runtime), true) => {
                        let redis = redis.clone();
                        runtime
                            .spawn(async move { location_store_here(&redis).await })
                            .await
                            .map_err(EngineError::Signalling)?
                    }
                    _ => RedisLocationStore::new(redis),
                }
                .map_err(EngineError::Redis)?
                .with_fence(config.fence.clone());
                // No cached lookups: past the actor cap an AOR is written by plain store calls
                // too, and in a cluster other nodes write it; the actor's copy could be stale.
                let registrar = RegistrarConfig {
                    cache_lookups: false,
                    max_live_actors: config.max_aor_actors,
                    idle_after: config.aor_idle_after,
                    ..RegistrarConfig::for_store_timeout(redis.timeout)
                };
                let started = spawn.start(Arc::new(store), registrar, receivers);
                ("redis", started.await?)
            }
            None => {
                let store = Arc::new(MemoryLocationStore::new());
                // Over the memory store an AOR actor costs more than it adds (a lookup is cheaper
                // than a cache copy, the store serialises): actors only where needed
                // (docs/DESIGN-NOTES.md).
                let registrar = RegistrarConfig {
                    cache_lookups: false,
                    inline_without_actor: true,
                    idle_after: config.aor_idle_after,
                    ..RegistrarConfig::default()
                };
                let started = spawn.start(store, registrar, receivers);
                ("memory", started.await?)
            }
        };
        let Started {
            sweeper,
            shards,
            store_stats,
            registrar,
        } = started;
        let admin = EngineAdmin {
            transport: transport.clone(),
            store_kind,
            store_stats,
            dialogs: dialogs.clone(),
            registrar,
            media,
        };
        Ok(Self {
            transport,
            transport_tasks,
            sweeper,
            shards,
            shutdown: senders,
            dialogs,
            local,
            admin,
            flows: engine_flows,
        })
    }

    /// A handle for the admin endpoint: status and test hooks.
    pub fn admin(&self) -> EngineAdmin {
        self.admin.clone()
    }

    /// The dialog actors of this node (the cluster layer moves them between nodes).
    pub fn dialogs(&self) -> Dialogs {
        self.dialogs.clone()
    }

    /// The media sessions of this node, when media is relayed (the cluster layer moves their
    /// watches with the dialogs and sweeps a dead node's offered calls, issue 6).
    pub fn media(&self) -> Option<crate::media::MediaSessions> {
        self.admin.media.clone()
    }

    /// The handle the cluster layer uses for flows held here or elsewhere.
    pub fn flows(&self) -> EngineFlows {
        self.flows.clone()
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.local.clone()
    }

    /// Stops taking new requests and lets running transactions finish for at most `grace`.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let (quiescent_tx, mut quiescent_rx) = mpsc::unbounded_channel();
        for tx in &self.shutdown {
            let drain = shard::ShardInput::Drain {
                quiescent: quiescent_tx.clone(),
            };
            // A full queue only delays the drain order; the grace period still bounds it.
            let _ = tokio::time::timeout_at(deadline, tx.send(drain)).await;
        }
        drop(quiescent_tx);
        let mut waiting = self.shutdown.len();
        while waiting > 0 {
            match tokio::time::timeout_at(deadline, quiescent_rx.recv()).await {
                Ok(Some(_)) => waiting -= 1,
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        ?grace,
                        shards = waiting,
                        "transactions still running at the end of the grace period"
                    );
                    break;
                }
            }
        }
        for tx in &self.shutdown {
            let _ =
                tokio::time::timeout(Duration::from_millis(200), tx.send(shard::ShardInput::Stop))
                    .await;
        }
        drop(self.shutdown);
        let _ = tokio::time::timeout(Duration::from_secs(1), futures_join_all(self.shards)).await;
        self.sweeper.abort();
        self.dialogs.stop();
        self.admin.registrar.shutdown();
        // The last answers the shards queued are still in the transport's send queues; the
        // writers flush them within a few milliseconds.
        tokio::time::sleep(TRANSPORT_FLUSH).await;
        self.transport.shutdown();
        drop(self.transport_tasks);
    }
}

/// Time given to the transport writers to send what the shards queued before it stops.
const TRANSPORT_FLUSH: Duration = Duration::from_millis(100);

/// How often expired bindings are removed. Lookups never return an expired binding, so this
/// only bounds how long the memory of a binding outlives it.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Longest wait at start for the location store's first PING on the signalling runtime.
const LOCATION_WARM_UP: Duration = Duration::from_secs(1);

/// A Redis location store whose tasks (the pipelining collector, the connection's driver) run
/// on the calling runtime: created here and connected once from here with a PING, because the
/// connection's driver task is spawned by whichever task first uses the lazy connection (the
/// expiry sweeper would otherwise, on a worker). A server that does not answer within
/// [`LOCATION_WARM_UP`] does not stop the start: the store connects lazily, as without this
/// (its connection's tasks then start wherever it is first used).
async fn location_store_here(
    redis: &RedisStoreConfig,
) -> Result<RedisLocationStore, crate::location::RedisStoreError> {
    match tokio::time::timeout(LOCATION_WARM_UP, RedisLocationStore::connect(redis)).await {
        Ok(Ok(store)) => Ok(store),
        // Unreachable for now (or a URL error, which `new` reports again).
        Ok(Err(_)) | Err(_) => RedisLocationStore::new(redis),
    }
}

async fn sweep_expired<S: LocationStore>(store: Arc<S>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.sweep_expired(std::time::SystemTime::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired bindings swept"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired bindings failed"),
        }
    }
}

/// Calls whose media stopped (issue 6): a BYE to both ends built from the dialog record, the
/// dialog ended, the rtpengine session deleted.
async fn media_timeouts(
    sessions: crate::media::MediaSessions,
    mut timeouts: mpsc::UnboundedReceiver<crate::media::TimedOut>,
    ends: MediaEnds,
) {
    use sipmesh_protocol::dialog::{DialogEvent, DialogId, EndReason};
    while let Some(t) = timeouts.recv().await {
        tracing::info!(call_id = %t.call_id, "media timeout: ending the call");
        if let (Some(from), Some(to)) = (&t.from_tag, &t.to_tag) {
            let id = DialogId::new(t.call_id.clone(), from.clone(), to.clone());
            match crate::dialog::store::load_either(ends.store.as_ref(), &id).await {
                Ok(Some(dialog)) => {
                    let local = &ends.local;
                    // A cluster member's Record-Route counts as ours too: an adopted call's
                    // route names the dead node that set it up.
                    let peers = ends
                        .peers
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    let ours = |route: &str| {
                        local.iter().any(|(_, a)| route.contains(&a.to_string()))
                            || peers.iter().any(|p| route.contains(&p.addr.to_string()))
                    };
                    dialog_end::send_byes(&ends.transport, local, ours, &dialog);
                    ends.dialogs.handle(DialogEvent::Terminated {
                        id: dialog.id.clone(),
                        reason: EndReason::Timeout,
                    });
                }
                Ok(None) => tracing::warn!(call_id = %t.call_id, "media timeout: no dialog record"),
                Err(e) => tracing::warn!(error = %e, "media timeout: dialog record unreadable"),
            }
        }
        dialog_end::delete_session(
            &sessions,
            &t.call_id,
            t.from_tag.as_deref(),
            t.to_tag.as_deref(),
        );
    }
}

/// What ending a call from the middle needs.
struct MediaEnds {
    store: Arc<dyn DialogStore>,
    dialogs: Dialogs,
    transport: dialog_end::Originator,
    local: Vec<(Transport, SocketAddr)>,
    /// The cluster members' SIP listeners.
    peers: Arc<std::sync::RwLock<Vec<Listener>>>,
}

async fn futures_join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}
