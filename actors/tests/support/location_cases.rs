//! Store-agnostic test bodies: every registrar rule as seen through a [`LocationStore`]. The
//! integration test runs each body against the memory store and against Redis, so both
//! implementations are held to the same behaviour.

use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sipmesh_actors::location::{LocationStore, MemoryLocationStore, StoreError, StoreStats};
use sipmesh_protocol::peer::ConnectionId;
use sipmesh_protocol::registrar::{
    Aor, ContactInput, RegisterError, RegisterOutcome, RegisterRequest, RegistrarPolicy,
    RequestContacts,
};

use super::requests::{aor, contact, req, source, t0};

async fn register<S: LocationStore>(
    store: &S,
    r: RegisterRequest,
    now: std::time::SystemTime,
) -> Result<RegisterOutcome, StoreError> {
    store.register(r, &RegistrarPolicy::default(), now).await
}

async fn ok<S: LocationStore>(store: &S, r: RegisterRequest, now: std::time::SystemTime) {
    let res = register(store, r, now).await;
    assert!(res.is_ok(), "register failed: {res:?}");
}

/// Contact URIs of the live bindings, in stored order.
async fn uris<S: LocationStore>(store: &S, aor: &Aor, now: std::time::SystemTime) -> Vec<String> {
    store
        .lookup(aor, now)
        .await
        .unwrap_or_else(|e| panic!("lookup: {e}"))
        .iter()
        .map(|b| String::from_utf8_lossy(&b.contact).into_owned())
        .collect()
}

async fn stats<S: LocationStore>(store: &S) -> StoreStats {
    store.stats().await.unwrap_or_else(|e| panic!("stats: {e}"))
}

fn refused(e: RegisterError) -> Option<StoreError> {
    Some(StoreError::Register(e))
}

/// A copy of an applied REGISTER (same Call-ID, CSeq and Contacts; its transaction died with
/// another node) gets the stored bindings back, unchanged and unwritten; another REGISTER with
/// that CSeq is still refused (`sipmesh_protocol::registrar::is_applied_repeat`).
pub(crate) async fn applied_repeat_succeeds_without_a_write<S: LocationStore>(store: &S) {
    let erin = aor("erin");
    let first = req(
        &erin,
        "c1",
        3,
        vec![contact("sip:e@h1", None), contact("sip:e@h2", Some(600))],
    );
    let stored = register(store, first.clone(), t0())
        .await
        .unwrap_or_else(|e| panic!("first copy: {e}"));
    let mut copy = first.clone();
    copy.source = source(Some(9));
    let again = register(store, copy, t0() + Duration::from_secs(5)).await;
    assert_eq!(
        again.as_ref().map(|o| (&o.bindings, o.changed)),
        Ok((&stored.bindings, false)),
        "the copy 5 s later"
    );
    // The bindings still carry the first copy's expiry and source.
    assert_eq!(
        store.lookup(&erin, t0()).await.ok().as_ref(),
        Some(&stored.bindings)
    );
    let other = req(&erin, "c1", 3, vec![contact("sip:e@h1", None)]);
    assert_eq!(
        register(store, other, t0() + Duration::from_secs(5))
            .await
            .err(),
        refused(RegisterError::CSeqOutOfOrder)
    );
    // After the retransmission window it is a stale request like any other.
    assert_eq!(
        register(store, first, t0() + Duration::from_secs(60))
            .await
            .err(),
        refused(RegisterError::CSeqOutOfOrder)
    );
}

/// Add, lookup, and a refused REGISTER that changes nothing.
pub(crate) async fn register_lookup_and_error_leaves_state_alone<S: LocationStore>(store: &S) {
    let alice = aor("alice");
    let r = req(
        &alice,
        "c1",
        2,
        vec![contact("sip:a@h1", None), contact("sip:a@h2", None)],
    );
    let out = register(store, r, t0()).await;
    assert_eq!(
        out.as_ref().map(|o| (o.bindings.len(), o.changed)),
        Ok((2, true))
    );
    assert_eq!(uris(store, &alice, t0()).await, ["sip:a@h1", "sip:a@h2"]);
    let bad = req(&alice, "c1", 2, vec![contact("sip:a@h3", None)]);
    assert_eq!(
        register(store, bad, t0()).await.err(),
        refused(RegisterError::CSeqOutOfOrder)
    );
    assert_eq!(uris(store, &alice, t0()).await, ["sip:a@h1", "sip:a@h2"]);
    assert_eq!(
        stats(store).await,
        StoreStats {
            aors: 1,
            bindings: 2
        }
    );
    assert!(uris(store, &aor("bob"), t0()).await.is_empty());
}

