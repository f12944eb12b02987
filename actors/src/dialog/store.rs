//! The dialog-store interface: where confirmed dialog records live so that a restarted actor,
//! a restarted node or (issue 5) another node can finish the call.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sipmesh_protocol::dialog::{DialogId, DialogState};

use crate::location::UnavailableReason;

/// Extra life of a stored record past its dialog timeout, so the actor's own timeout (which
/// deletes it) normally fires first; the store's expiry only catches what a crash left behind.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// A boxed store future (the trait is object safe: actors hold an `Arc<dyn DialogStore>`).
pub type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, DialogStoreError>> + Send + 'a>>;

/// Storage of dialog records by [`DialogId`] (oriented caller → callee).
///
/// Every call is bounded by the implementation (the Redis store's timeout); callers treat a
/// failure as "not stored" and log it: signalling never waits for the store.
pub trait DialogStore: Send + Sync + 'static {
    /// Writes (replaces) the record of `state.id`; it expires after `state.timeout` plus
    /// [`EXPIRY_MARGIN`] unless written again.
    fn save<'a>(&'a self, state: &'a DialogState) -> StoreFuture<'a, ()>;

    /// The record stored under `id` exactly (see [`load_either`] for the other orientation).
    fn load<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, Option<DialogState>>;

    /// Deletes the record of `id`; true when one existed.
    fn remove<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, bool>;

    /// How much of its dialog timeout the record stored under `id` exactly has left (its
    /// expiry minus [`EXPIRY_MARGIN`]): a record another node refreshed since this node last
    /// wrote it has time left when this node's timer fires. The default does not know
    /// ([`TimeLeft::Unknown`]: a store private to this node needs no such check).
    fn time_left<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, TimeLeft> {
        let _ = id;
        Box::pin(async { Ok(TimeLeft::Unknown) })
    }

    /// [`save`](Self::save) as `role` (issue 5, per-key ownership): a store that keeps an
    /// owner claim per record checks or keeps it by role; the default ignores the role.
    fn save_as<'a>(&'a self, state: &'a DialogState, role: WriteRole) -> StoreFuture<'a, ()> {
        let _ = role;
        self.save(state)
    }

    /// [`remove`](Self::remove) as `role` (see [`save_as`](Self::save_as)).
    fn remove_as<'a>(&'a self, id: &'a DialogId, role: WriteRole) -> StoreFuture<'a, bool> {
        let _ = role;
        self.remove(id)
    }

    /// Asks the node holding lease key `owner` to take the dialog `id` over (a dialog
    /// confirmed at a node that is not its placement owner, issue 5); true when the notice
    /// reached that node. The default cannot tell anyone (false: keep running it here).
    fn hand_over<'a>(&'a self, id: &'a DialogId, owner: &'a str) -> StoreFuture<'a, bool> {
        let _ = (id, owner);
        Box::pin(async { Ok(false) })
    }

    /// Whether another node holds the owner claim of the record stored under `id` exactly
    /// (after a hand-over: did the owner take it?). The default: no claims, false.
    fn claimed_elsewhere<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, bool> {
        let _ = id;
        Box::pin(async { Ok(false) })
    }

    /// [`save_as`](Self::save_as), checked against the record's [`Revision`] (issue 5: a
    /// writer's copy of a shared record may be stale). With `seen` the write is refused with
    /// [`DialogStoreError::Outdated`] (nothing written) when the stored record has another
    /// revision; with `None` it is not checked. A missing record is re-created only by an
    /// owner's write with `None` (the first save); an owner's write with `seen`, or a take,
    /// gets [`DialogStoreError::Ended`] (nothing written). Returns the revision written
    /// (`None`: the store keeps no revisions, or a visitor's write found no record). The
    /// default keeps none.
    fn save_checked<'a>(
        &'a self,
        state: &'a DialogState,
        role: WriteRole,
        seen: Option<Revision>,
    ) -> StoreFuture<'a, Option<Revision>> {
        let _ = seen;
        Box::pin(async move { self.save_as(state, role).await.map(|()| None) })
    }

    /// [`load`](Self::load) with the record's [`Revision`] (`None`: the store keeps none, or
    /// the record has none yet).
    fn load_revised<'a>(
        &'a self,
        id: &'a DialogId,
    ) -> StoreFuture<'a, Option<(DialogState, Option<Revision>)>> {
        Box::pin(async move { Ok(self.load(id).await?.map(|s| (s, None))) })
    }

    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
}

