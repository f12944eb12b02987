//! Dialog takeover (issue 5, failover) against a real `redis-server` (Debian package; a
//! missing binary fails the test): the fenced save keeps a per-node owner index, a second node
//! adopts every dialog of the first from it (actors, timers, records moved to its own index),
//! a repeated rebalance adopts nothing more, and a release stops the actors but keeps the
//! records. Also measures how long adopting N dialogs takes.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sipmesh_actors::dialog::takeover::rebalance;
use sipmesh_actors::dialog::{DialogStore, Dialogs, RedisDialogStore};
use sipmesh_actors::fence::{Fence, FixedEpoch};
use sipmesh_actors::location::RedisStoreConfig;
use sipmesh_protocol::dialog::{
    DialogConfig, DialogEvent, DialogId, DialogSnapshot, DialogState, EndReason, Leg,
};
use std::sync::atomic::{AtomicU64, Ordering};

use sipmesh_actors::fence::EpochSource;

/// An epoch source the test switches; 0 is fenced.
#[derive(Debug, Default)]
struct TestEpoch(AtomicU64);

impl EpochSource for TestEpoch {
    fn owner_epoch(&self) -> Option<u64> {
        Some(self.0.load(Ordering::SeqCst)).filter(|e| *e != 0)
    }
}
use sipmesh_test_support::RedisServer;

const N: usize = 2000;

fn dialog(call: &str) -> DialogState {
    let leg = |tag: &str| Leg {
        uri: format!("sip:{tag}@example.com"),
        tag: tag.to_owned(),
        target: Some(format!("sip:{tag}@192.0.2.1")),
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
        SystemTime::now(),
        &DialogConfig::default(),
    )
    .expect("dialog state")
}

/// A store fenced on `sipmesh:node:<node>` at epoch 1 (the lease key set to match).
fn store(server: &RedisServer, node: &str) -> RedisDialogStore {
    let lease = format!("sipmesh:node:{node}");
    server.cli(&["SET", &lease, "1"]);
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(5),
        ..RedisStoreConfig::new(server.url())
    };
    RedisDialogStore::new(&config, "sipmesh:dlg:")
        .expect("store")
        .with_fence(Some(Fence::new(lease, Arc::new(FixedEpoch(Some(1))))))
}

fn scard(server: &RedisServer, key: &str) -> usize {
    server
        .cli(&["SCARD", key])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("SCARD {key}: {e}"))
}

async fn until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_adopts_every_dialog_of_the_first_from_its_owner_index() {
    let server = RedisServer::start();
    let a = store(&server, "a");
    let b = store(&server, "b");
    let index_a = a.own_index().expect("index of a");
    let index_b = b.own_index().expect("index of b");
    assert_eq!(index_a, "sipmesh:dlg:by-owner:sipmesh:node:a");

    let dialogs: Vec<DialogState> = (0..N).map(|i| dialog(&format!("c{i}@host"))).collect();
    for d in &dialogs {
        a.save(d).await.expect("save");
    }
    assert_eq!(scard(&server, &index_a), N);
    assert_eq!(
        b.owner_indexes().await.expect("owners"),
        vec![index_a.clone()]
    );

    let on_b = Dialogs::start(Arc::new(b.clone()), DialogConfig::default())
        .await
        .expect("dialogs");
    let start = Instant::now();
    let report = rebalance(&b, &on_b, |_| true).await.expect("rebalance");
    assert_eq!(report.adopted, N);
    until("every dialog adopted", Duration::from_secs(20), || {
        on_b.live() == N
    })
    .await;
    let live = start.elapsed();
    until("every record in b's index", Duration::from_secs(20), || {
        scard(&server, &index_b) == N
    })
    .await;
    let moved = start.elapsed();
    eprintln!(
        "measured: {N} dialogs: index read {:?}, actors live {live:?}, records moved to the new owner's index {moved:?}",
        report.took
    );
    assert_eq!(scard(&server, &index_a), 0, "a's index emptied");

    // Idempotent: nothing more to adopt.
    let again = rebalance(&b, &on_b, |_| true).await.expect("rebalance");
    assert_eq!((again.scanned, again.adopted, again.released), (N, 0, 0));

    // Ending a dialog takes it out of the index.
    let first = dialogs.first().expect("a dialog");
    assert!(b.remove(&first.id).await.expect("remove"));
    assert_eq!(scard(&server, &index_b), N - 1);

    // Releasing: another node owns them now; the actors stop, the records stay.
    let gone = rebalance(&b, &on_b, |_| false).await.expect("rebalance");
    assert!(gone.released >= N - 1, "{gone:?}");
    until("every actor released", Duration::from_secs(20), || {
        on_b.live() <= 1
    })
    .await;
    assert_eq!(scard(&server, &index_b), N - 1, "records kept");
    on_b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_refused_while_fenced_is_retried_once_the_lease_is_back() {
    let server = RedisServer::start();
    let lease = "sipmesh:node:f";
    server.cli(&["SET", lease, "3"]);
    let epoch = Arc::new(TestEpoch::default());
    epoch.0.store(3, Ordering::SeqCst);
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(5),
        ..RedisStoreConfig::new(server.url())
    };
    let store = RedisDialogStore::new(&config, "sipmesh:dlg:")
        .expect("store")
        .with_fence(Some(Fence::new(lease, epoch.clone())));
    let index = store.own_index().expect("index");
    let dialogs = Dialogs::start(Arc::new(store.clone()), DialogConfig::default())
        .await
        .expect("dialogs");
    let d = dialog("fenced@host");
    let key = store.key(&d.id);
    // The record exists (an adoption does not re-create a record that is gone: it ended).
    store.save(&d).await.expect("save");
    dialogs.adopt(d.clone(), Duration::from_secs(600));
    until("the adopted record indexed", Duration::from_secs(5), || {
        scard(&server, &index) == 1
    })
    .await;

    // Fenced: the BYE's removal is refused and queued; the record stays.
    epoch.0.store(0, Ordering::SeqCst);
    dialogs.handle(DialogEvent::Terminated {
        id: d.id.clone(),
        reason: EndReason::Bye,
    });
    until("the removal queued", Duration::from_secs(5), || {
        dialogs.pending_removals() == 1
    })
    .await;
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "1");

    // The lease is back (a new epoch): the retry removes the record and its index entry.
    server.cli(&["SET", lease, "4"]);
    epoch.0.store(4, Ordering::SeqCst);
    until("the queued removal done", Duration::from_secs(5), || {
        dialogs.pending_removals() == 0
    })
    .await;
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");
    assert_eq!(scard(&server, &index), 0);
    dialogs.stop();
}
