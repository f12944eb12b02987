//! Dialog records in Redis: one hash per confirmed dialog, `P<call-id;caller-tag;callee-tag>`
//! with the prefix `P` (default `sipmesh:dlg:`), fields from [`record`](super::record::encode), and a
//! key expiry of the dialog timeout plus [`EXPIRY_MARGIN`] so a lost BYE cannot leak a key.
//!
//! The same patterns as the location store: one lazily connecting [`RedisEndpoint`] (a single
//! server, or the master named by Redis Sentinel) that reconnects by itself, every call bounded
//! by a timeout and an in-flight limit, failures reported as [`DialogStoreError::Unavailable`],
//! and with [`RedisStoreConfig::replica_wait`] a `WAIT` inside each save's pipeline.
//!
//! Fencing (issue 5): with a [`Fence`] ([`RedisDialogStore::with_fence`], a clustered node),
//! save and remove become scripts (`redis/fenced_save.lua`, `redis/fenced_remove.lua`) that
//! first check this node's lease epoch; while fenced they fail at once with
//! [`UnavailableReason::Fenced`] without a Redis call, and a stale epoch (`STALE_EPOCH`, nothing
//! written) is reported the same way. Without a fence, save stays one MULTI/EXEC.
//!
//! Owner index (issue 5, failover): on a single server every fenced save also puts the record
//! key in its writer's set `P by-owner:<lease key>` (and takes it out of the previous writer's),
//! so a survivor finds a dead node's dialogs without a keyspace scan; see [`index`] and
//! docs/REDIS.md "Dialog owner index". On a Redis Cluster the index is in another slot than the
//! record, so it is kept by separate commands ordered to bound the damage (`cluster_index`).
//!
//! Per-dialog owner claims (issue 5): on a single server every fenced write also names its
//! [`WriteRole`]; the record's `claim` field (`<lease key>/<epoch>`) says which node runs its
//! actor, and an owner write by another node whose claimant is still alive is refused with
//! `STALE_OWNER` ([`DialogStoreError::StaleOwner`]); see docs/REDIS.md "Per-dialog owner
//! claims". Hand-overs and "ended" notices go over the owner index's pub/sub channel
//! ([`notice`]).
//!
//! Record revisions (issue 5): every fenced write of the fields bumps the record's `rev` field;
//! [`DialogStore::save_checked`] presents the revision its writer last saw and is refused with
//! `STALE_REV` ([`DialogStoreError::Outdated`], nothing written) when another node rewrote the
//! record since, so the dialog actor reloads and re-applies its event (docs/REDIS.md, "Record
//! revisions").
//!
//! Ended records stay ended (issue 5): a take, or a write presenting a revision its writer saw,
//! does not re-create a record that is gone (removed after a BYE elsewhere): the script writes
//! nothing and the call fails with [`DialogStoreError::Ended`]; only a dialog's first save
//! creates its record (docs/REDIS.md, "Ended records are not re-created").
//!
//! On a Redis Cluster the record key is hash-tagged, `P{<id>}`, and the fence cannot read the
//! lease key (another slot): it checks a per-record fencing token instead
//! (`redis/fence_cluster.lua`; docs/REDIS.md, "Fenced writes on a Cluster").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{RedisError, Script};
use tokio::sync::Semaphore;

use sipmesh_protocol::dialog::{DialogId, DialogState};

use crate::fence::{Fence, FenceCheck, is_stale_epoch};
use crate::location::{RedisStoreConfig, RedisStoreError, UnavailableReason};
use crate::redis_endpoint::{RedisEndpoint, ReplicaWaiter};

use super::record;

mod cluster_index;
mod index;
pub mod notice;
use super::store::{
    DialogStore, DialogStoreError, EXPIRY_MARGIN, Revision, StoreFuture, TimeLeft, WriteRole,
};
pub use index::IndexedRecord;

