//! Tests of [`MemoryLocationStore`]: store semantics, expiry sweep, flows, and concurrency.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sipmesh_protocol::peer::{ConnectionId, Transport};
use sipmesh_protocol::registrar::{ContactInput, RegisterError, RequestContacts, Source};

use super::*;

/// Polls a future that must be ready at once (the memory store's are).
fn now_or_never<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory store future was pending"),
    }
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn aor(user: &str) -> Aor {
    Aor::from_uri(format!("sip:{user}@example.com").as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn source(connection: Option<u64>) -> Source {
    Source {
        remote: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 40000)),
        transport: if connection.is_some() {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        local: SocketAddr::from((Ipv4Addr::new(198, 51, 100, 1), 5060)),
        connection: connection.map(ConnectionId),
    }
}

fn contact(uri: String, expires: Option<u32>) -> ContactInput {
    ContactInput {
        expires,
        ..ContactInput::new(Bytes::from(uri))
    }
}

fn req(aor: &Aor, call_id: &str, cseq: u32, contacts: Vec<ContactInput>) -> RegisterRequest {
    RegisterRequest {
        aor: aor.clone(),
        call_id: Bytes::copy_from_slice(call_id.as_bytes()),
        cseq,
        contacts: RequestContacts::List(contacts),
        expires_header: None,
        path: Vec::new(),
        supports_path: false,
        source: source(None),
    }
}

fn register(
    store: &MemoryLocationStore,
    r: RegisterRequest,
    now: SystemTime,
) -> Result<RegisterOutcome, StoreError> {
    now_or_never(store.register(r, &RegistrarPolicy::default(), now))
}

fn lookup_uris(store: &MemoryLocationStore, aor: &Aor, now: SystemTime) -> Vec<String> {
    let bindings = now_or_never(store.lookup(aor, now)).unwrap_or_default();
    let mut uris: Vec<String> = bindings
        .iter()
        .map(|b| String::from_utf8_lossy(&b.contact).into_owned())
        .collect();
    uris.sort();
    uris
}

fn stats(store: &MemoryLocationStore) -> StoreStats {
    now_or_never(store.stats()).unwrap_or_default()
}

#[test]
fn register_lookup_and_error_leaves_state_alone() {
    let store = MemoryLocationStore::new();
    let alice = aor("alice");
    let r = req(
        &alice,
        "c1",
        2,
        vec![
            contact("sip:a@h1".into(), None),
            contact("sip:a@h2".into(), None),
        ],
    );
    assert!(register(&store, r, t0()).is_ok());
    assert_eq!(
        lookup_uris(&store, &alice, t0()),
        vec!["sip:a@h1", "sip:a@h2"]
    );
    let bad = req(&alice, "c1", 2, vec![contact("sip:a@h3".into(), None)]);
    let err = register(&store, bad, t0());
    assert_eq!(
        err.as_ref().err(),
        Some(&StoreError::Register(RegisterError::CSeqOutOfOrder))
    );
    assert_eq!(
        err.err().map(|e| (e.status_code(), e.retry_after())),
        Some((400, None))
    );
    assert_eq!(
        lookup_uris(&store, &alice, t0()),
        vec!["sip:a@h1", "sip:a@h2"]
    );
    assert_eq!(
        stats(&store),
        StoreStats {
            aors: 1,
            bindings: 2
        }
    );
    assert!(lookup_uris(&store, &aor("bob"), t0()).is_empty());
}

#[test]
fn removing_last_binding_removes_aor() {
    let store = MemoryLocationStore::new();
    let alice = aor("alice");
    assert!(
        register(
            &store,
            req(&alice, "c1", 1, vec![contact("sip:a@h".into(), None)]),
            t0()
        )
        .is_ok()
    );
    let r = req(&alice, "c1", 2, vec![contact("sip:a@h".into(), Some(0))]);
    assert!(register(&store, r, t0()).is_ok());
    assert_eq!(stats(&store), StoreStats::default());
}

#[test]
fn expiry_sweep() {
    let store = MemoryLocationStore::new();
    let (alice, bob) = (aor("alice"), aor("bob"));
    let r = req(
        &alice,
        "c1",
        1,
        vec![
            contact("sip:a@short".into(), Some(60)),
            contact("sip:a@long".into(), Some(600)),
        ],
    );
    assert!(register(&store, r, t0()).is_ok());
    assert!(
        register(
            &store,
            req(&bob, "c2", 1, vec![contact("sip:b@h".into(), Some(120))]),
            t0()
        )
        .is_ok()
    );
    assert_eq!(
        stats(&store),
        StoreStats {
            aors: 2,
            bindings: 3
        }
    );

    // Lookups hide expired bindings before any sweep.
    assert_eq!(
        lookup_uris(&store, &alice, t0() + Duration::from_secs(60)),
        vec!["sip:a@long"]
    );
    assert_eq!(
        now_or_never(store.sweep_expired(t0() + Duration::from_secs(59))),
        Ok(0)
    );
    assert_eq!(
        now_or_never(store.sweep_expired(t0() + Duration::from_secs(60))),
        Ok(1)
    );
    assert_eq!(
        stats(&store),
        StoreStats {
            aors: 2,
            bindings: 2
        }
    );
    assert_eq!(
        now_or_never(store.sweep_expired(t0() + Duration::from_secs(600))),
        Ok(2)
    );
    assert_eq!(stats(&store), StoreStats::default());
    assert_eq!(
        now_or_never(store.sweep_expired(t0() + Duration::from_secs(6000))),
        Ok(0)
    );
}

#[test]
fn refresh_moves_expiry_index() {
    let store = MemoryLocationStore::new();
    let alice = aor("alice");
    assert!(
        register(
            &store,
            req(&alice, "c1", 1, vec![contact("sip:a@h".into(), Some(60))]),
            t0()
        )
        .is_ok()
    );
    let later = t0() + Duration::from_secs(50);
    assert!(
        register(
            &store,
            req(&alice, "c1", 2, vec![contact("sip:a@h".into(), Some(60))]),
            later
        )
        .is_ok()
    );
    assert_eq!(
        now_or_never(store.sweep_expired(t0() + Duration::from_secs(100))),
        Ok(0)
    );
    assert_eq!(
        now_or_never(store.sweep_expired(t0() + Duration::from_secs(110))),
        Ok(1)
    );
}

#[test]
fn remove_connection_drops_only_its_flow_bindings() {
    let store = MemoryLocationStore::new();
    let (alice, bob, carol) = (aor("alice"), aor("bob"), aor("carol"));
    let ws = |connection| Source {
        transport: Transport::Ws,
        ..source(Some(connection))
    };
    let mut r = req(
        &alice,
        "c1",
        1,
        vec![contact("sip:a@x.invalid;transport=ws".into(), None)],
    );
    r.source = ws(42);
    assert!(register(&store, r, t0()).is_ok());
    assert!(
        register(
            &store,
            req(&alice, "c2", 1, vec![contact("sip:a@udp".into(), None)]),
            t0()
        )
        .is_ok()
    );
    let mut r = req(
        &bob,
        "c3",
        1,
        vec![contact("sip:b@x.invalid;transport=ws".into(), None)],
    );
    r.source = ws(42);
    assert!(register(&store, r, t0()).is_ok());
    // Over TCP with a dialable Contact: not a flow, it survives the connection.
    let mut r = req(
        &carol,
        "c4",
        1,
        vec![contact("sip:c@192.0.2.9;transport=tcp".into(), None)],
    );
    r.source = source(Some(42));
    assert!(register(&store, r, t0()).is_ok());
    assert_eq!(
        now_or_never(store.remove_connection(ConnectionId(42))),
        Ok(2)
    );
    assert_eq!(lookup_uris(&store, &alice, t0()), vec!["sip:a@udp"]);
    assert_eq!(
        lookup_uris(&store, &carol, t0()),
        vec!["sip:c@192.0.2.9;transport=tcp"]
    );
    assert_eq!(
        stats(&store),
        StoreStats {
            aors: 2,
            bindings: 2
        }
    );
    assert_eq!(
        now_or_never(store.remove_connection(ConnectionId(42))),
        Ok(0)
    );
    // bob lost his only binding to a closed flow: 480 material, until he registers again or
    // the binding would have expired; alice still has one, carol never lost hers.
    assert_eq!(now_or_never(store.flows_closed(&bob, t0())), Ok(true));
    assert_eq!(now_or_never(store.flows_closed(&alice, t0())), Ok(false));
    assert_eq!(now_or_never(store.flows_closed(&carol, t0())), Ok(false));
    let later = t0() + Duration::from_secs(7200);
    assert_eq!(now_or_never(store.flows_closed(&bob, later)), Ok(false));
    let mut r = req(
        &bob,
        "c5",
        1,
        vec![contact("sip:b@x.invalid;transport=ws".into(), None)],
    );
    r.source = ws(43);
    assert!(register(&store, r, t0()).is_ok());
    assert_eq!(now_or_never(store.flows_closed(&bob, t0())), Ok(false));
}

#[test]
fn unavailable_maps_to_503_with_retry_after() {
    let e = StoreError::Unavailable(crate::location::UnavailableReason::Timeout);
    assert_eq!(
        (e.status_code(), e.reason_phrase(), e.retry_after()),
        (503, "Service Unavailable", Some(5))
    );
}

/// Many threads register (and some remove) distinct contacts of one AOR: the final set is
/// exactly what was acknowledged.
#[test]
fn concurrent_registers_end_with_acknowledged_union() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 40;
    let store = Arc::new(MemoryLocationStore::new());
    let alice = aor("alice");
    let policy = RegistrarPolicy {
        max_contacts: THREADS * PER_THREAD,
        ..Default::default()
    };
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, alice) = (Arc::clone(&store), alice.clone());
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let call_id = format!("call-{t}");
                let mut cseq = 0;
                for i in 0..PER_THREAD {
                    let uri = format!("sip:t{t}-{i}@10.0.0.{t}");
                    cseq += 1;
                    let r = req(&alice, &call_id, cseq, vec![contact(uri.clone(), None)]);
                    if now_or_never(store.register(r, &policy, t0())).is_ok() {
                        kept.push(uri.clone());
                    }
                    if i % 5 == 0 {
                        cseq += 1;
                        let r = req(&alice, &call_id, cseq, vec![contact(uri.clone(), Some(0))]);
                        if now_or_never(store.register(r, &policy, t0())).is_ok() {
                            kept.retain(|u| u != &uri);
                        }
                    }
                }
                kept
            })
        })
        .collect();
    let mut expected: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    expected.sort();
    assert_eq!(expected.len(), THREADS * (PER_THREAD - PER_THREAD / 5));
    assert_eq!(lookup_uris(&store, &alice, t0()), expected);
    assert_eq!(stats(&store).bindings, expected.len());
}

