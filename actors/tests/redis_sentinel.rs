//! The location store on a `redis+sentinel://` URL against a real master, replica and sentinel
//! (test-support `RedisSentinelSetup`): a SIGKILLed master is followed to the promoted replica
//! without a new store, calls fail fast (never hang) meanwhile, a binding written with `WAIT`
//! before the kill is still there, and scripts are reloaded on the new master. Also measures
//! what `WAIT 1` costs on REGISTER throughput (numbers printed, for docs/REDIS.md). The dialog
//! store's owner notices (issue 5) follow the master across a failover.

#[path = "support/requests.rs"]
mod requests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sipmesh_actors::dialog::redis::notice::Notice;
use sipmesh_actors::dialog::{DialogStore, RedisDialogStore, WriteRole};
use sipmesh_actors::fence::{Fence, FixedEpoch};
use sipmesh_actors::location::{LocationStore, RedisLocationStore, RedisStoreConfig};
use sipmesh_actors::redis_endpoint::ReplicaWait;
use sipmesh_protocol::dialog::{
    DialogConfig, DialogEvent, DialogId, DialogSnapshot, DialogState, Leg,
};
use sipmesh_protocol::registrar::RegistrarPolicy;
use sipmesh_test_support::{RedisSentinelSetup, free_port, test_ip};

use requests::{aor, contact, req, t0};

/// Shows the endpoint's log (reconnections, master moves) in the test output.
fn log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

