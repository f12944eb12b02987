//! What the agents know about the cluster: every node's SIP addresses and whether the harness
//! has it up (not killed, not frozen). Agents send only to nodes that are up, the way a client
//! with DNS SRV failover moves on quickly; what fails then is the cluster's own failover.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng;
use rand::seq::SliceRandom;

/// One node's SIP addresses.
#[derive(Debug, Clone)]
pub struct NodeAddrs {
    /// UDP listener.
    pub udp: SocketAddr,
    /// TCP listener.
    pub tcp: SocketAddr,
    /// WebSocket listener (`ws:`).
    pub ws: SocketAddr,
}

/// The nodes and their up/down state, shared by the runner and the agents.
#[derive(Debug)]
pub struct Topology {
    nodes: Vec<NodeAddrs>,
    up: Vec<AtomicBool>,
    /// The SIP domain every node serves.
    pub domain: String,
}

/// Index of a node in [`Topology`].
pub type NodeIx = usize;

impl Topology {
    /// All nodes up.
    pub fn new(nodes: Vec<NodeAddrs>, domain: &str) -> Self {
        let up = nodes.iter().map(|_| AtomicBool::new(true)).collect();
        Self {
            nodes,
            up,
            domain: domain.to_owned(),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there is no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The addresses of node `i`.
    pub fn node(&self, i: NodeIx) -> Option<&NodeAddrs> {
        self.nodes.get(i)
    }

    /// Marks node `i` up or down.
    pub fn set_up(&self, i: NodeIx, up: bool) {
        if let Some(flag) = self.up.get(i) {
            flag.store(up, Ordering::SeqCst);
        }
    }

    /// Whether node `i` is up.
    pub fn is_up(&self, i: NodeIx) -> bool {
        self.up.get(i).is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// The nodes that are up.
    pub fn up_nodes(&self) -> Vec<NodeIx> {
        (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect()
    }

    /// A random node that is up.
    pub fn random_up(&self, rng: &mut impl Rng) -> Option<NodeIx> {
        self.up_nodes().choose(rng).copied()
    }

    /// A random node that is up, other than `not` when there is such a node.
    pub fn random_up_except(&self, not: NodeIx, rng: &mut impl Rng) -> Option<NodeIx> {
        let others: Vec<NodeIx> = self.up_nodes().into_iter().filter(|&i| i != not).collect();
        others.choose(rng).copied().or_else(|| self.random_up(rng))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn topo(n: u16) -> Topology {
        let nodes = (0..n)
            .map(|i| {
                let a: SocketAddr = format!("127.0.0.{}:5060", 11 + i).parse().expect("addr");
                NodeAddrs {
                    udp: a,
                    tcp: a,
                    ws: a,
                }
            })
            .collect();
        Topology::new(nodes, "d.test")
    }

    #[test]
    fn random_choices_skip_down_nodes() {
        let t = topo(3);
        t.set_up(1, false);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..50 {
            assert_ne!(t.random_up(&mut rng), Some(1));
            assert_eq!(t.random_up_except(0, &mut rng), Some(2));
        }
        t.set_up(0, false);
        t.set_up(2, false);
        assert_eq!(t.random_up(&mut rng), None);
        assert_eq!(t.up_nodes(), Vec::<usize>::new());
    }
}
