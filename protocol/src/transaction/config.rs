//! Transaction timer configuration: the RFC 3261 base intervals T1, T2 and T4 and the derived
//! timer durations of RFC 3261 §17 (Table 4 of RFC 3261 Appendix A) and RFC 6026 §8.

use std::time::Duration;

use thiserror::Error;

/// Minimum value of Timer D on an unreliable transport (RFC 3261 §17.1.1.2: "at least 32
/// seconds").
pub const TIMER_D_UNRELIABLE_MIN: Duration = Duration::from_secs(32);

/// Delay after which a server transaction user should send `100 Trying` for an INVITE if it has
/// not produced a provisional response yet (RFC 3261 §17.2.1: "more than 200 ms").
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// The base timer values from which every transaction timer is derived.
///
/// The defaults are the values recommended by RFC 3261 §17.1.1.1 and Table 4 (Appendix A).
/// Durations derived from them (see the methods) follow Table 4 and RFC 6026 §8.4 / §8.7.
/// The fields are private so that every value has passed [`TimerConfig::new`]'s checks (a zero
/// T1 would make the retransmission timers spin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1, the round-trip time estimate: 500 ms by default (RFC 3261 §17.1.1.1, "T1 is an
    /// estimate of the round-trip time (RTT), and it defaults to 500 ms"). It is the initial
    /// interval of Timers A, E and G and the unit of the 64*T1 transaction timeouts.
    t1: Duration,
    /// T2, the maximum retransmission interval for non-INVITE requests and INVITE responses:
    /// 4 s by default (RFC 3261 §17.1.2.2 and Table 4).
    t2: Duration,
    /// T4, the maximum duration a message will remain in the network: 5 s by default (RFC 3261
    /// §17.1.2.2 and Table 4). It sizes Timers I and K on unreliable transports.
    t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// A [`TimerConfig`] that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TimerConfigError {
    /// T1 was zero: retransmissions would spin and every transaction time out at once.
    #[error("T1 must be greater than zero")]
    ZeroT1,
    /// T2 was smaller than T1: the retransmission cap would be below the first interval.
    #[error("T2 ({t2:?}) must not be smaller than T1 ({t1:?})")]
    T2BelowT1 {
        /// The configured T1.
        t1: Duration,
        /// The configured T2.
        t2: Duration,
    },
}

impl TimerConfig {
    /// Builds a configuration from explicit T1, T2 and T4, checking that T1 > 0 and T2 >= T1.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sipmesh_protocol::transaction::TimerConfig;
    /// let cfg = TimerConfig::new(Duration::from_millis(250), Duration::from_secs(4),
    ///     Duration::from_secs(5)).unwrap();
    /// assert_eq!(cfg.timer_b(), Duration::from_secs(16));
    /// ```
    pub fn new(t1: Duration, t2: Duration, t4: Duration) -> Result<Self, TimerConfigError> {
        if t1.is_zero() {
            return Err(TimerConfigError::ZeroT1);
        }
        if t2 < t1 {
            return Err(TimerConfigError::T2BelowT1 { t1, t2 });
        }
        Ok(Self { t1, t2, t4 })
    }

    /// T1, the RTT estimate.
    pub fn t1(&self) -> Duration {
        self.t1
    }

    /// T2, the retransmission interval cap.
    pub fn t2(&self) -> Duration {
        self.t2
    }

    /// T4, the maximum lifetime of a message in the network.
    pub fn t4(&self) -> Duration {
        self.t4
    }

