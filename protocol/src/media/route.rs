//! Media flags per route (TOML `[[media.route]]`, issue 6 "flags are configurable per route").
//!
//! A [`MediaRoute`] names the calls it applies to ([`RouteMatch`]: the Request-URI's domain,
//! a prefix of its user part, the transport the request came in on; every condition given
//! must hold) and what it changes in the global [`MediaProfiles`](super::MediaProfiles):
//! `bypass` (no rtpengine at all: the SDP passes untouched), `ICE` and `DTLS` modes forced
//! for every leg, extra ng `flags`, another `replace` list, `bypass_same_kind`. The first
//! route that matches wins (like a dial plan); none matching keeps the global flags.

use crate::ng::{DtlsMode, IceMode};
use crate::peer::Transport;

/// Which calls a route applies to (every condition that is set must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// The Request-URI's host, case-insensitively (RFC 3261 §19.1.4).
    pub domain: Option<String>,
    /// A prefix of the Request-URI's user part (a dial-plan prefix such as `+44` or `9`).
    pub user_prefix: Option<String>,
    /// The transport the request arrived on.
    pub transport: Option<Transport>,
}

impl RouteMatch {
    /// Whether a request for `user@domain` that arrived over `transport` matches.
    pub fn matches(&self, domain: &str, user: Option<&str>, transport: Transport) -> bool {
        self.domain
            .as_deref()
            .is_none_or(|d| d.eq_ignore_ascii_case(domain))
            && self
                .user_prefix
                .as_deref()
                .is_none_or(|p| user.is_some_and(|u| u.starts_with(p)))
            && self.transport.is_none_or(|t| t == transport)
    }
}

/// One `[[media.route]]`: the calls it matches and the flags it overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaRoute {
    /// Which calls.
    pub matches: RouteMatch,
    /// Keep rtpengine out of these calls entirely.
    pub bypass: Option<bool>,
    /// `ICE` for every leg, instead of the one its kind gets.
    pub ice: Option<IceMode>,
    /// `DTLS` for every leg, instead of the one its kind gets.
    pub dtls: Option<DtlsMode>,
    /// ng `flags` added to the global ones.
    pub flags: Vec<String>,
    /// ng `replace` instead of the global list.
    pub replace: Option<Vec<String>>,
    /// Overrides the global `bypass_same_kind`.
    pub bypass_same_kind: Option<bool>,
}

/// Why a route's text value is not understood (TOML `ice`, `dtls`, `transport`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not `remove`, `force` or `default`.
    #[error("unknown ICE mode {0:?} (remove, force, default)")]
    Ice(String),
    /// Not `off`, `passive` or `active`.
    #[error("unknown DTLS mode {0:?} (off, passive, active)")]
    Dtls(String),
    /// Not a SIP transport name.
    #[error("unknown transport {0:?} (udp, tcp, tls, ws, wss)")]
    Transport(String),
}

/// An `ICE` mode by its ng name.
pub fn parse_ice(s: &str) -> Result<IceMode, RouteError> {
    match s.to_ascii_lowercase().as_str() {
        "remove" => Ok(IceMode::Remove),
        "force" => Ok(IceMode::Force),
        "default" => Ok(IceMode::Default),
        _ => Err(RouteError::Ice(s.to_owned())),
    }
}

/// A `DTLS` mode by its ng name.
pub fn parse_dtls(s: &str) -> Result<DtlsMode, RouteError> {
    match s.to_ascii_lowercase().as_str() {
        "off" | "no" => Ok(DtlsMode::Off),
        "passive" => Ok(DtlsMode::Passive),
        "active" => Ok(DtlsMode::Active),
        _ => Err(RouteError::Dtls(s.to_owned())),
    }
}

/// A transport by its Via token, case-insensitively.
pub fn parse_transport(s: &str) -> Result<Transport, RouteError> {
    Transport::from_token(s).ok_or_else(|| RouteError::Transport(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(domain: Option<&str>, prefix: Option<&str>, t: Option<Transport>) -> RouteMatch {
        RouteMatch {
            domain: domain.map(str::to_owned),
            user_prefix: prefix.map(str::to_owned),
            transport: t,
        }
    }

    #[test]
    fn every_condition_given_must_hold() {
        let r = route(Some("Trunk.Example"), Some("+44"), Some(Transport::Udp));
        assert!(r.matches("trunk.example", Some("+441234"), Transport::Udp));
        assert!(!r.matches("other.example", Some("+441234"), Transport::Udp));
        assert!(!r.matches("trunk.example", Some("+331234"), Transport::Udp));
        assert!(!r.matches("trunk.example", None, Transport::Udp));
        assert!(!r.matches("trunk.example", Some("+441234"), Transport::Ws));
    }

    #[test]
    fn an_empty_match_takes_every_call() {
        assert!(route(None, None, None).matches("x", None, Transport::Tls));
        assert!(route(None, Some("9"), None).matches("x", Some("9000"), Transport::Tcp));
        assert!(route(None, None, Some(Transport::Wss)).matches("x", None, Transport::Wss));
    }

    #[test]
    fn names_parse_or_say_why_not() {
        assert_eq!(parse_ice("Force"), Ok(IceMode::Force));
        assert_eq!(parse_dtls("passive"), Ok(DtlsMode::Passive));
        assert_eq!(parse_transport("ws"), Ok(Transport::Ws));
        assert_eq!(parse_ice("x"), Err(RouteError::Ice("x".into())));
        assert_eq!(parse_dtls("y"), Err(RouteError::Dtls("y".into())));
        assert_eq!(parse_transport("z"), Err(RouteError::Transport("z".into())));
    }
}
