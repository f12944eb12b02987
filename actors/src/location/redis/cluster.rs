//! The location store on a Redis Cluster (docs/REDIS.md, "Redis Cluster").
//!
//! Cluster requires every key a script touches to be passed in `KEYS` and to hash to one slot,
//! so the single-server layout (one script writes the AOR, the global expiry index, the counter
//! and the connection sets) cannot run there. Here:
//!
//! - the AOR's keys share its slot through a hash tag: `P{<AOR>}aor`, `P{<AOR>}closed`, and the
//!   fencing token `P{<AOR>}fence`; the REGISTER rules are the same `register.lua`, with the
//!   Cluster layout prepended (`layout_cluster.lua`), and it returns the index changes instead
//!   of applying them;
//! - the expiry index and the counter are [`ClusterLayout::buckets`] buckets,
//!   `P{b<i>}exp` / `P{b<i>}bindings` with `i = fnv1a(AOR) mod buckets`, updated after the AOR
//!   script by `bucket_index.lua` on the bucket's slot; the connection index is
//!   `P{conn:<scope>:<id>}`, one set per connection in its own slot, updated with `SADD`/`SREM`;
//! - connection removal reads the set, runs `remove_flow_aor.lua` on each listed AOR, applies
//!   their index changes and deletes the set; the sweep walks the buckets and runs
//!   `sweep_aor.lua` on each due AOR.
//!
//! Ordering rules of the index updates (they are not atomic with the AOR write): a REGISTER that
//! leaves bindings sets the AOR's bucket score unconditionally; one that leaves none, and the
//! sweep, change the entry only while it still has the score they saw (compare-and-set), so a
//! concurrent write that re-added the AOR is never undone. What is left: a crash between the two
//! steps, or two REGISTERs' index updates arriving in the opposite order, can leave a score later
//! than the true earliest expiry (the binding is swept late; lookups filter expired bindings
//! anyway) or a connection set missing an AOR (its flow binding then lives until it expires
//! instead of going with the connection).

mod repair;

use std::sync::Arc;
use std::time::SystemTime;

use ::redis::{Cmd, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};
use sipmesh_protocol::registrar::{Aor, RegisterRequest};

use super::library::RegisterScript;
use super::{
    COMMON_LUA, REGISTER_LUA, REGISTER_PRELUDE_LUA, RedisLocationStore, RegisterPlan, bad_reply,
    bytes_of, codec,
};
use crate::fence::FenceCheck;
use crate::location::store::{StoreError, StoreStats};
use crate::redis_endpoint::RedisEndpoint;

pub use repair::IndexRepair;

/// The Cluster key layout.
const LAYOUT_CLUSTER_LUA: &str = include_str!("layout_cluster.lua");
/// Connection removal for one AOR.
const REMOVE_FLOW_AOR_LUA: &str = include_str!("remove_flow_aor.lua");
/// The sweep of one AOR.
const SWEEP_AOR_LUA: &str = include_str!("sweep_aor.lua");
/// The bucket update.
const BUCKET_INDEX_LUA: &str = include_str!("bucket_index.lua");

/// Default number of expiry/counter buckets.
pub const DEFAULT_BUCKETS: u32 = 16;

/// Most rounds of one bucket in one sweep (a round handles up to `sweep_batch` AORs), so that a
/// bucket whose entries keep coming back (a racing writer) cannot hold the sweep forever.
const MAX_SWEEP_ROUNDS: usize = 64;

/// Key names and scripts of the Cluster layout.
#[derive(Debug)]
pub(super) struct ClusterLayout {
    prefix: String,
    buckets: u32,
    pub(super) register: Arc<RegisterScript>,
    remove_flow: Script,
    sweep_aor: Script,
    bucket_index: Script,
}

/// What one AOR rewrite changes in the indexes (`index_effects` in `common.lua`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Effects {
    /// Earliest expiry before (0: none).
    old_min: i64,
    /// Earliest expiry after (0: no binding left).
    new_min: i64,
    /// Change of the binding count.
    delta: i64,
    /// Connections (`scope:id`) that now index the AOR.
    adds: Vec<Vec<u8>>,
    /// Connections that no longer do.
    removes: Vec<Vec<u8>>,
}

