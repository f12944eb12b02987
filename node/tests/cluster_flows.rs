//! Any node serves any request, for UAs reachable only over the connection they opened
//! (issue 5): three real `sipmesh` processes and a real `redis-server`; bob registers over TCP
//! (a flow, `;ob`) at node1, and requests for him enter at the other nodes. They travel over
//! the cluster mesh to node1, which writes them on bob's connection and relays his responses
//! back. In-dialog requests enter at yet another node, which takes the Record-Route of the
//! node that set the call up as its own. When node1 dies, requests for bob get 480 at once,
//! until he registers again elsewhere.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipmesh_test_support::{RawMessage, RawRequest, UdpPeer, ViaTransport};

mod cluster_support;

use cluster_support::*;

/// How long an answer may take.
const WAIT: Duration = Duration::from_secs(3);

/// How long the cluster may take to start serving flows across nodes (the transport routers
/// are published through ractor's process groups once the mesh forms).
const SETTLE: Duration = Duration::from_secs(8);

/// `text` without ANSI colour sequences (the node's log is coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A 2xx (or other) response from bob to `req`, with his Contact and the Record-Route copied
/// (RFC 3261 §12.1.1).
fn answer(req: &RawMessage, code: u16, bob: SocketAddr) -> Vec<u8> {
    req.response(
        code,
        "bob1",
        &format!("sip:bob@{bob};transport=tcp;ob"),
        None,
    )
    .into_bytes()
}

/// The Route set alice builds from a 2xx's Record-Route (RFC 3261 §12.1.2: reversed).
fn route_set(ok: &RawMessage) -> Vec<String> {
    let mut all: Vec<String> = ok
        .header_all("Record-Route")
        .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()))
        .collect();
    all.reverse();
    all
}

/// An in-dialog request of alice's call with bob.
fn in_dialog(
    method: &str,
    alice: &UdpPeer,
    ok: &RawMessage,
    routes: &[String],
    cseq: u32,
) -> RawRequest {
    let contact = ok
        .header("Contact")
        .and_then(|c| c.strip_prefix('<'))
        .and_then(|c| c.split_once('>'))
        .map(|(u, _)| u.to_owned())
        .unwrap_or_else(|| panic!("no Contact in {ok:?}"));
    let mut r = RawRequest::new(method, &contact, ViaTransport::Udp, alice.local_addr())
        .set("From", ok.header("From").unwrap_or_default().to_owned())
        .set("To", ok.header("To").unwrap_or_default().to_owned())
        .set(
            "Call-ID",
            ok.header("Call-ID").unwrap_or_default().to_owned(),
        )
        .set("CSeq", format!("{cseq} {method}"));
    for route in routes {
        r = r.header("Route", route.clone());
    }
    r
}

