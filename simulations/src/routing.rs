//! Which peers an agent may address and where its request enters, given the capabilities the
//! run relies on. Pure rules, so they are tested without sockets.

use crate::config::{Capability, Transport};
use crate::topology::NodeIx;

/// One side of a request: how the user is attached and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    /// Its transport.
    pub transport: Transport,
    /// The node it registered through (UDP) or is connected to (TCP/WS).
    pub home: NodeIx,
}

/// The rules for one run.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `flow-relay`: a request to a TCP/WS user may enter at any node.
    pub relay: bool,
    /// `tcp-flow-in-dialog`: TCP users may be called.
    pub tcp_callee: bool,
}

/// Where a request enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// At this node.
    Node(NodeIx),
    /// At a random node that is up.
    Random,
}

impl Rules {
    /// The rules for `caps`.
    pub fn new(caps: &[Capability]) -> Self {
        Self {
            relay: caps.contains(&Capability::FlowRelay),
            tcp_callee: caps.contains(&Capability::TcpFlowInDialog),
        }
    }

    /// Whether `from` may send a request (`call`: an INVITE) to `to`. Without relay a request
    /// to a TCP/WS user must enter at its node, which a TCP/WS sender (whose requests enter at
    /// its own node) can only do when both share that node.
    pub fn may_address(&self, from: Attach, to: Attach, call: bool) -> bool {
        if call && !self.tcp_callee && to.transport == Transport::Tcp {
            return false;
        }
        self.relay
            || !to.transport.is_stream()
            || !from.transport.is_stream()
            || from.home == to.home
    }

    /// Where a request from `from` to `to` enters: a stream sender's own node (its
    /// connection), the node holding a stream target's flow without relay, else anywhere.
    pub fn entry(&self, from: Attach, to: Attach) -> Entry {
        if from.transport.is_stream() {
            Entry::Node(from.home)
        } else if to.transport.is_stream() && !self.relay {
            Entry::Node(to.home)
        } else {
            Entry::Random
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn at(transport: Transport, home: NodeIx) -> Attach {
        Attach { transport, home }
    }

    #[test]
    fn without_relay_stream_users_are_reached_through_their_node() {
        let r = Rules::new(&[]);
        let udp0 = at(Transport::Udp, 0);
        let ws1 = at(Transport::Ws, 1);
        let tcp1 = at(Transport::Tcp, 1);
        let tcp2 = at(Transport::Tcp, 2);
        assert!(r.may_address(udp0, ws1, false));
        assert_eq!(r.entry(udp0, ws1), Entry::Node(1));
        assert!(r.may_address(ws1, tcp1, false));
        assert!(!r.may_address(ws1, tcp2, false));
        assert_eq!(r.entry(ws1, udp0), Entry::Node(1));
        assert_eq!(r.entry(udp0, at(Transport::Udp, 2)), Entry::Random);
        // TCP users are not called without tcp-flow-in-dialog; WS users are.
        assert!(!r.may_address(udp0, tcp1, true));
        assert!(r.may_address(udp0, ws1, true));
    }

    #[test]
    fn with_every_capability_any_node_serves_any_user() {
        let r = Rules::new(&Capability::ALL);
        let ws1 = at(Transport::Ws, 1);
        let tcp2 = at(Transport::Tcp, 2);
        assert!(r.may_address(ws1, tcp2, true));
        assert_eq!(r.entry(at(Transport::Udp, 0), tcp2), Entry::Random);
        assert_eq!(r.entry(ws1, tcp2), Entry::Node(1));
    }
}