/// With a small contact limit, racing threads get exactly `max_contacts` acknowledgements.
#[test]
fn concurrent_registers_respect_contact_limit() {
    const THREADS: usize = 8;
    let store = Arc::new(MemoryLocationStore::new());
    let alice = aor("alice");
    let policy = RegistrarPolicy::default();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, alice) = (Arc::clone(&store), alice.clone());
            std::thread::spawn(move || {
                (0..10)
                    .filter_map(|i| {
                        let uri = format!("sip:t{t}-{i}@h");
                        let r = req(
                            &alice,
                            &format!("c{t}-{i}"),
                            1,
                            vec![contact(uri.clone(), None)],
                        );
                        match now_or_never(store.register(r, &policy, t0())) {
                            Ok(_) => Some(uri),
                            Err(e) => {
                                assert_eq!(
                                    e,
                                    StoreError::Register(RegisterError::TooManyContacts {
                                        max: 16
                                    })
                                );
                                None
                            }
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    acked.sort();
    assert_eq!(acked.len(), policy.max_contacts);
    assert_eq!(lookup_uris(&store, &alice, t0()), acked);
}

#[test]
fn many_aors_spread_over_shards() {
    let store = MemoryLocationStore::new();
    for n in 0..1000 {
        let a = aor(&format!("u{n}"));
        assert!(
            register(
                &store,
                req(&a, "c", 1, vec![contact(format!("sip:u{n}@h"), None)]),
                t0()
            )
            .is_ok()
        );
    }
    assert_eq!(
        stats(&store),
        StoreStats {
            aors: 1000,
            bindings: 1000
        }
    );
    let used = store
        .shards
        .iter()
        .filter(|s| !lock(s).aors.is_empty())
        .count();
    assert_eq!(used, SHARDS);
    // Binding footprint guard (the benchmark measures RSS; this only catches accidental bloat).
    assert!(
        size_of::<Binding>() <= 256,
        "Binding is {} bytes",
        size_of::<Binding>()
    );
}

/// RFC 5626 §6: a re-REGISTER of the same instance and reg-id over a new connection replaces the
/// old flow's binding, so the old connection closing later removes nothing.
#[test]
fn new_flow_of_an_instance_survives_the_old_connection_closing() {
    let store = MemoryLocationStore::new();
    let alice = aor("alice");
    let flow = |call_id: &str, cseq, connection| {
        let mut c = contact("sip:a@x.invalid;transport=ws".into(), None);
        c.instance = Some(Bytes::from_static(b"\"<urn:uuid:1>\""));
        c.reg_id = Some(1);
        let mut r = req(&alice, call_id, cseq, vec![c]);
        r.source = Source {
            transport: Transport::Ws,
            ..source(Some(connection))
        };
        r
    };
    assert!(register(&store, flow("c1", 1, 1), t0()).is_ok());
    assert!(register(&store, flow("c2", 1, 2), t0()).is_ok());
    assert_eq!(stats(&store).bindings, 1, "replaced, not added");
    assert_eq!(
        now_or_never(store.remove_connection(ConnectionId(1))),
        Ok(0)
    );
    assert_eq!(lookup_uris(&store, &alice, t0()).len(), 1);
    assert_eq!(
        now_or_never(store.remove_connection(ConnectionId(2))),
        Ok(1)
    );
    assert!(lookup_uris(&store, &alice, t0()).is_empty());
    assert_eq!(now_or_never(store.flows_closed(&alice, t0())), Ok(true));
}
