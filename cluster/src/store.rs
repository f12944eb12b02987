//! The cluster's keys in Redis: this node's lease, the member registry, and the fenced-write
//! check for owner writes. Layout in docs/REDIS.md ("Cluster keys").
//!
//! Every call is bounded by [`Timing::redis_timeout`](crate::config::Timing::redis_timeout):
//! the lease task must learn quickly that Redis is gone, so that the node fences itself in time.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};

use crate::detector::RegistryEntry;
use crate::id::{Epoch, NodeId};
use crate::lease::{LeaseReply, LeaseRequest};

/// Lua source of the `check_epoch(prefix, node, epoch)` function, to prepend to store scripts
/// whose writes must be fenced.
pub const CHECK_EPOCH_LUA: &str = include_str!("lua/check_epoch.lua");

const LEASE_LUA: &str = include_str!("lua/lease.lua");
const MEMBERS_LUA: &str = include_str!("lua/members.lua");
const FENCED_SET_LUA: &str = include_str!("lua/fenced_set.lua");

/// A failed cluster call to Redis.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL cannot be used.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] RedisError),
    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error or the connection failed.
    #[error("Redis error: {0}")]
    Redis(#[from] RedisError),
    /// A fenced write was refused: the epoch is not the node's current lease epoch.
    #[error("stale epoch: the write was fenced off")]
    StaleEpoch,
    /// A registry entry could not be read back.
    #[error("malformed registry entry for {0:?}")]
    BadEntry(String),
}

/// Cluster keys of one node in one Redis server.
#[derive(Clone)]
pub struct ClusterStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    lease: Script,
    members: Script,
    fenced_set: Script,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ClusterStore {
    /// A store on `url` with key prefix `prefix`; connects lazily (inside a Tokio runtime).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(StoreError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(400))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(StoreError::InvalidUrl)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
            lease: Script::new(LEASE_LUA),
            members: Script::new(MEMBERS_LUA),
            fenced_set: Script::new(&format!("{CHECK_EPOCH_LUA}\n{FENCED_SET_LUA}")),
        })
    }

    /// The lease key of `node` (`P node:<id>`).
    pub fn lease_key(&self, node: &NodeId) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// Sends one lease request for `node` (cluster address `addr`, lease lifetime `ttl`).
    pub async fn lease(
        &self,
        node: &NodeId,
        addr: SocketAddr,
        ttl: Duration,
        request: LeaseRequest,
    ) -> Result<LeaseReply, StoreError> {
        let (mode, epoch) = match request {
            LeaseRequest::Acquire => ("acquire", 0),
            LeaseRequest::Renew(e) => ("renew", e.0),
        };
        let mut invocation = self.lease.prepare_invoke();
        invocation
            .key(self.lease_key(node))
            .key(format!("{}epoch:{node}", self.prefix))
            .key(format!("{}members", self.prefix))
            .arg(mode)
            .arg(epoch)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(node.as_str())
            .arg(addr.to_string());
        let mut conn = self.conn.clone();
        let n: u64 = self
            .bounded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(match request {
            LeaseRequest::Acquire => LeaseReply::Acquired(Epoch(n)),
            LeaseRequest::Renew(_) if n == 1 => LeaseReply::Renewed,
            LeaseRequest::Renew(_) => LeaseReply::Lost,
        })
    }

    /// Every registered member with its lease.
    pub async fn registry(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        let mut invocation = self.members.prepare_invoke();
        invocation
            .key(format!("{}members", self.prefix))
            .arg(&self.prefix);
        let mut conn = self.conn.clone();
        let flat: Vec<redis::Value> = self
            .bounded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        flat.chunks(4).map(parse_entry).collect()
    }

    /// A new value of the cluster-wide process counter (`INCR P incarnation`): every node
    /// process takes one at start and numbers its connections with it (see
    /// [`crate::flow`]), so connection ids never collide across nodes or restarts.
    pub async fn next_incarnation(&self) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("INCR");
        cmd.arg(format!("{}incarnation", self.prefix));
        let mut conn = self.conn.clone();
        self.bounded(async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// One `PING` round trip.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let mut conn = self.conn.clone();
        let start = std::time::Instant::now();
        let _: String = self
            .bounded(async move { redis::cmd("PING").query_async(&mut conn).await })
            .await?;
        Ok(start.elapsed())
    }

    /// Writes `value` to `key` only if `epoch` is `node`'s current lease epoch: the Redis-side
    /// fencing check, as store scripts use it.
    pub async fn fenced_set(
        &self,
        node: &NodeId,
        epoch: Epoch,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let mut invocation = self.fenced_set.prepare_invoke();
        invocation
            .key(key)
            .arg(&self.prefix)
            .arg(node.as_str())
            .arg(epoch.0)
            .arg(value);
        let mut conn = self.conn.clone();
        let result: Result<i64, StoreError> = self
            .bounded(async move { invocation.invoke_async(&mut conn).await })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(StoreError::Redis(e)) if e.code() == Some("STALE_EPOCH") => {
                Err(StoreError::StaleEpoch)
            }
            Err(e) => Err(e),
        }
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }
}

/// One registry entry from four values: id, address, epoch (`''` when none), PTTL.
fn parse_entry(chunk: &[redis::Value]) -> Result<RegistryEntry, StoreError> {
    let text = |v: Option<&redis::Value>| -> Option<String> {
        v.and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
    };
    let id = text(chunk.first()).unwrap_or_default();
    let bad = || StoreError::BadEntry(id.clone());
    let node = NodeId::new(&id).map_err(|_| bad())?;
    let addr: SocketAddr = text(chunk.get(1))
        .and_then(|a| a.parse().ok())
        .ok_or_else(bad)?;
    let epoch = text(chunk.get(2)).ok_or_else(bad)?;
    let pttl: i64 = chunk
        .get(3)
        .and_then(|v| redis::from_redis_value_ref(v).ok())
        .ok_or_else(bad)?;
    let lease = match (epoch.parse::<u64>(), u64::try_from(pttl)) {
        (Ok(e), Ok(ms)) => Some((Epoch(e), Duration::from_millis(ms))),
        _ => None,
    };
    Ok(RegistryEntry { node, addr, lease })
}
