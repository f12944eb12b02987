//! A deterministic simulation of the membership logic on a virtual clock: N nodes, each with
//! its own `Lease` and `MemberTable`, a virtual Redis holding leases with expiries, heartbeats
//! delivered between nodes, and a seeded schedule of faults (SIGKILL and restart, SIGSTOP and
//! SIGCONT, a node cut off from its peers, a Redis outage).
//!
//! The invariant checked at every 10 ms step: **no key has two acting owners** — among the
//! nodes that run, are not fenced ([`fence_reason`] is `None`) and compute themselves as the
//! key's owner, there is at most one. After every fault has healed, every key has exactly one.
//! A failing seed replays exactly: `SIM_SEED=<n> cargo test -p sipmesh-cluster --test sim`.
//! More seeds: `SIM_SEEDS=<n>` (default 10).
//!
//! **Partial partitions and per-key claims** (issue 5, [`no_key_ever_has_two_successful_writers`]):
//! cutting one link between two nodes (each still hears the third) leaves both in contact with
//! a majority, so both act, and each places the other out: for some keys two nodes are
//! acting owners at once (the membership alone cannot prevent it). The second test runs such
//! faults (plus kills, freezes and Redis outages) and models the dialog store's owner claims
//! (docs/REDIS.md "Per-dialog owner claims"): each acting owner adopts the keys it owns and
//! runs no actor for (a `Take`: the claim becomes `(node, epoch)`; adopting bumps a shared
//! generation that makes every node rebalance), and every 20 ms writes each key it runs as
//! an owner, which the virtual store accepts only under the node's current lease epoch and
//! when the key's claim is its own, absent, or held by a node whose lease no longer has the
//! claimed epoch; a refused owner stops its actor. Invariant: between two successful owner
//! writes of one key by different nodes the claim changed hands (an adoption, or the earlier
//! writer's lease epoch ended), and no step has two successful writers of one key.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipmesh_cluster::detector::{MemberTable, RegistryEntry};
use sipmesh_cluster::heartbeat::Heartbeat;
use sipmesh_cluster::lease::{Lease, LeaseReply, LeaseRequest};
use sipmesh_cluster::membership::fence_reason;
use sipmesh_cluster::placement::owner_of;
use sipmesh_cluster::{Epoch, NodeId, Timing};

const STEP: Duration = Duration::from_millis(10);

/// Seeds run by default (each about 70 virtual seconds with ten faults).
const SEEDS: u64 = 10;

/// A tiny deterministic generator (xorshift64*), so a seed replays the same run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Leases and epoch counters with expiries on the virtual clock.
#[derive(Default)]
struct VirtualRedis {
    leases: HashMap<NodeId, (Epoch, Instant)>,
    counters: HashMap<NodeId, u64>,
    down: bool,
}

impl VirtualRedis {
    fn lease(
        &mut self,
        now: Instant,
        node: &NodeId,
        req: LeaseRequest,
        ttl: Duration,
    ) -> Option<LeaseReply> {
        if self.down {
            return None;
        }
        self.leases.retain(|_, (_, exp)| now < *exp);
        Some(match req {
            LeaseRequest::Acquire => {
                let c = self.counters.entry(node.clone()).or_default();
                *c += 1;
                self.leases.insert(node.clone(), (Epoch(*c), now + ttl));
                LeaseReply::Acquired(Epoch(*c))
            }
            LeaseRequest::Renew(e) => match self.leases.get_mut(node) {
                Some((held, exp)) if *held == e => {
                    *exp = now + ttl;
                    LeaseReply::Renewed
                }
                _ => LeaseReply::Lost,
            },
        })
    }

    fn registry(&self, now: Instant, all: &[NodeId]) -> Option<Vec<RegistryEntry>> {
        if self.down {
            return None;
        }
        Some(
            all.iter()
                .filter(|n| self.counters.contains_key(*n))
                .map(|n| RegistryEntry {
                    node: n.clone(),
                    addr: addr(),
                    lease: self
                        .leases
                        .get(n)
                        .filter(|(_, exp)| now < *exp)
                        .map(|(e, exp)| (*e, *exp - now)),
                })
                .collect(),
        )
    }
}

