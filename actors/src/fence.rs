//! Fencing of owner writes (issue 5): what a clustered node gives its Redis stores so that a
//! stale owner cannot overwrite the state written by the node that replaced it.
//!
//! The cluster layer holds a lease in Redis (`<cluster prefix>node:<id>`, value: the lease
//! epoch, a counter that grows with every acquisition). A [`Fence`] names that key and asks an
//! [`EpochSource`] for the epoch this node may write with right now:
//! - no epoch (the node is fenced: lease lost, isolated or still settling): the store refuses the
//!   write at once with `Unavailable(Fenced)` and sends nothing to Redis;
//! - an epoch: the store's write script first compares it with the lease key's value (the same
//!   rule as `check_epoch` in `sipmesh-cluster`) and, when they differ, writes nothing and
//!   answers the error `STALE_EPOCH`, which the store maps to `Unavailable(Fenced)`.
//!
//! This crate does not depend on `sipmesh-cluster` (the node wires the two together), so the
//! epoch is a plain `u64` here. A store without a fence (a single node) works as before.

use std::fmt;
use std::sync::Arc;

use crate::location::UnavailableReason;

/// Error code of a write refused by the Redis-side epoch check (the first word of the error
/// reply, as `sipmesh-cluster`'s `check_epoch` scripts use it).
pub const STALE_EPOCH_CODE: &str = "STALE_EPOCH";

/// Where a store learns the epoch it may write with.
pub trait EpochSource: Send + Sync + fmt::Debug {
    /// The lease epoch to attach to an owner write now, or `None` while this node is fenced.
    fn owner_epoch(&self) -> Option<u64>;
}

/// A fixed answer, for tests and tools: `Some(epoch)` always writes with `epoch`, `None` is
/// always fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedEpoch(pub Option<u64>);

impl EpochSource for FixedEpoch {
    fn owner_epoch(&self) -> Option<u64> {
        self.0
    }
}

/// The fencing input of a Redis store: this node's lease key and its epoch source. Cheap to
/// clone.
#[derive(Clone)]
pub struct Fence {
    lease_key: Arc<str>,
    source: Arc<dyn EpochSource>,
}

impl fmt::Debug for Fence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fence")
            .field("lease_key", &self.lease_key)
            .field("epoch", &self.source.owner_epoch())
            .finish()
    }
}

/// The lease check to run before one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceCheck {
    /// The lease key whose value must equal `epoch`.
    pub lease_key: Arc<str>,
    /// The epoch this node writes with.
    pub epoch: u64,
}

impl Fence {
    /// A fence on the lease key `lease_key` (the cluster layer's `<prefix>node:<id>`, see
    /// docs/REDIS.md "Cluster keys"), asking `source` for the epoch.
    pub fn new(lease_key: impl Into<Arc<str>>, source: Arc<dyn EpochSource>) -> Self {
        Self {
            lease_key: lease_key.into(),
            source,
        }
    }

    /// The lease key.
    pub fn lease_key(&self) -> &str {
        &self.lease_key
    }

    /// The check for a write now, or [`UnavailableReason::Fenced`] when the node must not
    /// write at all.
    pub fn check(&self) -> Result<FenceCheck, UnavailableReason> {
        self.source
            .owner_epoch()
            .map(|epoch| FenceCheck {
                lease_key: Arc::clone(&self.lease_key),
                epoch,
            })
            .ok_or(UnavailableReason::Fenced)
    }
}

/// Whether a Redis error is the epoch check's refusal.
pub fn is_stale_epoch(e: &::redis::RedisError) -> bool {
    e.code() == Some(STALE_EPOCH_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_source_refuses_and_a_leased_one_gives_the_check() {
        let fenced = Fence::new("c:node:a", Arc::new(FixedEpoch(None)));
        assert_eq!(fenced.check(), Err(UnavailableReason::Fenced));
        let leased = Fence::new("c:node:a", Arc::new(FixedEpoch(Some(7))));
        assert_eq!(
            leased.check(),
            Ok(FenceCheck {
                lease_key: Arc::from("c:node:a"),
                epoch: 7
            })
        );
        assert_eq!(leased.lease_key(), "c:node:a");
    }
}