/// `expires=0` removes; the last removal removes the AOR.
pub(crate) async fn removing_last_binding_removes_aor<S: LocationStore>(store: &S) {
    let alice = aor("alice");
    ok(
        store,
        req(&alice, "c1", 1, vec![contact("sip:a@h", None)]),
        t0(),
    )
    .await;
    let r = req(&alice, "c1", 2, vec![contact("sip:a@h", Some(0))]);
    let out = register(store, r, t0()).await;
    assert_eq!(out.map(|o| (o.bindings.len(), o.changed)), Ok((0, true)));
    assert_eq!(stats(store).await, StoreStats::default());
    // Removing what is not there changes nothing.
    let r = req(&alice, "c1", 3, vec![contact("sip:a@h", Some(0))]);
    assert_eq!(register(store, r, t0()).await.map(|o| o.changed), Ok(false));
}

/// Lookups hide expired bindings; the sweep removes exactly the due ones.
pub(crate) async fn expiry_sweep<S: LocationStore>(store: &S) {
    let (alice, bob) = (aor("alice"), aor("bob"));
    let r = req(
        &alice,
        "c1",
        1,
        vec![
            contact("sip:a@short", Some(60)),
            contact("sip:a@long", Some(600)),
        ],
    );
    ok(store, r, t0()).await;
    ok(
        store,
        req(&bob, "c2", 1, vec![contact("sip:b@h", Some(120))]),
        t0(),
    )
    .await;
    assert_eq!(
        stats(store).await,
        StoreStats {
            aors: 2,
            bindings: 3
        }
    );
    let at = |s| t0() + Duration::from_secs(s);
    assert_eq!(uris(store, &alice, at(60)).await, ["sip:a@long"]);
    assert_eq!(store.sweep_expired(at(59)).await, Ok(0));
    assert_eq!(store.sweep_expired(at(60)).await, Ok(1));
    assert_eq!(
        stats(store).await,
        StoreStats {
            aors: 2,
            bindings: 2
        }
    );
    assert_eq!(store.sweep_expired(at(600)).await, Ok(2));
    assert_eq!(stats(store).await, StoreStats::default());
    assert_eq!(store.sweep_expired(at(6000)).await, Ok(0));
}

/// A refresh moves the AOR's place in the expiry index.
pub(crate) async fn refresh_moves_expiry_index<S: LocationStore>(store: &S) {
    let alice = aor("alice");
    ok(
        store,
        req(&alice, "c1", 1, vec![contact("sip:a@h", Some(60))]),
        t0(),
    )
    .await;
    let later = t0() + Duration::from_secs(50);
    ok(
        store,
        req(&alice, "c1", 2, vec![contact("sip:a@h", Some(60))]),
        later,
    )
    .await;
    assert_eq!(
        store.sweep_expired(t0() + Duration::from_secs(100)).await,
        Ok(0)
    );
    assert_eq!(
        store.sweep_expired(t0() + Duration::from_secs(110)).await,
        Ok(1)
    );
}

