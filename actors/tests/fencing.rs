//! Fenced owner writes (issue 5) against a real `redis-server` (Debian package; a missing binary
//! fails the test): the location and dialog stores write with the current lease epoch, refuse a
//! stale one without writing anything, and refuse at once, without a Redis call, while fenced.
//!
//! The lease key is set by hand as the cluster layer's lease script would: a "new incarnation"
//! re-acquiring the lease is simulated by bumping the key to a higher epoch.
//!
//! Per-dialog owner claims (issue 5): a node that lost one dialog to another live node cannot
//! write or remove it as its owner (`STALE_OWNER`, stored bytes unchanged), while visitors and
//! adoptions keep working, and hand-over / "ended" notices reach the owner's channel.

#[path = "support/requests.rs"]
mod requests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sipmesh_actors::dialog::redis::notice::Notice;
use sipmesh_actors::dialog::{DialogStore, DialogStoreError, RedisDialogStore, WriteRole};
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

/// A second node's store: lease key `sipmesh:node:b` at `epoch` (the key set as its lease).
fn node_b(server: &RedisServer, epoch: u64) -> (RedisDialogStore, Arc<TestEpoch>) {
    let source = Arc::new(TestEpoch::default());
    source.set(epoch);
    server.cli(&["SET", "sipmesh:node:b", &epoch.to_string()]);
    let store = RedisDialogStore::new(&config(server), "sipmesh:dlg:")
        .expect("store")
        .with_fence(Some(Fence::new("sipmesh:node:b", source.clone())));
    (store, source)
}

/// Waits until `f` holds (at most 5 s).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_of_one_dialog_is_refused_and_writes_nothing() {
    let server = RedisServer::start();
    let (fence, epoch) = fence();
    let a = RedisDialogStore::new(&config(&server), "sipmesh:dlg:")
        .expect("store")
        .with_fence(Some(fence));
    server.cli(&["SET", LEASE_KEY, "4"]);
    epoch.set(4);
    let (b, b_epoch) = node_b(&server, 7);
    // B follows its owner notices (hand-overs, dialogs ended elsewhere).
    let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&notices);
    let follower = b.clone();
    let follow = tokio::spawn(async move {
        follower
            .follow_notices(|n| seen.lock().expect("lock").push(n))
            .await;
    });
    let index_b = b.own_index().expect("index");
    until("B subscribed", || {
        server.cli(&["PUBSUB", "NUMSUB", &index_b]).contains("\n1")
    })
    .await;

    // A confirms the dialog (it is the claimant) and hands it over to B, which adopts it.
    let d = dialog("claim@host", "sip:a1@192.0.2.1");
    let key = a.key(&d.id);
    a.save(&d).await.expect("A creates the record");
    let claim = |s: &RedisServer| s.cli(&["HGET", &key, "claim"]).trim().to_owned();
    assert_eq!(claim(&server), "sipmesh:node:a/4");
    assert_eq!(a.hand_over(&d.id, "sipmesh:node:b").await, Ok(true));
    until("the hand-over notice", || {
        notices
            .lock()
            .expect("lock")
            .contains(&Notice::Adopt(key.clone()))
    })
    .await;
    b.save_as(&d, WriteRole::Take).await.expect("B adopts");
    assert_eq!(claim(&server), "sipmesh:node:b/7");

    // A has not noticed (its rebalance lags): its owner writes are refused, nothing changes.
    let stored = server.cli(&["HGETALL", &key]);
    let changed = dialog("claim@host", "sip:a1@192.0.2.99");
    assert_eq!(
        a.save_as(&changed, WriteRole::Owner).await,
        Err(DialogStoreError::StaleOwner)
    );
    assert_eq!(
        a.remove_as(&d.id, WriteRole::Owner).await,
        Err(DialogStoreError::StaleOwner)
    );
    assert_eq!(
        server.cli(&["HGETALL", &key]),
        stored,
        "stored bytes unchanged"
    );
    assert_eq!(server.cli(&["SISMEMBER", &index_b, &key]).trim(), "1");

    // A visitor at A (an in-dialog request through A) refreshes it and keeps B's claim.
    a.save_as(&changed, WriteRole::Visitor)
        .await
        .expect("visitor refresh");
    assert_eq!(a.load(&d.id).await.expect("load"), Some(changed.clone()));
    assert_eq!(claim(&server), "sipmesh:node:b/7");

    // B's lease lapses: an owner write by A takes the dead claim over.
    server.cli(&["DEL", "sipmesh:node:b"]);
    a.save_as(&changed, WriteRole::Owner)
        .await
        .expect("a dead claimant's record is A's to write");
    assert_eq!(claim(&server), "sipmesh:node:a/4");
    // B is back with a new epoch: A is alive, so B's owner writes are refused...
    server.cli(&["SET", "sipmesh:node:b", "8"]);
    b_epoch.set(8);
    assert_eq!(
        b.save_as(&d, WriteRole::Owner).await,
        Err(DialogStoreError::StaleOwner)
    );
    // ...and a BYE through B (a visitor) removes it and tells A's channel, not B's.
    assert_eq!(b.remove_as(&d.id, WriteRole::Visitor).await, Ok(true));
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");
    // A BYE through A removing B's record tells B.
    b.save_as(&d, WriteRole::Owner)
        .await
        .expect("B creates it again");
    assert_eq!(a.remove_as(&d.id, WriteRole::Visitor).await, Ok(true));
    until("the ended notice", || {
        notices
            .lock()
            .expect("lock")
            .contains(&Notice::Ended(d.id.clone()))
    })
    .await;
    follow.abort();
}
