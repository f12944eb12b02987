//! What is "us": local domains and the node's own addresses.
//!
//! Two different questions (RFC 3261 §16.4, §16.5):
//! - **Is this domain ours?** Then the Request-URI is looked up in the location service. Configured
//!   domains and every listener IP are local domains, with or without a port.
//! - **Does this URI name the node itself?** Then a Route value is ours to pop, or an OPTIONS is
//!   ours to answer. That needs the host *and* the port (5060 when absent, 5061 for `sips:`) to
//!   match a listener: a phone on the node's IP but on another port is not the node, and treating
//!   it as such would loop ACKs and BYEs back into the proxy.

use std::net::IpAddr;

use crate::peer::{Listener, Transport};

/// The node's identity: listeners and local domains.
#[derive(Debug, Clone)]
pub struct Locality {
    listeners: Vec<Listener>,
    domains: Vec<String>,
    /// The other cluster members' listeners: they name "us" too (one Record-Route identity
    /// for the cluster), but we never send from them.
    peers: Vec<Listener>,
}

impl Locality {
    /// From the bound listeners and the configured domains (any case).
    pub fn new(listeners: Vec<Listener>, domains: &[String]) -> Self {
        Self {
            listeners,
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            peers: Vec::new(),
        }
    }

    /// Replaces the other cluster members' listeners (see [`is_self`](Self::is_self)).
    pub fn set_peers(&mut self, peers: Vec<Listener>) {
        self.peers = peers;
    }

    /// The listeners.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// True when `host` (a name or an IP literal without brackets) is one of our domains.
    pub fn is_local_domain(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.listeners.iter().any(|l| l.addr.ip() == ip)
                || self
                    .domains
                    .iter()
                    .any(|d| d.parse::<IpAddr>().is_ok_and(|d| d == ip));
        }
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }

    /// True when the URI host/port names this node: the host is a listener IP or a local domain,
    /// and the port (default 5060, or 5061 for `sips:`) is a listener's port for a transport
    /// allowed by `transport` (`None` = any). A cluster peer's listener counts as ours (RFC 3261
    /// §16.4 loose routing through any member: see [`set_peers`](Self::set_peers)).
    pub fn is_self(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> bool {
        let port = port.unwrap_or(if secure { 5061 } else { 5060 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        let named = ip.is_none() && self.domains.iter().any(|d| d.eq_ignore_ascii_case(bare));
        self.listeners.iter().chain(&self.peers).any(|l| {
            l.addr.port() == port
                && transport.is_none_or(|t| t == l.transport)
                && (named
                    || ip
                        .is_some_and(|ip| ip == l.addr.ip() || self.is_unspecified_listener(l, ip)))
        })
    }

    /// A listener bound to 0.0.0.0 / :: answers for every address of the machine; we only claim
    /// loopback and the configured domains for it, since we cannot enumerate interfaces here.
    fn is_unspecified_listener(&self, l: &Listener, ip: IpAddr) -> bool {
        l.addr.ip().is_unspecified() && ip.is_loopback()
    }

    /// The listener to send from toward `transport` for the given address family, preferring
    /// `preferred` (the listener a request came in on) when it fits.
    pub fn outbound_listener(
        &self,
        transport: Transport,
        remote: IpAddr,
        preferred: Option<&Listener>,
    ) -> Option<Listener> {
        let fits = |l: &Listener| l.transport == transport && l.addr.is_ipv4() == remote.is_ipv4();
        if let Some(p) = preferred.filter(|p| fits(p)) {
            return Some(*p);
        }
        self.listeners.iter().find(|l| fits(l)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locality() -> Locality {
        Locality::new(
            vec![
                Listener {
                    transport: Transport::Udp,
                    addr: "127.0.0.1:5060".parse().unwrap(),
                },
                Listener {
                    transport: Transport::Tcp,
                    addr: "127.0.0.1:5060".parse().unwrap(),
                },
                Listener {
                    transport: Transport::Udp,
                    addr: "[::1]:5070".parse().unwrap(),
                },
            ],
            &["Example.com".to_owned()],
        )
    }

    #[test]
    fn listener_ips_and_domains_are_local_domains() {
        let l = locality();
        assert!(l.is_local_domain("127.0.0.1"));
        assert!(l.is_local_domain("[::1]"));
        assert!(l.is_local_domain("EXAMPLE.COM"));
        assert!(!l.is_local_domain("example.org"));
        assert!(!l.is_local_domain("127.0.0.2"));
    }

    #[test]
    fn self_needs_host_and_port() {
        let l = locality();
        assert!(l.is_self("127.0.0.1", None, None, false));
        assert!(l.is_self("127.0.0.1", Some(5060), Some(Transport::Tcp), false));
        assert!(
            !l.is_self("127.0.0.1", Some(5070), None, false),
            "a phone on our IP is not us"
        );
        assert!(l.is_self("[::1]", Some(5070), Some(Transport::Udp), false));
        assert!(!l.is_self("[::1]", Some(5070), Some(Transport::Tcp), false));
        assert!(l.is_self("example.com", None, None, false));
        assert!(
            !l.is_self("127.0.0.1", None, None, true),
            "sips defaults to 5061"
        );
    }

    #[test]
    fn cluster_peers_name_us_but_are_never_sent_from() {
        let mut l = locality();
        let peer = Listener {
            transport: Transport::Tcp,
            addr: "127.0.0.12:5062".parse().unwrap(),
        };
        assert!(!l.is_self("127.0.0.12", Some(5062), Some(Transport::Tcp), false));
        l.set_peers(vec![peer]);
        assert!(l.is_self("127.0.0.12", Some(5062), Some(Transport::Tcp), false));
        assert!(!l.is_self("127.0.0.12", Some(5062), Some(Transport::Udp), false));
        assert!(!l.is_local_domain("127.0.0.13"));
        let out = l
            .outbound_listener(Transport::Tcp, "127.0.0.12".parse().unwrap(), None)
            .unwrap();
        assert_eq!(out.addr.port(), 5060);
    }

    #[test]
    fn outbound_listener_matches_family_and_transport() {
        let l = locality();
        let v6 = l
            .outbound_listener(Transport::Udp, "::1".parse().unwrap(), None)
            .unwrap();
        assert_eq!(v6.addr.port(), 5070);
        let tcp = l
            .outbound_listener(Transport::Tcp, "127.0.0.9".parse().unwrap(), None)
            .unwrap();
        assert_eq!(tcp.transport, Transport::Tcp);
        assert!(
            l.outbound_listener(Transport::Tcp, "::1".parse().unwrap(), None)
                .is_none()
        );
    }
}