    /// 64*T1, the common transaction timeout.
    fn sixty_four_t1(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer A initial value: T1 (RFC 3261 §17.1.1.2), INVITE request retransmit, UDP only.
    pub fn timer_a(&self) -> Duration {
        self.t1
    }

    /// Timer B: 64*T1 (RFC 3261 §17.1.1.2), INVITE client transaction timeout.
    pub fn timer_b(&self) -> Duration {
        self.sixty_four_t1()
    }

    /// Timer D: wait time for response retransmits after an INVITE failure. At least 32 s for
    /// unreliable transports (here `max(32 s, 64*T1)` so it covers the server's Timer H), zero
    /// for reliable ones (RFC 3261 §17.1.1.2, Table 4).
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            TIMER_D_UNRELIABLE_MIN.max(self.sixty_four_t1())
        }
    }

    /// Timer E initial value: T1 (RFC 3261 §17.1.2.2), non-INVITE request retransmit, UDP only.
    pub fn timer_e(&self) -> Duration {
        self.t1
    }

    /// Timer F: 64*T1 (RFC 3261 §17.1.2.2), non-INVITE client transaction timeout.
    pub fn timer_f(&self) -> Duration {
        self.sixty_four_t1()
    }

    /// Timer G initial value: T1 (RFC 3261 §17.2.1), INVITE final response retransmit, UDP
    /// only.
    pub fn timer_g(&self) -> Duration {
        self.t1
    }

    /// Timer H: 64*T1 (RFC 3261 §17.2.1), wait time for ACK receipt.
    pub fn timer_h(&self) -> Duration {
        self.sixty_four_t1()
    }

    /// Timer I: T4 for unreliable transports, zero for reliable ones (RFC 3261 §17.2.1), wait
    /// time for ACK retransmits.
    pub fn timer_i(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J: 64*T1 for unreliable transports, zero for reliable ones (RFC 3261 §17.2.2),
    /// wait time for non-INVITE request retransmits.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.sixty_four_t1()
        }
    }

    /// Timer K: T4 for unreliable transports, zero for reliable ones (RFC 3261 §17.1.2.2), wait
    /// time for response retransmits.
    pub fn timer_k(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer L: 64*T1 (RFC 6026 §8.7), wait time for accepted INVITE request retransmits at
    /// the server.
    pub fn timer_l(&self) -> Duration {
        self.sixty_four_t1()
    }

    /// Timer M: 64*T1 (RFC 6026 §8.4), wait time for retransmission of 2xx to INVITE or
    /// additional 2xx from other branches of a forked INVITE at the client.
    pub fn timer_m(&self) -> Duration {
        self.sixty_four_t1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rfc3261_table_4() {
        let cfg = TimerConfig::default();
        assert_eq!(cfg.t1(), Duration::from_millis(500));
        assert_eq!(cfg.t2(), Duration::from_secs(4));
        assert_eq!(cfg.t4(), Duration::from_secs(5));
        for d in [
            cfg.timer_b(),
            cfg.timer_f(),
            cfg.timer_h(),
            cfg.timer_j(false),
            cfg.timer_l(),
            cfg.timer_m(),
        ] {
            assert_eq!(d, Duration::from_secs(32));
        }
        assert_eq!(cfg.timer_d(false), Duration::from_secs(32));
        assert_eq!(cfg.timer_k(false), Duration::from_secs(5));
        assert_eq!(cfg.timer_i(false), Duration::from_secs(5));
        for d in [
            cfg.timer_d(true),
            cfg.timer_i(true),
            cfg.timer_j(true),
            cfg.timer_k(true),
        ] {
            assert_eq!(d, Duration::ZERO);
        }
    }

    #[test]
    fn timer_d_covers_64_t1() {
        let cfg = TimerConfig::new(
            Duration::from_secs(1),
            Duration::from_secs(4),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(cfg.timer_d(false), Duration::from_secs(64));
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(
            TimerConfig::new(
                Duration::ZERO,
                Duration::from_secs(4),
                Duration::from_secs(5)
            ),
            Err(TimerConfigError::ZeroT1)
        );
        assert!(matches!(
            TimerConfig::new(
                Duration::from_secs(5),
                Duration::from_secs(4),
                Duration::ZERO
            ),
            Err(TimerConfigError::T2BelowT1 { .. })
        ));
    }
}
