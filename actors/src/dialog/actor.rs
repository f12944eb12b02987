//! One actor per dialog: a thin shell around [`DialogState`]. It folds the proxy's
//! [`DialogEvent`]s into the record, writes the record to the store when it is confirmed or
//! refreshed, deletes it when the dialog ends, and owns one timer (the dialog timeout),
//! re-armed on every event and tagged with a generation so a stale firing is ignored.
//!
//! In a cluster the record is shared, and in-dialog requests may pass through any node. Only
//! the owner's actor keeps the dialog timer; another node applies an in-dialog event with a
//! **visitor** ([`Start::Visitor`]): it loads the record, applies and stores the event, and
//! stops after [`VISIT_IDLE`] without news, never ending the dialog by timeout. When the
//! owner's timer fires it asks the store how much time the record has left
//! ([`DialogStore::time_left`](super::store::DialogStore::time_left)): a refresh written by a
//! visitor since re-arms the timer for the rest, and a record removed elsewhere (a BYE through
//! another node) stops the actor without a BYE of its own.
//!
//! Per-dialog ownership (issue 5): every write names its [`WriteRole`]. An owner write that the
//! store refuses because another live node holds the record's claim
//! ([`DialogStoreError::StaleOwner`]) makes this actor a visitor: an event's write is redone as
//! a visitor's (the request was real; the claim stays with the other node) and the actor stops
//! after [`VISIT_IDLE`]; at the dialog timeout it stops at once, without BYE. A dialog confirmed
//! at a node that is not its placement owner is handed over ([`DialogMsg::HandOver`]) once the
//! 2xx is out: the owner adopts it and this actor becomes a visitor.
//!
//! Record revisions (issue 5, stale copies): the actor keeps the [`Revision`] of its copy and
//! presents it with every write; a write refused because another node rewrote the record
//! since ([`DialogStoreError::Outdated`]) is redone on the reloaded record with the event
//! applied again, at most [`OUTDATED_RETRIES`] times, so a visitor's change is never undone.
//! A write or adoption that finds the record gone ([`DialogStoreError::Ended`]: a BYE through
//! another node removed it after this actor read it) stops the actor, without BYE or write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, debug, info, warn};

use sipmesh_protocol::dialog::{
    DialogConfig, DialogEvent, DialogId, DialogPhase, DialogState, EndReason, MediaNegotiation,
};

use super::handle::{OwnerOf, TimeoutHook};
use super::retry::RemovalRetry;
use super::store::{
    DialogStore, DialogStoreError, Revision, TimeLeft, WriteRole, load_revised_either,
    time_left_either,
};

/// How long a visitor lives without an event.
pub const VISIT_IDLE: Duration = Duration::from_secs(2);

/// How long after the 2xx's write a dialog confirmed at a non-owner is handed over: the
/// writes that follow the confirmation at once (the media state, issue 6) land first, so the
/// owner reads a complete record.
pub const HANDOVER_DELAY: Duration = Duration::from_millis(50);

/// How long after a delivered hand-over the owner must hold the record's claim.
pub const HANDOVER_CHECK: Duration = Duration::from_millis(250);

/// How many times a write refused as [`DialogStoreError::Outdated`] is redone on a reloaded
/// record before the event's write is given up (logged; the record keeps the other write).
pub const OUTDATED_RETRIES: usize = 3;

/// A record refreshed elsewhere by less than this when the owner's timer fires still ends
/// (the timer's own jitter is well below it).
const REFRESH_SLACK: Duration = Duration::from_millis(200);

/// Called once the event it came with was applied: `true` when the record is in the store
/// (or needed no write), `false` when the write failed. The shard releases the held 2xx.
pub struct StoredAck(pub Box<dyn FnOnce(bool) + Send>);

impl std::fmt::Debug for StoredAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredAck")
    }
}

