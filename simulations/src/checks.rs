//! The invariant checks the runner applies: no acknowledged registration lost, service back
//! through the survivors after a fault, 480 for users whose flow died, and fencing of a frozen
//! node (its queued writes must not land).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::agent::Agent;
use crate::error::OpFailure;
use crate::swarm::Swarm;
use crate::topology::NodeIx;

/// Lookups run at once during a registration check.
const CHECK_CONCURRENCY: usize = 16;

/// Pause between two service-probe rounds.
const PROBE_PAUSE: Duration = Duration::from_millis(100);

/// Checks every acknowledged registration: a binding query through a random node that is up
/// must list the agent's Contact (three tries through different nodes before it counts as
/// lost). Returns (checked, lost, descriptions of the first losses).
pub async fn registrations(swarm: &Swarm, checker: &Agent, seed: u64) -> (u64, u64, Vec<String>) {
    let now = Instant::now();
    let candidates: Vec<Arc<Agent>> = swarm
        .agents
        .iter()
        .filter(|a| a.registered(now) && a.reachable())
        .cloned()
        .collect();
    let results: Vec<Option<String>> = stream::iter(candidates.iter().enumerate())
        .map(|(i, a)| async move {
            let mut rng = StdRng::seed_from_u64(seed ^ i as u64);
            let generation = a.generation();
            let mut last = Err(OpFailure::NoRoute);
            for _ in 0..3 {
                let Some(entry) = swarm.topo.random_up(&mut rng) else {
                    break;
                };
                last = checker.query_binding(entry, &a.aor(), &a.contact).await;
                if matches!(last, Ok(true)) {
                    return None;
                }
            }
            // A connection that ended meanwhile took its binding legitimately.
            if a.generation() != generation || !a.reachable() {
                return None;
            }
            Some(format!("{} ({:?}): {:?}", a.aor(), a.transport, last))
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .collect()
        .await;
    let lost: Vec<String> = results.into_iter().flatten().collect();
    (candidates.len() as u64, lost.len() as u64, lost)
}

/// One probe round through every node that is up: a MESSAGE and a whole call (INVITE, ACK,
/// BYE all entering at that node) between UDP users, the callee preferably registered at
/// `victim`. True when everything succeeded.
async fn probe_round(swarm: &Swarm, victim: NodeIx) -> bool {
    let (at_victim, others) = swarm.udp_users_by_home(victim);
    let Some(caller) = others.first().cloned() else {
        return false;
    };
    let callee = at_victim
        .first()
        .cloned()
        .or_else(|| others.get(1).cloned())
        .unwrap_or_else(|| Arc::clone(&caller));
    for node in swarm.topo.up_nodes() {
        if caller.message(node, &callee.user, 200).await.is_err() {
            return false;
        }
        let Ok(dialog) = caller.invite(node, node, &callee).await else {
            return false;
        };
        if caller.bye(&dialog, node).await.is_err() {
            return false;
        }
    }
    true
}

/// Probes until a full round succeeds or `limit` passes; returns the time since `fault_at`.
pub async fn service_restored(
    swarm: &Swarm,
    victim: NodeIx,
    fault_at: Instant,
    limit: Duration,
) -> Option<Duration> {
    while fault_at.elapsed() < limit {
        if probe_round(swarm, victim).await {
            return Some(fault_at.elapsed());
        }
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    None
}

/// After the node holding their connections died: do requests through survivors to such a
/// TCP/WS user get 480 before it re-registers? `None` when no such user exists.
pub async fn flow_480(
    swarm: &Swarm,
    checker: &Agent,
    orphans: &[Arc<Agent>],
    limit: Duration,
    seed: u64,
) -> Option<bool> {
    let mut rng = StdRng::seed_from_u64(seed);
    let user = orphans.first()?;
    let start = Instant::now();
    let generation = user.generation();
    while start.elapsed() < limit && user.generation() == generation {
        let entry = swarm.topo.random_up(&mut rng)?;
        if checker.message(entry, &user.user, 480).await.is_ok() {
            return Some(true);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Some(false)
}
