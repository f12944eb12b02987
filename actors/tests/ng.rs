//! ng conformance against a real rtpengine (Debian `rtpengine-daemon`, userspace mode): the
//! codec and [`NgClient`] must speak what the daemon speaks, for a legacy RTP phone and a WebRTC
//! browser, on the success, error and timeout paths.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sipmesh_actors::rtpengine::{NgClient, NgError};
use sipmesh_protocol::ng::{
    CallRef, DtlsMode, IceMode, MediaOptions, Request, RetransmitPolicy, SdpRequest,
};
use sipmesh_test_support::{Rtpengine, TestDir, test_ip};

/// A plain RTP/AVP phone's offer (what SIPp or a desk phone sends).
const PHONE_OFFER: &str = "v=0\r\n\
o=phone 1000 1 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

/// The other phone's answer.
const PHONE_ANSWER: &str = "v=0\r\n\
o=callee 2000 1 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40002 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

use sipmesh_test_support::sdp::{BROWSER_OFFER, FIREFOX_OFFER};

fn policy() -> RetransmitPolicy {
    RetransmitPolicy {
        first_interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(400),
        timeout: Duration::from_secs(1),
        max_outstanding: 64,
    }
}

fn legacy_options() -> MediaOptions {
    MediaOptions {
        replace: vec!["origin".into(), "session-connection".into()],
        ice: Some(IceMode::Remove),
        transport_protocol: Some("RTP/AVP".into()),
        rtcp_mux: vec!["demux".into()],
        ..MediaOptions::default()
    }
}

fn browser_options() -> MediaOptions {
    MediaOptions {
        replace: vec!["origin".into(), "session-connection".into()],
        ice: Some(IceMode::Force),
        dtls: Some(DtlsMode::Passive),
        transport_protocol: Some("UDP/TLS/RTP/SAVPF".into()),
        rtcp_mux: vec!["offer".into(), "require".into()],
        ..MediaOptions::default()
    }
}

async fn setup(name: &str) -> (Rtpengine, NgClient) {
    let dir = TestDir::new(name).unwrap_or_else(|e| panic!("{e}"));
    let daemon = Rtpengine::start(&dir, test_ip(name));
    let client = NgClient::connect(daemon.ng_addr(), policy())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (daemon, client)
}

/// The Call-IDs the daemon holds (`list` returns 32 by default: ask for all).
async fn calls(client: &NgClient) -> Vec<String> {
    client
        .request(Request::List {
            limit: Some(10_000),
        })
        .await
        .unwrap_or_else(|e| panic!("list: {e}"))
        .calls
}

fn text(sdp: Option<&Bytes>) -> String {
    String::from_utf8_lossy(sdp.map_or(&b""[..], |b| &b[..])).into_owned()
}

#[tokio::test]
async fn ping_answers_pong() {
    let (_daemon, client) = setup("ng_ping_answers_pong").await;
    let r = client.request(Request::Ping).await.unwrap();
    assert!(r.pong);
    client.ping().await.unwrap();
    // Sequential round trips, for the report (debug build, loopback).
    let mut rtts = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        client.ping().await.unwrap();
        rtts.push(started.elapsed());
    }
    rtts.sort();
    eprintln!(
        "100 sequential pings: p50 {:?}, max {:?}",
        rtts[50], rtts[99]
    );
    let stats = client.request(Request::Statistics).await.unwrap();
    assert!(stats.get("statistics").is_some(), "{:?}", stats.raw);
}

#[tokio::test]
async fn legacy_call_offer_answer_query_list_delete() {
    let (daemon, client) = setup("ng_legacy_call").await;
    let media_ip = daemon.media_ip().to_string();
    let call = CallRef::new("legacy-call-1@test", "from-1");
    assert!(calls(&client).await.is_empty());

    let offer = client
        .request(Request::Offer(SdpRequest {
            call: call.clone(),
            sdp: Bytes::from_static(PHONE_OFFER.as_bytes()),
            options: legacy_options(),
        }))
        .await
        .unwrap_or_else(|e| panic!("offer: {e}\n{}", daemon.log()));
    let sdp = text(offer.sdp.as_ref());
    assert!(sdp.contains(&format!("c=IN IP4 {media_ip}")), "{sdp}");
    assert!(sdp.contains(" RTP/AVP 0 8 101"), "{sdp}");
    assert!(!sdp.contains("m=audio 40000 "), "port not replaced: {sdp}");

    let answer = client
        .request(Request::Answer(SdpRequest {
            call: call.clone().with_to_tag("to-1"),
            sdp: Bytes::from_static(PHONE_ANSWER.as_bytes()),
            options: legacy_options(),
        }))
        .await
        .unwrap_or_else(|e| panic!("answer: {e}\n{}", daemon.log()));
    let sdp = text(answer.sdp.as_ref());
    assert!(sdp.contains(&format!("c=IN IP4 {media_ip}")), "{sdp}");
    assert!(!sdp.contains("m=audio 40002 "), "port not replaced: {sdp}");

    let query = client.request(Request::Query(call.clone())).await.unwrap();
    assert!(query.created.is_some_and(|t| t > 0), "{:?}", query.raw);
    assert!(query.get("tags").is_some(), "{:?}", query.raw);

    assert_eq!(calls(&client).await, ["legacy-call-1@test"]);
    let deleted = client.request(Request::Delete(call.clone())).await.unwrap();
    assert_eq!(deleted.warning, None);
    assert!(calls(&client).await.is_empty());
}

