//! `WAIT <replicas> <timeout>` after writes, and the switch that stops waiting while the
//! replicas are gone.
//!
//! Redis replication is asynchronous: without `WAIT`, a write acknowledged just before the
//! master dies can be missing on the replica that Sentinel promotes. `WAIT` holds the reply
//! until enough replicas acknowledged it, or the timeout passed. A shortfall is logged and the
//! write still succeeds: the master has applied it, and refusing it would turn a replica outage
//! into a full outage. Because `WAIT` blocks the whole (multiplexed) connection on the server,
//! a missing replica would stall every command for the full timeout of each `WAIT`; so after a
//! shortfall [`ReplicaWaiter`] skips `WAIT` for [`DEGRADED_PAUSE`] and then tries again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::{Cmd, RedisResult, Value};
use tokio::time::Instant;

/// How long `WAIT` is skipped after a shortfall.
pub const DEGRADED_PAUSE: Duration = Duration::from_secs(5);

/// The `WAIT` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    /// Replicas that must acknowledge (1 for a master with one replica).
    pub replicas: u32,
    /// Longest wait; keep it well below the store timeout. Redis counts whole milliseconds
    /// and 0 would wait forever, so at least 1 ms is sent.
    pub timeout: Duration,
}

impl ReplicaWait {
    /// The `WAIT` command.
    pub fn cmd(&self) -> Cmd {
        let ms = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = ::redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(ms);
        cmd
    }
}

/// A [`ReplicaWait`] with its degraded-mode switch. Clones share the switch.
#[derive(Debug, Clone)]
pub struct ReplicaWaiter {
    wait: ReplicaWait,
    /// Origin of `skip_until_ms`.
    base: Instant,
    /// `WAIT` is skipped until this many ms after `base` (0: not degraded).
    skip_until_ms: Arc<AtomicU64>,
}

impl ReplicaWaiter {
    /// A waiter for `wait`, not degraded.
    pub fn new(wait: ReplicaWait) -> Self {
        Self {
            wait,
            base: Instant::now(),
            skip_until_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// The `WAIT` command to send after the writes at hand, or None while degraded.
    pub fn due(&self) -> Option<Cmd> {
        self.due_at(Instant::now())
    }

    fn due_at(&self, now: Instant) -> Option<Cmd> {
        (self.ms(now) >= self.skip_until_ms.load(Ordering::Relaxed)).then(|| self.wait.cmd())
    }

    /// Looks at `WAIT`'s reply (the number of replicas that acknowledged): on a shortfall or
    /// an error, logs it and skips `WAIT` for [`DEGRADED_PAUSE`].
    pub fn check(&self, reply: &RedisResult<Value>) {
        self.check_at(Instant::now(), reply);
    }

    fn check_at(&self, now: Instant, reply: &RedisResult<Value>) {
        let acknowledged = match reply {
            Ok(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        if acknowledged >= u64::from(self.wait.replicas) {
            return;
        }
        let until = self
            .ms(now)
            .saturating_add(u64::try_from(DEGRADED_PAUSE.as_millis()).unwrap_or(u64::MAX));
        let before = self.skip_until_ms.swap(until, Ordering::Relaxed);
        if before <= self.ms(now) {
            tracing::warn!(
                acknowledged,
                wanted = self.wait.replicas,
                reply = ?reply.as_ref().err(),
                pause = ?DEGRADED_PAUSE,
                "redis: writes not confirmed by enough replicas; not waiting for a while"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortfall_pauses_waiting_then_it_resumes() {
        let w = ReplicaWaiter::new(ReplicaWait {
            replicas: 1,
            timeout: Duration::from_millis(100),
        });
        let t = w.base + Duration::from_secs(10);
        assert!(w.due_at(t).is_some());
        w.check_at(t, &Ok(Value::Int(1)));
        assert!(w.due_at(t).is_some(), "enough replicas: keep waiting");
        w.check_at(t, &Ok(Value::Int(0)));
        assert!(w.due_at(t).is_none(), "shortfall: skip");
        let ms = Duration::from_millis(1);
        assert!(w.due_at(t + DEGRADED_PAUSE - ms).is_none());
        assert!(
            w.due_at(t + DEGRADED_PAUSE).is_some(),
            "after the pause: try again"
        );
        w.check_at(t, &Err((::redis::ErrorKind::Io, "gone").into()));
        assert!(w.due_at(t + ms).is_none(), "an error counts as a shortfall");
    }

    #[test]
    fn wait_never_sends_zero() {
        let cmd = ReplicaWait {
            replicas: 2,
            timeout: Duration::ZERO,
        }
        .cmd();
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .filter_map(|a| match a {
                ::redis::Arg::Simple(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(args, [b"WAIT".to_vec(), b"2".to_vec(), b"1".to_vec()]);
    }
}
