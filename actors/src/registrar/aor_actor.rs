//! The actor of one address-of-record (RFC 3261 §10): serialises its REGISTERs and lookups,
//! caches its bindings, owns their one expiry timer, and stops itself when idle.
//!
//! ```text
//!  pre_start: load bindings from the store ──► cache (invalid if the store did not answer)
//!  Job(Register) ─► store.register (deadline) ─► cache := outcome.bindings ─► reply
//!  Job(Lookup)   ─► cache if valid and flow-free, else store.lookup (+ flows_closed) ─► reply
//!  Expire{gen}   ─► stale gen? ignore : prune cache, re-arm at the next earliest expiry
//!  IdleCheck     ─► idle for `idle_after` and nothing queued? leave the directory, stop
//! ```
//!
//! The store stays the source of truth: a REGISTER is answered only from the store's
//! [`RegisterOutcome`](sipmesh_protocol::registrar::RegisterOutcome), and the cache only ever
//! holds what the store last returned. A restarted actor therefore starts from the store.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, warn};

use sipmesh_protocol::proxy::StoreFailure;
use sipmesh_protocol::registrar::{
    Aor, Binding, RegisterOutcome, RegisterRequest, RegistrarPolicy,
};

use super::cache::{BindingCache, ExpiryGeneration};
use super::directory::Directory;
use super::job::{Job, Work};
use crate::location::{LocationStore, StoreError};

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
    /// Time to check whether the actor has been idle for its idle period.
    IdleCheck,
    /// Tests: report the actor's state.
    #[cfg(test)]
    Inspect(tokio::sync::oneshot::Sender<Inspection>),
}

/// What [`AorMsg::Inspect`] reports.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inspection {
    /// Cached bindings.
    pub(crate) cached: usize,
    /// Jobs taken.
    pub(crate) taken: u64,
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
    /// Where it publishes how many jobs it took (the directory bounds its queue with it).
    pub(crate) taken: Arc<AtomicU64>,
}

