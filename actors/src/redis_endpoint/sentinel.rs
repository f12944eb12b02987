//! The Sentinel side of [`RedisEndpoint`](super::RedisEndpoint): a background task that keeps
//! one connection to the current master, and the handles that use it.
//!
//! ```text
//!  SentinelLink (clones) ──watch: Option<Live>──<  driver task  >── SENTINEL MASTERS + ROLE
//!         └──── mpsc: "generation g is broken" ───────^
//! ```
//!
//! The driver publishes `Some(Live)` (a connection and its generation number) once a master
//! answers, and `None` while it looks for one. A handle whose call fails in a way that means
//! "not the master any more" reports that generation; reports of older generations are ignored,
//! so a burst of failures causes one reconnection.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, Value,
};
use tokio::sync::{mpsc, watch};

use super::{EndpointConfig, SentinelUrl};

/// First reconnection delay.
pub(super) const MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest reconnection delay.
pub(super) const MAX_DELAY: Duration = Duration::from_millis(400);

/// The current master connection.
#[derive(Clone)]
pub(super) struct Live {
    /// Increases with every new connection.
    generation: u64,
    conn: MultiplexedConnection,
    /// A client of that master, for connections of their own (a pub/sub subscription).
    pub(super) client: ::redis::Client,
}

/// A handle on the master of a Sentinel-monitored service. Cheap to clone.
#[derive(Clone)]
pub(super) struct SentinelLink {
    current: watch::Receiver<Option<Live>>,
    broken: mpsc::Sender<u64>,
    /// How long a call waits for a master to be known.
    timeout: Duration,
    db: i64,
}

impl SentinelLink {
    /// Starts the driver task for `url`. Must be called inside a Tokio runtime.
    pub(super) fn spawn(url: &SentinelUrl, config: &EndpointConfig) -> RedisResult<Self> {
        let sentinels = url
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(sentinels, &url.service, SentinelServerType::Master)?
                .set_client_to_redis_db(url.db);
        if let Some(user) = &url.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &url.password {
            builder = builder.set_client_to_redis_password(password);
        }
        let client = builder.build()?;
        let (tx, current) = watch::channel(None);
        let (broken, reports) = mpsc::channel(8);
        let service = url.service.clone();
        tokio::spawn(drive(client, service, tx, reports, config.clone()));
        Ok(Self {
            current,
            broken,
            timeout: config.timeout,
            db: url.db,
        })
    }

    /// The published master (`None` while one is looked for), for a subscription that must
    /// follow it.
    pub(super) fn watch(&self) -> watch::Receiver<Option<Live>> {
        self.current.clone()
    }

    /// The current master connection, waiting at most `timeout` for one.
    async fn live(&mut self) -> RedisResult<Live> {
        let now = self.current.borrow_and_update().clone();
        if let Some(live) = now {
            return Ok(live);
        }
        let waited = tokio::time::timeout(self.timeout, async {
            match self.current.wait_for(Option::is_some).await {
                Ok(live) => live.clone(),
                Err(_) => None,
            }
        })
        .await;
        waited.ok().flatten().ok_or_else(no_master)
    }

    /// Withdraws connection `generation` if `failed` says it no longer reaches the master.
    fn check(&self, generation: u64, failed: bool) {
        if failed {
            // Full: reports are already queued, one is enough.
            let _ = self.broken.try_send(generation);
        }
    }
}

/// No master is known right now (reported as a dropped connection: 503, retry later).
fn no_master() -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "no Redis master known to the sentinels (failover in progress?)",
    ))
}

/// Whether `e` means the connection no longer reaches a writable master.
fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
        || e.to_string().contains("READONLY")
}

/// Whether a reply value is a `READONLY` error (a demoted master), also inside a script error.
fn readonly_value(v: &Value) -> bool {
    match v {
        Value::ServerError(e) => {
            e.code() == "READONLY" || e.details().is_some_and(|d| d.contains("READONLY"))
        }
        Value::Array(items) => items.iter().any(readonly_value),
        _ => false,
    }
}

impl ConnectionLike for SentinelLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut live = self.live().await?;
            let result = live.conn.req_packed_command(cmd).await;
            let failed = match &result {
                Ok(v) => readonly_value(v),
                Err(e) => lost_master(e),
            };
            self.check(live.generation, failed);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut live = self.live().await?;
            let result = live.conn.req_packed_commands(pipeline, offset, count).await;
            let failed = match &result {
                Ok(values) => values.iter().any(readonly_value),
                Err(e) => lost_master(e),
            };
            self.check(live.generation, failed);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

