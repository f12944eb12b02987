//! Requests the proxy sends inside a dialog in the name of one end, to move the call's media
//! to another rtpengine instance (issue 6, point 4): a re-INVITE with a new SDP offer (RFC
//! 3261 §14.1, RFC 3264 §8) and the ACK of its final response (§13.2.2.4 for a 2xx,
//! §17.1.1.3 for a failure).
//!
//! The re-INVITE to end `to` looks as if end `from` sent it, like the media-timeout BYEs
//! (`media::bye`): From is `from`'s URI and tag, To is `to`'s, the Request-URI is `to`'s
//! remote target, Route is `from`'s route set without the entries naming this proxy, and the
//! Contact is `from`'s own remote target, so that the re-INVITE, a target refresh request
//! (§12.2), leaves `to`'s idea of where `from` is unchanged. The CSeq comes from
//! [`CseqShifts::claim`](super::cseq_shift::CseqShifts::claim).

use std::net::SocketAddr;

use bytes::Bytes;

use crate::dialog::{DialogState, Leg};
use crate::peer::{Destination, Transport};

/// Which end of the dialog a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The caller (From of the initial INVITE).
    Caller,
    /// The callee.
    Callee,
}

impl End {
    /// The other end.
    pub fn other(self) -> Self {
        match self {
            Self::Caller => Self::Callee,
            Self::Callee => Self::Caller,
        }
    }

    /// This end's leg in `dialog`.
    pub fn leg(self, dialog: &DialogState) -> &Leg {
        match self {
            Self::Caller => &dialog.caller,
            Self::Callee => &dialog.callee,
        }
    }

    /// The end of `dialog` whose tag is `tag`.
    pub fn of_tag(dialog: &DialogState, tag: &str) -> Option<Self> {
        if dialog.caller.tag == tag {
            Some(Self::Caller)
        } else if dialog.callee.tag == tag {
            Some(Self::Callee)
        } else {
            None
        }
    }
}

/// One in-dialog request built by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnRequest {
    /// Where it goes: the end's flow, from our listener.
    pub destination: Destination,
    /// The request.
    pub payload: Bytes,
}

/// What the requests of one re-INVITE transaction share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReInvite {
    /// The end it goes to.
    pub to: End,
    /// Its CSeq number.
    pub cseq: u32,
    /// Its branch (with the RFC 3261 magic cookie).
    pub branch: String,
    /// Our listener it leaves from.
    pub local: SocketAddr,
    /// The flow to the end.
    pub destination: Destination,
    /// The Route values.
    pub routes: Vec<String>,
    /// The Request-URI (the end's remote target).
    pub target: String,
}

/// Plans a re-INVITE to end `to` of `dialog`; `None` when the end has no known flow or remote
/// target, or we have no listener for its transport. `is_self` tells whether a Record-Route
/// value names this proxy.
pub fn plan(
    dialog: &DialogState,
    to: End,
    cseq: u32,
    branch: String,
    listener: impl Fn(Transport) -> Option<SocketAddr>,
    is_self: impl Fn(&str) -> bool,
) -> Option<ReInvite> {
    let from_leg = to.other().leg(dialog);
    let to_leg = to.leg(dialog);
    let mut destination = to_leg.flow?;
    let local = listener(destination.transport)?;
    destination.local = Some(local);
    Some(ReInvite {
        to,
        cseq,
        branch,
        local,
        destination,
        routes: from_leg
            .route_set
            .iter()
            .skip_while(|r| is_self(r))
            .cloned()
            .collect(),
        target: to_leg.target.clone()?,
    })
}

fn name_addr(uri: &str) -> String {
    if uri.contains('<') {
        uri.to_owned()
    } else {
        format!("<{uri}>")
    }
}

impl ReInvite {
    fn head(&self, dialog: &DialogState, method: &str, uri: &str, branch: &str) -> String {
        let from = self.to.other().leg(dialog);
        let to = self.to.leg(dialog);
        let mut s = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            self.destination.transport.via_token(),
            self.local,
        );
        for route in &self.routes {
            s.push_str(&format!("Route: {route}\r\n"));
        }
        s.push_str(&format!(
            "From: {};tag={}\r\nTo: {};tag={}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n",
            name_addr(&from.uri),
            from.tag,
            name_addr(&to.uri),
            to.tag,
            dialog.id.call_id,
            self.cseq,
        ));
        s
    }

    /// The re-INVITE with `sdp` as its offer.
    pub fn invite(&self, dialog: &DialogState, sdp: &[u8]) -> OwnRequest {
        let from = self.to.other().leg(dialog);
        let mut s = self.head(dialog, "INVITE", &self.target, &self.branch);
        if let Some(contact) = &from.target {
            s.push_str(&format!("Contact: {}\r\n", name_addr(contact)));
        }
        s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
            sdp.len()
        ));
        let mut payload = s.into_bytes();
        payload.extend_from_slice(sdp);
        OwnRequest {
            destination: self.destination,
            payload: Bytes::from(payload),
        }
    }

    /// The ACK of a 2xx (a new transaction: `branch` is fresh; §13.2.2.4).
    pub fn ack_2xx(&self, dialog: &DialogState, branch: &str) -> OwnRequest {
        let mut s = self.head(dialog, "ACK", &self.target, branch);
        s.push_str("Content-Length: 0\r\n\r\n");
        OwnRequest {
            destination: self.destination,
            payload: Bytes::from(s),
        }
    }

    /// The ACK of a final failure (part of the INVITE transaction: same branch; §17.1.1.3).
    pub fn ack_failure(&self, dialog: &DialogState) -> OwnRequest {
        let mut s = self.head(dialog, "ACK", &self.target, &self.branch);
        s.push_str("Content-Length: 0\r\n\r\n");
        OwnRequest {
            destination: self.destination,
            payload: Bytes::from(s),
        }
    }
}

