//! Flows through the proxy core (RFC 5626 §5.3, RFC 7118 §5): a WebSocket UA registered with an
//! `.invalid` Contact is reached over its connection, dialogs between it and a UDP UA carry a
//! flow token in a double Record-Route, and in-dialog requests from the UDP side find the
//! connection through it; tokens are authenticated (RFC 5626 §5.2), and a forged or altered one
//! gets 403. Deterministic: no sockets, virtual time.

use crate::header::HeaderName;
use crate::message::Message;
use crate::peer::{ConnectionId, Destination, Origin, Transport};

use super::FlowTokenKey;
use super::flow::FlowToken;
use super::tests::{
    ALICE, BOB, Harness, PROXY, PROXY_WS, addr, answer, status, test_flow_key, text,
};

/// The browser's end of its WebSocket connection.
const BROWSER: &str = "127.0.0.9:40000";
const BROWSER_CONTACT: &str = "sip:w7k2@df7jal23ls0d.invalid;transport=ws";
const CONN: ConnectionId = ConnectionId(5);

fn ws_origin() -> Origin {
    Origin {
        transport: Transport::Ws,
        source: addr(BROWSER),
        local: addr(PROXY_WS),
        connection: Some(CONN),
    }
}

fn record_routes(m: &Message) -> Vec<String> {
    m.header_values(&HeaderName::RecordRoute)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The dialog fields of a test request: From and To values (with their tags) and Call-ID.
struct Dialog<'a> {
    from: &'a str,
    to: &'a str,
    call_id: &'a str,
}

/// alice (tag `a1`) to `web`, without and with the browser's tag `b1`.
const ALICE_TO_WEB: (&str, &str) = ("<sip:alice@example.com>;tag=a1", "<sip:web@example.com>");
const ALICE_TO_WEB_CONFIRMED: (&str, &str) = (
    "<sip:alice@example.com>;tag=a1",
    "<sip:web@example.com>;tag=b1",
);

/// A request without body: `start` is the method and Request-URI, `via` the Via value after
/// `SIP/2.0/`, `cseq` like `2 BYE`, and `more` further header lines, each ending in `\n`.
fn request(start: &str, via: &str, d: &Dialog<'_>, cseq: &str, more: &str) -> String {
    format!(
        "{start} SIP/2.0\nVia: SIP/2.0/{via}\nMax-Forwards: 70\n{more}From: {}\nTo: {}\n\
         Call-ID: {}\nCSeq: {cseq}\nContent-Length: 0\n\n",
        d.from, d.to, d.call_id
    )
}

/// A request from alice over UDP (Via branch `branch`) with `(from, to)` of `parties`.
fn from_alice(
    start: &str,
    branch: &str,
    parties: (&str, &str),
    call_id: &str,
    cseq: &str,
    more: &str,
) -> String {
    let (from, to) = parties;
    let d = Dialog { from, to, call_id };
    request(
        start,
        &format!("UDP {ALICE};branch={branch}"),
        &d,
        cseq,
        more,
    )
}

/// A `Route:` line with the two values `first`, `second`.
fn route(first: &str, second: &str) -> String {
    format!("Route: {first}, {second}\n")
}

/// The first request in `out` (what the core forwarded); panics with `what` when none.
fn forwarded<'a>(out: &'a [(Destination, Message)], what: &str) -> &'a (Destination, Message) {
    out.iter()
        .find(|(_, m)| m.is_request())
        .unwrap_or_else(|| panic!("{what}: nothing forwarded: {out:?}"))
}

/// The final (≥ 200) status codes in `out`, in order.
fn finals(out: &[(Destination, Message)]) -> Vec<u16> {
    out.iter()
        .filter_map(|(_, m)| m.status().map(|s| s.0))
        .filter(|c| *c >= 200)
        .collect()
}

