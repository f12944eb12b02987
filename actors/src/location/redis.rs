//! Redis-backed location store: bindings shared by every node that points at one Redis.
//!
//! Every REGISTER is **one** server-side Lua script (`redis/register.lua`) that reads the AOR,
//! applies the stateful registrar rules (Call-ID/CSeq ordering, add/refresh/remove, `*`,
//! instance/reg-id replacement, the contact limit) and writes the result with its indexes, so
//! two concurrent REGISTERs for one AOR are serialised by Redis and never lose a binding. The
//! request-only rules (q-values, `Min-Expires`, the wildcard form, granted expiries) run here
//! first, in the same order as [`apply_register`](sipmesh_protocol::registrar::apply_register),
//! and the script gets finished binding records. URI equivalence (RFC 3261 §19.1.4) is a Lua
//! port of [`contact_uris_equivalent`](sipmesh_protocol::registrar::contact_uris_equivalent).
//! On a single server or Sentinel the REGISTERs of one pipelined batch go as one call of the
//! several-AORs function (`redis/register_many.lua`, the same rules per AOR, one reply each; see
//! `redis/batch.rs`).
//!
//! Key layout of a single server or Sentinel (see `docs/REDIS.md`; Redis Cluster: `redis/cluster.rs`),
//! with the configurable prefix `P` (default `sipmesh:loc:`):
//! - `P aor:<AOR>`: string, the AOR's bindings (netstring format of `redis/codec.rs`), each with an absolute
//!   expiry in wall-clock milliseconds;
//! - `P exp`: sorted set of AORs scored by their earliest expiry (for [`LocationStore::sweep_expired`]);
//! - `P conn:<scope>:<id>`: set of AORs with a binding over that connection (for
//!   [`LocationStore::remove_connection`], no scan);
//! - `P bindings`: counter of stored bindings (for [`LocationStore::stats`]);
//! - `P closed:<AOR>`: the latest expiry (ms) of the flow bindings that
//!   [`LocationStore::remove_connection`] took from an AOR it left empty, for
//!   [`LocationStore::flows_closed`] (480 rather than 404); deleted when the AOR registers again,
//!   and expiring by itself after [`RedisStoreConfig::flows_closed_ttl`].
//!
//! Faults: every call is bounded by [`RedisStoreConfig::timeout`] (default 500 ms), and at most
//! [`RedisStoreConfig::max_in_flight`] calls are outstanding; past either bound the caller gets
//! [`StoreError::Unavailable`]. The [`RedisEndpoint`] reconnects by itself in the background,
//! with a back-off capped at 400 ms, and with a `redis+sentinel://` URL follows a failover to the
//! new master. With [`RedisStoreConfig::replica_wait`], every batch of REGISTER writes is
//! followed by `WAIT` (see [`ReplicaWait`]).
//!
//! Fencing (issue 5): with a [`Fence`] ([`with_fence`](RedisLocationStore::with_fence), a
//! clustered node), REGISTER and connection-removal writes carry this node's lease key and epoch;
//! while fenced they fail at once with [`UnavailableReason::Fenced`], and a write whose epoch is
//! no longer the lease's is refused by the script (`STALE_EPOCH`, nothing written) and reported
//! the same way. The expiry sweep is not fenced: it only deletes what has expired, the same on
//! any node. Without a fence the scripts get `''` as the epoch and skip the check. On a Redis
//! Cluster the lease key is in another slot: the scripts check a per-AOR fencing token instead
//! (`fence_token_holds` in `common.lua`; docs/REDIS.md, "Fenced writes on a Cluster").
//!
//! A single server (`redis://`, `redis+unix://`) and Sentinel (`redis+sentinel://`) use the
//! layout above. On a Redis Cluster (`redis+cluster://`) every key a script touches must be in one
//! hash slot, so the store switches to the Cluster layout of `redis/cluster.rs` (hash-tagged AOR
//! keys, bucketed indexes updated after the AOR script; the same registrar rules).
//!
//! A REGISTER the script refuses for its CSeq is checked once more here: when the stored
//! bindings record exactly its result (a retransmission whose transaction died with another
//! node, [`is_applied_repeat`](sipmesh_protocol::registrar::is_applied_repeat)), it gets 200
//! with those bindings and nothing is written.

