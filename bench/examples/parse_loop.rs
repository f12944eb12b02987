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
use sipmesh_bench::{INVITE, parse_and_key_fast};
use sipmesh_protocol::message::Message;

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
