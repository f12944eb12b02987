//! The in-process dialog store: the single-node default. Records expire like Redis keys do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sipmesh_protocol::dialog::{DialogId, DialogState};

use super::store::{DialogStore, EXPIRY_MARGIN, StoreFuture};

/// Dialog records in a map, each with its expiry instant.
#[derive(Debug, Default)]
pub struct MemoryDialogStore {
    /// Records and when they expire. A std mutex: every critical section is a map operation,
    /// never held across an await.
    records: Mutex<HashMap<DialogId, (DialogState, Instant)>>,
}

impl MemoryDialogStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live records.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|(_, at)| *at > now).count()
    }

    /// True when no live record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DialogId, (DialogState, Instant)>> {
        // A panic while holding the lock cannot leave a map half-updated (each operation is
        // one insert or remove), so a poisoned lock is still consistent.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl DialogStore for MemoryDialogStore {
    fn save<'a>(&'a self, state: &'a DialogState) -> StoreFuture<'a, ()> {
        let until = Instant::now() + state.timeout + EXPIRY_MARGIN;
        self.lock().insert(state.id.clone(), (state.clone(), until));
        Box::pin(std::future::ready(Ok(())))
    }

    fn load<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, Option<DialogState>> {
        let now = Instant::now();
        let mut map = self.lock();
        let found = match map.get(id) {
            Some((s, at)) if *at > now => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        };
        Box::pin(std::future::ready(Ok(found)))
    }

    fn remove<'a>(&'a self, id: &'a DialogId) -> StoreFuture<'a, bool> {
        let existed = self.lock().remove(id).is_some();
        Box::pin(std::future::ready(Ok(existed)))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