/// The REGISTER of the browser as `web` over WS, the way JsSIP writes it.
fn browser_register() -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKwr1\n\
         Max-Forwards: 69\nFrom: <sip:web@example.com>;tag=w\nTo: <sip:web@example.com>\n\
         Call-ID: wreg\nCSeq: 1 REGISTER\n\
         Contact: <{BROWSER_CONTACT}>;+sip.instance=\"<urn:uuid:0001>\";reg-id=1;expires=600\n\
         Supported: path, outbound, gruu\nContent-Length: 0\n\n"
    )
}

/// The browser registers as `web` over WS.
fn register_browser(h: &mut Harness) {
    h.recv_from(ws_origin(), &browser_register());
    let out = h.take();
    assert_eq!(status(&out[0].1), 200, "{}", text(&out[0].1));
    assert_eq!(
        out[0].0.connection,
        Some(CONN),
        "answered over the connection"
    );
}

/// The token the test core writes for the browser's connection.
fn browser_token() -> String {
    FlowToken {
        connection: CONN,
        remote: addr(BROWSER),
    }
    .encode(&test_flow_key())
}

/// The Record-Route value facing the browser.
fn browser_rr() -> String {
    format!(
        "<sip:127.0.0.1:8080;transport=ws;lr;ob;flow={}>",
        browser_token()
    )
}

fn expect_over_flow(d: &Destination) {
    assert_eq!(d.transport, Transport::Ws);
    assert_eq!(d.connection, Some(CONN));
    assert_eq!(d.addr, addr(BROWSER));
}

#[test]
fn udp_caller_reaches_browser_and_bye_follows_the_flow_token() {
    let mut h = Harness::new();
    register_browser(&mut h);
    let contact = format!("Contact: <sip:alice@{ALICE}>\n");
    h.recv(
        ALICE,
        &from_alice(
            "INVITE sip:web@example.com",
            "z9hG4bKf1",
            ALICE_TO_WEB,
            "flow-1",
            "1 INVITE",
            &contact,
        ),
    );
    let out = h.take();
    let (dest, fwd) = forwarded(&out, "INVITE");
    expect_over_flow(dest);
    assert_eq!(fwd.request_uri_raw(), Some(BROWSER_CONTACT.as_bytes()));
    let rr = record_routes(fwd);
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert_eq!(
        rr[0],
        browser_rr(),
        "callee-facing value on top, with the flow token: {rr:?}"
    );
    assert!(rr[0].contains(";flow=5-127.0.0.9-40000-"), "{rr:?}");
    assert_eq!(
        rr[1], "<sip:127.0.0.1:5060;lr>",
        "caller-facing value below"
    );
    assert!(text(fwd).contains("Via: SIP/2.0/WS 127.0.0.1:8080;branch="));

    // 200 from the browser, then the caller hangs up along the reversed route set.
    let ok = answer(fwd, 200, "b1");
    h.recv_from(ws_origin(), &ok);
    let out = h.take();
    assert!(
        out.iter()
            .any(|(d, m)| m.status().map(|s| s.0) == Some(200) && d.addr == addr(ALICE))
    );
    let back = route(&rr[1], &rr[0]);
    h.recv(
        ALICE,
        &from_alice(
            &format!("BYE {BROWSER_CONTACT}"),
            "z9hG4bKf2",
            ALICE_TO_WEB_CONFIRMED,
            "flow-1",
            "2 BYE",
            &back,
        ),
    );
    let out = h.take();
    let (dest, bye) = forwarded(&out, "BYE, not refused for its .invalid host");
    expect_over_flow(dest);
    assert!(bye.header(&HeaderName::Route).is_none(), "{}", text(bye));

    // The ACK for the 2xx takes the same way (stateless, §16.11).
    h.recv(
        ALICE,
        &from_alice(
            &format!("ACK {BROWSER_CONTACT}"),
            "z9hG4bKf3",
            ALICE_TO_WEB_CONFIRMED,
            "flow-1",
            "1 ACK",
            &back,
        ),
    );
    let out = h.take();
    assert_eq!(out.len(), 1);
    expect_over_flow(&out[0].0);
}

