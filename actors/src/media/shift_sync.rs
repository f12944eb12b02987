//! Cluster-wide CSeq offsets of failed-over calls (issue 6, media failover; RFC 3261
//! §12.2.1.1).
//!
//! A node that re-INVITEs an end in the other end's name raises that side's CSeq offset
//! ([`CseqShifts::claim`]). Any node may then receive the side's next request (a BYE, a
//! re-INVITE), so every node must shift it the same way. The offsets live in Redis (layout
//! also in docs/REDIS.md, "CSeq offsets of failed-over calls"):
//!
//! - hash [`SHIFTS_KEY`], field `<call-id>\n<from tag of the side>`, value the offset
//!   (decimal). Written by the node that ran the failover (it runs the call's session: it
//!   set the call up or adopted its dialog) with a script that keeps the larger value
//!   (offsets only grow), refuses the write with `STALE_EPOCH` when this node's lease does
//!   not hold its epoch (single server; on Redis Cluster the lease key lies in another slot
//!   and only the node's own fence is checked), renews a [`KEY_LIFE`] expiry, and
//!   `PUBLISH`es the change on channel [`SHIFTS_CHANNEL`] (`<offset>\n<field>`).
//! - The failover waits for that write before it sends its re-INVITE, so a request of the
//!   side can only reach another node after Redis has told it.
//! - Every node subscribes to the channel (single-server URLs) and reads the whole hash
//!   after each (re)subscription, so nothing announced while it was not listening is
//!   missed. Sentinel and Cluster deployments (no subscription) read the whole hash at start
//!   and every [`RELOAD`] instead: a request entering another node within that second after
//!   a failover is not shifted.
//! - When the call ends, its owner removes its fields 32 s later (late retransmissions of
//!   the BYE's answer) and publishes `-\n<call-id>`; the other nodes forget the call.
//!
//! [`CseqShifts::claim`]: sipmesh_protocol::media::CseqShifts::claim

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ::redis::{AsyncCommands, Script};
use futures_util::StreamExt;
use tracing::{debug, warn};

use super::supervisor::MediaSessions;
use crate::fence::Fence;
use crate::redis_endpoint::RedisEndpoint;

/// The hash of the offsets.
pub const SHIFTS_KEY: &str = "sipmesh:media:shifts";

/// The channel on which offset changes are announced.
pub const SHIFTS_CHANNEL: &str = "sipmesh:media:shifts";

/// Life of the hash after its last write (a failed-over call lasts hours at most).
pub(super) const KEY_LIFE: Duration = Duration::from_secs(24 * 3600);

/// How often every node reloads the whole hash.
pub const RELOAD: Duration = Duration::from_secs(1);

/// Pause before a lost subscription is opened again.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// The write: keep the larger offset, announce it (see the module doc).
/// KEYS[1] the hash, KEYS[2] (optional) this node's lease key; ARGV[1] epoch, ARGV[2] field,
/// ARGV[3] offset, ARGV[4] channel, ARGV[5] key life (ms).
const RAISE_LUA: &str = r"
if KEYS[2] and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('STALE_EPOCH the epoch is not the current lease epoch')
end
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local offset = tonumber(ARGV[3])
if offset > current then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PUBLISH', ARGV[4], ARGV[3] .. '\n' .. ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

/// Why an offset could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ShiftSyncError {
    /// Redis answered with an error (also `STALE_EPOCH`) or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// This node does not hold its lease: it must not write.
    #[error("fenced")]
    Fenced,
}

/// This node's link to the shared offsets (cheap to clone).
#[derive(Clone)]
pub struct ShiftSync {
    conn: RedisEndpoint,
    fence: Option<Fence>,
    timeout: Duration,
    script: Arc<Script>,
}

impl std::fmt::Debug for ShiftSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShiftSync")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The hash field of a side: `<call-id>\n<tag>` (neither may hold a line break).
pub(super) fn field(call_id: &str, tag: &str) -> String {
    format!("{call_id}\n{tag}")
}

/// What a channel message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShiftNews {
    /// The side `tag` of `call_id` has offset `offset`.
    Raised {
        /// The call.
        call_id: String,
        /// The side's From tag.
        tag: String,
        /// Its offset.
        offset: u32,
    },
    /// The call ended: forget its offsets.
    Gone(String),
}

impl ShiftNews {
    /// Reads a channel message (or a hash field and value joined as `<value>\n<field>`).
    pub fn parse(message: &str) -> Option<Self> {
        let (head, rest) = message.split_once('\n')?;
        if head == "-" {
            return Some(Self::Gone(rest.to_owned()));
        }
        let offset = head.parse().ok()?;
        let (call_id, tag) = rest.split_once('\n')?;
        Some(Self::Raised {
            call_id: call_id.to_owned(),
            tag: tag.to_owned(),
            offset,
        })
    }
}

impl ShiftSync {
    /// A link over `conn`; owner writes are fenced by `fence` when given.
    pub fn new(conn: RedisEndpoint, fence: Option<Fence>, timeout: Duration) -> Self {
        Self {
            conn,
            fence,
            timeout,
            script: Arc::new(Script::new(RAISE_LUA)),
        }
    }

