//! [`Dialogs`]: what the shards hold to reach dialog actors. Events go straight to a live
//! actor through a sharded map (no supervisor hop, no shared lock held across an await);
//! only an event for a dialog without a live actor goes to the supervisor.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorRef, MessagingErr, SpawnErr};
use tracing::warn;

use sipmesh_protocol::dialog::{DialogConfig, DialogEvent, DialogId, DialogState};

use super::actor::{DialogMsg, StoredAck};
use super::retry::RemovalRetry;
use super::store::DialogStore;
use super::supervisor::{DialogSupervisor, SupervisorArgs, SupervisorMsg};

/// Longest wait of [`Dialogs::inject_panic`] for the restart.
pub const HOOK_WAIT: Duration = Duration::from_secs(2);

/// Number of map shards (a power of two).
const SHARDS: usize = 64;

/// A live dialog actor and whether it is a visitor (see [`Start::Visitor`]: no dialog timer;
/// the actor clears the flag when it is promoted to owner).
///
/// [`Start::Visitor`]: super::actor::Start::Visitor
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) actor: ActorRef<DialogMsg>,
    pub(crate) visitor: Arc<AtomicBool>,
}

impl Slot {
    fn is_visitor(&self) -> bool {
        self.visitor.load(Ordering::Relaxed)
    }
}

/// One shard of the map.
type Shard = HashMap<DialogId, Slot>;

/// Live dialog actors by dialog id, sharded by Call-ID so both orientations of an id land in
/// the same shard.
pub struct ActorMap {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for ActorMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorMap")
            .field("len", &self.len())
            .finish()
    }
}

impl ActorMap {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, id: &DialogId) -> MutexGuard<'_, Shard> {
        let index = usize::try_from(self.hasher.hash_one(&id.call_id)).unwrap_or_default() % SHARDS;
        // Each critical section is one map operation: a poisoned lock is still consistent.
        self.shards
            .get(index)
            .unwrap_or_else(|| unreachable!("index is below SHARDS"))
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The live actor of `id`, in either orientation.
    pub(crate) fn get(&self, id: &DialogId) -> Option<ActorRef<DialogMsg>> {
        self.slot(id).map(|s| s.actor)
    }

    /// The live actor of `id` with its role, in either orientation.
    pub(crate) fn slot(&self, id: &DialogId) -> Option<Slot> {
        let shard = self.shard(id);
        shard.get(id).or_else(|| shard.get(&id.reversed())).cloned()
    }

    pub(crate) fn insert(&self, id: DialogId, slot: Slot) {
        let mut shard = self.shard(&id);
        shard.remove(&id.reversed());
        shard.insert(id, slot);
    }

    /// Removes the entry of `id` if it is the actor `actor`; true when it was.
    pub(crate) fn remove_if(&self, id: &DialogId, actor: ActorId) -> bool {
        let mut shard = self.shard(id);
        if shard.get(id).is_some_and(|s| s.actor.get_id() == actor) {
            shard.remove(id);
            true
        } else {
            false
        }
    }

    /// The ids of the live dialog actors.
    pub fn ids(&self) -> Vec<DialogId> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Number of live dialog actors.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Number of live dialog actors that run the dialog's timer (visitors left out).
    pub fn owners(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .filter(|slot| !slot.is_visitor())
                    .count()
            })
            .sum()
    }

    /// True when no dialog actor is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Called by a dialog actor when its timer ends a confirmed dialog, before the record goes
/// (the engine sends a BYE to both ends).
pub type TimeoutHook = Arc<dyn Fn(&DialogState) + Send + Sync>;

/// Whether this node owns a dialog (a clustered node: it is the rendezvous owner of the
/// dialog's placement key). An in-dialog event for a dialog this node does not own and runs
/// no actor for is applied by a visitor actor, which keeps no dialog timer (the owner's timer,
/// reading the shared store, sees the refresh).
pub type OwnerCheck = Arc<dyn Fn(&DialogId) -> bool + Send + Sync>;

/// The placement owner of a dialog when it is another node: that node's lease key (a
/// clustered node, issue 5). A dialog confirmed here whose owner is another node is handed
/// over to it ([`DialogStore::hand_over`]) once the 2xx has gone out.
pub type OwnerOf = Arc<dyn Fn(&DialogId) -> Option<String> + Send + Sync>;

