//! Non-INVITE server transaction over the simulated link.

use super::harness::{Dir, SipPair, non_invite_server, options_client};
use crate::transaction::{ClientNonInviteTx, ServerNonInviteState, ServerNonInviteTx, TxEvent};

type Pair = SipPair<ClientNonInviteTx, ServerNonInviteTx>;

#[test]
fn trying_absorbs_retransmissions_until_the_tu_answers() {
    let mut pair = Pair::new(options_client(false), non_invite_server(None, false));
    pair.run_until(4000);
    assert_eq!(
        pair.sent_ms(Dir::ToServer, b"OPTIONS"),
        [0, 500, 1500, 3500]
    );
    assert!(pair.log.iter().all(|p| p.dir == Dir::ToServer));
    assert_eq!(pair.server().state(), ServerNonInviteState::Trying);
}

#[test]
fn completed_answers_every_retransmission_until_timer_j() {
    let mut pair = Pair::new(
        options_client(false),
        non_invite_server(Some((200, b"200")), false),
    );
    // The first three 200s are lost: the client keeps retransmitting and each copy is answered.
    pair.link.drop_to_client = [0, 1, 2].into();
    pair.run();
    assert_eq!(
        pair.sent_ms(Dir::ToServer, b"OPTIONS"),
        [0, 500, 1500, 3500]
    );
    assert_eq!(pair.sent_ms(Dir::ToClient, b"200"), [0, 500, 1500, 3500]);
    assert_eq!(
        pair.client_events,
        [(3500, TxEvent::Final(200)), (8500, TxEvent::Terminated)]
    );
    assert_eq!(pair.server_events, [(32_000, TxEvent::Terminated)]);
}
