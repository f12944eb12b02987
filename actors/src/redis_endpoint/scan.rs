//! Walking the keyspace with `SCAN` whatever the deployment: a single server (or a Sentinel
//! master) is one walk; a Redis Cluster spreads keys over its masters and `SCAN` only sees the
//! keys of the node it runs on, so there is one walk per master.
//!
//! The walk is exposed page by page ([`RedisEndpoint::scan_page`]) so that callers can bound
//! each round trip by their own timeout. A Cluster's masters are found with `CLUSTER SLOTS`;
//! each is named by one slot it serves ([`ScanTarget`]), and the pages of its walk are routed to
//! the master of that slot. A reshard during a walk can move keys between masters: the walk
//! then may miss or repeat keys that moved, as `SCAN` itself promises nothing for keys that are
//! not present for the whole walk.

use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{RedisResult, Value};

use super::{Inner, RedisEndpoint};

/// One node to walk: the server, or the Cluster master serving the given slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanTarget {
    /// A slot of the master (None: not a Cluster).
    slot: Option<u16>,
}

impl ScanTarget {
    /// The slot naming this master on a Cluster (None on a single server).
    pub fn slot(&self) -> Option<u16> {
        self.slot
    }
}

impl RedisEndpoint {
    /// The nodes a full keyspace walk must visit: one on a single server or Sentinel master,
    /// every master (one slot each, deduplicated by node id) on a Cluster.
    pub async fn scan_targets(&self) -> RedisResult<Vec<ScanTarget>> {
        let Inner::Cluster(conn) = &self.inner else {
            return Ok(vec![ScanTarget { slot: None }]);
        };
        let mut conn = conn.clone();
        let reply: Value = ::redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        Ok(master_slots(reply)
            .into_iter()
            .map(|slot| ScanTarget { slot: Some(slot) })
            .collect())
    }

    /// One `SCAN cursor MATCH pattern COUNT count` on `target`: the next cursor (0 when the
    /// walk is over) and the keys of this page.
    pub async fn scan_page(
        &self,
        target: ScanTarget,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> RedisResult<(u64, Vec<String>)> {
        let mut cmd = ::redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        match (&self.inner, target.slot) {
            (Inner::Cluster(conn), Some(slot)) => {
                let mut conn = conn.clone();
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(slot, SlotAddr::Master),
                ));
                let reply = conn.route_command(cmd, routing).await?;
                ::redis::from_redis_value(reply).map_err(Into::into)
            }
            _ => {
                let mut conn = self.clone();
                cmd.query_async(&mut conn).await
            }
        }
    }
}

/// The first slot of one range of each distinct master in a `CLUSTER SLOTS` reply
/// (`[[start, end, [ip, port, id, …], replicas…], …]`); malformed entries are skipped.
fn master_slots(reply: Value) -> Vec<u16> {
    let Value::Array(ranges) = reply else {
        return Vec::new();
    };
    let mut seen: Vec<String> = Vec::new();
    let mut slots = Vec::new();
    for range in ranges {
        let Value::Array(items) = range else {
            continue;
        };
        let mut items = items.into_iter();
        let (Some(Value::Int(start)), Some(_end), Some(Value::Array(master))) =
            (items.next(), items.next(), items.next())
        else {
            continue;
        };
        let Ok(start) = u16::try_from(start) else {
            continue;
        };
        // The node id when present (Redis ≥ 4), else ip:port.
        let name = match master.as_slice() {
            [_, _, Value::BulkString(id), ..] => String::from_utf8_lossy(id).into_owned(),
            [Value::BulkString(ip), Value::Int(port), ..] => {
                format!("{}:{port}", String::from_utf8_lossy(ip))
            }
            _ => continue,
        };
        if !seen.contains(&name) {
            seen.push(name);
            slots.push(start);
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn range(start: i64, end: i64, ip: &str, port: i64, id: &str) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![bulk(ip), Value::Int(port), bulk(id)]),
        ])
    }

    #[test]
    fn one_slot_per_distinct_master() {
        let reply = Value::Array(vec![
            range(0, 5460, "127.0.0.1", 7000, "a"),
            range(5461, 10922, "127.0.0.1", 7001, "b"),
            range(10923, 12000, "127.0.0.1", 7002, "c"),
            // A second range of master a (after a reshard).
            range(12001, 16383, "127.0.0.1", 7000, "a"),
        ]);
        assert_eq!(master_slots(reply), vec![0, 5461, 10923]);
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let reply = Value::Array(vec![
            Value::Int(3),
            Value::Array(vec![Value::Int(0)]),
            range(100, 200, "10.0.0.1", 6379, "x"),
        ]);
        assert_eq!(master_slots(reply), vec![100]);
        assert!(master_slots(Value::Nil).is_empty());
    }
}
