//! The INVITE client transaction (RFC 3261 §17.1.1, as updated by RFC 6026 §8.4).
//!
//! ```text
//!                new(): send INVITE; Timer B := 64*T1; unreliable: Timer A := T1
//!                                   |
//!                                   v
//!                           +--------------+  Timer A fires: resend INVITE,
//!        +------------------|   Calling    |---+  A := 2*A
//!        |                  +--------------+<--+
//!        |                    |    |     |
//!        |                    |    |     +-------------------------+
//!        |    300-699: to TU, |    | 1xx: to TU                    |
//!        |    send ACK        |    v                               |
//!        |                    |  +--------------+  1xx: to TU      | 2xx: to TU
//!        |                    |  |  Proceeding  |---+              |
//!        |                    |  +--------------+<--+              |
//!        |                    |    |         |                     |
//!        |                    |    |         | 2xx: to TU          |
//!        |                    |    | 300-699:+-------------------+ |
//!        |                    |    | to TU, send ACK             | |
//!        |                    v    v                             v v
//!        |               +--------------+                 +--------------+
//!        |               |  Completed   |---+             |   Accepted   |---+ 2xx: to TU
//!        |               +--------------+<--+             +--------------+<--+
//!        |                    |   300-699: resend ACK            |
//!        | Timer B: Timeout;  | Timer D fires;                   | Timer M fires
//!        | transport error:   | transport error: inform TU       |
//!        | inform TU          |                                  |
//!        v                    v                                  v
//!      +----------------------------------------------------------------+
//!      |                           Terminated                           |
//!      +----------------------------------------------------------------+
//! ```
//!
//! Timer D is zero on reliable transports, so Completed is left at once. A transport error in
//! Proceeding also terminates (RFC 3261 §17.1.4), though the RFC figure omits it. Accepted
//! (RFC 6026) replaces RFC 3261's direct Calling/Proceeding → Terminated on 2xx: the
//! transaction lingers for Timer M so that 2xx retransmissions and 2xx from other forks reach
//! the TU, which ACKs them itself (the ACK for a 2xx is not part of the transaction, RFC 3261
//! §13.2.2.4).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::config::TimerConfig;
use super::error::StatusClass;
use super::event::TxEvent;
use super::timer::{Timer, TimerTable};

/// States of the INVITE client transaction, in RFC figure order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientInviteState {
    /// The INVITE has been sent; no response yet.
    Calling,
    /// A provisional response has been received. No timer runs here: a proxy bounds this
    /// state with its Timer C (RFC 3261 §16.6), a UA with its own policy (then CANCEL).
    Proceeding,
    /// A 2xx has been received; waiting out Timer M for retransmissions and forks (RFC 6026).
    Accepted,
    /// A 300-699 has been received and ACKed; absorbing retransmissions until Timer D.
    Completed,
    /// Done; the owner may drop the transaction.
    Terminated,
}

/// What the TU should do about a CANCEL it wants to send (RFC 3261 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelPermit {
    /// A provisional response has been received: the CANCEL may be sent now.
    SendNow,
    /// No provisional response yet: the CANCEL must wait. The transaction emits
    /// [`TxEvent::CancelAllowed`] when the first provisional response arrives.
    AfterProvisional,
    /// A final response has been received (or the transaction ended): a CANCEL has no effect
    /// and must not be sent.
    TooLate,
}

/// The INVITE client transaction. See the module documentation for the state diagram.
#[derive(Debug)]
pub struct ClientInviteTx {
    /// Current state.
    state: ClientInviteState,
    /// TCP/TLS/WS: no retransmissions, zero Timer D.
    reliable: bool,
    /// Timer durations.
    cfg: TimerConfig,
    /// The serialised INVITE, kept for Timer A retransmissions.
    request: Bytes,
    /// The ACK for a 300-699 final response, built once and resent for each retransmission.
    ack: Option<Bytes>,
    /// Current Timer A interval (doubles on each firing, RFC 3261 §17.1.1.2).
    a_interval: Duration,
    /// Whether the TU asked to CANCEL before the first provisional response.
    cancel_pending: bool,
    /// Armed timers.
    timers: TimerTable,
    /// Messages waiting for `poll_transmit`.
    transmits: VecDeque<Bytes>,
    /// Events waiting for `poll_event`.
    events: VecDeque<TxEvent>,
}

