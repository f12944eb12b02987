//! The live AOR actors: a sharded map `Aor -> ActorRef` that the [`Registrar`] handle routes
//! through, so the hot path takes one short, rarely contended lock and never waits for the
//! supervisor actor. The supervisor only hears about spawns indirectly (actors are linked to
//! it) and about deaths through its supervision events.
//!
//! Races with a stopping actor are closed by counting: each entry counts the jobs sent to its
//! actor (under the shard lock) and the actor counts the jobs it took. An idle actor removes
//! its own entry, under the same lock, only when the two counts agree, so no job can be queued
//! behind its stop. A job that still meets a dead actor (its mailbox closed) is sent to a fresh
//! one; one dropped inside a dying actor comes back through [`Redeliver`].
//!
//! [`Registrar`]: super::Registrar

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use ractor::{ActorCell, ActorId, ActorRef, MessagingErr};
use tracing::warn;

use sipmesh_protocol::registrar::Aor;

use super::aor_actor::{AorActor, AorArgs, AorMsg};
use super::aor_core::{AorCore, SharedCore, lock as lock_core, run_stateless, run_stateless_async};
use super::config::RegistrarConfig;
use super::driver::{Borrowed, Driver, Finish, run_borrowed};
use super::job::{Job, Redeliver, Work};
use crate::location::LocationStore;

/// Number of map shards: a power of two well above the number of transaction shards.
const SHARDS: usize = 64;

/// One live AOR actor.
#[derive(Debug)]
struct Entry {
    /// Its mailbox.
    actor: ActorRef<AorMsg>,
    /// Jobs sent to it (only changed under the shard lock).
    sent: u64,
    /// Jobs it has completed (written by the actor after each).
    done: Arc<AtomicU64>,
    /// Its state, for the inline path.
    core: SharedCore,
    /// Held by whoever runs one of its jobs: the actor, or a caller driving a job of the idle
    /// actor itself (see `driver`), so the AOR's jobs never overlap.
    gate: Arc<tokio::sync::Mutex<()>>,
}

/// The sharded map of live AOR actors plus what spawning one needs.
pub(crate) struct Directory<S: LocationStore> {
    /// `SHARDS` independently locked partitions of the AOR space.
    shards: Box<[Mutex<HashMap<Aor, Entry>>]>,
    /// Hashes AORs to shards.
    hasher: RandomState,
    /// The AOR of every live actor, so supervision events (which name only the actor) can
    /// find its entry; an id leaves it with the actor's supervision event. Locked after a shard
    /// lock, never before one.
    ids: Mutex<HashMap<ActorId, Aor>>,
    /// The supervisor every AOR actor is linked to (set once it runs).
    supervisor: OnceLock<ActorCell>,
    /// The source of truth.
    pub(crate) store: Arc<S>,
    /// Settings.
    pub(crate) config: RegistrarConfig,
    /// This directory, for the actors and jobs it creates.
    myself: Weak<Self>,
    /// The runtime AOR actors (and plain store calls no caller drives) run on when requests
    /// come from another one (the node's signalling thread, issue 6): the store's connections
    /// and their I/O then stay on it, unless the engine created the store on the signalling
    /// runtime (`EngineConfig::location_on_signalling`, session 6). Unset: wherever the request comes from. A call the caller
    /// drives (see `driver`) is polled on the caller's thread either way; it only talks to the
    /// store's connection tasks through channels.
    home: OnceLock<tokio::runtime::Handle>,
}

impl<S: LocationStore> std::fmt::Debug for Directory<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

