//! In-process location store: sharded maps of AOR to bindings, with an expiry index.
//!
//! Layout: [`SHARDS`] shards, each a `std::sync::Mutex` over a map `Aor -> AorEntry` and an
//! expiry index `BTreeSet<(next expiry, Aor)>`. The shard is picked by a fixed hash of the AOR,
//! so REGISTERs for one AOR are serialised by its shard lock while different AORs rarely
//! contend. A std mutex (not tokio's) is right here: the critical section is short, pure
//! computation and never awaits.
//!
//! Expiry: each AOR appears once in its shard's index, keyed by the earliest `expires_at` of its
//! bindings; [`LocationStore::sweep_expired`] pops the index up to `now` and prunes only those
//! AORs. Lookups never return expired bindings even before a sweep.
//!
//! Memory: bindings keep their byte fields in one buffer each (see
//! [`Binding`]); the AOR key is one refcounted buffer
//! shared by the map and the index; binding vectors are shrunk to fit.
//!
//! [`LocationStore::remove_connection`] scans every AOR (no connection index yet): fine for flow
//! failures, which are rare, but worth an index once RFC 5626 flows are common. An AOR that
//! loses its last binding that way is remembered (until those bindings would have expired, or
//! the AOR registers again) so that [`LocationStore::flows_closed`] can tell 480 from 404.

use std::collections::{BTreeSet, HashMap};
use std::future::{Future, ready};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use sipmesh_protocol::peer::ConnectionId;
use sipmesh_protocol::registrar::{
    Aor, Binding, RegisterOutcome, RegisterRequest, RegistrarPolicy, apply_register,
};

use crate::location::store::{LocationStore, StoreError, StoreStats};

/// Number of shards: a power of two comfortably above the core count.
pub const SHARDS: usize = 64;

/// The in-memory [`LocationStore`].
#[derive(Debug)]
pub struct MemoryLocationStore {
    /// `SHARDS` independently locked partitions of the AOR space.
    shards: Box<[Mutex<Shard>]>,
}

/// One partition of the AOR space.
#[derive(Debug, Default)]
struct Shard {
    /// Bindings per AOR; an AOR without bindings has no entry.
    aors: HashMap<Aor, AorEntry>,
    /// `(earliest expires_at of the AOR, AOR)`, one element per entry of `aors`.
    expiry: BTreeSet<(SystemTime, Aor)>,
    /// Sum of the binding counts of `aors`.
    bindings: usize,
    /// AORs left without bindings by closed flows, with the latest expiry those bindings had.
    vacated: HashMap<Aor, SystemTime>,
}

/// The stored state of one AOR.
#[derive(Debug)]
struct AorEntry {
    /// Its bindings in stored order (never empty).
    bindings: Vec<Binding>,
    /// The earliest `expires_at` among them: its key in the shard's expiry index.
    next_expiry: SystemTime,
}