/// A dead connection takes exactly its flow bindings (`Binding::is_flow`) along, and only once.
pub(crate) async fn remove_connection_drops_only_its_bindings<S: LocationStore>(store: &S) {
    let (alice, bob) = (aor("alice"), aor("bob"));
    let mut r = req(
        &alice,
        "c1",
        1,
        vec![contact("sip:a@a.invalid;transport=tcp", None)],
    );
    r.source = source(Some(42));
    ok(store, r, t0()).await;
    ok(
        store,
        req(&alice, "c2", 1, vec![contact("sip:a@udp", None)]),
        t0(),
    )
    .await;
    let mut r = req(
        &bob,
        "c3",
        1,
        vec![contact("sip:b@b.invalid;transport=tcp", None)],
    );
    r.source = source(Some(42));
    ok(store, r, t0()).await;
    // Carol moved from connection 42 to 43: 42 must no longer take her binding.
    let carol = aor("carol");
    let mut r = req(
        &carol,
        "c4",
        1,
        vec![contact("sip:c@c.invalid;transport=tcp", None)],
    );
    r.source = source(Some(42));
    ok(store, r, t0()).await;
    let mut r = req(
        &carol,
        "c4",
        2,
        vec![contact("sip:c@c.invalid;transport=tcp", None)],
    );
    r.source = source(Some(43));
    ok(store, r, t0()).await;

    let dave = aor("dave");
    let mut r = req(
        &dave,
        "c5",
        1,
        vec![contact("sip:d@192.0.2.9;transport=tcp", None)],
    );
    r.source = source(Some(42));
    ok(store, r, t0()).await;

    assert_eq!(store.remove_connection(ConnectionId(42)).await, Ok(2));
    assert_eq!(
        uris(store, &dave, t0()).await,
        ["sip:d@192.0.2.9;transport=tcp"],
        "a dialable Contact is not a flow: it outlives the connection"
    );
    assert_eq!(uris(store, &alice, t0()).await, ["sip:a@udp"]);
    assert_eq!(
        uris(store, &carol, t0()).await,
        ["sip:c@c.invalid;transport=tcp"]
    );
    assert_eq!(
        stats(store).await,
        StoreStats {
            aors: 3,
            bindings: 3
        }
    );
    assert_eq!(store.remove_connection(ConnectionId(42)).await, Ok(0));
    assert_eq!(store.remove_connection(ConnectionId(43)).await, Ok(1));
    assert_eq!(
        stats(store).await,
        StoreStats {
            aors: 2,
            bindings: 2
        }
    );
}

/// `Contact: *` rules (§10.3 step 6).
pub(crate) async fn wildcard<S: LocationStore>(store: &S) {
    let alice = aor("alice");
    ok(
        store,
        req(
            &alice,
            "c1",
            5,
            vec![contact("sip:a@h1", None), contact("sip:a@h2", None)],
        ),
        t0(),
    )
    .await;
    let mut star = req(&alice, "c1", 6, vec![]);
    star.contacts = RequestContacts::Star;
    assert_eq!(
        register(store, star.clone(), t0()).await.err(),
        refused(RegisterError::StarWithNonZeroExpires)
    );
    let mut mixed = req(
        &alice,
        "c1",
        6,
        vec![contact("*", None), contact("sip:a@h3", None)],
    );
    mixed.expires_header = Some(0);
    assert_eq!(
        register(store, mixed, t0()).await.err(),
        refused(RegisterError::StarWithOtherContacts)
    );
    star.expires_header = Some(0);
    star.cseq = 5;
    assert_eq!(
        register(store, star.clone(), t0()).await.err(),
        refused(RegisterError::CSeqOutOfOrder)
    );
    assert_eq!(stats(store).await.bindings, 2);
    // A `*` given as a one-element list is the same as Star; another Call-ID is not ordered.
    let mut star_list = req(&alice, "other", 1, vec![contact(" * ", None)]);
    star_list.expires_header = Some(0);
    let out = register(store, star_list, t0()).await;
    assert_eq!(out.map(|o| (o.bindings.len(), o.changed)), Ok((0, true)));
    assert_eq!(stats(store).await, StoreStats::default());
}

/// Min/max/default expiry, the `Expires` header, and per-contact `expires`.
pub(crate) async fn expiry_bounds<S: LocationStore>(store: &S) {
    let alice = aor("alice");
    let policy = RegistrarPolicy::default();
    let r = req(
        &alice,
        "c1",
        1,
        vec![
            contact("sip:a@ok", Some(120)),
            contact("sip:a@brief", Some(30)),
        ],
    );
    assert_eq!(
        register(store, r, t0()).await.err(),
        refused(RegisterError::IntervalTooBrief {
            min_expires: policy.min_expires
        })
    );
    assert_eq!(stats(store).await, StoreStats::default());
    let mut r = req(
        &alice,
        "c1",
        2,
        vec![
            contact("sip:a@max", Some(99_999)),
            contact("sip:a@hdr", None),
        ],
    );
    r.expires_header = Some(300);
    ok(store, r, t0()).await;
    ok(
        store,
        req(&alice, "c1", 3, vec![contact("sip:a@dflt", None)]),
        t0(),
    )
    .await;
    let bindings = store.lookup(&alice, t0()).await.unwrap_or_default();
    let lifetimes: Vec<(String, u64)> = bindings
        .iter()
        .map(|b| {
            let left = b.expires_at.duration_since(t0()).map_or(0, |d| d.as_secs());
            (String::from_utf8_lossy(&b.contact).into_owned(), left)
        })
        .collect();
    assert_eq!(
        lifetimes,
        [
            ("sip:a@max".to_owned(), u64::from(policy.max_expires)),
            ("sip:a@hdr".to_owned(), 300),
            ("sip:a@dflt".to_owned(), u64::from(policy.default_expires)),
        ]
    );
    let bad_q = ContactInput {
        q: Some(1001),
        ..contact("sip:a@q", None)
    };
    assert_eq!(
        register(store, req(&alice, "c1", 4, vec![bad_q]), t0())
            .await
            .err(),
        refused(RegisterError::InvalidQValue)
    );
}

