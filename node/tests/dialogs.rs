//! Dialog state of the `sipmesh` binary in a real `redis-server` (issue 4): a call through
//! the node leaves one record in Redis while it is up (route sets, remote targets, flows) and
//! none once a BYE ended it; a rejected call leaves nothing; a dialog actor killed through the
//! test hook is restarted from Redis and the BYE still works; and so does a BYE after the
//! whole process was restarted on the same ports.
//!
//! The UAs are raw UDP peers, so every Call-ID and tag (hence the Redis key) is known.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use sipmesh_test_support::{
    Harness, RawMessage, RawRequest, RedisServer, SippTransport, UdpPeer, ViaTransport,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

const DOMAIN: &str = "dialogs.example.com";
const WAIT: Duration = Duration::from_secs(3);

/// Starts a node with `--redis` and the test hooks, on `at` (IP and port) when given.
fn node(test: &str, redis: &RedisServer, at: Option<(std::net::IpAddr, u16)>) -> Harness {
    let url = redis.url();
    let previous = at;
    Harness::try_start(SIPMESH, test, |o| {
        if let Some((ip, port)) = previous {
            o.ip = ip;
            o.udp_port = port;
            o.tcp_port = port;
        }
        *o = o.clone().with_test_hooks();
        o.domains.push(DOMAIN.to_owned());
        o.extra_args.extend(["--redis".to_owned(), url]);
        o.log_filter = "info,sipmesh_actors::dialog=debug".to_owned();
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `redis-cli` against the test's server.
fn redis_cli(redis: &RedisServer, args: &[&str]) -> Vec<String> {
    let url = redis.url();
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let out = Command::new("redis-cli")
        .args(["-p", &port, "--raw"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli (Debian package redis-tools) is needed: {e}"));
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn dialog_key(call: &Call) -> String {
    format!(
        "sipmesh:dlg:{};{};{}",
        call.call_id, call.alice_tag, call.bob_tag
    )
}

/// The fields of a record (`HGETALL`, one line each; the route sets here have one entry, so
/// no value spans lines).
fn record(redis: &RedisServer, key: &str) -> HashMap<String, String> {
    let lines = redis_cli(redis, &["HGETALL", key]);
    lines
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

fn wait_until(what: &str, harness: &Harness, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            harness.node().log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One call between two raw UAs through the node.
struct Call {
    alice: UdpPeer,
    bob: UdpPeer,
    call_id: String,
    alice_tag: String,
    bob_tag: String,
    /// The Record-Route the node put in (alice's and bob's one-entry route set).
    route: String,
}

fn bind(harness: &Harness) -> UdpPeer {
    UdpPeer::bind(harness.ip()).unwrap_or_else(|e| panic!("{e}"))
}

fn register_bob(harness: &Harness, bob: &UdpPeer) {
    let contact = bob.local_addr();
    let req = RawRequest::new(
        "REGISTER",
        &format!("sip:{DOMAIN}"),
        ViaTransport::Udp,
        contact,
    )
    .set("To", format!("<sip:bob@{DOMAIN}>"))
    .set("From", format!("<sip:bob@{DOMAIN}>;tag=reg"))
    .header("Contact", format!("<sip:bob@{contact}>"))
    .header("Expires", "600");
    let ok = bob
        .request(harness.node().udp_addr(), &req, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );
}

/// A UAS response: Vias, Record-Route, From, To (tagged), Call-ID, CSeq, Contact.
fn uas_reply(req: &RawMessage, code: u16, tag: &str, contact: SocketAddr) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} Whatever\r\n");
    for via in req.header_all("Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    for rr in req.header_all("Record-Route") {
        out.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        out.push_str(&format!(
            "{name}: {}\r\n",
            req.header(name).unwrap_or_default()
        ));
    }
    let to = req.header("To").unwrap_or_default();
    out.push_str(&format!("To: {to};tag={tag}\r\n"));
    out.push_str(&format!(
        "Contact: <sip:bob@{contact}>\r\nContent-Length: 0\r\n\r\n"
    ));
    out.into_bytes()
}

/// Next request from the node, skipping responses and retransmitted INVITEs.
fn next_request(peer: &UdpPeer, method: &str) -> Option<(RawMessage, SocketAddr)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (msg, from) = peer.recv_from(left)?;
        if msg.method() == Some(method) {
            return Some((msg, from));
        }
    }
}

/// INVITE alice → node → bob; bob rings and then answers `code` (the call is up on 200,
/// ACKed). Returns the call and alice's final response.
fn place_call(harness: &Harness, answer: u16, tag: &str) -> (Call, RawMessage) {
    place_call_with(harness, answer, tag, || {})
}

/// Like [`place_call`], running `before_answer` after bob got the INVITE.
fn place_call_with(
    harness: &Harness,
    answer: u16,
    tag: &str,
    before_answer: impl FnOnce(),
) -> (Call, RawMessage) {
    let node_addr = harness.node().udp_addr();
    let (alice, bob) = (bind(harness), bind(harness));
    register_bob(harness, &bob);
    let invite = RawRequest::new(
        "INVITE",
        &format!("sip:bob@{DOMAIN}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .set("From", format!("<sip:alice@{DOMAIN}>;tag=alice-{tag}"))
    .set("Call-ID", format!("dlg-{tag}@{}", alice.local_addr().ip()))
    .header("Contact", format!("<sip:alice@{}>", alice.local_addr()));
    alice
        .send(node_addr, &invite.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let Some((inv, from)) = next_request(&bob, "INVITE") else {
        panic!("bob got no INVITE\n{}", harness.node().log_tail());
    };
    let route = inv.header("Record-Route").unwrap_or_default().to_owned();
    assert!(!route.is_empty(), "the node Record-Routes: {inv}");
    let bob_tag = format!("bob-{tag}");
    before_answer();
    bob.send(from, &uas_reply(&inv, 180, &bob_tag, bob.local_addr()))
        .unwrap();
    bob.send(from, &uas_reply(&inv, answer, &bob_tag, bob.local_addr()))
        .unwrap();
    let Some(fin) = alice.recv_final(WAIT) else {
        panic!("alice got no final response\n{}", harness.node().log_tail());
    };
    let call = Call {
        alice,
        bob,
        call_id: invite
            .header_value("Call-ID")
            .unwrap_or_default()
            .to_owned(),
        alice_tag: format!("alice-{tag}"),
        bob_tag,
        route,
    };
    if answer == 200 {
        let ack = RawRequest::new(
            "ACK",
            &format!("sip:bob@{}", call.bob.local_addr()),
            ViaTransport::Udp,
            call.alice.local_addr(),
        )
        .set("Route", call.route.clone())
        .set(
            "From",
            format!("<sip:alice@{DOMAIN}>;tag={}", call.alice_tag),
        )
        .set("To", format!("<sip:bob@{DOMAIN}>;tag={}", call.bob_tag))
        .set("Call-ID", call.call_id.clone())
        .set("CSeq", "1 ACK");
        call.alice.send(node_addr, &ack.to_bytes()).unwrap();
        assert!(
            next_request(&call.bob, "ACK").is_some(),
            "the ACK reached bob"
        );
    }
    (call, fin)
}

/// Bob hangs up: BYE along the route set to alice, who answers 200; returns bob's answer.
fn bob_hangs_up(harness: &Harness, call: &Call) -> Option<u16> {
    let bye = RawRequest::new(
        "BYE",
        &format!("sip:alice@{}", call.alice.local_addr()),
        ViaTransport::Udp,
        call.bob.local_addr(),
    )
    .set("Route", call.route.clone())
    .set("From", format!("<sip:bob@{DOMAIN}>;tag={}", call.bob_tag))
    .set("To", format!("<sip:alice@{DOMAIN}>;tag={}", call.alice_tag))
    .set("Call-ID", call.call_id.clone())
    .set("CSeq", "1 BYE");
    call.bob
        .send(harness.node().udp_addr(), &bye.to_bytes())
        .unwrap();
    let (got, from) = next_request(&call.alice, "BYE")?;
    call.alice.send(from, &got.reply(200, "OK")).unwrap();
    call.bob.recv_final(WAIT).and_then(|m| m.status())
}

fn assert_stored(harness: &Harness, redis: &RedisServer, call: &Call) -> HashMap<String, String> {
    let key = dialog_key(call);
    wait_until("the dialog record in Redis", harness, || {
        !record(redis, &key).is_empty()
    });
    record(redis, &key)
}

fn assert_removed(harness: &Harness, redis: &RedisServer, call: &Call) {
    let key = dialog_key(call);
    wait_until("the dialog record to go", harness, || {
        redis_cli(redis, &["EXISTS", &key]) == ["0"]
    });
}

#[test]
fn a_call_is_in_redis_while_up_and_gone_after_bye() {
    let redis = RedisServer::start();
    let harness = node("dialogs-call", &redis, None);
    let (call, fin) = place_call(&harness, 200, "up");
    assert_eq!(fin.status(), Some(200), "{fin}");
    // The 200 was held until the record was written: no waiting here.
    let r = record(&redis, &dialog_key(&call));
    assert_eq!(
        r.get("state").map(String::as_str),
        Some("confirmed"),
        "{r:?}"
    );
    assert_eq!(r["caller_route"], call.route, "{r:?}");
    assert_eq!(r["callee_route"], call.route, "{r:?}");
    assert_eq!(
        r["caller_target"],
        format!("sip:alice@{}", call.alice.local_addr())
    );
    assert_eq!(
        r["callee_target"],
        format!("sip:bob@{}", call.bob.local_addr())
    );
    assert!(
        r["caller_flow"].starts_with(&format!("udp:{}", call.alice.local_addr())),
        "{r:?}"
    );
    assert!(
        r["callee_flow"].starts_with(&format!("udp:{}", call.bob.local_addr())),
        "{r:?}"
    );
    assert_eq!(r["caller_cseq"], "1");
    assert_eq!(
        r["timeout_s"], "43200",
        "the 12 h default without a session timer"
    );
    let ttl = redis_cli(&redis, &["TTL", &dialog_key(&call)]);
    let ttl: i64 = ttl.first().and_then(|t| t.parse().ok()).unwrap_or(-1);
    assert!(
        ttl > 43_200 && ttl <= 43_260,
        "key expires at the timeout plus a margin: {ttl}"
    );

    assert_eq!(bob_hangs_up(&harness, &call), Some(200));
    assert_removed(&harness, &redis, &call);
}

#[test]
fn a_rejected_call_leaves_nothing() {
    let redis = RedisServer::start();
    let harness = node("dialogs-486", &redis, None);
    let (_call, fin) = place_call(&harness, 486, "busy");
    assert_eq!(fin.status(), Some(486), "{fin}");
    wait_until("no live dialog actor", &harness, || {
        let (code, body) = harness.node().admin("GET", "/status").unwrap();
        code == 200 && body.contains("\"dialogs\": 0")
    });
    assert!(
        redis_cli(&redis, &["KEYS", "sipmesh:dlg:*"]).is_empty(),
        "a failed call stores no dialog: {:?}",
        redis_cli(&redis, &["KEYS", "sipmesh:dlg:*"])
    );
}

#[test]
fn bye_works_after_the_dialog_actor_panicked() {
    let redis = RedisServer::start();
    let harness = node("dialogs-panic", &redis, None);
    let (call, fin) = place_call(&harness, 200, "panic");
    assert_eq!(fin.status(), Some(200), "{fin}");
    assert_stored(&harness, &redis, &call);
    let key = format!("{};{};{}", call.call_id, call.alice_tag, call.bob_tag)
        .replace('%', "%25")
        .replace(';', "%3B")
        .replace('@', "%40");
    let (code, body) = harness
        .node()
        .admin("POST", &format!("/test/panic/dialog/{key}"))
        .unwrap();
    assert_eq!(code, 200, "{body}\n{}", harness.node().log_tail());
    assert!(
        harness
            .node()
            .log_text()
            .contains("restarting it from the store"),
        "the supervisor restarted the actor\n{}",
        harness.node().log_tail()
    );
    // The restarted actor reloaded the record from Redis.
    wait_until("the record reloaded", &harness, || {
        harness
            .node()
            .log_text()
            .contains("dialog record loaded from the store")
    });
    assert!(!record(&redis, &dialog_key(&call)).is_empty());
    assert_eq!(bob_hangs_up(&harness, &call), Some(200));
    assert_removed(&harness, &redis, &call);
    let (code, _) = harness
        .node()
        .admin("POST", "/test/panic/dialog/unknown%3Ba%3Bb")
        .unwrap();
    assert_eq!(code, 404);
}

#[test]
fn bye_works_after_a_node_restart() {
    let redis = RedisServer::start();
    let first = node("dialogs-restart-1", &redis, None);
    let (call, fin) = place_call(&first, 200, "restart");
    assert_eq!(fin.status(), Some(200), "{fin}");
    assert_stored(&first, &redis, &call);
    let at = (first.ip(), first.node().udp_addr().port());
    drop(first); // the process is killed mid-call
    let second = node("dialogs-restart-2", &redis, Some(at));
    assert_eq!(bob_hangs_up(&second, &call), Some(200));
    assert_removed(&second, &redis, &call);
    // The BYE found no live actor: one was started from the stored record (not just a
    // blind delete).
    let log = second.node().log_text();
    assert!(
        log.contains("dialog record loaded from the store") && log.contains("dialog ended"),
        "{}",
        second.node().log_tail()
    );
}

#[test]
fn a_frozen_redis_delays_the_200_briefly_but_never_drops_the_call() {
    let redis = RedisServer::start();
    let harness = node("dialogs-frozen", &redis, None);
    let answered = std::cell::Cell::new(None);
    let (call, fin) = place_call_with(&harness, 200, "frozen", || {
        redis.freeze(true);
        answered.set(Some(Instant::now()));
    });
    let waited = answered.get().map(|t| t.elapsed()).unwrap_or_default();
    redis.freeze(false);
    assert_eq!(fin.status(), Some(200), "{fin}");
    // The 2xx waited for the dialog write at most the hold (200 ms) plus scheduling slack.
    assert!(waited < Duration::from_secs(1), "200 after {waited:?}");
    assert!(
        harness.node().log_text().contains("2xx forwarded anyway"),
        "the hold ran out with a warning\n{}",
        harness.node().log_tail()
    );
    // With Redis back, the BYE still ends the call end to end.
    assert_eq!(bob_hangs_up(&harness, &call), Some(200));
}

/// SIPp UAC → node → SIPp UAS over `transport`; the UAC keeps the call up for 1.5 s before
/// its BYE. While it is up Redis holds exactly one dialog whose flows use that transport;
/// after the BYE nothing is left.
fn sipp_call(test: &str, transport: SippTransport) {
    let redis = RedisServer::start();
    let harness = node(test, &redis, None);
    let uas = harness
        .uas("uas_call.xml", transport)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the UAS: {e}"));
    uas.wait_listening()
        .unwrap_or_else(|e| panic!("UAS did not bind: {e}"));
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), transport));
    let uac = harness
        .uac("uac_call.xml", transport)
        .inf("alice_to_bob.csv")
        .duration_ms(1500)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the UAC: {e}"));
    let mut keys = Vec::new();
    wait_until("a dialog in Redis during the call", &harness, || {
        keys = redis_cli(&redis, &["KEYS", "sipmesh:dlg:*"]);
        !keys.is_empty()
    });
    assert_eq!(keys.len(), 1, "{keys:?}");
    let r = record(&redis, &keys[0]);
    let token = transport.name();
    for side in ["caller", "callee"] {
        assert!(
            r[&format!("{side}_flow")].starts_with(&format!("{token}:")),
            "{side} flow over {token}: {r:?}"
        );
        assert!(r[&format!("{side}_route")].contains(";lr"), "{r:?}");
    }
    match uac.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAC: {e}"),
    }
    match uas.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect the UAS: {e}"),
    }
    wait_until("no dialog in Redis after the BYE", &harness, || {
        redis_cli(&redis, &["KEYS", "sipmesh:dlg:*"]).is_empty()
    });
}

#[test]
fn sipp_call_over_udp_is_in_redis_while_up() {
    sipp_call("dialogs-sipp-udp", SippTransport::Udp);
}

#[test]
fn sipp_call_over_tcp_is_in_redis_while_up() {
    sipp_call("dialogs-sipp-tcp", SippTransport::Tcp);
}

#[test]
fn a_reinvite_refreshes_the_stored_target_cseq_and_session_timer() {
    let redis = RedisServer::start();
    let harness = node("dialogs-reinvite", &redis, None);
    let (call, fin) = place_call(&harness, 200, "reinv");
    assert_eq!(fin.status(), Some(200), "{fin}");
    let key = dialog_key(&call);
    // Bob moves (new Contact) and re-INVITEs; alice accepts with a 90 s session timer.
    let reinvite = RawRequest::new(
        "INVITE",
        &format!("sip:alice@{}", call.alice.local_addr()),
        ViaTransport::Udp,
        call.bob.local_addr(),
    )
    .set("Route", call.route.clone())
    .set("From", format!("<sip:bob@{DOMAIN}>;tag={}", call.bob_tag))
    .set("To", format!("<sip:alice@{DOMAIN}>;tag={}", call.alice_tag))
    .set("Call-ID", call.call_id.clone())
    .set("CSeq", "5 INVITE")
    .header("Contact", "<sip:bob-moved@192.0.2.9:5070>");
    call.bob
        .send(harness.node().udp_addr(), &reinvite.to_bytes())
        .unwrap();
    let Some((got, from)) = next_request(&call.alice, "INVITE") else {
        panic!("alice got no re-INVITE\n{}", harness.node().log_tail());
    };
    let mut ok = String::from_utf8(got.reply(200, "OK")).unwrap();
    ok = ok.replace(
        "Content-Length: 0\r\n",
        &format!(
            "Contact: <sip:alice@{}>\r\nSession-Expires: 90;refresher=uac\r\nContent-Length: 0\r\n",
            call.alice.local_addr()
        ),
    );
    call.alice.send(from, ok.as_bytes()).unwrap();
    assert_eq!(
        call.bob.recv_final(WAIT).and_then(|m| m.status()),
        Some(200)
    );
    wait_until("the refreshed record", &harness, || {
        record(&redis, &key).get("callee_cseq").map(String::as_str) == Some("5")
    });
    let r = record(&redis, &key);
    assert_eq!(r["callee_target"], "sip:bob-moved@192.0.2.9:5070", "{r:?}");
    assert_eq!(r["session_expires_s"], "90");
    assert_eq!(
        r["timeout_s"], "122",
        "session interval plus the 32 s grace"
    );
    let ttl: i64 = redis_cli(&redis, &["TTL", &key])
        .first()
        .and_then(|t| t.parse().ok())
        .unwrap_or(-1);
    assert!(
        ttl > 150 && ttl <= 182,
        "key expiry follows the session timer: {ttl}"
    );
}