fn addr() -> SocketAddr {
    "127.0.0.1:7000".parse().expect("addr")
}

/// One simulated process.
struct Node {
    id: NodeId,
    lease: Lease,
    table: MemberTable,
    running: bool,
    frozen: bool,
    cut_off: bool,
    next_heartbeat: Instant,
    next_poll: Instant,
    in_contact_since: Option<Instant>,
    was_isolated: bool,
}

impl Node {
    fn boot(id: NodeId, timing: Timing, now: Instant) -> Self {
        Self {
            table: MemberTable::new(id.clone(), timing),
            lease: Lease::new(timing, now),
            id,
            running: true,
            frozen: false,
            cut_off: false,
            next_heartbeat: now,
            next_poll: now,
            in_contact_since: None,
            was_isolated: true,
        }
    }

    fn acts(&self) -> bool {
        self.running && !self.frozen
    }
}

/// What is broken right now, and when it heals.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(usize),
    Freeze(usize),
    CutOff(usize),
    RedisDown,
    /// Heartbeats between two nodes are lost (each still hears the others).
    CutLink(usize, usize),
}

struct Sim {
    timing: Timing,
    nodes: Vec<Node>,
    ids: Vec<NodeId>,
    redis: VirtualRedis,
    keys: Vec<Vec<u8>>,
    start: Instant,
    log: Vec<String>,
    /// Links whose heartbeats are lost, `(low, high)` node indexes.
    cut_links: HashSet<(usize, usize)>,
}

impl Sim {
    fn new(n: usize, start: Instant) -> Self {
        let timing = Timing::default();
        let ids: Vec<NodeId> = (1..=n)
            .map(|i| NodeId::new(&format!("n{i}")).expect("id"))
            .collect();
        Self {
            nodes: ids
                .iter()
                .map(|id| Node::boot(id.clone(), timing, start))
                .collect(),
            ids,
            timing,
            redis: VirtualRedis::default(),
            keys: (0..48)
                .map(|i| format!("sip:u{i}@x").into_bytes())
                .collect(),
            start,
            log: Vec::new(),
            cut_links: HashSet::new(),
        }
    }

