//! The node's own lease, as a sans-IO state machine: what to ask Redis next, and whether the
//! node may act as an owner at a given instant.
//!
//! ```text
//!            Acquired(e)                 Renewed
//!  (1) Unleased ────────────▶ (2) Held{e} ◀──────┐
//!        ▲                     │  │ └────────────┘
//!        │ holdoff over        │  │ Lost reply, or `valid_until` passed
//!        │ (Acquire sent)      │  ▼ (Redis unreachable, or the process was frozen)
//!        └────────────── (3) Fenced{since}
//! ```
//!
//! The lease is valid until `sent_at + ttl - margin`, where `sent_at` is when the successful
//! renewal was *sent*: Redis starts its `PX` timer later than that, so the node always gives up
//! before Redis lets another incarnation in. A node that fences itself waits
//! [`Timing::rejoin_holdoff`] and then acquires a **new** epoch; it never resumes an old one.
//!
//! Time is passed in; nothing here sleeps or reads a clock.

use std::time::Instant;

use crate::config::Timing;
use crate::id::Epoch;

/// What to send to Redis next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRequest {
    /// Start a new incarnation: `INCR` the epoch counter and set the lease to it.
    Acquire,
    /// Extend the lease if it still holds this epoch.
    Renew(Epoch),
}

/// Redis's answer to a [`LeaseRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseReply {
    /// A new lease was set with this epoch.
    Acquired(Epoch),
    /// The lease still held our epoch and was extended.
    Renewed,
    /// The lease is gone or holds another epoch: we are no longer this node's incarnation.
    Lost,
}

/// Where the lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never held (start-up).
    Unleased,
    /// Held with `epoch` until `valid_until`.
    Held { epoch: Epoch, valid_until: Instant },
    /// Lost at `since`.
    Fenced { since: Instant },
}

/// A snapshot for other tasks: what [`Lease`] says, plus when it stops holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseStatus {
    /// The current epoch, while held.
    pub epoch: Option<Epoch>,
    /// When the lease lapses unless renewed; `None` when not held.
    pub valid_until: Option<Instant>,
    /// When the lease was last acquired or renewed.
    pub renewed_at: Option<Instant>,
    /// When the current epoch was acquired (the acquisition's send time).
    pub acquired_at: Option<Instant>,
    /// How many times this process lost its lease.
    pub times_fenced: u64,
}

impl LeaseStatus {
    /// The epoch to attach to owner writes at `now`, or `None` when the node is fenced.
    pub fn owner_epoch(&self, now: Instant) -> Option<Epoch> {
        match self.valid_until {
            Some(until) if now < until => self.epoch,
            _ => None,
        }
    }
}

/// The lease state machine of this node.
#[derive(Debug, Clone)]
pub struct Lease {
    timing: Timing,
    state: State,
    /// When the next request may be sent.
    next_request: Instant,
    /// A request is out and its reply has not been handled.
    in_flight: bool,
    renewed_at: Option<Instant>,
    acquired_at: Option<Instant>,
    times_fenced: u64,
}

impl Lease {
    /// A node that has not yet asked for a lease; the first request is due at `now`.
    pub fn new(timing: Timing, now: Instant) -> Self {
        Self {
            timing,
            state: State::Unleased,
            next_request: now,
            in_flight: false,
            renewed_at: None,
            acquired_at: None,
            times_fenced: 0,
        }
    }

    /// The request to send at `now`, if one is due; the caller sends it and reports the
    /// outcome with [`Self::handle_reply`] or [`Self::handle_error`], passing `now` as
    /// `sent_at`.
    pub fn poll_request(&mut self, now: Instant) -> Option<LeaseRequest> {
        self.handle_timeout(now);
        if self.in_flight || now < self.next_request {
            return None;
        }
        let request = match self.state {
            State::Unleased | State::Fenced { .. } => LeaseRequest::Acquire,
            State::Held { epoch, .. } => LeaseRequest::Renew(epoch),
        };
        self.in_flight = true;
        Some(request)
    }

    /// Applies Redis's reply to the request sent at `sent_at`, received at `now`.
    pub fn handle_reply(&mut self, sent_at: Instant, now: Instant, reply: LeaseReply) {
        self.in_flight = false;
        let valid_until = sent_at
            + self
                .timing
                .lease_ttl
                .saturating_sub(self.timing.lease_margin);
        match (self.state, reply) {
            (_, LeaseReply::Acquired(epoch)) => {
                self.state = State::Held { epoch, valid_until };
                self.renewed_at = Some(sent_at);
                self.acquired_at = Some(sent_at);
                self.next_request = sent_at + self.timing.renew_every;
            }
            (State::Held { epoch, .. }, LeaseReply::Renewed) => {
                self.state = State::Held { epoch, valid_until };
                self.renewed_at = Some(sent_at);
                self.next_request = sent_at + self.timing.renew_every;
            }
            (State::Held { .. }, LeaseReply::Lost) => self.fence(now),
            // A renewal answer while not holding: nothing to extend; ask again soon.
            (State::Unleased | State::Fenced { .. }, LeaseReply::Renewed | LeaseReply::Lost) => {
                self.next_request = now;
            }
        }
        self.handle_timeout(now);
    }

    /// Redis did not answer (timeout, connection refused): retry soon; the lease lapses on its
    /// own when `valid_until` passes.
    pub fn handle_error(&mut self, now: Instant) {
        self.in_flight = false;
        self.next_request = now + self.timing.renew_every / 4;
        self.handle_timeout(now);
    }

