//! Benchmarks for sipmesh: criterion micro-benchmarks in `benches/`, the parse loop for
//! instruction counting in `examples/`, load clients in `src/bin/`, and the SIPp and WebSocket
//! load scripts in `load/` and `ws/`. This library holds what several of them share.

use bytes::Bytes;
use sipmesh_protocol::message::Message;

/// A typical INVITE with an SDP body (about 630 bytes), the parser benchmarks' input.
pub const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 136\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// Parse `buf` and read its transaction-key headers through the fast tag accessors (no URI
/// parsing): the body of the `parse_and_transaction_key` benchmark.
pub fn parse_and_key_fast(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("the benchmark INVITE parses");
    let via = m.top_via().expect("via");
    let cseq = m.cseq().expect("cseq");
    let call_id = m.call_id().expect("call-id");
    let from_tag = m.from_tag().expect("from");
    let to_tag = m.to_tag().expect("to");
    via.branch.map_or(0, str::len)
        + usize::from(via.port.unwrap_or(0))
        + cseq.seq as usize
        + call_id.len()
        + from_tag.map_or(0, str::len)
        + to_tag.map_or(0, str::len)
}