/// Keeps a master connection published in `tx` until every handle is gone.
async fn drive(
    mut client: SentinelClient,
    service: String,
    tx: watch::Sender<Option<Live>>,
    mut reports: mpsc::Receiver<u64>,
    config: EndpointConfig,
) {
    let conn_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.timeout))
        .set_response_timeout(Some(config.timeout))
        .set_pipeline_buffer_size(config.pipeline_buffer.max(1));
    // Several sentinels may be asked, and the master checked, within one resolution.
    let resolve_bound = (config.timeout * 4).max(Duration::from_secs(1));
    let mut watch = SentinelWatch {
        service,
        conn: None,
    };
    let mut generation = 0_u64;
    let mut delay = MIN_DELAY;
    while !tx.is_closed() {
        let attempt = async {
            let master = client.async_get_client().await?;
            let addr = master.get_connection_info().addr().clone();
            let conn = master
                .get_multiplexed_async_connection_with_config(&conn_config)
                .await?;
            Ok::<_, RedisError>((addr, conn, master))
        };
        let (addr, conn, master) = match tokio::time::timeout(resolve_bound, attempt).await {
            Ok(Ok(found)) => found,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {resolve_bound:?}"),
                };
                // One warning per outage; the retries at debug level.
                if delay == MIN_DELAY {
                    tracing::warn!(%error, "redis sentinel: no master yet, retrying");
                } else {
                    tracing::debug!(%error, ?delay, "redis sentinel: no master yet");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
                continue;
            }
        };
        generation += 1;
        delay = MIN_DELAY;
        tracing::info!(master = %addr, generation, "redis sentinel: connected to the master");
        tx.send_replace(Some(Live {
            generation,
            conn: conn.clone(),
            client: master,
        }));
        loop {
            tokio::select! {
                report = reports.recv() => match report {
                    None => return,
                    Some(g) if g == generation => {
                        tracing::warn!(master = %addr, "redis sentinel: lost the master");
                        break;
                    }
                    Some(_) => {}
                },
                () = tokio::time::sleep(config.check_interval) => {
                    let checked = check_master(
                        &mut client, &mut watch, &conn, &addr, &conn_config, resolve_bound,
                    );
                    if let Some(reason) = checked.await {
                        tracing::warn!(master = %addr, reason, "redis sentinel: leaving the master");
                        break;
                    }
                }
            }
        }
        tx.send_replace(None);
    }
}

/// The sentinels' current answer for the service (`SENTINEL get-master-addr-by-name`), over one
/// kept connection to a sentinel, so the periodic check opens no connection.
struct SentinelWatch {
    service: String,
    conn: Option<MultiplexedConnection>,
}

impl SentinelWatch {
    /// `(host, port)` of the master the sentinels name, if they know the service.
    async fn master(
        &mut self,
        client: &mut SentinelClient,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<Option<(String, u16)>> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                let sentinel = client.async_get_sentinel_client().await?;
                sentinel
                    .get_multiplexed_async_connection_with_config(config)
                    .await?
            }
        };
        let mut cmd = ::redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name").arg(&self.service);
        let named = cmd.query_async(&mut conn).await?;
        // Kept only after it answered: a failing sentinel is replaced at the next check.
        self.conn = Some(conn);
        Ok(named)
    }
}

/// Whether `addr` is `host:port` (an address form we cannot compare counts as the same, so an
/// unexpected form never causes reconnections).
fn same_addr(addr: &ConnectionAddr, host: &str, port: u16) -> bool {
    match addr {
        ConnectionAddr::Tcp(h, p) => h == host && *p == port,
        ConnectionAddr::TcpTls {
            host: h, port: p, ..
        } => h == host && *p == port,
        _ => true,
    }
}

/// The periodic check of an idle or healthy connection: a `PING` on it (a dead master is
/// noticed even when no call comes), then the sentinels' view (a failover that left our
/// connection open). Returns why the connection must be replaced, if it must.
async fn check_master(
    client: &mut SentinelClient,
    watch: &mut SentinelWatch,
    conn: &MultiplexedConnection,
    addr: &ConnectionAddr,
    config: &AsyncConnectionConfig,
    bound: Duration,
) -> Option<&'static str> {
    let mut conn = conn.clone();
    if let Err(e) = ::redis::cmd("PING").query_async::<()>(&mut conn).await
        && lost_master(&e)
    {
        return Some("it does not answer PING");
    }
    match tokio::time::timeout(bound, watch.master(client, config)).await {
        Ok(Ok(Some((host, port)))) if !same_addr(addr, &host, port) => {
            Some("the sentinels name another master")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as Redis 7.0 sends it.
    fn reply(wire: &[u8]) -> Value {
        ::redis::parse_redis_value(wire).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn readonly_replies_mean_a_demoted_master() {
        // Captured from redis-server 7.0.15: a SET, and an EVAL that writes, on a replica.
        let plain = reply(b"-READONLY You can't write against a read only replica.\r\n");
        let script = reply(
            b"-READONLY You can't write against a read only replica. script: \
              bd6f3018b28bbdb36260f19d3c44afed740db987, on @user_script:1.\r\n",
        );
        for v in [&plain, &script] {
            assert!(readonly_value(v), "{v:?}");
        }
        let in_pipeline = Value::Array(vec![Value::Okay, script.clone()]);
        assert!(readonly_value(&in_pipeline));
        let Err(e) = script.extract_error() else {
            panic!("an error reply");
        };
        assert!(lost_master(&e), "{e}");
    }

    #[test]
    fn other_errors_keep_the_connection() {
        let noscript = reply(b"-NOSCRIPT No matching script. Please use EVAL.\r\n");
        let wrong = reply(b"-WRONGTYPE Operation against a key holding the wrong kind\r\n");
        for v in [&noscript, &wrong, &Value::Int(1)] {
            assert!(!readonly_value(v), "{v:?}");
        }
        let Err(e) = noscript.extract_error() else {
            panic!("an error reply");
        };
        assert!(!lost_master(&e), "{e}");
        assert!(lost_master(&no_master()));
    }

    #[test]
    fn sentinel_answers_compare_with_the_connected_address() {
        let tcp = ConnectionAddr::Tcp("127.0.0.1".to_owned(), 6379);
        assert!(same_addr(&tcp, "127.0.0.1", 6379));
        assert!(!same_addr(&tcp, "127.0.0.1", 6380));
        assert!(!same_addr(&tcp, "10.0.0.1", 6379));
        let unix = ConnectionAddr::Unix("/run/redis.sock".into());
        assert!(
            same_addr(&unix, "10.0.0.1", 1),
            "not comparable: no reconnection"
        );
    }
}