#[test]
fn browser_calls_udp_and_the_callee_bye_returns_over_the_flow() {
    let mut h = Harness::new();
    h.register("bob", BOB, 1);
    let web = "<sip:web@example.com>;tag=w1";
    let browser_via = "WS df7jal23ls0d.invalid;branch=";
    let web_to_bob = Dialog {
        from: web,
        to: "<sip:bob@example.com>",
        call_id: "flow-2",
    };
    h.recv_from(
        ws_origin(),
        &request(
            "INVITE sip:bob@example.com",
            &format!("{browser_via}z9hG4bKw1"),
            &web_to_bob,
            "1 INVITE",
            &format!("Contact: <{BROWSER_CONTACT};ob>\n"),
        ),
    );
    let out = h.take();
    let trying = out
        .iter()
        .find(|(_, m)| m.status().map(|s| s.0) == Some(100));
    assert!(trying.is_some_and(|(d, _)| d.connection == Some(CONN)));
    let (dest, fwd) = forwarded(&out, "INVITE");
    assert_eq!((dest.transport, dest.addr), (Transport::Udp, addr(BOB)));
    let rr = record_routes(fwd);
    assert_eq!(
        rr,
        vec!["<sip:127.0.0.1:5060;lr>".to_owned(), browser_rr(),],
        "UDP-facing value on top for the callee; WS-facing one with the token below"
    );
    // The callee's BYE: its route set is the Record-Route in order.
    let bob_to_web = Dialog {
        from: "<sip:bob@example.com>;tag=b1",
        to: web,
        call_id: "flow-2",
    };
    h.recv(
        BOB,
        &request(
            &format!("BYE {BROWSER_CONTACT};ob"),
            &format!("UDP {BOB};branch=z9hG4bKb2"),
            &bob_to_web,
            "1 BYE",
            &route(&rr[0], &rr[1]),
        ),
    );
    let out = h.take();
    expect_over_flow(&forwarded(&out, "BYE over the flow").0);
    // The browser's own in-dialog request carries its own token: it is ignored, and the
    // Request-URI (bob's contact) is the next hop.
    let confirmed = Dialog {
        to: "<sip:bob@example.com>;tag=b1",
        ..web_to_bob
    };
    h.recv_from(
        ws_origin(),
        &request(
            &format!("BYE sip:bob@{BOB}"),
            &format!("{browser_via}z9hG4bKw3"),
            &confirmed,
            "2 BYE",
            &route(&rr[1], &rr[0]),
        ),
    );
    let out = h.take();
    let (dest, _) = forwarded(&out, "BYE to bob");
    assert_eq!((dest.transport, dest.addr), (Transport::Udp, addr(BOB)));
}

#[test]
fn two_browsers_on_one_listener_get_one_token_each() {
    let mut h = Harness::new();
    register_browser(&mut h);
    let caller = Origin {
        source: addr("127.0.0.10:40001"),
        connection: Some(ConnectionId(6)),
        ..ws_origin()
    };
    let other = Dialog {
        from: "<sip:other@example.com>;tag=o1",
        to: "<sip:web@example.com>",
        call_id: "flow-3",
    };
    h.recv_from(
        caller,
        &request(
            "INVITE sip:web@example.com",
            "WS x.invalid;branch=z9hG4bKw9",
            &other,
            "1 INVITE",
            "Contact: <sip:o@x.invalid;transport=ws>\n",
        ),
    );
    let out = h.take();
    let (dest, fwd) = forwarded(&out, "INVITE");
    expect_over_flow(dest);
    let rr = record_routes(fwd);
    assert_eq!(rr.len(), 2, "same listener, two flows: {rr:?}");
    assert!(rr[0].contains("flow=5-"), "{rr:?}");
    assert!(rr[1].contains("flow=6-"), "{rr:?}");
}

#[test]
fn aor_whose_flows_closed_gets_480() {
    let mut h = Harness::new();
    h.flows_closed = true;
    h.recv(
        ALICE,
        &from_alice(
            "MESSAGE sip:web@example.com",
            "z9hG4bKm1",
            ALICE_TO_WEB,
            "m-1",
            "1 MESSAGE",
            "",
        ),
    );
    let out = h.take();
    assert_eq!(status(&out[0].1), 480);
    let _ = PROXY;
}

