//! Real browsers end to end (issue 6): Debian's Chromium, headless, with fake audio devices,
//! runs JsSIP pages (`tests/browser/`, JsSIP bundled by esbuild, driven by puppeteer-core) that
//! register over WSS to a sipmesh node and call with real WebRTC media (ICE, DTLS-SRTP,
//! rtcp-mux). A call passes when ICE and DTLS are connected, getStats shows more than 50 RTP
//! packets each way within 15 s of the answer, the selected candidate pair is on loopback, and
//! the BYE gets 200.
//!
//! * browser to browser: no rtpengine; both ends `UDP/TLS/RTP/SAVPF`, media peer to peer on
//!   127.0.0.1, signalling through the node;
//! * browser to a legacy phone (SIPp over UDP, plain `RTP/AVP`, `-rtp_echo`) and the legacy
//!   phone to the browser: through the node with `--rtpengine` and a real rtpengine converting
//!   SAVPF <-> AVP.
//!
//! All media stays on loopback: see `tests/browser/page.js` and README "Browser tests".
//! A missing `chromium`, `node`, `npm ci` or `rtpengine` fails the test; nothing skips.

use std::time::Duration;

use sipmesh_test_support::browser::{
    self, BrowserReport, BrowserRun, BrowserScenario, CallReport, Chromium, LegacyPhone,
};
use sipmesh_test_support::{Harness, Rtpengine, Sipp, SippTransport, TestDir, sipp_dir};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// Longest a driver run may take (Chromium start to report).
const RUN_LIMIT: Duration = Duration::from_secs(40);

