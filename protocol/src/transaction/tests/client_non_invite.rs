//! Non-INVITE client transaction over the simulated link.

use bytes::Bytes;

use super::harness::{Dir, SipPair, non_invite_server, options_client};
use crate::transaction::{ClientNonInviteTx, ServerNonInviteTx, TxEvent};

type Pair = SipPair<ClientNonInviteTx, ServerNonInviteTx>;

#[test]
fn udp_no_answer_follows_timer_e_capped_at_t2_until_timer_f() {
    let mut pair = Pair::new(options_client(false), non_invite_server(None, false));
    pair.link.drop_to_server_from = Some(0);
    pair.run();
    assert_eq!(
        pair.sent_ms(Dir::ToServer, b"OPTIONS"),
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(
        pair.client_events,
        [(32000, TxEvent::Timeout), (32000, TxEvent::Terminated)]
    );
}

#[test]
fn tcp_no_answer_sends_once() {
    let mut pair = Pair::new(options_client(true), non_invite_server(None, true));
    pair.link.drop_to_server_from = Some(0);
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToServer, b"OPTIONS"), [0]);
    assert_eq!(
        pair.client_events,
        [(32000, TxEvent::Timeout), (32000, TxEvent::Terminated)]
    );
}

#[test]
fn proceeding_retransmits_every_t2_and_server_resends_last_provisional() {
    let mut pair = Pair::new(
        options_client(false),
        non_invite_server(Some((100, b"100")), false),
    );
    pair.run_until(10_000);
    assert_eq!(
        pair.sent_ms(Dir::ToServer, b"OPTIONS"),
        [0, 500, 4500, 8500]
    );
    assert_eq!(pair.sent_ms(Dir::ToClient, b"100"), [0, 500, 4500, 8500]);
    let now = pair.now;
    pair.server()
        .send_response(now, 200, Bytes::from_static(b"200"))
        .expect("final in Proceeding");
    pair.run();
    let provisionals = pair
        .client_events
        .iter()
        .filter(|(_, e)| *e == TxEvent::Provisional(100))
        .count();
    assert_eq!(provisionals, 4);
    assert_eq!(
        pair.client_events[4..],
        [(10_000, TxEvent::Final(200)), (15_000, TxEvent::Terminated)],
        "Timer K = T4 after the final"
    );
    assert_eq!(
        pair.server_events,
        [(42_000, TxEvent::Terminated)],
        "Timer J = 64*T1"
    );
}

#[test]
fn lost_final_is_resent_for_the_retransmitted_request() {
    let mut pair = Pair::new(
        options_client(false),
        non_invite_server(Some((404, b"404")), false),
    );
    pair.link.drop_to_client = [0].into();
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToServer, b"OPTIONS"), [0, 500]);
    assert_eq!(pair.sent_ms(Dir::ToClient, b"404"), [0, 500]);
    assert_eq!(
        pair.client_events,
        [(500, TxEvent::Final(404)), (5500, TxEvent::Terminated)]
    );
    assert_eq!(pair.server_events, [(32_000, TxEvent::Terminated)]);
}

#[test]
fn tcp_final_terminates_both_at_once() {
    let mut pair = Pair::new(
        options_client(true),
        non_invite_server(Some((200, b"200")), true),
    );
    pair.run();
    assert_eq!(
        pair.client_events,
        [(0, TxEvent::Final(200)), (0, TxEvent::Terminated)]
    );
    assert_eq!(pair.server_events, [(0, TxEvent::Terminated)]);
}
