//! The cluster benchmark behind `bench/cluster/run.sh`: REGISTER/s and calls/s with every
//! request entering at a random node (closed-loop UDP agents written with this crate), and the
//! time from SIGKILL to full service through the survivors over repeated kills; and the same
//! load against one Kamailio as the reference ([`measure_kamailio`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::block_in_place;

use crate::agent::{Agent, REGISTER_EXPIRES};
use crate::checks;
use crate::cluster::{Cluster, DOMAIN};
use crate::config::{Capability, Transport};
use crate::error::{ChaosError, OpFailure};
use crate::swarm::Swarm;
use crate::topology::{NodeIx, Topology};

/// Longest wait for a full live mesh.
const MESH_LIMIT: Duration = Duration::from_secs(20);

/// How long one failover probe keeps trying.
const PROBE_LIMIT: Duration = Duration::from_secs(20);

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Cluster size.
    pub nodes: u8,
    /// Concurrent closed-loop agents.
    pub agents: usize,
    /// Seconds per rate measurement.
    pub seconds: u64,
    /// SIGKILLs for the failover figure (0: skip; ignored with one node).
    pub kills: usize,
    /// The sipmesh binary.
    pub sipmesh: PathBuf,
    /// In-dialog requests enter at a random node (needs the cluster Record-Route identity);
    /// otherwise at the node the INVITE entered at.
    pub any_node_in_dialog: bool,
    /// Seed of the random choices.
    pub seed: u64,
}

/// The figures of one cluster size (or of the Kamailio reference).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchFigures {
    /// `sipmesh`, or `kamailio` for the reference column.
    pub target: String,
    /// Cluster size (1 for Kamailio).
    pub nodes: u8,
    /// Agents.
    pub agents: usize,
    /// REGISTERs answered 200 per second.
    pub register_per_s: f64,
    /// REGISTERs not answered 200.
    pub register_failed: u64,
    /// Whole calls (INVITE, ACK, BYE answered 200) per second.
    pub calls_per_s: f64,
    /// Calls whose INVITE or BYE failed.
    pub calls_failed: u64,
    /// Failed REGISTERs by cause ([`OpFailure::label`]).
    pub register_failures: BTreeMap<String, u64>,
    /// Failed calls by step and cause (`INVITE status 404`, `BYE timeout`, ...).
    pub call_failures: BTreeMap<String, u64>,
    /// Time from each SIGKILL to full service, ms (`None`: not reached in 20 s).
    pub failover_ms: Vec<Option<u64>>,
    /// Median of `failover_ms` (unreached counted as the limit).
    pub failover_median_ms: Option<u64>,
    /// Maximum of `failover_ms`.
    pub failover_max_ms: Option<u64>,
}