#[tokio::test]
async fn chromium_offer_becomes_plain_rtp_and_answer_becomes_dtls() {
    webrtc_to_rtp("ng_chromium_to_rtp", BROWSER_OFFER).await;
}

#[tokio::test]
async fn firefox_offer_becomes_plain_rtp_and_answer_becomes_dtls() {
    webrtc_to_rtp("ng_firefox_to_rtp", FIREFOX_OFFER).await;
}

/// A browser calls a phone: the browser's offer, converted for the phone (RTP/AVP, ICE
/// removed), then the phone's answer converted back (DTLS passive, ICE, rtcp-mux).
async fn webrtc_to_rtp(name: &str, browser_offer: &'static str) {
    let (daemon, client) = setup(name).await;
    let call = CallRef::new(format!("{name}@test"), "browser-tag");
    let offer = client
        .request(Request::Offer(SdpRequest {
            call: call.clone(),
            sdp: Bytes::from_static(browser_offer.as_bytes()),
            options: legacy_options(),
        }))
        .await
        .unwrap_or_else(|e| panic!("offer: {e}\n{}", daemon.log()));
    // Towards the phone: plain RTP/AVP, no ICE, no DTLS, no rtcp-mux requirement.
    let sdp = text(offer.sdp.as_ref());
    assert!(sdp.contains(" RTP/AVP "), "{sdp}");
    for gone in [
        "SAVPF",
        "a=ice-ufrag",
        "a=candidate",
        "a=fingerprint",
        "a=setup",
    ] {
        assert!(!sdp.contains(gone), "{gone} left in {sdp}");
    }
    assert!(
        sdp.contains(&format!("c=IN IP4 {}", daemon.media_ip())),
        "{sdp}"
    );

    // The phone's answer, turned back into WebRTC for the browser: ICE, DTLS passive, mux.
    let answer = client
        .request(Request::Answer(SdpRequest {
            call: call.clone().with_to_tag("phone-tag"),
            sdp: Bytes::from_static(PHONE_ANSWER.as_bytes()),
            options: browser_options(),
        }))
        .await
        .unwrap_or_else(|e| panic!("answer: {e}\n{}", daemon.log()));
    let sdp = text(answer.sdp.as_ref());
    for kept in [
        "UDP/TLS/RTP/SAVPF",
        "a=ice-ufrag:",
        "a=candidate:",
        "a=fingerprint:",
        "a=setup:passive",
        "a=rtcp-mux",
    ] {
        assert!(sdp.contains(kept), "{kept} missing in {sdp}");
    }

    client.request(Request::Delete(call)).await.unwrap();
    assert!(calls(&client).await.is_empty());
}

#[tokio::test]
async fn unknown_call_is_an_error_with_a_reason() {
    let (_daemon, client) = setup("ng_unknown_call").await;
    let unknown = CallRef::new("no-such-call", "nobody");
    match client.request(Request::Query(unknown.clone())).await {
        Err(NgError::Refused(reason)) => assert!(reason.contains("Unknown call"), "{reason}"),
        other => panic!("expected result: error, got {other:?}"),
    }
    // rtpengine 10.5 answers a delete of an unknown call with `ok` and a warning.
    let deleted = client.request(Request::Delete(unknown)).await.unwrap();
    assert!(
        deleted
            .warning
            .as_deref()
            .is_some_and(|w| w.contains("not found")),
        "{:?}",
        deleted.raw
    );
}

#[tokio::test]
async fn stopped_daemon_times_out_within_the_deadline() {
    let (mut daemon, client) = setup("ng_stopped_daemon").await;
    client.ping().await.unwrap();
    daemon.stop();
    let started = Instant::now();
    let outcome = client.request(Request::Ping).await;
    let took = started.elapsed();
    assert!(matches!(outcome, Err(NgError::Timeout(_))), "{outcome:?}");
    assert!(took >= policy().timeout, "gave up early: {took:?}");
    assert!(
        took < policy().timeout + Duration::from_millis(300),
        "{took:?}"
    );
    // And it serves again once the daemon is back.
    daemon.restart();
    client.ping().await.unwrap();
}