/// Messages of a [`DialogActor`].
#[derive(Debug)]
pub enum DialogMsg {
    /// An event from a proxy shard, with the acknowledgement it waits for, if any.
    Event(DialogEvent, Option<StoredAck>),
    /// The timer of generation `0` fired.
    Timeout(u64),
    /// Read the record from the store now (after a restart) and arm the timer.
    Load,
    /// Take the dialog over from another node (failover or rebalancing): adopt this record,
    /// write it under this node's fence (moving it to this node's owner index) and arm the
    /// timer for the time it had left.
    Adopt(Box<DialogState>, Duration),
    /// Stop without touching the store: another node owns the dialog now.
    Release,
    /// Issue 6: the media session of the dialog (`udp:IP:PORT` of its rtpengine instance,
    /// so that any node can reach the call's instance) and/or the call's last accepted ng
    /// offer and answer (so that an adopter can fail the call over), stored in one write.
    SetMediaState(Option<String>, Option<MediaNegotiation>),
    /// Hand the dialog to its placement owner (the lease key of that node): a notice asks it
    /// to adopt the record; when the notice reached it this actor becomes a visitor.
    HandOver(String),
    /// A while after a delivered hand-over: once the owner holds the record's claim, this
    /// actor becomes a visitor (else it keeps the dialog: the owner could not take it).
    HandOverCheck,
    /// Test hook: panic now (the supervisor restarts the actor from the store).
    Panic,
}

// A local-only message: ractor's `cluster` feature (on for the whole workspace, because
// `sipmesh-cluster` uses ractor_cluster) turns off the blanket `Message` impl.
impl ractor::Message for DialogMsg {}

/// How the actor came to be, which decides whether it reads the store first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Created by the dialog's first Early or Confirmed event: nothing to load.
    Fresh,
    /// Created for an event of a dialog with no live actor (a node restart), or restarted
    /// after a panic: the record comes from the store.
    FromStore,
    /// Created for an in-dialog event of a dialog another cluster node owns: the record comes
    /// from the store, and the actor keeps no dialog timer (see the module doc).
    Visitor,
}

/// Start-up arguments.
pub struct DialogArgs {
    /// The dialog as the spawning event named it (possibly reversed).
    pub id: DialogId,
    /// Whether to load the record first.
    pub start: Start,
    /// The store.
    pub store: Arc<dyn DialogStore>,
    /// Timeouts.
    pub config: DialogConfig,
    /// Where a refused removal goes for a retry.
    pub retry: RemovalRetry,
    /// Called when the timer ends a confirmed dialog.
    pub hook: Arc<std::sync::OnceLock<TimeoutHook>>,
    /// Set while the actor is a visitor (shared with the map; cleared on adoption).
    pub visitor: Arc<AtomicBool>,
    /// The placement owner of a dialog another node owns (unset: not clustered).
    pub owner_of: Arc<std::sync::OnceLock<OwnerOf>>,
    /// Called once the dialog was handed over to its owner.
    pub handed_over: Arc<std::sync::OnceLock<TimeoutHook>>,
}

/// The actor's state: the record plus handles.
pub struct DialogActorState {
    id: DialogId,
    dialog: Option<DialogState>,
    /// The stored revision `dialog` corresponds to (None: unknown, or the store keeps none);
    /// presented with every write so a record rewritten elsewhere is not overwritten.
    rev: Option<Revision>,
    /// The store was read (or need not be).
    loaded: bool,
    store: Arc<dyn DialogStore>,
    config: DialogConfig,
    retry: RemovalRetry,
    hook: Arc<std::sync::OnceLock<TimeoutHook>>,
    visitor: Arc<AtomicBool>,
    owner_of: Arc<std::sync::OnceLock<OwnerOf>>,
    handed_over: Arc<std::sync::OnceLock<TimeoutHook>>,
    /// Generation of the armed timer; a firing with another number is stale.
    generation: u64,
    timer: Option<JoinHandle<()>>,
    span: tracing::Span,
}

/// The dialog actor (stateless handler; the state is [`DialogActorState`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DialogActor;

