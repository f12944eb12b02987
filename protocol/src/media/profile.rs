//! Profiles: what rtpengine must do to the SDP going to each leg of a call.
//!
//! A leg is a [`LegKind::Browser`] when it speaks SIP over WebSocket (RFC 7118, the only way a
//! browser reaches us) or when its SDP uses the WebRTC profile `UDP/TLS/RTP/SAVPF` (RFC 5764,
//! RFC 8827); anything else is [`LegKind::Legacy`] (plain RTP/AVP, RFC 3551). rtpengine's
//! options apply to the SDP it *produces*, so the offer is rewritten for the callee's kind and
//! the answer for the caller's kind:
//!
//! - towards a browser: `ICE=force`, `DTLS=passive`, `rtcp-mux: offer, require`,
//!   `transport-protocol: UDP/TLS/RTP/SAVPF` (RFC 8834 requires ICE, DTLS-SRTP and rtcp-mux),
//!   flag `SDES-off` (no `a=crypto` next to the DTLS fingerprint, RFC 8827 §6.5);
//! - towards a legacy phone: `ICE=remove`, `rtcp-mux: demux`, `transport-protocol: RTP/AVP`;
//! - between two legs of the same kind: relayed unchanged (only the `replace` list), or not
//!   touched at all when [`MediaProfiles::bypass_same_kind`] is set.
//!
//! `replace: origin, session-connection` is the default for every leg. `[[media.route]]`
//! tables ([`MediaRoute`]) change these per call: [`MediaProfiles::for_call`] gives the
//! profile of one call with its first matching route applied.

use super::route::MediaRoute;
use crate::ng::{DtlsMode, IceMode, MediaOptions};
use crate::peer::Transport;

/// What kind of endpoint one leg of a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegKind {
    /// A WebRTC browser: ICE, DTLS-SRTP, rtcp-mux, `UDP/TLS/RTP/SAVPF`.
    Browser,
    /// A classic SIP phone: plain RTP/AVP, no ICE.
    Legacy,
}

impl LegKind {
    /// The kind of a leg from its SIP transport and, when known, its SDP. WS/WSS means a
    /// browser; otherwise an SDP with `UDP/TLS/RTP/SAVP(F)` media does.
    pub fn of(transport: Transport, sdp: Option<&[u8]>) -> Self {
        if matches!(transport, Transport::Ws | Transport::Wss) {
            return Self::Browser;
        }
        match sdp {
            Some(body) if uses_webrtc_profile(body) => Self::Browser,
            _ => Self::Legacy,
        }
    }

    /// The name used in logs and configuration (`browser`, `legacy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Legacy => "legacy",
        }
    }
}

/// True when an `m=` line of `sdp` uses a DTLS-SRTP profile (RFC 5764 §8).
fn uses_webrtc_profile(sdp: &[u8]) -> bool {
    sdp.split(|b| *b == b'\n')
        .filter(|line| line.starts_with(b"m="))
        .any(|line| {
            line.split(|b| *b == b' ')
                .nth(2)
                .is_some_and(|proto| proto.starts_with(b"UDP/TLS/RTP/SAVP"))
        })
}

/// The configurable flags (TOML `[media]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaProfiles {
    /// `replace` for every leg (default `origin`, `session-connection`).
    pub replace: Vec<String>,
    /// Extra `flags` for every leg (for example `trust-address`).
    pub flags: Vec<String>,
    /// Leave calls between two legs of the same kind to flow end to end, without rtpengine.
    pub bypass_same_kind: bool,
    /// Keep rtpengine out of every call (set by a route).
    pub bypass: bool,
    /// `ICE` for every leg instead of the kind's (set by a route).
    pub ice: Option<IceMode>,
    /// `DTLS` for every leg instead of the kind's (set by a route).
    pub dtls: Option<DtlsMode>,
    /// Per-route overrides, first match wins (TOML `[[media.route]]`).
    pub routes: Vec<MediaRoute>,
}

impl Default for MediaProfiles {
    fn default() -> Self {
        Self {
            replace: vec!["origin".to_owned(), "session-connection".to_owned()],
            flags: Vec::new(),
            bypass_same_kind: false,
            bypass: false,
            ice: None,
            dtls: None,
            routes: Vec::new(),
        }
    }
}

impl MediaProfiles {
    /// The profile of one call for `user@domain` that arrived over `transport`: the first
    /// matching route's overrides applied (its flags added to the global ones), no routes.
    pub fn for_call(&self, domain: &str, user: Option<&str>, transport: Transport) -> Self {
        let mut p = Self {
            routes: Vec::new(),
            ..self.clone()
        };
        let Some(r) = self
            .routes
            .iter()
            .find(|r| r.matches.matches(domain, user, transport))
        else {
            return p;
        };
        if let Some(b) = r.bypass {
            p.bypass = b;
        }
        if let Some(b) = r.bypass_same_kind {
            p.bypass_same_kind = b;
        }
        if let Some(replace) = &r.replace {
            p.replace.clone_from(replace);
        }
        p.flags.extend(r.flags.iter().cloned());
        p.ice = r.ice.or(p.ice);
        p.dtls = r.dtls.or(p.dtls);
        p
    }

    /// Whether a call between `caller` and `callee` goes through rtpengine at all.
    pub fn relays(&self, caller: LegKind, callee: LegKind) -> bool {
        !(self.bypass || (self.bypass_same_kind && caller == callee))
    }