    fn step(&mut self, now: Instant) {
        let timing = self.timing;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].acts() {
                continue;
            }
            let id = self.nodes[i].id.clone();
            if let Some(req) = self.nodes[i].lease.poll_request(now) {
                match self.redis.lease(now, &id, req, timing.lease_ttl) {
                    Some(reply) => self.nodes[i].lease.handle_reply(now, now, reply),
                    None => self.nodes[i].lease.handle_error(now),
                }
            }
            self.nodes[i].lease.handle_timeout(now);
            if now >= self.nodes[i].next_poll {
                self.nodes[i].next_poll = now + timing.poll_every;
                if let Some(entries) = self.redis.registry(now, &self.ids) {
                    self.nodes[i].table.handle_registry(now, entries);
                }
            }
            if now >= self.nodes[i].next_heartbeat {
                self.nodes[i].next_heartbeat = now + timing.heartbeat_every;
                let epoch = self.nodes[i].lease.status().owner_epoch(now);
                let hb = Heartbeat {
                    node: id.clone(),
                    epoch,
                    fenced: epoch.is_none() || self.nodes[i].table.is_isolated(now),
                };
                for j in 0..self.nodes.len() {
                    let link = !self.nodes[i].cut_off
                        && !self.nodes[j].cut_off
                        && !self.cut_links.contains(&(i.min(j), i.max(j)));
                    if j != i && link && self.nodes[j].acts() {
                        self.nodes[j]
                            .table
                            .handle_heartbeat(now, addr(), hb.clone());
                    }
                }
            }
            let isolated = self.nodes[i].table.is_isolated(now);
            if isolated != self.nodes[i].was_isolated {
                self.nodes[i].was_isolated = isolated;
                self.nodes[i].in_contact_since = (!isolated).then_some(now);
            }
        }
    }

    /// The acting, unfenced nodes: index, the epoch they write with, their placement set.
    fn acting(&self, now: Instant) -> Vec<(usize, Epoch, Vec<NodeId>)> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate().filter(|(_, n)| n.acts()) {
            let reason = fence_reason(
                now,
                &node.lease.status(),
                node.was_isolated,
                node.in_contact_since,
                self.timing.settle,
            );
            let Some(epoch) = node.lease.status().owner_epoch(now) else {
                continue;
            };
            if reason.is_some() {
                continue;
            }
            let mut live: Vec<NodeId> = node
                .table
                .peers(now)
                .into_iter()
                .filter(|p| p.state.is_placeable())
                .map(|p| p.node)
                .collect();
            live.push(node.id.clone());
            live.sort();
            out.push((i, epoch, live));
        }
        out
    }

    /// Each acting, unfenced node's owned keys; panics on a key with two owners.
    fn owners(&self, now: Instant, seed: u64) -> HashMap<&[u8], &NodeId> {
        let mut owners: HashMap<&[u8], &NodeId> = HashMap::new();
        for node in self.nodes.iter().filter(|n| n.acts()) {
            // The isolation the node last published (its detector's snapshot), as Membership
            // reads it: not a fresh evaluation.
            let reason = fence_reason(
                now,
                &node.lease.status(),
                node.was_isolated,
                node.in_contact_since,
                self.timing.settle,
            );
            if reason.is_some() {
                continue;
            }
            let mut live: Vec<NodeId> = node
                .table
                .peers(now)
                .into_iter()
                .filter(|p| p.state.is_placeable())
                .map(|p| p.node)
                .collect();
            live.push(node.id.clone());
            for key in &self.keys {
                if owner_of(key, &live) == Some(&node.id)
                    && let Some(other) = owners.insert(key, &node.id)
                {
                    panic!(
                        "seed {seed}: key {} owned by {other} and {} at {:?}\n{}",
                        String::from_utf8_lossy(key),
                        node.id,
                        now - self.start,
                        self.log.join("\n")
                    );
                }
            }
        }
        owners
    }

    fn apply(&mut self, fault: Fault, on: bool, now: Instant) {
        self.log.push(format!(
            "{:?}: {fault:?} {}",
            now - self.start,
            if on { "on" } else { "off" }
        ));
        match fault {
            Fault::Kill(i) if on => self.nodes[i].running = false,
            Fault::Kill(i) => self.nodes[i] = Node::boot(self.ids[i].clone(), self.timing, now),
            Fault::Freeze(i) => self.nodes[i].frozen = on,
            Fault::CutOff(i) => self.nodes[i].cut_off = on,
            Fault::RedisDown => self.redis.down = on,
            Fault::CutLink(i, j) if on => {
                self.cut_links.insert((i.min(j), i.max(j)));
            }
            Fault::CutLink(i, j) => {
                self.cut_links.remove(&(i.min(j), i.max(j)));
            }
        }
    }
}

fn run(seed: u64) {
    let start = Instant::now();
    let n = 3 + (seed % 3) as usize;
    let mut sim = Sim::new(n, start);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut now = start;
    // Settle, then ten faults one after the other, each healed before the next.
    let mut schedule: Vec<(Instant, Fault, bool)> = Vec::new();
    let mut t = start + Duration::from_secs(5);
    for _ in 0..10 {
        let node = rng.below(n as u64) as usize;
        let fault = match rng.below(4) {
            0 => Fault::Kill(node),
            1 => Fault::Freeze(node),
            2 => Fault::CutOff(node),
            _ => Fault::RedisDown,
        };
        let length = Duration::from_millis(500 + rng.below(6000));
        schedule.push((t, fault, true));
        schedule.push((t + length, fault, false));
        t += length + Duration::from_millis(3000 + rng.below(3000));
    }
    let end = t + Duration::from_secs(5);
    let mut next = 0;
    let mut step = 0u64;
    let single = std::env::var("SIM_SEED").is_ok();
    while now < end {
        while let Some(&(at, fault, on)) = schedule.get(next) {
            if at > now {
                break;
            }
            sim.apply(fault, on, now);
            next += 1;
        }
        sim.step(now);
        // Every 20 ms (every other step) keeps a debug run short; SIM_SEED runs check each.
        if step.is_multiple_of(2) || single {
            sim.owners(now, seed);
        }
        step += 1;
        now += STEP;
    }
    let owners = sim.owners(now, seed);
    assert_eq!(
        owners.len(),
        sim.keys.len(),
        "seed {seed}: after healing, every key must have exactly one owner"
    );
}

