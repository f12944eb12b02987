//! The actor of one address-of-record (RFC 3261 §10): serialises its REGISTERs and lookups,
//! caches its bindings, owns their one expiry timer, and stops itself when idle.
//!
//! ```text
//!  pre_start: load bindings from the store ──► cache (invalid if the store did not answer;
//!             skipped over a networked store when the first job is a REGISTER)
//!  Job(Register) ─► store.register (deadline) ─► cache := outcome.bindings ─► reply
//!  Job(Lookup)   ─► cache if valid and flow-free, else store.lookup (+ flows_closed) ─► reply
//!  Expire{gen}   ─► stale gen? ignore : prune cache, re-arm at the next earliest expiry
//!  IdleCheck     ─► idle for `idle_after` and nothing queued? leave the directory, stop
//!                   (sent by the supervisor's housekeeping, not a timer per actor)
//! ```
//!
//! The state lives in an [`AorCore`](super::aor_core::AorCore) that the directory may also
//! use inline, on the caller's task, for a store that answers at once while this actor is idle
//! (see `aor_core`); the actor runs exactly the same code for the requests it gets.
//!
//! The store stays the source of truth: a REGISTER is answered only from the store's
//! [`RegisterOutcome`](sipmesh_protocol::registrar::RegisterOutcome), and the cache only ever
//! holds what the store last returned. A restarted actor therefore starts from the store.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt as _;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, warn};

use sipmesh_protocol::registrar::Aor;

use super::aor_core::{SharedCore, lock, read_bindings};
use super::directory::Directory;
use super::job::{Job, Work};
use crate::location::LocationStore;

/// Messages of an [`AorActor`].
#[derive(Debug)]
// ractor boxes every message already; boxing the job again would cost a second allocation per
// request for no memory saved (messages are not stored in bulk).
#[allow(clippy::large_enum_variant)]
pub(crate) enum AorMsg {
    /// A request routed by the directory (counted).
    Job(Job),
    /// The expiry timer of this generation fired.
    Expire {
        /// The timer's generation (stale ones are ignored).
        generation: u64,
    },
    /// The directory's housekeeping saw the actor idle for its idle period: stop if still so.
    IdleCheck,
    /// Tests: report the actor's state.
    #[cfg(test)]
    Inspect(tokio::sync::oneshot::Sender<Inspection>),
}

// ractor's `cluster` feature (for ractor_cluster) drops the blanket impl: local-only messages
// opt in explicitly.
impl ractor::Message for AorMsg {}

/// What [`AorMsg::Inspect`] reports.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inspection {
    /// Cached bindings.
    pub(crate) cached: usize,
    /// Jobs completed by the actor (not counting inline ones).
    pub(crate) done: u64,
    /// Generation of the expiry timer.
    pub(crate) generation: u64,
}

/// The actor of one AOR, generic over the store it reads and writes.
pub(crate) struct AorActor<S>(PhantomData<fn() -> S>);

impl<S> AorActor<S> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// What an AOR actor starts from.
pub(crate) struct AorArgs<S: LocationStore> {
    /// Its AOR.
    pub(crate) aor: Aor,
    /// The directory it is listed in (and the store and settings).
    pub(crate) directory: Arc<Directory<S>>,
    /// Where it publishes how many jobs it completed (the directory bounds its queue with it,
    /// and runs a request inline only when every job sent was completed).
    pub(crate) done: Arc<AtomicU64>,
    /// Its state, shared with the directory's inline path.
    pub(crate) core: SharedCore,
    /// Held while one of its jobs runs, here or on a caller's task (see `driver`).
    pub(crate) gate: Arc<tokio::sync::Mutex<()>>,
    /// The gate, held from the spawn until the AOR is loaded; `None`: start without loading
    /// (the first job is a REGISTER, whose outcome fills the cache).
    pub(crate) loading: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// The state of an AOR actor.
pub(crate) struct AorState<S: LocationStore> {
    aor: Aor,
    directory: Arc<Directory<S>>,
    /// Jobs this actor completed (the tests inspect it).
    done: u64,
    /// Jobs completed, here or driven by a caller, published once each is finished.
    done_shared: Arc<AtomicU64>,
    /// Held while a job runs (see [`AorArgs::gate`]).
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Cache, expiry timer, last activity.
    core: SharedCore,
    /// `aor` span: everything this actor logs nests under it.
    span: Span,
}

impl<S: LocationStore> Actor for AorActor<S> {
    type Msg = AorMsg;
    type State = AorState<S>;
    type Arguments = AorArgs<S>;

