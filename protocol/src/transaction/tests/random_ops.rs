//! Seeded random operation sequences against each machine, checking invariants the driver
//! relies on: no panic, one `Terminated` event exactly when terminated, no timer once
//! terminated, no deadline at or before the instant just handled (no spinning), and at most
//! one `Final` event per client transaction.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::transaction::{
    ClientInviteTx, ClientNonInviteTx, ServerInviteTx, ServerNonInviteTx, TimerConfig, TxEvent,
};

/// Number of random sequences per machine and transport.
const RUNS: u64 = 300;
/// Operations per sequence.
const OPS: usize = 60;
/// Status codes to draw from, including invalid ones.
const STATUSES: [u16; 12] = [0, 99, 100, 180, 183, 200, 202, 300, 486, 603, 699, 700];

/// xorshift64*: a tiny deterministic generator, so the test needs no RNG crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn status(&mut self) -> u16 {
        let i = usize::try_from(self.below(STATUSES.len() as u64)).unwrap_or(0);
        STATUSES.get(i).copied().unwrap_or(200)
    }
}

/// The common surface the invariants look at.
trait Probe {
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn is_terminated(&self) -> bool;
    fn drain(&mut self) -> Vec<TxEvent>;
}

macro_rules! probe {
    ($ty:ty) => {
        impl Probe for $ty {
            fn poll_timeout(&self) -> Option<Instant> {
                self.poll_timeout()
            }
            fn handle_timeout(&mut self, now: Instant) {
                self.handle_timeout(now);
            }
            fn is_terminated(&self) -> bool {
                self.is_terminated()
            }
            fn drain(&mut self) -> Vec<TxEvent> {
                while self.poll_transmit().is_some() {}
                std::iter::from_fn(|| self.poll_event()).collect()
            }
        }
    };
}

probe!(ClientInviteTx);
probe!(ClientNonInviteTx);
probe!(ServerInviteTx);
probe!(ServerNonInviteTx);

/// Tracks events across one sequence and checks the invariants after each operation.
#[derive(Default)]
struct Checker {
    terminated: usize,
    finals: usize,
}

impl Checker {
    fn check(&mut self, tx: &mut impl Probe, seed: u64) {
        for e in tx.drain() {
            match e {
                TxEvent::Terminated => self.terminated += 1,
                TxEvent::Final(_) => self.finals += 1,
                _ => {}
            }
        }
        assert!(self.terminated <= 1, "seed {seed}: Terminated twice");
        assert!(self.finals <= 1, "seed {seed}: Final twice");
        assert_eq!(
            self.terminated == 1,
            tx.is_terminated(),
            "seed {seed}: Terminated event vs state"
        );
        if tx.is_terminated() {
            assert_eq!(
                tx.poll_timeout(),
                None,
                "seed {seed}: timer after termination"
            );
        }
    }

    /// Advances `now` (to the next deadline or by a random step) and fires timers.
    fn tick(&mut self, tx: &mut impl Probe, rng: &mut Rng, now: &mut Instant, seed: u64) {
        *now = match tx.poll_timeout() {
            Some(t) if rng.below(2) == 0 => t.max(*now),
            _ => *now + Duration::from_millis(rng.below(40_000)),
        };
        tx.handle_timeout(*now);
        if let Some(t) = tx.poll_timeout() {
            assert!(
                t > *now,
                "seed {seed}: deadline not after the handled instant"
            );
        }
        self.check(tx, seed);
    }
}

#[test]
fn client_invite_random_ops() {
    for seed in 1..=RUNS * 2 {
        let reliable = seed % 2 == 0;
        let mut rng = Rng(seed);
        let mut now = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientInviteTx::new(now, Bytes::from_static(b"INVITE"), reliable, &cfg);
        let mut c = Checker::default();
        let mut acks = 0;
        for _ in 0..OPS {
            match rng.below(10) {
                0..=4 => tx.handle_response(now, rng.status(), || {
                    acks += 1;
                    Bytes::from_static(b"ACK")
                }),
                5 => {
                    let _ = tx.cancel_requested();
                }
                6 if rng.below(8) == 0 => tx.transport_error(now),
                _ => c.tick(&mut tx, &mut rng, &mut now, seed),
            }
            c.check(&mut tx, seed);
        }
        assert!(acks <= 1, "seed {seed}: ACK built {acks} times");
    }
}

#[test]
fn client_non_invite_random_ops() {
    for seed in 1..=RUNS * 2 {
        let reliable = seed % 2 == 0;
        let mut rng = Rng(seed);
        let mut now = Instant::now();
        let cfg = TimerConfig::default();
        let mut tx = ClientNonInviteTx::new(now, Bytes::from_static(b"BYE"), reliable, &cfg);
        let mut c = Checker::default();
        for _ in 0..OPS {
            match rng.below(10) {
                0..=4 => tx.handle_response(now, rng.status()),
                6 if rng.below(8) == 0 => tx.transport_error(now),
                _ => c.tick(&mut tx, &mut rng, &mut now, seed),
            }
            c.check(&mut tx, seed);
        }
    }
}

#[test]
fn server_invite_random_ops() {
    for seed in 1..=RUNS * 2 {
        let reliable = seed % 2 == 0;
        let mut rng = Rng(seed);
        let mut now = Instant::now();
        let mut tx = ServerInviteTx::new(now, reliable, &TimerConfig::default());
        let mut c = Checker::default();
        for _ in 0..OPS {
            match rng.below(10) {
                0..=2 => {
                    let _ = tx.send_response(now, rng.status(), Bytes::from_static(b"resp"));
                }
                3 => tx.handle_retransmission(now),
                4 => tx.handle_ack(now),
                6 if rng.below(8) == 0 => tx.transport_error(now),
                _ => c.tick(&mut tx, &mut rng, &mut now, seed),
            }
            c.check(&mut tx, seed);
        }
    }
}

#[test]
fn server_non_invite_random_ops() {
    for seed in 1..=RUNS * 2 {
        let reliable = seed % 2 == 0;
        let mut rng = Rng(seed);
        let mut now = Instant::now();
        let mut tx = ServerNonInviteTx::new(now, reliable, &TimerConfig::default());
        let mut c = Checker::default();
        for _ in 0..OPS {
            match rng.below(10) {
                0..=2 => {
                    let _ = tx.send_response(now, rng.status(), Bytes::from_static(b"resp"));
                }
                3 => tx.handle_retransmission(now),
                6 if rng.below(8) == 0 => tx.transport_error(now),
                _ => c.tick(&mut tx, &mut rng, &mut now, seed),
            }
            c.check(&mut tx, seed);
        }
    }
}
