//! Reliable provisional responses with SDP through rtpengine (issue 6, RFC 3262): a real
//! `sipmesh` with `--rtpengine`, SIPp as caller and callee (`tests/sipp/u?s_prack_*.xml`).
//! The scenarios check that each side receives rtpengine's SDP (media port 30000-39999,
//! which SIPp's own ports are not), and rtpengine's `list` must be empty at the end.

use std::net::IpAddr;
use std::time::Duration;

use sipmesh_test_support::{Harness, Rtpengine, SippTransport, TestDir, test_ip};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// How long a deleted session may take to leave rtpengine's `list`.
const LIST_EMPTY: Duration = Duration::from_secs(3);

/// One SIPp call (`uac` against `uas` registered as bob, both over UDP, `-d pause_ms` on
/// both) through a node with one rtpengine; rtpengine must hold no call afterwards.
fn prack_call(test: &str, uas: &str, uac: &str, pause_ms: u64) {
    let dir = match TestDir::new(&format!("{test}-rtpengine")) {
        Ok(d) => d,
        Err(e) => panic!("cannot create the rtpengine directory: {e}"),
    };
    let ip: IpAddr = test_ip(test);
    let rtp = Rtpengine::start_named(&dir, ip, "rtpengine");
    let harness = match Harness::try_start(SIPMESH, test, |o| {
        o.extra_args
            .extend(["--rtpengine".to_owned(), format!("udp:{}", rtp.ng_addr())]);
    }) {
        Ok(h) => h,
        Err(e) => panic!("cannot start the node for {test}: {e}"),
    };
    let callee = match harness
        .uas(uas, SippTransport::Udp)
        .duration_ms(pause_ms)
        .calls(1)
        .spawn()
    {
        Ok(s) => s,
        Err(e) => panic!("cannot start UAS {uas}: {e}"),
    };
    if let Err(e) = callee.wait_listening() {
        panic!("UAS {uas} did not bind: {e}");
    }
    harness.run_ok(harness.register("bob.csv", callee.local_addr(), SippTransport::Udp));
    harness.run_ok(
        harness
            .uac(uac, SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .duration_ms(pause_ms),
    );
    match callee.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
    rtp.assert_no_calls(LIST_EMPTY);
}

#[test]
fn media_answer_in_a_reliable_183_is_answered_once() {
    // INVITE with an offer; the reliable 183 answers (rtpengine's SDP at the caller), the
    // PRACK and its 200 pass, the 200 INVITE repeats the 183's SDP and the caller gets the
    // same rtpengine port; the BYE empties rtpengine's list.
    prack_call(
        "media_prack::answer_in_183",
        "uas_prack_answer.xml",
        "uac_prack_answer.xml",
        200,
    );
}

#[test]
fn media_offer_in_a_reliable_183_is_answered_in_the_prack() {
    // INVITE without SDP; the reliable 183 offers (rtpengine's SDP at the caller), the PRACK
    // answers (rtpengine's SDP at the callee), the 200 and the ACK carry none; the BYE
    // empties rtpengine's list.
    prack_call(
        "media_prack::offer_in_183",
        "uas_prack_offer.xml",
        "uac_prack_offer.xml",
        200,
    );
}
