//! Dialog removals refused while this node was fenced (issue 5): queued, bounded, and retried
//! once the store takes writes again, so an ended call does not leave its record (and its
//! owner-index entry, which a later rebalance would adopt) behind until the key expires.
//!
//! Only [`UnavailableReason::Fenced`](crate::location::UnavailableReason::Fenced) and other
//! `Unavailable` failures are queued; a removal that finds no record is done. The queue holds
//! at most [`MAX_QUEUED`] ids (the oldest is dropped, logged: its key still expires by itself).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::{debug, info, warn};

use sipmesh_protocol::dialog::DialogId;

use super::store::{DialogStore, DialogStoreError, WriteRole};

/// Most removals kept for a retry.
pub const MAX_QUEUED: usize = 10_000;
/// Time between retries.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

/// The queue of refused removals. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RemovalRetry {
    queue: Arc<Mutex<VecDeque<DialogId>>>,
}

impl RemovalRetry {
    /// Queues the removal of `id` (either orientation is tried).
    pub fn push(&self, id: DialogId) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= MAX_QUEUED
            && let Some(dropped) = q.pop_front()
        {
            warn!(dialog_id = %dropped, "removal retry queue full: oldest dropped (its key expires)");
        }
        q.push_back(id);
    }

    /// Removals waiting.
    pub fn len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tries every queued removal once, in order; stops at the first that is refused again
    /// (the store is still fenced or down) and keeps it and the rest. Returns how many were
    /// done.
    pub async fn retry(&self, store: &dyn DialogStore) -> usize {
        let mut done = 0;
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .front()
                .cloned();
            let Some(id) = next else {
                break;
            };
            match remove_either(store, &id).await {
                Ok(()) => {
                    self.queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    done += 1;
                }
                Err(e) => {
                    debug!(error = %e, "queued dialog removals still refused");
                    break;
                }
            }
        }
        if done > 0 {
            info!(removed = done, "queued dialog removals done");
        }
        done
    }

    /// Retries every [`RETRY_EVERY`] until the task is aborted.
    pub fn spawn(&self, store: Arc<dyn DialogStore>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RETRY_EVERY).await;
                if !me.is_empty() {
                    me.retry(store.as_ref()).await;
                }
            }
        })
    }
}

/// Removes the record of `id` in either orientation. The dialog has ended (a BYE, or a timeout
/// whose BYEs went out), so the removal is a visitor's: it does not need the owner claim.
pub async fn remove_either(store: &dyn DialogStore, id: &DialogId) -> Result<(), DialogStoreError> {
    let role = WriteRole::Visitor;
    if store.remove_as(id, role).await? {
        return Ok(());
    }
    store.remove_as(&id.reversed(), role).await.map(|_| ())
}