#[test]
fn no_key_ever_has_two_acting_owners() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(SEEDS);
            (1..=n).collect()
        }
    };
    for seed in seeds {
        run(seed);
    }
}

/// The owner claim of one key in the virtual store: `(node, epoch)`.
type Claim = (NodeId, Epoch);

/// The per-key claim model of the dialog store (see the module doc).
#[derive(Default)]
struct Claims {
    claims: HashMap<Vec<u8>, Claim>,
    /// The keys each node runs an owner actor for.
    actors: HashMap<NodeId, HashSet<Vec<u8>>>,
    /// Per node: the placement set and generation of its last rebalance, and when it is due.
    rebalanced: HashMap<NodeId, (Vec<NodeId>, u64, Instant)>,
    generation: u64,
    /// Per key: the last successful owner writer with its claim, and whether the claim
    /// changed hands since.
    last_write: HashMap<Vec<u8>, (Claim, bool)>,
    /// Steps in which two acting nodes computed themselves owner of one key.
    two_acting_owners: u64,
    /// Owner writes refused because another live node held the claim.
    refused: u64,
    writes: u64,
}

/// Seeds of the claims run by default (each about 60 virtual seconds with six faults);
/// `SIM_SEEDS` and `SIM_SEED` apply as to the first test.
const CLAIM_SEEDS: u64 = 5;

/// How often a node compares its placement set (`node/src/takeover.rs`).
const REBALANCE_EVERY: Duration = Duration::from_millis(200);

impl Claims {
    /// Whether the claimant's lease still holds the claimed epoch.
    fn claimant_live(redis: &VirtualRedis, now: Instant, claim: &Claim) -> bool {
        redis
            .leases
            .get(&claim.0)
            .is_some_and(|(e, exp)| *e == claim.1 && now < *exp)
    }

    /// The node-wide fence of every write: the lease key holds the writer's epoch.
    fn fence_ok(redis: &VirtualRedis, now: Instant, node: &NodeId, epoch: Epoch) -> bool {
        !redis.down
            && redis
                .leases
                .get(node)
                .is_some_and(|(e, exp)| *e == epoch && now < *exp)
    }

