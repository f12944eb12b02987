//! The Redis location store against a real `redis-server` started by the test (Debian package;
//! a missing binary fails the test). Every registrar rule runs through both the memory store
//! and the Redis store with the same test body; then concurrency, sweeping, the connection
//! index, the Lua URI-equivalence port, memory per binding, and Redis outages.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sipmesh_actors::location::{
    LocationStore, MemoryLocationStore, RedisLocationStore, RedisStoreConfig, RedisStoreError,
    StoreError, UnavailableReason,
};
use sipmesh_protocol::registrar::{RegisterError, RegistrarPolicy, contact_uris_equivalent};

use sipmesh_test_support::RedisServer;
use support::location_cases as cases;
use support::requests::{aor, contact, req, t0};

/// Store settings for the functional tests: a generous timeout, because the test machine is
/// shared and a timed-out REGISTER may still have been applied (which would make "exactly the
/// acknowledged bindings" ambiguous). The outage test uses the default 500 ms.
fn patient(server: &RedisServer) -> RedisStoreConfig {
    RedisStoreConfig {
        timeout: Duration::from_secs(10),
        ..RedisStoreConfig::new(server.url())
    }
}

/// A server and a store connected to it.
async fn redis_store() -> (RedisServer, RedisLocationStore) {
    let server = RedisServer::start();
    let store = RedisLocationStore::connect(&patient(&server))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    (server, store)
}

/// One test per case and store: `<case>::memory` and `<case>::redis`.
macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;

            #[tokio::test]
            async fn memory() {
                cases::$case(&MemoryLocationStore::new()).await;
            }

            #[tokio::test]
            async fn redis() {
                let (_server, store) = redis_store().await;
                cases::$case(&store).await;
            }
        }
    )*};
}

both_stores!(
    register_lookup_and_error_leaves_state_alone,
    removing_last_binding_removes_aor,
    expiry_sweep,
    refresh_moves_expiry_index,
    remove_connection_drops_only_its_bindings,
    wildcard,
    expiry_bounds,
    binding_identity,
    contact_limit,
    query_and_path,
    flows_closed_after_remove_connection,
    applied_repeat_succeeds_without_a_write,
);

#[tokio::test]
async fn random_sequences_match_the_memory_store() {
    let (_server, store) = redis_store().await;
    for seed in 0..4 {
        let config = RedisStoreConfig {
            key_prefix: format!("seed{seed}:"),
            ..patient(&_server)
        };
        let store = RedisLocationStore::new(&config).unwrap_or_else(|e| panic!("{e}"));
        cases::same_outcomes_as_memory(&store, seed, 300).await;
    }
    drop(store);
}

