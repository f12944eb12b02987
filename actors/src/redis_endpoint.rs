//! One Redis "endpoint" shared by the location and dialog stores: a cheap-to-clone connection
//! handle that implements [`ConnectionLike`], so commands, pipelines and scripts run on it the
//! same way whatever the deployment.
//!
//! - **Single server** (`redis://…`): a [`ConnectionManager`], which reconnects by itself in the
//!   background (back-off 50 ms doubling to 400 ms).
//! - **Sentinel** (`redis+sentinel://…`, see [`url`]): a `SentinelLink`
//!   (`redis_endpoint/sentinel.rs`). A background task asks the sentinels for the master of the
//!   service, checks with `ROLE` that it is one, and publishes one multiplexed connection to it.
//!   When a call on that connection fails with a dropped connection, an I/O error, or
//!   `READONLY` (the node was demoted by a failover), the connection is withdrawn and the task
//!   resolves and connects again, with the same back-off, until a master answers. Every
//!   [`EndpointConfig::check_interval`] it also `PING`s the connection (an idle store notices a
//!   dead master) and asks the sentinels whether the master moved (a failover that left our old
//!   connection open, e.g. a partitioned old master). While no master is known, calls wait at
//!   most [`EndpointConfig::timeout`] for one and then fail as disconnected (the stores answer
//!   503).
//!
//! Scripts need nothing here: `EVALSHA` on a new master answers `NOSCRIPT`, and the callers
//! load the script and retry (the redis crate's `Script::invoke_async`, and the location store's
//! batcher).
//!
//! - **Cluster** (`redis+cluster://…`): the redis crate's async [`ClusterConnection`], which
//!   learns the slot map from the seed nodes, routes every command by the hash slot of its first
//!   key (keyless commands go to any master), follows `MOVED`/`ASK` and refreshes the map by
//!   itself. A pipeline must stay within one slot ([`RedisEndpoint::is_cluster`] tells the
//!   stores to send commands one by one instead); `SCRIPT LOAD` goes to every master. The stores
//!   switch to their Cluster key layout (docs/REDIS.md, "Redis Cluster").

mod scan;
mod sentinel;
pub mod url;
mod wait;

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClientBuilder, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

pub use scan::ScanTarget;
pub use url::{ClusterUrl, EndpointUrl, EndpointUrlError, SentinelUrl};
pub use wait::{DEGRADED_PAUSE, ReplicaWait, ReplicaWaiter};

/// Connection settings of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Bound on connecting, on each reply, and on waiting for a master after a failover.
    pub timeout: Duration,
    /// Most requests queued on the multiplexed connection.
    pub pipeline_buffer: usize,
    /// How often (Sentinel only) the sentinels are asked whether the master moved.
    pub check_interval: Duration,
}

impl EndpointConfig {
    /// `timeout`, a pipeline buffer of 4096 and a master check every second.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            pipeline_buffer: 4096,
            check_interval: Duration::from_secs(1),
        }
    }
}

/// Why an endpoint could not be created.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL is of a form we refuse.
    #[error(transparent)]
    Url(#[from] EndpointUrlError),
    /// The redis crate refused the URL or the sentinel settings.
    #[error("invalid Redis URL: {0}")]
    Client(#[source] RedisError),
}

/// A connection handle to the Redis that holds the data. Clones share one connection.
#[derive(Clone)]
pub struct RedisEndpoint {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    /// The connection and a client of the same server (for subscriptions).
    Single(ConnectionManager, Client),
    Sentinel(sentinel::SentinelLink),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Single(..) => "RedisEndpoint(single)",
            Inner::Sentinel(_) => "RedisEndpoint(sentinel)",
            Inner::Cluster(_) => "RedisEndpoint(cluster)",
        })
    }
}

