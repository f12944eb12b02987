//! Ending a call from the middle: the BYEs a proxy sends to both ends when the call's media
//! stopped (issue 6 "media timeouts"; RFC 3261 §15.1.1 and §12.2.1.1 for what a BYE inside a
//! dialog carries).
//!
//! Each end gets a BYE that looks as if the other end sent it: From is the other end's URI and
//! tag, To is its own, the Request-URI its remote target, Route the other end's route set
//! without the entries naming this proxy (it is the one sending), and a CSeq one above the
//! highest the other end used. The responses come back to our Via and are dropped as strays.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::dialog::{DialogState, Leg};
use crate::peer::{Destination, Transport};

/// One BYE to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye {
    /// Where it goes: the end's flow.
    pub destination: Destination,
    /// The request.
    pub payload: Bytes,
}

/// The BYEs that end `dialog` at both ends (an end without a known flow or target is left
/// out). `listener` gives our address for a transport (the Via sent-by and the source);
/// `is_self` tells whether a Record-Route value names this proxy; `branch` makes a fresh
/// branch parameter (with the RFC 3261 magic cookie) per request.
pub fn byes_for(
    dialog: &DialogState,
    listener: impl Fn(Transport) -> Option<SocketAddr>,
    is_self: impl Fn(&str) -> bool,
    mut branch: impl FnMut() -> String,
) -> Vec<Bye> {
    [
        (&dialog.caller, &dialog.callee),
        (&dialog.callee, &dialog.caller),
    ]
    .into_iter()
    .filter_map(|(from, to)| {
        let mut destination = to.flow?;
        let local = listener(destination.transport)?;
        destination.local = Some(local);
        let target = to.target.as_deref()?;
        let payload = build(
            dialog,
            from,
            to,
            target,
            local,
            destination.transport,
            &is_self,
            &branch(),
        );
        Some(Bye {
            destination,
            payload,
        })
    })
    .collect()
}

fn name_addr(uri: &str) -> String {
    if uri.contains('<') {
        uri.to_owned()
    } else {
        format!("<{uri}>")
    }
}

#[allow(clippy::too_many_arguments)] // private: the parts of one request
fn build(
    dialog: &DialogState,
    from: &Leg,
    to: &Leg,
    target: &str,
    local: SocketAddr,
    transport: Transport,
    is_self: &impl Fn(&str) -> bool,
    branch: &str,
) -> Bytes {
    let mut s = format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/{} {local};branch={branch};rport\r\nMax-Forwards: 70\r\n",
        transport.via_token()
    );
    for route in from.route_set.iter().skip_while(|r| is_self(r)) {
        s.push_str(&format!("Route: {route}\r\n"));
    }
    s.push_str(&format!(
        "From: {};tag={}\r\nTo: {};tag={}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\n\
         Reason: SIP;cause=408;text=\"media timeout\"\r\nContent-Length: 0\r\n\r\n",
        name_addr(&from.uri),
        from.tag,
        name_addr(&to.uri),
        to.tag,
        dialog.id.call_id,
        from.cseq.unwrap_or(1).saturating_add(1),
    ));
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_dialog::dialog;
    use crate::message::Message;

    #[test]
    fn both_ends_get_a_bye_as_from_the_other_end() {
        let mut n = 0;
        let byes = byes_for(
            &dialog(),
            |_| Some("10.0.0.1:5060".parse().unwrap()),
            |r| r.contains("10.0.0.1:5060"),
            || {
                n += 1;
                format!("z9hG4bKmt{n}")
            },
        );
        assert_eq!(byes.len(), 2);
        let to_bob = Message::parse(byes[0].payload.clone()).unwrap();
        assert_eq!(byes[0].destination.addr, "10.0.0.3:5080".parse().unwrap());
        assert_eq!(to_bob.request_uri_raw().unwrap(), b"sip:bob@10.0.0.3:5080");
        assert_eq!(to_bob.from_tag().unwrap(), Some("atag"));
        assert_eq!(to_bob.to_tag().unwrap(), Some("btag"));
        assert_eq!(to_bob.cseq().unwrap().seq, 2);
        assert_eq!(
            to_bob.routes().unwrap().len(),
            0,
            "our own route is not kept"
        );
        let to_alice = Message::parse(byes[1].payload.clone()).unwrap();
        assert_eq!(to_alice.from_tag().unwrap(), Some("btag"));
        assert_eq!(to_alice.routes().unwrap().len(), 1, "the foreign hop stays");
        assert_eq!(
            byes[1].destination.local,
            Some("10.0.0.1:5060".parse().unwrap())
        );
    }

    #[test]
    fn an_end_without_a_flow_is_left_out() {
        let mut d = dialog();
        d.callee.flow = None;
        let byes = byes_for(
            &d,
            |_| Some("10.0.0.1:5060".parse().unwrap()),
            |_| false,
            || "z9hG4bKx".to_owned(),
        );
        assert_eq!(byes.len(), 1);
    }
}
