//! Flows with `--redis` (RFC 5626 §5.4, RFC 7118 §5): a WebSocket client registers through the
//! node, its connection drops without a WebSocket close, its binding is removed from Redis at
//! once, and an INVITE to it is answered 480 (the Redis store's closed-flows marker), not 404.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sipmesh_test_support::{
    Harness, RawClient, RedisServer, SippTransport, ViaTransport, free_port,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// How long the node may take to notice the closed connection and drop the binding.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// A REGISTER for `dave` as a browser would send it (`.invalid` Contact, `transport=ws`).
fn register_dave(ip: std::net::IpAddr) -> String {
    format!(
        "REGISTER sip:{ip} SIP/2.0\r\n\
         Via: SIP/2.0/WS x7a1.invalid;branch=z9hG4bKredisflow1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:dave@{ip}>;tag=ws1\r\n\
         To: <sip:dave@{ip}>\r\n\
         Call-ID: redis-flow-1@ws.test\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:dave@x7a1.invalid;transport=ws>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Whether a binding-query REGISTER for dave lists a Contact.
fn dave_bound(raw: &mut RawClient, ip: std::net::IpAddr, attempt: u32) -> bool {
    let aor = format!("sip:dave@{ip}");
    let query = raw
        .new_request("REGISTER", &format!("sip:{ip}"))
        .set("To", format!("<{aor}>"))
        .set("From", format!("<{aor}>;tag=q{attempt}"))
        .set("Call-ID", format!("redis-flow-query-{attempt}"))
        .without("Contact");
    let answer = match raw.request(&query, Duration::from_secs(1)) {
        Ok(Some(answer)) => answer,
        Ok(None) => panic!("binding query {attempt} unanswered"),
        Err(e) => panic!("binding query {attempt}: {e}"),
    };
    assert_eq!(answer.status(), Some(200), "{}", answer.start_line());
    answer.header("Contact").is_some()
}

#[test]
fn ws_flow_closed_with_redis_gives_480() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut ws_addr = None;
    let harness = Harness::try_start(SIPMESH, "redis-ws-flow-480", |o| {
        let ws = SocketAddr::new(o.ip, free_port(o.ip));
        ws_addr = Some(ws);
        o.extra_args.extend([
            "--redis".to_owned(),
            url,
            "--listen".to_owned(),
            format!("ws:{ws}"),
        ]);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let ws_addr = ws_addr.unwrap_or_else(|| panic!("the option hook did not run"));
    let ip = harness.ip();

    // Register dave over a WebSocket connection.
    let stream = TcpStream::connect(ws_addr).unwrap_or_else(|e| panic!("connect {ws_addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut request = format!("ws://{ws_addr}/")
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let (mut ws, _) =
        tungstenite::client(request, stream).unwrap_or_else(|e| panic!("WS upgrade: {e}"));
    ws.send(Message::text(register_dave(ip)))
        .unwrap_or_else(|e| panic!("sending REGISTER: {e}"));
    let answer = loop {
        match ws.read() {
            Ok(Message::Text(text)) => break text.to_string(),
            Ok(_) => continue,
            Err(e) => panic!("reading the REGISTER answer: {e}"),
        }
    };
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    let mut raw = RawClient::connect(ViaTransport::Udp, ip, harness.node())
        .unwrap_or_else(|e| panic!("raw UDP client: {e}"));
    assert!(dave_bound(&mut raw, ip, 0), "dave is not bound after 200");

    // Drop the TCP connection under the WebSocket: no close frame.
    let closed_at = Instant::now();
    drop(ws);
    let mut attempt = 1;
    while dave_bound(&mut raw, ip, attempt) {
        assert!(
            closed_at.elapsed() < GONE_WITHIN,
            "dave's binding still there {:?} after the close\n--- node log ---\n{}",
            closed_at.elapsed(),
            harness.node().log_tail()
        );
        attempt += 1;
        std::thread::sleep(Duration::from_millis(50));
    }

    // 480 (flows closed, remembered in Redis), not 404.
    harness.run_ok(
        harness
            .uac("uac_480.xml", SippTransport::Udp)
            .inf("alice_to_dave.csv"),
    );
}
