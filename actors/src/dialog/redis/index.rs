//! The dialog owner index (issue 5, failover; docs/REDIS.md "Dialog owner index"): reading the
//! per-owner sets that the fenced save and remove scripts keep (on a Redis Cluster, the
//! separate commands of `cluster_index`), and the per-node actor counts
//! shown in the admin view.
//!
//! - `P by-owner:<lease key>`: a set of the record keys last written by the node of that lease
//!   key (its dialog actors' records). A survivor reads a dead node's set to re-create its
//!   actors; the new owner's first save moves the key to its own set.
//! - `P owners`: the set of every owner-index key, so a rebalancing node finds all of them.
//! - `P rebalance`: a counter bumped by every node that adopted dialogs; the others rebalance
//!   when it changes, so the node that ran a moved dialog stops its actor promptly.
//! - `P owned:<lease key>`: the number of dialog actors that node runs, published every second
//!   with a short expiry (a statistic: written unfenced).
//!
//! Members whose record expired (a lost BYE on a dead node) are removed from the set when read
//! (on a Redis Cluster, put back if the record exists again right after: a save in flight).

use std::collections::HashMap;
use std::time::Duration;

use sipmesh_protocol::dialog::DialogState;
use tracing::warn;

use super::super::record;
use super::super::store::{DialogStoreError, EXPIRY_MARGIN};
use super::RedisDialogStore;

/// One record found through an owner index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    /// Its Redis key.
    pub key: String,
    /// The record.
    pub state: DialogState,
    /// Time left until its dialog timeout: the key's remaining life less [`EXPIRY_MARGIN`]
    /// (every save resets the expiry to timeout + margin, so this counts from the last
    /// refresh, whichever node wrote it).
    pub remaining: Duration,
}

impl RedisDialogStore {
    /// The owner index of the node holding lease key `lease_key`: `P by-owner:<lease key>`.
    /// On a Redis Cluster: `P{by-owner:<lease key>}` (its own slot).
    pub fn index_key_of(&self, lease_key: &str) -> String {
        if self.cluster {
            return self.cluster_index_key(lease_key);
        }
        format!("{}by-owner:{lease_key}", self.prefix)
    }

    /// The set of every owner index: `P owners` (on a Redis Cluster `P{owners}`).
    pub fn owners_key(&self) -> String {
        if self.cluster {
            return format!("{}{{owners}}", self.prefix);
        }
        format!("{}owners", self.prefix)
    }

    /// This store's own owner index (`None` unfenced: no index kept).
    pub fn own_index(&self) -> Option<String> {
        self.fence
            .as_ref()
            .map(|f| self.index_key_of(f.lease_key()))
    }

    /// Every owner index ever written (members of `P owners`).
    pub async fn owner_indexes(&self) -> Result<Vec<String>, DialogStoreError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("SMEMBERS").arg(self.owners_key()).clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// The number of record keys in owner index `index`.
    pub async fn index_len(&self, index: &str) -> Result<u64, DialogStoreError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("SCARD").arg(index).clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// The records listed in owner index `index`, with their time left. Keys whose record is
    /// gone are removed from the index; a record that does not decode is skipped (logged).
    pub async fn indexed(&self, index: &str) -> Result<Vec<IndexedRecord>, DialogStoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = self
            .bounded(
                ::redis::cmd("SMEMBERS")
                    .arg(index)
                    .clone()
                    .query_async(&mut conn),
            )
            .await?;
        let mut out = Vec::with_capacity(members.len());
        let mut gone = Vec::new();
        for chunk in members.chunks(256) {
            let replies: Vec<FieldsAndTtl> = if self.cluster {
                // One slot per record: a pipeline per record, several at a time.
                let mut out = Vec::with_capacity(chunk.len());
                for flat in self.cluster_records(chunk).await? {
                    out.extend(pair_up(flat)?);
                }
                out
            } else {
                let mut pipe = ::redis::pipe();
                for key in chunk {
                    pipe.cmd("HGETALL").arg(key).cmd("PTTL").arg(key);
                }
                let flat: Vec<::redis::Value> = self.bounded(pipe.query_async(&mut conn)).await?;
                pair_up(flat)?
            };
            for (key, (fields, pttl)) in chunk.iter().zip(replies) {
                if fields.is_empty() {
                    gone.push(key.clone());
                    continue;
                }
                match record::decode(&fields) {
                    Ok(state) => {
                        let life = Duration::from_millis(u64::try_from(pttl).unwrap_or(0));
                        out.push(IndexedRecord {
                            key: key.clone(),
                            state,
                            remaining: life.saturating_sub(EXPIRY_MARGIN),
                        });
                    }
                    Err(e) => warn!(%key, error = %e, "skipping an undecodable dialog record"),
                }
            }
        }
        if !gone.is_empty() {
            let cmd = ::redis::cmd("SREM").arg(index).arg(&gone).clone();
            self.bounded(cmd.query_async::<i64>(&mut conn)).await?;
            if self.cluster {
                // A save lists its record before writing it: one written since it was read
                // goes back (see `cluster_index`).
                self.cluster_relist(index, &gone).await?;
            }
        }
        Ok(out)
    }

    /// The rebalance generation `P rebalance`: bumped by a node that adopted dialogs, so that
    /// the nodes that ran them before see the change and release theirs (0 when unset).
    pub async fn rebalance_generation(&self) -> Result<u64, DialogStoreError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("GET")
            .arg(format!("{}rebalance", self.prefix))
            .clone();
        let v: Option<u64> = self.bounded(cmd.query_async(&mut conn)).await?;
        Ok(v.unwrap_or(0))
    }

    /// Bumps the rebalance generation (see [`Self::rebalance_generation`]).
    pub async fn bump_rebalance(&self) -> Result<u64, DialogStoreError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("INCR")
            .arg(format!("{}rebalance", self.prefix))
            .clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }
}

/// A record's fields and its `PTTL`.
type FieldsAndTtl = (HashMap<String, String>, i64);

/// Reads a flat pipeline reply of (HGETALL, PTTL) pairs.
fn pair_up(flat: Vec<::redis::Value>) -> Result<Vec<FieldsAndTtl>, DialogStoreError> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(h), Some(t)) = (it.next(), it.next()) {
        let fields: HashMap<String, String> =
            ::redis::from_redis_value(h).map_err(|_| DialogStoreError::BadRecord("hash"))?;
        let pttl: i64 =
            ::redis::from_redis_value(t).map_err(|_| DialogStoreError::BadRecord("pttl"))?;
        out.push((fields, pttl));
    }
    Ok(out)
}