impl ClientInviteTx {
    /// Starts the transaction: queues `request` for transmission at once and arms Timers A
    /// (unreliable transports only) and B.
    pub fn new(now: Instant, request: Bytes, reliable: bool, cfg: &TimerConfig) -> Self {
        let mut timers = TimerTable::default();
        if !reliable {
            timers.set(Timer::A, now + cfg.timer_a());
        }
        timers.set(Timer::B, now + cfg.timer_b());
        Self {
            state: ClientInviteState::Calling,
            reliable,
            cfg: *cfg,
            transmits: VecDeque::from([request.clone()]),
            request,
            ack: None,
            a_interval: cfg.timer_a(),
            cancel_pending: false,
            timers,
            events: VecDeque::new(),
        }
    }

    /// Feeds a response matched to this transaction (RFC 3261 §17.1.3).
    ///
    /// `ack` builds the ACK for a 300-699 response (RFC 3261 §17.1.1.3); it is called at most
    /// once per transaction, for the first such response, and the ACK is re-sent unchanged for
    /// every retransmission of the final response. Status codes outside 100..=699 are ignored.
    pub fn handle_response(&mut self, now: Instant, status: u16, ack: impl FnOnce() -> Bytes) {
        let Some(class) = StatusClass::of(status) else {
            return;
        };
        use ClientInviteState as S;
        match (self.state, class) {
            (S::Calling | S::Proceeding, StatusClass::Provisional) => {
                if self.state == S::Calling {
                    // Timer B only guards the Calling state; Timer C is the TU's business.
                    self.timers.stop(Timer::A);
                    self.timers.stop(Timer::B);
                    self.state = S::Proceeding;
                }
                self.events.push_back(TxEvent::Provisional(status));
                if std::mem::take(&mut self.cancel_pending) {
                    self.events.push_back(TxEvent::CancelAllowed);
                }
            }
            (S::Calling | S::Proceeding, StatusClass::Success) => {
                self.timers.stop_all();
                self.timers.set(Timer::M, now + self.cfg.timer_m());
                self.state = S::Accepted;
                self.cancel_pending = false;
                self.events.push_back(TxEvent::Final(status));
            }
            (S::Calling | S::Proceeding, StatusClass::Failure) => {
                self.timers.stop_all();
                let ack = ack();
                self.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                self.cancel_pending = false;
                self.events.push_back(TxEvent::Final(status));
                let d = self.cfg.timer_d(self.reliable);
                self.state = S::Completed;
                if d.is_zero() {
                    self.terminate();
                } else {
                    self.timers.set(Timer::D, now + d);
                }
            }
            (S::Accepted, StatusClass::Success) => {
                self.events.push_back(TxEvent::RetransmittedSuccess(status));
            }
            (S::Completed, StatusClass::Failure) => {
                if let Some(ack) = &self.ack {
                    self.transmits.push_back(ack.clone());
                }
            }
            // Late provisionals, non-2xx after a 2xx and 2xx after a non-2xx are absorbed.
            _ => {}
        }
    }

