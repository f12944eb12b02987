//! Early-dialog media through rtpengine (issue 6): reliable provisional responses with SDP
//! (RFC 3262; `tests/sipp/u?s_prack_*.xml`) and losing fork branches with early media
//! (`uas_fork_*_media.xml`), with a real `sipmesh` started with `--rtpengine` and SIPp as
//! caller and callees. The scenarios check that each side receives rtpengine's SDP (media
//! port 30000-39999, which SIPp's own ports are not), and rtpengine's `list` must be empty at
//! the end.

mod ng_query;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ng_query::query_tags;
use sipmesh_test_support::{Harness, Rtpengine, SippRunning, SippTransport, TestDir, test_ip};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// How long a deleted session may take to leave rtpengine's `list`.
const LIST_EMPTY: Duration = Duration::from_secs(3);

/// A node with one rtpengine (kept in the returned directory's process).
fn node_with_rtpengine(test: &str) -> (TestDir, Rtpengine, Harness) {
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
    (dir, rtp, harness)
}

/// Starts UAS `scenario` (`-d pause_ms`) and registers it as bob over UDP (a second one
/// adds a second binding: the INVITE forks).
fn registered_uas(harness: &Harness, scenario: &str, pause_ms: u64) -> SippRunning {
    let uas = match harness
        .uas(scenario, SippTransport::Udp)
        .duration_ms(pause_ms)
        .calls(1)
        .spawn()
    {
        Ok(s) => s,
        Err(e) => panic!("cannot start UAS {scenario}: {e}"),
    };
    if let Err(e) = uas.wait_listening() {
        panic!("UAS {scenario} did not bind: {e}");
    }
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));
    uas
}

fn finish(harness: &Harness, uas: SippRunning) {
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
}

/// One SIPp call (`uac` against `uas` registered as bob, both over UDP, `-d pause_ms` on
/// both) through a node with one rtpengine; rtpengine must hold no call afterwards.
fn prack_call(test: &str, uas: &str, uac: &str, pause_ms: u64) {
    let (_dir, rtp, harness) = node_with_rtpengine(test);
    let callee = registered_uas(&harness, uas, pause_ms);
    harness.run_ok(
        harness
            .uac(uac, SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .duration_ms(pause_ms),
    );
    finish(&harness, callee);
    rtp.assert_no_calls(LIST_EMPTY);
}

/// bob is registered twice: `loser` (early media in a 180 with SDP, then it rejects or is
/// cancelled) and `uas_call_media.xml` answering after `answer_ms`. While the caller's
/// call is up (it waits 3 s before its BYE), rtpengine's `query` must show the loser's tag
/// without ports (its branch deleted) next to the caller's and the winner's with ports.
fn fork_loser_goes(test: &str, loser: &str, loser_pause_ms: u64, answer_ms: u64) {
    let (_dir, rtp, harness) = node_with_rtpengine(test);
    let winner = registered_uas(&harness, "uas_call_media.xml", answer_ms);
    let losing = registered_uas(&harness, loser, loser_pause_ms);
    let uac = harness
        .uac("uac_call_media.xml", SippTransport::Udp)
        .inf("alice_to_bob.csv")
        .duration_ms(3000)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the UAC: {e}"));
    let deadline = Instant::now() + Duration::from_millis(answer_ms + 2500);
    let mut last = None;
    let seen = loop {
        let calls = rtp.list_calls(Duration::from_secs(1)).unwrap_or_default();
        if let Some(call_id) = calls.first() {
            let tags = query_tags(rtp.ng_addr(), call_id);
            let done = tags.as_ref().is_some_and(|t| {
                t.len() == 3 && t.iter().filter(|(_, ports)| *ports == 0).count() == 1
            });
            last = tags;
            if done {
                break true;
            }
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        seen,
        "the losing branch kept its rtpengine ports: last query {last:?}"
    );
    match uac.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAC: {e}"),
    }
    finish(&harness, winner);
    finish(&harness, losing);
    rtp.assert_no_calls(LIST_EMPTY);
}

#[test]
fn media_of_a_fork_branch_that_rejects_goes_once_another_answered() {
    // The loser rings with early media and rejects (486) before the winner answers: its
    // branch is deleted once the winner's answer went through (a tagged delete of the only
    // answered branch would end the whole call in rtpengine 10.5).
    fork_loser_goes(
        "media_early::fork_reject",
        "uas_fork_busy_media.xml",
        200,
        1200,
    );
}

#[test]
fn media_of_a_cancelled_fork_branch_goes_when_it_ends() {
    // The loser rings with early media; the winner answers, the proxy cancels the loser,
    // whose 487 ends its branch.
    fork_loser_goes(
        "media_early::fork_cancel",
        "uas_fork_ring_media.xml",
        0,
        600,
    );
}

#[test]
fn media_answer_in_a_reliable_183_is_answered_once() {
    // INVITE with an offer; the reliable 183 answers (rtpengine's SDP at the caller), the
    // PRACK and its 200 pass, the 200 INVITE repeats the 183's SDP and the caller gets the
    // same rtpengine port; the BYE empties rtpengine's list.
    prack_call(
        "media_early::answer_in_183",
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
        "media_early::offer_in_183",
        "uas_prack_offer.xml",
        "uac_prack_offer.xml",
        200,
    );
}

#[test]
fn media_update_in_the_early_dialog_is_offered_and_answered() {
    // RFC 3311: after a reliable 183 answered the INVITE's offer and its PRACK, the caller
    // sends an UPDATE with a new offer before the 2xx: the callee gets rtpengine's offer, the
    // caller rtpengine's answer in the 200 UPDATE; the BYE empties rtpengine's list.
    prack_call(
        "media_early::update_early",
        "uas_prack_update.xml",
        "uac_prack_update.xml",
        200,
    );
}