#[test]
fn aor_ignores_the_port_of_our_own_domain() {
    let mut h = Harness::new();
    register_browser(&mut h);
    h.recv(
        ALICE,
        &from_alice(
            "MESSAGE sip:web@example.com:43182",
            "z9hG4bKm2",
            (ALICE_TO_WEB.0, "<sip:web@example.com:43182>"),
            "m-2",
            "1 MESSAGE",
            "",
        ),
    );
    let out = h.take();
    expect_over_flow(&forwarded(&out, "MESSAGE to the browser").0);
}

#[test]
fn pending_invite_over_a_flow_that_closes_gets_480_at_once() {
    let mut h = Harness::new();
    register_browser(&mut h);
    h.recv(
        ALICE,
        &from_alice(
            "INVITE sip:web@example.com",
            "z9hG4bKc1",
            ALICE_TO_WEB,
            "closed-1",
            "1 INVITE",
            &format!("Contact: <sip:alice@{ALICE}>\n"),
        ),
    );
    let out = h.take();
    assert!(
        out.iter()
            .any(|(d, m)| m.is_request() && d.connection == Some(CONN))
    );
    // Another connection closing changes nothing.
    h.core.handle_connection_closed(h.now, ConnectionId(99));
    h.pump();
    assert!(h.take().is_empty());
    h.core.handle_connection_closed(h.now, CONN);
    h.pump();
    let out = h.take();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        finals(&out),
        vec![480],
        "answered at once, not after Timer B"
    );
    assert_eq!(out[0].0.addr, addr(ALICE));
}

/// A BYE from the UDP side whose Route names the browser's flow with `token`.
fn bye_with_token(token: &str, branch: &str) -> String {
    in_dialog_with_token("BYE", token, branch, "forged-1", "2 BYE")
}

/// An in-dialog `method` from the UDP side whose Route names the browser's flow with `token`.
fn in_dialog_with_token(
    method: &str,
    token: &str,
    branch: &str,
    call_id: &str,
    cseq: &str,
) -> String {
    from_alice(
        &format!("{method} {BROWSER_CONTACT}"),
        branch,
        ALICE_TO_WEB_CONFIRMED,
        call_id,
        cseq,
        &route(
            "<sip:127.0.0.1:5060;lr>",
            &format!("<sip:127.0.0.1:8080;transport=ws;lr;ob;flow={token}>"),
        ),
    )
}

/// Asserts that the only output is a 403 to alice (nothing forwarded anywhere).
fn expect_403(h: &mut Harness, what: &str) {
    let out = h.take();
    assert!(
        out.iter().all(|(_, m)| !m.is_request()),
        "{what}: forwarded: {out:?}"
    );
    let last = out.last().unwrap_or_else(|| panic!("{what}: no answer"));
    assert_eq!(status(&last.1), 403, "{what}: {}", text(&last.1));
    assert_eq!(last.0.addr, addr(ALICE));
    assert!(text(&last.1).contains("flow token"), "{}", text(&last.1));
}

#[test]
fn genuine_token_is_followed() {
    let mut h = Harness::new();
    register_browser(&mut h);
    h.recv(ALICE, &bye_with_token(&browser_token(), "z9hG4bKg1"));
    let out = h.take();
    expect_over_flow(&forwarded(&out, "BYE over the flow").0);
}

#[test]
fn token_written_with_another_key_gets_403() {
    let mut h = Harness::new();
    register_browser(&mut h);
    // Right form, right connection and address, but a MAC from a key that is not the node's:
    // what an attacker who guessed the connection number would write.
    let forged = FlowToken {
        connection: CONN,
        remote: addr(BROWSER),
    }
    .encode(&FlowTokenKey::new([1; FlowTokenKey::LEN]));
    assert_ne!(forged, browser_token());
    h.recv(ALICE, &bye_with_token(&forged, "z9hG4bKx1"));
    expect_403(&mut h, "other key");
}

