//! Dialog facts read from SIP messages: what the proxy core remembers of a forwarded INVITE or
//! in-dialog request, and the events it builds when their responses come back.

use std::time::Duration;

use thiserror::Error;

use crate::header::Contacts;
use crate::header::HeaderName;
use crate::message::{Message, Method, ParseError};
use crate::peer::Destination;

use super::event::{DialogEvent, DialogSnapshot, EndReason, InDialogUpdate};
use super::id::DialogId;
use super::state::Leg;

/// Why a message does not describe a dialog.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DialogError {
    /// The request has no From tag (RFC 2543 peers; RFC 3261 §8.1.1.3 requires one).
    #[error("no From tag")]
    MissingFromTag,
    /// The response or in-dialog request has no To tag: no dialog (RFC 3261 §12.1).
    #[error("no To tag")]
    MissingToTag,
    /// A header the dialog needs does not parse.
    #[error("{0}")]
    Header(#[from] ParseError),
}

/// The Session-Expires interval of a message (RFC 4028 §4: `delta-seconds` then parameters).
/// Zero and unparsable values count as absent.
pub fn session_expires(msg: &Message) -> Option<Duration> {
    let h = msg.header(&HeaderName::SessionExpires)?;
    let v = h.value_str()?;
    let secs: u64 = v.split(';').next()?.trim().parse().ok()?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The first Contact URI of a message (its remote target), if any.
fn contact_uri(msg: &Message) -> Result<Option<String>, ParseError> {
    Ok(match msg.contacts()? {
        Contacts::List(list) => list.first().map(|c| c.name_addr.uri_raw.to_owned()),
        Contacts::Star => None,
    })
}

/// What the proxy keeps of a dialog-creating INVITE it forwarded, to build dialog events from
/// its responses (the request itself is gone once the final response went out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteFacts {
    /// The Call-ID.
    pub call_id: String,
    /// The caller's end as far as the request tells (no route set yet).
    pub caller: Leg,
    /// The To URI.
    pub callee_uri: String,
    /// The Session-Expires the caller asked for.
    pub session_expires: Option<Duration>,
}

impl InviteFacts {
    /// Reads an initial INVITE (no To tag) that came from `caller_flow`.
    pub fn from_request(req: &Message, caller_flow: Destination) -> Result<Self, DialogError> {
        let from = req.from()?;
        let tag = from.tag().ok_or(DialogError::MissingFromTag)?;
        Ok(Self {
            call_id: req.call_id()?.to_owned(),
            caller: Leg {
                uri: from.uri_raw.to_owned(),
                tag: tag.to_owned(),
                target: contact_uri(req)?,
                route_set: Vec::new(),
                cseq: Some(req.cseq()?.seq),
                flow: Some(caller_flow),
                allow: allow(req),
            },
            callee_uri: req.to()?.uri_raw.to_owned(),
            session_expires: session_expires(req),
        })
    }

    /// The snapshot of the dialog a response with a To tag creates, from the branch that went
    /// to `callee_flow`.
    pub fn snapshot(
        &self,
        resp: &Message,
        callee_flow: Destination,
    ) -> Result<DialogSnapshot, DialogError> {
        let tag = resp.to_tag()?.ok_or(DialogError::MissingToTag)?;
        let record_route: Vec<String> = resp
            .record_routes()?
            .iter()
            .map(|r| r.raw.to_owned())
            .collect();
        let mut caller = self.caller.clone();
        caller.route_set = record_route.iter().rev().cloned().collect();
        let callee = Leg {
            uri: self.callee_uri.clone(),
            tag: tag.to_owned(),
            target: contact_uri(resp)?,
            route_set: record_route,
            cseq: None,
            flow: Some(callee_flow),
            allow: allow(resp),
        };
        Ok(DialogSnapshot {
            id: DialogId::new(self.call_id.clone(), caller.tag.clone(), tag),
            caller,
            callee,
            // RFC 4028 §7.2: the 2xx carries the interval the UAS accepted; the request's is
            // only the caller's wish, used when the answer is silent.
            session_expires: session_expires(resp).or(self.session_expires),
        })
    }

