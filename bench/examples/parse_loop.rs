//! A fixed-iteration loop over the `parse_and_transaction_key` benchmark body, for
//! instruction-count profiling, which is stable where wall-clock timings on a shared machine
//! are not:
//!
//! ```text
//! cargo build --profile bench -p sipmesh-bench --example parse_loop
//! valgrind --tool=callgrind target/release/examples/parse_loop 100000
//! ```
//!
//! Run it with `0` iterations too and subtract to get the cost of one iteration; add `parse`
//! after the count to loop over the `parse_only` body instead.

use std::hint::black_box;

use bytes::Bytes;
use sipmesh_protocol::message::Message;

/// The message of `benches/parse.rs`.
const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
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

/// The body of the `parse_and_transaction_key` benchmark.
fn parse_and_key_fast(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("valid INVITE");
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

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    // `parse` as the second argument: the `parse_only` benchmark body instead.
    let parse_only = std::env::args().nth(2).is_some_and(|a| a == "parse");
    let buf = Bytes::from_static(INVITE);
    let mut acc = 0usize;
    for _ in 0..n {
        acc = acc.wrapping_add(if parse_only {
            Message::parse(black_box(buf.clone())).map_or(0, |m| m.headers().count())
        } else {
            parse_and_key_fast(black_box(&buf))
        });
    }
    println!("{acc}");
}