mod batch;
mod cluster;
mod codec;
mod library;
mod msgpack;
#[cfg(test)]
mod refresh_path;
mod register_call;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::redis::{RedisError, Script, Value};
use bytes::Bytes;
use sipmesh_protocol::peer::ConnectionId;
use sipmesh_protocol::registrar::{
    Aor, Binding, RegisterError, RegisterOutcome, RegisterRequest, RegistrarPolicy,
    RequestContacts, is_applied_repeat,
};
use tokio::sync::Semaphore;

pub use codec::CodecError;

use crate::fence::{Fence, FenceCheck, is_stale_epoch};
use crate::location::store::{LocationStore, StoreError, StoreStats, UnavailableReason};
use crate::redis_endpoint::{
    EndpointConfig, EndpointError, EndpointUrlError, RedisEndpoint, ReplicaWait, ReplicaWaiter,
};

/// Shared Lua helpers, prepended to every script.
const COMMON_LUA: &str = include_str!("redis/common.lua");
/// The prelude of the register library: the shared helpers and the REGISTER rules.
const REGISTER_PRELUDE_LUA: &str = concat!(
    include_str!("redis/common.lua"),
    "\n",
    include_str!("redis/register_rules.lua")
);
/// The REGISTER script (one AOR).
const REGISTER_LUA: &str = include_str!("redis/register.lua");
/// Several REGISTERs in one call (single server or Sentinel).
const REGISTER_MANY_LUA: &str = include_str!("redis/register_many.lua");
/// The expiry sweep script.
const SWEEP_LUA: &str = include_str!("redis/sweep.lua");
/// The connection-removal script.
const REMOVE_CONNECTION_LUA: &str = include_str!("redis/remove_connection.lua");
/// The single-server key layout of the register script.
const LAYOUT_SINGLE_LUA: &str = include_str!("redis/layout_single.lua");

pub use cluster::{DEFAULT_BUCKETS, IndexRepair};

/// Settings of a [`RedisLocationStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host[:port][/db]`, `redis+unix:///path`,
    /// `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]`, or
    /// `redis+cluster://[[user]:password@]host[:port][,host[:port]…][/]` (see
    /// [`crate::redis_endpoint::url`]).
    pub url: String,
    /// Prefix of every key, so several deployments can share a server.
    pub key_prefix: String,
    /// Namespace of this node's connection ids in the connection index (connection ids are
    /// only unique per process); use the node name in a cluster.
    pub connection_scope: String,
    /// Bound on every call, queueing included.
    pub timeout: Duration,
    /// Most calls outstanding at once; more wait (within `timeout`) rather than queue without
    /// bound.
    pub max_in_flight: usize,
    /// AORs examined per sweep script run (keeps each run short).
    pub sweep_batch: usize,
    /// Redis Cluster only: number of buckets the expiry index and the binding counter are
    /// spread over (each bucket is one hash slot; see docs/REDIS.md, "Redis Cluster").
    pub cluster_buckets: u32,
    /// Lifetime of a closed-flows marker (`P closed:<AOR>`): the bound on how long an AOR whose
    /// flows closed answers 480 rather than 404. The marker's own value (the removed bindings'
    /// latest expiry) ends it earlier; keep this at least the registrar's `max_expires`.
    pub flows_closed_ttl: Duration,
    /// `WAIT` for this many replicas after writes (None: don't wait). Bounds the loss of
    /// acknowledged writes in a Sentinel failover; see docs/REDIS.md for the measured cost.
    pub replica_wait: Option<ReplicaWait>,
}

