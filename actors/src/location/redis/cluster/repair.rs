//! The repair scan of the Cluster layout's bucket indexes (docs/REDIS.md "Repair scan"): the
//! AOR write and its bucket update are not atomic on a Redis Cluster, so a node crash between
//! them leaves an AOR out of its bucket's expiry index (its bindings are never swept) or a
//! bucket counter off by the delta. [`RedisLocationStore::repair_cluster_index`] rebuilds both
//! from the AOR values themselves:
//!
//! 1. `SCAN` every master for `P{*}aor` and read each value (`GET`, one slot each, 64 at once);
//!    per bucket, the earliest expiry of each AOR and the number of stored bindings;
//! 2. per bucket, `ZADD … LT` of every AOR with its earliest expiry: a missing entry is added,
//!    a score later than the true earliest is lowered; an earlier score (the sweep visits early
//!    and makes it exact) and entries of AORs that are gone (the sweep removes them when due)
//!    are left alone, so a REGISTER racing with the repair is never undone;
//! 3. the bucket counter is set to the counted bindings when it differs, only if it still
//!    holds the value read before the scan (compare-and-set on the bucket's slot): a bucket
//!    whose count moved during the scan is skipped ([`IndexRepair::counters_skipped`]; run the
//!    repair again when it is quieter). Not fully race-free: a REGISTER whose AOR write the
//!    scan saw but whose counter update lands after the compare-and-set is counted twice (the
//!    counter is a statistic).

use std::collections::HashMap;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::try_join_all;

use super::super::codec::{self, millis};
use super::super::{RedisLocationStore, glob_escape};
use crate::location::store::StoreError;

/// AOR values read at once.
const GROUP: usize = 64;
/// `SCAN` page size.
const PAGE: usize = 1000;
/// Members per `ZADD`.
const ZADD_CHUNK: usize = 500;

/// Compare-and-set of a bucket counter: `KEYS[1]` counter, `ARGV[1]` the value read before the
/// scan (`''` for none), `ARGV[2]` the new value; 1 when set.
const COUNTER_CAS_LUA: &str = "local v = redis.call('GET', KEYS[1]) or '' \
if v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";

/// What one repair scan found and changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexRepair {
    /// AOR values read.
    pub aors: usize,
    /// Bindings stored in them (expired ones not yet swept included).
    pub bindings: usize,
    /// Expiry index entries added or lowered.
    pub entries_fixed: usize,
    /// Bucket counters rewritten.
    pub counters_fixed: usize,
    /// Bucket counters that were wrong but changed during the scan (left alone).
    pub counters_skipped: usize,
    /// AOR values that did not decode (skipped, logged).
    pub undecodable: usize,
    /// Wall time of the whole scan.
    pub took: Duration,
}

/// One bucket's view: AOR → earliest expiry (ms), and the number of bindings.
#[derive(Default)]
struct Bucket {
    earliest: Vec<(Vec<u8>, u64)>,
    bindings: usize,
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

impl RedisLocationStore {
    /// Rebuilds the expiry index and counter of every bucket from the stored AOR values (the
    /// module doc has the rules). On a single server or Sentinel master the index is written
    /// atomically with the AOR, so there is nothing to repair: returns an empty report.
    pub async fn repair_cluster_index(&self) -> Result<IndexRepair, StoreError> {
        let start = Instant::now();
        let mut report = IndexRepair::default();
        let Some(layout) = self.cluster.as_deref() else {
            return Ok(report);
        };
        let key_prefix = format!("{}{{", layout.prefix());
        let pattern = format!("{}*}}aor", glob_escape(&key_prefix));
        let mut buckets: HashMap<u32, Bucket> = HashMap::new();
        let mut conn = self.conn.clone();
        let mut before: Vec<Option<i64>> = Vec::new();
        for index in 0..layout.buckets {
            let key = layout.count_key(index);
            let n: Option<i64> = self
                .bounded(::redis::cmd("GET").arg(&key).query_async(&mut conn))
                .await?;
            before.push(n);
        }
        for target in self.bounded(self.conn.scan_targets()).await? {
            let mut cursor = 0;
            loop {
                let (next, keys) = self
                    .bounded(self.conn.scan_page(target, cursor, &pattern, PAGE))
                    .await?;
                let values = self.read_values(&keys).await?;
                for (key, value) in keys.iter().zip(values) {
                    let Some(aor) = key
                        .strip_prefix(&key_prefix)
                        .and_then(|k| k.strip_suffix("}aor"))
                    else {
                        continue;
                    };
                    // Gone since the scan saw it: nothing to index.
                    let Some(value) = value else { continue };
                    let bindings = match codec::decode_set(&value) {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!(aor, error = %e, "repair scan: undecodable AOR value");
                            report.undecodable += 1;
                            continue;
                        }
                    };
                    report.aors += 1;
                    report.bindings += bindings.len();
                    let bucket = buckets.entry(layout.bucket(aor.as_bytes())).or_default();
                    bucket.bindings += bindings.len();
                    if let Some(earliest) = bindings.iter().map(|b| millis(b.expires_at)).min() {
                        bucket.earliest.push((aor.as_bytes().to_vec(), earliest));
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let cas = ::redis::Script::new(COUNTER_CAS_LUA);
        for (index, before) in (0..layout.buckets).zip(before) {
            let bucket = buckets.remove(&index).unwrap_or_default();
            for chunk in bucket.earliest.chunks(ZADD_CHUNK) {
                let mut cmd = ::redis::cmd("ZADD");
                cmd.arg(layout.exp_key(index)).arg("LT").arg("CH");
                for (aor, score) in chunk {
                    cmd.arg(*score).arg(aor.as_slice());
                }
                let changed: usize = self.bounded(cmd.query_async(&mut conn)).await?;
                report.entries_fixed += changed;
            }
            let counted = i64::try_from(bucket.bindings).unwrap_or(i64::MAX);
            if before.unwrap_or(0) != counted {
                let mut call = cas.prepare_invoke();
                call.key(layout.count_key(index))
                    .arg(before.map(|n| n.to_string()).unwrap_or_default())
                    .arg(counted);
                let set: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
                if set == 1 {
                    report.counters_fixed += 1;
                } else {
                    report.counters_skipped += 1;
                }
            }
        }
        report.took = start.elapsed();
        Ok(report)
    }

    /// `GET` of each key (one slot each), [`GROUP`] at a time; None where it is gone.
    async fn read_values(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let mut reads: Vec<Pending<'_, Option<Vec<u8>>>> = Vec::with_capacity(keys.len());
        for key in keys {
            reads.push(Box::pin(async move {
                let mut conn = self.conn.clone();
                self.bounded(::redis::cmd("GET").arg(key).query_async(&mut conn))
                    .await
            }));
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut reads = reads.into_iter();
        loop {
            let group: Vec<_> = reads.by_ref().take(GROUP).collect();
            if group.is_empty() {
                return Ok(out);
            }
            out.extend(
                try_join_all(group)
                    .await?
                    .into_iter()
                    .map(|v| v.map(Bytes::from)),
            );
        }
    }
}
