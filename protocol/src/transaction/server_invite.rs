//! The INVITE server transaction (RFC 3261 §17.2.1, as updated by RFC 6026 §8.5-§8.7).
//!
//! ```text
//!                  new(): INVITE passed to TU (the TU sends 100 Trying itself,
//!                  at once or within 200 ms, RFC 3261 §17.2.1)
//!                                   |
//!                                   v
//!                           +--------------+  INVITE: resend last response;
//!        +------------------|  Proceeding  |---+  1xx from TU: send
//!        |                  +--------------+<--+
//!        |                    |          |
//!        |  300-699 from TU:  |          | 2xx from TU: send, Timer L := 64*T1
//!        |  send, Timer H :=  |          +-------------------------+
//!        |  64*T1, unreliable:|                                    |
//!        |  Timer G := T1     v                                    v
//!        |               +--------------+                   +--------------+
//!        |               |  Completed   |---+               |   Accepted   |---+
//!        |               +--------------+<--+               +--------------+<--+
//!        |                 |  |  INVITE, Timer G: resend      |  2xx from TU: send;
//!        |                 |  |  final, G := min(2*G, T2)     |  INVITE: absorb;
//!        |                 |  |                               |  ACK: to TU
//!        |                 |  | ACK: Timer I := T4            |
//!        |                 |  v                               |
//!        |                 | +--------------+                 |
//!        |                 | |  Confirmed   |---+ ACK, INVITE:|
//!        |                 | +--------------+<--+ absorb      |
//!        |                 |        |                         |
//!        | (a)             | (b)    | Timer I fires           | Timer L fires
//!        v                 v        v                         v
//!      +----------------------------------------------------------------+
//!      |                           Terminated                           |
//!      +----------------------------------------------------------------+
//!
//!      (a) transport error: inform TU
//!      (b) Timer H fires: Timeout to TU; transport error: inform TU
//! ```
//!
//! Timer I is zero on reliable transports, so Confirmed is left at once. 2xx retransmissions
//! are the TU's job (a UAS core retransmits per RFC 3261 §13.3.1.4, a proxy only forwards); the
//! transaction passes every 2xx the TU hands it in Accepted to the transport. A transport error
//! in Accepted is reported to the TU without leaving the state, since the TU owns the 2xx.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::config::TimerConfig;
use super::error::{StatusClass, TransactionError};
use super::event::TxEvent;
use super::timer::{Timer, TimerTable};

/// States of the INVITE server transaction, in RFC figure order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerInviteState {
    /// The INVITE was passed to the TU; no final response yet. No timer runs here: the TU must
    /// answer (a proxy's Timer C, RFC 3261 §16.6, bounds its downstream wait).
    Proceeding,
    /// The TU sent a 2xx; absorbing INVITE retransmissions until Timer L (RFC 6026).
    Accepted,
    /// The TU sent a 300-699; retransmitting it (Timer G) until the ACK or Timer H.
    Completed,
    /// The ACK for the 300-699 arrived; absorbing ACK retransmissions until Timer I.
    Confirmed,
    /// Done; the owner may drop the transaction.
    Terminated,
}

impl ServerInviteState {
    /// The state's name, for errors.
    fn name(self) -> &'static str {
        match self {
            Self::Proceeding => "Proceeding",
            Self::Accepted => "Accepted",
            Self::Completed => "Completed",
            Self::Confirmed => "Confirmed",
            Self::Terminated => "Terminated",
        }
    }
}

/// The INVITE server transaction. See the module documentation for the state diagram.
#[derive(Debug)]
pub struct ServerInviteTx {
    /// Current state.
    state: ServerInviteState,
    /// TCP/TLS/WS: no Timer G retransmissions, zero Timer I.
    reliable: bool,
    /// Timer durations.
    cfg: TimerConfig,
    /// The last response sent, resent when the INVITE is retransmitted (Proceeding, Completed)
    /// or when Timer G fires.
    last_response: Option<Bytes>,
    /// Current Timer G interval.
    g_interval: Duration,
    /// Armed timers.
    timers: TimerTable,
    /// Messages waiting for `poll_transmit`.
    transmits: VecDeque<Bytes>,
    /// Events waiting for `poll_event`.
    events: VecDeque<TxEvent>,
}

impl ServerInviteTx {
    /// Creates the transaction for a newly received INVITE, in Proceeding. Nothing is sent: the
    /// TU sends `100 Trying` (or another response) through [`Self::send_response`].
    pub fn new(_now: Instant, reliable: bool, cfg: &TimerConfig) -> Self {
        Self {
            state: ServerInviteState::Proceeding,
            reliable,
            cfg: *cfg,
            last_response: None,
            g_interval: cfg.timer_g(),
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Sends a response from the TU: 1xx in Proceeding; a 2xx in Proceeding (→ Accepted) or in
    /// Accepted (a retransmission by the UAS core, RFC 6026 §8.5); a 300-699 in Proceeding
    /// (→ Completed).
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        response: Bytes,
    ) -> Result<(), TransactionError> {
        let class = StatusClass::of(status).ok_or(TransactionError::InvalidStatus(status))?;
        use ServerInviteState as S;
        match (self.state, class) {
            (S::Proceeding, StatusClass::Provisional) => {
                self.last_response = Some(response.clone());
            }
            (S::Proceeding, StatusClass::Success) => {
                self.last_response = Some(response.clone());
                self.timers.set(Timer::L, now + self.cfg.timer_l());
                self.state = S::Accepted;
            }
            (S::Accepted, StatusClass::Success) => {}
            (S::Proceeding, StatusClass::Failure) => {
                self.last_response = Some(response.clone());
                if !self.reliable {
                    self.g_interval = self.cfg.timer_g();
                    self.timers.set(Timer::G, now + self.g_interval);
                }
                self.timers.set(Timer::H, now + self.cfg.timer_h());
                self.state = S::Completed;
            }
            (state, _) => {
                return Err(TransactionError::ResponseNotAllowed {
                    status,
                    state: state.name(),
                });
            }
        }
        self.transmits.push_back(response);
        Ok(())
    }

    /// The INVITE was received again (RFC 3261 §17.2.1): resends the last response in
    /// Proceeding and Completed; absorbed otherwise.
    pub fn handle_retransmission(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ServerInviteState::Proceeding | ServerInviteState::Completed
        ) && let Some(response) = &self.last_response
        {
            self.transmits.push_back(response.clone());
        }
    }