    /// Notices a lapsed lease. Called by every other input too.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::Held { valid_until, .. } = self.state
            && now >= valid_until
        {
            self.fence(now);
        }
    }

    /// The next instant something is due: a request, or the lease lapsing.
    pub fn poll_timeout(&self) -> Instant {
        match self.state {
            State::Held { valid_until, .. } => self.next_request.min(valid_until),
            State::Unleased | State::Fenced { .. } => self.next_request,
        }
    }

    /// Whether the node must not act as an owner at `now`.
    pub fn is_fenced(&self, now: Instant) -> bool {
        self.status().owner_epoch(now).is_none()
    }

    /// Since when the node is fenced after losing a lease (`None` when held or never held).
    pub fn fenced_since(&self) -> Option<Instant> {
        match self.state {
            State::Fenced { since } => Some(since),
            State::Unleased | State::Held { .. } => None,
        }
    }

    /// A snapshot for other tasks.
    pub fn status(&self) -> LeaseStatus {
        let (epoch, valid_until) = match self.state {
            State::Held { epoch, valid_until } => (Some(epoch), Some(valid_until)),
            State::Unleased | State::Fenced { .. } => (None, None),
        };
        LeaseStatus {
            epoch,
            valid_until,
            renewed_at: self.renewed_at,
            acquired_at: self.acquired_at.filter(|_| epoch.is_some()),
            times_fenced: self.times_fenced,
        }
    }

    fn fence(&mut self, now: Instant) {
        self.state = State::Fenced { since: now };
        self.times_fenced += 1;
        self.next_request = now + self.timing.rejoin_holdoff;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn held(t0: Instant) -> Lease {
        let mut lease = Lease::new(Timing::default(), t0);
        assert_eq!(lease.poll_request(t0), Some(LeaseRequest::Acquire));
        lease.handle_reply(t0, t0 + ms(2), LeaseReply::Acquired(Epoch(7)));
        lease
    }

    #[test]
    fn acquires_then_renews_every_second() {
        let t0 = Instant::now();
        let mut lease = held(t0);
        assert_eq!(lease.status().owner_epoch(t0 + ms(3)), Some(Epoch(7)));
        assert_eq!(lease.poll_request(t0 + ms(500)), None);
        assert_eq!(lease.poll_timeout(), t0 + ms(1000));
        let t1 = t0 + ms(1000);
        assert_eq!(lease.poll_request(t1), Some(LeaseRequest::Renew(Epoch(7))));
        assert_eq!(lease.poll_request(t1), None, "one request in flight");
        lease.handle_reply(t1, t1 + ms(1), LeaseReply::Renewed);
        // Valid until the renewal's send time + ttl - margin.
        assert!(!lease.is_fenced(t1 + ms(2499)));
        assert!(lease.is_fenced(t1 + ms(2500)));
    }

    #[test]
    fn redis_silence_fences_before_redis_expires_the_key() {
        let t0 = Instant::now();
        let mut lease = held(t0);
        for k in 1..=9 {
            let t = t0 + ms(250 * k);
            if lease.poll_request(t).is_some() {
                lease.handle_error(t + ms(500));
            }
        }
        // ttl 3000 - margin 500 after the send at t0.
        assert!(!lease.is_fenced(t0 + ms(2499)));
        lease.handle_timeout(t0 + ms(2500));
        assert!(lease.is_fenced(t0 + ms(2500)));
        assert_eq!(lease.fenced_since(), Some(t0 + ms(2500)));
        assert_eq!(lease.status().times_fenced, 1);
    }

    #[test]
    fn a_frozen_process_is_fenced_as_soon_as_it_looks_and_rejoins_with_a_new_epoch() {
        let t0 = Instant::now();
        let mut lease = held(t0);
        // SIGSTOP for 10 s: no input at all, then the first look at the clock.
        let thaw = t0 + ms(10_000);
        assert!(lease.is_fenced(thaw));
        assert_eq!(lease.poll_request(thaw), None, "hold-off before rejoining");
        assert_eq!(lease.poll_timeout(), thaw + ms(1000));
        let later = thaw + ms(1000);
        assert_eq!(lease.poll_request(later), Some(LeaseRequest::Acquire));
        lease.handle_reply(later, later + ms(1), LeaseReply::Acquired(Epoch(8)));
        assert_eq!(lease.status().owner_epoch(later + ms(2)), Some(Epoch(8)));
        assert_eq!(lease.status().times_fenced, 1);
    }

    #[test]
    fn a_lost_renewal_fences_at_once() {
        let t0 = Instant::now();
        let mut lease = held(t0);
        let t1 = t0 + ms(1000);
        assert_eq!(lease.poll_request(t1), Some(LeaseRequest::Renew(Epoch(7))));
        lease.handle_reply(t1, t1 + ms(1), LeaseReply::Lost);
        assert!(lease.is_fenced(t1 + ms(1)));
        assert_eq!(lease.poll_request(t1 + ms(999)), None);
        assert_eq!(
            lease.poll_request(t1 + ms(1001)),
            Some(LeaseRequest::Acquire)
        );
    }

    #[test]
    fn start_up_failures_retry_quickly_and_stay_fenced() {
        let t0 = Instant::now();
        let mut lease = Lease::new(Timing::default(), t0);
        assert!(lease.is_fenced(t0));
        assert_eq!(lease.poll_request(t0), Some(LeaseRequest::Acquire));
        lease.handle_error(t0 + ms(500));
        assert_eq!(lease.poll_timeout(), t0 + ms(750));
        assert_eq!(
            lease.poll_request(t0 + ms(750)),
            Some(LeaseRequest::Acquire)
        );
        assert_eq!(lease.status().times_fenced, 0);
    }
}