/// RFC 5626: instance + reg-id identify a flow whatever the URI; URI equivalence otherwise.
pub(crate) async fn binding_identity<S: LocationStore>(store: &S) {
    let alice = aor("alice");
    let flow = |uri: &str, reg_id| ContactInput {
        instance: Some(Bytes::from_static(
            b"\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"",
        )),
        reg_id: Some(reg_id),
        ..contact(uri, None)
    };
    ok(
        store,
        req(
            &alice,
            "c1",
            1,
            vec![flow("sip:a@10.0.0.1;ob", 1), flow("sip:a@10.0.0.1;ob", 2)],
        ),
        t0(),
    )
    .await;
    ok(
        store,
        req(&alice, "c2", 1, vec![flow("sip:a@10.0.0.9;ob", 1)]),
        t0(),
    )
    .await;
    assert_eq!(
        uris(store, &alice, t0()).await,
        ["sip:a@10.0.0.9;ob", "sip:a@10.0.0.1;ob"]
    );
    // A plain contact with the same URI as a flow is another binding.
    ok(
        store,
        req(&alice, "c3", 1, vec![contact("sip:a@10.0.0.9;ob", None)]),
        t0(),
    )
    .await;
    assert_eq!(stats(store).await.bindings, 3);
    // §19.1.4: case, escapes and a one-sided `transport` name the same binding...
    ok(
        store,
        req(&alice, "c4", 1, vec![contact("SIP:%61@10.0.0.9", None)]),
        t0(),
    )
    .await;
    assert_eq!(stats(store).await.bindings, 3);
    assert_eq!(
        uris(store, &alice, t0()).await.last().map(String::as_str),
        Some("SIP:%61@10.0.0.9")
    );
    // ...while a port or a `maddr` on one side do not.
    ok(
        store,
        req(
            &alice,
            "c5",
            1,
            vec![
                contact("sip:a@10.0.0.9:5060", None),
                contact("sip:a@10.0.0.9;maddr=x", None),
            ],
        ),
        t0(),
    )
    .await;
    assert_eq!(stats(store).await.bindings, 5);
    // The same binding named twice in one request: the last one wins.
    let r = req(
        &alice,
        "c6",
        1,
        vec![
            contact("sip:a@10.0.0.9:5060", Some(0)),
            contact("sip:a@10.0.0.9:5060", Some(120)),
        ],
    );
    ok(store, r, t0()).await;
    assert_eq!(stats(store).await.bindings, 5);
}

/// The contact limit refuses growth only; refreshes and removals still work at the limit.
pub(crate) async fn contact_limit<S: LocationStore>(store: &S) {
    let alice = aor("alice");
    let policy = RegistrarPolicy {
        max_contacts: 3,
        ..Default::default()
    };
    let three: Vec<_> = (0..3)
        .map(|i| contact(format!("sip:a@h{i}"), None))
        .collect();
    assert!(
        store
            .register(req(&alice, "c", 1, three.clone()), &policy, t0())
            .await
            .is_ok()
    );
    assert_eq!(
        store
            .register(
                req(&alice, "c", 2, vec![contact("sip:a@h9", None)]),
                &policy,
                t0()
            )
            .await
            .err(),
        refused(RegisterError::TooManyContacts { max: 3 })
    );
    assert!(
        store
            .register(req(&alice, "c", 3, three), &policy, t0())
            .await
            .is_ok()
    );
    let swap = vec![contact("sip:a@h0", Some(0)), contact("sip:a@h9", None)];
    assert!(
        store
            .register(req(&alice, "c", 4, swap), &policy, t0())
            .await
            .is_ok()
    );
    assert_eq!(
        uris(store, &alice, t0()).await,
        ["sip:a@h1", "sip:a@h2", "sip:a@h9"]
    );
}

