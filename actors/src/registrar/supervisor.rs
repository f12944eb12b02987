//! The supervisor of the AOR actors.
//!
//! ```text
//!            RegistrarSupervisor
//!        ┌────────┼─────────┐            linked children, spawned on demand by the handle
//!    AorActor  AorActor  AorActor ...    (one per active AOR)
//! ```
//!
//! It is off the hot path: requests go from the [`Registrar`](super::Registrar) handle straight
//! to the AOR actors through the directory. It acts only on supervision events: a failed
//! (panicked) AOR actor is replaced by a fresh one that reloads the AOR from the store, its
//! siblings untouched; a stopped (idle) one is forgotten. It overrides
//! [`Actor::handle_supervisor_evt`] because ractor's default would stop the supervisor, and with
//! it every AOR actor, when one child fails.

use std::marker::PhantomData;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::{debug, warn};

use super::directory::Directory;
use crate::location::LocationStore;

/// Messages of the [`RegistrarSupervisor`].
#[derive(Debug)]
pub(crate) enum SupervisorMsg {
    /// Stop every AOR actor and the supervisor.
    Shutdown,
}

/// Supervises the AOR actors of one store type.
#[derive(Debug)]
pub(crate) struct RegistrarSupervisor<S>(PhantomData<fn() -> S>);

impl<S> RegistrarSupervisor<S> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

impl<S: LocationStore> Actor for RegistrarSupervisor<S> {
    type Msg = SupervisorMsg;
    type State = Arc<Directory<S>>;
    type Arguments = Arc<Directory<S>>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        directory: Arc<Directory<S>>,
    ) -> Result<Arc<Directory<S>>, ActorProcessingErr> {
        directory.set_supervisor(myself.get_cell());
        Ok(directory)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        directory: &mut Arc<Directory<S>>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Shutdown => {
                directory.clear();
                myself.stop_children(None);
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        directory: &mut Arc<Directory<S>>,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(aor) = directory.respawn(cell.get_id()) {
                    warn!(%aor, %error, "AOR actor failed; restarted from the store");
                } else {
                    warn!(actor = %cell.get_id(), %error, "unknown child actor failed");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let aor = directory.terminated(cell.get_id());
                debug!(?aor, ?reason, "AOR actor stopped");
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }
}
