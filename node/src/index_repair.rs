//! The repair scan of the location store's bucket indexes on a Redis Cluster (issue 4; docs
//! REDIS.md "Repair scan"): on a Cluster the AOR write and its bucket update are not atomic,
//! and a node that crashed between them leaves an AOR out of the expiry index or a bucket
//! counter off. One node per cluster rebuilds them from the stored AORs
//! ([`RedisLocationStore::repair_cluster_index`]), once per process: the node that is the
//! placement owner of [`REPAIR_KEY`] once it holds its lease (so a node that restarted after a
//! crash, or a survivor that takes the key over, repairs what the crash may have left). Only
//! with a `redis+cluster://` URL; single servers and Sentinel need no repair.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use sipmesh_actors::location::RedisLocationStore;
use sipmesh_cluster::Membership;

/// The placement key deciding which node runs the repair.
pub const REPAIR_KEY: &[u8] = b"repair:location-index";

/// How often the placement is checked until the repair ran.
const EVERY: Duration = Duration::from_secs(1);

/// Starts the task (None when `store` is not on a Redis Cluster); it ends after one successful
/// repair, or runs until aborted.
pub fn start(membership: Membership, store: RedisLocationStore) -> Option<JoinHandle<()>> {
    if !store.is_cluster() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if membership.is_fenced() || !membership.is_owner(REPAIR_KEY) {
                continue;
            }
            match store.repair_cluster_index().await {
                Ok(r) => {
                    info!(
                        aors = r.aors,
                        bindings = r.bindings,
                        entries_fixed = r.entries_fixed,
                        counters_fixed = r.counters_fixed,
                        counters_skipped = r.counters_skipped,
                        undecodable = r.undecodable,
                        took_ms = r.took.as_millis(),
                        "location index repair scan done"
                    );
                    return;
                }
                Err(e) => warn!(error = %e, "location index repair scan failed; retrying"),
            }
        }
    }))
}