#[test]
fn altered_token_gets_403() {
    let mut h = Harness::new();
    register_browser(&mut h);
    let genuine = browser_token();
    let (_, mac) = genuine.rsplit_once('-').expect("a MAC");
    // Another user's connection, keeping a genuine MAC: the MAC covers the connection.
    let steered = format!("6-127.0.0.10-40001-{mac}");
    h.recv(ALICE, &bye_with_token(&steered, "z9hG4bKx2"));
    expect_403(&mut h, "other connection, same MAC");
    // One flipped MAC digit.
    let last = if genuine.ends_with('0') { '1' } else { '0' };
    let flipped = format!("{}{last}", &genuine[..genuine.len() - 1]);
    h.recv(ALICE, &bye_with_token(&flipped, "z9hG4bKx3"));
    expect_403(&mut h, "flipped MAC digit");
    // The unauthenticated form of before, and garbage.
    for (n, bad) in ["5-127.0.0.9-40000", "garbage"].iter().enumerate() {
        h.recv(ALICE, &bye_with_token(bad, &format!("z9hG4bKx4{n}")));
        expect_403(&mut h, bad);
    }
}

#[test]
fn ack_with_a_forged_token_is_dropped() {
    let mut h = Harness::new();
    register_browser(&mut h);
    let forged = FlowToken {
        connection: CONN,
        remote: addr(BROWSER),
    }
    .encode(&FlowTokenKey::new([1; FlowTokenKey::LEN]));
    h.recv(
        ALICE,
        &in_dialog_with_token("ACK", &forged, "z9hG4bKxa", "forged-2", "1 ACK"),
    );
    assert!(h.take().is_empty(), "a forged ACK goes nowhere");
}

#[test]
fn keys_from_hex_and_the_debug_form_hides_them() {
    let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
    let key = FlowTokenKey::from_hex(hex).expect("64 hex digits");
    let token = FlowToken {
        connection: CONN,
        remote: addr(BROWSER),
    };
    let same = FlowTokenKey::new([
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
        0xee, 0xff,
    ]);
    assert_eq!(token.encode(&key), token.encode(&same));
    assert_eq!(format!("{key:?}"), "FlowTokenKey(..)");
    assert!(FlowTokenKey::from_hex("abc").is_err());
    assert!(FlowTokenKey::from_hex(&"g".repeat(64)).is_err());
}