    /// The event for one response to the INVITE: Early for 101–199 with a To tag, Confirmed
    /// for 2xx; `None` otherwise (100, a failure, or no To tag).
    pub fn event_for(&self, resp: &Message, callee_flow: Destination) -> Option<DialogEvent> {
        let code = resp.status()?.0;
        if !(101..300).contains(&code) {
            return None;
        }
        let snapshot = Box::new(self.snapshot(resp, callee_flow).ok()?);
        Some(if code >= 200 {
            DialogEvent::Confirmed(snapshot)
        } else {
            DialogEvent::Early(snapshot)
        })
    }
}

/// What the proxy keeps of an in-dialog request (To tag present) it forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDialogFacts {
    /// The dialog, oriented from the request (From tag first).
    pub id: DialogId,
    /// The method.
    pub method: Method,
    /// The CSeq number.
    pub cseq: u32,
    /// The request's Contact URI.
    pub target: Option<String>,
    /// Where the request came from.
    pub flow: Destination,
}

impl InDialogFacts {
    /// Reads an in-dialog request that matters to the dialog record: BYE, re-INVITE and UPDATE.
    /// `Ok(None)` for other methods and for requests outside a dialog.
    pub fn from_request(req: &Message, flow: Destination) -> Result<Option<Self>, DialogError> {
        let Some(method) = req.method() else {
            return Ok(None);
        };
        if !matches!(method, Method::Bye | Method::Invite | Method::Update) {
            return Ok(None);
        }
        let Some(to_tag) = req.to_tag()? else {
            return Ok(None);
        };
        let from_tag = req.from_tag()?.ok_or(DialogError::MissingFromTag)?;
        Ok(Some(Self {
            id: DialogId::new(req.call_id()?, from_tag, to_tag),
            method: method.clone(),
            cseq: req.cseq()?.seq,
            target: contact_uri(req)?,
            flow,
        }))
    }

    /// The event for the final response `code` (with the response when one was received):
    /// a BYE ends the dialog whatever its answer (RFC 3261 §15.1.2: the UAS tears the session
    /// down on receipt; a 481 means it was gone already); a 2xx to a re-INVITE or UPDATE
    /// refreshes it (§12.2.2); anything else changes nothing.
    pub fn event_for(&self, code: u16, resp: Option<&Message>) -> Option<DialogEvent> {
        if code < 200 {
            return None;
        }
        if self.method == Method::Bye {
            return Some(DialogEvent::Terminated {
                id: self.id.clone(),
                reason: EndReason::Bye,
            });
        }
        if !(200..300).contains(&code) {
            return None;
        }
        let responder_target = resp.and_then(|r| contact_uri(r).ok().flatten());
        Some(DialogEvent::Refreshed(Box::new(InDialogUpdate {
            id: self.id.clone(),
            method: self.method.clone(),
            cseq: self.cseq,
            requester_target: self.target.clone(),
            responder_target,
            requester_flow: Some(self.flow),
            session_expires: resp.and_then(session_expires),
        })))
    }
}

/// The methods of every Allow line of `msg`, joined by ", "; `None` without an Allow header.
fn allow(msg: &Message) -> Option<String> {
    let name = HeaderName::Allow;
    if msg.header_count(&name) == 0 {
        return None;
    }
    let methods: Vec<String> = msg
        .header_values(&name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    Some(methods.join(", "))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn invite(extra: &str) -> Message {
        Message::parse(Bytes::from(format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKa\r\n\
             From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.2>\r\n{extra}Content-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    #[test]
    fn the_callers_allow_is_kept_and_absent_stays_none() {
        let flow = Destination {
            transport: crate::peer::Transport::Udp,
            addr: "10.0.0.2:5060".parse().unwrap(),
            local: None,
            connection: None,
        };
        let with = InviteFacts::from_request(&invite("Allow: INVITE, ACK\r\nAllow: BYE\r\n"), flow)
            .unwrap();
        assert_eq!(with.caller.allow.as_deref(), Some("INVITE, ACK, BYE"));
        let without = InviteFacts::from_request(&invite(""), flow).unwrap();
        assert_eq!(without.caller.allow, None);
    }
}
