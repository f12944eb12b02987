//! The four RFC 3261 §17 transaction state machines, sans-IO, with the RFC 6026 corrections.
//!
//! - [`ClientInviteTx`] (§17.1.1, RFC 6026 §8.4): Calling, Proceeding, Accepted, Completed,
//!   Terminated.
//! - [`ClientNonInviteTx`] (§17.1.2): Trying, Proceeding, Completed, Terminated.
//! - [`ServerInviteTx`] (§17.2.1, RFC 6026 §8.5-§8.7): Proceeding, Accepted, Completed,
//!   Confirmed, Terminated.
//! - [`ServerNonInviteTx`] (§17.2.2): Trying, Proceeding, Completed, Terminated.
//!
//! Each machine's file carries its state diagram. The machines follow the quinn-proto
//! `Connection` shape: `handle_*` methods take network input and timer expiry with the current
//! `Instant`; mutators (`send_response`, `cancel_requested`) carry TU commands; `poll_transmit`,
//! `poll_timeout` and `poll_event` return output. After every call the driver drains
//! `poll_transmit` (to the transport) and `poll_event` (to the TU), then arms one timer for
//! `poll_timeout` and calls `handle_timeout(now)` when it fires. A transaction never reads a
//! clock and never parses: it handles already-serialised messages as [`bytes::Bytes`] and the
//! few facts it needs (status code, retransmission, ACK) as arguments.
//!
//! `reliable` (TCP, TLS, WS) is fixed at construction: no request retransmissions (Timers A, E)
//! or response retransmissions (Timer G), and zero Timers D, I, J and K, which the machines
//! apply by terminating at once rather than arming a zero timer.
//!
//! A driver loop, with the network and the TU stubbed out:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use sipmesh_protocol::transaction::{ClientNonInviteTx, TimerConfig, TxEvent};
//!
//! let start = Instant::now();
//! let mut tx = ClientNonInviteTx::new(start, Bytes::from_static(b"OPTIONS ..."), false,
//!     &TimerConfig::default());
//! let mut now = start;
//! let mut sent = 0;
//! loop {
//!     while let Some(_datagram) = tx.poll_transmit() {
//!         sent += 1; // hand to the socket
//!     }
//!     while let Some(event) = tx.poll_event() {
//!         if event == TxEvent::Timeout {
//!             // tell the TU: 408 Request Timeout (RFC 3261 §8.1.3.1)
//!         }
//!     }
//!     let Some(deadline) = tx.poll_timeout() else { break };
//!     now = deadline; // a real driver sleeps until `deadline` or until a response arrives
//!     tx.handle_timeout(now);
//! }
//! assert!(tx.is_terminated());
//! assert_eq!(sent, 11); // 0, 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5 s
//! assert_eq!(now - start, Duration::from_secs(32)); // Timer F
//! ```
//!
//! [`key`] matches messages to transactions (§17.1.3, §17.2.3); [`TimerTable`] holds the
//! deadlines; [`TimerConfig`] the RFC 3261 intervals.

/// The output side every machine shares: `poll_transmit`, `poll_timeout`, `poll_event`,
/// `state`, `is_terminated` and the private `terminate`, for a machine `$tx` with fields
/// `state: $state`, `timers: TimerTable`, `transmits: VecDeque<Bytes>` and
/// `events: VecDeque<TxEvent>`, whose `$state` has a `Terminated` variant.
macro_rules! machine_outputs {
    ($tx:ident, $state:ident) => {
        impl $tx {
            /// The next message to send to the peer. Drain it after every call, also once
            /// terminated (a client INVITE queues its final ACK as it terminates on a reliable
            /// transport).
            #[must_use]
            pub fn poll_transmit(&mut self) -> Option<Bytes> {
                self.transmits.pop_front()
            }

            /// The instant at which `handle_timeout` must next be called.
            pub fn poll_timeout(&self) -> Option<Instant> {
                self.timers.next_timeout()
            }

            /// The next event for the TU.
            pub fn poll_event(&mut self) -> Option<TxEvent> {
                self.events.pop_front()
            }

            /// The current state.
            pub fn state(&self) -> $state {
                self.state
            }

            /// Whether the transaction has terminated.
            pub fn is_terminated(&self) -> bool {
                self.state == $state::Terminated
            }

            /// Moves to Terminated, stopping every timer and telling the TU.
            fn terminate(&mut self) {
                self.timers.stop_all();
                self.state = $state::Terminated;
                self.events.push_back(TxEvent::Terminated);
            }
        }
    };
}
use machine_outputs;

mod client_invite;
mod client_non_invite;
mod config;
mod error;
mod event;
pub mod key;
mod server_invite;
mod server_non_invite;
mod timer;

#[cfg(test)]
mod tests;

pub use client_invite::{CancelPermit, ClientInviteState, ClientInviteTx};
pub use client_non_invite::{ClientNonInviteState, ClientNonInviteTx};
pub use config::{TIMER_D_UNRELIABLE_MIN, TRYING_DELAY, TimerConfig, TimerConfigError};
pub use error::TransactionError;
pub use event::TxEvent;
pub use key::{RequestFacts, TransactionKey, generate_branch};
pub use server_invite::{ServerInviteState, ServerInviteTx};
pub use server_non_invite::{ServerNonInviteState, ServerNonInviteTx};
pub use timer::{Timer, TimerTable};

/// What every transaction machine offers its driver, whatever its kind: the output side of the
/// quinn-style API plus the timer input. Lets a driver treat the four machines alike.
pub trait Transaction {
    /// The next message to send to the peer.
    fn poll_transmit(&mut self) -> Option<bytes::Bytes>;
    /// When `handle_timeout` must next be called.
    fn poll_timeout(&self) -> Option<std::time::Instant>;
    /// The next event for the transaction user.
    fn poll_event(&mut self) -> Option<TxEvent>;
    /// Fires the timers that expired at `now`.
    fn handle_timeout(&mut self, now: std::time::Instant);
    /// Whether the machine reached Terminated.
    fn is_terminated(&self) -> bool;
}

macro_rules! impl_transaction {
    ($($machine:ty),*) => {$(
        impl Transaction for $machine {
            fn poll_transmit(&mut self) -> Option<bytes::Bytes> {
                <$machine>::poll_transmit(self)
            }
            fn poll_timeout(&self) -> Option<std::time::Instant> {
                <$machine>::poll_timeout(self)
            }
            fn poll_event(&mut self) -> Option<TxEvent> {
                <$machine>::poll_event(self)
            }
            fn handle_timeout(&mut self, now: std::time::Instant) {
                <$machine>::handle_timeout(self, now)
            }
            fn is_terminated(&self) -> bool {
                <$machine>::is_terminated(self)
            }
        }
    )*};
}

impl_transaction!(
    ClientInviteTx,
    ClientNonInviteTx,
    ServerInviteTx,
    ServerNonInviteTx
);