impl RedisStoreConfig {
    /// Defaults for `url`: prefix `sipmesh:loc:`, scope `local`, 500 ms timeout, 4096 calls in
    /// flight, sweep batches of 256 AORs, closed-flows markers kept at most 3600 s (the
    /// registrar's default `max_expires`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "sipmesh:loc:".to_owned(),
            connection_scope: "local".to_owned(),
            timeout: Duration::from_millis(500),
            max_in_flight: 4096,
            sweep_batch: 256,
            cluster_buckets: DEFAULT_BUCKETS,
            flows_closed_ttl: Duration::from_secs(3600),
            replica_wait: None,
        }
    }

    /// The connection settings of the endpoint.
    pub fn endpoint(&self) -> EndpointConfig {
        EndpointConfig {
            pipeline_buffer: self.max_in_flight.max(1),
            ..EndpointConfig::new(self.timeout)
        }
    }

    /// Opens the endpoint of [`url`](Self::url).
    pub fn open_endpoint(&self) -> Result<RedisEndpoint, RedisStoreError> {
        RedisEndpoint::new(&self.url, &self.endpoint()).map_err(|e| match e {
            EndpointError::Url(e) => RedisStoreError::Url(e),
            EndpointError::Client(e) => RedisStoreError::InvalidUrl(e),
        })
    }
}

/// Why a [`RedisLocationStore`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    /// The URL is of a refused form (Redis Cluster, a malformed Sentinel URL).
    #[error(transparent)]
    Url(#[from] EndpointUrlError),
    /// The URL does not parse.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] RedisError),
    /// The server did not answer a first PING within the timeout.
    #[error("Redis did not answer within {0:?}")]
    ConnectTimeout(Duration),
    /// The server refused or failed the first PING.
    #[error("cannot reach Redis: {0}")]
    Connect(#[source] RedisError),
}

/// Key names derived from the prefix.
#[derive(Debug, Clone)]
struct Keys {
    /// Prefix of AOR keys.
    aor: String,
    /// The expiry index.
    expiry: String,
    /// The binding counter.
    count: String,
    /// Prefix of connection-index keys.
    connection: String,
    /// Prefix of closed-flows markers.
    closed: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            aor: format!("{prefix}aor:"),
            expiry: format!("{prefix}exp"),
            count: format!("{prefix}bindings"),
            connection: format!("{prefix}conn:"),
            closed: format!("{prefix}closed:"),
        }
    }

    fn aor(&self, aor: &Aor) -> Vec<u8> {
        prefixed(&self.aor, aor)
    }

    fn closed(&self, aor: &Aor) -> Vec<u8> {
        prefixed(&self.closed, aor)
    }
}

/// `prefix` followed by the AOR's bytes.
fn prefixed(prefix: &str, aor: &Aor) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + aor.as_bytes().len());
    k.extend_from_slice(prefix.as_bytes());
    k.extend_from_slice(aor.as_bytes());
    k
}

/// The Redis [`LocationStore`]. Cheap to share behind an `Arc`; calls run concurrently over one
/// multiplexed connection.
#[derive(Clone)]
pub struct RedisLocationStore {
    conn: RedisEndpoint,
    keys: Arc<Keys>,
    scope: Arc<str>,
    timeout: Duration,
    sweep_batch: usize,
    flows_closed_ttl_ms: u64,
    permits: Arc<Semaphore>,
    /// Pipelines the REGISTER script and lookups.
    batch: batch::Batcher,
    register_script: Arc<library::RegisterScript>,
    sweep_script: Arc<Script>,
    remove_connection_script: Arc<Script>,
    /// Fencing of owner writes (None: a single node, unfenced).
    fence: Option<Fence>,
    /// The Cluster layout (None: a single server or Sentinel).
    cluster: Option<Arc<cluster::ClusterLayout>>,
}

impl std::fmt::Debug for RedisLocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocationStore")
            .field("keys", &self.keys)
            .field("scope", &self.scope)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What the register script needs besides the request's identity.
