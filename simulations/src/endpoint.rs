//! One agent's SIP endpoint: matches responses to the client transactions waiting for them
//! (by the top Via branch, RFC 3261 §17.1.3) and answers requests as a minimal UAS: 200 to
//! INVITE (with a To tag, a Contact and the Record-Route copied, RFC 3261 §12.1.1), MESSAGE,
//! BYE and OPTIONS; ACK is absorbed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use sipmesh_protocol::message::response_to;
use sipmesh_protocol::{HeaderName, Message, Method, StatusCode};
use tokio::sync::mpsc;

use crate::link::Reply;

/// Where an agent's answers come from and its requests are answered.
#[derive(Debug)]
pub struct Endpoint {
    /// Client transactions waiting for responses, by branch.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
    /// The Contact URI put into 200s to INVITE.
    contact: Mutex<String>,
    /// The To tag of this endpoint's answers.
    tag: String,
    /// Requests received (INVITE, MESSAGE, BYE, …; not ACK).
    received: AtomicU64,
    /// The user part every Request-URI reaching this endpoint must carry.
    user: String,
    /// Requests whose Request-URI named another user: delivered to the wrong agent.
    misdelivered: AtomicU64,
}

impl Endpoint {
    /// An endpoint of `user` answering with `contact` and To tag `tag`.
    pub fn new(user: &str, contact: String, tag: String) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(HashMap::new()),
            contact: Mutex::new(contact),
            tag,
            received: AtomicU64::new(0),
            user: user.to_owned(),
            misdelivered: AtomicU64::new(0),
        })
    }

    /// Takes the count of requests meant for another user, and resets it.
    pub fn take_misdelivered(&self) -> u64 {
        self.misdelivered.swap(0, Ordering::SeqCst)
    }

    /// Changes the Contact of future answers (after a reconnect).
    pub fn set_contact(&self, contact: String) {
        *self.contact.lock().unwrap_or_else(PoisonError::into_inner) = contact;
    }

    /// Requests received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Starts waiting for responses whose top Via has `branch`.
    pub fn expect(&self, branch: &str) -> mpsc::UnboundedReceiver<Message> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(branch.to_owned(), tx);
        rx
    }

    /// Stops waiting for `branch`.
    pub fn forget(&self, branch: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(branch);
    }

    /// Handles one message read from a link; `reply` sends answers back the way it came.
    pub fn dispatch(&self, bytes: Bytes, reply: &Reply) {
        let Ok(msg) = Message::parse(bytes) else {
            return;
        };
        if msg.is_request() {
            if let Some(answer) = self.answer(&msg) {
                reply.send(answer);
            }
            return;
        }
        let branch = msg.top_via().ok().and_then(|v| v.branch.map(str::to_owned));
        let Some(branch) = branch else { return };
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&branch)
            .cloned();
        if let Some(tx) = waiter {
            let _ = tx.send(msg);
        }
    }

    /// The UAS answer to `req`, if any.
    fn answer(&self, req: &Message) -> Option<Bytes> {
        let method = req.method()?;
        if *method == Method::Ack {
            return None;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        let for_us = req
            .request_uri_raw()
            .and_then(|u| std::str::from_utf8(u).ok())
            .and_then(|u| u.split_once(':'))
            .and_then(|(_, rest)| rest.split_once('@'))
            .is_some_and(|(user, _)| user == self.user);
        if !for_us {
            // Answered 404 so the sender does not count it as delivered.
            self.misdelivered.fetch_add(1, Ordering::SeqCst);
            return Some(response_to(req, StatusCode(404), "Not Here").build());
        }
        let mut response = response_to(req, StatusCode::OK, "OK").to_tag(&self.tag);
        if *method == Method::Invite {
            // RFC 3261 §12.1.1: the UAS copies Record-Route into the 2xx, in order.
            for rr in req.header_values(&HeaderName::RecordRoute) {
                response = response.header("Record-Route", rr);
            }
            let contact = self
                .contact
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            response = response.header("Contact", format!("<{contact}>"));
        }
        Some(response.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Bytes {
        Bytes::from_static(
            b"INVITE sip:bob@127.0.0.1:5999 SIP/2.0\r\n\
              Record-Route: <sip:127.0.0.11:5060;lr>\r\n\
              Via: SIP/2.0/UDP 127.0.0.11:5060;branch=z9hG4bKproxy\r\n\
              Via: SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bKuac\r\n\
              From: <sip:alice@d.test>;tag=a1\r\n\
              To: <sip:bob@d.test>\r\n\
              Call-ID: c1\r\n\
              CSeq: 1 INVITE\r\n\
              Max-Forwards: 69\r\n\
              Content-Length: 0\r\n\r\n",
        )
    }

    #[test]
    fn answers_invite_with_tag_contact_and_record_route() {
        let ep = Endpoint::new("bob", "sip:bob@127.0.0.1:5999".to_owned(), "b1".to_owned());
        let req = Message::parse(invite()).expect("parses");
        let answer = Message::parse(ep.answer(&req).expect("answered")).expect("parses");
        assert_eq!(answer.status(), Some(StatusCode::OK));
        assert_eq!(answer.to_tag().expect("to"), Some("b1"));
        assert_eq!(answer.header_count(&HeaderName::RecordRoute), 1);
        assert_eq!(answer.header_count(&HeaderName::Via), 2);
        assert!(answer.header(&HeaderName::Contact).is_some());
        assert_eq!(ep.received(), 1);
        assert_eq!(ep.take_misdelivered(), 0);
        let carol = Endpoint::new("carol", "sip:carol@h".to_owned(), "c1".to_owned());
        let answer = Message::parse(carol.answer(&req).expect("answered")).expect("parses");
        assert_eq!(answer.status(), Some(StatusCode(404)));
        assert_eq!(carol.take_misdelivered(), 1);
    }

    #[test]
    fn routes_responses_by_branch() {
        let ep = Endpoint::new("x", "sip:x@y".to_owned(), "t".to_owned());
        let mut rx = ep.expect("z9hG4bKuac");
        let resp = Bytes::from_static(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5998;branch=z9hG4bKuac\r\n\
              From: <sip:a@d>;tag=1\r\nTo: <sip:a@d>;tag=2\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n\
              Content-Length: 0\r\n\r\n",
        );
        ep.dispatch(resp.clone(), &Reply::Discard);
        assert!(rx.try_recv().is_ok());
        ep.forget("z9hG4bKuac");
        ep.dispatch(resp, &Reply::Discard);
        assert!(rx.try_recv().is_err());
    }
}
