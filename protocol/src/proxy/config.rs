//! Settings of the proxy core, validated by the node before they reach here.

use std::time::Duration;

use crate::peer::Listener;
use crate::transaction::TimerConfig;

use super::cluster::Incarnation;
use super::flow::FlowTokenKey;

/// RFC 3261 §16.6 step 11: Timer C must be larger than 3 minutes.
pub const TIMER_C: Duration = Duration::from_secs(181);

/// Max-Forwards put on requests that arrive without one (RFC 3261 §16.6 step 3).
pub const DEFAULT_MAX_FORWARDS: u8 = 70;

/// Settings of one [`Core`](super::Core).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The bound listeners (real ports).
    pub listeners: Vec<Listener>,
    /// Local domains, lowercase.
    pub domains: Vec<String>,
    /// Forward requests for foreign domains (otherwise 403).
    pub relay: bool,
    /// Transaction timers (T1, T2, T4).
    pub timers: TimerConfig,
    /// This core's shard number; it is written into every branch we create so that responses
    /// reach the same shard.
    pub shard: u8,
    /// Seed of the branch/tag generator.
    pub rng_seed: u64,
    /// Authenticates the flow tokens in our Record-Route values (RFC 5626 §5.2); the same for
    /// every shard of a node (and for nodes that must accept each other's tokens).
    pub flow_token_key: FlowTokenKey,
    /// This node process's cluster incarnation (0: not clustered); connections of other
    /// incarnations are reached through their holder (see [`Incarnation`]).
    pub incarnation: Incarnation,
}
