//! Dialog takeover (issue 5, point 4): after a membership change every node re-reads the
//! owner indexes in Redis ([`RedisDialogStore::indexed`]) and makes its live dialog actors
//! match the placement:
//!
//! - a stored dialog this node now owns and runs no actor for is **adopted**
//!   ([`Dialogs::adopt`]): an actor starts from the record, writes it under this node's fence
//!   (moving it to this node's index) and arms the dialog timeout for the time it had left;
//! - a stored dialog this node runs an actor for but no longer owns (a restarted node took
//!   its share back) is **released** ([`Dialogs::release`]): the actor stops, the record stays.
//!
//! Both steps are idempotent, so a rebalance can be repeated after any error; the writes are
//! fenced by the store (a fenced node's adoption writes fail, and its actors keep running
//! until the next rebalance). Actors without a stored record (early dialogs, ones an
//! in-dialog request started) are left alone. Ownership is decided by the caller (the node
//! asks its cluster layer for the rendezvous owner of [`placement_key`]).

use std::time::{Duration, Instant};

use sipmesh_protocol::dialog::{DialogId, DialogState};

use super::handle::Dialogs;
use super::redis::RedisDialogStore;
use super::store::DialogStoreError;

/// What one [`rebalance`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebalance {
    /// Records read from the owner indexes.
    pub scanned: usize,
    /// Dialogs adopted by this node.
    pub adopted: usize,
    /// Live actors stopped because another node owns their dialog now.
    pub released: usize,
    /// Time the rebalance took (reading Redis and handing the work to the actors).
    pub took: Duration,
}

/// The placement key of a dialog: its Call-ID (the same for both orientations of the id).
pub fn placement_key(id: &DialogId) -> Vec<u8> {
    format!("dlg:{}", id.call_id).into_bytes()
}

/// Reads every owner index and adopts or releases dialogs so that this node runs exactly the
/// stored dialogs for which `owns` holds (see the module doc).
pub async fn rebalance(
    store: &RedisDialogStore,
    dialogs: &Dialogs,
    owns: impl Fn(&DialogId) -> bool,
) -> Result<Rebalance, DialogStoreError> {
    rebalance_with(store, dialogs, owns, |_| {}).await
}

/// One dialog moved by [`rebalance_with`].
#[derive(Debug, Clone, Copy)]
pub enum Moved<'a> {
    /// Adopted here, with its record (issue 6: its media watch moves with it).
    Adopted(&'a DialogState),
    /// Released here (another node owns it now).
    Released(&'a DialogState),
}

/// [`rebalance`], telling `moved` about each dialog adopted or released (issue 6: the media
/// sessions of the node follow their dialogs).
pub async fn rebalance_with(
    store: &RedisDialogStore,
    dialogs: &Dialogs,
    owns: impl Fn(&DialogId) -> bool,
    mut moved: impl FnMut(Moved<'_>),
) -> Result<Rebalance, DialogStoreError> {
    let start = Instant::now();
    let mut report = Rebalance::default();
    let mut indexes = store.owner_indexes().await?;
    if let Some(own) = store.own_index()
        && !indexes.contains(&own)
    {
        indexes.push(own);
    }
    // On a Redis Cluster a record can be listed by two indexes for a moment (its new owner's
    // and, until it is dropped, its old one's): each is handled once.
    let mut seen = std::collections::HashSet::new();
    for index in indexes {
        for record in store.indexed(&index).await? {
            if !seen.insert(record.key.clone()) {
                continue;
            }
            report.scanned += 1;
            let id = &record.state.id;
            // A visitor (an in-dialog request passing through) does not run the dialog.
            let live = dialogs.runs_timer(id);
            if owns(id) {
                if !live {
                    moved(Moved::Adopted(&record.state));
                    dialogs.adopt(record.state, record.remaining);
                    report.adopted += 1;
                }
            } else if live && dialogs.release(id) {
                moved(Moved::Released(&record.state));
                report.released += 1;
            }
        }
    }
    report.took = start.elapsed();
    Ok(report)
}
