//! The state of one AOR actor, shared with the directory's inline path.
//!
//! For a store whose calls complete at once (the memory store), a request for an AOR whose
//! actor is idle (nothing queued, not inside a job) runs on the caller's task, under this
//! state's lock and the directory shard's lock, instead of hopping to the actor's task and back:
//! the same code, the same serialisation, two task wake-ups fewer per request (the hop cost
//! about a third of the REGISTER throughput, see docs/DESIGN-NOTES.md). Everything else (a
//! queued actor, a networked store, timers, idle stop, restarts) goes through the actor.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use ractor::ActorRef;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use sipmesh_protocol::proxy::StoreFailure;
use sipmesh_protocol::registrar::{
    Aor, Binding, RegisterOutcome, RegisterRequest, RegistrarPolicy,
};

use super::aor_actor::AorMsg;
use super::cache::{BindingCache, ExpiryGeneration};
use super::job::Work;
use crate::location::{LocationStore, StoreError};

/// A timer task that sends the actor a message.
pub(crate) type TimerTask = JoinHandle<Result<(), ractor::MessagingErr<AorMsg>>>;

/// The state of one AOR, behind [`SharedCore`].
#[derive(Debug)]
pub(crate) struct AorCore {
    /// The bindings as the store last reported them.
    pub(crate) cache: BindingCache,
    /// Generation of the one expiry timer.
    pub(crate) expiry: ExpiryGeneration,
    /// The armed expiry timer's task (aborted when replaced or on stop).
    expiry_timer: Option<TimerTask>,
    /// When the last request arrived.
    pub(crate) last_activity: Instant,
    /// Expiries further away than this get no timer: the actor will have stopped for idleness
    /// long before (the store's sweeper expires bindings of AORs without an actor), and an
    /// active actor re-evaluates after every request and idle check. Spares a timer task per
    /// actor when bindings last an hour and actors ten seconds.
    horizon: Duration,
}

/// [`AorCore`] shared by the actor and its directory entry.
pub(crate) type SharedCore = Arc<Mutex<AorCore>>;

/// Locks the core, ignoring poisoning: a panic inside a job leaves at worst a stale cache, and
/// the actor that panicked is replaced (with a fresh core) anyway.
pub(crate) fn lock(core: &Mutex<AorCore>) -> MutexGuard<'_, AorCore> {
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AorCore {
    /// A fresh state; `keep_bindings`: cache the bindings themselves (to serve lookups);
    /// `horizon`: arm the expiry timer only for expiries closer than this.
    pub(crate) fn new(keep_bindings: bool, horizon: Duration) -> SharedCore {
        Arc::new(Mutex::new(Self {
            cache: BindingCache::unknown(keep_bindings),
            expiry: ExpiryGeneration::default(),
            expiry_timer: None,
            last_activity: Instant::now(),
            horizon,
        }))
    }

    /// Takes the store's answer to a REGISTER: the cache follows the store, and forgets
    /// everything when the outcome is unknown (`None`: the deadline passed).
    pub(crate) fn registered(
        &mut self,
        result: Option<Result<RegisterOutcome, StoreError>>,
    ) -> Result<RegisterOutcome, StoreFailure> {
        match result {
            Some(Ok(outcome)) => {
                self.cache.set(&outcome.bindings);
                Ok(outcome)
            }
            // Nothing was stored: the cache is still right.
            Some(Err(StoreError::Register(e))) => Err(StoreFailure::Rejected(e)),
            Some(Err(e @ StoreError::Unavailable(_))) => {
                warn!(error = %e, "REGISTER: location store unavailable");
                self.cache.invalidate();
                Err(StoreFailure::Unavailable)
            }
            None => {
                warn!("REGISTER: deadline passed before the store answered");
                self.cache.invalidate();
                Err(StoreFailure::Unavailable)
            }
        }
    }

    /// Takes the store's answer to a lookup (`None`: the deadline passed).
    pub(crate) fn looked_up(
        &mut self,
        result: Option<Result<(Vec<Binding>, bool), StoreError>>,
    ) -> Result<Vec<Binding>, StoreFailure> {
        match result {
            Some(Ok((bindings, closed))) => {
                self.cache.set(&bindings);
                if closed {
                    Err(StoreFailure::FlowsClosed)
                } else {
                    Ok(bindings)
                }
            }
            Some(Err(e)) => {
                warn!(error = %e, "lookup: location store unavailable");
                Err(StoreFailure::Unavailable)
            }
            None => {
                warn!("lookup: deadline passed before the store answered");
                Err(StoreFailure::Unavailable)
            }
        }
    }

    /// Re-arms the expiry timer when the earliest expiry moved earlier (or none is armed) and
    /// is within the horizon. A later earliest expiry keeps the armed timer: it fires early,
    /// prunes nothing and re-arms, which is cheaper than a new timer on every refresh.
    pub(crate) fn rearm_expiry(&mut self, actor: &ActorRef<AorMsg>, now: SystemTime) {
        let next = self.cache.next_expiry();
        let Some(at) = next.filter(|_| self.expiry.needs_rearm(next)) else {
            return;
        };
        let delay = at.duration_since(now).unwrap_or(Duration::ZERO);
        if delay > self.horizon {
            return;
        }
        if let Some(t) = self.expiry_timer.take() {
            t.abort();
        }
        let generation = self.expiry.arm(at);
        self.expiry_timer = Some(actor.send_after(delay, move || AorMsg::Expire { generation }));
    }

    /// Aborts the expiry timer.
    pub(crate) fn stop_timer(&mut self) {
        if let Some(t) = self.expiry_timer.take() {
            t.abort();
        }
    }

    /// Applies a REGISTER through a store whose calls complete at once.
    pub(crate) fn register_now<S: LocationStore>(
        &mut self,
        store: &S,
        request: RegisterRequest,
        policy: &RegistrarPolicy,
        now: SystemTime,
        actor: &ActorRef<AorMsg>,
    ) -> Result<RegisterOutcome, StoreFailure> {
        self.last_activity = Instant::now();
        let result = self.registered(store.register(request, policy, now).now_or_never());
        self.rearm_expiry(actor, now);
        result
    }

    /// Looks up through a store whose calls complete at once (or the cache).
    pub(crate) fn lookup_now<S: LocationStore>(
        &mut self,
        store: &S,
        aor: &Aor,
        now: SystemTime,
        cache_lookups: bool,
    ) -> Result<Vec<Binding>, StoreFailure> {
        self.last_activity = Instant::now();
        if cache_lookups && let Some(bindings) = self.cache.serve(now) {
            return Ok(bindings);
        }
        let read = read_bindings(store, aor, now).now_or_never();
        self.looked_up(read)
    }

    /// Re-evaluates the expiry timer after a lookup (an expiry may have come within the
    /// horizon) and returns `result`.
    pub(crate) fn after_lookup<T>(
        &mut self,
        actor: &ActorRef<AorMsg>,
        now: SystemTime,
        result: T,
    ) -> T {
        self.rearm_expiry(actor, now);
        result
    }
}