/// The fence check of a single server.
const FENCE_SINGLE_LUA: &str = include_str!("redis/fence_single.lua");
/// The fence check on a Redis Cluster (a per-record fencing token).
const FENCE_CLUSTER_LUA: &str = include_str!("redis/fence_cluster.lua");
/// The fenced save script.
const FENCED_SAVE_LUA: &str = include_str!("redis/fenced_save.lua");
/// The fenced remove script.
const FENCED_REMOVE_LUA: &str = include_str!("redis/fenced_remove.lua");

/// Error code of a write refused because another live node holds the record's owner claim.
pub const STALE_OWNER_CODE: &str = "STALE_OWNER";

/// Error code of a write refused because the stored record has another [`Revision`] than the
/// writer presented (another node rewrote it since the writer read it).
pub const STALE_REV_CODE: &str = "STALE_REV";

/// What `fenced_save.lua` returns when the record is gone and the write (a take, or a write
/// presenting a seen revision) must not re-create it: the dialog ended.
pub(super) const ENDED: i64 = -1;

/// Default key prefix of dialog records.
pub const DEFAULT_PREFIX: &str = "sipmesh:dlg:";

/// The Redis [`DialogStore`].
#[derive(Clone)]
pub struct RedisDialogStore {
    conn: RedisEndpoint,
    replica_wait: Option<ReplicaWaiter>,
    prefix: Arc<str>,
    timeout: Duration,
    permits: Arc<Semaphore>,
    /// Fencing of owner writes (None: a single node, unfenced).
    fence: Option<Fence>,
    fenced_save: Arc<Script>,
    fenced_remove: Arc<Script>,
    /// On a Redis Cluster: keys `P{<dialog>}`, fenced with per-record tokens.
    cluster: bool,
}

impl std::fmt::Debug for RedisDialogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDialogStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisDialogStore {
    /// A store on the server of `config` (its URL, timeout and in-flight limit) with key
    /// prefix `prefix`. Connects lazily; must be called inside a Tokio runtime.
    pub fn new(config: &RedisStoreConfig, prefix: &str) -> Result<Self, RedisStoreError> {
        let conn = config.open_endpoint()?;
        let cluster = conn.is_cluster();
        let fence = if cluster {
            FENCE_CLUSTER_LUA
        } else {
            FENCE_SINGLE_LUA
        };
        let script = |body: &str| Arc::new(Script::new(&format!("{fence}\n{body}")));
        Ok(Self {
            conn,
            replica_wait: config.replica_wait.map(ReplicaWaiter::new),
            prefix: Arc::from(prefix),
            timeout: config.timeout,
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            fence: None,
            fenced_save: script(FENCED_SAVE_LUA),
            fenced_remove: script(FENCED_REMOVE_LUA),
            cluster,
        })
    }

    /// Fences this store's writes with `fence` (None: unfenced, the single-node default).
    #[must_use]
    pub fn with_fence(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    /// The lease check for one write: `Ok(None)` when unfenced, `Err(Unavailable(Fenced))`
    /// when this node must not write now.
    fn fence_check(&self) -> Result<Option<FenceCheck>, DialogStoreError> {
        self.fence
            .as_ref()
            .map(Fence::check)
            .transpose()
            .map_err(DialogStoreError::Unavailable)
    }

    /// The key of a dialog record (for tools and tests): `P<id>`, or on a Redis Cluster
    /// `P{<id>}` (a hash tag, so its fencing token shares its slot).
    pub fn key(&self, id: &DialogId) -> String {
        if self.cluster {
            format!("{}{{{}}}", self.prefix, id.key())
        } else {
            format!("{}{}", self.prefix, id.key())
        }
    }

    /// The second key of a fenced script: the lease key, or on a Cluster this node's fencing
    /// token of the record, `P{<id>}fence:<lease key>`.
    pub(super) fn fence_key(&self, id: &DialogId, fence: &FenceCheck) -> String {
        if self.cluster {
            format!("{}fence:{}", self.key(id), fence.lease_key)
        } else {
            fence.lease_key.to_string()
        }
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, DialogStoreError> {
        let guarded = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| DialogStoreError::Unavailable(UnavailableReason::Disconnected))?;
            work.await.map_err(|e| {
                if e.code() == Some(STALE_OWNER_CODE) {
                    return DialogStoreError::StaleOwner;
                }
                if e.code() == Some(STALE_REV_CODE) {
                    return DialogStoreError::Outdated;
                }
                DialogStoreError::Unavailable(if is_stale_epoch(&e) {
                    UnavailableReason::Fenced
                } else if e.is_timeout() {
                    UnavailableReason::Timeout
                } else {
                    UnavailableReason::Disconnected
                })
            })
        };
        tokio::time::timeout(self.timeout, guarded)
            .await
            .unwrap_or(Err(DialogStoreError::Unavailable(
                UnavailableReason::Timeout,
            )))
    }