    fn step(&mut self, sim: &Sim, now: Instant, seed: u64) {
        // Killed processes lose their actors.
        for node in sim.nodes.iter().filter(|n| !n.running) {
            self.actors.remove(&node.id);
            self.rebalanced.remove(&node.id);
        }
        let acting = sim.acting(now);
        let mut owners: HashMap<&[u8], usize> = HashMap::new();
        for (i, _, live) in &acting {
            for key in &sim.keys {
                if owner_of(key, live) == Some(&sim.ids[*i]) {
                    *owners.entry(key.as_slice()).or_default() += 1;
                }
            }
        }
        if owners.values().any(|n| *n > 1) {
            self.two_acting_owners += 1;
        }
        // Rebalances first (adoptions and releases), then the owners' writes.
        for (i, epoch, live) in &acting {
            let id = &sim.ids[*i];
            let due = match self.rebalanced.get(id) {
                Some((set, generation, at)) => {
                    now >= *at && (set != live || *generation != self.generation)
                }
                None => true,
            };
            if !due {
                continue;
            }
            let seen = self.generation;
            let mut adopted = false;
            for key in &sim.keys {
                let runs = self.actors.get(id).is_some_and(|a| a.contains(key));
                let owns = owner_of(key, live) == Some(id);
                if owns && !runs {
                    if !Self::fence_ok(&sim.redis, now, id, *epoch) {
                        continue;
                    }
                    self.claims.insert(key.clone(), (id.clone(), *epoch));
                    if let Some((_, changed)) = self.last_write.get_mut(key) {
                        *changed = true;
                    }
                    self.actors
                        .entry(id.clone())
                        .or_default()
                        .insert(key.clone());
                    adopted = true;
                } else if !owns && runs {
                    self.actors.entry(id.clone()).or_default().remove(key);
                }
            }
            if adopted {
                self.generation += 1;
            }
            self.rebalanced
                .insert(id.clone(), (live.clone(), seen, now + REBALANCE_EVERY));
        }
        let mut written: HashMap<Vec<u8>, NodeId> = HashMap::new();
        for (i, epoch, _) in &acting {
            let id = &sim.ids[*i];
            let keys: Vec<Vec<u8>> = self
                .actors
                .get(id)
                .map(|a| a.iter().cloned().collect())
                .unwrap_or_default();
            for key in keys {
                if !Self::fence_ok(&sim.redis, now, id, *epoch) {
                    continue;
                }
                let mine: Claim = (id.clone(), *epoch);
                let allowed = match self.claims.get(&key) {
                    None => true,
                    Some(c) if *c == mine => true,
                    Some(c) => !Self::claimant_live(&sim.redis, now, c),
                };
                if !allowed {
                    // STALE_OWNER: the actor stops.
                    self.refused += 1;
                    self.actors.entry(id.clone()).or_default().remove(&key);
                    continue;
                }
                self.writes += 1;
                if let Some(((prev, prev_epoch), changed)) = self.last_write.get(&key)
                    && prev != id
                    && !changed
                    && Self::claimant_live(&sim.redis, now, &(prev.clone(), *prev_epoch))
                {
                    panic!(
                        "seed {seed}: key {} written by {prev} then {id} with no hand-over at {:?}\n{}",
                        String::from_utf8_lossy(&key),
                        now - sim.start,
                        sim.log.join("\n")
                    );
                }
                if let Some(other) = written.insert(key.clone(), id.clone()) {
                    panic!(
                        "seed {seed}: key {} written by {other} and {id} in one step at {:?}",
                        String::from_utf8_lossy(&key),
                        now - sim.start
                    );
                }
                self.claims.insert(key.clone(), mine.clone());
                self.last_write.insert(key, (mine, false));
            }
        }
    }
}

/// One claims run: faults biased to one-link cuts; returns the model's counters.
fn run_claims(seed: u64) -> Claims {
    let start = Instant::now();
    let n = 3 + (seed % 2) as usize;
    let mut sim = Sim::new(n, start);
    let mut claims = Claims::default();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut schedule: Vec<(Instant, Fault, bool)> = Vec::new();
    let mut t = start + Duration::from_secs(5);
    for _ in 0..6 {
        let a = rng.below(n as u64) as usize;
        let b = (a + 1 + rng.below(n as u64 - 1) as usize) % n;
        let fault = match rng.below(6) {
            0 => Fault::Kill(a),
            1 => Fault::Freeze(a),
            2 => Fault::RedisDown,
            _ => Fault::CutLink(a, b),
        };
        let length = Duration::from_millis(1000 + rng.below(5000));
        schedule.push((t, fault, true));
        schedule.push((t + length, fault, false));
        t += length + Duration::from_millis(3000 + rng.below(2000));
    }
    let end = t + Duration::from_secs(4);
    let mut next = 0;
    let mut now = start;
    let mut step = 0u64;
    while now < end {
        while let Some(&(at, fault, on)) = schedule.get(next) {
            if at > now {
                break;
            }
            sim.apply(fault, on, now);
            next += 1;
        }
        sim.step(now);
        // The owners write every 20 ms (every other step), which keeps a debug run short.
        if step.is_multiple_of(2) {
            claims.step(&sim, now, seed);
        }
        step += 1;
        now += STEP;
    }
    claims
}

#[test]
fn no_key_ever_has_two_successful_writers() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(CLAIM_SEEDS);
            (1..=n).collect()
        }
    };
    let (mut conflicts, mut refused, mut writes) = (0, 0, 0);
    for seed in seeds {
        let c = run_claims(seed);
        conflicts += c.two_acting_owners;
        refused += c.refused;
        writes += c.writes;
    }
    eprintln!(
        "claims: {writes} owner writes, {conflicts} steps with two acting owners of a key, \
         {refused} stale owner writes refused"
    );
    if std::env::var("SIM_SEED").is_err() {
        assert!(
            conflicts > 0,
            "the partial partitions never gave two acting owners"
        );
        assert!(refused > 0, "no stale owner write was ever attempted");
    }
}
