//! Lost flows after a node death (issue 5 point 4): the connections a dead node held are gone
//! with it, so the bindings registered over them must go too, and requests to those users
//! must get 480 (not 404, not a timeout) until they register again at a survivor.
//!
//! Every clustered node watches the member table. When a peer is declared dead, the one
//! survivor that is the placement owner of the key `flows:<node id>` removes every binding of
//! that node's connection scope from Redis and leaves the closed-flows marker on the AORs it
//! empties ([`RedisLocationStore::remove_scope_connections`], which on a Redis Cluster walks
//! every master for the node's connection sets). The other survivors do nothing,
//! and the writes are fenced with the owner's epoch. A peer seen live again is forgotten, so
//! its next death is handled again. A node also removes, once it first holds its lease, the
//! bindings of its own earlier processes (a restart faster than the failure detector leaves
//! them behind): no connection outlives its process, and its own incarnation's are kept.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use sipmesh_actors::location::RedisLocationStore;
use sipmesh_cluster::{MemberState, Membership, NodeId};
use sipmesh_protocol::proxy::Incarnation;

/// How often the member table is read.
const EVERY: Duration = Duration::from_millis(250);

/// The placement key deciding which survivor cleans up after `node`.
pub fn cleanup_key(node: &NodeId) -> String {
    format!("flows:{node}")
}

/// Starts the watcher; it runs until aborted.
pub fn start(
    membership: Membership,
    store: RedisLocationStore,
    incarnation: Incarnation,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let me = membership.node_id().clone();
        let mut cleaned: BTreeSet<NodeId> = BTreeSet::new();
        let mut own_done = false;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if membership.is_fenced() {
                continue;
            }
            if !own_done {
                let mine = |c| Incarnation::of(c) == incarnation;
                match store.remove_scope_connections(me.as_str(), mine).await {
                    Ok(n) => {
                        own_done = true;
                        if n > 0 {
                            info!(
                                removed = n,
                                "bindings of this node's earlier processes removed"
                            );
                        }
                    }
                    Err(e) => warn!(error = %e, "removing this node's stale flows failed"),
                }
            }
            for m in membership.view().members {
                if m.is_self {
                    continue;
                }
                match m.state {
                    MemberState::Dead => {}
                    _ => {
                        cleaned.remove(&m.id);
                        continue;
                    }
                }
                if cleaned.contains(&m.id) || !membership.is_owner(cleanup_key(&m.id).as_bytes()) {
                    continue;
                }
                match store
                    .remove_scope_connections(m.id.as_str(), |_| false)
                    .await
                {
                    Ok(n) => {
                        info!(node = %m.id, removed = n, "flows of a dead node removed");
                        cleaned.insert(m.id);
                    }
                    Err(e) => {
                        warn!(node = %m.id, error = %e, "removing a dead node's flows failed")
                    }
                }
            }
        }
    })
}