/// The revision of a stored dialog record: the Redis store's `rev` field, bumped by every
/// write of the record's fields (owner's or visitor's; a claim alone does not bump it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

/// [`DialogStore::load_revised`] for `id` in either orientation.
pub async fn load_revised_either(
    store: &dyn DialogStore,
    id: &DialogId,
) -> Result<Option<(DialogState, Option<Revision>)>, DialogStoreError> {
    if let Some(found) = store.load_revised(id).await? {
        return Ok(Some(found));
    }
    store.load_revised(&id.reversed()).await
}

/// Who writes a dialog record, for a store that keeps a per-record **owner claim** (the Redis
/// store on a single server or Sentinel: docs/REDIS.md, "Per-dialog owner claims").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRole {
    /// The node running the dialog's actor and timer: the write must present the record's
    /// claim (or create it, or replace a claim whose node lost that lease), else it is
    /// refused with [`DialogStoreError::StaleOwner`] and nothing is written. Only a write
    /// presenting no [`Revision`] (the dialog's first save) creates a missing record; one
    /// presenting a revision gets [`DialogStoreError::Ended`].
    Owner,
    /// An adoption (failover, rebalance, hand-over): the claim passes to this node whoever
    /// held it. Only the record's claim changes; its fields and expiry stay as stored. A
    /// record that is not there is not re-created ([`DialogStoreError::Ended`]: the dialog
    /// ended after the adopter read it).
    Take,
    /// A visitor (an in-dialog request at a node that does not run the dialog): the record is
    /// refreshed or removed and keeps the recorded claim; a refresh of a record that is gone
    /// writes nothing.
    Visitor,
}

impl WriteRole {
    /// The script argument of this role.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "own",
            Self::Take => "claim",
            Self::Visitor => "visit",
        }
    }
}

/// What [`DialogStore::time_left`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLeft {
    /// The store cannot tell.
    Unknown,
    /// No record (ended, or never stored).
    Gone,
    /// The record's dialog timeout is this far away (zero when it has passed).
    Left(Duration),
}

/// [`DialogStore::time_left`] for `id` in either orientation.
pub async fn time_left_either(
    store: &dyn DialogStore,
    id: &DialogId,
) -> Result<TimeLeft, DialogStoreError> {
    match store.time_left(id).await? {
        TimeLeft::Gone => store.time_left(&id.reversed()).await,
        other => Ok(other),
    }
}

/// The record named by `id` in either orientation (an in-dialog request from the callee names
/// the dialog with the tags swapped).
pub async fn load_either(
    store: &dyn DialogStore,
    id: &DialogId,
) -> Result<Option<DialogState>, DialogStoreError> {
    if let Some(s) = store.load(id).await? {
        return Ok(Some(s));
    }
    store.load(&id.reversed()).await
}

/// Why a dialog-store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogStoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("dialog store unavailable: {0}")]
    Unavailable(UnavailableReason),
    /// Another node holds the record's owner claim (its lease still holds the claimed epoch):
    /// this node is a stale owner of the dialog and wrote nothing (issue 5, per-key fencing).
    #[error("another node owns the dialog record")]
    StaleOwner,
    /// The stored record has another [`Revision`] than the writer last saw (another node
    /// rewrote it since): nothing was written; reload, re-apply, write again.
    #[error("the stored dialog record changed since it was read")]
    Outdated,
    /// The record is gone (removed after a BYE through another node, or expired) and this
    /// write would have re-created it: an adoption's claim, or a write presenting a
    /// [`Revision`] its writer had seen. Nothing was written; the dialog has ended (docs/REDIS.md,
    /// "Ended records are not re-created").
    #[error("the dialog record is gone: the dialog ended")]
    Ended,
    /// A stored record could not be read back (field `0` is missing or malformed).
    #[error("stored dialog record has a bad field: {0}")]
    BadRecord(&'static str),
}
