//! [`RtpenginePool`]: the configured rtpengine instances, their health and the weighted pick.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use sipmesh_protocol::media::MediaProfiles;
use sipmesh_protocol::ng::RetransmitPolicy;
use tokio::task::JoinHandle;

use crate::rtpengine::{NgClient, NgError};

/// One configured instance (`udp:IP:PORT[=weight]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The daemon's `--listen-ng` address.
    pub addr: SocketAddr,
    /// Relative share of new calls (0: only when no other instance is healthy).
    pub weight: u32,
}

impl InstanceSpec {
    /// Parses `udp:IP:PORT[=weight]` (the `udp:` prefix is optional; weight defaults to 1).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let rest = s.strip_prefix("udp:").unwrap_or(s);
        let (addr, weight) = match rest.rsplit_once('=') {
            Some((a, w)) => (
                a,
                w.parse::<u32>()
                    .map_err(|_| format!("bad rtpengine weight in {s:?}"))?,
            ),
            None => (rest, 1),
        };
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|_| format!("bad rtpengine address in {s:?} (want udp:IP:PORT[=weight])"))?;
        Ok(Self { addr, weight })
    }
}

/// Settings of the media layer.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The instances; empty: media is not relayed.
    pub instances: Vec<InstanceSpec>,
    /// Flags per leg kind.
    pub profiles: MediaProfiles,
    /// How often each instance is pinged.
    pub ping_interval: Duration,
    /// Longest wait for one ng request (offer, answer, delete, query).
    pub request_timeout: Duration,
    /// A call whose media stopped this long ago is ended.
    pub media_timeout: Duration,
    /// How often an answered call is queried for media activity.
    pub poll_interval: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            instances: Vec::new(),
            profiles: MediaProfiles::default(),
            ping_interval: Duration::from_millis(500),
            request_timeout: Duration::from_millis(1000),
            media_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// One instance and its health.
#[derive(Debug)]
pub(super) struct Instance {
    pub(super) spec: InstanceSpec,
    pub(super) client: NgClient,
    healthy: AtomicBool,
}

/// The rtpengine instances of a node. Dropping it stops the health checks.
#[derive(Debug)]
pub struct RtpenginePool {
    instances: Vec<Arc<Instance>>,
    pingers: Vec<JoinHandle<()>>,
}

impl RtpenginePool {
    /// Opens a client per instance and starts pinging them. Instances start healthy (a call
    /// arriving before the first ping is not refused for nothing).
    pub async fn start(config: &MediaConfig) -> Result<Arc<Self>, NgError> {
        let policy = RetransmitPolicy {
            first_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(400),
            timeout: config.request_timeout,
            max_outstanding: 1024,
        };
        let mut instances = Vec::new();
        for spec in &config.instances {
            let client = NgClient::connect(spec.addr, policy).await?;
            instances.push(Arc::new(Instance {
                spec: *spec,
                client,
                healthy: AtomicBool::new(true),
            }));
        }
        let ping_timeout = config.ping_interval.min(Duration::from_millis(800));
        let interval = config.ping_interval;
        let pingers = instances
            .iter()
            .map(|i| tokio::spawn(ping_loop(i.clone(), interval, ping_timeout)))
            .collect();
        Ok(Arc::new(Self { instances, pingers }))
    }

    /// Number of configured instances.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// True when no instance is configured.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The health of each instance, by address.
    pub fn health(&self) -> Vec<(SocketAddr, bool)> {
        self.instances
            .iter()
            .map(|i| (i.spec.addr, i.healthy.load(Ordering::Relaxed)))
            .collect()
    }

    /// A healthy instance for a new call, picked at random by weight; `None` when none is
    /// healthy.
    pub(super) fn pick(&self) -> Option<usize> {
        let healthy: Vec<(usize, u32)> = self
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.healthy.load(Ordering::Relaxed))
            .map(|(n, i)| (n, i.spec.weight))
            .collect();
        let total: u64 = healthy.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return healthy.first().map(|(n, _)| *n);
        }
        let mut roll = rand::thread_rng().gen_range(0..total);
        for (n, w) in &healthy {
            let w = u64::from(*w);
            if roll < w {
                return Some(*n);
            }
            roll -= w;
        }
        healthy.last().map(|(n, _)| *n)
    }

    /// The instance at `index`.
    pub(super) fn get(&self, index: usize) -> Option<&Arc<Instance>> {
        self.instances.get(index)
    }

    /// The index of the instance at `addr`.
    pub(super) fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.instances.iter().position(|i| i.spec.addr == addr)
    }

    /// Marks an instance down after a request to it timed out (the next pong brings it back).
    pub(super) fn mark_down(&self, index: usize) {
        if let Some(i) = self.instances.get(index)
            && i.healthy.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(rtpengine = %i.spec.addr, "rtpengine instance out (request timed out)");
        }
    }
}

impl Drop for RtpenginePool {
    fn drop(&mut self) {
        for p in &self.pingers {
            p.abort();
        }
    }
}

async fn ping_loop(instance: Arc<Instance>, interval: Duration, timeout: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ok = matches!(
            instance
                .client
                .request_within(sipmesh_protocol::ng::Request::Ping, timeout)
                .await,
            Ok(r) if r.pong
        );
        let was = instance.healthy.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!(rtpengine = %instance.spec.addr, "rtpengine instance back");
            } else {
                tracing::warn!(rtpengine = %instance.spec.addr, "rtpengine instance out (no pong)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn picks_healthy_instances_by_weight() {
        // Nothing listens on these ports; the first pings only fail after their timeout, and
        // the picks below happen before that.
        let config = MediaConfig {
            instances: vec![
                InstanceSpec::parse("udp:127.0.0.1:9=1").unwrap(),
                InstanceSpec::parse("udp:127.0.0.1:7=3").unwrap(),
            ],
            ping_interval: Duration::from_secs(60),
            ..MediaConfig::default()
        };
        let pool = RtpenginePool::start(&config).await.unwrap();
        let mut counts = [0u32; 2];
        for _ in 0..4000 {
            counts[pool.pick().unwrap()] += 1;
        }
        assert!(
            (800..1200).contains(&counts[0]),
            "weight 1 got {}",
            counts[0]
        );
        assert!(
            (2800..3200).contains(&counts[1]),
            "weight 3 got {}",
            counts[1]
        );
        pool.mark_down(1);
        assert!(
            (0..100).all(|_| pool.pick() == Some(0)),
            "a down instance gets no call"
        );
        pool.mark_down(0);
        assert_eq!(pool.pick(), None);
    }

    #[test]
    fn parses_instance_specs() {
        let a = InstanceSpec::parse("udp:127.0.0.1:2223=3").unwrap();
        assert_eq!(a.addr, "127.0.0.1:2223".parse().unwrap());
        assert_eq!(a.weight, 3);
        let b = InstanceSpec::parse("127.0.0.1:2224").unwrap();
        assert_eq!(b.weight, 1);
        let c = InstanceSpec::parse("udp:[::1]:2225=2").unwrap();
        assert_eq!(c.addr, "[::1]:2225".parse().unwrap());
        assert!(InstanceSpec::parse("udp:nohost").is_err());
        assert!(InstanceSpec::parse("udp:127.0.0.1:1=x").is_err());
    }
}