/// Whether an end that sent `allow` (its Allow header values, `None` when it sent none)
/// accepts a re-INVITE: without an Allow header we assume it does (RFC 3261 §20.5 makes
/// the header optional).
pub fn allows_invite(allow: Option<&str>) -> bool {
    allow.is_none_or(|a| {
        a.split(',')
            .any(|m| m.trim().eq_ignore_ascii_case("INVITE"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_dialog::dialog;
    use crate::message::Message;

    fn listener(_: Transport) -> Option<SocketAddr> {
        Some("10.0.0.1:5060".parse().unwrap())
    }

    fn is_self(r: &str) -> bool {
        r.contains("10.0.0.1:5060")
    }

    #[test]
    fn a_reinvite_to_the_callee_speaks_for_the_caller() {
        let d = dialog();
        let r = plan(&d, End::Callee, 101, "z9hG4bKmf1".into(), listener, is_self).unwrap();
        let sdp = b"v=0\r\nc=IN IP4 10.1.1.1\r\n";
        let out = r.invite(&d, sdp);
        assert_eq!(out.destination.addr, "10.0.0.3:5080".parse().unwrap());
        assert_eq!(out.destination.local, listener(Transport::Udp));
        let m = Message::parse(out.payload).unwrap();
        assert_eq!(m.request_uri_raw(), Some(&b"sip:bob@10.0.0.3:5080"[..]));
        assert_eq!(m.from_tag().unwrap(), Some("atag"));
        assert_eq!(m.to_tag().unwrap(), Some("btag"));
        assert_eq!(m.cseq().unwrap().seq, 101);
        assert_eq!(m.body().as_ref(), sdp);
        let text = String::from_utf8_lossy(m.message_bytes().as_ref()).into_owned();
        // The caller's route set is only our own entry: no Route left.
        assert!(!text.contains("Route:"), "{text}");
        // The caller's own target stays the callee's idea of where the caller is.
        assert!(
            text.contains("Contact: <sip:alice@10.0.0.2:5070>"),
            "{text}"
        );
        assert!(text.contains("branch=z9hG4bKmf1"), "{text}");
    }

    #[test]
    fn a_reinvite_to_the_caller_keeps_the_callees_foreign_routes_and_acks_are_built() {
        let d = dialog();
        let r = plan(&d, End::Caller, 201, "z9hG4bKmf2".into(), listener, is_self).unwrap();
        let invite = String::from_utf8(r.invite(&d, b"v=0\r\n").payload.to_vec()).unwrap();
        assert!(invite.contains("Route: <sip:10.9.9.9;lr>\r\n"), "{invite}");
        assert!(
            invite.contains("From: <sip:bob@example.com>;tag=btag"),
            "{invite}"
        );
        assert!(
            invite.contains("Contact: <sip:bob@10.0.0.3:5080>"),
            "{invite}"
        );
        let ack = Message::parse(r.ack_2xx(&d, "z9hG4bKmf3").payload).unwrap();
        assert_eq!(ack.cseq().unwrap().seq, 201);
        assert_eq!(ack.cseq().unwrap().method.as_str(), "ACK");
        assert_eq!(ack.top_via().unwrap().branch, Some("z9hG4bKmf3"));
        let ack = Message::parse(r.ack_failure(&d).payload).unwrap();
        assert_eq!(ack.top_via().unwrap().branch, Some("z9hG4bKmf2"));
    }

    #[test]
    fn an_end_without_flow_gets_no_reinvite_and_allow_is_honoured() {
        let mut d = dialog();
        d.callee.flow = None;
        assert!(plan(&d, End::Callee, 1, "z9hG4bKx".into(), listener, is_self).is_none());
        assert_eq!(End::of_tag(&d, "btag"), Some(End::Callee));
        assert_eq!(End::of_tag(&d, "zz"), None);
        assert!(allows_invite(None));
        assert!(allows_invite(Some("ACK, invite, BYE")));
        assert!(!allows_invite(Some("ACK, BYE, MESSAGE")));
    }
}
