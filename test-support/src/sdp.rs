//! SDP samples shared by the media tests (ng conformance in `actors/tests/ng.rs`, calls through
//! a node in `node/tests/media*.rs`).

/// A browser's offer, written by hand in the shape Chromium sends: BUNDLE, ICE credentials
/// and a host candidate, a DTLS fingerprint with `setup:actpass`, rtcp-mux, Opus and G.711.
pub const BROWSER_OFFER: &str = "v=0\r\n\
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

/// A real Firefox offer: `firefox-esr` 153.7.0esr (Debian 12) headless, driven by
/// puppeteer-core over WebDriver BiDi (`tests/browser/ff-offer.mjs`: one microphone track from
/// the fake device, ICE gathering complete), captured verbatim on the test machine. Unlike
/// Chromium's: the fingerprint and `a=sendrecv` at session level, IPv4 and IPv6 host
/// candidates over UDP and TCP for RTP and RTCP, `a=end-of-candidates`, Opus, G.722, G.711
/// and telephone-event.
pub const FIREFOX_OFFER: &str = "v=0\r\n\
o=mozilla...THIS_IS_SDPARTA-99.0 2633932124096843279 0 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=sendrecv\r\n\
a=fingerprint:sha-256 E8:74:C7:9F:9D:59:0E:3F:73:D7:A3:BB:46:F9:01:78:64:8A:14:03:8E:DC:7B:42:97:D4:D8:35:4C:A1:3D:69\r\n\
a=group:BUNDLE 0\r\n\
a=ice-options:trickle\r\n\
a=msid-semantic:WMS *\r\n\
m=audio 35320 UDP/TLS/RTP/SAVPF 109 9 0 8 101\r\n\
c=IN IP4 192.0.2.2\r\n\
a=candidate:0 1 UDP 2122187007 192.0.2.2 35320 typ host\r\n\
a=candidate:1 1 UDP 2122252543 fd00::2 46047 typ host\r\n\
a=candidate:2 1 TCP 2105458943 192.0.2.2 9 typ host tcptype active\r\n\
a=candidate:3 1 TCP 2105524479 fd00::2 9 typ host tcptype active\r\n\
a=candidate:0 2 UDP 2122187006 192.0.2.2 56071 typ host\r\n\
a=candidate:1 2 UDP 2122252542 fd00::2 59354 typ host\r\n\
a=candidate:2 2 TCP 2105458942 192.0.2.2 9 typ host tcptype active\r\n\
a=candidate:3 2 TCP 2105524478 fd00::2 9 typ host tcptype active\r\n\
a=sendrecv\r\n\
a=end-of-candidates\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level\r\n\
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap-allow-mixed\r\n\
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1\r\n\
a=fmtp:101 0-15\r\n\
a=ice-pwd:88e3fe10182d0f180e2a0f02688cc5fd\r\n\
a=ice-ufrag:e6db7c91\r\n\
a=mid:0\r\n\
a=msid:{d14baff4-def8-4b53-835d-1c60f18c956a} {8fdef100-a13c-40ae-8824-dbe25b7256fe}\r\n\
a=rtcp:56071 IN IP4 192.0.2.2\r\n\
a=rtcp-fb:109 transport-cc\r\n\
a=rtcp-fb:9 transport-cc\r\n\
a=rtcp-fb:0 transport-cc\r\n\
a=rtcp-fb:8 transport-cc\r\n\
a=rtcp-mux\r\n\
a=rtpmap:109 opus/48000/2\r\n\
a=rtpmap:9 G722/8000/1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=setup:actpass\r\n\
a=ssrc:756029963 cname:{8eed6d05-d1f7-4720-95b3-a54fc22a3aa6}\r\n";

/// A browser's answer to rtpengine's WebRTC offer (DTLS `active`, one host candidate).
pub const BROWSER_ANSWER: &str = "v=0\r\n\
o=- 1357924680 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
m=audio 50002 UDP/TLS/RTP/SAVPF 0\r\n\
c=IN IP4 127.0.0.1\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50002 typ host generation 0\r\n\
a=ice-ufrag:Wxyz\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00\r\n\
a=setup:active\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:0 PCMU/8000\r\n";
