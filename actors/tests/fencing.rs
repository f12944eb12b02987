//! Fenced owner writes (issue 5) against a real `redis-server` (Debian package; a missing binary
//! fails the test): the location and dialog stores write with the current lease epoch, refuse a
//! stale one without writing anything, and refuse at once, without a Redis call, while fenced.
//!
//! The lease key is set by hand as the cluster layer's lease script would: a "new incarnation"
//! re-acquiring the lease is simulated by bumping the key to a higher epoch.

#[path = "support/requests.rs"]
mod requests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sipmesh_actors::dialog::{DialogStore, DialogStoreError, RedisDialogStore};
use sipmesh_actors::fence::{EpochSource, Fence};
use sipmesh_actors::location::{
    LocationStore, RedisLocationStore, RedisStoreConfig, StoreError, UnavailableReason,
};
use sipmesh_protocol::dialog::{
    DialogConfig, DialogEvent, DialogId, DialogSnapshot, DialogState, Leg,
};
use sipmesh_protocol::peer::ConnectionId;
use sipmesh_protocol::registrar::RegistrarPolicy;
use sipmesh_test_support::RedisServer;

use requests::{aor, contact, req, source, t0};

const LEASE_KEY: &str = "sipmesh:node:a";

/// The epoch a test's node writes with; 0 is fenced.
#[derive(Debug, Default)]
struct TestEpoch(AtomicU64);

impl TestEpoch {
    fn set(&self, epoch: u64) {
        self.0.store(epoch, Ordering::SeqCst);
    }
}

impl EpochSource for TestEpoch {
    fn owner_epoch(&self) -> Option<u64> {
        Some(self.0.load(Ordering::SeqCst)).filter(|e| *e != 0)
    }
}

fn config(server: &RedisServer) -> RedisStoreConfig {
    RedisStoreConfig {
        timeout: Duration::from_secs(5),
        ..RedisStoreConfig::new(server.url())
    }
}

/// A fence on [`LEASE_KEY`] and the handle that sets its epoch.
fn fence() -> (Fence, Arc<TestEpoch>) {
    let epoch = Arc::new(TestEpoch::default());
    (Fence::new(LEASE_KEY, epoch.clone()), epoch)
}

fn fenced() -> StoreError {
    StoreError::Unavailable(UnavailableReason::Fenced)
}

async fn uris(store: &RedisLocationStore, user: &str) -> Vec<String> {
    let bindings = store.lookup(&aor(user), t0()).await.expect("lookup");
    let mut uris: Vec<String> = bindings
        .iter()
        .map(|b| String::from_utf8_lossy(&b.contact).into_owned())
        .collect();
    uris.sort();
    uris
}

#[tokio::test]
async fn location_writes_carry_the_epoch_and_a_stale_one_writes_nothing() {
    let server = RedisServer::start();
    let (fence, epoch) = fence();
    let store = RedisLocationStore::connect(&config(&server))
        .await
        .expect("connect")
        .with_fence(Some(fence));
    let policy = RegistrarPolicy::default();
    server.cli(&["SET", LEASE_KEY, "1"]);
    epoch.set(1);

    // The current epoch writes (a flow binding over connection 42, and a UDP one).
    let mut flow = req(
        &aor("alice"),
        "c1",
        1,
        vec![contact("sip:a@flow.invalid;transport=tcp", None)],
    );
    flow.source = source(Some(42));
    store
        .register(flow, &policy, t0())
        .await
        .expect("register with the current epoch");
    store
        .register(
            req(&aor("bob"), "c2", 1, vec![contact("sip:b@udp", None)]),
            &policy,
            t0(),
        )
        .await
        .expect("register with the current epoch");
    let before = server.cli(&["GET", "sipmesh:loc:aor:sip:alice@example.com"]);

    // Another incarnation re-acquires the lease: epoch 1 is stale.
    server.cli(&["SET", LEASE_KEY, "2"]);
    let stale = store
        .register(
            req(&aor("alice"), "c3", 1, vec![contact("sip:a2@udp", None)]),
            &policy,
            t0(),
        )
        .await;
    assert_eq!(stale.map(|_| ()), Err(fenced()));
    let stale = store
        .register(
            req(&aor("carol"), "c4", 1, vec![contact("sip:c@udp", None)]),
            &policy,
            t0(),
        )
        .await;
    assert_eq!(stale.map(|_| ()), Err(fenced()));
    assert_eq!(
        store.remove_connection(ConnectionId(42)).await,
        Err(fenced())
    );
    // Nothing was written: the same bytes, no new AOR, the flow binding still there.
    assert_eq!(
        server.cli(&["GET", "sipmesh:loc:aor:sip:alice@example.com"]),
        before
    );
    assert_eq!(
        uris(&store, "alice").await,
        ["sip:a@flow.invalid;transport=tcp"]
    );
    assert!(uris(&store, "carol").await.is_empty());
    assert_eq!(
        server
            .cli(&["EXISTS", "sipmesh:loc:aor:sip:carol@example.com"])
            .trim(),
        "0"
    );

    // The new epoch writes again.
    epoch.set(2);
    store
        .register(
            req(&aor("carol"), "c4", 1, vec![contact("sip:c@udp", None)]),
            &policy,
            t0(),
        )
        .await
        .expect("register with the new epoch");
    assert_eq!(store.remove_connection(ConnectionId(42)).await, Ok(1));
    assert!(uris(&store, "alice").await.is_empty());
    assert_eq!(uris(&store, "carol").await, ["sip:c@udp"]);
    // Reads are never fenced.
    assert_eq!(uris(&store, "bob").await, ["sip:b@udp"]);

    // A lapsed lease (the key expired) refuses every epoch.
    server.cli(&["DEL", LEASE_KEY]);
    let lapsed = store
        .register(
            req(&aor("dave"), "c5", 1, vec![contact("sip:d@udp", None)]),
            &policy,
            t0(),
        )
        .await;
    assert_eq!(lapsed.map(|_| ()), Err(fenced()));
    assert!(uris(&store, "dave").await.is_empty());
}

