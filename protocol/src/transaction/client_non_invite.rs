//! The non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
//!
//! ```text
//!                     new(): send request
//!                     unreliable: Timer E := T1;  Timer F := 64*T1
//!                              |
//!                              v
//!   Timer E: resend      +-----------+
//!   E := min(2*E, T2)    |  Trying   |-------------+
//!          +------------>|           |             |
//!          |             +-----------+             |
//!          +-------------+  |   |                  |
//!                           |   | 1xx: to TU       |
//!    Timer F: Timeout,      |   v                  |
//!    transport error:       | +------------+       | 200-699: to TU
//!    inform TU              | | Proceeding |<--+   |
//!          +----------------+ +------------+   |   |
//!          |                   |  |  |         |   |
//!          |   Timer F, trans- |  |  +---------+   |
//!          |   port error:     |  |  Timer E: resend, E := T2;
//!          |   inform TU       |  |  1xx: to TU    |
//!          |<------------------+  |                |
//!          |                      | 200-699: to TU |
//!          |                      v                v
//!          |                  +-----------------------+
//!          |                  |       Completed       |<-+ 1xx-699: absorb
//!          |                  +-----------------------+--+
//!          |                              |
//!          |                              | Timer K fires
//!          v                              v
//!        +-------------------------------------------+
//!        |                Terminated                 |
//!        +-------------------------------------------+
//! ```
//!
//! Timer K is zero on reliable transports, so Completed is left at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::config::TimerConfig;
use super::error::StatusClass;
use super::event::TxEvent;
use super::timer::{Timer, TimerTable};

/// States of the non-INVITE client transaction, in RFC figure order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNonInviteState {
    /// The request has been sent; no response yet.
    Trying,
    /// A provisional response has been received.
    Proceeding,
    /// A final response has been received; absorbing retransmissions until Timer K.
    Completed,
    /// Done; the owner may drop the transaction.
    Terminated,
}

/// The non-INVITE client transaction. See the module documentation for the state diagram.
#[derive(Debug)]
pub struct ClientNonInviteTx {
    /// Current state.
    state: ClientNonInviteState,
    /// TCP/TLS/WS: no retransmissions, zero Timer K.
    reliable: bool,
    /// Timer durations.
    cfg: TimerConfig,
    /// The serialised request, kept for Timer E retransmissions.
    request: Bytes,
    /// Current Timer E interval.
    e_interval: Duration,
    /// Armed timers.
    timers: TimerTable,
    /// Messages waiting for `poll_transmit`.
    transmits: VecDeque<Bytes>,
    /// Events waiting for `poll_event`.
    events: VecDeque<TxEvent>,
}

impl ClientNonInviteTx {
    /// Starts the transaction: queues `request` for transmission at once and arms Timers E
    /// (unreliable transports only) and F.
    pub fn new(now: Instant, request: Bytes, reliable: bool, cfg: &TimerConfig) -> Self {
        let mut timers = TimerTable::default();
        if !reliable {
            timers.set(Timer::E, now + cfg.timer_e());
        }
        timers.set(Timer::F, now + cfg.timer_f());
        Self {
            state: ClientNonInviteState::Trying,
            reliable,
            cfg: *cfg,
            transmits: VecDeque::from([request.clone()]),
            request,
            e_interval: cfg.timer_e(),
            timers,
            events: VecDeque::new(),
        }
    }

    /// Feeds a response matched to this transaction (RFC 3261 §17.1.3). Status codes outside
    /// 100..=699 are ignored.
    pub fn handle_response(&mut self, now: Instant, status: u16) {
        let Some(class) = StatusClass::of(status) else {
            return;
        };
        use ClientNonInviteState as S;
        match (self.state, class) {
            (S::Trying | S::Proceeding, StatusClass::Provisional) => {
                self.state = S::Proceeding;
                self.events.push_back(TxEvent::Provisional(status));
            }
            (S::Trying | S::Proceeding, StatusClass::Success | StatusClass::Failure) => {
                self.timers.stop_all();
                self.events.push_back(TxEvent::Final(status));
                self.state = S::Completed;
                let k = self.cfg.timer_k(self.reliable);
                if k.is_zero() {
                    self.terminate();
                } else {
                    self.timers.set(Timer::K, now + k);
                }
            }
            // Completed absorbs retransmitted responses.
            _ => {}
        }
    }

    /// Fires the timers that have expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientNonInviteState as S;
        if self.timers.expired(Timer::F, now) && matches!(self.state, S::Trying | S::Proceeding) {
            self.events.push_back(TxEvent::Timeout);
            self.terminate();
            return;
        }
        if self.timers.expired(Timer::E, now) {
            match self.state {
                S::Trying => {
                    self.e_interval = self.e_interval.saturating_mul(2).min(self.cfg.t2());
                }
                // RFC 3261 §17.1.2.2: in Proceeding the interval is T2.
                S::Proceeding => self.e_interval = self.cfg.t2(),
                S::Completed | S::Terminated => return,
            }
            self.transmits.push_back(self.request.clone());
            self.timers.set(Timer::E, now + self.e_interval);
        }
        if self.timers.expired(Timer::K, now) && self.state == S::Completed {
            self.terminate();
        }
    }

    /// The transport failed to send the request (RFC 3261 §17.1.4): informs the TU and
    /// terminates.
    pub fn transport_error(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        ) {
            self.events.push_back(TxEvent::TransportError);
            self.terminate();
        }
    }
}

super::machine_outputs!(ClientNonInviteTx, ClientNonInviteState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_then_timer_k() {
        let now = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientNonInviteTx::new(now, Bytes::from_static(b"OPTIONS"), false, &cfg);
        let _ = tx.poll_transmit();
        tx.handle_response(now, 100);
        tx.handle_response(now, 200);
        tx.handle_response(now, 200);
        assert_eq!(tx.state(), ClientNonInviteState::Completed);
        assert_eq!(tx.poll_timeout(), Some(now + Duration::from_secs(5)));
        tx.handle_timeout(now + Duration::from_secs(5));
        assert!(tx.is_terminated());
        let events: Vec<_> = std::iter::from_fn(|| tx.poll_event()).collect();
        assert_eq!(
            events,
            [
                TxEvent::Provisional(100),
                TxEvent::Final(200),
                TxEvent::Terminated
            ]
        );
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn transport_error_terminates() {
        let now = Instant::now();
        let mut tx = ClientNonInviteTx::new(
            now,
            Bytes::from_static(b"BYE"),
            true,
            &TimerConfig::default(),
        );
        tx.transport_error(now);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(TxEvent::TransportError));
    }
}