/// Runs a request for an AOR without an actor through a store whose calls complete at once:
/// the store alone, no cache, no timer (the store's sweeper expires its bindings).
pub(crate) fn run_stateless<S: LocationStore>(store: &S, work: Work, now: SystemTime) {
    match work {
        Work::Register {
            request,
            policy,
            reply,
        } => reply.send(
            store
                .register(request, &policy, now)
                .now_or_never()
                .map_or(Err(StoreFailure::Unavailable), register_result),
        ),
        Work::Lookup { aor, reply } => reply.send(
            read_bindings(store, &aor, now)
                .now_or_never()
                .map_or(Err(StoreFailure::Unavailable), lookup_result),
        ),
        // The hook always goes to an actor; dropping the sender tells its caller.
        Work::Panic { reply } => drop(reply),
    }
}

/// A store's REGISTER answer as the core takes it (an outage logged).
fn register_result(
    result: Result<RegisterOutcome, StoreError>,
) -> Result<RegisterOutcome, StoreFailure> {
    match result {
        Ok(outcome) => Ok(outcome),
        Err(StoreError::Register(e)) => Err(StoreFailure::Rejected(e)),
        Err(e @ StoreError::Unavailable(_)) => {
            warn!(error = %e, "REGISTER: location store unavailable");
            Err(StoreFailure::Unavailable)
        }
    }
}

/// A store's lookup answer as the core takes it: no binding because flows closed is 480.
fn lookup_result(
    result: Result<(Vec<Binding>, bool), StoreError>,
) -> Result<Vec<Binding>, StoreFailure> {
    match result {
        Ok((_, true)) => Err(StoreFailure::FlowsClosed),
        Ok((bindings, false)) => Ok(bindings),
        Err(e) => {
            warn!(error = %e, "lookup: location store unavailable");
            Err(StoreFailure::Unavailable)
        }
    }
}

/// [`run_stateless`] for a store whose calls take time (Redis): awaited on the caller's own
/// task, bounded by the store's timeout.
pub(crate) async fn run_stateless_async<S: LocationStore>(
    store: Arc<S>,
    work: Work,
    now: SystemTime,
) {
    match work {
        Work::Register {
            request,
            policy,
            reply,
        } => reply.send(register_result(store.register(request, &policy, now).await)),
        Work::Lookup { aor, reply } => {
            reply.send(lookup_result(read_bindings(&*store, &aor, now).await));
        }
        Work::Panic { reply } => drop(reply),
    }
}

/// The live bindings of `aor` and, when there are none, whether its flows closed.
pub(crate) async fn read_bindings<S: LocationStore>(
    store: &S,
    aor: &Aor,
    now: SystemTime,
) -> Result<(Vec<Binding>, bool), StoreError> {
    let bindings = store.lookup(aor, now).await?;
    let closed = bindings.is_empty() && store.flows_closed(aor, now).await.unwrap_or(false);
    Ok((bindings, closed))
}
