//! [`Driver`]: registrar calls that the calling task (a transaction shard) drives itself,
//! instead of handing them to another task and being woken by its answer.
//!
//! Over a networked store (Redis) a REGISTER used to hop shard → AOR actor → store → AOR actor
//! → shard: two cross-thread wake-ups and a ractor message on top of the store's own round
//! trip. When the AOR's actor is idle (nothing queued for it, not inside a job), the directory
//! instead hands the caller a future that runs exactly what the actor would run, under the
//! actor's gate (so the AOR's requests stay serialised and in order: anything that arrives
//! meanwhile queues at the actor, which waits for the gate), and the caller polls it alongside
//! its other work. The actor stays the owner of the AOR: its cache, its expiry timer, its idle
//! stop and its restart by the supervisor are unchanged. Requests that are plain store calls
//! (an AOR without an actor at the actor cap, uncached lookups) are driven the same way
//! instead of being spawned as tasks of their own.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use ractor::ActorRef;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tracing::warn;

use sipmesh_protocol::registrar::Aor;

use super::aor_actor::AorMsg;
use super::aor_core::{SharedCore, lock, read_bindings};
use super::config::RegistrarConfig;
use super::job::Work;
use crate::location::LocationStore;

/// A driven call.
type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Registrar calls driven by the task that owns this (see the module doc). The owner must keep
/// awaiting [`Driver::advance`] (in its `select!`) while [`Driver::is_empty`] is false; every
/// call answers through its reply callback, as with an actor.
#[derive(Default)]
pub struct Driver {
    calls: FuturesUnordered<Call>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("calls", &self.calls.len())
            .finish()
    }
}

impl Driver {
    /// No call in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no call is in progress.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Number of calls in progress.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Makes progress on the calls; returns once at least one of them finished (its reply
    /// already called), after finishing up to [`Self::MAX_FINISHED`] that are ready. Pending
    /// while there is none. Cancel-safe: dropping it loses nothing.
    pub async fn advance(&mut self) {
        std::future::poll_fn(|cx| {
            let mut finished = 0;
            while finished < Self::MAX_FINISHED {
                match self.calls.poll_next_unpin(cx) {
                    Poll::Ready(Some(())) => finished += 1,
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if finished > 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Most calls one [`Self::advance`] finishes.
    pub const MAX_FINISHED: usize = 64;

    /// Adds a call.
    pub(crate) fn push(&mut self, call: impl Future<Output = ()> + Send + 'static) {
        self.calls.push(Box::pin(call));
    }
}

/// What a driven request of an idle AOR actor needs: the actor's state and gate, and where to
/// count the request done.
pub(crate) struct Borrowed<S: LocationStore> {
    /// The store.
    pub(crate) store: Arc<S>,
    /// The settings.
    pub(crate) config: RegistrarConfig,
    /// The actor's state.
    pub(crate) core: SharedCore,
    /// The actor (its expiry timer messages it; stopped if the request panics).
    pub(crate) actor: ActorRef<AorMsg>,
    /// The actor's gate and completed-jobs counter (the request was counted as sent).
    pub(crate) finish: Finish,
}

/// Runs `work` for `aor` as its idle actor would (see `AorState::job`), then counts it done
/// and opens the gate. A panic answers 503 (the reply's drop) and stops the actor, whose
/// replacement starts from the store; it never reaches the driving task.
pub(crate) async fn run_borrowed<S: LocationStore>(
    borrowed: Borrowed<S>,
    aor: Aor,
    work: Work,
    deadline: Instant,
) {
    let Borrowed {
        store,
        config,
        core,
        actor,
        finish,
    } = borrowed;
    let ran = AssertUnwindSafe(run_work(&*store, &config, &core, &actor, work, deadline))
        .catch_unwind()
        .await;
    drop(finish);
    if let Err(panic) = ran {
        warn!(%aor, ?panic, "AOR request panicked on the caller's task; restarting its actor");
        actor.stop(Some("panicked on the caller's task".to_owned()));
    }
}

/// Opens the gate and counts the job done: when the job finished, and also when the driving
/// task drops it unfinished, even unpolled (it is stopping; the reply's drop answered 503), so
/// the actor is neither blocked behind it nor kept from its idle stop.
pub(crate) struct Finish {
    gate: Option<OwnedMutexGuard<()>>,
    done: Arc<AtomicU64>,
}

impl Finish {
    /// Holds `gate` until dropped, then counts one job in `done`.
    pub(crate) fn new(gate: OwnedMutexGuard<()>, done: Arc<AtomicU64>) -> Self {
        Self {
            gate: Some(gate),
            done,
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        drop(self.gate.take());
        self.done.fetch_add(1, Ordering::Release);
    }
}

async fn run_work<S: LocationStore>(
    store: &S,
    config: &RegistrarConfig,
    core: &SharedCore,
    actor: &ActorRef<AorMsg>,
    work: Work,
    deadline: Instant,
) {
    let now = config.clock.now();
    match work {
        Work::Register {
            request,
            policy,
            reply,
        } => {
            lock(core).last_activity = Instant::now();
            let write = store.register(request, &policy, now);
            let result = tokio::time::timeout_at(deadline, write).await.ok();
            let mut core = lock(core);
            let result = core.registered(result);
            core.rearm_expiry(actor, now);
            drop(core);
            reply.send(result);
        }
        Work::Lookup { aor, reply } => {
            let read = read_bindings(store, &aor, now);
            let read = tokio::time::timeout_at(deadline, read).await.ok();
            let mut core = lock(core);
            let result = core.looked_up(read);
            core.rearm_expiry(actor, now);
            drop(core);
            reply.send(result);
        }
        // The directory never lends the hook out; dropping the sender tells its caller.
        Work::Panic { reply } => drop(reply),
    }
}
