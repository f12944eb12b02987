//! The chaos run: starts the cluster and the swarm, then plays the phases — `warmup`, one
//! `kill-N` per `--kills` (SIGKILL a random node, measure the time to full service through the
//! survivors, restart it), `freeze` (SIGSTOP a node past its lease, SIGCONT, check it fenced
//! itself), `final` — and checks the invariants at the end of each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::task::block_in_place;

use crate::agent::{Agent, REGISTER_EXPIRES};
use crate::checks;
use crate::cluster::{self, Cluster, DOMAIN};
use crate::config::{Capability, Cli, Transport};
use crate::error::ChaosError;
use crate::report::{FenceCheck, PhaseReport, RunReport};
use crate::swarm::Swarm;
use crate::topology::{NodeIx, Topology};

/// Longest wait for every member to see every node live.
const MESH_LIMIT: Duration = Duration::from_secs(20);

/// Longest wait for survivors to declare a frozen node dead.
const DEAD_LIMIT: Duration = Duration::from_secs(8);

/// How long the service probe keeps trying.
const PROBE_LIMIT: Duration = Duration::from_secs(20);

/// Fencing probes queued to a frozen node.
const STALE_WRITES: u64 = 4;

/// How soon after SIGCONT the thawed node must have closed the connections of the flows its
/// survivors removed (it was fenced by its lapsed lease on its first look).
const THAW_CLOSE_LIMIT: Duration = Duration::from_millis(1500);

/// A run in progress.
struct Runner {
    cli: Cli,
    cluster: Cluster,
    swarm: Arc<Swarm>,
    checker: Arc<Agent>,
    rng: StdRng,
    phase_len: Duration,
}

/// Runs the whole chaos scenario described by `cli` and returns its report.
pub async fn run(cli: Cli) -> Result<RunReport, ChaosError> {
    cli.validate()?;
    let started = Instant::now();
    let caps = cli.capability_set()?;
    let binary = cli.sipmesh_binary()?;
    let run_tag = format!("{}-{}", cli.seed, std::process::id());
    let cluster = block_in_place(|| Cluster::start(&binary, cli.nodes, &cli.log_filter, &run_tag))?;
    let topo = Arc::new(Topology::new(cluster.addrs(), DOMAIN));
    let run = cli.seed.wrapping_mul(1_000_003) ^ u64::from(std::process::id());
    let n = topo.len();
    if block_in_place(|| cluster.wait(MESH_LIMIT, Cluster::all_live)).is_none() {
        return Err(ChaosError::MeshNotFormed(cluster.log_tail(0)));
    }
    let mut agents = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in 0..cli.agents {
        let transport = cli.transports[id % cli.transports.len()];
        *counts
            .entry(format!("{transport:?}").to_lowercase())
            .or_default() += 1;
        // Homes cycle independently of transports, so every node holds every kind of user.
        let home = (id / cli.transports.len()) % n;
        let agent = Agent::start(id, transport, home, Arc::clone(&topo), run)
            .await
            .map_err(|e| ChaosError::AgentStart(id, e))?;
        agents.push(agent);
    }
    let checker = Agent::start(cli.agents, Transport::Udp, 0, Arc::clone(&topo), run)
        .await
        .map_err(|e| ChaosError::AgentStart(cli.agents, e))?;
    let reconnect_delay = if caps.contains(&Capability::Flow480) {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(1)
    };
    let swarm = Arc::new(Swarm::new(
        agents,
        topo,
        caps.clone(),
        Duration::from_millis(cli.think_ms),
        reconnect_delay,
        cli.seed,
    ));
    let phases = 2 + cli.kills as u32 + u32::from(!cli.no_freeze);
    let phase_len = (cli.duration() / phases).max(Duration::from_secs(3));
    let mut runner = Runner {
        rng: StdRng::seed_from_u64(cli.seed),
        cli: cli.clone(),
        cluster,
        swarm: Arc::clone(&swarm),
        checker,
        phase_len,
    };
    let mut report = RunReport {
        seed: cli.seed,
        nodes: cli.nodes,
        agents: counts,
        capabilities: caps.iter().map(|c| c.name().to_owned()).collect(),
        capabilities_off: Capability::ALL
            .iter()
            .filter(|c| !caps.contains(c))
            .map(|c| c.name().to_owned())
            .collect(),
        node_logs: runner.cluster.log_paths(),
        ..RunReport::default()
    };

    swarm.register_all().await;
    let handles = swarm.start();
    report.phases.push(runner.calm("warmup").await);
    for k in 1..=cli.kills {
        report.phases.push(runner.kill(k).await?);
    }
    if !cli.no_freeze {
        report.phases.push(runner.freeze().await);
    }
    report.phases.push(runner.calm("final").await);
    swarm.stopping.store(true, Ordering::SeqCst);
    for h in handles {
        let _ = h.await;
    }
    report.duration_ms = millis(started.elapsed());
    report.passed = report.violations().is_empty();
    Ok(report)
}

