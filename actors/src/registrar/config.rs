//! Settings of the registrar actors, and the wall clock they read.

use std::time::{Duration, SystemTime};

/// Settings of the registrar actors.
#[derive(Debug, Clone, Copy)]
pub struct RegistrarConfig {
    /// An AOR actor stops after this long without a REGISTER, lookup or hook message, so the
    /// number of actors follows activity, not the number of registered users. Its bindings stay
    /// in the store (the store's sweeper expires them); the next request re-creates the actor
    /// from the store. The default (10 s) is below the shortest refresh interval a registrar
    /// allows (RFC 3261 §10.3 step 7: `min_expires`, 60 s by default), so an actor lives around
    /// bursts of activity (a REGISTER and the calls that follow) and not from one refresh to the
    /// next.
    pub idle_after: Duration,
    /// Deadline of every call into an actor, from the moment it is queued: the store's own
    /// timeout plus a margin for the queue. A request still queued at its deadline is answered
    /// `Unavailable` (503 + Retry-After) without touching the store.
    pub call_timeout: Duration,
    /// Most requests queued for one AOR actor; beyond it a request is answered `Unavailable` at
    /// once. This bounds a single actor's mailbox even when its AOR is hot.
    pub max_queued: u64,
    /// Keep the bindings in the actor and serve lookups from them when the cache is known valid
    /// (loaded from the store, updated by every REGISTER outcome, and holding no flow binding
    /// that a closed connection could remove behind its back). Only correct while this node is
    /// the only writer of its AORs (a single node); a cluster turns it off. Worth it for Redis
    /// (a lookup through the actor: 14 µs from the cache, 46 µs from Redis, one at a time);
    /// not for the memory store, whose own lookup (0.4 µs) is cheaper than keeping a copy of
    /// every active AOR's bindings: off there, and the actor keeps only their count and
    /// earliest expiry.
    pub cache_lookups: bool,
    /// For a store whose calls complete at once (memory), run a request on the caller's task
    /// when the AOR's actor is idle (nothing queued, not inside a job) instead of hopping to the
    /// actor's task and back. Same code, same serialisation; off only to test the actor path.
    pub inline_when_idle: bool,
    /// For a store whose calls complete at once (memory), run a request for an AOR that has
    /// no live actor as a plain store call instead of creating one. Measured: an AOR actor
    /// costs about 25 µs to create and 7.5 KB while it lives, and over the memory store it adds
    /// nothing the store does not (per-AOR serialisation by its shard lock, 0.4 µs lookups,
    /// expiry by the sweeper); with refreshes far apart, nearly every REGISTER would create
    /// one. Actors are then created only where they are needed (the test hook). Off: every
    /// active AOR gets its actor, as with a networked store.
    pub inline_without_actor: bool,
    /// Most live AOR actors (checked per directory shard: this over 64). A request for an AOR
    /// without an actor while the cap is reached is a plain store call on its own task (the
    /// Redis script serialises concurrent writers of one AOR anyway) instead of a new actor.
    /// Measured: a live AOR actor holds about 25 KB of node memory (ractor's channels and task,
    /// the cache, the span), so 100,000 users registering within seconds would take 2.5 GB;
    /// the cap bounds a registration storm at about 100 MB. docs/PERFORMANCE.md.
    pub max_live_actors: usize,
    /// The wall clock for binding expiries.
    pub clock: WallClock,
}

impl RegistrarConfig {
    /// Default idle period of an AOR actor.
    pub const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(10);
    /// Margin added to the store's timeout for the time a call waits in an actor's mailbox.
    pub const QUEUE_MARGIN: Duration = Duration::from_millis(250);

    /// Defaults for a store whose own calls are bounded by `store_timeout`.
    pub fn for_store_timeout(store_timeout: Duration) -> Self {
        Self {
            call_timeout: store_timeout + Self::QUEUE_MARGIN,
            ..Self::default()
        }
    }
}

impl Default for RegistrarConfig {
    /// 10 s idle period, 750 ms call deadline (the Redis store's 500 ms plus the margin), 1024
    /// queued requests per AOR, cached lookups, inline requests to idle actors, at most 4096 live
    /// actors, system clock.
    fn default() -> Self {
        Self {
            idle_after: Self::DEFAULT_IDLE_AFTER,
            call_timeout: Duration::from_millis(500) + Self::QUEUE_MARGIN,
            max_queued: 1024,
            cache_lookups: true,
            inline_when_idle: true,
            inline_without_actor: false,
            max_live_actors: 4096,
            clock: WallClock::System,
        }
    }
}

/// Where binding expiries (absolute wall-clock times, shared with other nodes through the
/// store) are read from.
#[derive(Debug, Clone, Copy)]
pub enum WallClock {
    /// `SystemTime::now()`: production.
    System,
    /// The wall-clock time at start plus the tokio time elapsed since: in tests on paused tokio
    /// time, expiries advance with `tokio::time::advance`.
    Tokio {
        /// Wall-clock time at the anchor.
        wall: SystemTime,
        /// Tokio time at the anchor.
        at: tokio::time::Instant,
    },
}

impl WallClock {
    /// A clock that follows tokio time from now on.
    pub fn tokio() -> Self {
        Self::Tokio {
            wall: SystemTime::now(),
            at: tokio::time::Instant::now(),
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> SystemTime {
        match self {
            Self::System => SystemTime::now(),
            Self::Tokio { wall, at } => *wall + at.elapsed(),
        }
    }
}
