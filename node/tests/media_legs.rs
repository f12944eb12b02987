//! Media sessions per call leg pair, late offers and the media-timeout BYE's retransmission
//! (issue 6), with a real `sipmesh`, a real rtpengine and hand-driven UDP phones: these cases
//! need exact tags, bodies and timing that SIPp scenarios cannot give.

mod media_ua;

use std::time::{Duration, Instant};

use media_ua::{Setup, ng_query_ok};

#[test]
fn two_calls_sharing_a_call_id_are_two_sessions() {
    let test = "media_legs::shared_call_id";
    let setup = Setup::start(test, "");
    let (alice, bob) = (setup.phone("alice"), setup.phone("bob"));
    bob.register(&setup.harness);
    let call_id = "shared-call-id-1";
    let one = alice.call(&setup, &bob, call_id, "leg-one", "bob-one", Some(4000));
    let mut two = alice.call(&setup, &bob, call_id, "leg-two", "bob-two", Some(4010));
    let ng = setup.rtp.ng_addr();
    assert!(
        ng_query_ok(ng, call_id, "leg-one"),
        "first leg pair unknown"
    );
    assert!(
        ng_query_ok(ng, call_id, "leg-two"),
        "second leg pair unknown"
    );
    // The callee hangs up the first call: only that leg pair goes.
    bob.bye_from_callee(&setup, &alice, &one);
    assert!(
        ng_query_ok(ng, call_id, "leg-two"),
        "the second call lost its session with the first call's BYE"
    );
    let calls = setup.rtp.list_calls(Duration::from_secs(1));
    assert_eq!(calls, Some(vec![call_id.to_owned()]));
    alice.bye_from_caller(&setup, &bob, &mut two);
    setup.rtp.assert_no_calls(media_ua::LIST_EMPTY);
}

#[test]
fn late_offer_in_the_2xx_is_answered_in_the_ack() {
    let test = "media_legs::late_offer";
    let setup = Setup::start(test, "");
    let (alice, bob) = (setup.phone("alice"), setup.phone("bob"));
    bob.register(&setup.harness);
    let mut call = alice.late_call(&setup, &bob, "late-offer-1", "late-a", "late-b");
    // A re-INVITE without SDP: the offer comes in its 2xx again, the answer in its ACK.
    alice.late_reinvite(&setup, &bob, &mut call);
    alice.bye_from_caller(&setup, &bob, &mut call);
    setup.rtp.assert_no_calls(media_ua::LIST_EMPTY);
}

#[test]
fn media_timeout_bye_is_retransmitted_until_answered() {
    let test = "media_legs::bye_retransmitted";
    let setup = Setup::start(test, "media_timeout_ms = 1000\npoll_interval_ms = 200\n");
    let (alice, bob) = (setup.phone("alice"), setup.phone("bob"));
    bob.register(&setup.harness);
    let call = alice.call(&setup, &bob, "mt-retx-1", "mt-a", "mt-b", Some(4020));
    // No RTP flows: after about a second the node sends BYE to both ends. Bob ignores the
    // first one and answers the retransmission (Timer E, 500 ms over UDP).
    let started = Instant::now();
    let first = bob.expect_request("BYE", Duration::from_secs(6));
    let first_at = started.elapsed();
    let again = bob.expect_request("BYE", Duration::from_secs(2));
    let gap = started.elapsed() - first_at;
    assert_eq!(
        first.header("Via"),
        again.header("Via"),
        "a retransmission keeps its branch"
    );
    assert!(
        gap >= Duration::from_millis(350) && gap < Duration::from_millis(1500),
        "retransmitted after {gap:?}"
    );
    bob.send_to_node(
        &setup,
        &media_ua::respond(&again, 200, "OK", "", None, None),
    );
    // Alice answers (her first BYE and its first retransmission are queued by now): she
    // gets no retransmission after her 200.
    let to_alice = alice.expect_request("BYE", Duration::from_secs(2));
    alice.send_to_node(
        &setup,
        &media_ua::respond(&to_alice, 200, "OK", "", None, None),
    );
    while alice
        .next_request("BYE", Duration::from_millis(50))
        .is_some()
    {}
    assert!(
        alice
            .next_request("BYE", Duration::from_millis(1200))
            .is_none(),
        "BYE retransmitted after its 200"
    );
    // Bob's answered too: nothing more after his 200.
    assert!(
        bob.next_request("BYE", Duration::from_millis(600))
            .is_none(),
        "BYE retransmitted after its 200"
    );
    drop(call);
    setup.rtp.assert_no_calls(media_ua::LIST_EMPTY);
}

#[test]
fn a_bypass_route_leaves_its_calls_sdp_untouched_and_others_relayed() {
    let test = "media_legs::route_bypass";
    let setup = Setup::start_with(
        test,
        "",
        "[[media.route]]\nuser_prefix = \"direct\"\ntransport = \"udp\"\nbypass = true\n",
    );
    let alice = setup.phone("alice");
    let (bob, direct) = (setup.phone("bob"), setup.phone("direct-bob"));
    bob.register(&setup.harness);
    direct.register(&setup.harness);
    let mut plain = alice.call_checked(
        &setup,
        &direct,
        ("route-direct-1", "rd-a", "rd-b"),
        Some(4030),
        false,
    );
    assert_eq!(
        setup.rtp.list_calls(Duration::from_secs(1)),
        Some(Vec::new()),
        "the bypassed call reached rtpengine"
    );
    let mut relayed = alice.call(&setup, &bob, "route-other-1", "ro-a", "ro-b", Some(4040));
    assert!(ng_query_ok(setup.rtp.ng_addr(), "route-other-1", "ro-a"));
    alice.bye_from_caller(&setup, &direct, &mut plain);
    alice.bye_from_caller(&setup, &bob, &mut relayed);
    setup.rtp.assert_no_calls(media_ua::LIST_EMPTY);
}