impl Actor for DialogActor {
    type Msg = DialogMsg;
    type State = DialogActorState;
    type Arguments = DialogArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: DialogArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let span = tracing::info_span!(
            "dialog",
            call_id = %args.id.call_id,
            dialog_id = %args.id,
        );
        Ok(DialogActorState {
            id: args.id,
            dialog: None,
            rev: None,
            loaded: args.start == Start::Fresh,
            store: args.store,
            config: args.config,
            retry: args.retry,
            hook: args.hook,
            visitor: args.visitor,
            owner_of: args.owner_of,
            handed_over: args.handed_over,
            generation: 0,
            timer: None,
            span,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = state.timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: DialogMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        async {
            match msg {
                DialogMsg::SetMediaState(session, negotiation) => {
                    ensure_loaded(state).await;
                    for attempt in 0..=OUTDATED_RETRIES {
                        let Some(d) = &mut state.dialog else {
                            break;
                        };
                        let mut changed = false;
                        if let Some(m) = &session
                            && d.media_session.as_deref() != Some(m.as_str())
                        {
                            d.media_session = Some(m.clone());
                            changed = true;
                        }
                        if let Some(n) = &negotiation
                            && d.media_negotiation.as_ref() != Some(n)
                        {
                            d.media_negotiation = Some(n.clone());
                            changed = true;
                        }
                        if !changed || d.phase != DialogPhase::Confirmed {
                            break;
                        }
                        let d = d.clone();
                        match save_record(state, &d).await {
                            Err(DialogStoreError::Outdated) if attempt < OUTDATED_RETRIES => {
                                debug!("record rewritten elsewhere: media state re-applied");
                                if reload(state).await != Reloaded::Found {
                                    break;
                                }
                            }
                            Err(DialogStoreError::Ended) => {
                                info!("the dialog record is gone (ended elsewhere): stopped");
                                myself.stop(Some("ended elsewhere".to_owned()));
                                break;
                            }
                            Err(e) => {
                                warn!(error = %e, "storing the media state failed");
                                break;
                            }
                            Ok(()) => break,
                        }
                    }
                }
                DialogMsg::HandOver(owner) => hand_over(&myself, state, &owner).await,
                DialogMsg::HandOverCheck => hand_over_check(&myself, state).await,
                DialogMsg::Panic => {
                    warn!("test hook: dialog actor panics");
                    panic!("test hook: injected dialog actor panic");
                }
                DialogMsg::Load => {
                    ensure_loaded(state).await;
                    arm_timer(&myself, state);
                }
                DialogMsg::Adopt(dialog, remaining) => {
                    if state.visitor.swap(false, Ordering::Relaxed) {
                        debug!("visitor promoted: this node owns the dialog now");
                    }
                    state.loaded = true;
                    match state.store.save_as(&dialog, WriteRole::Take).await {
                        Err(DialogStoreError::Ended) => {
                            // Removed (a BYE elsewhere) after the rebalance or notice read it.
                            info!("the adopted dialog had ended: stopped");
                            myself.stop(Some("ended elsewhere".to_owned()));
                            return;
                        }
                        Err(e) => warn!(error = %e, "writing the adopted dialog record failed"),
                        Ok(()) => {}
                    }
                    state.dialog = Some(*dialog);
                    // The claim left the stored fields alone: read them (and their revision)
                    // back, they may be newer than the copy the adoption came with.
                    reload(state).await;
                    arm_timer_after(&myself, state, remaining);
                }
                DialogMsg::Release => {
                    debug!("dialog handed to its new owner");
                    myself.stop(Some("released".to_owned()));
                }
                DialogMsg::Timeout(generation) if generation != state.generation => {}
                DialogMsg::Timeout(_) if state.visitor.load(Ordering::Relaxed) => {
                    debug!("visit over");
                    myself.stop(Some("visit over".to_owned()));
                }
                DialogMsg::Timeout(_) => {
                    match at_timeout(state).await {
                        AtTimeout::RefreshedElsewhere(left) => {
                            debug!(?left, "refreshed through another node: timer re-armed");
                            arm_timer_after(&myself, state, left);
                            return;
                        }
                        AtTimeout::EndedElsewhere => {
                            info!("dialog ended through another node");
                            myself.stop(Some("ended elsewhere".to_owned()));
                            return;
                        }
                        AtTimeout::TimedOut => {}
                    }
                    info!("dialog timed out");
                    let confirmed = state
                        .dialog
                        .as_ref()
                        .filter(|d| d.phase == DialogPhase::Confirmed)
                        .cloned();
                    if let Some(d) = confirmed {
                        // The record goes first, as its owner: a stale owner (another node
                        // holds the claim) ends nothing and sends no BYE.
                        if remove(state, &d.id, WriteRole::Owner).await == Removal::StaleOwner {
                            info!("another node owns the dialog now: stopped without BYE");
                            myself.stop(Some("stale owner".to_owned()));
                            return;
                        }
                        if let Some(hook) = state.hook.get() {
                            hook(&d);
                        }
                    } else if let Some(id) = state.dialog.as_ref().map(|d| d.id.clone()) {
                        let ev = DialogEvent::Terminated {
                            id,
                            reason: EndReason::Timeout,
                        };
                        let _ = on_event(state, ev).await;
                    }
                    myself.stop(Some("timeout".to_owned()));
                }
                DialogMsg::Event(ev, ack) => {
                    let confirms = matches!(ev, DialogEvent::Confirmed(_));
                    let (next, stored) = on_event(state, ev).await;
                    if let Some(StoredAck(ack)) = ack {
                        ack(stored);
                    }
                    if confirms && stored && next == Next::Continue {
                        schedule_hand_over(&myself, state);
                    }
                    if next == Next::Stop {
                        myself.stop(Some("terminated".to_owned()));
                    } else {
                        arm_timer(&myself, state);
                    }
                }
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

/// Whether the actor lives on.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

/// Loads the record once if the actor started from the store.
async fn ensure_loaded(state: &mut DialogActorState) {
    if state.loaded {
        return;
    }
    state.loaded = true;
    match load_revised_either(state.store.as_ref(), &state.id).await {
        Ok(Some((d, rev))) => {
            debug!(
                phase = d.phase.as_str(),
                "dialog record loaded from the store"
            );
            state.dialog = Some(d);
            state.rev = rev;
        }
        Ok(None) => debug!("no stored record for the dialog"),
        Err(e) => warn!(error = %e, "loading the dialog record failed"),
    }
}

/// What [`reload`] found.
#[derive(Debug, PartialEq, Eq)]
enum Reloaded {
    /// The record (and its revision) replaced the actor's copy.
    Found,
    /// No record: the dialog ended elsewhere (or expired).
    Gone,
    /// The read failed (logged): the copy is kept.
    Failed,
}

/// Reads the record of the actor's dialog again, with its revision (after a write refused as
/// [`DialogStoreError::Outdated`], or an adoption).
async fn reload(state: &mut DialogActorState) -> Reloaded {
    let id = state
        .dialog
        .as_ref()
        .map_or_else(|| state.id.clone(), |d| d.id.clone());
    match load_revised_either(state.store.as_ref(), &id).await {
        Ok(Some((d, rev))) => {
            state.dialog = Some(d);
            state.rev = rev;
            Reloaded::Found
        }
        Ok(None) => Reloaded::Gone,
        Err(e) => {
            warn!(error = %e, "reloading the dialog record failed");
            Reloaded::Failed
        }
    }
}

/// Folds one event in and mirrors the result to the store; also says whether the store
/// holds what it should (false only when a write failed). A write refused because another
/// node rewrote the record since this actor read it ([`DialogStoreError::Outdated`]) is redone
/// on the reloaded record, at most [`OUTDATED_RETRIES`] times.
async fn on_event(state: &mut DialogActorState, ev: DialogEvent) -> (Next, bool) {
    ensure_loaded(state).await;
    let mut attempt = 0;
    loop {
        match apply_event(state, &ev).await {
            Applied::Done(next, stored) => return (next, stored),
            Applied::Outdated if attempt < OUTDATED_RETRIES => {
                attempt += 1;
                debug!(
                    attempt,
                    "record rewritten elsewhere: reloaded, event re-applied"
                );
                match reload(state).await {
                    Reloaded::Found => {}
                    Reloaded::Gone => {
                        info!("the dialog record is gone (ended elsewhere)");
                        return (Next::Stop, true);
                    }
                    Reloaded::Failed => return (Next::Continue, false),
                }
            }
            Applied::Outdated => {
                warn!("the dialog record keeps changing elsewhere: this event's write given up");
                return (Next::Continue, false);
            }
        }
    }
}

/// What [`apply_event`] did.
enum Applied {
    /// Applied (and stored, when the flag says so).
    Done(Next, bool),
    /// The write was refused as [`DialogStoreError::Outdated`]: nothing stored.
    Outdated,
}

/// One attempt of [`on_event`].
async fn apply_event(state: &mut DialogActorState, ev: &DialogEvent) -> Applied {
    let ev = ev.clone();
    let wall = SystemTime::now();
    let (save, end) = match &mut state.dialog {
        None => match DialogState::from_event(&ev, wall, &state.config) {
            Some(d) => {
                let save = d.phase == DialogPhase::Confirmed;
                state.dialog = Some(d);
                (save, false)
            }
            None => {
                // An end or refresh for a dialog nobody knows: make sure nothing is left.
                if matches!(ev, DialogEvent::Terminated { .. }) {
                    remove(state, &ev.id().clone(), WriteRole::Visitor).await;
                }
                return Applied::Done(Next::Stop, true);
            }
        },
        Some(d) => {
            let applied = d.apply(&ev, wall, &state.config);
            (
                applied.changed && !applied.ended && d.phase == DialogPhase::Confirmed,
                applied.ended,
            )
        }
    };
    if end {
        if let Some(id) = state.dialog.as_ref().map(|d| d.id.clone()) {
            let reason = match &ev {
                DialogEvent::Terminated { reason, .. } => Some(*reason),
                _ => None,
            };
            info!(?reason, "dialog ended");
            // Ending by timeout is the owner's act; a BYE may be applied by anyone.
            let role = match reason {
                Some(EndReason::Timeout) if !state.visitor.load(Ordering::Relaxed) => {
                    WriteRole::Owner
                }
                _ => WriteRole::Visitor,
            };
            remove(state, &id, role).await;
        }
        return Applied::Done(Next::Stop, true);
    }
    if save && let Some(d) = state.dialog.clone() {
        match save_record(state, &d).await {
            Ok(()) => debug!(phase = d.phase.as_str(), "dialog record stored"),
            Err(DialogStoreError::Outdated) => return Applied::Outdated,
            Err(DialogStoreError::Ended) => {
                info!("the dialog record is gone (ended elsewhere): not re-created");
                return Applied::Done(Next::Stop, true);
            }
            Err(e) => {
                warn!(error = %e, "storing the dialog record failed");
                return Applied::Done(Next::Continue, false);
            }
        }
    }
    Applied::Done(Next::Continue, true)
}

/// What [`remove`] did.
#[derive(Debug, PartialEq, Eq)]
enum Removal {
    /// Removed, or there was nothing to remove, or queued for a retry.
    Done,
    /// Refused: another live node holds the record's owner claim (owner removals only).
    StaleOwner,
}

async fn remove(state: &DialogActorState, id: &DialogId, role: WriteRole) -> Removal {
    for key in [id.clone(), id.reversed()] {
        match state.store.remove_as(&key, role).await {
            Ok(true) => {
                debug!("dialog record removed");
                return Removal::Done;
            }
            Ok(false) => {}
            Err(DialogStoreError::StaleOwner) => return Removal::StaleOwner,
            Err(e) => {
                warn!(error = %e, "removing the dialog record failed: queued for a retry");
                state.retry.push(id.clone());
                return Removal::Done;
            }
        }
    }
    Removal::Done
}

/// The role of this actor's writes.
fn role(state: &DialogActorState) -> WriteRole {
    if state.visitor.load(Ordering::Relaxed) {
        WriteRole::Visitor
    } else {
        WriteRole::Owner
    }
}

/// Writes the record in this actor's role, presenting the revision this actor last saw (and
/// keeping the one written); an owner write refused as stale is redone as a visitor's and the
/// actor becomes a visitor (another node runs the dialog now).
async fn save_record(
    state: &mut DialogActorState,
    d: &DialogState,
) -> Result<(), DialogStoreError> {
    let written = match state.store.save_checked(d, role(state), state.rev).await {
        Err(DialogStoreError::StaleOwner) => {
            info!("another node owns the dialog now: this node only visits it");
            state.visitor.store(true, Ordering::Relaxed);
            state
                .store
                .save_checked(d, WriteRole::Visitor, state.rev)
                .await
        }
        other => other,
    }?;
    if written.is_some() {
        state.rev = written;
    }
    Ok(())
}

/// After a confirmation at a node that is not the dialog's placement owner: hand it over
/// [`HANDOVER_DELAY`] later.
fn schedule_hand_over(myself: &ActorRef<DialogMsg>, state: &DialogActorState) {
    if state.visitor.load(Ordering::Relaxed) {
        return;
    }
    let Some(owner) = state
        .owner_of
        .get()
        .and_then(|f| state.dialog.as_ref().and_then(|d| f(&d.id)))
    else {
        return;
    };
    let me = myself.clone();
    ractor::concurrency::spawn(async move {
        ractor::concurrency::sleep(HANDOVER_DELAY).await;
        let _ = me.cast(DialogMsg::HandOver(owner));
    });
}

/// Tells the owner (lease key `owner`) to adopt the dialog; once the owner holds the record's
/// claim ([`hand_over_check`]), this actor is a visitor (no dialog timer). Nobody listening (no subscription: Cluster URLs, a Sentinel failover under way; the
/// owner just died): the dialog stays here until a rebalance moves it.
async fn hand_over(myself: &ActorRef<DialogMsg>, state: &mut DialogActorState, owner: &str) {
    if state.visitor.load(Ordering::Relaxed) {
        return;
    }
    let Some(id) = state
        .dialog
        .as_ref()
        .filter(|d| d.phase == DialogPhase::Confirmed)
        .map(|d| d.id.clone())
    else {
        return;
    };
    match state.store.hand_over(&id, owner).await {
        Ok(true) => {
            debug!(%owner, "dialog handed over to its owner");
            let me = myself.clone();
            ractor::concurrency::spawn(async move {
                ractor::concurrency::sleep(HANDOVER_CHECK).await;
                let _ = me.cast(DialogMsg::HandOverCheck);
            });
        }
        Ok(false) => debug!(%owner, "nobody took the hand-over: the dialog stays here"),
        Err(e) => warn!(error = %e, "handing the dialog over failed: it stays here"),
    }
}

/// Re-arms the single timer for the record's timeout (or the early timeout while the actor
/// has no record yet); a visitor's timer is its idle limit.
fn arm_timer(myself: &ActorRef<DialogMsg>, state: &mut DialogActorState) {
    let after = if state.visitor.load(Ordering::Relaxed) {
        VISIT_IDLE
    } else {
        state
            .dialog
            .as_ref()
            .map_or(state.config.early_timeout, |d| d.timeout)
    };
    arm_timer_after(myself, state, after);
}

/// What the shared store says when the owner's timer fires.
#[derive(Debug, PartialEq, Eq)]
enum AtTimeout {
    /// Another node refreshed the record since: this much of its timeout is left.
    RefreshedElsewhere(Duration),
    /// The confirmed record is gone: the dialog ended through another node.
    EndedElsewhere,
    /// Nobody refreshed it (or the store cannot tell): the dialog times out now.
    TimedOut,
}

/// Asks the store about a confirmed dialog at its timeout (the record is reloaded when it was
/// refreshed elsewhere).
async fn at_timeout(state: &mut DialogActorState) -> AtTimeout {
    let Some(id) = state
        .dialog
        .as_ref()
        .filter(|d| d.phase == DialogPhase::Confirmed)
        .map(|d| d.id.clone())
    else {
        return AtTimeout::TimedOut;
    };
    match time_left_either(state.store.as_ref(), &id).await {
        Ok(TimeLeft::Left(left)) if left > REFRESH_SLACK => {
            reload(state).await;
            AtTimeout::RefreshedElsewhere(left)
        }
        Ok(TimeLeft::Gone) => AtTimeout::EndedElsewhere,
        Ok(_) => AtTimeout::TimedOut,
        Err(e) => {
            warn!(error = %e, "reading the dialog record's time left failed: ending it");
            AtTimeout::TimedOut
        }
    }
}

/// Re-arms the single timer to fire `after` from now.
fn arm_timer_after(myself: &ActorRef<DialogMsg>, state: &mut DialogActorState, after: Duration) {
    state.generation += 1;
    if let Some(t) = state.timer.take() {
        t.abort();
    }
    let generation = state.generation;
    let me = myself.clone();
    state.timer = Some(ractor::concurrency::spawn(async move {
        ractor::concurrency::sleep(after).await;
        let _ = me.cast(DialogMsg::Timeout(generation));
    }));
}

/// After a delivered hand-over: when another node holds the record's claim now, this actor
/// becomes a visitor (the media session tasks of the call stop here too); otherwise (the owner
/// was still settling, or died) it keeps running the dialog.
async fn hand_over_check(myself: &ActorRef<DialogMsg>, state: &mut DialogActorState) {
    if state.visitor.load(Ordering::Relaxed) {
        return;
    }
    let Some(id) = state.dialog.as_ref().map(|d| d.id.clone()) else {
        return;
    };
    match state.store.claimed_elsewhere(&id).await {
        Ok(true) => {
            debug!("the owner took the dialog: this node only visits it now");
            state.visitor.store(true, Ordering::Relaxed);
            if let (Some(hook), Some(d)) = (state.handed_over.get(), &state.dialog) {
                hook(d);
            }
            arm_timer(myself, state);
        }
        Ok(false) => info!("the owner did not take the handed-over dialog: it stays here"),
        Err(e) => warn!(error = %e, "checking a hand-over failed: the dialog stays here"),
    }
}