    /// Stores and announces the offset of side `tag` of `call_id`.
    pub async fn raise(&self, call_id: &str, tag: &str, offset: u32) -> Result<(), ShiftSyncError> {
        let mut inv = self.script.key(SHIFTS_KEY);
        let mut epoch = String::new();
        if let Some(fence) = &self.fence {
            let check = fence.check().map_err(|_| ShiftSyncError::Fenced)?;
            if !self.conn.is_cluster() {
                inv.key(check.lease_key.as_ref());
            }
            epoch = check.epoch.to_string();
        }
        inv.arg(epoch)
            .arg(field(call_id, tag))
            .arg(offset)
            .arg(SHIFTS_CHANNEL)
            .arg(u64::try_from(KEY_LIFE.as_millis()).unwrap_or(u64::MAX));
        let mut conn = self.conn.clone();
        let run = inv.invoke_async::<i64>(&mut conn);
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| ShiftSyncError::Timeout(self.timeout))??;
        Ok(())
    }

    /// Removes the offsets of a call (its sides `tags`) and announces it.
    pub async fn remove(&self, call_id: &str, tags: &[String]) -> Result<(), ShiftSyncError> {
        let mut conn = self.conn.clone();
        let fields: Vec<String> = tags.iter().map(|t| field(call_id, t)).collect();
        let run = async {
            if !fields.is_empty() {
                let () = conn.hdel(SHIFTS_KEY, fields).await?;
            }
            let () = conn
                .publish(SHIFTS_CHANNEL, format!("-\n{call_id}"))
                .await?;
            Ok::<_, ::redis::RedisError>(())
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| ShiftSyncError::Timeout(self.timeout))??;
        Ok(())
    }

    /// Every offset in the hash.
    pub async fn load(&self) -> Result<Vec<ShiftNews>, ShiftSyncError> {
        let mut conn = self.conn.clone();
        let run = conn.hgetall::<_, Vec<(String, String)>>(SHIFTS_KEY);
        let all = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| ShiftSyncError::Timeout(self.timeout))??;
        Ok(all
            .into_iter()
            .filter_map(|(f, v)| ShiftNews::parse(&format!("{v}\n{f}")))
            .collect())
    }
}

impl MediaSessions {
    /// Shares this node's offsets through Redis and learns the others' (see the module doc):
    /// with `subscribe_url` (a single-server URL), subscribes and reads the whole hash after
    /// each (re)subscription; without one (or when it cannot be used), reads the whole hash
    /// now and every [`RELOAD`].
    pub fn share_shifts(&self, sync: ShiftSync, subscribe_url: Option<String>) {
        let _ = self.inner.shift_sync.set(sync.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let client = subscribe_url.and_then(|url| match ::redis::Client::open(url.as_str()) {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(error = %e, "no subscription to CSeq offsets: reloading every second");
                    None
                }
            });
            match client {
                Some(client) => this.subscribe_shifts(&client, &sync).await,
                None => this.reload_shifts(&sync).await,
            }
        });
    }

    /// Reads the whole hash every [`RELOAD`] (no subscription).
    async fn reload_shifts(&self, sync: &ShiftSync) {
        let mut tick = tokio::time::interval(RELOAD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.load_shifts(sync).await;
        }
    }

    async fn load_shifts(&self, sync: &ShiftSync) -> bool {
        match sync.load().await {
            Ok(all) => {
                all.into_iter().for_each(|n| self.learn_shift(n));
                true
            }
            Err(e) => {
                debug!(error = %e, "reading the CSeq offsets failed");
                false
            }
        }
    }

    /// Follows the channel; after each (re)subscription the whole hash is read, so what was
    /// announced while the subscription was down is not missed.
    async fn subscribe_shifts(&self, client: &::redis::Client, sync: &ShiftSync) {
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(SHIFTS_CHANNEL).await {
                    Ok(()) if self.load_shifts(sync).await => {
                        let mut messages = pubsub.on_message();
                        while let Some(m) = messages.next().await {
                            let Ok(text) = m.get_payload::<String>() else {
                                continue;
                            };
                            if let Some(news) = ShiftNews::parse(&text) {
                                self.learn_shift(news);
                            }
                        }
                        debug!("CSeq offset subscription lost");
                    }
                    Ok(()) => {}
                    Err(e) => debug!(error = %e, "subscribing to CSeq offsets failed"),
                },
                Err(e) => debug!(error = %e, "no connection for the CSeq offset subscription"),
            }
            tokio::time::sleep(RESUBSCRIBE).await;
        }
    }

    /// Applies an offset learned from Redis.
    pub fn learn_shift(&self, news: ShiftNews) {
        let mut shifts = self
            .inner
            .shifts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match news {
            ShiftNews::Raised {
                call_id,
                tag,
                offset,
            } => {
                if shifts.raise_to(&call_id, &tag, offset) {
                    debug!(%call_id, %tag, offset, "CSeq offset learned");
                }
            }
            ShiftNews::Gone(call_id) => shifts.remove_call(&call_id),
        }
        self.inner
            .any_shift
            .store(!shifts.is_empty(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_messages_and_hash_entries_read_back() {
        assert_eq!(
            ShiftNews::parse(&format!("200\n{}", field("c1@x", "t1"))),
            Some(ShiftNews::Raised {
                call_id: "c1@x".into(),
                tag: "t1".into(),
                offset: 200
            })
        );
        assert_eq!(
            ShiftNews::parse("-\nc1@x"),
            Some(ShiftNews::Gone("c1@x".into()))
        );
        assert_eq!(ShiftNews::parse("x\nc1\nt"), None);
        assert_eq!(ShiftNews::parse("100"), None);
    }
}
