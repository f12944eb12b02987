//! The transaction timer table, modelled on quinn-proto's `connection/timer.rs`.
//!
//! Each machine keeps one [`TimerTable`] with a slot per RFC 3261 §17 timer (plus RFC 6026's L
//! and M). `poll_timeout` returns [`TimerTable::next_timeout`]; the driver arms a single real
//! timer for that instant and calls `handle_timeout(now)` when it fires.

use std::time::Instant;

/// The timers of RFC 3261 §17 (Table 4) and RFC 6026 §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit interval, unreliable transports only (client).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait time for response retransmits after a non-2xx final (INVITE client).
    D,
    /// Non-INVITE request retransmit interval, unreliable transports only (client).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// Wait time for response retransmits (non-INVITE client).
    K,
    /// INVITE non-2xx final response retransmit interval (server).
    G,
    /// Wait time for ACK receipt (INVITE server).
    H,
    /// Wait time for ACK retransmits (INVITE server).
    I,
    /// Wait time for non-INVITE request retransmits (server).
    J,
    /// Wait time for INVITE retransmits after a 2xx (INVITE server, RFC 6026).
    L,
    /// Wait time for 2xx retransmits and forked 2xx (INVITE client, RFC 6026).
    M,
}

impl Timer {
    /// Every timer, in declaration order.
    pub const VALUES: [Self; 12] = [
        Self::A,
        Self::B,
        Self::D,
        Self::E,
        Self::F,
        Self::K,
        Self::G,
        Self::H,
        Self::I,
        Self::J,
        Self::L,
        Self::M,
    ];
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerTable {
    /// Deadline of each timer, indexed by the `Timer` discriminant.
    data: [Option<Instant>; 12],
}

impl TimerTable {
    /// Arms `timer` to fire at `time`, replacing any earlier deadline.
    pub fn set(&mut self, timer: Timer, time: Instant) {
        // The discriminant is always < 12, the array length: this cannot panic.
        self.data[timer as usize] = Some(time);
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.data = [None; 12];
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// Whether `timer` is armed and its deadline is at or before `now`.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// If `timer` has expired at `now`, disarms it and returns `true`.
    pub fn expired(&mut self, timer: Timer, now: Instant) -> bool {
        let fired = self.is_expired(timer, now);
        if fired {
            self.stop(timer);
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn next_timeout_is_the_minimum() {
        let now = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next_timeout(), None);
        table.set(Timer::B, now + Duration::from_secs(32));
        table.set(Timer::A, now + Duration::from_millis(500));
        assert_eq!(table.next_timeout(), Some(now + Duration::from_millis(500)));
        table.stop(Timer::A);
        assert_eq!(table.next_timeout(), Some(now + Duration::from_secs(32)));
        assert!(!table.expired(Timer::B, now));
        assert!(table.expired(Timer::B, now + Duration::from_secs(32)));
        assert_eq!(table.next_timeout(), None);
        table.set(Timer::M, now);
        table.stop_all();
        assert_eq!(table.next_timeout(), None);
        assert_eq!(Timer::VALUES.len(), 12);
    }
}