struct RegisterPlan {
    /// `Q`, `S` or `L` (see `register.lua`).
    mode: &'static str,
    /// The script arguments of each Contact, [`codec::CONTACT_ARGS`] each (expiry 0 =
    /// removal).
    contacts: Vec<[Vec<u8>; codec::CONTACT_ARGS]>,
    /// Path values for the 200 OK.
    response_path: Vec<Bytes>,
}

impl RedisLocationStore {
    /// A store for `config` that connects lazily (in the background, and again after every
    /// outage). Must be called inside a Tokio runtime.
    pub fn new(config: &RedisStoreConfig) -> Result<Self, RedisStoreError> {
        let conn = config.open_endpoint()?;
        let script = |body: &str| Arc::new(Script::new(&format!("{COMMON_LUA}\n{body}")));
        let cluster = conn.is_cluster().then(|| {
            Arc::new(cluster::ClusterLayout::new(
                &config.key_prefix,
                config.cluster_buckets,
            ))
        });
        let keys = Keys::new(&config.key_prefix);
        let register_script = match &cluster {
            Some(layout) => Arc::clone(&layout.register),
            None => Arc::new(library::RegisterScript::with_many(
                REGISTER_PRELUDE_LUA,
                &format!("{LAYOUT_SINGLE_LUA}\n{REGISTER_LUA}"),
                REGISTER_MANY_LUA,
            )),
        };
        let batch = batch::Batcher::spawn(
            conn.clone(),
            config.max_in_flight.max(1),
            config.replica_wait.map(ReplicaWaiter::new),
            Arc::new(register_call::SingleRegister {
                script: Arc::clone(&register_script),
                expiry: keys.expiry.clone(),
                count: keys.count.clone(),
                connection: keys.connection.clone(),
            }),
        );
        Ok(Self {
            batch,
            conn,
            keys: Arc::new(keys),
            scope: Arc::from(config.connection_scope.as_str()),
            timeout: config.timeout,
            sweep_batch: config.sweep_batch.max(1),
            flows_closed_ttl_ms: u64::try_from(config.flows_closed_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            register_script,
            cluster,
            sweep_script: script(SWEEP_LUA),
            remove_connection_script: script(REMOVE_CONNECTION_LUA),
            fence: None,
        })
    }

    /// Fences this store's owner writes with `fence` (None: unfenced, the single-node default).
    #[must_use]
    pub fn with_fence(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    /// The lease check for one owner write: `Ok(None)` when unfenced,
    /// `Err(Unavailable(Fenced))` when this node must not write now.
    fn fence_check(&self) -> Result<Option<FenceCheck>, StoreError> {
        self.fence
            .as_ref()
            .map(Fence::check)
            .transpose()
            .map_err(StoreError::Unavailable)
    }

    /// Like [`new`](Self::new), then checks with a PING that the server answers.
    pub async fn connect(config: &RedisStoreConfig) -> Result<Self, RedisStoreError> {
        let store = Self::new(config)?;
        let mut conn = store.conn.clone();
        let cmd = ::redis::cmd("PING");
        let ping = cmd.query_async::<()>(&mut conn);
        match tokio::time::timeout(config.timeout, ping).await {
            Ok(Ok(())) => Ok(store),
            Ok(Err(e)) => Err(RedisStoreError::Connect(e)),
            Err(_) => Err(RedisStoreError::ConnectTimeout(config.timeout)),
        }
    }

    /// Removes the flow bindings of one stored connection text (`scope:id`), as
    /// `remove_connection` does for this node's own connections.
    async fn remove_connection_text(&self, text: String) -> Result<usize, StoreError> {
        let fence = self.fence_check()?;
        if self.cluster.is_some() {
            let fence = fence.as_ref().map(|f| (&*f.lease_key, f.epoch));
            return self.cluster_remove_connection(&text, fence).await;
        }
        let mut conn = self.conn.clone();
        let mut call = self.remove_connection_script.prepare_invoke();
        call.key(&self.keys.expiry).key(&self.keys.count);
        if let Some(fence) = &fence {
            call.key(&*fence.lease_key);
        }
        call.arg(text)
            .arg(&self.keys.aor)
            .arg(&self.keys.connection)
            .arg(&self.keys.closed)
            .arg(self.flows_closed_ttl_ms);
        match &fence {
            Some(fence) => call.arg(fence.epoch),
            None => call.arg(""),
        };
        self.bounded(call.invoke_async::<usize>(&mut conn)).await
    }

    /// Removes the flow bindings of every connection of `scope` (another node's, declared dead
    /// by the cluster, or this node's own from before a restart: no connection of a process
    /// outlives it) and marks the AORs left empty as closed flows, so requests to them get 480
    /// until the users register again. Connections for which `keep` holds are left alone (a
    /// restarted node keeps its new process's). Walks the connection index with `SCAN` (on a
    /// Redis Cluster, on every master); returns the number of bindings removed.
    pub async fn remove_scope_connections(
        &self,
        scope: &str,
        keep: impl Fn(ConnectionId) -> bool,
    ) -> Result<usize, StoreError> {
        // Single server: `P conn:<scope>:<id>`; Cluster: `P{conn:<scope>:<id>}`, spread over
        // every master, so the walk visits each (`RedisEndpoint::scan_targets`).
        let (index_prefix, suffix) = match &self.cluster {
            Some(layout) => (format!("{}{{conn:", layout.prefix()), "}"),
            None => (self.keys.connection.clone(), ""),
        };
        let pattern = format!(
            "{}{}:*{}",
            glob_escape(&index_prefix),
            glob_escape(scope),
            glob_escape(suffix)
        );
        let targets = self.bounded(self.conn.scan_targets()).await?;
        let mut removed = 0;
        // A failing master (down, no replica) stops neither the walk of the others nor the
        // removal of the connections that do not touch it; the first error is reported at the
        // end, so the caller retries.
        let mut failed = None;
        for target in targets {
            let mut cursor: u64 = 0;
            loop {
                let page = self
                    .bounded(self.conn.scan_page(target, cursor, &pattern, 500))
                    .await;
                let (next, keys) = match page {
                    Ok(page) => page,
                    Err(e) => {
                        failed.get_or_insert(e);
                        break;
                    }
                };
                for key in keys {
                    let Some(text) = key
                        .strip_prefix(&index_prefix)
                        .and_then(|t| t.strip_suffix(suffix))
                    else {
                        continue;
                    };
                    // Exactly `scope:<digits>`: not a longer scope that starts with this one.
                    let id = text
                        .strip_prefix(scope)
                        .and_then(|r| r.strip_prefix(':'))
                        .and_then(|id| id.parse::<u64>().ok());
                    if id.is_some_and(|id| !keep(ConnectionId(id))) {
                        match self.remove_connection_text(text.to_owned()).await {
                            Ok(n) => removed += n,
                            Err(e) => {
                                failed.get_or_insert(e);
                            }
                        }
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// The Redis key holding the bindings of `aor` (for tools and tests).
    pub fn aor_key(&self, aor: &Aor) -> Vec<u8> {
        match &self.cluster {
            Some(layout) => layout.aor_key(aor),
            None => self.keys.aor(aor),
        }
    }

    /// The Redis key of `aor`'s closed-flows marker.
    fn closed_key(&self, aor: &Aor) -> Vec<u8> {
        match &self.cluster {
            Some(layout) => layout.closed_key(aor),
            None => self.keys.closed(aor),
        }
    }

    /// Whether the store uses the Redis Cluster layout.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Evaluates the Lua port of RFC 3261 §19.1.4 URI equivalence used by the register script
    /// on `a` and `b`: a self-check (tests compare it with
    /// [`contact_uris_equivalent`](sipmesh_protocol::registrar::contact_uris_equivalent)).
    pub async fn lua_uri_equivalent(&self, a: &[u8], b: &[u8]) -> Result<bool, StoreError> {
        let script = Script::new(&format!(
            "{COMMON_LUA}\nreturn uri_equivalent(ARGV[1], ARGV[2]) and 1 or 0"
        ));
        let mut conn = self.conn.clone();
        let mut call = script.prepare_invoke();
        call.arg(a).arg(b);
        let n: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(n == 1)
    }

    /// Runs `work` with a permit and within the timeout.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let guarded = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| StoreError::Unavailable(UnavailableReason::Disconnected))?;
            work.await.map_err(unavailable)
        };
        tokio::time::timeout(self.timeout, guarded)
            .await
            .unwrap_or(Err(StoreError::Unavailable(UnavailableReason::Timeout)))
    }

    /// Runs `cmd` in the next pipelined batch, with a permit and within the timeout; `write`
    /// marks a command that the batch's `WAIT` (if configured) must cover.
    async fn batched(&self, request: batch::Request, write: bool) -> Result<Value, StoreError> {
        let query = self.batch.query(request, write);
        let reply = self
            .bounded(async {
                query.await.map_err(|batch::Closed| {
                    RedisError::from((::redis::ErrorKind::Io, "location store queue closed"))
                })
            })
            .await?;
        reply.map_err(unavailable)
    }

    /// The request-only rules of `apply_register`, in its order, and the encoded contacts.
    fn plan(
        &self,
        req: &RegisterRequest,
        policy: &RegistrarPolicy,
        now: SystemTime,
    ) -> Result<RegisterPlan, RegisterError> {
        let response_path = if req.supports_path {
            req.path.clone()
        } else {
            Vec::new()
        };
        let star = |response_path| {
            if req.expires_header == Some(0) {
                Ok(RegisterPlan {
                    mode: "S",
                    contacts: Vec::new(),
                    response_path,
                })
            } else {
                Err(RegisterError::StarWithNonZeroExpires)
            }
        };
        let list = match &req.contacts {
            RequestContacts::None => {
                return Ok(RegisterPlan {
                    mode: "Q",
                    contacts: Vec::new(),
                    response_path,
                });
            }
            RequestContacts::Star => return star(response_path),
            RequestContacts::List(list) => list,
        };
        if list.iter().any(|c| c.uri.trim_ascii() == b"*") {
            return if list.len() == 1 {
                star(response_path)
            } else {
                Err(RegisterError::StarWithOtherContacts)
            };
        }
        let mut granted = Vec::with_capacity(list.len());
        for c in list {
            if c.q.is_some_and(|q| q > 1000) {
                return Err(RegisterError::InvalidQValue);
            }
            let asked = c
                .expires
                .or(req.expires_header)
                .unwrap_or(policy.default_expires);
            if asked != 0 && asked < policy.min_expires {
                return Err(RegisterError::IntervalTooBrief {
                    min_expires: policy.min_expires,
                });
            }
            granted.push(asked.min(policy.max_expires));
        }
        let mut contacts = Vec::with_capacity(list.len());
        for (c, &expires) in list.iter().zip(&granted) {
            let expires_at = if expires == 0 {
                now
            } else {
                now.checked_add(Duration::from_secs(u64::from(expires)))
                    .ok_or(RegisterError::ExpiryOverflow)?
            };
            let binding = Binding {
                contact: c.uri.clone(),
                q: c.q.unwrap_or(policy.default_q),
                expires_at,
                call_id: req.call_id.clone(),
                cseq: req.cseq,
                path: req.path.clone(),
                instance: c.instance.clone(),
                reg_id: c.reg_id,
                source: req.source,
            };
            let ms = if expires == 0 {
                0
            } else {
                codec::millis(expires_at)
            };
            contacts.push(codec::binding_args(&binding, ms, &self.scope));
        }
        Ok(RegisterPlan {
            mode: "L",
            contacts,
            response_path,
        })
    }
}

impl RedisLocationStore {
    /// The answer to a REGISTER the script refused for its CSeq: 200 with the stored bindings
    /// when they record exactly this request's result (a copy whose transaction died with
    /// another node, [`is_applied_repeat`]), else the 400. Nothing is written. The check reads
    /// the AOR after the script: a REGISTER landing in between can only turn a repeat back into
    /// the 400 the plain rule gives, never make another request pass.
    async fn applied_repeat(
        &self,
        req: &RegisterRequest,
        policy: &RegistrarPolicy,
        now: SystemTime,
        response_path: Vec<Bytes>,
    ) -> Result<RegisterOutcome, StoreError> {
        let bindings = self.lookup(&req.aor, now).await?;
        if is_applied_repeat(&bindings, req, policy, now) {
            tracing::debug!(
                cseq = req.cseq,
                "REGISTER copy already applied: 200, no write"
            );
            Ok(RegisterOutcome {
                bindings,
                changed: false,
                response_path,
            })
        } else {
            Err(RegisterError::CSeqOutOfOrder.into())
        }
    }
}

/// Maps a client error to the 503 cause (a write refused by the epoch check: fenced).
fn unavailable(e: RedisError) -> StoreError {
    if is_stale_epoch(&e) {
        return StoreError::Unavailable(UnavailableReason::Fenced);
    }
    if e.is_timeout() {
        return StoreError::Unavailable(UnavailableReason::Timeout);
    }
    if !(e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()) {
        tracing::error!(error = %e, "redis location store: unexpected error");
    }
    StoreError::Unavailable(UnavailableReason::Disconnected)
}

/// A malformed reply or stored value: logged, and reported as unavailable (the store cannot be
/// trusted for this AOR).
fn bad_reply(what: &str) -> StoreError {
    tracing::error!(what, "redis location store: malformed reply");
    StoreError::Unavailable(UnavailableReason::Disconnected)
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn decode(value: Vec<u8>) -> Result<Vec<Binding>, StoreError> {
    codec::decode_set(&Bytes::from(value)).map_err(|e| bad_reply(&e.to_string()))
}

impl LocationStore for RedisLocationStore {
    fn register(
        &self,
        req: RegisterRequest,
        policy: &RegistrarPolicy,
        now: SystemTime,
    ) -> impl Future<Output = Result<RegisterOutcome, StoreError>> + Send {
        let plan = self.plan(&req, policy, now);
        let max_contacts = policy.max_contacts;
        let policy = *policy;
        async move {
            let started = tokio::time::Instant::now();
            let plan = plan?;
            let fence = self.fence_check()?;
            let reply = match &self.cluster {
                None => {
                    let call = register_call::RegisterCall {
                        aor_key: self.keys.aor(&req.aor),
                        closed_key: self.keys.closed(&req.aor),
                        now_ms: codec::millis(now),
                        mode: plan.mode,
                        call_id: req.call_id.clone(),
                        cseq: req.cseq,
                        max_contacts,
                        aor: req.aor.clone(),
                        fence,
                        contacts: plan.contacts,
                    };
                    self.batched(batch::Request::Register(call), true).await?
                }
                Some(layout) => {
                    let cmd =
                        layout.register_command(&req, &plan, now, max_contacts, fence.as_ref());
                    self.bounded(library::query(
                        &mut self.conn.clone(),
                        &cmd,
                        &self.register_script,
                    ))
                    .await?
                }
            };
            let mut reply = match reply {
                // The refresh fast path answers with the new AOR value alone: {'OK', 1, value}.
                value @ Value::BulkString(_) => {
                    vec![Value::BulkString(b"OK".to_vec()), Value::Int(1), value]
                }
                Value::Array(reply) => reply,
                _ => return Err(bad_reply("register script reply")),
            };
            // The AOR value is taken out of the reply, not copied: the decoded bindings share
            // its buffer.
            let value = match reply.get_mut(2) {
                Some(Value::BulkString(value)) => std::mem::take(value),
                _ => Vec::new(),
            };
            match reply.as_slice() {
                [status, changed, _, effects @ ..] if bytes_of(status) == Some(b"OK") => {
                    let bindings = decode(value)?;
                    let changed = matches!(changed, Value::Int(1));
                    if changed && self.cluster.is_some() {
                        // The index updates share the call's time bound with the script.
                        let left = self.timeout.saturating_sub(started.elapsed());
                        tokio::time::timeout(
                            left,
                            self.cluster_register_followup(&req.aor, effects),
                        )
                        .await
                        .unwrap_or(Err(StoreError::Unavailable(UnavailableReason::Timeout)))?;
                    }
                    Ok(RegisterOutcome {
                        bindings,
                        changed,
                        response_path: plan.response_path,
                    })
                }
                [status] if bytes_of(status) == Some(b"CSEQ") => {
                    self.applied_repeat(&req, &policy, now, plan.response_path)
                        .await
                }
                [status] if bytes_of(status) == Some(b"MAX") => {
                    Err(RegisterError::TooManyContacts { max: max_contacts }.into())
                }
                _ => Err(bad_reply("register script reply")),
            }
        }
    }

    fn lookup(
        &self,
        aor: &Aor,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send {
        let key = self.aor_key(aor);
        async move {
            let mut cmd = ::redis::cmd("GET");
            cmd.arg(key);
            let reply = if self.cluster.is_some() {
                let mut conn = self.conn.clone();
                self.bounded(cmd.query_async::<Value>(&mut conn)).await?
            } else {
                self.batched(batch::Request::Cmd(cmd), false).await?
            };
            let mut bindings = match reply {
                Value::Nil => Vec::new(),
                Value::BulkString(value) => decode(value)?,
                _ => return Err(bad_reply("lookup reply")),
            };
            bindings.retain(|b| !b.is_expired(now));
            Ok(bindings)
        }
    }

    async fn remove_connection(&self, connection: ConnectionId) -> Result<usize, StoreError> {
        self.remove_connection_text(codec::connection_text(&self.scope, connection))
            .await
    }

    async fn flows_closed(&self, aor: &Aor, now: SystemTime) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = ::redis::pipe();
        pipe.cmd("GET")
            .arg(self.closed_key(aor))
            .cmd("GET")
            .arg(self.aor_key(aor));
        let (until, value): (Option<Vec<u8>>, Option<Vec<u8>>) =
            self.bounded(pipe.query_async(&mut conn)).await?;
        let Some(until) = until else {
            return Ok(false);
        };
        let until: u64 = std::str::from_utf8(&until)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad_reply("closed-flows marker"))?;
        if until <= codec::millis(now) {
            return Ok(false);
        }
        let bindings = value.map(decode).transpose()?.unwrap_or_default();
        Ok(bindings.iter().all(|b| b.is_expired(now)))
    }

    async fn sweep_expired(&self, now: SystemTime) -> Result<usize, StoreError> {
        if self.cluster.is_some() {
            return self.cluster_sweep(codec::millis(now)).await;
        }
        let mut removed = 0;
        loop {
            let mut conn = self.conn.clone();
            let mut call = self.sweep_script.prepare_invoke();
            call.key(&self.keys.expiry)
                .key(&self.keys.count)
                .arg(codec::millis(now))
                .arg(self.sweep_batch)
                .arg(&self.keys.aor)
                .arg(&self.keys.connection)
                .arg(&self.keys.closed);
            let (n, visited): (usize, usize) = self.bounded(call.invoke_async(&mut conn)).await?;
            removed += n;
            if visited < self.sweep_batch {
                return Ok(removed);
            }
        }
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        if self.cluster.is_some() {
            return self.cluster_stats().await;
        }
        let mut conn = self.conn.clone();
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZCARD")
            .arg(&self.keys.expiry)
            .cmd("GET")
            .arg(&self.keys.count);
        let (aors, bindings): (usize, Option<i64>) =
            self.bounded(pipe.query_async(&mut conn)).await?;
        Ok(StoreStats {
            aors,
            bindings: usize::try_from(bindings.unwrap_or(0)).unwrap_or(0),
        })
    }
}

/// `s` with the `SCAN MATCH` glob characters escaped.
fn glob_escape(s: &str) -> String {
    s.chars()
        .fold(String::with_capacity(s.len()), |mut out, c| {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
            out
        })
}