impl Default for MemoryLocationStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLocationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    fn shard(&self, aor: &Aor) -> MutexGuard<'_, Shard> {
        let mut hasher = DefaultHasher::new();
        aor.hash(&mut hasher);
        // Lossless: the remainder is below SHARDS, which fits in usize; and `shards` has
        // exactly SHARDS elements, so the index is in bounds.
        let index = (hasher.finish() % SHARDS as u64) as usize;
        lock(&self.shards[index])
    }

    fn register_now(
        &self,
        req: &RegisterRequest,
        policy: &RegistrarPolicy,
        now: SystemTime,
    ) -> Result<RegisterOutcome, StoreError> {
        let mut shard = self.shard(&req.aor);
        let current = shard
            .aors
            .get(&req.aor)
            .map_or(&[][..], |e| e.bindings.as_slice());
        let outcome = apply_register(current, req, policy, now)?;
        if outcome.changed {
            shard.put(&req.aor, outcome.bindings.clone());
        }
        Ok(outcome)
    }

    fn lookup_now(&self, aor: &Aor, now: SystemTime) -> Vec<Binding> {
        let shard = self.shard(aor);
        shard.aors.get(aor).map_or_else(Vec::new, |e| {
            e.bindings
                .iter()
                .filter(|b| !b.is_expired(now))
                .cloned()
                .collect()
        })
    }

    fn remove_connection_now(&self, connection: ConnectionId) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = lock(shard);
            let affected: Vec<Aor> = shard
                .aors
                .iter()
                .filter(|(_, e)| {
                    e.bindings
                        .iter()
                        .any(|b| b.source.connection == Some(connection))
                })
                .map(|(aor, _)| aor.clone())
                .collect();
            for aor in affected {
                let until = shard.aors.get(&aor).and_then(|e| {
                    e.bindings
                        .iter()
                        .filter(|b| b.source.connection == Some(connection) && b.is_flow())
                        .map(|b| b.expires_at)
                        .max()
                });
                removed += shard.retain(&aor, |b| {
                    b.source.connection != Some(connection) || !b.is_flow()
                });
                if let Some(until) = until.filter(|_| !shard.aors.contains_key(&aor)) {
                    shard.vacated.insert(aor, until);
                }
            }
        }
        removed
    }

    fn flows_closed_now(&self, aor: &Aor, now: SystemTime) -> bool {
        let shard = self.shard(aor);
        shard.vacated.get(aor).is_some_and(|until| *until > now)
            && shard
                .aors
                .get(aor)
                .is_none_or(|e| e.bindings.iter().all(|b| b.is_expired(now)))
    }

    fn sweep_now(&self, now: SystemTime) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.vacated.retain(|_, until| *until > now);
            while shard.expiry.first().is_some_and(|(at, _)| *at <= now) {
                // Popping first guarantees progress even if the index were ever stale;
                // `retain` re-inserts the AOR under its new earliest expiry.
                let Some((_, aor)) = shard.expiry.pop_first() else {
                    break;
                };
                removed += shard.retain(&aor, |b| !b.is_expired(now));
            }
        }
        removed
    }

    fn stats_now(&self) -> StoreStats {
        self.shards
            .iter()
            .fold(StoreStats::default(), |acc, shard| {
                let shard = lock(shard);
                StoreStats {
                    aors: acc.aors + shard.aors.len(),
                    bindings: acc.bindings + shard.bindings,
                }
            })
    }
}

/// Locks a shard, ignoring poisoning: every mutation of a shard is a few map/set operations
/// that leave it consistent at each step a panic could interrupt, and `apply_register` runs
/// before any of them.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    /// Replaces the bindings of `aor` (removing the AOR when `bindings` is empty), keeping the
    /// expiry index and the binding count in step.
    fn put(&mut self, aor: &Aor, mut bindings: Vec<Binding>) {
        if !bindings.is_empty() {
            self.vacated.remove(aor);
        }
        if let Some(old) = self.aors.remove(aor) {
            self.expiry.remove(&(old.next_expiry, aor.clone()));
            self.bindings -= old.bindings.len();
        }
        let Some(next_expiry) = bindings.iter().map(|b| b.expires_at).min() else {
            return;
        };
        bindings.shrink_to_fit();
        self.bindings += bindings.len();
        self.expiry.insert((next_expiry, aor.clone()));
        self.aors.insert(
            aor.clone(),
            AorEntry {
                bindings,
                next_expiry,
            },
        );
    }

    /// Keeps only the bindings of `aor` for which `keep` holds; returns how many were removed.
    fn retain(&mut self, aor: &Aor, keep: impl Fn(&Binding) -> bool) -> usize {
        let Some(entry) = self.aors.get(aor) else {
            return 0;
        };
        let kept: Vec<Binding> = entry.bindings.iter().filter(|b| keep(b)).cloned().collect();
        let removed = entry.bindings.len() - kept.len();
        self.put(aor, kept);
        removed
    }
}

impl LocationStore for MemoryLocationStore {
    const COMPLETES_INLINE: bool = true;
    fn register(
        &self,
        req: RegisterRequest,
        policy: &RegistrarPolicy,
        now: SystemTime,
    ) -> impl Future<Output = Result<RegisterOutcome, StoreError>> + Send {
        ready(self.register_now(&req, policy, now))
    }

    fn lookup(
        &self,
        aor: &Aor,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send {
        ready(Ok(self.lookup_now(aor, now)))
    }

    fn remove_connection(
        &self,
        connection: ConnectionId,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        ready(Ok(self.remove_connection_now(connection)))
    }

    fn flows_closed(
        &self,
        aor: &Aor,
        now: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.flows_closed_now(aor, now)))
    }

    fn sweep_expired(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        ready(Ok(self.sweep_now(now)))
    }

    fn stats(&self) -> impl Future<Output = Result<StoreStats, StoreError>> + Send {
        ready(Ok(self.stats_now()))
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
