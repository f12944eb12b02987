//! When a stream connection last moved a byte: written by its reader and writer, read by its
//! [`ConnectionActor`](super::actor::ConnectionActor)'s idle timer.
//!
//! An atomic millisecond offset from a base instant rather than a lock or a message per read:
//! the I/O futures touch it on every read and write, and the actor looks at it only when its
//! idle timer fires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The last time anything was read or written on one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Activity "now": a new connection counts as active when it is created.
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Records activity now. Never moves the time backwards.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The last recorded activity (at millisecond resolution).
    pub(crate) fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_never_moves_backwards() {
        let a = Activity::new();
        let start = a.last();
        a.last_ms.store(1_000_000, Ordering::Relaxed);
        a.touch();
        assert_eq!(a.last() - start, Duration::from_secs(1_000));
    }

    #[test]
    fn touch_records_elapsed_time() {
        let a = Activity::new();
        let before = a.last();
        std::thread::yield_now();
        a.touch();
        assert!(a.last() >= before);
        assert!(a.last() <= Instant::now());
    }
}
