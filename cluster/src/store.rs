//! The cluster's keys in Redis: this node's lease, the member registry, and the fenced-write
//! check for owner writes. Layout in docs/REDIS.md ("Cluster keys").
//!
//! Every call is bounded by [`Timing::redis_timeout`](crate::config::Timing::redis_timeout):
//! the lease task must learn quickly that Redis is gone, so that the node fences itself in time.
//!
//! On a Redis Cluster (`redis+cluster://h:p[,h:p…][/]`, the same form the stores accept) the
//! prefix `P` becomes the hash tag `{P}`: the lease, epoch and registry keys of every node then
//! share one slot, so `lease.lua` and `members.lua` (which computes lease key names) run
//! unchanged. `fenced_set` then only works on keys that carry the same tag.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Script, Value};

use crate::detector::RegistryEntry;
use crate::id::{Epoch, NodeId};
use crate::lease::{LeaseReply, LeaseRequest};

/// Lua source of the `check_epoch(prefix, node, epoch)` function, to prepend to store scripts
/// whose writes must be fenced.
pub const CHECK_EPOCH_LUA: &str = include_str!("lua/check_epoch.lua");

const LEASE_LUA: &str = include_str!("lua/lease.lua");
const MEMBERS_LUA: &str = include_str!("lua/members.lua");
/// Removes a leaseless member from the registry.
const PRUNE_LUA: &str = include_str!("lua/prune.lua");
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

/// The connection: one server, or a Redis Cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The seed node URLs and credentials of `redis+cluster://[user[:password]@]h:p[,h:p…][/]`
/// (None: not a Cluster URL). Credentials are taken as written (no percent-decoding).
fn cluster_seeds(url: &str) -> Option<(Vec<String>, Option<String>, Option<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("redis+cluster") {
        return None;
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((u, p)) => (
            (!u.is_empty()).then(|| u.to_owned()),
            (!p.is_empty()).then(|| p.to_owned()),
        ),
        None => (None, None),
    };
    let seeds = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let has_port = h.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
            if has_port {
                format!("redis://{h}/")
            } else {
                format!("redis://{h}:6379/")
            }
        })
        .collect();
    Some((seeds, user, password))
}

/// Cluster keys of one node in one Redis server (or one Redis Cluster).
#[derive(Clone)]
pub struct ClusterStore {
    conn: Conn,
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
    /// A store on `url` with key prefix `prefix` (on a Redis Cluster: `{prefix}`, see the module
    /// documentation); connects lazily (inside a Tokio runtime).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let scripts = |conn, prefix: String| Self {
            conn,
            prefix,
            timeout,
            lease: Script::new(LEASE_LUA),
            members: Script::new(MEMBERS_LUA),
            fenced_set: Script::new(&format!("{CHECK_EPOCH_LUA}\n{FENCED_SET_LUA}")),
        };
        if let Some((seeds, user, password)) = cluster_seeds(url) {
            let mut builder = ClusterClientBuilder::new(seeds)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .min_retry_wait(50)
                .max_retry_wait(400);
            if let Some(user) = user {
                builder = builder.username(user);
            }
            if let Some(password) = password {
                builder = builder.password(password);
            }
            let client = builder.build().map_err(StoreError::InvalidUrl)?;
            let conn = client.get_pending_async_connection_with_config(
                ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout),
            );
            return Ok(scripts(Conn::Cluster(conn), format!("{{{prefix}}}")));
        }
        let client = Client::open(url).map_err(StoreError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(400))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(StoreError::InvalidUrl)?;
        Ok(scripts(Conn::Single(conn), prefix.to_owned()))
    }

    /// The key prefix in use (`{prefix}` on a Redis Cluster).
    pub fn prefix(&self) -> &str {
        &self.prefix
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

    /// Removes `node` from the registry if it holds no lease (see [`crate::prune`]); true
    /// when it was removed.
    pub async fn prune_member(&self, node: &NodeId) -> Result<bool, StoreError> {
        let script = Script::new(PRUNE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(format!("{}members", self.prefix))
            .key(self.lease_key(node))
            .arg(node.as_str());
        let mut conn = self.conn.clone();
        let n: i64 = self
            .bounded(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(n > 0)
    }

    /// Every registered member with its lease.
    pub async fn registry(&self) -> Result<Vec<RegistryEntry>, StoreError> {
        let mut invocation = self.members.prepare_invoke();
        invocation
            .key(format!("{}members", self.prefix))
            .arg(&self.prefix);
        let mut conn = self.conn.clone();
        let flat: Vec<Value> = self
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

    /// Publishes `node`'s actor counts under `P counts:<id>` for `ttl` (admin view, see
    /// [`crate::ActorCounts`]).
    pub async fn publish_counts(
        &self,
        node: &NodeId,
        counts: &crate::ActorCounts,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}counts:{node}", self.prefix))
            .arg(counts.encode())
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut conn = self.conn.clone();
        self.bounded(async move { cmd.query_async::<()>(&mut conn).await })
            .await
    }

    /// The published actor counts of `nodes`, in order (`None` where none is fresh or the value
    /// is malformed).
    pub async fn counts(
        &self,
        nodes: &[NodeId],
    ) -> Result<Vec<Option<crate::ActorCounts>>, StoreError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for node in nodes {
            cmd.arg(format!("{}counts:{node}", self.prefix));
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<String>> = self
            .bounded(async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(values
            .into_iter()
            .map(|v| v.as_deref().and_then(crate::ActorCounts::decode))
            .collect())
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
fn parse_entry(chunk: &[Value]) -> Result<RegistryEntry, StoreError> {
    let text = |v: Option<&Value>| -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_give_seeds_and_credentials() {
        assert_eq!(cluster_seeds("redis://h:1/"), None);
        assert_eq!(
            cluster_seeds("redis+cluster://u:pw@a:7000,b,[::1]:7002/"),
            Some((
                vec![
                    "redis://a:7000/".to_owned(),
                    "redis://b:6379/".to_owned(),
                    "redis://[::1]:7002/".to_owned()
                ],
                Some("u".to_owned()),
                Some("pw".to_owned())
            ))
        );
    }
}