/// A query returns the live set unchanged; Path is echoed only with `Supported: path`.
pub(crate) async fn query_and_path<S: LocationStore>(store: &S) {
    let alice = aor("alice");
    let mut r = req(&alice, "c1", 1, vec![contact("sip:a@h", None)]);
    r.path = vec![Bytes::from_static(b"<sip:edge.example.com;lr>")];
    r.supports_path = true;
    let out = register(store, r.clone(), t0()).await;
    assert_eq!(out.map(|o| o.response_path), Ok(r.path.clone()));
    let mut q = req(&alice, "c1", 2, vec![]);
    q.contacts = RequestContacts::None;
    let out = register(store, q.clone(), t0())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.changed && out.response_path.is_empty());
    assert_eq!(out.bindings.len(), 1);
    assert_eq!(out.bindings.first().map(|b| b.path.clone()), Some(r.path));
    // A query after expiry prunes (changed) and reports nothing.
    let late = t0() + Duration::from_secs(3600);
    let out = register(store, q, late)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.changed && out.bindings.is_empty());
    assert_eq!(stats(store).await, StoreStats::default());
}

/// Random REGISTER sequences applied to `store` and to a fresh memory store give identical
/// outcomes (bindings, errors, `changed`), step by step.
pub(crate) async fn same_outcomes_as_memory<S: LocationStore>(store: &S, seed: u64, steps: usize) {
    let reference = MemoryLocationStore::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let policy = RegistrarPolicy {
        max_contacts: 4,
        ..Default::default()
    };
    let aors = [aor("x"), aor("y")];
    let uris = [
        "sip:u@h1",
        "sip:U@H1;transport=tcp",
        "sip:u@h2",
        "sip:u@h2:5060",
        "sip:u@h3;user=phone",
        "sip:u@h4",
    ];
    let mut cseqs = [0_u32; 3];
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..steps {
        let now = t0() + Duration::from_secs(rng.gen_range(0..20) * 30 + step as u64);
        let call = rng.gen_range(0..3_usize);
        let bump: u32 = rng.gen_range(0..3);
        if let Some(c) = cseqs.get_mut(call) {
            *c = c.saturating_add(bump);
        }
        let mut r = req(
            &aors[rng.gen_range(0..aors.len())],
            &format!("call-{call}"),
            cseqs.get(call).copied().unwrap_or(1),
            Vec::new(),
        );
        r.contacts = match rng.gen_range(0..10) {
            0 => RequestContacts::None,
            1 => RequestContacts::Star,
            _ => RequestContacts::List(
                (0..rng.gen_range(1..4))
                    .map(|_| {
                        let flow = rng.gen_bool(0.2);
                        ContactInput {
                            uri: Bytes::from(uris[rng.gen_range(0..uris.len())]),
                            q: rng.gen_bool(0.3).then(|| rng.gen_range(0..=1000)),
                            expires: [None, Some(0), Some(30), Some(60), Some(600), Some(7200)]
                                [rng.gen_range(0..6)],
                            instance: flow.then(|| Bytes::from_static(b"\"<urn:uuid:1>\"")),
                            reg_id: flow.then(|| rng.gen_range(1..3)),
                        }
                    })
                    .collect(),
            ),
        };
        r.expires_header = [None, Some(0), Some(120)][rng.gen_range(0..3)];
        if rng.gen_bool(0.3) {
            r.source = source(Some(rng.gen_range(1..3)));
        }
        let expected = reference.register(r.clone(), &policy, now).await;
        let got = store.register(r.clone(), &policy, now).await;
        assert_eq!(got, expected, "step {step}: {r:?}");
        if got.is_ok() {
            accepted += 1;
        } else {
            refused += 1;
        }
        if rng.gen_bool(0.1) {
            let c = ConnectionId(rng.gen_range(1..3));
            assert_eq!(
                store.remove_connection(c).await,
                reference.remove_connection(c).await
            );
        }
        if rng.gen_bool(0.1) {
            assert_eq!(
                store.sweep_expired(now).await,
                reference.sweep_expired(now).await
            );
        }
        for a in &aors {
            assert_eq!(
                store.lookup(a, now).await,
                reference.lookup(a, now).await,
                "step {step}"
            );
        }
    }
    assert_eq!(stats(store).await, stats(&reference).await);
    // The generator must exercise both paths, not just one.
    assert!(
        accepted > steps / 4 && refused > steps / 20,
        "{accepted} accepted, {refused} refused"
    );
}