#[test]
fn mac_is_hmac_sha256_truncated() {
    // RFC 4231 test case 2 ("Jefe", "what do ya want for nothing?"), first 128 bits: the
    // zero-padded 32-octet key is the same HMAC key as "Jefe" (RFC 2104 pads short keys).
    let mut jefe = [0u8; FlowTokenKey::LEN];
    for (k, b) in jefe.iter_mut().zip(b"Jefe") {
        *k = *b;
    }
    let key = FlowTokenKey::new(jefe);
    assert_eq!(
        key.mac_hex_for_tests("what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c7"
    );
}

/// A browser whose WebSocket is held by cluster node 2, called through node 1: the INVITE goes
/// out as a remote transmit to node 2 (never as a local send), with a flow token for node 2's
/// connection in the Record-Route; when node 2 cannot deliver, the caller gets 480 at once.
#[test]
fn a_flow_held_by_another_node_is_sent_there_and_480_when_unreachable() {
    use super::Incarnation;
    let (me, holder) = (Incarnation(1), Incarnation(2));
    let remote_conn = ConnectionId(holder.connection_base() + 5);
    let mut h = Harness::clustered(me);
    h.recv_from(
        Origin {
            connection: Some(remote_conn),
            ..ws_origin()
        },
        &browser_register(),
    );
    h.remote.clear();
    h.take();
    h.recv(
        ALICE,
        &from_alice(
            "INVITE sip:web@example.com",
            "z9hG4bKr1",
            ALICE_TO_WEB,
            "remote-1",
            "1 INVITE",
            &format!("Contact: <sip:alice@{ALICE}>\n"),
        ),
    );
    assert!(
        h.take()
            .iter()
            .all(|(d, m)| d.connection.is_none() && !m.is_request()),
        "nothing is sent locally over the remote connection"
    );
    let (to, d, invite) = h.remote.pop().expect("a remote transmit");
    assert_eq!(to, holder);
    assert_eq!(d.connection, Some(remote_conn));
    assert_eq!(invite.method().map(|m| m.as_str()), Some("INVITE"));
    let rr = record_routes(&invite).join(",");
    let token = FlowToken {
        connection: remote_conn,
        remote: addr(BROWSER),
    }
    .encode(&test_flow_key());
    assert!(rr.contains(&token), "{rr}");

    h.core.handle_flow_unreachable(h.now, remote_conn);
    h.pump();
    assert_eq!(
        finals(&h.take()),
        vec![480],
        "answered at once, not after Timer B"
    );
}

/// A TCP UA registered through node 2 without outbound (no `;ob`, no instance): its Contact is
/// the address its connection came from, so node 1 reuses that connection (a remote transmit
/// to node 2), and when node 2 cannot deliver, node 1 dials the Contact itself (RFC 3261
/// §18.1.1) rather than answering 480. The same UA registered as a flow (`;ob`) gets 480.
#[test]
fn a_reused_tcp_connection_whose_holder_is_gone_is_redialled_but_a_flow_is_not() {
    use super::Incarnation;
    const UA: &str = "127.0.0.9:41000";
    let (me, holder) = (Incarnation(1), Incarnation(2));
    let remote_conn = ConnectionId(holder.connection_base() + 7);
    for (ob, redialled) in [("", true), (";ob", false)] {
        let mut h = Harness::clustered(me);
        h.recv_from(
            Origin {
                transport: Transport::Tcp,
                source: addr(UA),
                local: addr(PROXY),
                connection: Some(remote_conn),
            },
            &format!(
                "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/TCP {UA};branch=z9hG4bKtr1\n\
                 Max-Forwards: 69\nFrom: <sip:tcp@example.com>;tag=t\nTo: <sip:tcp@example.com>\n\
                 Call-ID: treg\nCSeq: 1 REGISTER\n\
                 Contact: <sip:tcp@{UA};transport=tcp{ob}>;expires=600\nContent-Length: 0\n\n"
            ),
        );
        h.remote.clear();
        h.take();
        h.recv(
            ALICE,
            &from_alice(
                "MESSAGE sip:tcp@example.com",
                "z9hG4bKm1",
                (ALICE_TO_WEB.0, "<sip:tcp@example.com>"),
                "redial-1",
                "1 MESSAGE",
                "",
            ),
        );
        let (to, d, _) = h.remote.pop().expect("a remote transmit first");
        assert_eq!((to, d.connection), (holder, Some(remote_conn)), "{ob}");
        h.take();

        h.core.handle_flow_unreachable(h.now, remote_conn);
        h.pump();
        let out = h.take();
        let codes = finals(&out);
        let sent: Vec<&Destination> = out
            .iter()
            .filter(|(_, m)| m.is_request())
            .map(|(d, _)| d)
            .collect();
        if redialled {
            assert!(codes.is_empty(), "no 480: {codes:?}");
            assert_eq!(sent.len(), 1, "the MESSAGE sent again");
            assert_eq!(sent[0].transport, Transport::Tcp);
            assert_eq!(sent[0].addr, addr(UA));
            assert_eq!(sent[0].connection, None, "on a new connection");
            assert!(h.remote.is_empty(), "not to the holder again");
            // A second failure is no longer redialled: no loop.
            h.core.handle_flow_unreachable(h.now, remote_conn);
            h.pump();
            assert!(h.take().is_empty());
            // The dial fails (the connection to the Contact closes at once): 480 now, not
            // after Timer F.
            h.core.handle_redial_closed(h.now, addr(UA));
            h.pump();
            assert_eq!(
                finals(&h.take()),
                vec![480],
                "a failed dial is answered at once"
            );
        } else {
            assert_eq!(codes, vec![480], "a flow is never redialled");
            assert!(sent.is_empty());
        }
    }
}
