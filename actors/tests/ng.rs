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

/// A browser's offer, written by hand in the shape Chromium sends: BUNDLE, ICE credentials
/// and a host candidate, a DTLS fingerprint with `setup:actpass`, rtcp-mux, Opus.
const BROWSER_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS stream\r\n\
m=audio 50000 UDP/TLS/RTP/SAVPF 111 0 8\r\n\
c=IN IP4 127.0.0.1\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n\
a=ice-ufrag:Abcd\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 3A:1F:5C:9E:20:44:B7:0D:6E:81:C2:97:AF:13:58:64:E0:7B:D9:42:16:3C:A5:88:F1:0E:6B:27:D4:99:52:C3\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=msid:stream track\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=ssrc:1001 cname:browser\r\n";

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

async fn calls(client: &NgClient) -> Vec<String> {
    client
        .request(Request::List { limit: None })
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
async fn webrtc_offer_becomes_plain_rtp_and_answer_becomes_dtls() {
    let (daemon, client) = setup("ng_webrtc_to_rtp").await;
    let call = CallRef::new("webrtc-call-1@test", "browser-tag");
    let offer = client
        .request(Request::Offer(SdpRequest {
            call: call.clone(),
            sdp: Bytes::from_static(BROWSER_OFFER.as_bytes()),
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
