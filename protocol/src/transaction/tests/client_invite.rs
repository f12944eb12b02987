//! INVITE client transaction over the simulated link.

use bytes::Bytes;

use super::harness::{Dir, InviteUac, SipPair, invite_server_answering, silent_invite_server};
use crate::transaction::{
    CancelPermit, ClientInviteState, ServerInviteState, ServerInviteTx, TxEvent,
};

type Pair = SipPair<InviteUac, ServerInviteTx>;

#[test]
fn udp_no_answer_follows_timer_a_until_timer_b() {
    let mut pair = Pair::new(|now| InviteUac::new(now, false), silent_invite_server());
    pair.link.drop_to_server_from = Some(0);
    pair.run();
    assert_eq!(
        pair.sent_ms(Dir::ToServer, b"INVITE"),
        [0, 500, 1500, 3500, 7500, 15500, 31500]
    );
    assert_eq!(
        pair.client_events,
        [(32000, TxEvent::Timeout), (32000, TxEvent::Terminated)]
    );
    assert!(pair.client.tx.is_terminated());
    assert!(pair.server.is_none());
}

#[test]
fn tcp_no_answer_sends_once_and_times_out() {
    let mut pair = Pair::new(|now| InviteUac::new(now, true), silent_invite_server());
    pair.link.drop_to_server_from = Some(0);
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToServer, b"INVITE"), [0]);
    assert_eq!(
        pair.client_events,
        [(32000, TxEvent::Timeout), (32000, TxEvent::Terminated)]
    );
}

#[test]
fn provisional_stops_retransmissions_and_timer_b() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(100, b"100", false),
    );
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToServer, b"INVITE"), [0]);
    assert_eq!(pair.client.tx.state(), ClientInviteState::Proceeding);
    assert_eq!(pair.client.tx.poll_timeout(), None, "Timer C is the TU's");
    assert_eq!(pair.client_events, [(0, TxEvent::Provisional(100))]);
}

#[test]
fn ack_for_non_2xx_is_built_once_and_resent_for_each_retransmission() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(486, b"486", false),
    );
    // Packets to the server: #0 INVITE, #1 ACK (0 s), #2 ACK (0.5 s), #3 ACK (1.5 s).
    pair.link.drop_to_server = [1, 2].into();
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToClient, b"486"), [0, 500, 1500]);
    assert_eq!(pair.sent_ms(Dir::ToServer, b"ACK"), [0, 500, 1500]);
    assert_eq!(pair.dropped_ms(Dir::ToServer, b"ACK"), [0, 500]);
    assert_eq!(pair.sent_ms(Dir::ToServer, b"INVITE"), [0]);
    assert_eq!(pair.client.acks_built, 1);
    assert_eq!(
        pair.client_events,
        [(0, TxEvent::Final(486)), (32000, TxEvent::Terminated)],
        "Timer D is 32 s after the first final; retransmissions are not passed up"
    );
    assert_eq!(
        pair.server_events,
        [(6500, TxEvent::Terminated)],
        "Confirmed at 1.5 s, then Timer I = T4"
    );
}

#[test]
fn tcp_non_2xx_acks_and_terminates_at_once() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, true),
        invite_server_answering(486, b"486", true),
    );
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToServer, b"ACK"), [0]);
    assert_eq!(pair.sent_ms(Dir::ToClient, b"486"), [0]);
    assert_eq!(
        pair.client_events,
        [(0, TxEvent::Final(486)), (0, TxEvent::Terminated)]
    );
    assert_eq!(pair.server_events, [(0, TxEvent::Terminated)]);
}

