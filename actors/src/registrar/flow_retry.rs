//! Flow-binding removals refused while this node was fenced (issue 5): queued, bounded, and
//! retried once the store takes writes again, as the dialog removals are
//! ([`crate::dialog::retry`]).
//!
//! When a stream connection closes, the bindings registered over it go (RFC 5626 §5.4). A
//! fenced node (lease lost, isolated, settling) has that write refused, and a node that fences
//! itself closes all its connections at once, so without a queue those bindings would stay,
//! pointing at a connection that no longer exists, until a survivor's sweep of the whole node
//! or their expiry. A queued removal stays valid later: it names one connection of this
//! process, which never comes back, so it can only remove dead bindings (a client that
//! registered again did so over another connection). Only `Unavailable` failures (fenced,
//! timeout, disconnected) are queued; the queue holds at most [`MAX_QUEUED`] connections (the
//! oldest is dropped, logged: its bindings still expire).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tracing::{debug, info, warn};

use sipmesh_protocol::peer::ConnectionId;

use crate::location::{LocationStore, StoreError, UnavailableReason};

/// Most removals kept for a retry.
pub const MAX_QUEUED: usize = 10_000;
/// Time between retries.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

type Queue = Mutex<VecDeque<ConnectionId>>;

/// The queue of refused flow removals. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FlowRemovalRetry {
    queue: Arc<Queue>,
}

fn lock(q: &Queue) -> std::sync::MutexGuard<'_, VecDeque<ConnectionId>> {
    q.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FlowRemovalRetry {
    /// Queues the removal of the bindings over `connection`.
    pub fn push(&self, connection: ConnectionId) {
        let mut q = lock(&self.queue);
        if q.len() >= MAX_QUEUED
            && let Some(dropped) = q.pop_front()
        {
            warn!(connection = %dropped, "flow removal retry queue full: oldest dropped (its bindings expire)");
        }
        q.push_back(connection);
    }

    /// Removals waiting.
    pub fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tries every queued removal once, in order, each bounded by `timeout`; stops at the first
    /// that is refused again (still fenced, or the store is down) and keeps it and the rest.
    /// Returns how many were done.
    pub async fn retry<S: LocationStore>(&self, store: &S, timeout: Duration) -> usize {
        retry_queue(&self.queue, store, timeout).await
    }

    /// Retries every [`RETRY_EVERY`] while a clone of this queue exists.
    pub fn spawn<S: LocationStore>(
        &self,
        store: Arc<S>,
        timeout: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let queue: Weak<Queue> = Arc::downgrade(&self.queue);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RETRY_EVERY).await;
                let Some(queue) = queue.upgrade() else {
                    return;
                };
                if !lock(&queue).is_empty() {
                    retry_queue(&queue, store.as_ref(), timeout).await;
                }
            }
        })
    }
}

async fn retry_queue<S: LocationStore>(queue: &Queue, store: &S, timeout: Duration) -> usize {
    let mut done = 0;
    loop {
        let Some(connection) = lock(queue).front().copied() else {
            break;
        };
        let result = match tokio::time::timeout(timeout, store.remove_connection(connection)).await
        {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(UnavailableReason::Timeout)),
        };
        match result {
            Ok(_) | Err(StoreError::Register(_)) => {
                lock(queue).pop_front();
                done += 1;
            }
            Err(e) => {
                debug!(error = %e, "queued flow removals still refused");
                break;
            }
        }
    }
    if done > 0 {
        info!(connections = done, "queued flow removals done");
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_drops_the_oldest() {
        let q = FlowRemovalRetry::default();
        for n in 0..(MAX_QUEUED as u64 + 3) {
            q.push(ConnectionId(n));
        }
        assert_eq!(q.len(), MAX_QUEUED);
        assert_eq!(lock(&q.queue).front().copied(), Some(ConnectionId(3)));
    }
}
