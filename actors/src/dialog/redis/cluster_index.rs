//! The dialog owner index on a Redis Cluster (issue 5 failover on a Cluster; docs/REDIS.md
//! "Dialog owner index on a Cluster").
//!
//! On a single server the fenced scripts move a record between owner indexes atomically with
//! the record write. On a Cluster the record (`P{<dialog>}`), each owner index
//! (`P{by-owner:<lease key>}`, one slot per owner) and the set of indexes (`P{owners}`) are in
//! different slots, so a script cannot touch them together. The fenced save and remove here keep
//! the index with separate commands, ordered so that a crash or a race between them can only
//! leave an index entry too many, never a stored record that no index lists:
//!
//! 1. **add before and after the write**: a save first `SADD`s the record key to this node's
//!    index (and this index to `P{owners}`), then runs the fenced record script, which also sets
//!    the record field `owner` to this index, then `SADD`s the key again (a reader may have
//!    dropped it meanwhile, rule 3);
//! 2. **remove after**: a writer takes a key out of an index only after the record stopped
//!    naming it: the save `SREM`s the key from the index its record named before (read with
//!    `HGET` first) once the write landed, and the remove `SREM`s it from the named index after
//!    the `DEL`;
//! 3. **readers drop only what is gone** ([`RedisDialogStore::indexed`]): an entry whose record
//!    does not exist is removed, then the reader checks `EXISTS` and puts back the entries whose
//!    record appeared meanwhile (a new dialog's save between its first `SADD` and its write). An
//!    entry whose record names another index is left alone: from the sets alone it cannot be
//!    told from a save in flight (listed in the new index, record not written yet); the
//!    rebalance handles a record listed twice once.
//!
//! An adoption ([`WriteRole::Take`]) rewrites the record from the adopter's copy but keeps its
//! time left (`PTTL` read first), so the adopted dialog's timeout still counts from its last
//! refresh; a record that is gone by then is not re-created ([`DialogStoreError::Ended`]; the
//! script checks it atomically, as on a single server), nor is one by an owner's write that
//! presents a revision. A visitor's save (an in-dialog request at a node that does not run the dialog,
//! [`WriteRole::Visitor`]) touches no index: it keeps the record's `owner` field, and does not
//! recreate a record that is gone, as on a single server. The claim rule ("Per-dialog owner
//! claims") is not checked on a Cluster: the claimant's lease is in another slot.
//!
//! Left: a writer that dies between its write and its `SREM` leaves an entry in the old index
//! until the record is gone (harmless: the record is read twice, handled once); a record can
//! be unlisted only if its writer died after its first `SADD` was dropped by a reader and
//! before its second.

use ::redis::Value;
use std::pin::Pin;

use futures_util::future::{join, try_join_all};

use super::super::store::{DialogStoreError, Revision, WriteRole};
use sipmesh_protocol::dialog::DialogState;

use super::super::record;
use super::RedisDialogStore;
use crate::fence::FenceCheck;

/// Record reads sent at once on a Cluster (one slot each, so no pipeline across them).
const GROUP: usize = 64;

/// The record field naming the owner index that lists the record.
pub(super) const OWNER_FIELD: &str = "owner";

impl RedisDialogStore {
    /// The owner index of lease key `lease_key` on a Cluster: `P{by-owner:<lease key>}`, braces
    /// of the lease key (itself hash-tagged on a Cluster) left out so the tag is this index's.
    pub(super) fn cluster_index_key(&self, lease_key: &str) -> String {
        let plain: String = lease_key
            .chars()
            .filter(|c| !matches!(c, '{' | '}'))
            .collect();
        format!("{}{{by-owner:{plain}}}", self.prefix)
    }

    /// The owner index named by record `key` (`HGET key owner`).
    async fn named_index(&self, key: &str) -> Result<Option<String>, DialogStoreError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("HGET").arg(key).arg(OWNER_FIELD).clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// `SREM index key`.
    async fn unlist(&self, index: &str, key: &str) -> Result<(), DialogStoreError> {
        let mut conn = self.conn.clone();
        let cmd = ::redis::cmd("SREM").arg(index).arg(key).clone();
        self.bounded(cmd.query_async::<i64>(&mut conn)).await?;
        Ok(())
    }

