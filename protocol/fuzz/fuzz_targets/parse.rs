//! Fuzz target: `Message::parse` on arbitrary bytes, then every typed accessor, the
//! forwarding editor (whose output must parse again) and the response builder.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipmesh_protocol::header::HeaderName;
use sipmesh_protocol::message::{Editor, Message, StatusCode, response_to};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = m.request_uri();
    let _ = m.reason();
    let _ = m.top_via();
    for v in m.vias() {
        let _ = v.map(|v| (v.sent_by().to_string(), v.received_ip()));
    }
    let _ = m.call_id();
    let _ = m.cseq();
    let _ = m.from().map(|f| (f.tag(), f.display_name_unescaped()));
    let _ = m.to().map(|t| t.tag());
    let _ = m.from_tag();
    let _ = m.to_tag();
    let _ = m.max_forwards();
    let _ = m.contacts();
    let _ = m.routes();
    let _ = m.record_routes();
    let _ = m.paths();
    let _ = m.expires();
    let _ = m.content_length();
    let _ = m.content_type();
    let _ = m.option_tags(&HeaderName::Require).count();
    let _ = m.auth(HeaderName::Authorization).map(|a| a.map(|a| a.param("realm")));
    let _ = m.validate_request();

    // The untouched editor reproduces the message bytes exactly.
    assert_eq!(Editor::new(&m).finish(), m.message_bytes());

    // A typical proxy edit must produce something that parses again.
    let mut ed = Editor::new(&m);
    ed.prepend_header("Via", "SIP/2.0/UDP fuzz.example.com;branch=z9hG4bKfuzz");
    ed.remove_first_value(&HeaderName::Route);
    ed.set_header("Max-Forwards", "10");
    let edited = ed.finish();
    assert!(Message::parse(edited).is_ok());

    let _ = response_to(&m, StatusCode::OK, "OK").to_tag("t").build();
});
