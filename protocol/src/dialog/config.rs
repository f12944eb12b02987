//! How long a dialog record lives without news: the session timer (RFC 4028) when the call
//! negotiated one, otherwise a configured default.

use std::time::Duration;

/// Dialog timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogConfig {
    /// Lifetime of a confirmed dialog without a session timer. Kamailio's dialog module
    /// defaults to 12 hours (`default_timeout` 43200 s); we follow it.
    pub default_timeout: Duration,
    /// Lifetime of an early dialog: Timer C (RFC 3261 §16.6 step 11, > 3 min) ends the INVITE
    /// transaction by then, so an early dialog older than that was lost.
    pub early_timeout: Duration,
    /// Added to a negotiated Session-Expires before the record is given up: RFC 4028 §10 lets
    /// the refresher send its refresh as late as the interval minus a third (or 32 s), and the
    /// other side waits the whole interval before sending BYE.
    pub session_grace: Duration,
}

impl Default for DialogConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(12 * 3600),
            early_timeout: Duration::from_secs(190),
            session_grace: Duration::from_secs(32),
        }
    }
}
