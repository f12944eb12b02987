//! Pending media sessions in Redis (issue 6, point 2: no leaked rtpengine sessions when a
//! node dies while an INVITE it relayed is still unanswered).
//!
//! A confirmed call's instance is in its dialog record, which a survivor adopts. A call that
//! was only *offered* (no final answer yet) has no record: if its node dies, nobody would
//! ever delete its rtpengine session. So each node keeps a small hash of its offered,
//! unconfirmed calls:
//!
//! - key `sipmesh:media:pending:<lease key>` (the node's cluster lease key, the same identity
//!   as the dialog owner index), field `<call-id>`, value `<instance>;<created ms>` (the
//!   instance as `udp:IP:PORT`, the offer's wall-clock time in ms since the epoch);
//! - written when a call's first offer is placed on an instance, deleted when its dialog is
//!   confirmed (the dialog record takes over) or when its session is deleted (any failure,
//!   CANCEL, BYE). Every write renews a [`KEY_LIFE`] expiry, so an abandoned hash goes away;
//! - off the signalling path: writes go through one queue to one writer task, which sends
//!   whatever is queued as one pipeline (in order, so an add is never overtaken by its
//!   remove). A failed write is logged and dropped: the worst case is a leak as before.
//!
//! A survivor reads a dead node's hash ([`PendingMedia::entries`]) and deletes the sessions
//! it places on itself (see `takeover`); a restarted node cleans its own entries older than
//! its start. Layout also in docs/REDIS.md "Pending media sessions".

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::redis_endpoint::RedisEndpoint;

/// Key prefix of the pending hashes.
pub const PENDING_PREFIX: &str = "sipmesh:media:pending:";

/// Life of a pending hash after its last write (an unanswered INVITE ends long before: RFC
/// 3261 Timer C is 3 min).
pub const KEY_LIFE: Duration = Duration::from_secs(600);

/// Most queued writes sent in one pipeline.
const BATCH: usize = 256;

/// One offered, unconfirmed call of some node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The call.
    pub call_id: String,
    /// Its rtpengine instance.
    pub instance: SocketAddr,
    /// When the offer was made.
    pub created: SystemTime,
}

impl PendingEntry {
    /// The hash value: `udp:IP:PORT;<created ms>`.
    pub fn value(&self) -> String {
        format!("udp:{};{}", self.instance, millis(self.created))
    }

    /// Reads a field and its [`value`](Self::value) back.
    pub fn parse(call_id: &str, value: &str) -> Option<Self> {
        let (instance, created) = value.split_once(';')?;
        let instance = instance.strip_prefix("udp:")?.parse().ok()?;
        let created = SystemTime::UNIX_EPOCH + Duration::from_millis(created.parse().ok()?);
        Some(Self {
            call_id: call_id.to_owned(),
            instance,
            created,
        })
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why reading or cleaning a pending hash failed.
#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Debug)]
enum Op {
    Add(PendingEntry),
    Remove(String),
}

/// This node's pending log and the reader of other nodes' (cheap to clone).
#[derive(Debug, Clone)]
pub struct PendingMedia {
    tx: mpsc::UnboundedSender<Op>,
    conn: RedisEndpoint,
    own_key: String,
    timeout: Duration,
    started: SystemTime,
}

impl PendingMedia {
    /// Starts the writer of this node's hash (the node of lease key `lease_key`); every Redis
    /// call is bounded by `timeout`. Must be called inside a Tokio runtime.
    pub fn start(conn: RedisEndpoint, lease_key: &str, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let own_key = Self::key_of(lease_key);
        tokio::spawn(writer(conn.clone(), own_key.clone(), timeout, rx));
        Self {
            tx,
            conn,
            own_key,
            timeout,
            started: SystemTime::now(),
        }
    }

    /// The hash of the node of `lease_key`.
    pub fn key_of(lease_key: &str) -> String {
        format!("{PENDING_PREFIX}{lease_key}")
    }

    /// This node's hash.
    pub fn own_key(&self) -> &str {
        &self.own_key
    }

    /// When this log started (entries of this node's hash older than this were left by an
    /// earlier run of the node).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Records an offered call (queued; never blocks).
    pub fn add(&self, call_id: &str, instance: SocketAddr) {
        let _ = self.tx.send(Op::Add(PendingEntry {
            call_id: call_id.to_owned(),
            instance,
            created: SystemTime::now(),
        }));
    }

    /// Forgets a call (confirmed or ended; queued; never blocks).
    pub fn remove(&self, call_id: &str) {
        let _ = self.tx.send(Op::Remove(call_id.to_owned()));
    }

    /// The entries of hash `key` (undecodable ones are skipped).
    pub async fn entries(&self, key: &str) -> Result<Vec<PendingEntry>, PendingError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("HGETALL").arg(key).clone();
        let fields: Vec<(String, String)> = self.bounded(cmd.query_async(&mut conn)).await?;
        Ok(fields
            .iter()
            .filter_map(|(f, v)| {
                let e = PendingEntry::parse(f, v);
                if e.is_none() {
                    warn!(key, field = %f, "skipping an undecodable pending media entry");
                }
                e
            })
            .collect())
    }

    /// Removes `call_ids` from hash `key` (a survivor that deleted them; unordered with this
    /// node's own queue, which never writes another node's hash).
    pub async fn remove_from(&self, key: &str, call_ids: &[String]) -> Result<(), PendingError> {
        if call_ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("HDEL").arg(key).arg(call_ids).clone();
        self.bounded(cmd.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, ::redis::RedisError>>,
    ) -> Result<T, PendingError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| PendingError::Timeout(self.timeout))?
            .map_err(PendingError::from)
    }
}

/// The writer task: each wake-up sends everything queued as one pipeline.
async fn writer(
    mut conn: RedisEndpoint,
    key: String,
    timeout: Duration,
    mut rx: mpsc::UnboundedReceiver<Op>,
) {
    let life = u64::try_from(KEY_LIFE.as_millis()).unwrap_or(u64::MAX);
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = ::redis::pipe();
        for op in batch.drain(..) {
            match op {
                Op::Add(e) => pipe.cmd("HSET").arg(&key).arg(&e.call_id).arg(e.value()),
                Op::Remove(call_id) => pipe.cmd("HDEL").arg(&key).arg(call_id),
            }
            .ignore();
        }
        pipe.cmd("PEXPIRE").arg(&key).arg(life).ignore();
        match tokio::time::timeout(timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "writing pending media sessions failed"),
            Err(_) => warn!(?timeout, "writing pending media sessions timed out"),
        }
    }
    debug!("pending media writer stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_value_reads_back() {
        let e = PendingEntry {
            call_id: "abc@host".into(),
            instance: "127.0.0.1:2223".parse().unwrap_or_else(|e| panic!("{e}")),
            created: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        };
        assert_eq!(e.value(), "udp:127.0.0.1:2223;1700000000123");
        assert_eq!(PendingEntry::parse("abc@host", &e.value()), Some(e));
        assert_eq!(PendingEntry::parse("x", "tcp:1.2.3.4:5;1"), None);
        assert_eq!(PendingEntry::parse("x", "udp:1.2.3.4:5"), None);
    }
}