#[test]
fn success_after_losing_every_provisional() {
    let mut pair = Pair::new(|now| InviteUac::new(now, false), silent_invite_server());
    // Responses: #0 100 (0.2 s), #1 180 (0.4 s), #2 180 resent for the retransmitted INVITE
    // (0.5 s), #3 183 (1.0 s) are lost; #4 200 (1.2 s) gets through.
    pair.link.drop_to_client = [0, 1, 2, 3].into();
    let respond = |pair: &mut Pair, ms: u64, status: u16, data: &'static [u8]| {
        pair.run_until(ms);
        let now = pair.now;
        pair.server()
            .send_response(now, status, Bytes::from_static(data))
            .expect("allowed in this state");
    };
    respond(&mut pair, 200, 100, b"100");
    respond(&mut pair, 400, 180, b"180");
    respond(&mut pair, 1000, 183, b"183");
    respond(&mut pair, 1200, 200, b"200");
    pair.run_until(1200);
    assert_eq!(pair.sent_ms(Dir::ToServer, b"INVITE"), [0, 500]);
    assert_eq!(pair.sent_ms(Dir::ToClient, b"180"), [400, 500]);
    assert_eq!(pair.client.tx.state(), ClientInviteState::Accepted);
    assert_eq!(pair.server().state(), ServerInviteState::Accepted);
    assert_eq!(pair.client_events, [(1200, TxEvent::Final(200))]);
    // The UAS core retransmits its 2xx; the client passes it up again (RFC 6026).
    respond(&mut pair, 1700, 200, b"200");
    // The UAC core ACKs the 2xx outside the transaction; the server passes it up.
    pair.inject(Dir::ToServer, b"ACK");
    pair.run();
    assert_eq!(
        pair.client_events,
        [
            (1200, TxEvent::Final(200)),
            (1700, TxEvent::RetransmittedSuccess(200)),
            (33200, TxEvent::Terminated),
        ],
        "Timer M ends Accepted 64*T1 after the first 2xx"
    );
    assert_eq!(
        pair.server_events,
        [(1700, TxEvent::AckForSuccess), (33200, TxEvent::Terminated)],
        "Timer L ends Accepted 64*T1 after the first 2xx"
    );
    assert_eq!(
        pair.client.acks_built, 0,
        "the transaction never ACKs a 2xx"
    );
}

#[test]
fn accepted_absorbs_invite_and_2xx_retransmissions() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(200, b"200", false),
    );
    pair.link.drop_to_client = [0].into();
    pair.run_until(500);
    // The client retransmitted the INVITE; the server in Accepted absorbed it (2xx
    // retransmission is the TU's job), so nothing reached the client yet.
    assert_eq!(pair.sent_ms(Dir::ToServer, b"INVITE"), [0, 500]);
    assert_eq!(pair.sent_ms(Dir::ToClient, b"200"), [0]);
    assert!(pair.client_events.is_empty());
    for ms in [500, 1500, 3500] {
        pair.run_until(ms);
        let now = pair.now;
        pair.server()
            .send_response(now, 200, Bytes::from_static(b"200"))
            .expect("2xx retransmissions pass in Accepted");
    }
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToServer, b"INVITE"), [0, 500]);
    assert_eq!(
        pair.client_events,
        [
            (500, TxEvent::Final(200)),
            (1500, TxEvent::RetransmittedSuccess(200)),
            (3500, TxEvent::RetransmittedSuccess(200)),
            (32500, TxEvent::Terminated),
        ]
    );
    assert_eq!(pair.server_events, [(32000, TxEvent::Terminated)]);
}

#[test]
fn cancel_waits_for_a_provisional() {
    let mut pair = Pair::new(|now| InviteUac::new(now, false), silent_invite_server());
    pair.run_until(0);
    assert_eq!(
        pair.client.tx.cancel_requested(),
        CancelPermit::AfterProvisional
    );
    pair.run_until(300);
    let now = pair.now;
    pair.server()
        .send_response(now, 180, Bytes::from_static(b"180"))
        .expect("1xx in Proceeding");
    pair.run_until(300);
    assert_eq!(
        pair.client_events,
        [
            (300, TxEvent::Provisional(180)),
            (300, TxEvent::CancelAllowed)
        ]
    );
    assert_eq!(pair.client.tx.cancel_requested(), CancelPermit::SendNow);
    let now = pair.now;
    pair.server()
        .send_response(now, 487, Bytes::from_static(b"487"))
        .expect("final in Proceeding");
    pair.run_until(300);
    assert_eq!(pair.client.tx.cancel_requested(), CancelPermit::TooLate);
}

#[test]
fn cancel_request_is_dropped_by_a_final_response() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(603, b"603", false),
    );
    assert_eq!(
        pair.client.tx.cancel_requested(),
        CancelPermit::AfterProvisional
    );
    pair.run();
    assert!(
        !pair
            .client_events
            .iter()
            .any(|(_, e)| *e == TxEvent::CancelAllowed)
    );
}

#[test]
fn latency_delays_every_step() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(486, b"486", false),
    );
    pair.link.latency = std::time::Duration::from_millis(100);
    pair.run();
    // INVITE arrives at 0.1 s, 486 at 0.2 s, ACK at 0.3 s: before Timer G (0.6 s) fires.
    assert_eq!(pair.sent_ms(Dir::ToClient, b"486"), [100]);
    assert_eq!(pair.sent_ms(Dir::ToServer, b"ACK"), [200]);
    assert_eq!(pair.sent_ms(Dir::ToServer, b"INVITE"), [0]);
    assert_eq!(
        pair.client_events,
        [(200, TxEvent::Final(486)), (32200, TxEvent::Terminated)]
    );
    assert_eq!(pair.server_events, [(5300, TxEvent::Terminated)]);
}