/// A cloneable handle to the dialog actors of one node.
#[derive(Clone)]
pub struct Dialogs {
    map: Arc<ActorMap>,
    supervisor: ActorRef<SupervisorMsg>,
    store_kind: &'static str,
    retry: RemovalRetry,
    retry_task: tokio::task::AbortHandle,
    hook: Arc<std::sync::OnceLock<TimeoutHook>>,
    owner: Arc<std::sync::OnceLock<OwnerCheck>>,
    owner_of: Arc<std::sync::OnceLock<OwnerOf>>,
    handed_over: Arc<std::sync::OnceLock<TimeoutHook>>,
}

impl std::fmt::Debug for Dialogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialogs")
            .field("live", &self.map.len())
            .field("store", &self.store_kind)
            .finish()
    }
}

/// Why a dialog hook could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogHookError {
    /// No live actor for that dialog.
    #[error("no live actor for dialog {0}")]
    NotFound(DialogId),
}

impl Dialogs {
    /// Starts the supervisor over `store`.
    pub async fn start(
        store: Arc<dyn DialogStore>,
        config: DialogConfig,
    ) -> Result<Self, SpawnErr> {
        let map = Arc::new(ActorMap::new());
        let store_kind = store.kind();
        let retry = RemovalRetry::default();
        let retry_task = retry.spawn(Arc::clone(&store)).abort_handle();
        let hook = Arc::new(std::sync::OnceLock::new());
        let owner = Arc::new(std::sync::OnceLock::new());
        let owner_of = Arc::new(std::sync::OnceLock::new());
        let handed_over = Arc::new(std::sync::OnceLock::new());
        let args = SupervisorArgs {
            handed_over: Arc::clone(&handed_over),
            hook: Arc::clone(&hook),
            owner: Arc::clone(&owner),
            owner_of: Arc::clone(&owner_of),
            map: Arc::clone(&map),
            store,
            config,
            retry: retry.clone(),
        };
        let (supervisor, _join) = Actor::spawn(None, DialogSupervisor, args).await?;
        Ok(Self {
            map,
            supervisor,
            store_kind,
            retry,
            retry_task,
            hook,
            owner,
            owner_of,
            handed_over,
        })
    }

    /// Hands one event to its dialog's actor, creating the actor when there is none. Never
    /// blocks: a cast into an unbounded mailbox.
    pub fn handle(&self, ev: DialogEvent) {
        self.deliver(ev, None);
    }

    /// Like [`handle`](Self::handle), and calls `ack` once the event was applied and the
    /// record written (`true`) or the write failed (`false`). `ack` is dropped uncalled only
    /// when the supervisor is gone; the caller bounds its wait anyway.
    pub fn handle_acked(&self, ev: DialogEvent, ack: impl FnOnce(bool) + Send + 'static) {
        self.deliver(ev, Some(StoredAck(Box::new(ack))));
    }

    fn deliver(&self, ev: DialogEvent, ack: Option<StoredAck>) {
        let (ev, ack) = match self.map.get(ev.id()) {
            Some(actor) => match actor.cast(DialogMsg::Event(ev, ack)) {
                Ok(()) => return,
                // The actor stopped (or failed) since the map was read: the supervisor
                // starts a new one from the store.
                Err(MessagingErr::SendErr(DialogMsg::Event(ev, ack))) => (ev, ack),
                Err(_) => return,
            },
            None => (ev, ack),
        };
        if self.supervisor.cast(SupervisorMsg::Spawn(ev, ack)).is_err() {
            warn!("dialog supervisor is gone: dialog event dropped");
        }
    }