fn launch(harness: &Harness) -> Chromium {
    Chromium::launch(harness.dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// Panics with the report and the node's log unless `call` carried media and its BYE got 200.
fn assert_call(harness: &Harness, report: &BrowserReport, user: &str, direction: &str) {
    let context = || {
        format!(
            "report: {report:#?}\n--- node log ({}) ---\n{}",
            harness.node().log_path().display(),
            harness.node().log_tail()
        )
    };
    let Some(agent) = report.agent(user) else {
        panic!("no page for {user}\n{}", context());
    };
    assert!(agent.registered, "{user} did not register\n{}", context());
    assert!(
        agent.errors.is_empty(),
        "{user}: {:?}\n{}",
        agent.errors,
        context()
    );
    let calls: Vec<&CallReport> = agent
        .calls
        .iter()
        .filter(|c| c.direction == direction)
        .collect();
    let [call] = calls.as_slice() else {
        panic!("{user}: expected one {direction} call\n{}", context());
    };
    match call.check_media() {
        Ok(sample) => eprintln!(
            "{user} {direction}: confirmed at {:?} ms, media at {} ms: ICE {:?}, DTLS {:?}, {} in / {} out, {:?}, pair {:?} <-> {:?} ({})",
            call.confirmed_at(),
            sample.ms,
            sample.ice,
            sample.dtls,
            sample.inbound,
            sample.outbound,
            sample.codec,
            sample.local,
            sample.remote,
            report.browser,
        ),
        Err(why) => panic!("{user}: {why}\n{}", context()),
    }
    let bye = call.bye.as_ref().map(|b| b.status);
    assert_eq!(bye, Some(200), "{user}: BYE result\n{}", context());
}

/// Stops Chromium and proves nothing of it is left (its group, and anything naming its
/// profile).
fn close(chromium: Chromium) {
    assert!(
        !chromium.processes().is_empty(),
        "Chromium should still be running here"
    );
    if let Err(e) = chromium.close() {
        panic!("{e}");
    }
}

/// Browser to browser through the node, without rtpengine: alice (Chromium page) calls bob
/// (another page of the same browser) over WSS; SAVPF on both ends, media peer to peer.
#[test]
fn browser_calls_browser_with_media_on_loopback() {
    let (harness, listeners) = Harness::try_start_secure(SIPMESH, "browser-pair")
        .unwrap_or_else(|e| panic!("cannot start the node: {e}"));
    let chromium = launch(&harness);
    let run = BrowserRun::spawn(
        &chromium,
        harness.dir(),
        &BrowserScenario::Pair,
        listeners.wss,
        harness.ip(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report = run.finish(RUN_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert_call(&harness, &report, "alice", "outgoing");
    assert_call(&harness, &report, "bob", "incoming");
    let bye = report
        .agent("alice")
        .and_then(|a| a.calls.first())
        .and_then(|c| c.bye.as_ref())
        .map(|b| b.direction.clone());
    assert_eq!(bye.as_deref(), Some("in"), "alice sent the BYE");
    close(chromium);
}

/// Dropping the harness's Chromium (as a failing test does) leaves none of its processes.
#[test]
fn chromium_leaves_no_process_behind_when_dropped() {
    let dir = TestDir::new("browser-drop").unwrap_or_else(|e| panic!("{e}"));
    let chromium = Chromium::launch(&dir).unwrap_or_else(|e| panic!("{e}"));
    let pids = chromium.processes();
    assert!(pids.len() > 1, "a browser and its helpers: {pids:?}");
    drop(chromium);
    let left: Vec<u32> = pids
        .into_iter()
        .filter(|p| browser::is_running(*p))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A node with `--rtpengine` on a real rtpengine (on the test's address).
fn start_with_rtpengine(test: &str) -> (Harness, std::net::SocketAddr, Rtpengine) {
    let ip = sipmesh_test_support::test_ip(test);
    let rtp_dir = TestDir::new(&format!("{test}-rtpengine")).unwrap_or_else(|e| panic!("{e}"));
    let rtpengine = Rtpengine::start(&rtp_dir, ip);
    let (harness, wss) = browser::start_wss_node(
        SIPMESH,
        test,
        vec![
            "--rtpengine".to_owned(),
            format!("udp:{}", rtpengine.ng_addr()),
        ],
    )
    .unwrap_or_else(|e| panic!("cannot start the node: {e}"));
    (harness, wss, rtpengine)
}

/// Browser (WSS, SAVPF) calls a legacy phone (SIPp over UDP, RTP/AVP PCMU, RTP echo) through
/// the node and rtpengine; the browser hangs up.
#[test]
fn browser_calls_legacy_phone_through_rtpengine() {
    let (harness, wss, rtpengine) = start_with_rtpengine("browser-to-legacy");
    let phone = LegacyPhone::spawn(
        harness.uas("uas_call.xml", SippTransport::Udp),
        harness.dir(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    harness.run_ok(harness.register("bob.csv", phone.sip_addr(), SippTransport::Udp));
    let chromium = launch(&harness);
    let run = BrowserRun::spawn(
        &chromium,
        harness.dir(),
        &BrowserScenario::Call {
            target: "bob".to_owned(),
        },
        wss,
        harness.ip(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report = run.finish(RUN_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert_call(&harness, &report, "web", "outgoing");
    // No leaked rtpengine session.
    rtpengine.assert_no_calls(Duration::from_secs(5));
    if let Err(e) = phone.wait(Duration::from_secs(10)) {
        panic!("legacy phone: {e}\n--- rtpengine ---\n{}", rtpengine.log());
    }
    close(chromium);
}

/// A legacy phone (SIPp over UDP, RTP/AVP, RTP echo) calls the browser through the node and
/// rtpengine; the browser answers and hangs up.
#[test]
fn legacy_phone_calls_browser_through_rtpengine() {
    let (harness, wss, rtpengine) = start_with_rtpengine("legacy-to-browser");
    let chromium = launch(&harness);
    let mut run = BrowserRun::spawn(
        &chromium,
        harness.dir(),
        &BrowserScenario::Answer,
        wss,
        harness.ip(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    run.wait_event("registered web", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let scenario = browser::browser_dir()
        .join("sipp")
        .join("uac_call_browser_hangs_up.xml");
    let uac: Sipp = harness
        .uac(&scenario.display().to_string(), SippTransport::Udp)
        .inf(&sipp_dir().join("alice_to_web.csv").display().to_string())
        .timeout(Duration::from_secs(30));
    let phone = LegacyPhone::spawn(uac, harness.dir()).unwrap_or_else(|e| panic!("{e}"));
    let report = run.finish(RUN_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert_call(&harness, &report, "web", "incoming");
    // No leaked rtpengine session.
    rtpengine.assert_no_calls(Duration::from_secs(5));
    if let Err(e) = phone.wait(Duration::from_secs(10)) {
        panic!("legacy phone: {e}\n--- rtpengine ---\n{}", rtpengine.log());
    }
    close(chromium);
}