    /// A fenced save on a Cluster (rules 1 and 2 of the module doc) of `state`'s record, with
    /// key lifetime `ttl_ms`, by a writer in `role` that last saw revision `seen`.
    pub(super) async fn cluster_fenced_save(
        &self,
        state: &DialogState,
        fence: &FenceCheck,
        ttl_ms: i64,
        role: WriteRole,
        seen: Option<Revision>,
    ) -> Result<Option<Revision>, DialogStoreError> {
        let key = &self.key(&state.id);
        let fence_key = self.fence_key(&state.id, fence);
        let fields = &record::encode(state);
        let seen = seen.map_or(String::new(), |r| r.0.to_string());
        let revision = |rev: i64| u64::try_from(rev).ok().filter(|r| *r > 0).map(Revision);
        if role == WriteRole::Visitor {
            // The record keeps the index it names; a record that is gone stays gone.
            let Some(named) = self.named_index(key).await? else {
                return Ok(None);
            };
            let mut call = self.fenced_save.prepare_invoke();
            call.key(key)
                .key(fence_key)
                .arg(fence.epoch)
                .arg(ttl_ms)
                .arg(role.as_str())
                .arg(&seen);
            for (field, value) in fields {
                call.arg(field).arg(value);
            }
            call.arg(OWNER_FIELD).arg(&named);
            let mut conn = self.conn.clone();
            return self.write_then_wait(call, &mut conn).await.map(revision);
        }
        // An adoption keeps the record's expiry (its timer follows the time left since the
        // last refresh), as the single-server take does.
        let ttl_ms = if role == WriteRole::Take {
            let mut conn = self.conn.clone();
            let cmd = ::redis::cmd("PTTL").arg(key).clone();
            let left: i64 = self.bounded(cmd.query_async(&mut conn)).await?;
            if left > 0 { left } else { ttl_ms }
        } else {
            ttl_ms
        };
        let own = self.cluster_index_key(&fence.lease_key);
        let listed = async {
            let mut conn = self.conn.clone();
            let add = ::redis::cmd("SADD").arg(&own).arg(key).clone();
            self.bounded(add.query_async::<i64>(&mut conn)).await?;
            let owners = ::redis::cmd("SADD")
                .arg(self.owners_key())
                .arg(&own)
                .clone();
            self.bounded(owners.query_async::<i64>(&mut conn)).await?;
            Ok::<(), DialogStoreError>(())
        };
        let (previous, listed) = join(self.named_index(key), listed).await;
        listed?;
        let previous = previous?;
        let mut call = self.fenced_save.prepare_invoke();
        call.key(key)
            .key(fence_key)
            .arg(fence.epoch)
            .arg(ttl_ms)
            .arg(role.as_str())
            .arg(&seen);
        for (field, value) in fields {
            call.arg(field).arg(value);
        }
        call.arg(OWNER_FIELD).arg(&own);
        let mut conn = self.conn.clone();
        let written = self.write_then_wait(call, &mut conn).await?;
        if written == super::ENDED {
            // The dialog ended: take back this write's first `SADD` (a reader would drop the
            // entry anyway, rule 3) and re-list nothing.
            self.unlist(&own, key).await?;
            return Err(DialogStoreError::Ended);
        }
        let relisted = async {
            let mut conn = self.conn.clone();
            let add = ::redis::cmd("SADD").arg(&own).arg(key).clone();
            self.bounded(add.query_async::<i64>(&mut conn)).await?;
            Ok::<(), DialogStoreError>(())
        };
        let unlisted = async {
            match previous.filter(|p| *p != own) {
                Some(previous) => self.unlist(&previous, key).await,
                None => Ok(()),
            }
        };
        let (relisted, unlisted) = join(relisted, unlisted).await;
        relisted.and(unlisted).map(|()| revision(written))
    }

