//! Operation counters of the current phase: tried, succeeded and failed per kind, and failures
//! by reason. The runner takes them at each phase's end and starts afresh.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::error::OpFailure;

/// What an agent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// REGISTER (first or refresh).
    Register,
    /// MESSAGE.
    Message,
    /// INVITE up to the ACK.
    Call,
    /// BYE ending an established dialog.
    Bye,
}

impl OpKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Message => "message",
            Self::Call => "call",
            Self::Bye => "bye",
        }
    }
}

/// Counts for one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    /// Operations started.
    pub tried: u64,
    /// Operations that got the expected answer.
    pub succeeded: u64,
    /// Operations that did not.
    pub failed: u64,
    /// Failures by reason (`timeout`, `status 503`, …).
    pub failures: BTreeMap<String, u64>,
}

/// The counters of one phase.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<BTreeMap<OpKind, OpCounts>>,
}

impl Stats {
    /// Records one operation's outcome.
    pub fn record(&self, kind: OpKind, outcome: &Result<(), OpFailure>) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = map.entry(kind).or_default();
        counts.tried += 1;
        match outcome {
            Ok(()) => counts.succeeded += 1,
            Err(e) => {
                counts.failed += 1;
                *counts.failures.entry(e.label()).or_default() += 1;
            }
        }
    }

    /// Takes the counts so far and starts from zero.
    pub fn take(&self) -> BTreeMap<OpKind, OpCounts> {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_reason_then_resets() {
        let s = Stats::default();
        s.record(OpKind::Message, &Ok(()));
        s.record(OpKind::Message, &Err(OpFailure::Status(503)));
        s.record(OpKind::Message, &Err(OpFailure::Timeout));
        let taken = s.take();
        let m = taken.get(&OpKind::Message).expect("message counts");
        assert_eq!((m.tried, m.succeeded, m.failed), (3, 1, 2));
        assert_eq!(m.failures.get("status 503"), Some(&1));
        assert!(s.take().is_empty());
    }
}
