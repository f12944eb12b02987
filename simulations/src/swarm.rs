//! The swarm: every agent's traffic loop (REGISTER refreshes, MESSAGE, calls), the reconnect
//! loop of TCP/WS agents, and the tally of dialogs that could or could not be ended.
//!
//! Target and entry-node choices follow the capabilities the run relies on (see
//! [`Capability`]): without `flow-relay`, a request to a TCP/WS user enters at the node that
//! holds its connection; without `dialog-failover`, calls are placed only while the runner
//! allows them (never across a fault).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;

use crate::agent::{Agent, REGISTER_EXPIRES};
use crate::config::Capability;
use crate::error::OpFailure;
use crate::routing::{Entry, Rules};
use crate::sip::Dialog;
use crate::stats::{OpKind, Stats};
use crate::topology::{NodeIx, Topology};

/// How many times a BYE is tried (through different nodes) before the dialog counts as not
/// ended.
const BYE_ATTEMPTS: usize = 3;

/// Dialog outcomes of the current phase.
#[derive(Debug, Default)]
pub struct DialogTally {
    /// Dialogs established (2xx + ACK).
    pub established: AtomicU64,
    /// Ended with a 200 to BYE.
    pub ended: AtomicU64,
    /// Not ended although both ends were reachable.
    pub not_ended: AtomicU64,
    /// Not checked: an end became unreachable.
    pub unreachable: AtomicU64,
}

impl DialogTally {
    /// Takes (established, not ended, unreachable) and resets.
    pub fn take(&self) -> (u64, u64, u64) {
        self.ended.swap(0, Ordering::SeqCst);
        (
            self.established.swap(0, Ordering::SeqCst),
            self.not_ended.swap(0, Ordering::SeqCst),
            self.unreachable.swap(0, Ordering::SeqCst),
        )
    }
}

/// The agents and what they share.
#[derive(Debug)]
pub struct Swarm {
    /// Every agent, by id.
    pub agents: Vec<Arc<Agent>>,
    /// The nodes.
    pub topo: Arc<Topology>,
    /// Operation counters of the current phase.
    pub stats: Stats,
    /// Dialog outcomes of the current phase.
    pub dialogs: DialogTally,
    /// Whether agents may start calls now.
    pub calls_allowed: AtomicBool,
    /// Calls between INVITE and the BYE's answer.
    pub calls_in_flight: AtomicU64,
    /// Raised to stop the traffic loops.
    pub stopping: AtomicBool,
    /// Capabilities relied on.
    pub caps: Vec<Capability>,
    /// Mean pause between operations.
    pub think: Duration,
    /// How long a TCP/WS agent waits before reconnecting.
    pub reconnect_delay: Duration,
    /// Base seed.
    pub seed: u64,
}

impl Swarm {
    /// A swarm of `agents` over `topo`, calls allowed, nothing running yet.
    pub fn new(
        agents: Vec<Arc<Agent>>,
        topo: Arc<Topology>,
        caps: Vec<Capability>,
        think: Duration,
        reconnect_delay: Duration,
        seed: u64,
    ) -> Self {
        Self {
            agents,
            topo,
            stats: Stats::default(),
            dialogs: DialogTally::default(),
            calls_allowed: AtomicBool::new(true),
            calls_in_flight: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            caps,
            think,
            reconnect_delay,
            seed,
        }
    }

    /// Whether capability `c` is relied on.
    pub fn has(&self, c: Capability) -> bool {
        self.caps.contains(&c)
    }

