//! One request for an AOR actor, and how its answer gets back.
//!
//! A [`Job`] is never lost without an answer: if it is dropped unanswered (its actor panicked
//! with the job queued, or stopped under it), its `Drop` hands it back to the [`Redeliver`]
//! once, which routes it to a fresh actor; a job dropped a second time is answered
//! [`StoreFailure::Unavailable`] (503 + Retry-After) by its [`Reply`], never left hanging.

use std::sync::Weak;

use ractor::ActorId;
use tokio::time::Instant;

use sipmesh_protocol::proxy::StoreFailure;
use sipmesh_protocol::registrar::{
    Aor, Binding, RegisterOutcome, RegisterRequest, RegistrarPolicy,
};

/// Where the answer to a job goes: a callback run exactly once, on the actor's task. The shard
/// passes one that posts to its completion channel, so a slow store never stalls it. A reply
/// dropped unanswered (its actor panicked while working on it) answers
/// [`StoreFailure::Unavailable`]: the request may or may not have reached the store, so it is
/// not retried, and the client gets 503 + Retry-After rather than silence.
pub(crate) struct Reply<T>(Option<ReplyFn<T>>);

/// The callback inside a [`Reply`].
type ReplyFn<T> = Box<dyn FnOnce(Result<T, StoreFailure>) + Send>;

impl<T> Reply<T> {
    /// A reply that runs `f`.
    pub(crate) fn new(f: impl FnOnce(Result<T, StoreFailure>) + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    /// Answers.
    pub(crate) fn send(mut self, value: Result<T, StoreFailure>) {
        if let Some(f) = self.0.take() {
            f(value);
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(StoreFailure::Unavailable));
        }
    }
}

/// What a job asks for.
// A job is one message, moved, never stored in bulk: boxing the request would only add an
// allocation per REGISTER.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    /// Apply a REGISTER (RFC 3261 §10.3) through the store.
    Register {
        request: RegisterRequest,
        policy: RegistrarPolicy,
        reply: Reply<RegisterOutcome>,
    },
    /// The live bindings of the AOR (RFC 3261 §16.5).
    Lookup {
        aor: Aor,
        reply: Reply<Vec<Binding>>,
    },
    /// Test hook: acknowledge, then panic.
    Panic {
        reply: tokio::sync::oneshot::Sender<()>,
    },
}

/// Takes back a job that was dropped unanswered.
pub(crate) trait Redeliver: Send + Sync + 'static {
    /// Routes `job` again, to a fresh actor if the one it was sent to is gone.
    fn redeliver(&self, aor: Aor, job: Job);
}

/// A request on its way to (or inside) an AOR actor.
pub(crate) struct Job {
    /// The request; `None` once taken for processing (or answered).
    work: Option<Work>,
    /// The AOR it is for.
    aor: Aor,
    /// Answer `Unavailable` instead of calling the store after this.
    pub(crate) deadline: Instant,
    /// The actor it was last sent to (a redelivered job must not go back there).
    pub(crate) sent_to: Option<ActorId>,
    /// Whether it was already redelivered once.
    redelivered: bool,
    /// Who takes it back if it is dropped unanswered.
    redeliver: Weak<dyn Redeliver>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("aor", &self.aor)
            .field("deadline", &self.deadline)
            .field("sent_to", &self.sent_to)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

impl Job {
    pub(crate) fn new(
        aor: Aor,
        work: Work,
        deadline: Instant,
        redeliver: Weak<dyn Redeliver>,
    ) -> Self {
        Self {
            work: Some(work),
            aor,
            deadline,
            sent_to: None,
            redelivered: false,
            redeliver,
        }
    }

    /// The AOR it is for.
    pub(crate) fn aor(&self) -> &Aor {
        &self.aor
    }

    /// The request, if not taken yet.
    pub(crate) fn peek(&self) -> Option<&Work> {
        self.work.as_ref()
    }

    /// Takes the request out for processing: from now on the processor answers it.
    pub(crate) fn take(&mut self) -> Option<Work> {
        self.work.take()
    }

    /// Answers `Unavailable` now (dropping the work drops its reply, which answers so).
    pub(crate) fn fail(mut self) {
        self.work = None;
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else { return };
        let redeliver = self.redeliver.upgrade();
        let runtime = tokio::runtime::Handle::try_current();
        match (redeliver, runtime, self.redelivered) {
            (Some(redeliver), Ok(runtime), false) => {
                let job = Self {
                    work: Some(work),
                    aor: self.aor.clone(),
                    deadline: self.deadline,
                    sent_to: self.sent_to.take(),
                    redelivered: true,
                    redeliver: self.redeliver.clone(),
                };
                // On a task of its own: the drop may run inside a dying actor or under a
                // directory lock, and redelivery takes that lock.
                runtime.spawn(async move {
                    let aor = job.aor.clone();
                    redeliver.redeliver(aor, job);
                });
            }
            _ => drop(work),
        }
    }
}