/// A confirmed dialog record.
fn dialog(call: &str, target: &str) -> DialogState {
    let leg = |tag: &str| Leg {
        uri: format!("sip:{tag}@example.com"),
        tag: tag.to_owned(),
        target: Some(target.to_owned()),
        route_set: Vec::new(),
        cseq: Some(1),
        flow: None,
        allow: None,
    };
    let snapshot = DialogSnapshot {
        id: DialogId::new(call, "a1", "b1"),
        caller: leg("a1"),
        callee: leg("b1"),
        session_expires: None,
    };
    DialogState::from_event(
        &DialogEvent::Confirmed(Box::new(snapshot)),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        &DialogConfig::default(),
    )
    .expect("dialog state")
}

#[tokio::test]
async fn dialog_writes_carry_the_epoch_and_a_stale_one_writes_nothing() {
    let server = RedisServer::start();
    let (fence, epoch) = fence();
    let store = RedisDialogStore::new(&config(&server), "sipmesh:dlg:")
        .expect("store")
        .with_fence(Some(fence));
    server.cli(&["SET", LEASE_KEY, "4"]);
    epoch.set(4);

    let first = dialog("d@host", "sip:a1@192.0.2.1");
    store
        .save(&first)
        .await
        .expect("save with the current epoch");
    assert_eq!(
        store.load(&first.id).await.expect("load"),
        Some(first.clone())
    );
    let ttl: i64 = server
        .cli(&["PTTL", &store.key(&first.id)])
        .trim()
        .parse()
        .expect("pttl");
    assert!(ttl > 0, "the fenced save sets the expiry: {ttl}");

    server.cli(&["SET", LEASE_KEY, "5"]);
    let changed = dialog("d@host", "sip:a1@192.0.2.99");
    let fenced = Err(DialogStoreError::Unavailable(UnavailableReason::Fenced));
    assert_eq!(store.save(&changed).await, fenced);
    assert_eq!(store.remove(&first.id).await.map(|_| ()), fenced);
    assert_eq!(
        store.load(&first.id).await.expect("load"),
        Some(first.clone()),
        "a stale owner changed nothing"
    );

    epoch.set(5);
    store.save(&changed).await.expect("save with the new epoch");
    assert_eq!(store.load(&first.id).await.expect("load"), Some(changed));
    assert_eq!(store.remove(&first.id).await, Ok(true));
    assert_eq!(store.load(&first.id).await.expect("load"), None);
}

#[tokio::test]
async fn a_fenced_node_is_refused_at_once_without_a_redis_call() {
    let mut server = RedisServer::start();
    let (fence, _epoch) = fence(); // epoch 0: fenced
    let location = RedisLocationStore::connect(&config(&server))
        .await
        .expect("connect")
        .with_fence(Some(fence.clone()));
    let dialogs = RedisDialogStore::new(&config(&server), "sipmesh:dlg:")
        .expect("store")
        .with_fence(Some(fence));
    // Both connections are up (a read is never fenced), so no handshake lands in between.
    let d = dialog("f@host", "sip:a1@192.0.2.1");
    assert_eq!(dialogs.load(&d.id).await, Ok(None));
    let calls_before = server.cli(&["INFO", "commandstats"]);
    let policy = RegistrarPolicy::default();
    let refused = location
        .register(
            req(&aor("eve"), "c1", 1, vec![contact("sip:e@udp", None)]),
            &policy,
            t0(),
        )
        .await;
    assert_eq!(refused.map(|_| ()), Err(fenced()));
    assert_eq!(
        location.remove_connection(ConnectionId(7)).await,
        Err(fenced())
    );
    let fenced_dialog = Err(DialogStoreError::Unavailable(UnavailableReason::Fenced));
    assert_eq!(dialogs.save(&d).await, fenced_dialog);
    assert_eq!(dialogs.remove(&d.id).await.map(|_| ()), fenced_dialog);
    let calls_after = server.cli(&["INFO", "commandstats"]);
    // No script, write or read reached Redis in between (only the INFO calls themselves).
    let data_calls = |s: &str| -> Vec<String> {
        const DATA: [&str; 10] = [
            "evalsha", "eval", "script", "get", "set", "del", "hset", "multi", "exec", "pexpire",
        ];
        s.lines()
            .filter(|l| {
                l.strip_prefix("cmdstat_")
                    .and_then(|l| l.split(':').next())
                    .is_some_and(|name| DATA.contains(&name))
            })
            .map(str::to_owned)
            .collect()
    };
    assert!(
        calls_before.contains("cmdstat_hgetall"),
        "commandstats count the calls: {calls_before}"
    );
    assert_eq!(data_calls(&calls_before), data_calls(&calls_after));

    // And without a server at all: still Fenced (not a timeout), at once.
    server.stop();
    let started = Instant::now();
    let refused = location
        .register(
            req(&aor("eve"), "c1", 2, vec![contact("sip:e@udp", None)]),
            &policy,
            t0(),
        )
        .await;
    assert_eq!(refused.map(|_| ()), Err(fenced()));
    assert_eq!(dialogs.save(&d).await, fenced_dialog);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}