    /// An ACK matched this transaction. In Completed it confirms the non-2xx final (Timer I);
    /// in Accepted it acknowledges a 2xx and is passed to the TU as [`TxEvent::AckForSuccess`]
    /// (RFC 6026 §8.7); otherwise it is absorbed.
    pub fn handle_ack(&mut self, now: Instant) {
        match self.state {
            ServerInviteState::Completed => {
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                self.state = ServerInviteState::Confirmed;
                let i = self.cfg.timer_i(self.reliable);
                if i.is_zero() {
                    self.terminate();
                } else {
                    self.timers.set(Timer::I, now + i);
                }
            }
            ServerInviteState::Accepted => self.events.push_back(TxEvent::AckForSuccess),
            ServerInviteState::Proceeding
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => {}
        }
    }

    /// Fires the timers that have expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ServerInviteState as S;
        if self.timers.expired(Timer::H, now) && self.state == S::Completed {
            self.events.push_back(TxEvent::Timeout);
            self.terminate();
            return;
        }
        if self.timers.expired(Timer::G, now) && self.state == S::Completed {
            if let Some(response) = &self.last_response {
                self.transmits.push_back(response.clone());
            }
            self.g_interval = self.g_interval.saturating_mul(2).min(self.cfg.t2());
            self.timers.set(Timer::G, now + self.g_interval);
        }
        if self.timers.expired(Timer::I, now) && self.state == S::Confirmed {
            self.terminate();
        }
        if self.timers.expired(Timer::L, now) && self.state == S::Accepted {
            self.terminate();
        }
    }

    /// The transport failed to send a response (RFC 3261 §17.2.4): informs the TU. Terminates
    /// in Proceeding and Completed; in Accepted the transaction stays, as the TU owns the 2xx.
    pub fn transport_error(&mut self, _now: Instant) {
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => {
                self.events.push_back(TxEvent::TransportError);
                self.terminate();
            }
            ServerInviteState::Accepted => self.events.push_back(TxEvent::TransportError),
            ServerInviteState::Confirmed | ServerInviteState::Terminated => {}
        }
    }
}

super::machine_outputs!(ServerInviteTx, ServerInviteState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_not_allowed_after_final() {
        let now = Instant::now();
        let mut tx = ServerInviteTx::new(now, false, &TimerConfig::default());
        assert_eq!(
            tx.send_response(now, 42, Bytes::new()),
            Err(TransactionError::InvalidStatus(42))
        );
        tx.send_response(now, 100, Bytes::from_static(b"100"))
            .unwrap();
        tx.send_response(now, 486, Bytes::from_static(b"486"))
            .unwrap();
        assert_eq!(
            tx.send_response(now, 200, Bytes::from_static(b"200")),
            Err(TransactionError::ResponseNotAllowed {
                status: 200,
                state: "Completed"
            })
        );
    }

    #[test]
    fn reliable_ack_terminates_at_once_and_no_timer_g() {
        let now = Instant::now();
        let mut tx = ServerInviteTx::new(now, true, &TimerConfig::default());
        tx.send_response(now, 486, Bytes::from_static(b"486"))
            .unwrap();
        assert_eq!(tx.poll_timeout(), Some(now + Duration::from_secs(32)));
        tx.handle_ack(now);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"486"[..]));
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn accepted_passes_tu_2xx_and_acks() {
        let now = Instant::now();
        let mut tx = ServerInviteTx::new(now, false, &TimerConfig::default());
        tx.send_response(now, 200, Bytes::from_static(b"200"))
            .unwrap();
        tx.send_response(now, 200, Bytes::from_static(b"200"))
            .unwrap();
        assert_eq!(
            tx.send_response(now, 180, Bytes::from_static(b"180")),
            Err(TransactionError::ResponseNotAllowed {
                status: 180,
                state: "Accepted"
            })
        );
        tx.handle_retransmission(now);
        tx.handle_ack(now);
        assert_eq!(tx.poll_event(), Some(TxEvent::AckForSuccess));
        let sent: Vec<_> = std::iter::from_fn(|| tx.poll_transmit()).collect();
        assert_eq!(sent.len(), 2);
        tx.transport_error(now);
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        assert_eq!(tx.poll_event(), Some(TxEvent::TransportError));
    }
}
