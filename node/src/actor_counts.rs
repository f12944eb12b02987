//! The per-member actor counts of the admin view (issue 5, point 5): how many AOR actors,
//! dialog actors, media sessions and stream connections each member runs.
//!
//! Every second the node publishes its own counts in Redis (`P counts:<node id>`, 5 s expiry,
//! [`ClusterStore::publish_counts`]) and reads its peers'; `GET /cluster` fills `actors` and
//! `owned_actors` (their sum) of every member from that, this node's own counts taken live.
//! A dead member's counts lapse with their expiry.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use sipmesh_actors::engine::{EngineAdmin, LocalCounts};
use sipmesh_cluster::store::ClusterStore;
use sipmesh_cluster::{ActorCounts, ClusterView, Membership, NodeId};

/// How often the counts are published and read.
const EVERY: Duration = Duration::from_secs(1);
/// Life of a published count.
const TTL: Duration = Duration::from_secs(5);

/// The members' actor counts for the admin view. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemberCounts {
    admin: EngineAdmin,
    peers: watch::Receiver<BTreeMap<NodeId, ActorCounts>>,
}

impl MemberCounts {
    /// Fills `actors` and `owned_actors` of every member of `view`: this node's live counts and
    /// each peer's last published ones (`None` when none is fresh).
    pub fn fill(&self, view: &mut ClusterView) {
        let peers = self.peers.borrow();
        for m in &mut view.members {
            let counts = if m.is_self {
                Some(convert(self.admin.local_counts()))
            } else {
                peers.get(&m.id).copied()
            };
            m.owned_actors = counts.as_ref().map(ActorCounts::total);
            m.actors = counts;
        }
    }
}

/// The cluster form of the engine's counts.
fn convert(local: LocalCounts) -> ActorCounts {
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    ActorCounts {
        aors: n(local.aor_actors),
        dialogs: n(local.dialogs),
        media_sessions: n(local.media_sessions),
        connections: n(local.connections),
    }
}

/// Starts publishing and reading; the task runs until aborted.
pub fn start(
    membership: Membership,
    store: ClusterStore,
    admin: EngineAdmin,
) -> (JoinHandle<()>, MemberCounts) {
    let (tx, rx) = watch::channel(BTreeMap::new());
    let counts = MemberCounts {
        admin: admin.clone(),
        peers: rx,
    };
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let own = convert(admin.local_counts());
            if let Err(e) = store.publish_counts(membership.node_id(), &own, TTL).await {
                warn!(error = %e, "publishing the actor counts failed");
            }
            let peers: Vec<NodeId> = membership
                .view()
                .members
                .into_iter()
                .filter(|m| !m.is_self)
                .map(|m| m.id)
                .collect();
            match store.counts(&peers).await {
                Ok(counts) => {
                    let map = peers
                        .into_iter()
                        .zip(counts)
                        .filter_map(|(id, c)| c.map(|c| (id, c)))
                        .collect();
                    tx.send_replace(map);
                }
                Err(e) => warn!(error = %e, "reading the peers' actor counts failed"),
            }
        }
    });
    (task, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_counts_map_one_to_one() {
        let c = convert(LocalCounts {
            aor_actors: 1,
            dialogs: 2,
            media_sessions: 3,
            connections: 4,
        });
        assert_eq!(
            (c.aors, c.dialogs, c.media_sessions, c.connections),
            (1, 2, 3, 4)
        );
        assert_eq!(c.total(), 10);
    }
}
