//! The processes under test: one real `redis-server` and N real `sipmesh` nodes on
//! 127.0.0.11, .12, … (UDP, TCP and WS listeners, admin endpoint, cluster membership), started
//! through `sipmesh-test-support`. Every call here blocks; the runner calls them from
//! `block_in_place`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sipmesh_test_support::{NodeOptions, RedisServer, SipmeshNode, Target, TestDir, free_port};

use crate::error::ChaosError;
use crate::topology::{NodeAddrs, NodeIx};

/// The SIP domain every node serves.
pub const DOMAIN: &str = "chaos.example.com";

/// Redis and the nodes; everything is killed on drop.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<SipmeshNode>,
    _dirs: Vec<TestDir>,
    redis: RedisServer,
}

/// Node `i`'s member id.
pub fn node_id(i: NodeIx) -> String {
    format!("node{}", i + 1)
}

impl Cluster {
    /// Starts Redis and `n` nodes running `binary`; node 1 is every other node's seed.
    pub fn start(binary: &Path, n: u8, log_filter: &str, run: &str) -> Result<Self, ChaosError> {
        let redis = RedisServer::start();
        let mut options: Vec<NodeOptions> = Vec::new();
        for i in 0..n {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i));
            let seeds = options
                .first()
                .and_then(NodeOptions::cluster_addr)
                .into_iter()
                .collect();
            let mut o = NodeOptions::on(ip)
                .with_admin()
                .with_cluster(&node_id(usize::from(i)), seeds);
            o.log_filter = log_filter.to_owned();
            o.domains.push(DOMAIN.to_owned());
            let ws = SocketAddr::new(ip, free_port(ip));
            o.extra_args.extend([
                "--redis".to_owned(),
                redis.url(),
                "--listen".to_owned(),
                format!("ws:{ws}"),
            ]);
            options.push(o);
        }
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for (i, o) in options.into_iter().enumerate() {
            let dir = TestDir::new(&format!("chaos-{run}-node{}", i + 1))?;
            nodes.push(SipmeshNode::start(binary, Target::Sipmesh, &dir, o)?);
            dirs.push(dir);
        }
        Ok(Self {
            nodes,
            _dirs: dirs,
            redis,
        })
    }

    /// Every node's SIP addresses.
    pub fn addrs(&self) -> Vec<NodeAddrs> {
        self.nodes
            .iter()
            .map(|n| NodeAddrs {
                udp: n.udp_addr(),
                tcp: n.tcp_addr(),
                ws: ws_addr(n.options()).unwrap_or_else(|| n.tcp_addr()),
            })
            .collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: NodeIx) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.kill();
        }
    }

    /// Starts node `i` again on the same ports and waits until it answers OPTIONS.
    pub fn restart(&mut self, i: NodeIx) -> Result<(), ChaosError> {
        match self.nodes.get_mut(i) {
            Some(n) => Ok(n.restart()?),
            None => Ok(()),
        }
    }

    /// SIGSTOPs (`true`) or SIGCONTs node `i`.
    pub fn freeze(&self, i: NodeIx, frozen: bool) {
        if let Some(n) = self.nodes.get(i) {
            n.freeze(frozen);
        }
    }

    /// Node `i`'s `GET /cluster`, `None` while it does not answer.
    pub fn view(&self, i: NodeIx) -> Option<Value> {
        let (code, body) = self.nodes.get(i)?.admin("GET", "/cluster").ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Whether every node answers and sees all nodes live.
    pub fn all_live(&self) -> bool {
        (0..self.nodes.len()).all(|i| {
            self.view(i).is_some_and(|v| {
                (0..self.nodes.len()).all(|j| state(&v, &node_id(j)).as_deref() == Some("live"))
            })
        })
    }

    /// Polls every 50 ms until `ok` or `limit`; returns the time taken, `None` on timeout.
    pub fn wait(&self, limit: Duration, mut ok: impl FnMut(&Self) -> bool) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if ok(self) {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every node's log file.
    pub fn log_paths(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.log_path().display().to_string())
            .collect()
    }

    /// The tail of node `i`'s log.
    pub fn log_tail(&self, i: NodeIx) -> String {
        self.nodes
            .get(i)
            .map(SipmeshNode::log_tail)
            .unwrap_or_default()
    }

    /// Number of keys in Redis (a sanity figure for the report).
    pub fn redis_keys(&self) -> String {
        self.redis.cli(&["DBSIZE"]).trim().to_owned()
    }
}

/// The `ws:` listener in a node's extra arguments.
fn ws_addr(o: &NodeOptions) -> Option<SocketAddr> {
    o.extra_args
        .iter()
        .find_map(|a| a.strip_prefix("ws:").and_then(|s| s.parse().ok()))
}

/// Member `id`'s state (`live`, `suspect`, `dead`, `fenced`) in a `/cluster` view.
pub fn state(view: &Value, id: &str) -> Option<String> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["state"].as_str().map(str::to_owned))
}
