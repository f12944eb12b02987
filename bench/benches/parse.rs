//! Parser benchmarks: parse a typical ~600-byte INVITE and read the transaction-key headers
//! (top Via branch + sent-by, CSeq, Call-ID, From tag, To tag); also the forwarding edit.
//! Target: under 600 ns for parse + key headers.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use sipmesh_bench::{INVITE, parse_and_key_fast};
use sipmesh_protocol::header::HeaderName;
use sipmesh_protocol::message::{Editor, Message};

/// Transaction key via the full From/To name-addr parse.
fn parse_and_key(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("valid INVITE");
    let via = m.top_via().expect("via");
    let cseq = m.cseq().expect("cseq");
    let call_id = m.call_id().expect("call-id");
    let from_tag = m.from().expect("from").tag();
    let to_tag = m.to().expect("to").tag();
    via.branch.map_or(0, str::len)
        + usize::from(via.port.unwrap_or(0))
        + cseq.seq as usize
        + call_id.len()
        + from_tag.map_or(0, str::len)
        + to_tag.map_or(0, str::len)
}

fn bench_parse(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE);
    assert!(INVITE.len() > 550, "message is {} bytes", INVITE.len());
    let m = Message::parse(buf.clone()).expect("valid INVITE");
    assert_eq!(m.body().len(), 136, "Content-Length matches the body");
    c.bench_function("parse_only", |b| {
        b.iter(|| Message::parse(black_box(buf.clone())).map(|m| m.headers().count()))
    });
    c.bench_function("parse_and_transaction_key", |b| {
        b.iter(|| parse_and_key_fast(black_box(&buf)))
    });
    c.bench_function("parse_and_transaction_key_full_name_addr", |b| {
        b.iter(|| parse_and_key(black_box(&buf)))
    });
    c.bench_function("forward_edit", |b| {
        b.iter(|| {
            let mut ed = Editor::new(black_box(&m));
            ed.prepend_header("Record-Route", "<sip:p.example.com;lr>");
            ed.prepend_header("Via", "SIP/2.0/UDP p.example.com;branch=z9hG4bKabc");
            ed.remove_first_value(&HeaderName::Route);
            ed.set_header("Max-Forwards", "69");
            ed.finish()
        })
    });
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