/// Whole milliseconds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Runner {
    fn seed(&mut self) -> u64 {
        self.rng.r#gen()
    }

    /// A phase with traffic and no fault.
    async fn calm(&mut self, name: &str) -> PhaseReport {
        let start = Instant::now();
        self.swarm.calls_allowed.store(true, Ordering::SeqCst);
        tokio::time::sleep(self.phase_len).await;
        let mut p = PhaseReport {
            name: name.to_owned(),
            ..PhaseReport::default()
        };
        self.finish(&mut p, start).await;
        p
    }

    /// Calls that must not span the coming fault: quiesced without `dialog-failover`; with
    /// it, a few calls are established now and ended after the fault.
    async fn before_fault(&mut self, p: &mut PhaseReport) -> Vec<crate::sip::Dialog> {
        if !self.swarm.has(Capability::DialogFailover) {
            if !self.swarm.quiesce_calls(Duration::from_secs(20)).await {
                p.violations
                    .push("calls still in flight 20 s after quiesce".to_owned());
            }
            return Vec::new();
        }
        let mut held = Vec::new();
        let mut rng = StdRng::seed_from_u64(self.seed());
        let wanted = (self.swarm.agents.len() / 4).clamp(1, 10);
        for i in 0..wanted * 2 {
            if held.len() >= wanted {
                break;
            }
            let Some(caller) = self.swarm.agents.get(i % self.swarm.agents.len()).cloned() else {
                break;
            };
            if let Some((callee, entry)) = self.swarm.pick_target(&caller, true, &mut rng)
                && let Some(d) = self
                    .swarm
                    .place_call(&caller, &callee, entry, &mut rng)
                    .await
            {
                held.push(d);
            }
        }
        held
    }

    /// Ends the calls held across a fault (while the faulty node is still out).
    async fn after_fault(&mut self, held: &[crate::sip::Dialog]) {
        let seed = self.seed();
        let swarm = &self.swarm;
        futures_util::future::join_all(held.iter().enumerate().map(|(i, d)| async move {
            let mut rng = StdRng::seed_from_u64(seed ^ i as u64);
            swarm.end_call(d, &mut rng).await;
        }))
        .await;
    }

    /// SIGKILL a random node, measure the time to full service, restart it.
    async fn kill(&mut self, k: usize) -> Result<PhaseReport, ChaosError> {
        let start = Instant::now();
        let mut p = PhaseReport {
            name: format!("kill-{k}"),
            ..PhaseReport::default()
        };
        tokio::time::sleep(self.phase_len / 3).await;
        let held = self.before_fault(&mut p).await;
        let victim = self.pick_kill_victim();
        let orphans: Vec<Arc<Agent>> = self
            .swarm
            .agents
            .iter()
            .filter(|a| a.transport.is_stream() && a.home() == victim && a.reachable())
            .cloned()
            .collect();
        p.fault = Some(format!(
            "SIGKILL {}, then restart",
            cluster::node_id(victim)
        ));
        for a in &orphans {
            a.orphan();
        }
        self.swarm.topo.set_up(victim, false);
        let fault_at = Instant::now();
        block_in_place(|| self.cluster.kill(victim));
        self.await_recovery(&mut p, victim, fault_at, &orphans, "dead")
            .await;
        // Dialogs held across the kill are ended while the node is still dead: through the
        // survivors only.
        self.after_fault(&held).await;
        let until = start + self.phase_len * 2 / 3;
        tokio::time::sleep_until(until.into()).await;
        block_in_place(|| self.cluster.restart(victim))?;
        let restarted = Instant::now();
        match block_in_place(|| self.cluster.wait(MESH_LIMIT, Cluster::all_live)) {
            Some(_) => p.rejoin_ms = Some(millis(restarted.elapsed())),
            None => p.violations.push(format!(
                "{} not live on every member {MESH_LIMIT:?} after its restart",
                cluster::node_id(victim)
            )),
        }
        self.swarm.topo.set_up(victim, true);
        self.swarm.calls_allowed.store(true, Ordering::SeqCst);
        tokio::time::sleep_until((start + self.phase_len).into()).await;
        self.finish(&mut p, start).await;
        Ok(p)
    }

    /// SIGSTOP a random node past its lease, queue writes to it, SIGCONT, check fencing.
    async fn freeze(&mut self) -> PhaseReport {
        let start = Instant::now();
        let mut p = PhaseReport {
            name: "freeze".to_owned(),
            ..PhaseReport::default()
        };
        tokio::time::sleep(self.phase_len / 3).await;
        let held = self.before_fault(&mut p).await;
        let victim = self.pick_victim();
        let vid = cluster::node_id(victim);
        p.fault = Some(format!("SIGSTOP {vid} past its lease, then SIGCONT"));
        // Its TCP/WS users are in the same position as after a kill: once the survivors
        // declare the node dead their flows are gone, although their sockets stay open.
        let orphans: Vec<(Arc<Agent>, u64)> = self
            .swarm
            .agents
            .iter()
            .filter(|a| a.transport.is_stream() && a.home() == victim && a.reachable())
            .map(|a| (Arc::clone(a), a.generation()))
            .collect();
        for (a, _) in &orphans {
            a.orphan();
        }
        self.swarm.topo.set_up(victim, false);
        let fault_at = Instant::now();
        block_in_place(|| self.cluster.freeze(victim, true));
        let orphan_agents: Vec<Arc<Agent>> = orphans.iter().map(|(a, _)| Arc::clone(a)).collect();
        self.await_recovery(&mut p, victim, fault_at, &orphan_agents, "frozen")
            .await;
        let mut fence = FenceCheck {
            declared_dead_by_survivors: block_in_place(|| {
                self.cluster
                    .wait(DEAD_LIMIT, |c| {
                        (0..c.len()).filter(|&i| i != victim).all(|i| {
                            c.view(i).is_some_and(|v| {
                                cluster::state(&v, &vid).as_deref() == Some("dead")
                            })
                        })
                    })
                    .is_some()
            }),
            ..FenceCheck::default()
        };
        // Dialogs held across the freeze are ended while the node is still frozen.
        self.after_fault(&held).await;
        // Writes queued in the frozen node's socket: it handles them right after SIGCONT.
        let run = self.seed();
        let stale: Vec<(String, String)> = (0..STALE_WRITES)
            .map(|i| {
                (
                    format!("sip:fence{run:x}x{i}@{DOMAIN}"),
                    format!("sip:fence{i}@127.0.0.1:{}", 40000 + i),
                )
            })
            .collect();
        let mut pending = Vec::new();
        for (aor, contact) in &stale {
            let checker = Arc::clone(&self.checker);
            let (aor, contact) = (aor.clone(), contact.clone());
            pending.push(tokio::spawn(async move {
                checker
                    .register_as(victim, &aor, &contact, REGISTER_EXPIRES)
                    .await
            }));
        }
        fence.stale_writes_sent = STALE_WRITES;
        tokio::time::sleep(Duration::from_millis(300)).await;
        block_in_place(|| self.cluster.freeze(victim, false));
        let thawed = Instant::now();
        fence.self_state_after_thaw = block_in_place(|| {
            self.cluster
                .view(victim)
                .and_then(|v| cluster::state(&v, &vid))
        });
        // The thawed node must close the connections whose flows the survivors removed, so
        // their clients recover (reconnect and register again, RFC 5626 §4.4.1).
        let still_open = || {
            orphans
                .iter()
                .filter(|(a, g)| a.generation() == *g && a.link_open())
                .count() as u64
        };
        while still_open() > 0 && thawed.elapsed() < THAW_CLOSE_LIMIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fence.orphans = orphans.len() as u64;
        fence.orphans_still_connected = still_open();
        let mut acked = Vec::new();
        for h in pending {
            acked.push(matches!(h.await, Ok(Ok(200))));
        }
        fence.stale_writes_acknowledged = acked.iter().filter(|a| **a).count() as u64;
        let mut rng = StdRng::seed_from_u64(self.seed());
        for ((aor, contact), ack) in stale.iter().zip(&acked) {
            let Some(entry) = self.swarm.topo.random_up(&mut rng) else {
                continue;
            };
            let present = matches!(
                self.checker.query_binding(entry, aor, contact).await,
                Ok(true)
            );
            if present {
                fence.stale_writes_landed += 1;
            }
            if *ack && !present {
                fence.acknowledged_but_missing += 1;
            }
        }
        let restarted = Instant::now();
        fence.rejoined = block_in_place(|| self.cluster.wait(MESH_LIMIT, Cluster::all_live))
            .inspect(|_| p.rejoin_ms = Some(millis(restarted.elapsed())))
            .is_some();
        self.swarm.topo.set_up(victim, true);
        self.swarm.calls_allowed.store(true, Ordering::SeqCst);
        judge_fence(&mut p, &fence, &vid);
        p.fence = Some(fence);
        tokio::time::sleep_until((start + self.phase_len).into()).await;
        self.finish(&mut p, start).await;
        p
    }

    fn pick_victim(&mut self) -> NodeIx {
        let nodes: Vec<NodeIx> = (0..self.cluster.len()).collect();
        nodes.choose(&mut self.rng).copied().unwrap_or(0)
    }

    /// After a fault on `victim` at `fault_at`: waits for full service and, with the flow
    /// capability, for 480s to `orphans` (users whose flow the victim held) at the same time,
    /// and judges both into `p`; `how` names the victim's state in a violation.
    async fn await_recovery(
        &mut self,
        p: &mut PhaseReport,
        victim: usize,
        fault_at: Instant,
        orphans: &[Arc<Agent>],
        how: &str,
    ) {
        let seed = self.seed();
        let limit = Duration::from_millis(self.cli.service_limit_ms);
        let flow_check = self.swarm.has(Capability::Flow480);
        let (service, flow) = tokio::join!(
            checks::service_restored(&self.swarm, victim, fault_at, PROBE_LIMIT),
            async {
                if flow_check {
                    checks::flow_480(
                        &self.swarm,
                        &self.checker,
                        orphans,
                        Duration::from_secs(4),
                        seed,
                    )
                    .await
                } else {
                    None
                }
            }
        );
        self.judge_service(p, service, limit);
        p.flow_480_seen = flow;
        if flow == Some(false) {
            p.violations.push(format!(
                "requests to {} (flow held by the {how} node) got no 480 before it re-registered",
                orphans.first().map(|a| a.aor()).unwrap_or_default()
            ));
        }
    }

    /// The node to SIGKILL: with `flow-480` on, one of the nodes that holds a reachable TCP/WS
    /// agent, so the 480 check has a user to probe. Stream agents move when a node closes
    /// their connections (a node fenced for a moment on a loaded machine closes them all, and
    /// they reconnect elsewhere), so a node picked blindly may hold none by now. Falls back to
    /// any node.
    fn pick_kill_victim(&mut self) -> NodeIx {
        let mut nodes: Vec<NodeIx> = (0..self.cluster.len()).collect();
        if self.swarm.has(Capability::Flow480) {
            let holding: Vec<NodeIx> = nodes
                .iter()
                .copied()
                .filter(|&n| {
                    self.swarm
                        .agents
                        .iter()
                        .any(|a| a.transport.is_stream() && a.home() == n && a.reachable())
                })
                .collect();
            if !holding.is_empty() {
                nodes = holding;
            }
        }
        nodes.choose(&mut self.rng).copied().unwrap_or(0)
    }

    fn judge_service(&self, p: &mut PhaseReport, service: Option<Duration>, limit: Duration) {
        p.service_restored_ms = service.map(millis);
        match service {
            Some(t) if t <= limit => {}
            Some(t) => p.violations.push(format!(
                "full service only {} ms after the fault (limit {} ms)",
                millis(t),
                millis(limit)
            )),
            None => p.violations.push(format!(
                "no full service through the survivors within {PROBE_LIMIT:?}"
            )),
        }
    }

    /// End of a phase: wait for stream agents to be back, check registrations, take the counts.
    async fn finish(&mut self, p: &mut PhaseReport, start: Instant) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline
            && self
                .swarm
                .agents
                .iter()
                .any(|a| !(a.reachable() && a.registered(Instant::now())))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seed = self.seed();
        let (checked, lost, examples) =
            checks::registrations(&self.swarm, &self.checker, seed).await;
        p.registrations_checked = checked;
        p.registrations_lost = lost;
        if lost > 0 {
            p.violations.push(format!(
                "{lost} acknowledged registrations missing, e.g. {}",
                examples
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        let (established, not_ended, unreachable) = self.swarm.dialogs.take();
        p.dialogs_established = established;
        p.dialogs_not_ended = not_ended;
        p.dialogs_unreachable = unreachable;
        if not_ended > 0 {
            p.violations.push(format!(
                "{not_ended} established dialogs could not be ended with both ends reachable"
            ));
        }
        p.misdelivered = self
            .swarm
            .agents
            .iter()
            .map(|a| a.take_misdelivered())
            .sum();
        if p.misdelivered > 0 {
            p.violations.push(format!(
                "{} requests were delivered to another user than the one addressed",
                p.misdelivered
            ));
        }
        p.ops = self.swarm.stats.take();
        p.duration_ms = millis(start.elapsed());
    }
}

/// The fencing invariants: the survivors dropped the frozen node, it reported itself fenced
/// at once after SIGCONT, none of its queued writes landed, nothing acknowledged was lost, and
/// it rejoined.
fn judge_fence(p: &mut PhaseReport, f: &FenceCheck, vid: &str) {
    if !f.declared_dead_by_survivors {
        p.violations.push(format!(
            "survivors did not declare {vid} dead within {DEAD_LIMIT:?}"
        ));
    }
    if f.self_state_after_thaw.as_deref() != Some("fenced") {
        p.violations.push(format!(
            "{vid} reported itself {:?} right after SIGCONT, not fenced",
            f.self_state_after_thaw
        ));
    }
    if f.stale_writes_landed > 0 {
        p.violations.push(format!(
            "{} writes sent to the frozen {vid} landed in the store",
            f.stale_writes_landed
        ));
    }
    if f.acknowledged_but_missing > 0 {
        p.violations.push(format!(
            "{} writes acknowledged by {vid} are missing",
            f.acknowledged_but_missing
        ));
    }
    if f.orphans_still_connected > 0 {
        p.violations.push(format!(
            "{} of {} TCP/WS clients of {vid} still connected {THAW_CLOSE_LIMIT:?} after SIGCONT: \
             their flows were removed while it was declared dead, so they never re-register",
            f.orphans_still_connected, f.orphans
        ));
    }
    if !f.rejoined {
        p.violations
            .push(format!("{vid} did not rejoin within {MESH_LIMIT:?}"));
    }
}
