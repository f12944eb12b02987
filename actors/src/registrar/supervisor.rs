//! The supervisor of the AOR actors.
//!
//! ```text
//!            RegistrarSupervisor
//!        ┌────────┼─────────┐            linked children, spawned on demand by the handle
//!    AorActor  AorActor  AorActor ...    (one per active AOR)
//! ```
//!
//! It is off the hot path: requests go from the [`Registrar`](super::Registrar) handle straight
//! to the AOR actors through the directory. It owns one housekeeping task that asks idle AOR
//! actors to stop (instead of an idle timer per actor), and acts on supervision events: a failed
//! (panicked) AOR actor is replaced by a fresh one that reloads the AOR from the store, its
//! siblings untouched; a stopped (idle) one is forgotten. It overrides
//! [`Actor::handle_supervisor_evt`] because ractor's default would stop the supervisor, and with
//! it every AOR actor, when one child fails.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::directory::Directory;
use crate::location::LocationStore;

/// Messages of the [`RegistrarSupervisor`].
#[derive(Debug)]
pub(crate) enum SupervisorMsg {
    /// Stop every AOR actor and the supervisor.
    Shutdown,
}

// ractor's `cluster` feature (for ractor_cluster) drops the blanket impl: local-only messages
// opt in explicitly.
impl ractor::Message for SupervisorMsg {}

/// Supervises the AOR actors of one store type.
#[derive(Debug)]
pub(crate) struct RegistrarSupervisor<S>(PhantomData<fn() -> S>);

impl<S> RegistrarSupervisor<S> {
    pub(crate) fn new() -> Self {
        Self(PhantomData)
    }
}

/// The supervisor's state.
pub(crate) struct SupervisorState<S: LocationStore> {
    /// The live AOR actors.
    directory: Arc<Directory<S>>,
    /// Housekeeping: asks idle AOR actors to stop, every half idle period.
    housekeeping: JoinHandle<()>,
}

impl<S: LocationStore> Actor for RegistrarSupervisor<S> {
    type Msg = SupervisorMsg;
    type State = SupervisorState<S>;
    type Arguments = Arc<Directory<S>>;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        directory: Arc<Directory<S>>,
    ) -> Result<SupervisorState<S>, ActorProcessingErr> {
        directory.set_supervisor(myself.get_cell());
        let period = (directory.config.idle_after / 2).max(Duration::from_millis(10));
        let weak = Arc::downgrade(&directory);
        let housekeeping = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(directory) = weak.upgrade() else {
                    return;
                };
                directory.nudge_idle();
            }
        });
        Ok(SupervisorState {
            directory,
            housekeeping,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState<S>,
    ) -> Result<(), ActorProcessingErr> {
        state.housekeeping.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState<S>,
    ) -> Result<(), ActorProcessingErr> {
        let directory = &state.directory;
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
        state: &mut SupervisorState<S>,
    ) -> Result<(), ActorProcessingErr> {
        let directory = &state.directory;
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
            // Start notices, process-group and (with ractor's `cluster` feature) PID lifecycle
            // events concern no AOR.
            _ => {}
        }
        Ok(())
    }
}