    /// A fenced remove on a Cluster (rule 2): the record goes, then its entry in the index it
    /// named. True when a record was deleted.
    pub(super) async fn cluster_fenced_remove(
        &self,
        key: &str,
        fence_key: String,
        fence: &FenceCheck,
        role: WriteRole,
    ) -> Result<bool, DialogStoreError> {
        let named = self.named_index(key).await?;
        let mut call = self.fenced_remove.prepare_invoke();
        call.key(key)
            .key(fence_key)
            .arg(fence.epoch)
            .arg(role.as_str());
        let mut conn = self.conn.clone();
        let n: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        if let Some(index) = named {
            self.unlist(&index, key).await?;
        }
        Ok(n > 0)
    }

    /// Puts back into `index` the `dropped` keys whose record exists (rule 3 of the module doc).
    pub(super) async fn cluster_relist(
        &self,
        index: &str,
        dropped: &[String],
    ) -> Result<(), DialogStoreError> {
        let mut checks: Vec<Pending<'_, bool>> = Vec::with_capacity(dropped.len());
        for key in dropped {
            checks.push(Box::pin(async move {
                let mut conn = self.conn.clone();
                let cmd = ::redis::cmd("EXISTS").arg(key).clone();
                self.bounded(cmd.query_async::<bool>(&mut conn)).await
            }));
        }
        let exists = in_groups(checks).await?;
        let back: Vec<&String> = dropped
            .iter()
            .zip(exists)
            .filter_map(|(k, e)| e.then_some(k))
            .collect();
        if !back.is_empty() {
            let mut conn = self.conn.clone();
            let cmd = ::redis::cmd("SADD").arg(index).arg(&back).clone();
            self.bounded(cmd.query_async::<i64>(&mut conn)).await?;
        }
        Ok(())
    }

    /// `HGETALL` and `PTTL` of each of `keys` on a Cluster: one two-command pipeline per record
    /// (its own slot), [`GROUP`] at a time.
    pub(super) async fn cluster_records(
        &self,
        keys: &[String],
    ) -> Result<Vec<Vec<Value>>, DialogStoreError> {
        let mut reads: Vec<Pending<'_, Vec<Value>>> = Vec::with_capacity(keys.len());
        for key in keys {
            reads.push(Box::pin(async move {
                let mut conn = self.conn.clone();
                let mut pipe = ::redis::pipe();
                pipe.cmd("HGETALL").arg(key).cmd("PTTL").arg(key);
                self.bounded(pipe.query_async::<Vec<Value>>(&mut conn))
                    .await
            }));
        }
        in_groups(reads).await
    }
}

/// One pending store call.
type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, DialogStoreError>> + Send + 'a>>;

/// Runs `calls` [`GROUP`] at a time, results in order; the first error ends it.
async fn in_groups<T>(calls: Vec<Pending<'_, T>>) -> Result<Vec<T>, DialogStoreError> {
    let mut out = Vec::with_capacity(calls.len());
    let mut calls = calls.into_iter();
    loop {
        let group: Vec<_> = calls.by_ref().take(GROUP).collect();
        if group.is_empty() {
            return Ok(out);
        }
        out.extend(try_join_all(group).await?);
    }
}

#[cfg(test)]
mod tests {
    use crate::location::RedisStoreConfig;

    use super::*;

    #[tokio::test]
    async fn index_keys_carry_their_own_hash_tag() {
        let config = RedisStoreConfig::new("redis+cluster://127.0.0.1:1/".to_owned());
        let store =
            RedisDialogStore::new(&config, "sipmesh:dlg:").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.cluster_index_key("{sipmesh:}node:n1"),
            "sipmesh:dlg:{by-owner:sipmesh:node:n1}"
        );
        assert_eq!(store.owners_key(), "sipmesh:dlg:{owners}");
        assert_eq!(
            store.index_key_of("{sipmesh:}node:n1"),
            "sipmesh:dlg:{by-owner:sipmesh:node:n1}"
        );
    }
}
