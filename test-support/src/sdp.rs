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