/// The state of an AOR actor.
pub(crate) struct AorState<S: LocationStore> {
    aor: Aor,
    directory: Arc<Directory<S>>,
    /// Jobs taken, published through `taken_shared`.
    taken: u64,
    taken_shared: Arc<AtomicU64>,
    /// The bindings as the store last reported them.
    cache: BindingCache,
    /// Generation of the one expiry timer.
    expiry: ExpiryGeneration,
    /// The armed expiry timer's task (aborted when replaced or on stop).
    expiry_timer: Option<JoinHandle<Result<(), ractor::MessagingErr<AorMsg>>>>,
    /// The idle-check timer's task.
    idle_timer: Option<JoinHandle<Result<(), ractor::MessagingErr<AorMsg>>>>,
    /// When the last job arrived.
    last_activity: Instant,
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
        let cache = load(&args.directory, &args.aor)
            .instrument(span.clone())
            .await;
        let idle_after = args.directory.config.idle_after;
        let mut state = AorState {
            aor: args.aor,
            directory: args.directory,
            taken: 0,
            taken_shared: args.taken,
            cache,
            expiry: ExpiryGeneration::default(),
            expiry_timer: None,
            idle_timer: Some(myself.send_after(idle_after, || AorMsg::IdleCheck)),
            last_activity: Instant::now(),
            span,
        };
        state.rearm_expiry(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<AorMsg>,
        message: AorMsg,
        state: &mut AorState<S>,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        match message {
            AorMsg::Job(job) => state.job(&myself, job).instrument(span).await,
            AorMsg::Expire { generation } => {
                let _entered = span.enter();
                if state.expiry.fire(generation) {
                    let now = state.directory.config.clock.now();
                    let pruned = state.cache.prune(now);
                    debug!(pruned, left = state.cache.len(), "expiry timer");
                    state.rearm_expiry(&myself);
                } else {
                    debug!(generation, "stale expiry timer ignored");
                }
            }
            AorMsg::IdleCheck => {
                let _entered = span.enter();
                state.idle_check(&myself);
            }
            #[cfg(test)]
            AorMsg::Inspect(reply) => {
                let _ = reply.send(Inspection {
                    cached: state.cache.len(),
                    taken: state.taken,
                    generation: state.expiry.generation(),
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

/// Reads the AOR's bindings for a new actor; a store that does not answer leaves the cache
/// unknown (lookups then go to the store) rather than failing the start.
async fn load<S: LocationStore>(directory: &Directory<S>, aor: &Aor) -> BindingCache {
    let now = directory.config.clock.now();
    let read = directory.store.lookup(aor, now);
    match tokio::time::timeout(directory.config.call_timeout, read).await {
        Ok(Ok(bindings)) => BindingCache::loaded(bindings),
        Ok(Err(e)) => {
            warn!(error = %e, "loading bindings failed; starting with an unknown cache");
            BindingCache::unknown()
        }
        Err(_) => {
            warn!("loading bindings timed out; starting with an unknown cache");
            BindingCache::unknown()
        }
    }
}

impl<S: LocationStore> AorState<S> {
    async fn job(&mut self, myself: &ActorRef<AorMsg>, mut job: Job) {
        self.taken += 1;
        self.taken_shared.store(self.taken, Ordering::Release);
        self.last_activity = Instant::now();
        let deadline = job.deadline;
        let Some(work) = job.take() else { return };
        drop(job);
        match work {
            Work::Register {
                request,
                policy,
                reply,
            } => {
                reply.send(self.register(request, policy, deadline).await);
                self.rearm_expiry(myself);
            }
            Work::Lookup { aor, reply } => reply.send(self.lookup(&aor, deadline).await),
            Work::Panic { reply } => {
                let _ = reply.send(());
                warn!("panicking on request (test hook)");
                panic!("injected panic (test hook)");
            }
        }
    }

    /// Applies a REGISTER through the store within `deadline`; the cache follows the store's
    /// answer, and forgets everything when the outcome is unknown.
    async fn register(
        &mut self,
        request: RegisterRequest,
        policy: RegistrarPolicy,
        deadline: Instant,
    ) -> Result<RegisterOutcome, StoreFailure> {
        let now = self.directory.config.clock.now();
        let result = if S::COMPLETES_INLINE {
            Ok(self.directory.store.register(request, &policy, now).await)
        } else if Instant::now() >= deadline {
            Err(())
        } else {
            let write = self.directory.store.register(request, &policy, now);
            tokio::time::timeout_at(deadline, write)
                .await
                .map_err(|_| ())
        };
        match result {
            Ok(Ok(outcome)) => {
                self.cache.set(outcome.bindings.clone());
                Ok(outcome)
            }
            // Nothing was stored: the cache is still right.
            Ok(Err(StoreError::Register(e))) => Err(StoreFailure::Rejected(e)),
            Ok(Err(e @ StoreError::Unavailable(_))) => {
                warn!(error = %e, "REGISTER: location store unavailable");
                self.cache.invalidate();
                Err(StoreFailure::Unavailable)
            }
            Err(()) => {
                warn!("REGISTER: deadline passed before the store answered");
                self.cache.invalidate();
                Err(StoreFailure::Unavailable)
            }
        }
    }

    /// The live bindings of the AOR: from the cache when it may answer, otherwise from the store
    /// (which alone tells 480, flows closed, from 404).
    async fn lookup(&mut self, aor: &Aor, deadline: Instant) -> Result<Vec<Binding>, StoreFailure> {
        let now = self.directory.config.clock.now();
        if self.directory.config.cache_lookups
            && let Some(bindings) = self.cache.serve(now)
        {
            return Ok(bindings);
        }
        let store = &self.directory.store;
        let read = async {
            let bindings = store.lookup(aor, now).await?;
            let closed = bindings.is_empty() && store.flows_closed(aor, now).await.unwrap_or(false);
            Ok::<_, StoreError>((bindings, closed))
        };
        let result = if S::COMPLETES_INLINE {
            Ok(read.await)
        } else {
            tokio::time::timeout_at(deadline, read).await
        };
        match result {
            Ok(Ok((bindings, closed))) => {
                self.cache.set(bindings.clone());
                if closed {
                    Err(StoreFailure::FlowsClosed)
                } else {
                    Ok(bindings)
                }
            }
            Ok(Err(e)) => {
                warn!(error = %e, "lookup: location store unavailable");
                Err(StoreFailure::Unavailable)
            }
            Err(_) => {
                warn!("lookup: deadline passed before the store answered");
                Err(StoreFailure::Unavailable)
            }
        }
    }

    /// Re-arms the expiry timer when the earliest expiry moved earlier (or none is armed).
    /// A later earliest expiry keeps the armed timer: it fires early, prunes nothing and
    /// re-arms, which is cheaper than a new timer on every refresh.
    fn rearm_expiry(&mut self, myself: &ActorRef<AorMsg>) {
        let next = self.cache.next_expiry();
        let Some(at) = next.filter(|_| self.expiry.needs_rearm(next)) else {
            return;
        };
        if let Some(t) = self.expiry_timer.take() {
            t.abort();
        }
        let generation = self.expiry.arm(at);
        let now = self.directory.config.clock.now();
        let delay = at.duration_since(now).unwrap_or(Duration::ZERO);
        self.expiry_timer = Some(myself.send_after(delay, move || AorMsg::Expire { generation }));
    }

    /// Stops the actor if it has been idle for its idle period and nothing is queued for it;
    /// otherwise checks again when the period would end.
    fn idle_check(&mut self, myself: &ActorRef<AorMsg>) {
        let idle_after = self.directory.config.idle_after;
        let idle_for = self.last_activity.elapsed();
        if idle_for >= idle_after {
            if self
                .directory
                .remove_if_idle(&self.aor, myself.get_id(), self.taken)
            {
                debug!(?idle_for, "idle: stopping");
                self.stop_timers();
                myself.stop(Some("idle".to_owned()));
                return;
            }
            // A job is on its way: it resets the activity.
            self.idle_timer = Some(myself.send_after(idle_after, || AorMsg::IdleCheck));
        } else {
            self.idle_timer = Some(myself.send_after(idle_after - idle_for, || AorMsg::IdleCheck));
        }
    }

    fn stop_timers(&mut self) {
        for t in [self.expiry_timer.take(), self.idle_timer.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
    }
}