impl<S: LocationStore> Directory<S> {
    pub(crate) fn new(store: Arc<S>, config: RegistrarConfig) -> Arc<Self> {
        Arc::new_cyclic(|myself| Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            ids: Mutex::new(HashMap::new()),
            supervisor: OnceLock::new(),
            store,
            config,
            myself: myself.clone(),
            home: OnceLock::new(),
        })
    }

    /// Runs AOR actors and plain store calls on `runtime` from now on (a second call is
    /// ignored).
    pub(crate) fn set_home(&self, runtime: tokio::runtime::Handle) {
        let _ = self.home.set(runtime);
    }

    /// Links future actors to `supervisor`.
    pub(crate) fn set_supervisor(&self, supervisor: ActorCell) {
        let _ = self.supervisor.set(supervisor);
    }

    /// A weak handle for jobs to come back through.
    pub(crate) fn redeliverer(&self) -> Weak<dyn Redeliver> {
        self.myself.clone()
    }

    fn shard(&self, aor: &Aor) -> MutexGuard<'_, HashMap<Aor, Entry>> {
        // The remainder is below SHARDS, so the cast is lossless and the index in bounds.
        let index = (self.hasher.hash_one(aor) % SHARDS as u64) as usize;
        lock(&self.shards[index])
    }

    /// Routes `job` for its AOR: over a store that answers at once, as a plain store call when
    /// the AOR has no actor (`inline_without_actor`) or on this task when its actor is idle
    /// (`inline_when_idle`); otherwise to the AOR's actor, spawning one if there is none (or if
    /// the one there is the one the job was dropped by). Answers `Unavailable` when the actor's
    /// queue is full or no actor can be spawned. With a `driver` (a networked store), a job
    /// that would otherwise wake another task only to wait for the store there (an idle
    /// actor's job, a plain store call) becomes a call the caller drives (see `driver`).
    pub(crate) fn dispatch(&self, mut job: Job, mut driver: Option<&mut Driver>) {
        let aor = job.aor().clone();
        let mut map = self.shard(&aor);
        if let (Some(e), Some(dead)) = (map.get(&aor), job.sent_to)
            && e.actor.get_id() == dead
        {
            // The job was dropped by this actor (it is dying): route around it. Its
            // supervision event will find its entry gone and not respawn it.
            self.forget(&mut map, &aor);
        }
        if S::COMPLETES_INLINE
            && self.config.inline_without_actor
            && !map.contains_key(&aor)
            && job.sent_to.is_none()
            && !matches!(job.peek(), Some(Work::Panic { .. }))
        {
            // No actor and nothing it would add (see `inline_without_actor`): a plain store
            // call, serialised with every other request for this AOR by the shard lock.
            if let Some(work) = job.take() {
                run_stateless(&*self.store, work, self.config.clock.now());
            }
            return;
        }
        let uncached_lookup =
            !self.config.cache_lookups && matches!(job.peek(), Some(Work::Lookup { .. }));
        if !S::COMPLETES_INLINE
            && job.sent_to.is_none()
            && (uncached_lookup
                || (!map.contains_key(&aor)
                    && map.len() >= self.config.max_live_actors.div_ceil(SHARDS)
                    && !matches!(job.peek(), Some(Work::Panic { .. }))))
        {
            // A lookup the actor would not answer from a cache gains nothing from queueing
            // behind the AOR's other requests (a hot AOR, a PBX trunk, would serialise every
            // call's lookup on one Redis round trip at a time); and at the actor cap
            // (`max_live_actors`) a REGISTER for an AOR without an actor is not worth one. Both
            // are plain store calls on their own task; writes stay atomic in the Redis script.
            if let Some(work) = job.take() {
                let store = Arc::clone(&self.store);
                let call = run_stateless_async(store, work, self.config.clock.now());
                // Driven by the caller when it can (as an idle actor's job is, see `drive`):
                // spawning it on the home runtime would cost two cross-thread wake-ups more
                // (signalling thread → worker → signalling thread) on top of the store's own.
                match (driver, self.home.get()) {
                    (Some(driver), _) => driver.push(call),
                    (None, Some(home)) => drop(home.spawn(call)),
                    (None, None) => drop(tokio::spawn(call)),
                }
            }
            return;
        }
        for _ in 0..2 {
            if !map.contains_key(&aor) {
                // Over a networked store, an actor started by a REGISTER skips its load: the
                // REGISTER's outcome (the AOR's full set of bindings) fills its cache, and the
                // store read would only be overwritten (one `GET` per new actor saved).
                let load = S::COMPLETES_INLINE
                    || job.sent_to.is_some()
                    || !matches!(job.peek(), Some(Work::Register { .. }));
                let Some(entry) = self.spawn(&aor, load) else {
                    break;
                };
                map.insert(aor.clone(), entry);
            }
            let Some(entry) = map.get_mut(&aor) else {
                break;
            };
            let queued = entry
                .sent
                .saturating_sub(entry.done.load(Ordering::Acquire));
            if queued == 0
                && S::COMPLETES_INLINE
                && self.config.inline_when_idle
                && self.run_inline(entry, &mut job)
            {
                return;
            }
            if queued == 0
                && !S::COMPLETES_INLINE
                && let Some(driver) = driver.as_deref_mut()
                && self.drive(entry, &mut job, driver)
            {
                return;
            }
            if queued >= self.config.max_queued {
                drop(map);
                warn!(%aor, limit = self.config.max_queued, "AOR actor queue full");
                job.fail();
                return;
            }
            entry.sent += 1;
            job.sent_to = Some(entry.actor.get_id());
            match entry.actor.send_message(AorMsg::Job(job)) {
                Ok(()) => return,
                Err(MessagingErr::SendErr(AorMsg::Job(back))) => {
                    // Its mailbox closed (it stopped or failed a moment ago): a fresh one.
                    job = back;
                    job.sent_to = None;
                    self.forget(&mut map, &aor);
                }
                // Any other error dropped the message: the job's own drop redelivers it.
                Err(_) => return,
            }
        }
        drop(map);
        job.fail();
    }

    /// Runs `job` on the caller's task when the store answers at once and the actor is idle:
    /// nothing queued (checked by the caller, under the shard lock that every send takes) and
    /// not inside a job (its core lock is free). Holding both locks keeps the idle stop and
    /// the actor out, so the AOR's requests stay serialised and in order. Returns false (job
    /// untouched) when the actor is busy, and for the hook (which must reach the actor).
    fn run_inline(&self, entry: &mut Entry, job: &mut Job) -> bool {
        let Ok(mut core) = entry.core.try_lock() else {
            return false;
        };
        if matches!(job.peek(), Some(Work::Panic { .. }) | None) || job.sent_to.is_some() {
            return false;
        }
        let Some(work) = job.take() else {
            return false;
        };
        let now = self.config.clock.now();
        let store = &*self.store;
        let actor = &entry.actor;
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| match work {
            Work::Register {
                request,
                policy,
                reply,
            } => reply.send(core.register_now(store, request, &policy, now, actor)),
            Work::Lookup { aor, reply } => {
                let result = core.lookup_now(store, &aor, now, self.config.cache_lookups);
                reply.send(core.after_lookup(actor, now, result));
            }
            // Excluded above.
            Work::Panic { .. } => {}
        }));
        if let Err(panic) = ran {
            // Same policy as in the actor: the request was answered 503 by its reply's drop;
            // the actor is stopped so its replacement starts from the store.
            drop(core);
            warn!(aor = %job.aor(), ?panic, "AOR request panicked inline; restarting its actor");
            entry.actor.stop(Some("panicked inline".to_owned()));
        }
        true
    }

    /// Takes the job of an idle actor over a networked store for the caller to drive (see
    /// `driver`): a lookup the actor's cache can answer is answered here and now; anything else
    /// becomes a driven call holding the actor's gate, counted as sent to the actor so that its
    /// idle stop waits for it. Returns false (job untouched) when the actor is inside a job
    /// (its gate is held), for the hook (which must reach the actor) and for redeliveries.
    fn drive(&self, entry: &mut Entry, job: &mut Job, driver: &mut Driver) -> bool {
        if matches!(job.peek(), Some(Work::Panic { .. }) | None) || job.sent_to.is_some() {
            return false;
        }
        let Ok(gate) = Arc::clone(&entry.gate).try_lock_owned() else {
            return false;
        };
        let deadline = job.deadline;
        let aor = job.aor().clone();
        let Some(work) = job.take() else {
            return false;
        };
        let work = match work {
            Work::Lookup { aor, reply } if self.config.cache_lookups => {
                let now = self.config.clock.now();
                let mut core = lock_core(&entry.core);
                core.last_activity = tokio::time::Instant::now();
                match core.cache.serve(now) {
                    Some(bindings) => {
                        core.rearm_expiry(&entry.actor, now);
                        drop(core);
                        reply.send(Ok(bindings));
                        return true;
                    }
                    None => Work::Lookup { aor, reply },
                }
            }
            work => work,
        };
        entry.sent += 1;
        let borrowed = Borrowed {
            store: Arc::clone(&self.store),
            config: self.config,
            core: Arc::clone(&entry.core),
            actor: entry.actor.clone(),
            finish: Finish::new(gate, Arc::clone(&entry.done)),
        };
        driver.push(run_borrowed(borrowed, aor, work, deadline));
        true
    }

    /// Tests: whether the AOR's actor is idle (nothing queued, not inside a job), so that its
    /// next job is run or driven by the caller.
    #[cfg(test)]
    pub(crate) fn is_idle(&self, aor: &Aor) -> bool {
        self.shard(aor)
            .get(aor)
            .is_some_and(|e| e.sent == e.done.load(Ordering::Acquire) && e.gate.try_lock().is_ok())
    }

    /// The AOR's live actor, if any (for the handle's checks and the tests).
    pub(crate) fn live_actor(&self, aor: &Aor) -> Option<ActorRef<AorMsg>> {
        self.shard(aor).get(aor).map(|e| e.actor.clone())
    }

    /// Spawns the AOR's actor; `load`: it reads the AOR's bindings before its first job
    /// (without, its cache starts unknown and the first job, a REGISTER, fills it).
    fn spawn(&self, aor: &Aor, load: bool) -> Option<Entry> {
        let supervisor = self.supervisor.get()?.clone();
        let directory = self.myself.upgrade()?;
        let done = Arc::new(AtomicU64::new(0));
        let core = AorCore::new(self.config.cache_lookups, 2 * self.config.idle_after);
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        // Held by the actor until it has loaded the AOR: no job is driven before that.
        let loading = match load.then(|| Arc::clone(&gate).try_lock_owned()) {
            Some(Ok(guard)) => Some(guard),
            Some(Err(_)) => return None,
            None => None,
        };
        let args = AorArgs {
            aor: aor.clone(),
            directory,
            done: Arc::clone(&done),
            core: Arc::clone(&core),
            gate: Arc::clone(&gate),
            loading,
        };
        // ractor spawns on the entered runtime.
        let _entered = self.home.get().map(tokio::runtime::Handle::enter);
        match ractor::ActorRuntime::spawn_linked_instant(
            None,
            AorActor::<S>::new(),
            args,
            supervisor,
        ) {
            Ok((actor, _started)) => {
                lock(&self.ids).insert(actor.get_id(), aor.clone());
                Some(Entry {
                    actor,
                    sent: 0,
                    done,
                    core,
                    gate,
                })
            }
            Err(e) => {
                warn!(%aor, error = %e, "spawning an AOR actor failed");
                None
            }
        }
    }

    /// Unlists the AOR's actor. Its `ids` entry stays until its supervision event arrives, so
    /// the supervisor can still name the AOR of an actor that was routed around.
    fn forget(&self, map: &mut HashMap<Aor, Entry>, aor: &Aor) {
        map.remove(aor);
    }

    /// Called by an idle actor: removes its entry if no job is queued for it (`done` jobs
    /// completed, as many as were sent). Returns whether it may stop. An actor that is no longer in
    /// the map (it was routed around) may always stop.
    pub(crate) fn remove_if_idle(&self, aor: &Aor, id: ActorId, done: u64) -> bool {
        let mut map = self.shard(aor);
        match map.get(aor) {
            Some(e) if e.actor.get_id() == id => {
                if e.sent != done {
                    return false;
                }
                self.forget(&mut map, aor);
                true
            }
            _ => true,
        }
    }

    /// An actor failed (panicked): if it is still the AOR's actor, replace it by a fresh one,
    /// which reloads from the store. Returns the AOR, if the actor was one of ours.
    pub(crate) fn respawn(&self, id: ActorId) -> Option<Aor> {
        let aor = lock(&self.ids).remove(&id)?;
        let mut map = self.shard(&aor);
        if map.get(&aor).is_some_and(|e| e.actor.get_id() == id) {
            map.remove(&aor);
            if let Some(entry) = self.spawn(&aor, true) {
                map.insert(aor.clone(), entry);
            }
        }
        Some(aor)
    }

    /// An actor stopped: forget it if it is still listed.
    pub(crate) fn terminated(&self, id: ActorId) -> Option<Aor> {
        let aor = lock(&self.ids).remove(&id)?;
        let mut map = self.shard(&aor);
        if map.get(&aor).is_some_and(|e| e.actor.get_id() == id) {
            map.remove(&aor);
        }
        Some(aor)
    }

    /// Tells every actor idle for its idle period to check (and stop). Runs every half idle
    /// period on the supervisor's housekeeping task: one task for all actors instead of an
    /// idle timer each. An actor busy inside a job (its core locked) is skipped this round.
    pub(crate) fn nudge_idle(&self) {
        let idle_after = self.config.idle_after;
        let mut idle = Vec::new();
        for shard in &*self.shards {
            let map = lock(shard);
            idle.extend(map.values().filter_map(|e| {
                let core = e.core.try_lock().ok()?;
                (core.last_activity.elapsed() >= idle_after).then(|| e.actor.clone())
            }));
        }
        for actor in idle {
            let _ = actor.send_message(AorMsg::IdleCheck);
        }
    }

    /// Number of live AOR actors.
    pub(crate) fn live(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Forgets every actor (the supervisor is stopping them).
    pub(crate) fn clear(&self) {
        for s in &*self.shards {
            lock(s).clear();
        }
        lock(&self.ids).clear();
    }
}

impl<S: LocationStore> Redeliver for Directory<S> {
    fn redeliver(&self, _aor: Aor, job: Job) {
        self.dispatch(job, None);
    }
}

/// Locks, ignoring poisoning: every critical section here is a few map operations that leave
/// the map consistent at any point a panic could interrupt them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