/// Starts a cluster of `cfg.nodes` and measures it.
pub async fn measure(cfg: &BenchConfig) -> Result<BenchFigures, ChaosError> {
    let tag = format!("bench{}-{}", cfg.nodes, std::process::id());
    let mut cluster = block_in_place(|| Cluster::start(&cfg.sipmesh, cfg.nodes, "warn", &tag))?;
    if block_in_place(|| cluster.wait(MESH_LIMIT, Cluster::all_live)).is_none() {
        return Err(ChaosError::MeshNotFormed(cluster.log_tail(0)));
    }
    let topo = Arc::new(Topology::new(cluster.addrs(), DOMAIN));
    let (swarm, mut figures) = rates(&topo, cfg, "sipmesh").await?;
    if cfg.nodes > 1 {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        for _ in 0..cfg.kills {
            let victim: NodeIx = rng.gen_range(0..topo.len());
            topo.set_up(victim, false);
            let at = Instant::now();
            block_in_place(|| cluster.kill(victim));
            let took = checks::service_restored(&swarm, victim, at, PROBE_LIMIT).await;
            figures
                .failover_ms
                .push(took.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
            block_in_place(|| cluster.restart(victim))?;
            block_in_place(|| cluster.wait(MESH_LIMIT, Cluster::all_live));
            topo.set_up(victim, true);
            // Re-register the users last registered at the victim (a restart keeps Redis).
            swarm.register_all().await;
        }
        let limit = u64::try_from(PROBE_LIMIT.as_millis()).unwrap_or(u64::MAX);
        let mut sorted: Vec<u64> = figures
            .failover_ms
            .iter()
            .map(|t| t.unwrap_or(limit))
            .collect();
        sorted.sort_unstable();
        figures.failover_median_ms = sorted.get(sorted.len() / 2).copied();
        figures.failover_max_ms = sorted.last().copied();
    }
    Ok(figures)
}

/// The same REGISTER and call load against one Kamailio (`kamailio_cfg`, the load benchmark's
/// configuration) on 127.0.0.1:`port`: the reference column. No failover figure.
pub async fn measure_kamailio(
    cfg: &BenchConfig,
    kamailio_cfg: &std::path::Path,
    port: u16,
) -> Result<BenchFigures, ChaosError> {
    let kamailio = block_in_place(|| crate::kamailio::Kamailio::start(kamailio_cfg, port))?;
    let topo = Arc::new(Topology::new(vec![kamailio.addrs()], DOMAIN));
    let one = BenchConfig {
        nodes: 1,
        kills: 0,
        ..cfg.clone()
    };
    let (_swarm, figures) = rates(&topo, &one, "kamailio").await?;
    let (problems, n) = kamailio.log_problems(10);
    if n > 0 || figures.calls_failed > 0 || figures.register_failed > 0 {
        eprintln!(
            "cluster-bench: kamailio logged {n} error/warning line(s); log kept at {}",
            kamailio.log_path().display()
        );
        for line in problems {
            eprintln!("  {line}");
        }
    }
    drop(kamailio);
    Ok(figures)
}

/// Starts the agents (UDP, spread over the nodes), registers them, and measures REGISTER/s
/// and calls/s in closed loops of `cfg.seconds` each.
async fn rates(
    topo: &Arc<Topology>,
    cfg: &BenchConfig,
    target: &str,
) -> Result<(Arc<Swarm>, BenchFigures), ChaosError> {
    let run = cfg.seed ^ u64::from(std::process::id());
    let mut agents = Vec::new();
    for id in 0..cfg.agents {
        let home = id % topo.len();
        agents.push(
            Agent::start(id, Transport::Udp, home, Arc::clone(topo), run)
                .await
                .map_err(|e| ChaosError::AgentStart(id, e))?,
        );
    }
    let caps = if cfg.any_node_in_dialog {
        vec![Capability::AnyNodeInDialog]
    } else {
        Vec::new()
    };
    let swarm = Arc::new(Swarm::new(
        agents,
        Arc::clone(topo),
        caps,
        Duration::ZERO,
        Duration::from_secs(1),
        cfg.seed,
    ));
    swarm.register_all().await;
    let mut figures = BenchFigures {
        target: target.to_owned(),
        nodes: cfg.nodes,
        agents: cfg.agents,
        ..BenchFigures::default()
    };
    let window = Duration::from_secs(cfg.seconds);
    let (ok, failures) = closed_loop(&swarm, window, cfg.seed, register_once).await;
    figures.register_per_s = ok as f64 / window.as_secs_f64();
    figures.register_failed = failures.values().sum();
    figures.register_failures = failures;
    let any = cfg.any_node_in_dialog;
    let (ok, failures) = closed_loop(&swarm, window, cfg.seed ^ 1, move |s, a, r| {
        call_once(s, a, r, any)
    })
    .await;
    figures.calls_per_s = ok as f64 / window.as_secs_f64();
    figures.calls_failed = failures.values().sum();
    figures.call_failures = failures;
    Ok((swarm, figures))
}

/// Runs `op` in a closed loop on every agent for `window`; returns the number that succeeded
/// and the failures counted by cause.
async fn closed_loop<F, Fut>(
    swarm: &Arc<Swarm>,
    window: Duration,
    seed: u64,
    op: F,
) -> (u64, BTreeMap<String, u64>)
where
    F: Fn(Arc<Swarm>, Arc<Agent>, StdRng) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (Result<(), String>, StdRng)> + Send,
{
    let deadline = Instant::now() + window;
    let mut tasks = Vec::new();
    for a in &swarm.agents {
        let (swarm, agent, op) = (Arc::clone(swarm), Arc::clone(a), op.clone());
        let mut rng = StdRng::seed_from_u64(seed ^ a.id as u64);
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut failures: BTreeMap<String, u64> = BTreeMap::new();
            while Instant::now() < deadline {
                let (outcome, back) = op(Arc::clone(&swarm), Arc::clone(&agent), rng).await;
                rng = back;
                if Instant::now() > deadline {
                    break;
                }
                match outcome {
                    Ok(()) => ok += 1,
                    Err(cause) => *failures.entry(cause).or_default() += 1,
                }
            }
            (ok, failures)
        }));
    }
    let mut ok = 0;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        if let Ok((n, f)) = t.await {
            ok += n;
            for (cause, count) in f {
                *failures.entry(cause).or_default() += count;
            }
        }
    }
    (ok, failures)
}

/// One REGISTER refresh entering at a random node.
async fn register_once(
    swarm: Arc<Swarm>,
    agent: Arc<Agent>,
    mut rng: StdRng,
) -> (Result<(), String>, StdRng) {
    let Some(entry) = swarm.topo.random_up(&mut rng) else {
        return (Err(OpFailure::NoRoute.label()), rng);
    };
    let outcome = agent.register(entry, REGISTER_EXPIRES).await;
    (outcome.map_err(|e| e.label()), rng)
}

/// One call to a random other agent: INVITE entering at a random node, ACK and BYE at the
/// same node (or at random ones with `any`).
async fn call_once(
    swarm: Arc<Swarm>,
    agent: Arc<Agent>,
    mut rng: StdRng,
    any: bool,
) -> (Result<(), String>, StdRng) {
    let others: Vec<&Arc<Agent>> = swarm.agents.iter().filter(|a| a.id != agent.id).collect();
    let (Some(callee), Some(entry)) = (
        others.choose(&mut rng).map(|a| Arc::clone(a)),
        swarm.topo.random_up(&mut rng),
    ) else {
        return (Err(format!("INVITE {}", OpFailure::NoRoute)), rng);
    };
    let pick = |rng: &mut StdRng| {
        if any {
            swarm.topo.random_up(rng).unwrap_or(entry)
        } else {
            entry
        }
    };
    let ack = pick(&mut rng);
    let dialog = match agent.invite(entry, ack, &callee).await {
        Ok(dialog) => dialog,
        Err(e) => return (Err(format!("INVITE {e}")), rng),
    };
    let bye = pick(&mut rng);
    let outcome = agent.bye(&dialog, bye).await;
    (outcome.map_err(|e| format!("BYE {e}")), rng)
}
