//! Flow holders that stopped answering: a short circuit breaker for [`crate::flow::deliver`].
//!
//! A holder that is frozen (SIGSTOP, a stalled runtime) but not yet declared dead keeps its
//! ractor_cluster session, so every delivery to it waits the whole delivery timeout (1.5 s)
//! before the caller answers 480. After one such timeout the holder is **suspect**: later
//! deliveries to it fail at once (480 without the wait) until it answers a probe (any RPC
//! over the mesh, see [`crate::flow::probe`]) or [`SuspectHolders::hold`] passes, after which
//! one delivery is let through again (and trips the breaker anew if it times out too). A dead
//! holder leaves the process group with its session and fails fast anyway.
//!
//! Sans-IO: the caller passes the time in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The default [`SuspectHolders::hold`]: a few heartbeats; by then a frozen member has
/// usually been declared dead (2.4 s) and its flows removed.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(3);

/// Holders (by incarnation) whose last delivery timed out.
#[derive(Debug, Clone)]
pub struct SuspectHolders {
    hold: Duration,
    since: HashMap<u16, Instant>,
}

impl Default for SuspectHolders {
    fn default() -> Self {
        Self::new(DEFAULT_HOLD)
    }
}

impl SuspectHolders {
    /// An empty set whose entries last `hold` at most.
    pub fn new(hold: Duration) -> Self {
        Self {
            hold,
            since: HashMap::new(),
        }
    }

    /// How long a holder stays suspect without answering.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// A delivery to `holder` timed out at `now`; `true` when it was not suspect before (the
    /// caller starts probing it then).
    pub fn trip(&mut self, holder: u16, now: Instant) -> bool {
        let fresh = !self.is_suspect(holder, now);
        self.since.insert(holder, now);
        fresh
    }

    /// Whether deliveries to `holder` should fail at once (forgets entries past the hold).
    pub fn is_suspect(&mut self, holder: u16, now: Instant) -> bool {
        match self.since.get(&holder) {
            Some(&at) if now.saturating_duration_since(at) < self.hold => true,
            Some(_) => {
                self.since.remove(&holder);
                false
            }
            None => false,
        }
    }

    /// `holder` answered (or left the mesh): no longer suspect. `true` when it was.
    pub fn clear(&mut self, holder: u16) -> bool {
        self.since.remove(&holder).is_some()
    }

    /// Number of holders currently listed (suspect or past their hold, not yet forgotten).
    pub fn len(&self) -> usize {
        self.since.len()
    }

    /// Whether no holder is listed.
    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_holder_is_suspect_until_the_hold_passes() {
        let mut s = SuspectHolders::new(Duration::from_secs(3));
        let t0 = Instant::now();
        assert!(!s.is_suspect(7, t0));
        assert!(s.trip(7, t0), "first trip starts a probe");
        assert!(s.is_suspect(7, t0 + Duration::from_millis(2999)));
        assert!(!s.is_suspect(8, t0), "other holders unaffected");
        assert!(!s.is_suspect(7, t0 + Duration::from_secs(3)));
        assert!(s.is_empty(), "expired entries are forgotten");
    }

    #[test]
    fn a_second_timeout_extends_without_a_new_probe_and_an_answer_clears() {
        let mut s = SuspectHolders::new(Duration::from_secs(3));
        let t0 = Instant::now();
        assert!(s.trip(7, t0));
        assert!(!s.trip(7, t0 + Duration::from_secs(2)), "already probing");
        assert!(
            s.is_suspect(7, t0 + Duration::from_secs(4)),
            "hold restarted"
        );
        assert!(s.clear(7));
        assert!(!s.clear(7));
        assert!(!s.is_suspect(7, t0 + Duration::from_secs(4)));
        assert!(
            s.trip(7, t0 + Duration::from_secs(5)),
            "a new episode probes again"
        );
    }
}