#[test]
fn a_tcp_flow_held_by_one_node_is_reached_through_every_other_node() {
    let c = Cluster::start("cluster-flows", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let mut bob = register_tcp(&c, 0, "bob", 1, "flows", WAIT);
    for node in [1, 2, 0] {
        let took = message_reaches(
            &c,
            node,
            &mut bob,
            &format!("hi via node{}", node + 1),
            SETTLE,
        );
        eprintln!(
            "measured: MESSAGE via node{} to a TCP flow at node1: {took:?}",
            node + 1
        );
    }

    // A call set up through node2 (its Record-Route), in-dialog requests entering at node3
    // and node1.
    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let invite = RawRequest::new(
        "INVITE",
        &format!("sip:bob@{DOMAIN}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .header("Contact", format!("<sip:alice@{}>", alice.local_addr()));
    alice
        .send(c.nodes[1].udp_addr(), &invite.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let got = bob
        .recv(WAIT)
        .unwrap_or_else(|| panic!("no INVITE at bob\n{}", c.nodes[1].log_tail()));
    assert_eq!(got.method(), Some("INVITE"), "{got:?}");
    bob.send(&answer(&got, 200, bob.local_addr()))
        .unwrap_or_else(|e| panic!("{e}"));
    let ok = alice.recv_final(WAIT).expect("200 to the INVITE at alice");
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    let routes = route_set(&ok);
    eprintln!("route set: {routes:?}");
    assert_eq!(
        routes.len(),
        2,
        "double Record-Route (UDP in, TCP out): {ok:?}"
    );
    assert!(
        routes
            .iter()
            .all(|r| r.contains(&c.nodes[1].ip().to_string())),
        "{routes:?}"
    );

    // ACK into node3: bob gets it on his connection at node1, and node3 did not hand it to
    // node2 (its Via is on top).
    let ack = in_dialog("ACK", &alice, &ok, &routes, 1);
    alice
        .send(c.nodes[2].udp_addr(), &ack.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let got = bob.recv(WAIT).unwrap_or_else(|| {
        panic!(
            "no ACK at bob\n{}\n-----\n{}",
            c.nodes[2].log_tail(),
            c.nodes[0].log_tail()
        )
    });
    assert_eq!(got.method(), Some("ACK"), "{got:?}");
    let top_via = got.header("Via").unwrap_or_default();
    assert!(
        top_via.contains(&c.nodes[2].ip().to_string()),
        "node3 routed the ACK itself: {top_via}"
    );

    // re-INVITE into node1 and BYE into node3.
    for (node, method, cseq) in [(0, "INVITE", 2), (2, "BYE", 3)] {
        let req = in_dialog(method, &alice, &ok, &routes, cseq)
            .header("Contact", format!("<sip:alice@{}>", alice.local_addr()));
        alice
            .send(c.nodes[node].udp_addr(), &req.to_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let got = bob
            .recv(WAIT)
            .unwrap_or_else(|| panic!("no {method} at bob\n{}", c.nodes[node].log_tail()));
        assert_eq!(got.method(), Some(method), "{got:?}");
        bob.send(&answer(&got, 200, bob.local_addr()))
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = alice.recv_final(WAIT);
        assert_eq!(
            answer.as_ref().and_then(RawMessage::status),
            Some(200),
            "{method} via node{}: {answer:?}",
            node + 1
        );
        if method == "INVITE" {
            let ack = in_dialog("ACK", &alice, &ok, &routes, cseq);
            alice
                .send(c.nodes[node].udp_addr(), &ack.to_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            let got = bob.recv(WAIT).expect("ACK of the re-INVITE at bob");
            assert_eq!(got.method(), Some("ACK"), "{got:?}");
        }
    }
}

#[test]
fn requests_to_a_flow_of_a_killed_node_get_480_until_the_user_registers_again() {
    let mut c = Cluster::start("cluster-flows-kill", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let mut bob = register_tcp(&c, 0, "bob", 1, "flows", WAIT);
    message_reaches(&c, 1, &mut bob, "before the kill", SETTLE);

    c.nodes[0].kill();
    let killed = Instant::now();
    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let first = alice
        .request(c.nodes[1].udp_addr(), &message(&alice, "after"), WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first.as_ref().and_then(RawMessage::status),
        Some(480),
        "{first:?}"
    );
    eprintln!(
        "measured: first MESSAGE after SIGKILL of the flow's node answered 480 {:?} after the kill",
        killed.elapsed()
    );
    let declared = c.wait("node1 declared dead", DETECTION_LIMIT + WAIT, |c| {
        [1, 2].iter().all(|&i| {
            c.view(i)
                .is_some_and(|v| state(&v, "node1").as_deref() == Some("dead"))
        })
    });
    // One survivor, the placement owner of `flows:node1`, removes node1's flow bindings.
    let cleaned = c.wait("node1's flows removed", WAIT, |c| {
        c.nodes[1..].iter().any(|n| {
            plain(&n.log_text()).contains("flows of a dead node removed node=node1 removed=1")
        })
    });
    eprintln!("measured: node1's flow bindings removed {cleaned:?} after its death was declared");
    for node in [1, 2] {
        let alice = UdpPeer::bind(c.nodes[node].ip()).unwrap_or_else(|e| panic!("{e}"));
        let sent = Instant::now();
        let answer = alice
            .request(c.nodes[node].udp_addr(), &message(&alice, "dead"), WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            answer.as_ref().and_then(RawMessage::status),
            Some(480),
            "via node{}: {answer:?}",
            node + 1
        );
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "{:?}",
            sent.elapsed()
        );
        eprintln!(
            "measured: MESSAGE via node{}, {:?} after the kill (death declared after {declared:?}): 480 in {:?}",
            node + 1,
            killed.elapsed(),
            sent.elapsed()
        );
    }

    // bob reconnects to node2 and registers again: reachable through node3.
    let mut bob = register_tcp(&c, 1, "bob", 2, "flows", WAIT);
    let took = message_reaches(&c, 2, &mut bob, "welcome back", SETTLE);
    eprintln!("measured: after re-registering at node2, MESSAGE via node3: {took:?}");
}

/// bob's connection closes while an INVITE that entered at node2 waits for his answer: node1
/// (the holder) tells node2 at once, and the caller gets 480 rather than a timeout.
#[test]
fn a_flow_closing_under_a_remote_transaction_gives_480_at_once() {
    let c = Cluster::start("cluster-flows-close", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let mut bob = register_tcp(&c, 0, "bob", 1, "flows", WAIT);
    message_reaches(&c, 1, &mut bob, "warm up", SETTLE);
    let alice = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let invite = RawRequest::new(
        "INVITE",
        &format!("sip:bob@{DOMAIN}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .header("Contact", format!("<sip:alice@{}>", alice.local_addr()));
    alice
        .send(c.nodes[1].udp_addr(), &invite.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let got = bob.recv(WAIT).expect("INVITE at bob");
    assert_eq!(got.method(), Some("INVITE"), "{got:?}");
    drop(bob);
    let closed = Instant::now();
    let answer = alice.recv_final(WAIT);
    assert_eq!(
        answer.as_ref().and_then(RawMessage::status),
        Some(480),
        "{answer:?}"
    );
    eprintln!(
        "measured: 480 at the caller {:?} after the callee's connection closed at another node",
        closed.elapsed()
    );
}

/// The same over WebSocket, the transport that cannot be dialed at all: a browser-style UA
/// (`.invalid` Contact) registered at node1 gets a MESSAGE that entered at node3, and its 200
/// reaches the caller.
#[test]
fn a_websocket_flow_at_one_node_is_reached_from_another() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let ips: Vec<std::net::IpAddr> = (0..3).map(|i| member_ip("cluster-flows-ws", i)).collect();
    let ws_ports: Vec<u16> = ips
        .iter()
        .map(|ip| sipmesh_test_support::free_port(*ip))
        .collect();
    let c = Cluster::start_each("cluster-flows-ws", 3, |i, ip| {
        vec![
            "--listen".to_owned(),
            format!("ws:{}", SocketAddr::new(ip, ws_ports[i])),
        ]
    });
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let ws_addr = SocketAddr::new(ips[0], ws_ports[0]);
        let url = format!("ws://{ws_addr}/");
        let tcp = tokio::net::TcpStream::connect(ws_addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut request = url
            .as_str()
            .into_client_request()
            .unwrap_or_else(|e| panic!("{e}"));
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let register = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKwsreg1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:web@{DOMAIN}>;tag=w1\r\nTo: <sip:web@{DOMAIN}>\r\n\
             Call-ID: wsreg1@ws.test\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:web@df7jal23ls0d.invalid;transport=ws>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
        );
        ws.send(Ws::text(register))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut next_text = async || loop {
            match tokio::time::timeout(WAIT, ws.next()).await {
                Ok(Some(Ok(Ws::Text(t)))) if !t.starts_with("SIP/2.0 1") => {
                    break t.to_string();
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("no SIP frame on the WebSocket: {other:?}"),
            }
        };
        let answer = next_text().await;
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");

        let alice = UdpPeer::bind(c.nodes[2].ip()).unwrap_or_else(|e| panic!("{e}"));
        let sent = Instant::now();
        let mut got = None;
        while got.is_none() && sent.elapsed() < SETTLE {
            let mut msg = RawRequest::new(
                "MESSAGE",
                &format!("sip:web@{DOMAIN}"),
                ViaTransport::Udp,
                alice.local_addr(),
            )
            .body("text/plain", "to the browser");
            msg = msg.set("Call-ID", format!("ws-msg-{}@test", sent.elapsed().as_micros()));
            alice
                .send(c.nodes[2].udp_addr(), &msg.to_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            match tokio::time::timeout(Duration::from_millis(1500), ws.next()).await {
                Ok(Some(Ok(Ws::Text(t)))) => got = Some(t.to_string()),
                _ => {
                    let _ = alice.recv_final(Duration::from_millis(100));
                }
            }
        }
        let got = got.unwrap_or_else(|| panic!("no MESSAGE at the browser\n{}", c.nodes[0].log_tail()));
        let m = RawMessage::parse(got.as_bytes()).unwrap_or_else(|| panic!("{got}"));
        assert_eq!(m.method(), Some("MESSAGE"), "{got}");
        let reply = String::from_utf8(m.reply(200, "OK")).unwrap_or_else(|e| panic!("{e}"));
        ws.send(Ws::text(reply))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = alice.recv_final(WAIT);
        assert_eq!(
            answer.as_ref().and_then(RawMessage::status),
            Some(200),
            "{answer:?}"
        );
        eprintln!(
            "measured: MESSAGE via node3 to a WebSocket flow at node1 answered in {:?}",
            sent.elapsed()
        );
    });
}
