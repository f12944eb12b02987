//! [`Registrar`]: the cloneable handle the transaction shards use instead of the store.

use std::sync::Arc;

use ractor::{Actor as _, ActorRef, SpawnErr};
use tokio::sync::oneshot;
use tokio::time::Instant;

use sipmesh_protocol::peer::ConnectionId;
use sipmesh_protocol::proxy::StoreFailure;
use sipmesh_protocol::registrar::{
    Aor, Binding, RegisterOutcome, RegisterRequest, RegistrarPolicy,
};

use super::config::RegistrarConfig;
use super::directory::Directory;
use super::driver::Driver;
use super::flow_retry::FlowRemovalRetry;
use super::job::{Job, Reply, Work};
use super::supervisor::{RegistrarSupervisor, SupervisorMsg};
use crate::engine::HookError;
use crate::location::{LocationStore, StoreError};

/// The registrar: one actor per active AOR under a `RegistrarSupervisor`, reached through
/// this handle.
///
/// Every call has a deadline ([`RegistrarConfig::call_timeout`], from the moment it is queued)
/// and fails as [`StoreFailure::Unavailable`] (503 + Retry-After) past it, as it does when the
/// AOR's queue is full ([`RegistrarConfig::max_queued`]).
pub struct Registrar<S: LocationStore> {
    pub(super) directory: Arc<Directory<S>>,
    supervisor: ActorRef<SupervisorMsg>,
    /// Flow removals the store refused (fenced, down), retried in the background.
    flow_retry: FlowRemovalRetry,
}

impl<S: LocationStore> Clone for Registrar<S> {
    fn clone(&self) -> Self {
        Self {
            directory: Arc::clone(&self.directory),
            supervisor: self.supervisor.clone(),
            flow_retry: self.flow_retry.clone(),
        }
    }
}

impl<S: LocationStore> std::fmt::Debug for Registrar<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

impl<S: LocationStore> Registrar<S> {
    /// Starts the supervisor over `store`.
    pub async fn start(store: Arc<S>, config: RegistrarConfig) -> Result<Self, SpawnErr> {
        let directory = Directory::new(store, config);
        let (supervisor, _join) = RegistrarSupervisor::<S>::spawn(
            None,
            RegistrarSupervisor::<S>::new(),
            Arc::clone(&directory),
        )
        .await?;
        let flow_retry = FlowRemovalRetry::default();
        // Ends by itself once every handle (and so the queue) is dropped.
        flow_retry.spawn(Arc::clone(&directory.store), directory.config.call_timeout);
        Ok(Self {
            directory,
            supervisor,
            flow_retry,
        })
    }

    /// Runs the AOR actors and plain store calls on `runtime` even when requests come from
    /// tasks on another runtime (a node's signalling thread, issue 6), so that the store's
    /// connections and their I/O stay on `runtime`. Without it they run where the request
    /// comes from.
    pub fn keep_on(&self, runtime: tokio::runtime::Handle) {
        self.directory.set_home(runtime);
    }

    /// The store behind the actors.
    pub fn store(&self) -> &Arc<S> {
        &self.directory.store
    }

    /// The settings.
    pub fn config(&self) -> &RegistrarConfig {
        &self.directory.config
    }

    fn job(&self, aor: Aor, work: Work) -> Job {
        let deadline = Instant::now() + self.directory.config.call_timeout;
        Job::new(aor, work, deadline, self.directory.redeliverer())
    }

    /// Applies a REGISTER through the AOR's actor; `reply` gets the result on the actor's task,
    /// exactly once. This is what the shards call: it never waits.
    pub fn register_with(
        &self,
        request: RegisterRequest,
        policy: RegistrarPolicy,
        reply: impl FnOnce(Result<RegisterOutcome, StoreFailure>) + Send + 'static,
    ) {
        let aor = request.aor.clone();
        let work = Work::Register {
            request,
            policy,
            reply: Reply::new(reply),
        };
        self.directory.dispatch(self.job(aor, work), None);
    }

    /// [`Self::register_with`], but a request that would only wait for a networked store on
    /// another task becomes a call in `driver`, which the caller drives (see [`Driver`]).
    pub fn register_driven(
        &self,
        request: RegisterRequest,
        policy: RegistrarPolicy,
        driver: &mut Driver,
        reply: impl FnOnce(Result<RegisterOutcome, StoreFailure>) + Send + 'static,
    ) {
        let aor = request.aor.clone();
        let work = Work::Register {
            request,
            policy,
            reply: Reply::new(reply),
        };
        self.directory.dispatch(self.job(aor, work), Some(driver));
    }