    /// Test hook: makes the live actor of `id` panic, and returns once the supervisor has
    /// replaced it (or after [`HOOK_WAIT`], when the restart is still pending), so that the
    /// caller's next event reaches the restarted actor.
    pub async fn inject_panic(&self, id: &DialogId) -> Result<(), DialogHookError> {
        let actor = self
            .map
            .get(id)
            .ok_or_else(|| DialogHookError::NotFound(id.clone()))?;
        let before = actor.get_id();
        actor
            .cast(DialogMsg::Panic)
            .map_err(|_| DialogHookError::NotFound(id.clone()))?;
        let deadline = tokio::time::Instant::now() + HOOK_WAIT;
        while tokio::time::Instant::now() < deadline {
            if self.map.get(id).is_some_and(|a| a.get_id() != before) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        warn!(dialog_id = %id, "dialog actor not restarted within the hook's wait");
        Ok(())
    }

    /// Takes over a stored dialog (failover or rebalancing, see
    /// [`takeover`](super::takeover), or a hand-over notice): an actor (the live one, or a new
    /// one started with `dialog`) takes the record's owner claim under this node's fence and
    /// ends the dialog `remaining` from now. Idempotent; never blocks.
    pub fn adopt(&self, dialog: DialogState, remaining: Duration) {
        if let Some(slot) = self.map.slot(&dialog.id) {
            // A visitor becomes the owner (it arms the timer); an owner takes the record's
            // claim again and re-arms (a hand-over may reach an owner actor that an in-dialog
            // request started here meanwhile, while the claim is still the sender's).
            let _ = slot
                .actor
                .cast(DialogMsg::Adopt(Box::new(dialog), remaining));
            return;
        }
        if self
            .supervisor
            .cast(SupervisorMsg::Adopt(Box::new(dialog), remaining))
            .is_err()
        {
            warn!("dialog supervisor is gone: adoption dropped");
        }
    }

    /// Stops the live actor of `id` without touching its record (its new owner runs it);
    /// true when there was one.
    pub fn release(&self, id: &DialogId) -> bool {
        self.map
            .get(id)
            .is_some_and(|a| a.cast(DialogMsg::Release).is_ok())
    }

    /// The ids of the live dialog actors.
    pub fn live_ids(&self) -> Vec<DialogId> {
        self.map.ids()
    }

    /// Records the media session of a live dialog (issue 6); ignored when no actor serves it.
    pub fn set_media_session(&self, id: &DialogId, media: String) {
        self.set_media(id, Some(media), None);
    }

    /// Records the last accepted ng offer and answer of a live dialog's call (issue 6);
    /// ignored when no actor serves it.
    pub fn set_media_negotiation(
        &self,
        id: &DialogId,
        negotiation: sipmesh_protocol::dialog::MediaNegotiation,
    ) {
        self.set_media(id, None, Some(negotiation));
    }

    /// Records the media session and/or the last accepted offer and answer of a live dialog
    /// in one store write (issue 6); ignored when no actor serves it.
    pub fn set_media(
        &self,
        id: &DialogId,
        session: Option<String>,
        negotiation: Option<sipmesh_protocol::dialog::MediaNegotiation>,
    ) {
        if let Some(actor) = self.map.get(id) {
            let _ = actor.cast(DialogMsg::SetMediaState(session, negotiation));
        }
    }

    /// Whether a live actor serves `id` (either orientation).
    pub fn is_live(&self, id: &DialogId) -> bool {
        self.map.get(id).is_some()
    }

    /// Whether a live actor runs the timer of `id` (an owner, not a visitor).
    pub fn runs_timer(&self, id: &DialogId) -> bool {
        self.map.slot(id).is_some_and(|s| !s.is_visitor())
    }

    /// Number of live dialog actors that run their dialog's timer (visitors, which apply one
    /// in-dialog event for a dialog another node owns and stop, are not counted).
    pub fn live(&self) -> usize {
        self.map.owners()
    }

    /// Number of live dialog actors, visitors included.
    pub fn live_with_visitors(&self) -> usize {
        self.map.len()
    }

    /// Sets the ownership check of a clustered node (a second call is ignored); without one
    /// every dialog counts as owned.
    pub fn set_owner_check(&self, owner: OwnerCheck) {
        let _ = self.owner.set(owner);
    }

    /// Sets the placement-owner lookup of a clustered node (a second call is ignored); without
    /// one a dialog stays on the node that confirmed it until a rebalance.
    pub fn set_owner_of(&self, owner_of: OwnerOf) {
        let _ = self.owner_of.set(owner_of);
    }

    /// Sets the hook called when this node handed a dialog over to its owner (the media
    /// session tasks of the call stop here: the owner watches it now); a second call is
    /// ignored.
    pub fn set_hand_over_hook(&self, hook: TimeoutHook) {
        let _ = self.handed_over.set(hook);
    }

    /// Stops the live owner actor of `id` because the dialog ended through another node (its
    /// record is gone; issue 5 "ended" notice): no BYE, no write. True when one was running.
    pub fn ended_elsewhere(&self, id: &DialogId) -> bool {
        self.map
            .slot(id)
            .filter(|s| !s.is_visitor())
            .is_some_and(|s| s.actor.cast(DialogMsg::Release).is_ok())
    }

    /// `memory` or `redis`.
    pub fn store_kind(&self) -> &'static str {
        self.store_kind
    }

    /// Sets the hook called when a dialog times out (a second call is ignored).
    pub fn set_timeout_hook(&self, hook: TimeoutHook) {
        let _ = self.hook.set(hook);
    }

    /// Removals refused by the store (fenced, unreachable) waiting for their retry.
    pub fn pending_removals(&self) -> usize {
        self.retry.len()
    }

    /// Stops the supervisor and, with it, every dialog actor (records stay in the store).
    pub fn stop(&self) {
        self.retry_task.abort();
        self.supervisor.stop(None);
    }
}
