//! The connection supervisor: the parent of every
//! [`ConnectionActor`](super::actor::ConnectionActor).
//!
//! A failed connection actor cannot be restarted (its socket is gone), so the supervisor's
//! reaction to a failure is to close that one connection as if it had ended: unregister it and
//! deliver `ConnectionClosed`, so its flow bindings are removed at once (RFC 5626 §5.4) and
//! transactions over it fail, and log the panic at `warn`. Its siblings are not touched
//! (ractor's default would stop the supervisor, and with it every connection).
//!
//! It is on no per-message path and spawns nothing itself: connection actors are spawned
//! linked to it by whoever registered the connection. It stops once the transport is shut
//! down and no connection is left.

use std::sync::Weak;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::debug;

use super::tcp::TcpShared;

/// Messages of the [`ConnectionSupervisor`].
#[derive(Debug)]
pub(crate) enum SupervisorMsg {
    /// The transport is shutting down: stop once the last connection is gone.
    Shutdown,
}

// ractor's `cluster` feature (for ractor_cluster) drops the blanket impl: local-only messages
// opt in explicitly.
impl ractor::Message for SupervisorMsg {}

/// Supervisor state: the registry it cleans up after failed children (weak: the supervisor
/// must not keep a dropped transport alive).
pub(crate) struct SupervisorState {
    shared: Weak<TcpShared>,
    stopping: bool,
}

/// The connection supervisor.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConnectionSupervisor;

impl ConnectionSupervisor {
    /// Stops the supervisor when the transport is gone, or shutting down with no connection.
    fn stop_if_done(myself: &ActorRef<SupervisorMsg>, state: &SupervisorState) {
        let done = match state.shared.upgrade() {
            None => true,
            Some(shared) => state.stopping && shared.connection_count() == 0,
        };
        if done {
            debug!("connection supervisor stops");
            myself.stop(None);
        }
    }
}

impl Actor for ConnectionSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Weak<TcpShared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        shared: Weak<TcpShared>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            shared,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Shutdown => {
                state.stopping = true;
                Self::stop_if_done(&myself, state);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(shared) = state.shared.upgrade() {
                    shared.actor_failed(cell.get_id(), &error.to_string());
                }
                Self::stop_if_done(&myself, state);
            }
            SupervisionEvent::ActorTerminated(..) => Self::stop_if_done(&myself, state),
            _ => {}
        }
        Ok(())
    }
}