#[tokio::test]
async fn lua_uri_equivalence_matches_rust() {
    let (_server, store) = redis_store().await;
    let uris: &[&[u8]] = &[
        b"sip:%61lice@atlanta.com;transport=TCP",
        b"sip:alice@AtLanTa.CoM;Transport=tcp",
        b"SIP:ALICE@AtLanTa.CoM;Transport=udp",
        b"sip:carol@chicago.com",
        b"sip:carol@chicago.com;newparam=5",
        b"sip:carol@chicago.com;security=on",
        b"sip:carol@chicago.com?Subject=next%20meeting",
        b"sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        b"sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        b"sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        b"sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        b"sip:bob@biloxi.com",
        b"sip:bob@biloxi.com:5060",
        b"sip:bob@biloxi.com;transport=udp;user=phone",
        b"sip:bob@h;maddr=10.0.0.1",
        b"sip:bob@h",
        b"sips:bob@h",
        b"sip:bob:pw1@h",
        b"sip:bob:pw2@h",
        b"sip:a@[2001:DB8::1]:5060",
        b"sip:a@[2001:db8::1]:5060",
        b"sip:a@[2001:db8::1]",
        b"TEL:+1234",
        b"tel:+1234",
        b"sip:al%4@h",
        b"  sip:al%4@h ",
        b"sip:a@h:99999",
        b"sip:@h",
        b"sip:h;lr;ob",
        b"sip:h;LR=;ob",
        b"sip:a%3bb@h",
        b"sip:a%3Bb@h",
        b"sip:a@h?X=1&y=2",
        b"sip:a@h?y=2&x=1",
        b"sip:a@h?x=1&x=1",
        b"sip:a@h?x=1",
        b"sip:a@h?x=1&&",
        b"garbage",
    ];
    for a in uris {
        for b in uris {
            let lua = store
                .lua_uri_equivalent(a, b)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                lua,
                contact_uris_equivalent(a, b),
                "{} vs {}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
    }
}

/// 8 tasks × 50 REGISTERs (adds, and removals of every fifth) for one AOR: the final set is
/// exactly the acknowledged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registers_end_with_acknowledged_union() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 50;
    let (_server, store) = redis_store().await;
    let store = Arc::new(store);
    let alice = aor("alice");
    let policy = RegistrarPolicy {
        max_contacts: TASKS * PER_TASK,
        ..Default::default()
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, alice) = (Arc::clone(&store), alice.clone());
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let call_id = format!("call-{t}");
                let mut cseq = 0;
                for i in 0..PER_TASK {
                    let uri = format!("sip:t{t}-{i}@10.0.0.{t}");
                    cseq += 1;
                    let r = req(&alice, &call_id, cseq, vec![contact(uri.clone(), None)]);
                    if store.register(r, &policy, t0()).await.is_ok() {
                        kept.push(uri.clone());
                    }
                    if i % 5 == 0 {
                        cseq += 1;
                        let r = req(&alice, &call_id, cseq, vec![contact(uri.clone(), Some(0))]);
                        if store.register(r, &policy, t0()).await.is_ok() {
                            kept.retain(|u| u != &uri);
                        }
                    }
                }
                kept
            })
        })
        .collect();
    let mut expected = Vec::new();
    for t in tasks {
        expected.extend(t.await.unwrap_or_default());
    }
    expected.sort();
    assert_eq!(expected.len(), TASKS * (PER_TASK - PER_TASK / 5));
    let mut stored: Vec<String> = store
        .lookup(&alice, t0())
        .await
        .unwrap_or_default()
        .iter()
        .map(|b| String::from_utf8_lossy(&b.contact).into_owned())
        .collect();
    stored.sort();
    assert_eq!(stored, expected);
    assert_eq!(store.stats().await.map(|s| s.bindings), Ok(expected.len()));
}