    /// [`Self::lookup_with`], driven like [`Self::register_driven`].
    pub fn lookup_driven(
        &self,
        aor: Aor,
        driver: &mut Driver,
        reply: impl FnOnce(Result<Vec<Binding>, StoreFailure>) + Send + 'static,
    ) {
        let work = Work::Lookup {
            aor: aor.clone(),
            reply: Reply::new(reply),
        };
        self.directory.dispatch(self.job(aor, work), Some(driver));
    }

    /// Looks up the live bindings of `aor` through its actor; `reply` gets the result on the
    /// actor's task, exactly once. [`StoreFailure::FlowsClosed`] when the AOR has no binding
    /// only because its flows closed (480 rather than 404).
    pub fn lookup_with(
        &self,
        aor: Aor,
        reply: impl FnOnce(Result<Vec<Binding>, StoreFailure>) + Send + 'static,
    ) {
        let work = Work::Lookup {
            aor: aor.clone(),
            reply: Reply::new(reply),
        };
        self.directory.dispatch(self.job(aor, work), None);
    }

    /// Applies a REGISTER and waits for the result (answered only once the store has it).
    pub async fn register(
        &self,
        request: RegisterRequest,
        policy: RegistrarPolicy,
    ) -> Result<RegisterOutcome, StoreFailure> {
        let (tx, rx) = oneshot::channel();
        self.register_with(request, policy, move |r| {
            let _ = tx.send(r);
        });
        self.wait(rx).await
    }

    /// The live bindings of `aor`.
    pub async fn lookup(&self, aor: &Aor) -> Result<Vec<Binding>, StoreFailure> {
        let (tx, rx) = oneshot::channel();
        self.lookup_with(aor.clone(), move |r| {
            let _ = tx.send(r);
        });
        self.wait(rx).await
    }

    /// Waits for a reply; the actor answers within the call deadline, and this bounds the wait
    /// again (with the same margin once more) in case it never does.
    async fn wait<T>(
        &self,
        rx: oneshot::Receiver<Result<T, StoreFailure>>,
    ) -> Result<T, StoreFailure> {
        let bound = self.directory.config.call_timeout + RegistrarConfig::QUEUE_MARGIN;
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(StoreFailure::Unavailable),
        }
    }

    /// A stream connection closed: removes the flow bindings registered over it from the store
    /// (RFC 5626 §5.4) and returns how many. AOR actors never serve flow bindings from their
    /// cache, so they need no notice. A removal the store refuses (this node is fenced, or the
    /// store is down) is queued and retried until it is taken ([`FlowRemovalRetry`]); the error
    /// is still returned.
    pub async fn connection_closed(&self, connection: ConnectionId) -> Result<usize, StoreError> {
        let call = self.directory.store.remove_connection(connection);
        let result = match tokio::time::timeout(self.directory.config.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(
                crate::location::UnavailableReason::Timeout,
            )),
        };
        if let Err(StoreError::Unavailable(_)) = &result {
            self.flow_retry.push(connection);
        }
        result
    }

    /// Flow removals waiting for the store to take them again.
    pub fn pending_flow_removals(&self) -> usize {
        self.flow_retry.len()
    }

    /// Test hook: makes the actor of `aor` panic (creating it from the store first if the AOR
    /// has bindings but no live actor). Returns once the actor took the order; its supervisor
    /// then restarts it from the store. [`HookError::NotFound`] when the AOR has neither.
    pub async fn inject_panic(&self, aor: &Aor) -> Result<(), HookError> {
        if !self.has_actor(aor) && self.lookup(aor).await.is_ok_and(|b| b.is_empty()) {
            return Err(HookError::NotFound(aor.to_string()));
        }
        let (tx, rx) = oneshot::channel();
        self.directory
            .dispatch(self.job(aor.clone(), Work::Panic { reply: tx }), None);
        match tokio::time::timeout(self.directory.config.call_timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(HookError::NotFound(aor.to_string())),
        }
    }

    /// Number of live AOR actors.
    pub fn live_actors(&self) -> usize {
        self.directory.live()
    }

    /// Whether `aor` has a live actor.
    pub fn has_actor(&self, aor: &Aor) -> bool {
        self.directory.live_actor(aor).is_some()
    }

    /// Stops every AOR actor and the supervisor.
    pub fn shutdown(&self) {
        let _ = self.supervisor.send_message(SupervisorMsg::Shutdown);
    }
}