    /// Runs a fenced write script, then `WAIT` when one is due (as the unfenced save does).
    async fn write_then_wait(
        &self,
        call: ::redis::ScriptInvocation<'_>,
        conn: &mut RedisEndpoint,
    ) -> Result<i64, DialogStoreError> {
        let wait = self
            .replica_wait
            .as_ref()
            .and_then(|w| w.due().map(|c| (w, c)));
        let (written, wait_reply) = self
            .bounded(async {
                let written = call.invoke_async::<i64>(conn).await?;
                match &wait {
                    Some((_, cmd)) => {
                        Ok((written, Some(cmd.query_async::<::redis::Value>(conn).await)))
                    }
                    None => Ok((written, None)),
                }
            })
            .await?;
        if let (Some((waiter, _)), Some(reply)) = (wait, wait_reply) {
            waiter.check(&reply);
        }
        Ok(written)
    }
}

impl DialogStore for RedisDialogStore {
    fn save<'a>(&'a self, state: &'a DialogState) -> StoreFuture<'a, ()> {
        self.save_as(state, WriteRole::Owner)
    }

    fn save_as<'a>(&'a self, state: &'a DialogState, role: WriteRole) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.save_checked(state, role, None).await.map(|_| ()) })
    }

    fn save_checked<'a>(
        &'a self,
        state: &'a DialogState,
        role: WriteRole,
        seen: Option<Revision>,
    ) -> StoreFuture<'a, Option<Revision>> {
        Box::pin(async move {
            let fence = self.fence_check()?;
            let key = self.key(&state.id);
            let fields = record::encode(state);
            let ttl = state.timeout + EXPIRY_MARGIN;
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            let mut conn = self.conn.clone();
            if let Some(fence) = fence {
                if self.cluster {
                    return self
                        .cluster_fenced_save(state, &fence, ttl_ms, role, seen)
                        .await;
                }
                let mut call = self.fenced_save.prepare_invoke();
                call.key(&key).key(self.fence_key(&state.id, &fence));
                if !self.cluster {
                    call.key(self.index_key_of(&fence.lease_key))
                        .key(self.owners_key());
                }
                call.arg(fence.epoch)
                    .arg(ttl_ms)
                    .arg(role.as_str())
                    .arg(seen.map_or(String::new(), |r| r.0.to_string()));
                // A claim (single server) of a stored record moves the owner only; the fields
                // are used when there is no record.
                for (field, value) in &fields {
                    call.arg(field).arg(value);
                }
                let rev = self.write_then_wait(call, &mut conn).await?;
                if rev == ENDED {
                    return Err(DialogStoreError::Ended);
                }
                return Ok(u64::try_from(rev).ok().filter(|r| *r > 0).map(Revision));
            }
            // One MULTI/EXEC: the old fields go, the new ones and the expiry land together.
            let mut pipe = ::redis::pipe();
            pipe.atomic()
                .del(&key)
                .ignore()
                .hset_multiple(&key, &fields)
                .ignore()
                .pexpire(&key, ttl_ms)
                .ignore();
            if let Some(waiter) = &self.replica_wait
                && let Some(cmd) = waiter.due()
            {
                // After EXEC: inside MULTI, WAIT would not block.
                let wait_reply = self
                    .bounded(async {
                        pipe.query_async::<()>(&mut conn).await?;
                        Ok(cmd.query_async::<::redis::Value>(&mut conn).await)
                    })
                    .await?;
                waiter.check(&wait_reply);
                return Ok(None);
            }
            self.bounded(pipe.query_async::<()>(&mut conn)).await?;
            Ok(None)
        })
    }

    fn load_revised<'a>(
        &'a self,
        id: &'a DialogId,
    ) -> StoreFuture<'a, Option<(DialogState, Option<Revision>)>> {
        Box::pin(async move {
            let key = self.key(id);
            let mut conn = self.conn.clone();
            let cmd = ::redis::cmd("HGETALL").arg(&key).clone();
            let fields: HashMap<String, String> = self.bounded(cmd.query_async(&mut conn)).await?;
            if fields.is_empty() {
                return Ok(None);
            }
            let rev = fields
                .get("rev")
                .map(|r| r.parse().map_err(|_| DialogStoreError::BadRecord("rev")))
                .transpose()?
                .map(Revision);
            Ok(Some((record::decode(&fields)?, rev)))
        })
    }

    fn load<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, Option<DialogState>> {
        Box::pin(async move {
            let key = self.key(id);
            let mut conn = self.conn.clone();
            let cmd = ::redis::cmd("HGETALL").arg(&key).clone();
            let fields: HashMap<String, String> = self.bounded(cmd.query_async(&mut conn)).await?;
            if fields.is_empty() {
                return Ok(None);
            }
            record::decode(&fields).map(Some)
        })
    }

    fn remove<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, bool> {
        self.remove_as(id, WriteRole::Owner)
    }

    fn remove_as<'a>(&'a self, id: &'a DialogId, role: WriteRole) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let fence = self.fence_check()?;
            let key = self.key(id);
            let mut conn = self.conn.clone();
            if let Some(fence) = fence {
                if self.cluster {
                    let fence_key = self.fence_key(id, &fence);
                    return self
                        .cluster_fenced_remove(&key, fence_key, &fence, role)
                        .await;
                }
                let mut call = self.fenced_remove.prepare_invoke();
                call.key(&key).key(self.fence_key(id, &fence));
                if !self.cluster {
                    call.key(self.index_key_of(&fence.lease_key));
                }
                call.arg(fence.epoch).arg(role.as_str());
                let n: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
                return Ok(n > 0);
            }
            let cmd = ::redis::cmd("DEL").arg(&key).clone();
            let n: i64 = self.bounded(cmd.query_async(&mut conn)).await?;
            Ok(n > 0)
        })
    }

    fn time_left<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, TimeLeft> {
        Box::pin(async move {
            let key = self.key(id);
            let mut conn = self.conn.clone();
            let cmd = ::redis::cmd("PTTL").arg(&key).clone();
            let ms: i64 = self.bounded(cmd.query_async(&mut conn)).await?;
            Ok(match u64::try_from(ms) {
                Ok(ms) => TimeLeft::Left(Duration::from_millis(ms).saturating_sub(EXPIRY_MARGIN)),
                // -2: no such key; -1: no expiry (not written by this store).
                Err(_) if ms == -2 => TimeLeft::Gone,
                Err(_) => TimeLeft::Unknown,
            })
        })
    }

    fn claimed_elsewhere<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if self.cluster {
                return Ok(false);
            }
            let Some(fence) = self.fence_check()? else {
                return Ok(false);
            };
            let mine = format!("{}/{}", fence.lease_key, fence.epoch);
            let mut conn = self.conn.clone();
            let cmd = ::redis::cmd("HGET").arg(self.key(id)).arg("claim").clone();
            let claim: Option<String> = self.bounded(cmd.query_async(&mut conn)).await?;
            Ok(claim.is_some_and(|c| c != mine))
        })
    }

    fn hand_over<'a>(&'a self, id: &'a DialogId, owner: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            // Only where the owner index (and its channel) exists: a single server.
            if self.cluster || self.fence.is_none() {
                return Ok(false);
            }
            let mut conn = self.conn.clone();
            let cmd = ::redis::cmd("PUBLISH")
                .arg(self.index_key_of(owner))
                .arg(format!("{} {}", notice::ADOPT, self.key(id)))
                .clone();
            let receivers: i64 = self.bounded(cmd.query_async(&mut conn)).await?;
            Ok(receivers > 0)
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