impl Effects {
    /// Parses the five `index_effects` items.
    pub(super) fn parse(items: &[Value]) -> Option<Self> {
        let int = |v: &Value| match v {
            Value::Int(n) => Some(*n),
            _ => None,
        };
        let list = |v: &Value| match v {
            Value::Array(a) => a.iter().map(|c| bytes_of(c).map(<[u8]>::to_vec)).collect(),
            Value::Nil => Some(Vec::new()),
            _ => None,
        };
        match items {
            [old_min, new_min, delta, adds, removes] => Some(Self {
                old_min: int(old_min)?,
                new_min: int(new_min)?,
                delta: int(delta)?,
                adds: list(adds)?,
                removes: list(removes)?,
            }),
            _ => None,
        }
    }
}

/// How the bucket entry may be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Set it whatever it holds (a write that leaves bindings).
    Any,
    /// Only while it still has this score.
    Score(i64),
}

/// FNV-1a, 64 bits: a stable spread of AORs over buckets (the same on every node and version).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ClusterLayout {
    /// The layout under `prefix` with `buckets` buckets (at least 1).
    pub(super) fn new(prefix: &str, buckets: u32) -> Self {
        let script = |body: &str| Script::new(&format!("{COMMON_LUA}\n{body}"));
        Self {
            prefix: prefix.to_owned(),
            buckets: buckets.max(1),
            register: Arc::new(RegisterScript::new(
                REGISTER_PRELUDE_LUA,
                &format!("{LAYOUT_CLUSTER_LUA}\n{REGISTER_LUA}"),
            )),
            remove_flow: script(REMOVE_FLOW_AOR_LUA),
            sweep_aor: script(SWEEP_AOR_LUA),
            bucket_index: Script::new(BUCKET_INDEX_LUA),
        }
    }

    /// The key prefix `P`.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The register call (`register.lua` after `layout_cluster.lua`) for `req`.
    pub(super) fn register_command(
        &self,
        req: &RegisterRequest,
        plan: &RegisterPlan,
        now: SystemTime,
        max_contacts: usize,
        fence: Option<&FenceCheck>,
    ) -> Cmd {
        let mut cmd = self.register.command();
        cmd.arg(if fence.is_some() { 3 } else { 2 })
            .arg(self.aor_key(&req.aor))
            .arg(self.closed_key(&req.aor));
        if fence.is_some() {
            cmd.arg(self.fence_key(&req.aor));
        }
        cmd.arg(codec::millis(now))
            .arg(plan.mode)
            .arg(req.call_id.as_ref())
            .arg(req.cseq)
            .arg(max_contacts)
            .arg(req.aor.as_bytes());
        match fence {
            Some(fence) => cmd.arg(&*fence.lease_key).arg(fence.epoch),
            None => cmd.arg("").arg(""),
        };
        for items in &plan.contacts {
            for item in items {
                cmd.arg(item.as_slice());
            }
        }
        cmd
    }

    /// `P{<AOR>}<suffix>`.
    fn tagged(&self, aor: &[u8], suffix: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + aor.len() + suffix.len() + 2);
        k.extend_from_slice(self.prefix.as_bytes());
        k.push(b'{');
        k.extend_from_slice(aor);
        k.push(b'}');
        k.extend_from_slice(suffix.as_bytes());
        k
    }

    /// The AOR's value key.
    pub(super) fn aor_key(&self, aor: &Aor) -> Vec<u8> {
        self.tagged(aor.as_bytes(), "aor")
    }

    /// The AOR's closed-flows marker.
    pub(super) fn closed_key(&self, aor: &Aor) -> Vec<u8> {
        self.tagged(aor.as_bytes(), "closed")
    }

    /// The AOR's fencing token.
    pub(super) fn fence_key(&self, aor: &Aor) -> Vec<u8> {
        self.tagged(aor.as_bytes(), "fence")
    }

    fn bucket(&self, aor: &[u8]) -> u32 {
        u32::try_from(fnv1a(aor) % u64::from(self.buckets)).unwrap_or(0)
    }

    fn exp_key(&self, bucket: u32) -> String {
        format!("{}{{b{bucket}}}exp", self.prefix)
    }

    fn count_key(&self, bucket: u32) -> String {
        format!("{}{{b{bucket}}}bindings", self.prefix)
    }

    /// The index set of connection `scope:id`.
    fn conn_key(&self, conn: &[u8]) -> Vec<u8> {
        self.tagged(&[b"conn:".as_slice(), conn].concat(), "")
    }
}

