//! Requests the proxy sends on its own behalf (issue 6: the BYEs that end a call whose media
//! or dialog timed out, `crate::media::byes_for`), each in a non-INVITE client transaction
//! (RFC 3261 §17.1.2): over UDP retransmitted on Timer E (T1, doubling up to T2) until a
//! final response or Timer F (64·T1); over a reliable transport sent once. The response comes
//! back to our Via and ends the transaction; nothing else is done with it.
//!
//! The request's top Via branch must come from [`origin_branch`], so that the ingress hands
//! its responses to the shard that holds the transaction.

use std::time::Instant;

use bytes::Bytes;

use crate::message::Message;
use crate::peer::Destination;
use crate::transaction::{ClientNonInviteTx, TransactionKey};

use super::core::{ClientEntry, ClientFsm, Core};
use super::wire::OUR_BRANCH_PREFIX;

/// A branch for a request originated by shard `shard` (RFC 3261 §8.1.1.7 magic cookie; the
/// shard in the same place as in forwarded branches, see `shard_of_branch`); `unique` makes
/// it unique (a random number).
pub fn origin_branch(shard: u8, unique: u64) -> String {
    format!("{OUR_BRANCH_PREFIX}{shard:02x}{unique:016x}og")
}

/// Why a request could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    /// The payload is not a request with a top Via branch and a CSeq.
    #[error("not a request with a Via branch and CSeq")]
    Malformed,
    /// A transaction with the same branch is already running.
    #[error("a transaction with this branch is already running")]
    Duplicate,
}

impl Core {
    /// Sends `payload` (a non-INVITE request built by the caller) to `destination` in its own
    /// client transaction; its response is absorbed.
    pub fn send_request(
        &mut self,
        now: Instant,
        destination: Destination,
        payload: Bytes,
    ) -> Result<(), OriginateError> {
        let msg = Message::parse(payload.clone()).map_err(|_| OriginateError::Malformed)?;
        let method = msg.method().ok_or(OriginateError::Malformed)?.clone();
        let branch = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch.map(str::to_owned))
            .ok_or(OriginateError::Malformed)?;
        let key = TransactionKey::client(&branch, method.as_str());
        if self.client_keys.contains_key(&key) {
            return Err(OriginateError::Duplicate);
        }
        self.start_non_invite_client(now, key, payload, destination);
        Ok(())
    }

    /// Starts a non-INVITE client transaction that belongs to no proxy context (a
    /// node-originated request, or a CANCEL) and sends its request.
    pub(super) fn start_non_invite_client(
        &mut self,
        now: Instant,
        key: TransactionKey,
        payload: Bytes,
        destination: Destination,
    ) {
        let tx = ClientNonInviteTx::new(
            now,
            payload,
            destination.transport.is_reliable(),
            &self.cfg.timers,
        );
        let id = self.new_id();
        self.client_keys.insert(key.clone(), id);
        self.clients.insert(
            id,
            ClientEntry {
                key,
                fsm: ClientFsm::NonInvite(tx),
                destination,
                request: None,
                branch: None,
                cancel_pending: false,
                cancel_sent: false,
                redial: None,
                redialled: false,
            },
        );
        self.drive_client(now, id, None);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{BOB, Harness, addr};
    use super::*;
    use crate::peer::Transport;

    fn bye(branch: &str) -> Bytes {
        Bytes::from(format!(
            "BYE sip:bob@{BOB} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\n\
             To: <sip:bob@example.com>;tag=b\r\nCall-ID: c-bye\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }

    fn udp_to_bob() -> Destination {
        Destination {
            transport: Transport::Udp,
            addr: addr(BOB),
            local: None,
            connection: None,
        }
    }

    #[test]
    fn branch_names_the_shard() {
        let b = origin_branch(3, 0xabc);
        assert!(b.starts_with("z9hG4bK"));
        assert_eq!(super::super::shard_of_branch(&b), Some(3));
    }

    /// Timer E: resent after T1 (500 ms), then 1 s, 2 s…; a 200 ends the transaction.
    #[test]
    fn udp_bye_is_retransmitted_on_timer_e_until_its_200() {
        let mut h = Harness::new();
        let branch = origin_branch(0, 7);
        let now = h.now;
        h.core
            .send_request(now, udp_to_bob(), bye(&branch))
            .unwrap();
        h.pump();
        assert_eq!(h.take().len(), 1, "sent once at first");
        h.advance(Duration::from_millis(499));
        assert!(h.take().is_empty(), "nothing before T1");
        h.advance(Duration::from_millis(1));
        assert_eq!(h.take().len(), 1, "Timer E at T1");
        h.advance(Duration::from_millis(1000));
        assert_eq!(h.take().len(), 1, "then after 2·T1");
        h.recv(
            BOB,
            &format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
                 From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\n\
                 Call-ID: c-bye\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        assert!(h.take().is_empty(), "the 200 is absorbed");
        h.advance(Duration::from_secs(40));
        assert!(h.take().is_empty(), "no retransmission after the 200");
        assert_eq!(h.core.transaction_counts().1, 0, "transaction gone");
        assert_eq!(
            h.core
                .send_request(now, udp_to_bob(), Bytes::from_static(b"x")),
            Err(OriginateError::Malformed)
        );
    }

    /// Without an answer, Timer F (64·T1) ends it after 7 sends over UDP; over TCP it is
    /// sent once.
    #[test]
    fn unanswered_bye_stops_at_timer_f_and_reliable_is_sent_once() {
        let mut h = Harness::new();
        let now = h.now;
        h.core
            .send_request(now, udp_to_bob(), bye(&origin_branch(0, 8)))
            .unwrap();
        h.pump();
        h.advance(Duration::from_secs(40));
        let sends = h.take().len();
        assert_eq!(sends, 11, "0, .5, 1.5, 3.5, 7.5, 11.5 … 31.5 s");
        let mut tcp = udp_to_bob();
        tcp.transport = Transport::Tcp;
        let now = h.now;
        h.core
            .send_request(now, tcp, bye(&origin_branch(0, 9)))
            .unwrap();
        h.pump();
        h.advance(Duration::from_secs(40));
        assert_eq!(h.take().len(), 1);
    }
}