    /// Registers every agent once (through its home node), counting into the stats.
    pub async fn register_all(self: &Arc<Self>) {
        let tasks: Vec<JoinHandle<()>> = self
            .agents
            .iter()
            .map(|a| {
                let a = Arc::clone(a);
                let swarm = Arc::clone(self);
                tokio::spawn(async move {
                    let outcome = a.register(a.home(), REGISTER_EXPIRES).await;
                    swarm.stats.record(OpKind::Register, &outcome);
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Starts every agent's traffic loop, and the reconnect loop of stream agents.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        for a in &self.agents {
            let swarm = Arc::clone(self);
            let agent = Arc::clone(a);
            handles.push(tokio::spawn(async move { swarm.traffic(agent).await }));
            if a.transport.is_stream() {
                let swarm = Arc::clone(self);
                let agent = Arc::clone(a);
                handles.push(tokio::spawn(async move { swarm.reconnect(agent).await }));
            }
        }
        handles
    }

    /// One agent's traffic: think, then REGISTER refresh, MESSAGE or call.
    async fn traffic(self: Arc<Self>, agent: Arc<Agent>) {
        let mut rng = StdRng::seed_from_u64(self.seed ^ (agent.id as u64).wrapping_mul(0x9e37));
        while !self.stopping.load(Ordering::SeqCst) {
            let pause = self.think.mul_f64(rng.gen_range(0.5..1.5));
            tokio::time::sleep(pause).await;
            if self.stopping.load(Ordering::SeqCst) || !agent.reachable() {
                continue;
            }
            let roll: u32 = rng.gen_range(0..100);
            if roll < 15 {
                let Some(entry) = self.entry_for_own_request(&agent, &mut rng) else {
                    continue;
                };
                let outcome = agent.register(entry, REGISTER_EXPIRES).await;
                self.stats.record(OpKind::Register, &outcome);
            } else if roll < 60 || !self.calls_allowed.load(Ordering::SeqCst) {
                let Some((target, entry)) = self.pick_target(&agent, false, &mut rng) else {
                    continue;
                };
                let outcome = agent.message(entry, &target.user, 200).await;
                self.stats.record(OpKind::Message, &outcome);
            } else {
                self.calls_in_flight.fetch_add(1, Ordering::SeqCst);
                // Checked again after counting, so the runner's quiesce cannot miss this call.
                if self.calls_allowed.load(Ordering::SeqCst) {
                    self.short_call(&agent, &mut rng).await;
                }
                self.calls_in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// A call: INVITE, ACK, a short hold, BYE; in-dialog requests enter at random nodes.
    async fn short_call(&self, agent: &Arc<Agent>, rng: &mut StdRng) {
        let Some((callee, entry)) = self.pick_target(agent, true, rng) else {
            return;
        };
        let Some(dialog) = self.place_call(agent, &callee, entry, rng).await else {
            return;
        };
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..400))).await;
        self.end_call(&dialog, rng).await;
    }

    /// Places a call from `caller` to `callee` through `entry`, counting it.
    pub async fn place_call(
        &self,
        caller: &Agent,
        callee: &Agent,
        entry: NodeIx,
        rng: &mut StdRng,
    ) -> Option<Dialog> {
        let ack_entry = self.in_dialog_entry(entry, rng).unwrap_or(entry);
        let result = caller.invite(entry, ack_entry, callee).await;
        self.stats.record(
            OpKind::Call,
            &result.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        let dialog = result.ok()?;
        self.dialogs.established.fetch_add(1, Ordering::SeqCst);
        Some(dialog)
    }

    /// Ends `dialog` with BYE through random nodes that are up (up to [`BYE_ATTEMPTS`]),
    /// counting it as ended, not ended (both ends reachable) or unreachable.
    pub async fn end_call(&self, dialog: &Dialog, rng: &mut StdRng) {
        let (Some(caller), Some(callee)) = (
            self.agents.get(dialog.caller),
            self.agents.get(dialog.callee),
        ) else {
            return;
        };
        let mut last: Result<(), OpFailure> = Err(OpFailure::NoRoute);
        for _ in 0..BYE_ATTEMPTS {
            let Some(entry) = self.in_dialog_entry(dialog.entry, rng) else {
                break;
            };
            last = caller.bye(dialog, entry).await;
            if std::env::var_os("CHAOS_DEBUG").is_some() && last.is_err() {
                eprintln!(
                    "bye {:?} entry {entry} invite-entry {} caller {:?}@{} callee {:?}@{} routes {:?}",
                    last,
                    dialog.entry,
                    caller.transport,
                    caller.home(),
                    callee.transport,
                    callee.home(),
                    dialog.route_set
                );
            }
            if last.is_ok() {
                break;
            }
        }
        let reachable = caller.reachable()
            && (!callee.transport.is_stream()
                || (callee.generation() == dialog.callee_generation && callee.reachable()));
        match (&last, reachable) {
            (Ok(()), _) => {
                self.stats.record(OpKind::Bye, &last);
                self.dialogs.ended.fetch_add(1, Ordering::SeqCst);
            }
            (Err(_), true) => {
                self.stats.record(OpKind::Bye, &last);
                self.dialogs.not_ended.fetch_add(1, Ordering::SeqCst);
            }
            (Err(_), false) => {
                self.dialogs.unreachable.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Where an in-dialog request of a dialog whose INVITE entered at `invite_entry` enters: a
    /// random node that is up with `any-node-in-dialog`, else the record-routing node itself.
    fn in_dialog_entry(&self, invite_entry: NodeIx, rng: &mut StdRng) -> Option<NodeIx> {
        if self.has(Capability::AnyNodeInDialog) {
            self.topo.random_up(rng)
        } else {
            Some(invite_entry)
        }
    }

    /// Where `agent`'s own out-of-dialog request enters: a UDP agent picks a random node that
    /// is up; a stream agent uses its connection (the entry is then only nominal).
    fn entry_for_own_request(&self, agent: &Agent, rng: &mut StdRng) -> Option<NodeIx> {
        if agent.transport.is_stream() {
            Some(agent.home())
        } else {
            self.topo.random_up(rng)
        }
    }

    /// A registered, reachable peer for `agent` and the node the request enters at, preferring
    /// a peer registered at another node than `agent`. A callee (`for_call`) over TCP is
    /// skipped without `tcp-flow-in-dialog`.
    pub fn pick_target(
        &self,
        agent: &Agent,
        for_call: bool,
        rng: &mut StdRng,
    ) -> Option<(Arc<Agent>, NodeIx)> {
        let rules = Rules::new(&self.caps);
        let from = agent.attach();
        let now = Instant::now();
        let mut candidates: Vec<&Arc<Agent>> = self
            .agents
            .iter()
            .filter(|t| t.id != agent.id && t.registered(now) && t.reachable())
            .filter(|t| self.topo.is_up(t.home()))
            .filter(|t| rules.may_address(from, t.attach(), for_call))
            .collect();
        candidates.shuffle(rng);
        let target = candidates
            .iter()
            .find(|t| t.home() != from.home)
            .or_else(|| candidates.first())
            .map(|t| Arc::clone(t))?;
        let entry = match rules.entry(from, target.attach()) {
            Entry::Node(n) => n,
            Entry::Random => self.topo.random_up(rng)?,
        };
        Some((target, entry))
    }

    /// A TCP/WS agent's reconnect loop: when its connection ends, wait, connect to a node that
    /// is up (another one when possible) and REGISTER again.
    async fn reconnect(self: Arc<Self>, agent: Arc<Agent>) {
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x5eed ^ agent.id as u64);
        loop {
            let Some(closed) = agent.closed() else { return };
            tokio::select! {
                () = closed.wait() => {}
                () = self.stopped() => return,
            }
            agent.connection_lost();
            tokio::time::sleep(self.reconnect_delay).await;
            let old = agent.home();
            loop {
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Some(node) = self.topo.random_up_except(old, &mut rng) else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                if agent.connect(node).await.is_ok() {
                    let outcome = agent.register(node, REGISTER_EXPIRES).await;
                    self.stats.record(OpKind::Register, &outcome);
                    if outcome.is_ok() {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Resolves once `stopping` is raised.
    async fn stopped(&self) {
        while !self.stopping.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops new calls and waits (up to `limit`) until none is in flight.
    pub async fn quiesce_calls(&self, limit: Duration) -> bool {
        self.calls_allowed.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        while self.calls_in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// UDP agents with an acknowledged registration, homed (last registered) at `node` first.
    pub fn udp_users_by_home(&self, node: NodeIx) -> (Vec<Arc<Agent>>, Vec<Arc<Agent>>) {
        let now = Instant::now();
        self.agents
            .iter()
            .filter(|a| !a.transport.is_stream() && a.registered(now))
            .cloned()
            .partition(|a| a.home() == node)
    }
}