/// Wait for the one replica, at most 200 ms.
const WAIT_ONE: ReplicaWait = ReplicaWait {
    replicas: 1,
    timeout: Duration::from_millis(200),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_store_follows_a_sentinel_failover() {
    log();
    let mut setup = RedisSentinelSetup::start("actors-sentinel-failover");
    let config = RedisStoreConfig {
        replica_wait: Some(WAIT_ONE),
        ..RedisStoreConfig::new(setup.url())
    };
    let store = RedisLocationStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let policy = RegistrarPolicy::default();
    let alice = aor("alice");
    let ok = store
        .register(
            req(&alice, "a", 1, vec![contact("sip:alice@10.0.0.1", None)]),
            &policy,
            t0(),
        )
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    // The dialog store shares the endpoint code: it works before and after too.
    let dialogs = RedisDialogStore::new(&config, "sipmesh:dlg:")
        .unwrap_or_else(|e| panic!("dialog store: {e}"));
    let missing = DialogId::new("nope", "a", "b");
    assert_eq!(dialogs.load(&missing).await.map(|d| d.is_none()), Ok(true));

    setup.kill_master();
    let killed = Instant::now();
    let carol = aor("carol");
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    let mut cseq = 0;
    let recovered = loop {
        cseq += 1;
        let asked = Instant::now();
        let r = store
            .register(
                req(&carol, "c", cseq, vec![contact("sip:carol@10.0.0.3", None)]),
                &policy,
                t0(),
            )
            .await;
        slowest = slowest.max(asked.elapsed());
        if r.is_ok() {
            break killed.elapsed();
        }
        refused += 1;
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "no service 20 s after the master was killed: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "sentinel failover: REGISTER served again {recovered:?} after SIGKILL of the master \
         ({refused} refused meanwhile, slowest refusal {slowest:?})"
    );
    assert!(refused > 0, "the kill went unnoticed?");
    assert!(
        slowest < Duration::from_millis(1500),
        "a call took {slowest:?} while the master was gone"
    );
    assert_eq!(
        setup.master_port_by_sentinel(),
        Some(setup.replica().port()),
        "the sentinel promoted the replica"
    );
    let found = store.lookup(&alice, t0()).await;
    assert_eq!(
        found.as_ref().map(Vec::len),
        Ok(1),
        "alice's binding (written with WAIT) survived: {found:?}"
    );
    // The sweep and connection scripts were never loaded on the new master: NOSCRIPT → load.
    assert!(store.sweep_expired(t0()).await.is_ok());
    // The dialog store's own link noticed the dead master by its PING check (it was idle)
    // and follows within its reconnection back-off.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let loaded = dialogs.load(&missing).await;
        if loaded.as_ref().is_ok_and(Option::is_none) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dialog store after failover: {loaded:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No sentinel answers (nothing listens on the port): the store is created (it connects
/// lazily), and every call fails as unavailable within the timeout instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sentinels_give_unavailable_fast() {
    // A harness port on this test's own loopback address: nobody else listens there (a port
    // picked with bind(0) on 127.0.0.1 and released could be any process's next listener).
    let ip = test_ip("redis_sentinel::unreachable_sentinels_give_unavailable_fast");
    let port = free_port(ip);
    let config = RedisStoreConfig::new(format!("redis+sentinel://{ip}:{port}/mymaster"));
    let store = RedisLocationStore::new(&config).unwrap_or_else(|e| panic!("{e}"));
    let policy = RegistrarPolicy::default();
    for cseq in 1..=3 {
        let asked = Instant::now();
        let r = req(
            &aor("dave"),
            "d",
            cseq,
            vec![contact("sip:d@10.0.0.4", None)],
        );
        let answer = store.register(r, &policy, t0()).await;
        let took = asked.elapsed();
        assert!(answer.is_err(), "{answer:?}");
        assert!(took < Duration::from_millis(800), "refusal took {took:?}");
    }
    assert!(
        RedisLocationStore::connect(&config).await.is_err(),
        "connect() checks that a master answers"
    );
}

/// `SENTINEL FAILOVER`: the old master stays up; once the replica is promoted we demote the old
/// master ourselves at once (Sentinel does it up to ~10 s later), so our open connection to it
/// still works but writes get `READONLY`, unless the periodic check saw the new master first.
/// Either way the next writes land on the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_store_follows_a_manual_failover() {
    log();
    let setup = RedisSentinelSetup::start("actors-sentinel-manual");
    let store = RedisLocationStore::connect(&RedisStoreConfig::new(setup.url()))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let policy = RegistrarPolicy::default();
    let alice = aor("alice");
    let r = req(&alice, "a", 1, vec![contact("sip:alice@10.0.0.1", None)]);
    assert!(store.register(r, &policy, t0()).await.is_ok());
    setup.wait_replicated();
    let old_master = setup.master().port();
    let out = setup.sentinel_cli(&["SENTINEL", "FAILOVER", "mymaster"]);
    assert!(out.contains("OK"), "SENTINEL FAILOVER: {out}");
    let started = Instant::now();
    let mut cseq = 1;
    let mut refused = 0;
    let mut register = async |contact_uri: &str| {
        cseq += 1;
        let r = req(&alice, "a", cseq, vec![contact(contact_uri, None)]);
        let answer = store.register(r, &policy, t0()).await;
        if answer.is_err() {
            refused += 1;
        }
        answer.is_ok()
    };
    // Keep writing while Sentinel promotes the replica.
    loop {
        register("sip:alice@10.0.0.1").await;
        if setup.master_port_by_sentinel() == Some(setup.replica().port()) {
            let port = setup.replica().port().to_string();
            let out = setup.master().cli(&["REPLICAOF", "127.0.0.1", &port]);
            assert!(out.contains("OK"), "REPLICAOF: {out}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "failover not done 15 s after SENTINEL FAILOVER"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switched = started.elapsed();
    // Now writes must reach the new master (a write to the demoted one gets READONLY).
    let key = "sipmesh:loc:aor:sip:alice@example.com";
    loop {
        let ok = register("sip:alice@10.0.0.99").await;
        if ok && setup.replica().cli(&["GET", key]).contains("10.0.0.99") {
            break;
        }
        assert!(
            started.elapsed() < switched + Duration::from_secs(5),
            "no write on the new master 5 s after the switch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "manual failover: promoted {switched:?} after SENTINEL FAILOVER, store writing to \
         the new master {:?} after it ({refused} refused; old master port {old_master})",
        started.elapsed()
    );
    let found = store.lookup(&alice, t0()).await.unwrap_or_default();
    assert!(
        found
            .iter()
            .any(|b| b.contact.as_ref() == b"sip:alice@10.0.0.99"),
        "lookup through the store reads the new master: {found:?}"
    );
}

/// REGISTER throughput and latency through the store, with and without `WAIT 1`, on a
/// master with one replica on loopback. Prints the numbers; asserts only that both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_wait_cost() {
    let mut setup = RedisSentinelSetup::start("actors-sentinel-wait-cost");
    let runs = [(1, 400), (32, 100)].into_iter().flat_map(|shape| {
        [None, Some(WAIT_ONE), None, Some(WAIT_ONE)].map(move |wait| (shape, wait))
    });
    // Last, with the replica gone: every batch waits the whole WAIT timeout.
    let degraded = [((1, 5), Some(WAIT_ONE)), ((32, 5), Some(WAIT_ONE))];
    for (round, ((tasks, per_task), wait)) in runs.chain(degraded).enumerate() {
        if round == 8 {
            setup.kill_replica();
            println!("replica killed:");
        }
        let config = RedisStoreConfig {
            replica_wait: wait,
            timeout: Duration::from_secs(5),
            ..RedisStoreConfig::new(setup.master().url())
        };
        let store = Arc::new(
            RedisLocationStore::connect(&config)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}")),
        );
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let policy = RegistrarPolicy::default();
                    let mut latencies = Vec::with_capacity(per_task);
                    for i in 0..per_task {
                        let user = aor(&format!("u{round}-{t}-{i}"));
                        let r = req(&user, "w", 1, vec![contact("sip:u@10.0.0.9", None)]);
                        let asked = Instant::now();
                        let ok = store.register(r, &policy, t0()).await.is_ok();
                        latencies.push((asked.elapsed(), ok));
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for t in handles {
            latencies.extend(t.await.unwrap_or_default());
        }
        let took = started.elapsed();
        assert!(latencies.iter().all(|(_, ok)| *ok), "a REGISTER failed");
        let mut sorted: Vec<Duration> = latencies.iter().map(|(d, _)| *d).collect();
        sorted.sort();
        let pct = |p: usize| {
            sorted
                .get(sorted.len() * p / 100)
                .copied()
                .unwrap_or_default()
        };
        println!(
            "WAIT {:?}: {} REGISTERs by {tasks} tasks in {took:?} = {:.0}/s; p50 {:?}, p99 {:?}",
            wait.map(|w| w.replicas),
            sorted.len(),
            sorted.len() as f64 / took.as_secs_f64(),
            pct(50),
            pct(99),
        );
    }
}

/// A dialog store of node `node` on the Sentinel URL, fenced at epoch 1 (the lease key is set
/// on the master by the caller).
fn fenced_dialog_store(setup: &RedisSentinelSetup, node: &str) -> RedisDialogStore {
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(2),
        ..RedisStoreConfig::new(setup.url())
    };
    RedisDialogStore::new(&config, "sipmesh:dlg:")
        .unwrap_or_else(|e| panic!("store: {e}"))
        .with_fence(Some(Fence::new(
            format!("sipmesh:node:{node}"),
            Arc::new(FixedEpoch(Some(1))),
        )))
}

/// Polls `ok` until it holds, at most `limit`.
async fn until(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Owner notices (issue 5) on a Sentinel URL: node B subscribes on the master the sentinels
/// name and gets an "ended" notice when node A removes B's dialog; after a failover it
/// subscribes again on the promoted replica, and the notices of writes there reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_owner_notices_follow_a_sentinel_failover() {
    log();
    let setup = RedisSentinelSetup::start("actors-sentinel-notices");
    for node in ["a", "b"] {
        setup
            .master()
            .cli(&["SET", &format!("sipmesh:node:{node}"), "1"]);
    }
    setup.wait_replicated();
    let a = fenced_dialog_store(&setup, "a");
    let b = fenced_dialog_store(&setup, "b");
    let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&notices);
    let follower = b.clone();
    let follow = tokio::spawn(async move {
        follower
            .follow_notices(|n| seen.lock().expect("lock").push(n))
            .await;
    });
    let channel = b.own_index().expect("B's owner index");
    let subscribed = |server: &sipmesh_test_support::RedisServer| {
        server
            .cli(&["PUBSUB", "NUMSUB", &channel])
            .lines()
            .nth(1)
            .is_some_and(|n| n.trim() == "1")
    };
    until(
        "B subscribed on the master",
        Duration::from_secs(5),
        async || subscribed(setup.master()),
    )
    .await;

    // B runs a dialog; a BYE through A removes it and tells B.
    let ended = |call: &str| Notice::Ended(DialogId::new(call, "a1", "b1"));
    let first = dialog_record("before@host");
    b.save_as(&first, WriteRole::Owner)
        .await
        .expect("B's record");
    assert_eq!(a.remove_as(&first.id, WriteRole::Visitor).await, Ok(true));
    until(
        "the first ended notice",
        Duration::from_secs(5),
        async || {
            notices
                .lock()
                .expect("lock")
                .contains(&ended("before@host"))
        },
    )
    .await;

    // Failover: the replica is promoted, the old master demoted.
    let out = setup.sentinel_cli(&["SENTINEL", "FAILOVER", "mymaster"]);
    assert!(out.contains("OK"), "SENTINEL FAILOVER: {out}");
    let started = Instant::now();
    until("the promotion", Duration::from_secs(15), async || {
        setup.master_port_by_sentinel() == Some(setup.replica().port())
    })
    .await;
    let port = setup.replica().port().to_string();
    let out = setup.master().cli(&["REPLICAOF", "127.0.0.1", &port]);
    assert!(out.contains("OK"), "REPLICAOF: {out}");
    until(
        "B subscribed on the new master",
        Duration::from_secs(10),
        async || subscribed(setup.replica()),
    )
    .await;
    println!(
        "sentinel notices: B subscribed on the new master {:?} after SENTINEL FAILOVER",
        started.elapsed()
    );

    // The same on the new master (writes retried while the stores move over).
    let second = dialog_record("after@host");
    until(
        "B's record on the new master",
        Duration::from_secs(10),
        async || b.save_as(&second, WriteRole::Owner).await.is_ok(),
    )
    .await;
    until(
        "A's removal on the new master",
        Duration::from_secs(10),
        async || a.remove_as(&second.id, WriteRole::Visitor).await.is_ok(),
    )
    .await;
    until(
        "the ended notice after the failover",
        Duration::from_secs(5),
        async || notices.lock().expect("lock").contains(&ended("after@host")),
    )
    .await;
    // A hand-over reaches B too.
    b.save_as(&second, WriteRole::Owner)
        .await
        .expect("B's record again");
    assert_eq!(a.hand_over(&second.id, "sipmesh:node:b").await, Ok(true));
    follow.abort();
}

/// A confirmed dialog record of call `call`.
fn dialog_record(call: &str) -> DialogState {
    let leg = |tag: &str| Leg {
        uri: format!("sip:{tag}@example.com"),
        tag: tag.to_owned(),
        target: Some(format!("sip:{tag}@192.0.2.1")),
        route_set: Vec::new(),
        cseq: Some(1),
        flow: None,
        allow: None,
    };
    DialogState::from_event(
        &DialogEvent::Confirmed(Box::new(DialogSnapshot {
            id: DialogId::new(call, "a1", "b1"),
            caller: leg("a1"),
            callee: leg("b1"),
            session_expires: None,
        })),
        std::time::SystemTime::now(),
        &DialogConfig::default(),
    )
    .expect("dialog state")
}