/// Racing REGISTERs past the contact limit: exactly `max_contacts` are acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registers_respect_contact_limit() {
    let (_server, store) = redis_store().await;
    let store = Arc::new(store);
    let alice = aor("alice");
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (store, alice) = (Arc::clone(&store), alice.clone());
            tokio::spawn(async move {
                let mut acked = 0;
                for i in 0..10 {
                    let r = req(
                        &alice,
                        &format!("c{t}-{i}"),
                        1,
                        vec![contact(format!("sip:t{t}-{i}@h"), None)],
                    );
                    match store.register(r, &RegistrarPolicy::default(), t0()).await {
                        Ok(_) => acked += 1,
                        Err(e) => assert_eq!(
                            e,
                            StoreError::Register(RegisterError::TooManyContacts { max: 16 })
                        ),
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap_or_default();
    }
    assert_eq!(acked, 16);
    assert_eq!(store.lookup(&alice, t0()).await.map(|b| b.len()), Ok(16));
}

/// The closed-flows marker is bounded: it expires in Redis after `flows_closed_ttl` even when
/// the removed bindings would have lived longer, and never outlives that bound.
#[tokio::test]
async fn closed_flows_marker_expires() {
    let server = RedisServer::start();
    let config = RedisStoreConfig {
        key_prefix: "ttl:".to_owned(),
        flows_closed_ttl: Duration::from_millis(300),
        ..patient(&server)
    };
    let store = RedisLocationStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bob = aor("bob");
    let mut r = req(
        &bob,
        "c",
        1,
        vec![contact("sip:b@b.invalid;transport=tcp", None)],
    );
    r.source = support::requests::source(Some(7));
    assert!(
        store
            .register(r, &RegistrarPolicy::default(), t0())
            .await
            .is_ok()
    );
    assert_eq!(
        store
            .remove_connection(sipmesh_protocol::peer::ConnectionId(7))
            .await,
        Ok(1)
    );
    let started = Instant::now();
    assert_eq!(store.flows_closed(&bob, t0()).await, Ok(true));
    // Redis reports the bound it set.
    let client = redis::Client::open(server.url()).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pttl: i64 = redis::cmd("PTTL")
        .arg("ttl:closed:sip:bob@example.com")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!((1..=300).contains(&pttl), "PTTL {pttl}");
    let deadline = started + Duration::from_secs(5);
    while store.flows_closed(&bob, t0()).await == Ok(true) {
        assert!(Instant::now() < deadline, "the marker did not expire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// Sweeping many AORs takes several script batches and leaves the indexes empty.
#[tokio::test]
async fn sweep_in_batches() {
    let server = RedisServer::start();
    let config = RedisStoreConfig {
        sweep_batch: 7,
        ..patient(&server)
    };
    let store = RedisLocationStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for n in 0..50 {
        let r = req(
            &aor(&format!("u{n}")),
            "c",
            1,
            vec![contact(format!("sip:u{n}@h"), Some(60 + n))],
        );
        assert!(
            store
                .register(r, &RegistrarPolicy::default(), t0())
                .await
                .is_ok()
        );
    }
    let at = |s| t0() + Duration::from_secs(s);
    assert_eq!(store.sweep_expired(at(79)).await, Ok(20));
    assert_eq!(store.sweep_expired(at(1000)).await, Ok(30));
    assert_eq!(
        store.stats().await.map(|s| (s.aors, s.bindings)),
        Ok((0, 0))
    );
}

/// The expiry index holds a lower bound of each AOR's earliest expiry (docs/REDIS.md, "Expiry
/// index"): a refresh leaves the score alone, a shorter expiry lowers it, and a sweep that visits
/// the AOR early removes nothing and sets the exact score, so it is never visited again early.
#[tokio::test]
async fn expiry_index_is_a_lower_bound_that_the_sweep_makes_exact() {
    let (server, store) = redis_store().await;
    let client = redis::Client::open(server.url()).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let alice = aor("alice");
    let ms = |s: u64| 1_700_000_000_000 + s * 1000;
    let at = |s| t0() + Duration::from_secs(s);
    let mut score = async || -> Option<u64> {
        redis::cmd("ZSCORE")
            .arg("sipmesh:loc:exp")
            .arg("sip:alice@example.com")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let policy = RegistrarPolicy::default();
    let register = |cseq, uri: &str, expires, now| {
        store.register(
            req(&alice, "c", cseq, vec![contact(uri, Some(expires))]),
            &policy,
            now,
        )
    };
    // First registration: the exact earliest expiry.
    assert!(register(1, "sip:a@h", 100, t0()).await.is_ok());
    assert_eq!(score().await, Some(ms(100)));
    // A refresh 50 s later moves the expiry to 150 s: the score stays at 100 s.
    assert!(register(2, "sip:a@h", 100, at(50)).await.is_ok());
    assert_eq!(score().await, Some(ms(100)));
    // A second Contact expiring before that lowers the score.
    assert!(register(3, "sip:b@h", 60, at(20)).await.is_ok());
    assert_eq!(score().await, Some(ms(80)));
    // Removing it leaves the (now lower-bound) score.
    assert!(register(4, "sip:b@h", 0, at(21)).await.is_ok());
    assert_eq!(score().await, Some(ms(80)));
    // A sweep at 90 s visits the AOR, removes nothing, and sets the exact score (150 s).
    assert_eq!(store.sweep_expired(at(90)).await, Ok(0));
    assert_eq!(score().await, Some(ms(150)));
    assert_eq!(
        store.stats().await.map(|s| (s.aors, s.bindings)),
        Ok((1, 1))
    );
    assert_eq!(store.lookup(&alice, at(90)).await.map(|b| b.len()), Ok(1));
    // At 150 s the binding is swept and the AOR leaves the index.
    assert_eq!(store.sweep_expired(at(150)).await, Ok(1));
    assert_eq!(score().await, None);
    assert_eq!(
        store.stats().await.map(|s| (s.aors, s.bindings)),
        Ok((0, 0))
    );
}

/// Bytes Redis spends per binding (MEMORY USAGE of the AOR key), printed for the report.
#[tokio::test]
async fn memory_per_binding() {
    let (server, store) = redis_store().await;
    let client = redis::Client::open(server.url()).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut sizes = Vec::new();
    for n in [1_usize, 4] {
        let alice = aor(&format!("user{n}"));
        let contacts = (0..n)
            .map(|i| contact(format!("sip:user{n}@192.0.2.{i}:5060;transport=udp"), None))
            .collect();
        let r = req(
            &alice,
            "f81d4fae-7dec-11d0-a765-00a0c91e6bf6@192.0.2.1",
            1,
            contacts,
        );
        assert!(
            store
                .register(r, &RegistrarPolicy::default(), t0())
                .await
                .is_ok()
        );
        let used: usize = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(store.aor_key(&alice))
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sizes.push(used);
        println!("MEMORY USAGE of an AOR with {n} binding(s): {used} bytes");
    }
    if let [one, four] = sizes[..] {
        println!("marginal bytes per extra binding: {}", (four - one) / 3);
        assert!(one < 512, "one binding takes {one} bytes");
    }
    // Whole-server cost per registration (value, key, expiry index, counter share), one
    // binding per AOR, measured over many AORs.
    let used = |info: String| -> i64 {
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let info = || redis::cmd("INFO").arg("memory").clone();
    let before: String = info().query_async(&mut conn).await.unwrap_or_default();
    const AORS: usize = 5000;
    for n in 0..AORS {
        let r = req(
            &aor(&format!("bulk{n:06}")),
            &format!("{n:08x}-7dec-11d0-a765-00a0c91e6bf6@192.0.2.1"),
            1,
            vec![contact(
                format!("sip:bulk{n:06}@192.0.2.1:5060;transport=udp"),
                None,
            )],
        );
        assert!(
            store
                .register(r, &RegistrarPolicy::default(), t0())
                .await
                .is_ok()
        );
    }
    let after: String = info().query_async(&mut conn).await.unwrap_or_default();
    println!(
        "used_memory per registration over {AORS} AORs: {} bytes",
        (used(after) - used(before)) / AORS as i64
    );
}

#[tokio::test]
async fn malformed_cluster_and_sentinel_urls_are_refused_clearly() {
    for (url, what) in [
        ("redis+cluster://127.0.0.1:7000/3", "database 0"),
        ("redis://127.0.0.1:7000,127.0.0.1:7001", "redis+cluster://"),
        ("redis+sentinel://127.0.0.1:26379", "service name"),
    ] {
        let err = RedisLocationStore::new(&RedisStoreConfig::new(url)).err();
        assert!(
            matches!(&err, Some(RedisStoreError::Url(_))),
            "{url}: {err:?}"
        );
        assert!(
            err.map(|e| e.to_string())
                .unwrap_or_default()
                .contains(what)
        );
    }
    assert!(matches!(
        RedisLocationStore::new(&RedisStoreConfig::new("http://x")),
        Err(RedisStoreError::InvalidUrl(_))
    ));
    // Well-formed Sentinel and Cluster URLs are accepted (they connect lazily, in the
    // background).
    for url in [
        "redis+sentinel://127.0.0.1:1/mymaster",
        "redis+cluster://127.0.0.1:1,127.0.0.1:2/",
    ] {
        assert!(
            RedisLocationStore::new(&RedisStoreConfig::new(url)).is_ok(),
            "{url}"
        );
    }
}

/// Redis stops: every call fails with `Unavailable` within 1 s. Redis returns (empty, as
/// persistence is off): the same store object works again within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_gives_unavailable_fast_and_recovers() {
    let mut server = RedisServer::start();
    let store = RedisLocationStore::connect(&RedisStoreConfig::new(server.url()))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let alice = aor("alice");
    let policy = RegistrarPolicy::default();
    let r = |cseq| req(&alice, "c", cseq, vec![contact("sip:a@h", None)]);
    assert!(store.register(r(1), &policy, t0()).await.is_ok());

    server.stop();
    for cseq in 2..6 {
        let started = Instant::now();
        let res = store.register(r(cseq), &policy, t0()).await;
        let took = started.elapsed();
        assert!(
            matches!(res, Err(StoreError::Unavailable(_))),
            "register during outage: {res:?}"
        );
        assert!(took < Duration::from_secs(1), "took {took:?}");
        let started = Instant::now();
        assert!(matches!(
            store.lookup(&alice, t0()).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // Many concurrent callers during the outage: each is answered within the bound.
    let store = Arc::new(store);
    let burst: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let started = Instant::now();
                let res = store.lookup(&aor(&format!("b{i}")), t0()).await;
                (res, started.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for b in burst {
        let (res, took) = b.await.unwrap_or((Ok(Vec::new()), Duration::MAX));
        assert!(
            matches!(
                res,
                Err(StoreError::Unavailable(
                    UnavailableReason::Timeout | UnavailableReason::Disconnected
                ))
            ),
            "{res:?}"
        );
        slowest = slowest.max(took);
    }
    println!("slowest of 200 concurrent calls during the outage: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "slowest call took {slowest:?}"
    );

    // Stay down long enough to exhaust the manager's reconnect retries; callers keep failing
    // fast meanwhile.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        let started = Instant::now();
        assert!(store.lookup(&alice, t0()).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    server.restart();
    let back = Instant::now();
    let mut cseq = 10;
    loop {
        cseq += 1;
        if store.register(r(cseq), &policy, t0()).await.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "store did not recover within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("recovered {:?} after Redis restarted", back.elapsed());
    assert_eq!(store.lookup(&alice, t0()).await.map(|b| b.len()), Ok(1));
}

/// Redis hangs (alive but silent): calls time out as `Unavailable(Timeout)` within 1 s instead
/// of waiting; once it answers again the store works without being recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out_and_recovers() {
    let server = RedisServer::start();
    let store = RedisLocationStore::connect(&RedisStoreConfig::new(server.url()))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let alice = aor("alice");
    let policy = RegistrarPolicy::default();
    let r = |cseq| req(&alice, "c", cseq, vec![contact("sip:a@h", None)]);
    assert!(store.register(r(1), &policy, t0()).await.is_ok());

    server.freeze(true);
    for cseq in 2..4 {
        let started = Instant::now();
        let res = store.register(r(cseq), &policy, t0()).await;
        let took = started.elapsed();
        assert_eq!(
            res,
            Err(StoreError::Unavailable(UnavailableReason::Timeout))
        );
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
    // More callers than `max_in_flight` while Redis hangs: the extra ones wait for a permit
    // only within the same bound, so nothing queues past the timeout.
    let small = RedisStoreConfig {
        max_in_flight: 4,
        ..RedisStoreConfig::new(server.url())
    };
    let limited = Arc::new(RedisLocationStore::new(&small).unwrap_or_else(|e| panic!("{e}")));
    let started = Instant::now();
    let burst: Vec<_> = (0..50)
        .map(|i| {
            let limited = Arc::clone(&limited);
            tokio::spawn(async move { limited.lookup(&aor(&format!("b{i}")), t0()).await })
        })
        .collect();
    for b in burst {
        let res = b.await.unwrap_or(Ok(Vec::new()));
        assert_eq!(
            res,
            Err(StoreError::Unavailable(UnavailableReason::Timeout))
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    server.freeze(false);
    let back = Instant::now();
    loop {
        if store.lookup(&alice, t0()).await.map(|b| b.len()) == Ok(1) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "no recovery within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("answered again {:?} after Redis resumed", back.elapsed());
}