    /// Fires the timers that have expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientInviteState as S;
        if self.timers.expired(Timer::B, now) && self.state == S::Calling {
            self.events.push_back(TxEvent::Timeout);
            self.terminate();
            return;
        }
        if self.timers.expired(Timer::A, now) && self.state == S::Calling {
            self.transmits.push_back(self.request.clone());
            self.a_interval = self.a_interval.saturating_mul(2);
            self.timers.set(Timer::A, now + self.a_interval);
        }
        if self.timers.expired(Timer::D, now) && self.state == S::Completed {
            self.terminate();
        }
        if self.timers.expired(Timer::M, now) && self.state == S::Accepted {
            self.terminate();
        }
    }

    /// The TU wants to cancel the INVITE: says whether a CANCEL may be sent (RFC 3261 §9.1). If
    /// the answer is [`CancelPermit::AfterProvisional`], [`TxEvent::CancelAllowed`] follows the
    /// first provisional response; a final response instead makes the request moot.
    pub fn cancel_requested(&mut self) -> CancelPermit {
        match self.state {
            ClientInviteState::Calling => {
                self.cancel_pending = true;
                CancelPermit::AfterProvisional
            }
            ClientInviteState::Proceeding => CancelPermit::SendNow,
            ClientInviteState::Accepted
            | ClientInviteState::Completed
            | ClientInviteState::Terminated => CancelPermit::TooLate,
        }
    }

    /// The transport failed to send a message of this transaction (RFC 3261 §17.1.4): informs
    /// the TU and terminates. Ignored in Accepted (the transaction sends nothing there) and
    /// Terminated.
    pub fn transport_error(&mut self, _now: Instant) {
        match self.state {
            ClientInviteState::Calling
            | ClientInviteState::Proceeding
            | ClientInviteState::Completed => {
                self.events.push_back(TxEvent::TransportError);
                self.terminate();
            }
            ClientInviteState::Accepted | ClientInviteState::Terminated => {}
        }
    }
}

super::machine_outputs!(ClientInviteTx, ClientInviteState);

#[cfg(test)]
mod tests {
    use super::*;

    fn ack() -> Bytes {
        Bytes::from_static(b"ACK")
    }

    #[test]
    fn cancel_only_after_provisional() {
        let now = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientInviteTx::new(now, Bytes::from_static(b"INVITE"), false, &cfg);
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"INVITE"[..]));
        assert_eq!(tx.cancel_requested(), CancelPermit::AfterProvisional);
        tx.handle_response(now, 180, ack);
        assert_eq!(tx.poll_event(), Some(TxEvent::Provisional(180)));
        assert_eq!(tx.poll_event(), Some(TxEvent::CancelAllowed));
        assert_eq!(tx.cancel_requested(), CancelPermit::SendNow);
        tx.handle_response(now, 487, ack);
        assert_eq!(tx.cancel_requested(), CancelPermit::TooLate);
    }

    #[test]
    fn reliable_failure_terminates_at_once_with_ack_queued() {
        let now = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientInviteTx::new(now, Bytes::from_static(b"INVITE"), true, &cfg);
        let _ = tx.poll_transmit();
        assert_eq!(tx.poll_timeout(), Some(now + Duration::from_secs(32)));
        tx.handle_response(now, 603, ack);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"ACK"[..]));
        assert_eq!(tx.poll_event(), Some(TxEvent::Final(603)));
        assert_eq!(tx.poll_event(), Some(TxEvent::Terminated));
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn invalid_status_is_ignored_and_ack_not_built_for_2xx() {
        let now = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientInviteTx::new(now, Bytes::from_static(b"INVITE"), false, &cfg);
        let _ = tx.poll_transmit();
        tx.handle_response(now, 99, || unreachable!("no ACK for an invalid status"));
        tx.handle_response(now, 700, || unreachable!("no ACK for an invalid status"));
        assert_eq!(tx.state(), ClientInviteState::Calling);
        tx.handle_response(now, 200, || unreachable!("the TU ACKs a 2xx"));
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert_eq!(tx.poll_transmit(), None);
    }

    #[test]
    fn transport_error_terminates() {
        let now = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientInviteTx::new(now, Bytes::from_static(b"INVITE"), false, &cfg);
        tx.transport_error(now);
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), Some(TxEvent::TransportError));
        assert_eq!(tx.poll_event(), Some(TxEvent::Terminated));
        assert_eq!(tx.poll_timeout(), None);
    }
}
