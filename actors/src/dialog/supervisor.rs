//! The dialog supervisor: spawns a [`DialogActor`] for a dialog that has none, and restarts
//! one that panicked from the store, leaving its siblings alone (ractor's default would stop
//! the supervisor, and with it every call, on the first failure).
//!
//! It is not on the per-message path: shards cast events straight to a live dialog actor
//! through the [`Dialogs`](super::Dialogs) map; only the first event of a dialog (or one for a
//! dialog without a live actor) comes here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::{debug, warn};

use std::time::Duration;

use sipmesh_protocol::dialog::{DialogConfig, DialogEvent, DialogId, DialogState};

use super::actor::{DialogActor, DialogArgs, DialogMsg, Start, StoredAck};
use super::handle::{ActorMap, OwnerCheck, OwnerOf, Slot, TimeoutHook};
use super::retry::RemovalRetry;
use super::store::DialogStore;

/// Messages of the [`DialogSupervisor`].
#[derive(Debug)]
pub enum SupervisorMsg {
    /// An event for a dialog with no live actor (as far as the sender saw), with its
    /// acknowledgement.
    Spawn(DialogEvent, Option<StoredAck>),
    /// Take over a stored dialog (failover, rebalancing) unless an actor already serves it:
    /// the record and its time left.
    Adopt(Box<DialogState>, Duration),
}

// A local-only message: ractor's `cluster` feature (on for the whole workspace, because
// `sipmesh-cluster` uses ractor_cluster) turns off the blanket `Message` impl.
impl ractor::Message for SupervisorMsg {}

/// Start-up arguments.
pub struct SupervisorArgs {
    /// The map shards use to reach live actors (the supervisor is its only writer of new
    /// entries).
    pub map: Arc<ActorMap>,
    /// The store the actors use.
    pub store: Arc<dyn DialogStore>,
    /// Timeouts.
    pub config: DialogConfig,
    /// The queue of refused removals.
    pub retry: RemovalRetry,
    /// Called at a dialog's timeout.
    pub hook: Arc<std::sync::OnceLock<TimeoutHook>>,
    /// Whether this node owns a dialog (unset: every dialog).
    pub owner: Arc<std::sync::OnceLock<OwnerCheck>>,
    /// The owner's lease key of a dialog another node owns (unset: no hand-over).
    pub owner_of: Arc<std::sync::OnceLock<OwnerOf>>,
    /// Called when a dialog was handed over to its owner.
    pub handed_over: Arc<std::sync::OnceLock<TimeoutHook>>,
}

/// Supervisor state.
pub struct SupervisorState {
    map: Arc<ActorMap>,
    store: Arc<dyn DialogStore>,
    config: DialogConfig,
    retry: RemovalRetry,
    hook: Arc<std::sync::OnceLock<TimeoutHook>>,
    owner: Arc<std::sync::OnceLock<OwnerCheck>>,
    owner_of: Arc<std::sync::OnceLock<OwnerOf>>,
    handed_over: Arc<std::sync::OnceLock<TimeoutHook>>,
    /// Which dialog each child serves and whether it is a visitor (supervision events only
    /// name the actor).
    children: HashMap<ActorId, (DialogId, Arc<AtomicBool>)>,
}

/// The dialog supervisor.
#[derive(Debug, Clone, Copy, Default)]
pub struct DialogSupervisor;

impl DialogSupervisor {
    async fn spawn_child(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        id: DialogId,
        start: Start,
    ) -> Option<ActorRef<DialogMsg>> {
        let visitor = Arc::new(AtomicBool::new(start == Start::Visitor));
        let args = DialogArgs {
            id: id.clone(),
            start,
            store: Arc::clone(&state.store),
            config: state.config,
            retry: state.retry.clone(),
            hook: Arc::clone(&state.hook),
            visitor: Arc::clone(&visitor),
            owner_of: Arc::clone(&state.owner_of),
            handed_over: Arc::clone(&state.handed_over),
        };
        match Actor::spawn_linked(None, DialogActor, args, myself.get_cell()).await {
            Ok((actor, _join)) => {
                state
                    .children
                    .insert(actor.get_id(), (id.clone(), Arc::clone(&visitor)));
                state.map.insert(
                    id,
                    Slot {
                        actor: actor.clone(),
                        visitor,
                    },
                );
                Some(actor)
            }
            Err(e) => {
                warn!(dialog_id = %id, error = %e, "cannot start a dialog actor");
                None
            }
        }
    }
}

impl Actor for DialogSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            map: args.map,
            store: args.store,
            config: args.config,
            retry: args.retry,
            hook: args.hook,
            owner: args.owner,
            owner_of: args.owner_of,
            handed_over: args.handed_over,
            children: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Adopt(dialog, remaining) => {
                // A live actor (an earlier adoption, or one an in-dialog request created)
                // takes the record over: a visitor is promoted, an owner re-takes the claim.
                match state.map.slot(&dialog.id) {
                    Some(slot) => {
                        let _ = slot.actor.cast(DialogMsg::Adopt(dialog, remaining));
                    }
                    None => {
                        let id = dialog.id.clone();
                        if let Some(actor) =
                            Self::spawn_child(&myself, state, id, Start::Fresh).await
                        {
                            let _ = actor.cast(DialogMsg::Adopt(dialog, remaining));
                        }
                    }
                }
            }
            SupervisorMsg::Spawn(ev, ack) => {
                // Another Spawn for the same dialog may have been queued before the first
                // created the actor: deliver to it.
                let (ev, ack) = match state.map.get(ev.id()) {
                    Some(actor) => match actor.cast(DialogMsg::Event(ev, ack)) {
                        Ok(()) => return Ok(()),
                        Err(e) => match e {
                            ractor::MessagingErr::SendErr(DialogMsg::Event(ev, ack)) => (ev, ack),
                            _ => return Ok(()),
                        },
                    },
                    None => (ev, ack),
                };
                let start = match &ev {
                    DialogEvent::Early(_) | DialogEvent::Confirmed(_) => Start::Fresh,
                    DialogEvent::Refreshed(_) | DialogEvent::Terminated { .. } => {
                        // In a cluster, a dialog owned by another node is only visited here:
                        // its timer stays with the owner.
                        match state.owner.get() {
                            Some(owns) if !owns(ev.id()) => Start::Visitor,
                            _ => Start::FromStore,
                        }
                    }
                };
                let id = ev.id().clone();
                if let Some(actor) = Self::spawn_child(&myself, state, id, start).await {
                    let _ = actor.cast(DialogMsg::Event(ev, ack));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some((id, visitor)) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                // Restart only if the map still names the failed actor (an event may already
                // have made a replacement).
                if !state.map.remove_if(&id, cell.get_id()) {
                    return Ok(());
                }
                warn!(dialog_id = %id, %error, "dialog actor failed: restarting it from the store");
                let start = if visitor.load(std::sync::atomic::Ordering::Relaxed) {
                    Start::Visitor
                } else {
                    Start::FromStore
                };
                if let Some(actor) = Self::spawn_child(&myself, state, id, start).await {
                    let _ = actor.cast(DialogMsg::Load);
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some((id, _)) = state.children.remove(&cell.get_id()) {
                    debug!(dialog_id = %id, ?reason, "dialog actor stopped");
                    state.map.remove_if(&id, cell.get_id());
                }
            }
            _ => {}
        }
        Ok(())
    }
}
