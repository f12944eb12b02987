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

    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
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
    /// A stored record could not be read back (field `0` is missing or malformed).
    #[error("stored dialog record has a bad field: {0}")]
    BadRecord(&'static str),
}