    async fn pre_start(
        &self,
        myself: ActorRef<AorMsg>,
        args: AorArgs<S>,
    ) -> Result<AorState<S>, ActorProcessingErr> {
        let span = tracing::info_span!("aor", aor = %args.aor);
        if let Some(loading) = args.loading {
            load(&args.directory, &args.aor, &args.core, &myself, false)
                .instrument(span.clone())
                .await;
            drop(loading);
        }
        Ok(AorState {
            aor: args.aor,
            directory: args.directory,
            done: 0,
            done_shared: args.done,
            core: args.core,
            gate: args.gate,
            span,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AorMsg>,
        message: AorMsg,
        state: &mut AorState<S>,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        match message {
            AorMsg::Job(job) => {
                // A job driven by a caller may still be running: wait for it (in order).
                let gate = Arc::clone(&state.gate);
                let running = gate.lock().await;
                state.job(&myself, job).instrument(span).await;
                drop(running);
                state.done += 1;
                state.done_shared.fetch_add(1, Ordering::Release);
            }
            AorMsg::Expire { generation } => {
                let gate = Arc::clone(&state.gate);
                let _gate = gate.lock().await;
                let now = state.directory.config.clock.now();
                let keeps = {
                    let mut core = lock(&state.core);
                    if !core.expiry.fire(generation) {
                        debug!(parent: &span, generation, "stale expiry timer ignored");
                        return Ok(());
                    }
                    core.cache.keeps()
                };
                if keeps {
                    let mut core = lock(&state.core);
                    let pruned = core.cache.prune(now);
                    debug!(parent: &span, pruned, left = core.cache.len(), "expiry timer");
                    core.rearm_expiry(&myself, now);
                } else {
                    // Only the earliest expiry is cached: the store says what is left.
                    load(&state.directory, &state.aor, &state.core, &myself, true)
                        .instrument(span)
                        .await;
                }
            }
            AorMsg::IdleCheck => {
                let _entered = span.enter();
                state.idle_check(&myself);
            }
            #[cfg(test)]
            AorMsg::Inspect(reply) => {
                let core = lock(&state.core);
                let _ = reply.send(Inspection {
                    cached: core.cache.len(),
                    done: state.done,
                    generation: core.expiry.generation(),
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AorMsg>,
        state: &mut AorState<S>,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_timers();
        Ok(())
    }
}

/// Loads the AOR's bindings into the cache (at start, or with `force` when the expiry timer
/// needs the store's view) and re-arms the expiry timer; a store that does not answer leaves
/// the cache unknown (lookups then go to the store) rather than failing the start. A store
/// whose calls complete at once is read under the core's lock, so an inline request cannot
/// slip in between the read and the cache update; a networked store's answer is taken only if
/// no request validated the cache meanwhile (the actor's own requests wait behind this one).
async fn load<S: LocationStore>(
    directory: &Directory<S>,
    aor: &Aor,
    core: &SharedCore,
    myself: &ActorRef<AorMsg>,
    force: bool,
) {
    let now = directory.config.clock.now();
    let read = if S::COMPLETES_INLINE {
        let mut core = lock(core);
        let read = directory.store.lookup(aor, now).now_or_never();
        if let Some(Ok(bindings)) = &read
            && (force || !core.cache.is_valid())
        {
            core.cache.set(bindings);
            core.rearm_expiry(myself, now);
        }
        read.map(|r| r.map(drop))
    } else {
        let read = directory.store.lookup(aor, now);
        let read = tokio::time::timeout(directory.config.call_timeout, read).await;
        let mut core = lock(core);
        match read {
            Ok(Ok(bindings)) => {
                if force || !core.cache.is_valid() {
                    core.cache.set(&bindings);
                    core.rearm_expiry(myself, now);
                }
                Some(Ok(()))
            }
            Ok(Err(e)) => Some(Err(e)),
            Err(_) => None,
        }
    };
    match read {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            warn!(error = %e, "loading bindings failed; starting with an unknown cache")
        }
        None => warn!("loading bindings timed out; starting with an unknown cache"),
    }
}

impl<S: LocationStore> AorState<S> {
    async fn job(&mut self, myself: &ActorRef<AorMsg>, mut job: Job) {
        let deadline = job.deadline;
        let Some(work) = job.take() else { return };
        drop(job);
        let config = self.directory.config;
        let store = &*self.directory.store;
        let now = config.clock.now();
        if Instant::now() >= deadline {
            // Shed: it waited in the queue past its deadline; its reply answers 503.
            debug!("request dropped: deadline passed in the queue");
            drop(work);
            return;
        }
        match work {
            Work::Register {
                request,
                policy,
                reply,
            } if S::COMPLETES_INLINE => {
                let result = lock(&self.core).register_now(store, request, &policy, now, myself);
                reply.send(result);
            }
            Work::Lookup { aor, reply } if S::COMPLETES_INLINE => {
                let mut core = lock(&self.core);
                let result = core.lookup_now(store, &aor, now, config.cache_lookups);
                let result = core.after_lookup(myself, now, result);
                drop(core);
                reply.send(result);
            }
            Work::Register {
                request,
                policy,
                reply,
            } => {
                lock(&self.core).last_activity = Instant::now();
                let write = store.register(request, &policy, now);
                let result = tokio::time::timeout_at(deadline, write).await.ok();
                let mut core = lock(&self.core);
                let result = core.registered(result);
                core.rearm_expiry(myself, now);
                drop(core);
                reply.send(result);
            }
            Work::Lookup { aor, reply } => {
                let cached = {
                    let mut core = lock(&self.core);
                    core.last_activity = Instant::now();
                    core.cache.serve(now).filter(|_| config.cache_lookups)
                };
                let result = match cached {
                    Some(bindings) => Ok(bindings),
                    None => {
                        let read = read_bindings(store, &aor, now);
                        let read = tokio::time::timeout_at(deadline, read).await.ok();
                        lock(&self.core).looked_up(read)
                    }
                };
                lock(&self.core).rearm_expiry(myself, now);
                reply.send(result);
            }
            Work::Panic { reply } => {
                let _ = reply.send(());
                warn!("panicking on request (test hook)");
                panic!("injected panic (test hook)");
            }
        }
    }

    /// Stops the actor if it has been idle for its idle period and nothing is queued for it
    /// (the directory's housekeeping asks); otherwise re-evaluates the expiry timer, whose
    /// horizon has moved.
    fn idle_check(&mut self, myself: &ActorRef<AorMsg>) {
        let idle_after = self.directory.config.idle_after;
        let idle_for = lock(&self.core).last_activity.elapsed();
        if idle_for >= idle_after
            && self.directory.remove_if_idle(
                &self.aor,
                myself.get_id(),
                self.done_shared.load(Ordering::Acquire),
            )
        {
            debug!(?idle_for, "idle: stopping");
            self.stop_timers();
            myself.stop(Some("idle".to_owned()));
            return;
        }
        let now = self.directory.config.clock.now();
        lock(&self.core).rearm_expiry(myself, now);
    }

    fn stop_timers(&mut self) {
        lock(&self.core).stop_timer();
    }
}
