//! The non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
//!
//! ```text
//!                  new(): request passed to TU
//!                              |
//!                              v
//!   request retransmit: +------------+
//!   absorb              |   Trying   |--------------------+
//!         +------------>|            |                    |
//!         |             +------------+                    |
//!         +-------------+     |                           |
//!                             | 1xx from TU: send         | 200-699 from TU: send
//!                             v                           |
//!   request retransmit, +------------+                    |
//!   1xx from TU: send   | Proceeding |------------------->|
//!         +------------>|            | 200-699 from TU:   |
//!         |             +------------+ send               |
//!         +-------------+     |                           v
//!                             |                    +------------+
//!        transport error:     |                    | Completed  |<-+ request retransmit:
//!        inform TU            |                    +------------+  | resend final
//!         +-------------------+                      |   |   |     |
//!         |                   transport error: ------+   |   +-----+
//!         |                   inform TU                  | Timer J fires
//!         v                                              v
//!      +--------------------------------------------------------+
//!      |                       Terminated                       |
//!      +--------------------------------------------------------+
//! ```
//!
//! Timer J is 64*T1 on unreliable transports and zero on reliable ones, so Completed is left at
//! once there.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::config::TimerConfig;
use super::error::{StatusClass, TransactionError};
use super::event::TxEvent;
use super::timer::{Timer, TimerTable};

/// States of the non-INVITE server transaction, in RFC figure order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerNonInviteState {
    /// The request was passed to the TU; nothing sent yet. No timer runs in Trying or
    /// Proceeding: the TU must answer.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// A final response was sent; answering retransmissions until Timer J.
    Completed,
    /// Done; the owner may drop the transaction.
    Terminated,
}

impl ServerNonInviteState {
    /// The state's name, for errors.
    fn name(self) -> &'static str {
        match self {
            Self::Trying => "Trying",
            Self::Proceeding => "Proceeding",
            Self::Completed => "Completed",
            Self::Terminated => "Terminated",
        }
    }
}

/// The non-INVITE server transaction. See the module documentation for the state diagram.
#[derive(Debug)]
pub struct ServerNonInviteTx {
    /// Current state.
    state: ServerNonInviteState,
    /// TCP/TLS/WS: zero Timer J.
    reliable: bool,
    /// Timer durations.
    cfg: TimerConfig,
    /// The last response sent, resent on request retransmissions.
    last_response: Option<Bytes>,
    /// Armed timers.
    timers: TimerTable,
    /// Messages waiting for `poll_transmit`.
    transmits: VecDeque<Bytes>,
    /// Events waiting for `poll_event`.
    events: VecDeque<TxEvent>,
}

impl ServerNonInviteTx {
    /// Creates the transaction for a newly received request, in Trying. Nothing is sent.
    pub fn new(_now: Instant, reliable: bool, cfg: &TimerConfig) -> Self {
        Self {
            state: ServerNonInviteState::Trying,
            reliable,
            cfg: *cfg,
            last_response: None,
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Sends a response from the TU: 1xx in Trying or Proceeding; 200-699 in Trying or
    /// Proceeding (→ Completed, Timer J).
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        response: Bytes,
    ) -> Result<(), TransactionError> {
        let class = StatusClass::of(status).ok_or(TransactionError::InvalidStatus(status))?;
        use ServerNonInviteState as S;
        match (self.state, class) {
            (S::Trying | S::Proceeding, StatusClass::Provisional) => {
                self.state = S::Proceeding;
                self.last_response = Some(response.clone());
                self.transmits.push_back(response);
            }
            (S::Trying | S::Proceeding, StatusClass::Success | StatusClass::Failure) => {
                self.last_response = Some(response.clone());
                self.transmits.push_back(response);
                self.state = S::Completed;
                let j = self.cfg.timer_j(self.reliable);
                if j.is_zero() {
                    self.terminate();
                } else {
                    self.timers.set(Timer::J, now + j);
                }
            }
            (state, _) => {
                return Err(TransactionError::ResponseNotAllowed {
                    status,
                    state: state.name(),
                });
            }
        }
        Ok(())
    }

    /// The request was received again: resends the last response in Proceeding and Completed
    /// (RFC 3261 §17.2.2); absorbed in Trying.
    pub fn handle_retransmission(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) && let Some(response) = &self.last_response
        {
            self.transmits.push_back(response.clone());
        }
    }

    /// Fires the timers that have expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expired(Timer::J, now) && self.state == ServerNonInviteState::Completed {
            self.terminate();
        }
    }

    /// The transport failed to send a response (RFC 3261 §17.2.4): informs the TU and
    /// terminates.
    pub fn transport_error(&mut self, _now: Instant) {
        if self.state != ServerNonInviteState::Terminated {
            self.events.push_back(TxEvent::TransportError);
            self.terminate();
        }
    }
}

super::machine_outputs!(ServerNonInviteTx, ServerNonInviteState);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn trying_absorbs_then_final_answers_retransmissions() {
        let now = Instant::now();
        let mut tx = ServerNonInviteTx::new(now, false, &TimerConfig::default());
        tx.handle_retransmission(now);
        assert_eq!(tx.poll_transmit(), None);
        tx.send_response(now, 200, Bytes::from_static(b"200"))
            .unwrap();
        tx.handle_retransmission(now);
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"200"[..]));
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"200"[..]));
        assert!(tx.send_response(now, 200, Bytes::new()).is_err());
        assert_eq!(tx.poll_timeout(), Some(now + Duration::from_secs(32)));
        tx.handle_timeout(now + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn reliable_final_terminates_at_once() {
        let now = Instant::now();
        let mut tx = ServerNonInviteTx::new(now, true, &TimerConfig::default());
        tx.send_response(now, 100, Bytes::from_static(b"100"))
            .unwrap();
        tx.send_response(now, 404, Bytes::from_static(b"404"))
            .unwrap();
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"100"[..]));
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"404"[..]));
    }
}