    /// The options for SDP that rtpengine produces for a leg of kind `towards`, when the SDP
    /// came from a leg of kind `from`.
    pub fn options_towards(&self, towards: LegKind, from: LegKind) -> MediaOptions {
        let mut o = MediaOptions {
            replace: self.replace.clone(),
            flags: self.flags.clone(),
            ..MediaOptions::default()
        };
        if towards != from {
            kind_options(&mut o, towards);
        }
        if let Some(ice) = self.ice {
            o.ice = Some(ice);
        }
        if let Some(dtls) = self.dtls {
            o.dtls = Some(dtls);
        }
        o
    }
}

/// What a leg of kind `towards` needs when the other leg is of the other kind.
fn kind_options(o: &mut MediaOptions, towards: LegKind) {
    {
        match towards {
            LegKind::Browser => {
                o.ice = Some(IceMode::Force);
                o.dtls = Some(DtlsMode::Passive);
                o.rtcp_mux = vec!["offer".to_owned(), "require".to_owned()];
                o.transport_protocol = Some("UDP/TLS/RTP/SAVPF".to_owned());
                // WebRTC keys SRTP with DTLS only (RFC 8827 §6.5): no SDES `a=crypto` lines.
                o.flags.push("SDES-off".to_owned());
            }
            LegKind::Legacy => {
                o.ice = Some(IceMode::Remove);
                o.rtcp_mux = vec!["demux".to_owned()];
                o.transport_protocol = Some("RTP/AVP".to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVP: &[u8] = b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n";
    const SAVPF: &[u8] = b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtcp-mux\r\n";

    #[test]
    fn websocket_is_a_browser_whatever_the_sdp() {
        assert_eq!(LegKind::of(Transport::Ws, Some(AVP)), LegKind::Browser);
        assert_eq!(LegKind::of(Transport::Wss, None), LegKind::Browser);
    }

    #[test]
    fn savpf_sdp_is_a_browser_over_udp() {
        assert_eq!(LegKind::of(Transport::Udp, Some(SAVPF)), LegKind::Browser);
        assert_eq!(LegKind::of(Transport::Tcp, Some(AVP)), LegKind::Legacy);
        assert_eq!(LegKind::of(Transport::Udp, None), LegKind::Legacy);
    }

    #[test]
    fn browser_to_legacy_strips_ice_and_dtls() {
        let p = MediaProfiles::default();
        let o = p.options_towards(LegKind::Legacy, LegKind::Browser);
        assert_eq!(o.ice, Some(IceMode::Remove));
        assert_eq!(o.dtls, None);
        assert_eq!(o.rtcp_mux, vec!["demux"]);
        assert_eq!(o.transport_protocol.as_deref(), Some("RTP/AVP"));
        assert_eq!(o.replace, vec!["origin", "session-connection"]);
    }

    #[test]
    fn legacy_to_browser_forces_ice_dtls_passive_and_rtcp_mux() {
        let p = MediaProfiles::default();
        let o = p.options_towards(LegKind::Browser, LegKind::Legacy);
        assert_eq!(o.ice, Some(IceMode::Force));
        assert_eq!(o.dtls, Some(DtlsMode::Passive));
        assert_eq!(o.rtcp_mux, vec!["offer", "require"]);
        assert_eq!(o.transport_protocol.as_deref(), Some("UDP/TLS/RTP/SAVPF"));
        assert_eq!(o.flags, vec!["SDES-off"]);
    }

    #[test]
    fn same_kind_is_relayed_unchanged_or_bypassed() {
        let mut p = MediaProfiles::default();
        let o = p.options_towards(LegKind::Legacy, LegKind::Legacy);
        assert_eq!(o.ice, None);
        assert_eq!(o.transport_protocol, None);
        assert!(o.rtcp_mux.is_empty());
        assert!(p.relays(LegKind::Legacy, LegKind::Legacy));
        p.bypass_same_kind = true;
        assert!(!p.relays(LegKind::Browser, LegKind::Browser));
        assert!(p.relays(LegKind::Browser, LegKind::Legacy));
    }

    #[test]
    fn the_first_matching_route_overrides_the_global_flags() {
        use crate::media::route::RouteMatch;
        let mut p = MediaProfiles {
            flags: vec!["trust-address".into()],
            ..MediaProfiles::default()
        };
        p.routes = vec![
            MediaRoute {
                matches: RouteMatch {
                    domain: Some("lan.example".into()),
                    ..RouteMatch::default()
                },
                bypass: Some(true),
                ..MediaRoute::default()
            },
            MediaRoute {
                matches: RouteMatch {
                    user_prefix: Some("9".into()),
                    ..RouteMatch::default()
                },
                ice: Some(IceMode::Force),
                flags: vec!["strict-source".into()],
                replace: Some(vec!["origin".into()]),
                ..MediaRoute::default()
            },
        ];
        let lan = p.for_call("lan.example", Some("9123"), Transport::Udp);
        assert!(!lan.relays(LegKind::Legacy, LegKind::Browser), "bypassed");
        let nine = p.for_call("wan.example", Some("9123"), Transport::Udp);
        assert!(nine.relays(LegKind::Legacy, LegKind::Legacy));
        let o = nine.options_towards(LegKind::Legacy, LegKind::Legacy);
        assert_eq!(o.ice, Some(IceMode::Force));
        assert_eq!(o.flags, vec!["trust-address", "strict-source"]);
        assert_eq!(o.replace, vec!["origin"]);
        let other = p.for_call("wan.example", Some("123"), Transport::Udp);
        assert_eq!(
            other,
            MediaProfiles {
                routes: Vec::new(),
                ..p
            }
        );
        assert_eq!(
            other.options_towards(LegKind::Legacy, LegKind::Legacy).ice,
            None
        );
    }
}
