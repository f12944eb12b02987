//! The registrar actors in a real `sipmesh` process: many SIPp clients registering the same
//! AOR at once end with exactly the bindings that were acknowledged (with Redis as the store),
//! and a panicked AOR actor is restarted by its supervisor from the store, so the next call to
//! that AOR still reaches its binding (with Redis and with the memory store).

use std::time::{Duration, Instant};

use sipmesh_test_support::{
    Harness, RawMessage, RawRequest, RedisServer, SippRunning, SippTransport, UdpPeer, ViaTransport,
};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// SIPp processes registering the same AOR at once.
const DEVICES: usize = 8;
/// Calls (Call-IDs) per process; each sends three REGISTERs (CSeq 1, 2, 3).
const CALLS: u32 = 4;

/// One call: REGISTER the device's Contact twice (3600 s), then a third time with
/// `[final_expires]` (0 removes it again). Every REGISTER must get a 200.
const BURST: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register burst">
  <send retrans="500"><![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:shared@[remote_ip]:[remote_port]>;tag=[pid]T[call_number]
      To: <sip:shared@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:dev[dev]@[contact_host]:[contact_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
  <send retrans="500"><![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:shared@[remote_ip]:[remote_port]>;tag=[pid]T[call_number]
      To: <sip:shared@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:dev[dev]@[contact_host]:[contact_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
  <send retrans="500"><![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:shared@[remote_ip]:[remote_port]>;tag=[pid]T[call_number]
      To: <sip:shared@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 3 REGISTER
      Contact: <sip:dev[dev]@[contact_host]:[contact_port]>
      Expires: [final_expires]
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200"/>
</scenario>
"#;

fn start(test: &str, redis: Option<&RedisServer>, hooks: bool) -> Harness {
    start_with(test, redis, hooks, &[])
}

fn start_with(test: &str, redis: Option<&RedisServer>, hooks: bool, extra: &[&str]) -> Harness {
    let started = Harness::try_start(SIPMESH, test, |o| {
        o.extra_args.extend(extra.iter().map(|a| (*a).to_owned()));
        o.admin_port = Some(sipmesh_test_support::free_port(o.ip));
        o.test_hooks = hooks;
        o.log_filter = "info".to_owned();
        if let Some(redis) = redis {
            o.extra_args.extend(["--redis".to_owned(), redis.url()]);
        }
    });
    started.unwrap_or_else(|e| panic!("cannot start the node: {e}"))
}

fn status(harness: &Harness) -> String {
    match harness.node().admin("GET", "/status") {
        Ok((200, body)) => body,
        Ok((code, body)) => panic!("GET /status: {code} {body}"),
        Err(e) => panic!("GET /status: {e}"),
    }
}

fn spawn(sipp: sipmesh_test_support::Sipp) -> SippRunning {
    sipp.spawn()
        .unwrap_or_else(|e| panic!("cannot start SIPp: {e}"))
}

fn finish(harness: &Harness, sipp: SippRunning) {
    match sipp.wait() {
        Ok(outcome) => harness.check(&outcome),
        Err(e) => panic!("cannot collect SIPp: {e}"),
    }
}

/// `--aor-actor-idle`: an AOR actor stops after that long without requests while its
/// bindings stay in the store (memory follows activity, issue 4 point 1).
#[test]
fn idle_aor_actor_stops_after_the_configured_time_and_its_binding_stays() {
    let redis = RedisServer::start();
    let harness = start_with(
        "regactors-idle",
        Some(&redis),
        false,
        &["--aor-actor-idle", "1"],
    );
    let scenario = harness.dir().file("register_burst.xml");
    std::fs::write(&scenario, BURST).unwrap_or_else(|e| panic!("{e}"));
    let scenario = scenario.to_string_lossy().into_owned();
    let device = UdpPeer::bind(harness.ip()).unwrap_or_else(|e| panic!("{e}"));
    let contact = device.local_addr();
    let sipp = spawn(
        harness
            .uac(&scenario, SippTransport::Udp)
            .calls(1)
            .key("dev", 0)
            .key("contact_host", contact.ip())
            .key("contact_port", contact.port())
            .key("final_expires", 3600),
    );
    finish(&harness, sipp);
    let registered = Instant::now();
    let body = status(&harness);
    assert!(body.contains("\"aor_actors\": 1"), "{body}");
    // Idle 1 s, then the actor's idle check (it runs at the idle period) stops it.
    let deadline = registered + Duration::from_secs(5);
    let body = loop {
        let body = status(&harness);
        if body.contains("\"aor_actors\": 0") || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        body.contains("\"aor_actors\": 0"),
        "still live after 5 s: {body}"
    );
    assert!(
        registered.elapsed() >= Duration::from_millis(900),
        "stopped before its idle time: {:?}",
        registered.elapsed()
    );
    assert!(body.contains("\"aors\": 1"), "{body}");
    assert!(body.contains("\"bindings\": 1"), "{body}");
}

#[test]
fn concurrent_registers_for_one_aor_end_with_the_acknowledged_bindings() {
    let redis = RedisServer::start();
    let harness = start("regactors-burst", Some(&redis), false);
    let scenario = harness.dir().file("register_burst.xml");
    std::fs::write(&scenario, BURST).unwrap_or_else(|e| panic!("{e}"));
    let scenario = scenario.to_string_lossy().into_owned();

    // Each device's Contact is a UDP socket of ours, so a lookup can be watched.
    let devices: Vec<UdpPeer> = (0..DEVICES)
        .map(|_| UdpPeer::bind(harness.ip()).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // Even devices end registered, odd ones end with Expires 0.
    let running: Vec<SippRunning> = devices
        .iter()
        .enumerate()
        .map(|(i, peer)| {
            let contact = peer.local_addr();
            let final_expires = if i % 2 == 0 { 3600 } else { 0 };
            spawn(
                harness
                    .uac(&scenario, SippTransport::Udp)
                    .calls(CALLS)
                    .rate(100)
                    .key("dev", i)
                    .key("contact_host", contact.ip())
                    .key("contact_port", contact.port())
                    .key("final_expires", final_expires),
            )
        })
        .collect();
    for sipp in running {
        finish(&harness, sipp);
    }

    let body = status(&harness);
    assert!(body.contains("\"store\": \"redis\""), "{body}");
    assert!(body.contains("\"aors\": 1"), "{body}");
    assert!(body.contains("\"aor_actors\": 1"), "{body}");
    assert!(
        body.contains(&format!("\"bindings\": {}", DEVICES / 2)),
        "{body}"
    );

    // A MESSAGE to the AOR forks to exactly the even devices.
    let node = harness.node().udp_addr();
    let alice = UdpPeer::bind(harness.ip()).unwrap_or_else(|e| panic!("{e}"));
    let message = RawRequest::new(
        "MESSAGE",
        &format!("sip:shared@{node}"),
        ViaTransport::Udp,
        alice.local_addr(),
    )
    .body("text/plain", "who is there");
    alice
        .send(node, &message.to_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, peer) in devices.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let Some((delivered, from)) = peer.recv_from(Duration::from_secs(3)) else {
            panic!("device {i} got no MESSAGE\n{}", harness.node().log_tail());
        };
        assert_eq!(delivered.method(), Some("MESSAGE"));
        peer.send(from, &delivered.reply(200, "OK"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let answer = alice.recv_final(Duration::from_secs(3));
    assert_eq!(
        answer.as_ref().and_then(RawMessage::status),
        Some(200),
        "{answer:?}"
    );
    for (i, peer) in devices.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let got = peer.recv(Duration::from_millis(200));
        assert!(got.is_none(), "unregistered device {i} got {got:?}");
    }
}

/// Percent-encodes an AOR for the admin path.
fn encode(aor: &str) -> String {
    aor.replace('%', "%25")
        .replace(':', "%3A")
        .replace('@', "%40")
}

/// Registers a SIPp UAS as bob, panics bob's AOR actor, waits for the supervisor's restart in
/// the log, then calls bob: the UAS must answer.
fn call_after_panic(test: &str, redis: Option<&RedisServer>) {
    let harness = start(test, redis, true);
    let uas = spawn(harness.uas("uas_call.xml", SippTransport::Udp));
    if let Err(e) = uas.wait_listening() {
        panic!("UAS did not bind: {e}");
    }
    harness.run_ok(harness.register("bob.csv", uas.local_addr(), SippTransport::Udp));

    // The canonical AOR: no port for a domain of ours (the node's IP).
    let domain = harness.ip();
    let nobody = format!(
        "/test/panic/aor/{}",
        encode(&format!("sip:nobody@{domain}"))
    );
    match harness.node().admin("POST", &nobody) {
        Ok((404, _)) => {}
        other => panic!("POST {nobody}: {other:?}"),
    }
    let path = format!("/test/panic/aor/{}", encode(&format!("sip:bob@{domain}")));
    match harness.node().admin("POST", &path) {
        Ok((200, _)) => {}
        Ok((code, body)) => panic!("POST {path}: {code} {body}"),
        Err(e) => panic!("POST {path}: {e}"),
    }
    // The supervisor's warning names the AOR and carries the panic message.
    let deadline = Instant::now() + Duration::from_secs(5);
    let restart = loop {
        let log = harness.node().log_text();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("AOR actor failed; restarted from the store"))
        {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no restart in the log\n{}",
            harness.node().log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(restart.contains("WARN"), "{restart}");
    assert!(restart.contains("injected panic"), "{restart}");
    assert!(restart.contains(&format!("sip:bob@{domain}")), "{restart}");

    harness.run_ok(
        harness
            .uac("uac_call.xml", SippTransport::Udp)
            .inf("alice_to_bob.csv")
            .duration_ms(100),
    );
    finish(&harness, uas);
}

#[test]
fn panicked_aor_actor_restarts_from_redis() {
    let redis = RedisServer::start();
    call_after_panic("regactors-panic-redis", Some(&redis));
}

#[test]
fn panicked_aor_actor_restarts_from_memory() {
    call_after_panic("regactors-panic-memory", None);
}
