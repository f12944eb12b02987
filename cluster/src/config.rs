//! Cluster settings: who we are, where we listen, whom we dial, and the failure-detector timing.

use std::net::SocketAddr;
use std::time::Duration;

use crate::id::NodeId;

/// Validated settings of the cluster layer of one node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id (`--node-id`; default [`NodeId::from_listen_addr`]).
    pub node_id: NodeId,
    /// Address of the ractor_cluster listener (TCP) and of the heartbeat socket (UDP, same
    /// port).
    pub listen: SocketAddr,
    /// Members dialed at start-up and whenever their session is down.
    pub seeds: Vec<SocketAddr>,
    /// Shared secret of ractor_cluster's challenge/response authentication.
    pub cookie: String,
    /// Redis holding the leases (the same server as the state stores).
    pub redis_url: String,
    /// Prefix of every cluster key in Redis (default `sipmesh:`).
    pub key_prefix: String,
    /// Failure-detector timing.
    pub timing: Timing,
    /// Mutual TLS for the mesh sessions (`None`: plain TCP with the cookie handshake).
    pub tls: Option<crate::tls::ClusterTlsFiles>,
}

/// Failure-detector and lease timing. The defaults declare a silent member dead within 3 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Lifetime of a lease in Redis (`PX`): the longest a dead node keeps looking leased.
    pub lease_ttl: Duration,
    /// How often the lease is renewed.
    pub renew_every: Duration,
    /// Safety margin: the node considers its lease gone this long before Redis would drop it,
    /// counted from when the renewal was *sent*, so it fences itself before anyone else may
    /// take over.
    pub lease_margin: Duration,
    /// Longest wait for one Redis call of the lease or member poll.
    pub redis_timeout: Duration,
    /// How long a node that lost its lease stays fenced before acquiring a new one, so that
    /// every peer has seen it gone (and the old epoch is dead) before it returns.
    pub rejoin_holdoff: Duration,
    /// Interval of the UDP heartbeat to every member.
    pub heartbeat_every: Duration,
    /// Silence after which a member is suspect.
    pub suspect_after: Duration,
    /// Silence after which a member is dead.
    pub dead_after: Duration,
    /// How often the member list and their leases are read from Redis.
    pub poll_every: Duration,
    /// How long a node that (re)gained its lease or its contact with the majority waits before
    /// acting as an owner: long enough for every peer to have seen its lease and a heartbeat
    /// and placed it, so that it never claims keys their old owner still claims.
    pub settle: Duration,
    /// How long a member may hold no lease before it is removed from the registry (see
    /// [`crate::prune`]).
    pub prune_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_millis(3000),
            renew_every: Duration::from_millis(1000),
            lease_margin: Duration::from_millis(500),
            redis_timeout: Duration::from_millis(500),
            rejoin_holdoff: Duration::from_millis(1000),
            heartbeat_every: Duration::from_millis(400),
            suspect_after: Duration::from_millis(1000),
            dead_after: Duration::from_millis(2400),
            poll_every: Duration::from_millis(500),
            settle: Duration::from_millis(1200),
            prune_after: Duration::from_secs(60),
        }
    }
}

/// A timing that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// The lease would lapse between two renewals.
    #[error("renew_every ({renew:?}) must be under lease_ttl - lease_margin ({usable:?})")]
    RenewTooSlow {
        /// Renewal interval.
        renew: Duration,
        /// Usable part of the lease.
        usable: Duration,
    },
    /// A node would claim keys before its peers can have placed it.
    #[error("settle ({settle:?}) must exceed poll_every + heartbeat_every + 100 ms ({seen:?})")]
    SettleTooShort {
        /// Settle time.
        settle: Duration,
        /// Time peers need to see a node.
        seen: Duration,
    },
    /// Suspicion must come after a heartbeat, and death more than two heartbeats later.
    #[error(
        "need heartbeat_every ({heartbeat:?}) < suspect_after ({suspect:?}) and suspect_after + 2 * heartbeat_every < dead_after ({dead:?})"
    )]
    DetectorOrder {
        /// Heartbeat interval.
        heartbeat: Duration,
        /// Suspicion threshold.
        suspect: Duration,
        /// Death threshold.
        dead: Duration,
    },
}

impl Timing {
    /// Checks that the intervals fit together.
    pub fn validate(&self) -> Result<(), TimingError> {
        let usable = self.lease_ttl.saturating_sub(self.lease_margin);
        if self.renew_every >= usable || self.renew_every.is_zero() {
            return Err(TimingError::RenewTooSlow {
                renew: self.renew_every,
                usable,
            });
        }
        // A cut-off node must fence itself (suspect_after + heartbeat) before its peers can
        // declare it dead (dead_after - heartbeat): see `MemberTable::is_isolated`.
        if !(self.heartbeat_every < self.suspect_after
            && self.suspect_after + 2 * self.heartbeat_every < self.dead_after)
            || self.heartbeat_every.is_zero()
        {
            return Err(TimingError::DetectorOrder {
                heartbeat: self.heartbeat_every,
                suspect: self.suspect_after,
                dead: self.dead_after,
            });
        }
        // Peers see a new lease at their next poll and a heartbeat within one interval, and
        // publish within 100 ms.
        let seen = self.poll_every + self.heartbeat_every + Duration::from_millis(100);
        if self.settle <= seen {
            return Err(TimingError::SettleTooShort {
                settle: self.settle,
                seen,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_detect_within_three_seconds() {
        let t = Timing::default();
        assert_eq!(t.validate(), Ok(()));
        // Declared dead at most `dead_after` after the last heartbeat, which came before the
        // death; the detector publishes every 100 ms.
        assert!(t.dead_after + Duration::from_millis(100) < Duration::from_secs(3));
    }

    #[test]
    fn bad_timings_are_refused() {
        let slow = Timing {
            renew_every: Duration::from_secs(3),
            ..Timing::default()
        };
        assert!(matches!(
            slow.validate(),
            Err(TimingError::RenewTooSlow { .. })
        ));
        let inverted = Timing {
            suspect_after: Duration::from_secs(5),
            ..Timing::default()
        };
        assert!(matches!(
            inverted.validate(),
            Err(TimingError::DetectorOrder { .. })
        ));
    }
}