/// Many calls at once through one client: every offer succeeds, `list` holds them all, and
/// after the deletes nothing is left (no leaked sessions). Prints the round-trip times.
#[tokio::test]
async fn concurrent_offers_and_deletes() {
    const CALLS: usize = 200;
    let (daemon, _) = setup("ng_concurrent").await;
    let wide = RetransmitPolicy {
        max_outstanding: 256,
        ..policy()
    };
    let client = NgClient::connect(daemon.ng_addr(), wide)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = std::sync::Arc::new(client);
    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = client
                .request(Request::Offer(SdpRequest {
                    call: CallRef::new(format!("conc-{i}"), format!("f{i}")),
                    sdp: Bytes::from_static(PHONE_OFFER.as_bytes()),
                    options: legacy_options(),
                }))
                .await;
            (started.elapsed(), r.map(|r| r.sdp.is_some()))
        }));
    }
    let mut rtts = Vec::new();
    for t in tasks {
        let (rtt, r) = t.await.unwrap_or_else(|e| panic!("{e}"));
        match r {
            Ok(true) => rtts.push(rtt),
            other => panic!("offer failed: {other:?}\n{}", daemon.log()),
        }
    }
    rtts.sort();
    let p50 = rtts[CALLS / 2];
    let p99 = rtts[CALLS * 99 / 100];
    eprintln!("{CALLS} concurrent offers: p50 {p50:?}, p99 {p99:?}");
    let mut listed = calls(&client).await;
    listed.sort();
    assert_eq!(listed.len(), CALLS);
    let deletes: Vec<_> = (0..CALLS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .request(Request::Delete(CallRef::new(
                        format!("conc-{i}"),
                        format!("f{i}"),
                    )))
                    .await
            })
        })
        .collect();
    for d in deletes {
        let r = d.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(r.is_ok_and(|r| r.warning.is_none()));
    }
    assert!(calls(&client).await.is_empty());
}

/// A daemon that stalls for a while: the request is retransmitted (same cookie), the daemon
/// then sees the offer several times but runs it once and answers the copies from its cookie
/// cache; the client takes the first reply and ignores the duplicates. One call results.
#[tokio::test]
async fn stalled_daemon_gets_retransmissions_and_runs_the_offer_once() {
    let (daemon, direct) = setup("ng_stalled_daemon").await;
    // The client talks to the daemon through a relay that counts the copies of the offer, so
    // the daemon is thawed once it holds the first copy and two retransmissions (sent 100 and
    // 300 ms after it), however late the timers fire on a loaded machine: a fixed 350 ms
    // freeze raced the second retransmission under load (one duplicate seen, not two).
    let relay = CountingRelay::start(daemon.ng_addr()).await;
    let client = NgClient::connect(relay.addr, policy())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let call = CallRef::new("stalled-1@test", "f");
    daemon.freeze(true);
    let offer = {
        let request = Request::Offer(SdpRequest {
            call: call.clone(),
            sdp: Bytes::from_static(PHONE_OFFER.as_bytes()),
            options: legacy_options(),
        });
        let client = &client;
        async move { client.request(request).await }
    };
    let thaw = async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while relay.offers() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        daemon.freeze(false);
    };
    let (outcome, ()) = tokio::join!(offer, thaw);
    let offer = outcome.unwrap_or_else(|e| panic!("offer: {e}\n{}", daemon.log()));
    assert!(offer.sdp.is_some());
    assert_eq!(calls(&direct).await, ["stalled-1@test"]);
    // rtpengine logs the first copy as received and the retransmissions as duplicates; its
    // worker threads may log the last copy after the `list` above: poll the log for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = daemon.log();
        if log.matches("as a duplicate").count() >= 2 || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(log.matches("Received command 'offer'").count(), 1, "{log}");
    let duplicates = log.matches("as a duplicate").count();
    assert!(duplicates >= 2, "expected 2 retransmissions, log:\n{log}");
    client.request(Request::Delete(call)).await.unwrap();
    assert!(calls(&client).await.is_empty());
}

/// A UDP relay between an ng client and the daemon that counts the `offer` requests it
/// forwarded (first copies and retransmissions alike).
struct CountingRelay {
    /// Where the client sends.
    addr: std::net::SocketAddr,
    offers: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingRelay {
    async fn start(daemon: std::net::SocketAddr) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::net::UdpSocket;

        let ip = daemon.ip();
        let front = UdpSocket::bind((ip, sipmesh_test_support::free_port(ip)))
            .await
            .unwrap_or_else(|e| panic!("relay front: {e}"));
        let back = UdpSocket::bind((ip, sipmesh_test_support::free_port(ip)))
            .await
            .unwrap_or_else(|e| panic!("relay back: {e}"));
        back.connect(daemon)
            .await
            .unwrap_or_else(|e| panic!("relay connect: {e}"));
        let addr = front.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let offers = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&offers);
        let task = tokio::spawn(async move {
            let mut client = None;
            let mut up = vec![0u8; 65_535];
            let mut down = vec![0u8; 65_535];
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut up) => {
                        let datagram = up.get(..n).unwrap_or_default();
                        client = Some(from);
                        let sent = back.send(datagram).await.is_ok();
                        // Counted once forwarded: a thaw must find the copy at the daemon.
                        if sent && datagram.windows(14).any(|w| w == b"command5:offer") {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(n) = back.recv(&mut down) => {
                        if let Some(to) = client {
                            let _ = front.send_to(down.get(..n).unwrap_or_default(), to).await;
                        }
                    }
                }
            }
        });
        Self { addr, offers, task }
    }

    /// The offers forwarded so far.
    fn offers(&self) -> usize {
        self.offers.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