/// An AOR whose last bindings were flows that closed is 480 material ([`LocationStore::flows_closed`])
/// until it registers again or those bindings would have expired; an AOR that kept a binding,
/// whose binding was not a flow, or that never registered is not.
pub(crate) async fn flows_closed_after_remove_connection<S: LocationStore>(store: &S) {
    let (alice, bob, carol, dave, erin) = (
        aor("alice"),
        aor("bob"),
        aor("carol"),
        aor("dave"),
        aor("erin"),
    );
    let over = |mut r: RegisterRequest, connection| {
        r.source = source(Some(connection));
        r
    };
    // bob: two flows over connection 42, the later one expiring at t0 + 3600 s.
    ok(
        store,
        over(
            req(
                &bob,
                "b1",
                1,
                vec![
                    contact("sip:b1@b.invalid;transport=tcp", Some(600)),
                    contact("sip:b2@b.invalid;transport=tcp", None),
                ],
            ),
            42,
        ),
        t0(),
    )
    .await;
    // alice: a flow over 42 and a UDP binding that stays.
    ok(
        store,
        over(
            req(
                &alice,
                "a1",
                1,
                vec![contact("sip:a@a.invalid;transport=tcp", None)],
            ),
            42,
        ),
        t0(),
    )
    .await;
    ok(
        store,
        req(&alice, "a2", 1, vec![contact("sip:a@udp", None)]),
        t0(),
    )
    .await;
    // carol: over 42 with a dialable Contact: not a flow, it survives.
    ok(
        store,
        over(
            req(
                &carol,
                "c1",
                1,
                vec![contact("sip:c@192.0.2.9;transport=tcp", None)],
            ),
            42,
        ),
        t0(),
    )
    .await;
    // erin: a flow over 44 and a UDP binding that expires on its own after 60 s.
    ok(
        store,
        over(
            req(
                &erin,
                "e1",
                1,
                vec![contact("sip:e@e.invalid;transport=tcp", None)],
            ),
            44,
        ),
        t0(),
    )
    .await;
    ok(
        store,
        req(&erin, "e2", 1, vec![contact("sip:e@udp", Some(60))]),
        t0(),
    )
    .await;

    assert_eq!(store.remove_connection(ConnectionId(42)).await, Ok(3));
    assert_eq!(store.remove_connection(ConnectionId(44)).await, Ok(1));
    let closed = |aor: &Aor, secs: u64| {
        let aor = aor.clone();
        async move {
            store
                .flows_closed(&aor, t0() + Duration::from_secs(secs))
                .await
        }
    };
    assert_eq!(closed(&bob, 0).await, Ok(true));
    assert_eq!(
        closed(&bob, 3599).await,
        Ok(true),
        "until the latest removed binding would have expired"
    );
    assert_eq!(closed(&bob, 3600).await, Ok(false));
    assert_eq!(closed(&alice, 0).await, Ok(false), "alice kept a binding");
    assert_eq!(closed(&carol, 0).await, Ok(false), "carol's was no flow");
    assert_eq!(closed(&dave, 0).await, Ok(false), "dave never registered");
    assert_eq!(
        closed(&erin, 120).await,
        Ok(false),
        "erin's last binding expired in place: 404 material, not 480"
    );
    // A sweep does not forget bob early.
    let _ = store.sweep_expired(t0() + Duration::from_secs(10)).await;
    assert_eq!(closed(&bob, 10).await, Ok(true));

    // bob registers again (new connection): no longer closed; that flow closing marks him
    // again; a plain UDP registration clears the mark.
    ok(
        store,
        over(
            req(
                &bob,
                "b2",
                1,
                vec![contact("sip:b@b.invalid;transport=tcp", None)],
            ),
            43,
        ),
        t0() + Duration::from_secs(20),
    )
    .await;
    assert_eq!(closed(&bob, 20).await, Ok(false));
    assert_eq!(store.remove_connection(ConnectionId(43)).await, Ok(1));
    assert_eq!(
        closed(&bob, 3610).await,
        Ok(true),
        "until t0 + 20 s + 3600 s"
    );
    assert_eq!(closed(&bob, 3620).await, Ok(false));
    ok(
        store,
        req(&bob, "b3", 1, vec![contact("sip:b@udp", None)]),
        t0() + Duration::from_secs(30),
    )
    .await;
    assert_eq!(closed(&bob, 30).await, Ok(false));
}