impl RedisEndpoint {
    /// An endpoint for `url` that connects lazily, in the background. Must be called inside a
    /// Tokio runtime.
    pub fn new(url: &str, config: &EndpointConfig) -> Result<Self, EndpointError> {
        let inner = match EndpointUrl::parse(url)? {
            EndpointUrl::Single(url) => {
                let client = Client::open(url.as_str()).map_err(EndpointError::Client)?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.timeout))
                    .set_response_timeout(Some(config.timeout))
                    .set_min_delay(sentinel::MIN_DELAY)
                    .set_max_delay(sentinel::MAX_DELAY)
                    .set_number_of_retries(3)
                    .set_pipeline_buffer_size(config.pipeline_buffer.max(1));
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
                    .map_err(EndpointError::Client)?;
                Inner::Single(conn, client)
            }
            EndpointUrl::Sentinel(s) => Inner::Sentinel(
                sentinel::SentinelLink::spawn(&s, config).map_err(EndpointError::Client)?,
            ),
            EndpointUrl::Cluster(c) => Inner::Cluster(cluster_connection(&c, config)?),
        };
        Ok(Self { inner })
    }

    /// `"single"`, `"sentinel"` or `"cluster"`.
    pub fn kind(&self) -> &'static str {
        match self.inner {
            Inner::Single(..) => "single",
            Inner::Sentinel(_) => "sentinel",
            Inner::Cluster(_) => "cluster",
        }
    }

    /// Where a pub/sub subscription of this endpoint goes (it needs a connection of its own):
    /// the single server, or the master the sentinels name now, followed across failovers.
    /// `None` on a Redis Cluster (not supported: channels are not slot-routed there).
    pub fn subscription_target(&self) -> Option<SubscriptionTarget> {
        match &self.inner {
            Inner::Single(_, client) => Some(SubscriptionTarget(Target::Single(client.clone()))),
            Inner::Sentinel(link) => Some(SubscriptionTarget(Target::Sentinel(link.watch()))),
            Inner::Cluster(_) => None,
        }
    }

    /// Whether this is a Redis Cluster: every script and pipeline must then stay within one
    /// hash slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }
}

/// The server a subscription goes to ([`RedisEndpoint::subscription_target`]).
pub struct SubscriptionTarget(Target);

/// The kinds of [`SubscriptionTarget`].
enum Target {
    /// A single server.
    Single(Client),
    /// The master of a Sentinel service, as published by the endpoint's driver task.
    Sentinel(tokio::sync::watch::Receiver<Option<sentinel::Live>>),
}

impl std::fmt::Debug for SubscriptionTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Target::Single(_) => "SubscriptionTarget(single)",
            Target::Sentinel(_) => "SubscriptionTarget(sentinel)",
        })
    }
}

impl SubscriptionTarget {
    /// A client of the server to subscribe on now; with Sentinel, waits until a master is
    /// known (`None` once the endpoint is gone).
    pub async fn current(&mut self) -> Option<Client> {
        match &mut self.0 {
            Target::Single(client) => Some(client.clone()),
            Target::Sentinel(rx) => {
                let live = rx.wait_for(Option::is_some).await.ok()?;
                live.as_ref().map(|l| l.client.clone())
            }
        }
    }

    /// Resolves when the server given by the last [`current`](Self::current) is no longer
    /// the one to use (Sentinel: the master was lost or replaced); never for a single server.
    pub async fn moved(&mut self) {
        match &mut self.0 {
            Target::Single(_) => std::future::pending().await,
            Target::Sentinel(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// A lazily connecting cluster connection for `url` (the seeds are contacted in the background,
/// on the first command).
fn cluster_connection(
    url: &ClusterUrl,
    config: &EndpointConfig,
) -> Result<ClusterConnection, EndpointError> {
    let mut builder = ClusterClientBuilder::new(url.node_urls())
        .connection_timeout(config.timeout)
        .response_timeout(config.timeout)
        .retries(2)
        .min_retry_wait(u64::try_from(sentinel::MIN_DELAY.as_millis()).unwrap_or(50))
        .max_retry_wait(u64::try_from(sentinel::MAX_DELAY.as_millis()).unwrap_or(400));
    if let Some(user) = &url.username {
        builder = builder.username(user);
    }
    if let Some(password) = &url.password {
        builder = builder.password(password);
    }
    let client = builder.build().map_err(EndpointError::Client)?;
    let cluster_config = ClusterConfig::new()
        .set_connection_timeout(config.timeout)
        .set_response_timeout(config.timeout);
    Ok(client.get_pending_async_connection_with_config(cluster_config))
}

impl ConnectionLike for RedisEndpoint {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Single(c, _) => c.req_packed_command(cmd),
            Inner::Sentinel(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Single(c, _) => c.req_packed_commands(pipeline, offset, count),
            Inner::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c, _) => c.get_db(),
            Inner::Sentinel(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}
