//! Errors from misuse of the transaction API by the transaction user.
//!
//! Network input never produces an error: messages that do not fit the current state are
//! absorbed, as RFC 3261 §17 prescribes.

use thiserror::Error;

/// The transaction user asked for something the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TransactionError {
    /// A status code outside 100..=699 (RFC 3261 §21).
    #[error("status code {0} is not in 100..=699")]
    InvalidStatus(u16),
    /// A response was handed to a server transaction in a state that cannot send it, e.g. a
    /// second final response, or a 1xx after the final one.
    #[error("cannot send a {status} response in state {state}")]
    ResponseNotAllowed {
        /// Status code of the rejected response.
        status: u16,
        /// Name of the state the transaction was in.
        state: &'static str,
    },
}

/// The class of a status code, for the transitions of the §17 figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusClass {
    /// 100-199.
    Provisional,
    /// 200-299.
    Success,
    /// 300-699.
    Failure,
}

impl StatusClass {
    /// Classifies `status`, or `None` if it is not a valid SIP status code.
    pub(crate) fn of(status: u16) -> Option<Self> {
        match status {
            100..=199 => Some(Self::Provisional),
            200..=299 => Some(Self::Success),
            300..=699 => Some(Self::Failure),
            _ => None,
        }
    }
}
