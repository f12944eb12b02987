//! A real cluster: one `redis-server` and three `sipmesh` processes on 127.0.K.11–13 (K per test) form a
//! mesh, declare a SIGKILLed member dead within 3 s, take it back with a higher epoch after a
//! restart, and fence a member frozen (SIGSTOP) past its lease until it re-acquires a new one.
//! Everything is observed through each node's `GET /cluster`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sipmesh_test_support::{RawMessage, RawRequest, TestDir, UdpPeer, ViaTransport};

mod cluster_support;

use cluster_support::*;

#[test]
fn three_nodes_mesh_detect_a_kill_and_take_the_node_back() {
    let mut c = Cluster::start("cluster-kill", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let old = c.view(0).and_then(|v| epoch(&v, "node3")).expect("epoch");

    c.nodes[2].kill();
    let detected = c.wait("node3 declared dead", Duration::from_secs(5), |c| {
        (0..2).all(|i| {
            c.view(i)
                .is_some_and(|v| state(&v, "node3").as_deref() == Some("dead"))
        })
    });
    eprintln!("measured: SIGKILLed node declared dead by both survivors after {detected:?}");
    assert!(
        detected < DETECTION_LIMIT,
        "SIGKILLed node declared dead after {detected:?}"
    );
    let live = c.view(0).expect("view")["live"].clone();
    assert_eq!(live, serde_json::json!(["node1", "node2"]));

    c.nodes[2]
        .restart()
        .unwrap_or_else(|e| panic!("restarting node3: {e}"));
    let rejoined = c.wait("node3 back in the mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    eprintln!("measured: restarted node live on every member {rejoined:?} after it answered");
    for i in 0..3 {
        let new = c.view(i).and_then(|v| epoch(&v, "node3")).expect("epoch");
        assert!(
            new > old,
            "node{}: epoch {new} after restart, was {old}",
            i + 1
        );
    }

    // The CLI prints the same view as a table.
    let admin = format!(
        "{}:{}",
        c.nodes[0].ip(),
        c.nodes[0].options().admin_port.expect("admin port")
    );
    let out = Command::new(SIPMESH)
        .args(["cluster", "status", "--admin", &admin])
        .output()
        .expect("running sipmesh cluster status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("ID "), "{text}");
    for id in IDS {
        assert!(text.contains(id), "{id} missing from\n{text}");
    }
    assert_eq!(text.matches(" live ").count(), 3, "{text}");
}

#[test]
fn a_frozen_node_fences_itself_and_rejoins_with_a_new_epoch() {
    let c = Cluster::start("cluster-freeze", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let old = c.view(1).and_then(|v| epoch(&v, "node2")).expect("epoch");

    c.nodes[1].freeze(true);
    // Frozen past its lease: the others drop it, and Redis drops its lease.
    c.wait("node2's lease gone", Duration::from_secs(6), |c| {
        [0, 2].iter().all(|&i| {
            c.view(i).is_some_and(|v| {
                state(&v, "node2").as_deref() == Some("dead") && epoch(&v, "node2").is_none()
            })
        })
    });
    c.nodes[1].freeze(false);
    let thaw = Instant::now();

    // The first answer after the thaw: fenced, while the others still do not count it.
    let thawed = c.view(1).expect("node2 answers after SIGCONT");
    eprintln!(
        "measured: first admin answer {:?} after SIGCONT",
        thaw.elapsed()
    );
    assert_eq!(
        state(&thawed, "node2").as_deref(),
        Some("fenced"),
        "{thawed}"
    );
    assert_eq!(epoch(&thawed, "node2"), None, "{thawed}");
    assert!(
        thawed["live"]
            .as_array()
            .is_some_and(|l| !l.contains(&"node2".into()))
    );
    for i in [0, 2] {
        let v = c.view(i).expect("view");
        assert_ne!(state(&v, "node2").as_deref(), Some("live"), "{v}");
    }

    let rejoined = c.wait("node2 rejoined", Duration::from_secs(8), |c| {
        all_live(c, &IDS)
    });
    eprintln!(
        "measured: thawed node live again on every member {:?} after SIGCONT",
        thaw.elapsed().max(rejoined)
    );
    for i in 0..3 {
        let new = c.view(i).and_then(|v| epoch(&v, "node2")).expect("epoch");
        assert!(
            new > old,
            "node{}: epoch {new} after the freeze, was {old}",
            i + 1
        );
    }
    let me = c.view(1).expect("view");
    assert_eq!(
        member(&me, "node2").expect("self")["times_fenced"],
        1,
        "{me}"
    );
}

#[test]
fn losing_redis_fences_every_node_and_they_come_back_with_new_epochs() {
    let c = Cluster::start("cluster-redis-freeze", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let old: Vec<u64> = IDS
        .iter()
        .map(|id| c.view(0).and_then(|v| epoch(&v, id)).expect("epoch"))
        .collect();

    c.redis.freeze(true);
    let fenced = c.wait("every node fenced", Duration::from_secs(5), |c| {
        (0..3).all(|i| {
            c.view(i).is_some_and(|v| {
                state(&v, IDS[i]).as_deref() == Some("fenced")
                    && v["live"].as_array().is_some_and(Vec::is_empty)
            })
        })
    });
    eprintln!("measured: Redis frozen -> all three nodes fenced after {fenced:?}");
    // By construction each node fences itself at most 2.5 s after its last successful renewal
    // was sent (before Redis could drop the key); the rest is three admin round trips per poll.
    assert!(
        fenced < DETECTION_LIMIT + Duration::from_millis(500),
        "fenced after {fenced:?}"
    );

    c.redis.freeze(false);
    let back = c.wait("the mesh back", Duration::from_secs(8), |c| {
        all_live(c, &IDS)
    });
    eprintln!("measured: Redis thawed -> full live mesh after {back:?}");
    for (id, old) in IDS.iter().zip(old) {
        let new = c.view(0).and_then(|v| epoch(&v, id)).expect("epoch");
        assert!(new > old, "{id}: epoch {new} after the outage, was {old}");
    }
}

/// Any node serves any request, the serve-from-Redis way: bob registers at node1, and a MESSAGE
/// entering at each of the three nodes reaches his binding (every node reads the shared
/// location store). The owner of bob's AOR is whichever member placement says; no node needs
/// to be it for this path.
#[test]
fn a_registration_at_one_node_serves_requests_entering_at_every_node() {
    let c = Cluster::start("cluster-any-node", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let bob = UdpPeer::bind(c.nodes[0].ip()).unwrap_or_else(|e| panic!("{e}"));
    let register = RawRequest::register(DOMAIN, "bob", bob.local_addr(), "cluster", 1);
    let ok = bob
        .request(c.nodes[0].udp_addr(), &register, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );

    for (i, node) in c.nodes.iter().enumerate() {
        let alice = UdpPeer::bind(node.ip()).unwrap_or_else(|e| panic!("{e}"));
        let text = format!("hello via node{}", i + 1);
        let message = RawRequest::new(
            "MESSAGE",
            &format!("sip:bob@{DOMAIN}"),
            ViaTransport::Udp,
            alice.local_addr(),
        )
        .body("text/plain", text.as_str());
        let sent = Instant::now();
        alice
            .send(node.udp_addr(), &message.to_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let Some((delivered, from)) = bob.recv_from(Duration::from_secs(3)) else {
            panic!(
                "the MESSAGE via node{} never reached bob\n{}",
                i + 1,
                node.log_tail()
            );
        };
        assert_eq!(delivered.body(), text.as_bytes());
        bob.send(from, &delivered.reply(200, "OK"))
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = alice.recv_final(Duration::from_secs(3));
        assert_eq!(
            answer.as_ref().and_then(RawMessage::status),
            Some(200),
            "{answer:?}"
        );
        eprintln!(
            "measured: MESSAGE via node{} answered in {:?} (served from Redis)",
            i + 1,
            sent.elapsed()
        );
    }

    // What forwarding to an owner would add: a node-to-node call over ractor_cluster, next to
    // a Redis round trip.
    let (code, body) = c.nodes[0]
        .admin("GET", "/cluster/ping")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let ping: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let routers = ping["routers"].as_array().expect("routers");
    let names: Vec<&str> = routers.iter().filter_map(|r| r["node"].as_str()).collect();
    assert_eq!(names, ["node2", "node3"], "{body}");
    assert!(routers.iter().all(|r| r["failed"] == 0), "{body}");
    assert!(ping["redis_median_us"].as_u64().is_some(), "{body}");
    eprintln!("measured: /cluster/ping from node1: {body}");
}

/// A node cut off from its peers but not from Redis keeps its lease, so only the quorum rule
/// can stop it: it fences itself as isolated while the other two carry on without it, and
/// rejoins when the partition heals.
#[test]
fn a_node_partitioned_from_its_peers_fences_itself_as_isolated() {
    let c = Cluster::start("cluster-partition", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let (code, body) = c.nodes[2]
        .admin("POST", "/test/cluster/partition")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let split = c.wait(
        "node3 isolated, node1+node2 without it",
        Duration::from_secs(5),
        |c| {
            let isolated = c.view(2).is_some_and(|v| {
                member(&v, "node3").is_some_and(|m| m["fenced_by"] == "isolated")
                    && epoch(&v, "node3").is_some()
            });
            isolated
                && (0..2).all(|i| {
                    c.view(i).is_some_and(|v| {
                        v["live"] == serde_json::json!(["node1", "node2"])
                            && state(&v, IDS[i]).as_deref() == Some("live")
                    })
                })
        },
    );
    eprintln!(
        "measured: partitioned node fenced as isolated, majority without it, after {split:?}"
    );
    // The majority needs `dead_after` (2.4 s) of silence; the rest is admin polling.
    assert!(
        split < DETECTION_LIMIT + Duration::from_millis(500),
        "{split:?}"
    );
    let (code, body) = c.nodes[2]
        .admin("POST", "/test/cluster/heal")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, 200, "{body}");
    let healed = c.wait("the mesh healed", Duration::from_secs(5), |c| {
        all_live(c, &IDS)
    });
    eprintln!("measured: partition healed -> full live mesh after {healed:?}");
}

/// Writes `ca.pem`, `cert.pem` and `key.pem` into `out`: a CA and one member certificate with
/// an IP SAN per address and both server and client authentication (the members use it both
/// ways; `sipmesh dev-cert` makes server-only certificates).
fn member_certificates(out: &std::path::Path, ips: &[&str]) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("member key");
    let mut params =
        CertificateParams::new(ips.iter().map(|ip| (*ip).to_owned()).collect::<Vec<_>>())
            .expect("member params");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer).expect("member certificate");
    std::fs::create_dir_all(out).expect("pki dir");
    std::fs::write(out.join("ca.pem"), ca_cert.pem()).expect("ca.pem");
    std::fs::write(out.join("cert.pem"), cert.pem()).expect("cert.pem");
    std::fs::write(out.join("key.pem"), key.serialize_pem()).expect("key.pem");
}

/// The mesh over mutual TLS: a CA and one member certificate with an IP SAN per member; every
/// session is authenticated both ways, and the mesh forms as over plain TCP.
#[test]
fn the_mesh_forms_over_mutual_tls() {
    let certs = TestDir::new("cluster-tls-certs").unwrap_or_else(|e| panic!("{e}"));
    let out = certs.file("pki");
    let ips: Vec<String> = (0..3)
        .map(|i| member_ip("cluster-tls", i).to_string())
        .collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    member_certificates(&out, &ips);
    let path = |f: &str| out.join(f).display().to_string();
    let args = [
        "--cluster-tls-cert".to_owned(),
        path("cert.pem"),
        "--cluster-tls-key".to_owned(),
        path("key.pem"),
        "--cluster-tls-ca".to_owned(),
        path("ca.pem"),
    ];
    let c = Cluster::start_with("cluster-tls", 3, &args);
    c.wait("a full live mesh over TLS", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    for i in 0..3 {
        let v = c.view(i).expect("view");
        assert_eq!(v["tls"], true, "{v}");
    }
    let log = c.nodes[0].log_text();
    assert!(!log.contains("TLS error"), "{log}");
}

/// A REGISTER for `user` from `peer` (Call-ID per user, CSeq `cseq`).
fn register_request(peer: &UdpPeer, user: &str, cseq: u32) -> RawRequest {
    RawRequest::register(DOMAIN, user, peer.local_addr(), "fence", cseq)
}

/// Fencing of owner writes (issue 5), end to end: a node frozen past its lease answers a
/// REGISTER sent in the first instant after SIGCONT with 503 + Retry-After, without writing
/// the binding, and registers again (200) once it holds a new lease.
#[test]
fn a_thawed_node_refuses_registers_with_503_until_it_holds_a_new_lease() {
    let c = Cluster::start("cluster-fenced-writes", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let peer = UdpPeer::bind(c.nodes[1].ip()).unwrap_or_else(|e| panic!("{e}"));
    let ok = peer
        .request(
            c.nodes[1].udp_addr(),
            &register_request(&peer, "carol", 1),
            Duration::from_secs(3),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );

    c.nodes[1].freeze(true);
    c.wait("node2's lease gone", Duration::from_secs(6), |c| {
        [0, 2].iter().all(|&i| {
            c.view(i).is_some_and(|v| {
                state(&v, "node2").as_deref() == Some("dead") && epoch(&v, "node2").is_none()
            })
        })
    });
    c.nodes[1].freeze(false);
    let thaw = Instant::now();
    let refused = peer
        .request(
            c.nodes[1].udp_addr(),
            &register_request(&peer, "dave", 1),
            Duration::from_secs(3),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "measured: REGISTER to the thawed node answered {:?} after SIGCONT",
        thaw.elapsed()
    );
    let refused = refused.unwrap_or_else(|| panic!("no answer\n{}", c.nodes[1].log_tail()));
    assert_eq!(refused.status(), Some(503), "{refused:?}");
    assert!(refused.header("Retry-After").is_some(), "{refused:?}");
    let key = format!("sipmesh:loc:aor:sip:dave@{DOMAIN}");
    assert_eq!(
        c.redis.cli(&["EXISTS", &key]).trim(),
        "0",
        "a fenced node wrote a binding"
    );

    c.wait("node2 rejoined", Duration::from_secs(8), |c| {
        all_live(c, &IDS)
    });
    let ok = peer
        .request(
            c.nodes[1].udp_addr(),
            &register_request(&peer, "dave", 2),
            Duration::from_secs(3),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.as_ref().and_then(RawMessage::status),
        Some(200),
        "{ok:?}"
    );
    assert_eq!(c.redis.cli(&["EXISTS", &key]).trim(), "1");
    eprintln!(
        "measured: REGISTER accepted again {:?} after SIGCONT",
        thaw.elapsed()
    );
}