/// Runs `cmd` (an `EVALSHA` of `script`, or a plain command when `script` is None), loading the
/// script on every master and retrying once on `NOSCRIPT`.
pub(super) async fn query_script(
    conn: &mut RedisEndpoint,
    cmd: &Cmd,
    script: Option<&Script>,
) -> RedisResult<Value> {
    match (cmd.query_async::<Value>(conn).await, script) {
        (Err(e), Some(script)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async::<Value>(conn).await
        }
        (result, _) => result,
    }
}

impl RedisLocationStore {
    /// The Cluster layout (only called on a Cluster store).
    fn layout(&self) -> Result<&ClusterLayout, StoreError> {
        self.cluster
            .as_deref()
            .ok_or_else(|| bad_reply("cluster layout on a single-server store"))
    }

    /// Applies `fx` of `aor` to its bucket and connection sets.
    async fn apply_effects(&self, aor: &[u8], fx: &Effects, expect: Expect) -> RedisResult<()> {
        let Some(layout) = self.cluster.as_deref() else {
            return Ok(());
        };
        let mut conn = self.conn.clone();
        let bucket = layout.bucket(aor);
        let mut call = layout.bucket_index.prepare_invoke();
        call.key(layout.exp_key(bucket))
            .key(layout.count_key(bucket))
            .arg(aor)
            .arg(fx.new_min)
            .arg(fx.delta);
        match expect {
            Expect::Any => call.arg(""),
            Expect::Score(s) => call.arg(s),
        };
        let mut bucket_conn = conn.clone();
        let bucket_update = async {
            let conn = &mut bucket_conn;
            call.invoke_async::<i64>(conn).await.map(|_| ())
        };
        let sets = async {
            for c in &fx.adds {
                ::redis::cmd("SADD")
                    .arg(layout.conn_key(c))
                    .arg(aor)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            for c in &fx.removes {
                ::redis::cmd("SREM")
                    .arg(layout.conn_key(c))
                    .arg(aor)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            Ok::<(), RedisError>(())
        };
        let (a, b) = tokio::join!(bucket_update, sets);
        a.and(b)
    }

    /// A REGISTER's index updates after its AOR script reported a change (the reply items
    /// after the new value).
    pub(super) async fn cluster_register_followup(
        &self,
        aor: &Aor,
        items: &[Value],
    ) -> Result<(), StoreError> {
        let fx = Effects::parse(items).ok_or_else(|| bad_reply("register index effects"))?;
        let expect = if fx.new_min == 0 {
            Expect::Score(fx.old_min)
        } else {
            Expect::Any
        };
        self.bounded(self.apply_effects(aor.as_bytes(), &fx, expect))
            .await
    }

    /// `remove_connection` on a Cluster.
    pub(super) async fn cluster_remove_connection(
        &self,
        connection: &str,
        fence: Option<(&str, u64)>,
    ) -> Result<usize, StoreError> {
        let layout = self.layout()?;
        let set = layout.conn_key(connection.as_bytes());
        let mut conn = self.conn.clone();
        let members: Vec<Vec<u8>> = self
            .bounded(::redis::cmd("SMEMBERS").arg(&set).query_async(&mut conn))
            .await?;
        let mut removed = 0;
        for aor in members {
            let mut cmd = ::redis::cmd("EVALSHA");
            cmd.arg(layout.remove_flow.get_hash())
                .arg(if fence.is_some() { 3 } else { 2 })
                .arg(layout.tagged(&aor, "aor"))
                .arg(layout.tagged(&aor, "closed"));
            if fence.is_some() {
                cmd.arg(layout.tagged(&aor, "fence"));
            }
            cmd.arg(connection).arg(self.flows_closed_ttl_ms);
            match fence {
                Some((field, epoch)) => cmd.arg(field).arg(epoch),
                None => cmd.arg("").arg(""),
            };
            let reply = self
                .bounded(query_script(&mut conn, &cmd, Some(&layout.remove_flow)))
                .await?;
            let Value::Array(items) = reply else {
                return Err(bad_reply("remove_flow_aor reply"));
            };
            match items.split_first() {
                Some((Value::Int(0), [])) => {}
                Some((Value::Int(n), rest)) => {
                    removed += usize::try_from(*n).unwrap_or(0);
                    let fx = Effects::parse(rest).ok_or_else(|| bad_reply("remove effects"))?;
                    let expect = if fx.new_min == 0 {
                        Expect::Score(fx.old_min)
                    } else {
                        Expect::Any
                    };
                    self.bounded(self.apply_effects(&aor, &fx, expect)).await?;
                }
                _ => return Err(bad_reply("remove_flow_aor reply")),
            }
        }
        self.bounded(::redis::cmd("DEL").arg(&set).query_async::<()>(&mut conn))
            .await?;
        Ok(removed)
    }

    /// `sweep_expired` on a Cluster: every bucket, `sweep_batch` due AORs per round.
    pub(super) async fn cluster_sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        let layout = self.layout()?;
        let mut removed = 0;
        let mut conn = self.conn.clone();
        for bucket in 0..layout.buckets {
            for _ in 0..MAX_SWEEP_ROUNDS {
                let due: Vec<(Vec<u8>, i64)> = self
                    .bounded(
                        ::redis::cmd("ZRANGEBYSCORE")
                            .arg(layout.exp_key(bucket))
                            .arg("-inf")
                            .arg(now_ms)
                            .arg("WITHSCORES")
                            .arg("LIMIT")
                            .arg(0)
                            .arg(self.sweep_batch)
                            .query_async(&mut conn),
                    )
                    .await?;
                let visited = due.len();
                for (aor, score) in due {
                    let mut cmd = ::redis::cmd("EVALSHA");
                    cmd.arg(layout.sweep_aor.get_hash())
                        .arg(2)
                        .arg(layout.tagged(&aor, "aor"))
                        .arg(layout.tagged(&aor, "closed"))
                        .arg(now_ms);
                    let reply = self
                        .bounded(query_script(&mut conn, &cmd, Some(&layout.sweep_aor)))
                        .await?;
                    let Value::Array(items) = reply else {
                        return Err(bad_reply("sweep_aor reply"));
                    };
                    let Some((Value::Int(n), rest)) = items.split_first() else {
                        return Err(bad_reply("sweep_aor reply"));
                    };
                    removed += usize::try_from(*n).unwrap_or(0);
                    let fx = Effects::parse(rest).ok_or_else(|| bad_reply("sweep effects"))?;
                    self.bounded(self.apply_effects(&aor, &fx, Expect::Score(score)))
                        .await?;
                }
                if visited < self.sweep_batch {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// `stats` on a Cluster: the buckets summed.
    pub(super) async fn cluster_stats(&self) -> Result<StoreStats, StoreError> {
        let layout = self.layout()?;
        let mut conn = self.conn.clone();
        let mut stats = StoreStats {
            aors: 0,
            bindings: 0,
        };
        for bucket in 0..layout.buckets {
            let mut pipe = ::redis::pipe();
            pipe.cmd("ZCARD")
                .arg(layout.exp_key(bucket))
                .cmd("GET")
                .arg(layout.count_key(bucket));
            let (aors, bindings): (usize, Option<i64>) =
                self.bounded(pipe.query_async(&mut conn)).await?;
            stats.aors += aors;
            stats.bindings += usize::try_from(bindings.unwrap_or(0)).unwrap_or(0);
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_aor_slot_and_buckets_are_stable() {
        let layout = ClusterLayout::new("sipmesh:loc:", 16);
        let aor = b"sip:alice@example.com";
        assert_eq!(
            layout.tagged(aor, "aor"),
            b"sipmesh:loc:{sip:alice@example.com}aor"
        );
        assert_eq!(layout.conn_key(b"n1:7"), b"sipmesh:loc:{conn:n1:7}");
        assert_eq!(layout.exp_key(3), "sipmesh:loc:{b3}exp");
        assert_eq!(layout.count_key(3), "sipmesh:loc:{b3}bindings");
        // FNV-1a test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert!(layout.bucket(aor) < 16);
        assert_eq!(ClusterLayout::new("p:", 0).bucket(aor), 0);
    }

    #[test]
    fn effects_parse_the_script_items() {
        let items = [
            Value::Int(5),
            Value::Int(9),
            Value::Int(-1),
            Value::Array(vec![Value::BulkString(b"n:1".to_vec())]),
            Value::Array(vec![]),
        ];
        assert_eq!(
            Effects::parse(&items),
            Some(Effects {
                old_min: 5,
                new_min: 9,
                delta: -1,
                adds: vec![b"n:1".to_vec()],
                removes: vec![],
            })
        );
        assert_eq!(Effects::parse(&items[..4]), None);
    }
}
