//! INVITE server transaction over the simulated link.

use super::harness::{Dir, InviteUac, SipPair, invite_server_answering};
use crate::transaction::{ServerInviteState, ServerInviteTx, TxEvent};

type Pair = SipPair<InviteUac, ServerInviteTx>;

#[test]
fn non_2xx_follows_timer_g_until_timer_h() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(486, b"486", false),
    );
    // Only the INVITE gets through; every ACK is lost.
    pair.link.drop_to_server_from = Some(1);
    pair.run();
    assert_eq!(
        pair.sent_ms(Dir::ToClient, b"486"),
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ],
        "intervals 0.5, 1, 2, 4, 4, ... (T2 cap)"
    );
    assert_eq!(
        pair.server_events,
        [(32000, TxEvent::Timeout), (32000, TxEvent::Terminated)]
    );
    assert_eq!(pair.client.acks_built, 1);
    assert_eq!(pair.sent_ms(Dir::ToServer, b"ACK").len(), 11);
}

#[test]
fn non_2xx_retransmissions_stop_at_the_ack() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(486, b"486", false),
    );
    // ACKs #1 (0 s), #2 (0.5 s) and #3 (1.5 s) are lost; #4 (3.5 s) arrives.
    pair.link.drop_to_server = [1, 2, 3].into();
    pair.run_until(3500);
    assert_eq!(pair.server().state(), ServerInviteState::Confirmed);
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToClient, b"486"), [0, 500, 1500, 3500]);
    assert_eq!(
        pair.server_events,
        [(8500, TxEvent::Terminated)],
        "Timer I = T4 after the ACK"
    );
}

#[test]
fn tcp_non_2xx_is_sent_once_and_timer_h_still_applies() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, true),
        invite_server_answering(486, b"486", true),
    );
    pair.link.drop_to_server_from = Some(1);
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToClient, b"486"), [0]);
    assert_eq!(
        pair.server_events,
        [(32000, TxEvent::Timeout), (32000, TxEvent::Terminated)]
    );
}

#[test]
fn retransmitted_invite_gets_the_last_provisional() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(180, b"180", false),
    );
    pair.link.drop_to_client = [0].into();
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToServer, b"INVITE"), [0, 500]);
    assert_eq!(pair.sent_ms(Dir::ToClient, b"180"), [0, 500]);
    assert_eq!(pair.client_events, [(500, TxEvent::Provisional(180))]);
    assert_eq!(pair.server().state(), ServerInviteState::Proceeding);
}

#[test]
fn acks_after_confirmed_are_absorbed() {
    let mut pair = Pair::new(
        |now| InviteUac::new(now, false),
        invite_server_answering(404, b"404", false),
    );
    pair.run_until(0);
    assert_eq!(pair.server().state(), ServerInviteState::Confirmed);
    pair.inject(Dir::ToServer, b"ACK");
    pair.inject(Dir::ToServer, b"INVITE");
    pair.run();
    assert_eq!(pair.sent_ms(Dir::ToClient, b"404"), [0]);
    assert_eq!(pair.server_events, [(5000, TxEvent::Terminated)]);
}
