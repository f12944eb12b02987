//! The Redis stores against a real Redis Cluster (3 masters started by the test with
//! `redis-server --cluster-enabled yes` and `redis-cli --cluster create`; missing binaries fail
//! the test): every registrar case of the single-server tests, the randomised comparison with
//! the memory store, concurrent REGISTERs for one AOR, keys spread over the masters, and the
//! dialog store.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sipmesh_actors::dialog::{DialogStore, DialogStoreError, RedisDialogStore};
use sipmesh_actors::fence::{Fence, FixedEpoch};
use sipmesh_actors::location::redis::DEFAULT_BUCKETS;
use sipmesh_actors::location::{
    LocationStore, RedisLocationStore, RedisStoreConfig, StoreError, UnavailableReason,
};
use sipmesh_protocol::dialog::Leg;
use sipmesh_protocol::dialog::{DialogConfig, DialogEvent, DialogId, DialogSnapshot, DialogState};
use sipmesh_protocol::peer::ConnectionId;
use sipmesh_protocol::registrar::RegistrarPolicy;

use sipmesh_test_support::RedisCluster;
use support::location_cases as cases;
use support::requests::{aor, contact, req, source, t0};

/// Settings with a generous timeout (a shared machine; see `redis_store.rs`) and `prefix`.
fn config(cluster: &RedisCluster, prefix: &str) -> RedisStoreConfig {
    RedisStoreConfig {
        timeout: Duration::from_secs(10),
        key_prefix: prefix.to_owned(),
        ..RedisStoreConfig::new(cluster.url())
    }
}

async fn store(cluster: &RedisCluster, prefix: &str) -> RedisLocationStore {
    let store = RedisLocationStore::connect(&config(cluster, prefix))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    assert!(store.is_cluster());
    store
}

/// Every shared registrar case (each under its own key prefix, so each starts empty), then the
/// randomised step-by-step comparison with the memory store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_cases_on_a_cluster() {
    let cluster = RedisCluster::start("registrar_cases_on_a_cluster", 3);
    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            cases::$case(&store(&cluster, concat!(stringify!($case), ":")).await).await;
        )*};
    }
    run!(
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
    for seed in 0..2 {
        let s = store(&cluster, &format!("seed{seed}:")).await;
        cases::same_outcomes_as_memory(&s, seed, 300).await;
    }
}

/// 8 tasks × 40 REGISTERs (adds, and removals of every fifth) for one AOR: the final set is
/// exactly the acknowledged one, and the bucketed counter agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registers_on_a_cluster_end_with_acknowledged_union() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 40;
    let cluster = RedisCluster::start(
        "concurrent_registers_on_a_cluster_end_with_acknowledged_union",
        3,
    );
    let store = Arc::new(store(&cluster, "conc:").await);
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
    let stats = store.stats().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.aors, stats.bindings), (1, expected.len()));
}

/// 300 AORs: their keys land in many slots on every master, the stats sum the buckets, and
/// the sweep empties every bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_the_masters() {
    const AORS: usize = 300;
    let cluster = RedisCluster::start("keys_spread_over_the_masters", 3);
    let store = store(&cluster, "spread:").await;
    let policy = RegistrarPolicy::default();
    let mut slots = std::collections::BTreeSet::new();
    for i in 0..AORS {
        let who = aor(&format!("user{i}"));
        let r = req(&who, "c", 1, vec![contact(format!("sip:u{i}@h"), Some(60))]);
        store
            .register(r, &policy, t0())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if i % 30 == 0 {
            let key = String::from_utf8_lossy(&store.aor_key(&who)).into_owned();
            slots.insert(cluster.keyslot(&key));
        }
    }
    assert!(slots.len() >= 5, "AOR keys in few slots: {slots:?}");
    let sizes = cluster.dbsizes();
    println!("DBSIZE per master after {AORS} AORs: {sizes:?}");
    assert!(
        sizes.iter().all(|&n| n >= (AORS as u64) / 10),
        "keys not spread over every master: {sizes:?}"
    );
    let stats = store.stats().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.aors, stats.bindings), (AORS, AORS));
    let later = t0() + Duration::from_secs(61);
    assert_eq!(store.sweep_expired(later).await, Ok(AORS));
    let stats = store.stats().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.aors, stats.bindings), (0, 0));
    // Left: only the bucket counters (at 0).
    assert_eq!(
        cluster.dbsizes().iter().sum::<u64>(),
        u64::from(DEFAULT_BUCKETS),
        "the sweep left keys behind"
    );
}

fn dialog_state(call: &str) -> DialogState {
    let leg = |tag: &str| Leg {
        uri: format!("sip:{tag}@example.com"),
        tag: tag.to_owned(),
        target: Some(format!("sip:{tag}@192.0.2.1:5060")),
        route_set: vec!["<sip:p1.example.com;lr>".to_owned()],
        cseq: Some(7),
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
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_250),
        &DialogConfig::default(),
    )
    .unwrap()
}

/// Dialog records on a cluster: save, load, overwrite, remove, for records in several slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_store_on_a_cluster() {
    let cluster = RedisCluster::start("dialog_store_on_a_cluster", 3);
    let store = RedisDialogStore::new(&config(&cluster, "x:"), "sipmesh:dlg:")
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..20 {
        let s = dialog_state(&format!("call{i}@host"));
        assert_eq!(store.load(&s.id).await.unwrap(), None);
        store.save(&s).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.load(&s.id).await.unwrap(), Some(s.clone()));
        let mut refreshed = s.clone();
        refreshed.callee.target = None;
        store.save(&refreshed).await.unwrap();
        assert_eq!(store.load(&s.id).await.unwrap(), Some(refreshed));
        if i % 2 == 0 {
            assert!(store.remove(&s.id).await.unwrap());
            assert!(!store.remove(&s.id).await.unwrap());
            assert_eq!(store.load(&s.id).await.unwrap(), None);
        }
    }
    let sizes = cluster.dbsizes();
    assert_eq!(sizes.iter().sum::<u64>(), 10, "{sizes:?}");
    assert!(sizes.iter().filter(|&&n| n > 0).count() >= 2, "{sizes:?}");
}

/// A fence whose epoch the test sets.
fn fence_at(epoch: u64) -> Option<Fence> {
    Some(Fence::new(LEASE_KEY, Arc::new(FixedEpoch(Some(epoch)))))
}

const LEASE_KEY: &str = "sipmesh:node:a";

/// Fenced writes on a Cluster (per-record fencing tokens, docs/REDIS.md): after node `a` wrote an
/// AOR and a dialog with epoch 5, its older incarnation (epoch 3) can no longer write, remove or
/// take a flow of them, and nothing changes; the newer epoch still can. What the token cannot
/// see: an AOR the newer incarnation has not written yet (the older one may still write it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_writes_on_a_cluster_refuse_an_older_epoch() {
    let cluster = RedisCluster::start("fenced_writes_on_a_cluster_refuse_an_older_epoch", 3);
    let fenced = Err(StoreError::Unavailable(UnavailableReason::Fenced));
    let new = store(&cluster, "f:").await.with_fence(fence_at(5));
    let old = store(&cluster, "f:").await.with_fence(fence_at(3));
    let policy = RegistrarPolicy::default();
    let alice = aor("alice");
    let mut flow = req(&alice, "c1", 1, vec![contact("sip:a@flow.invalid", None)]);
    flow.source = source(Some(42));
    assert!(new.register(flow, &policy, t0()).await.is_ok());
    let before = cluster.cli(&["GET", &String::from_utf8_lossy(&new.aor_key(&alice))]);
    let stale = old
        .register(
            req(&alice, "c2", 1, vec![contact("sip:a2@h", None)]),
            &policy,
            t0(),
        )
        .await;
    assert_eq!(stale.map(|_| ()), fenced);
    assert_eq!(
        old.remove_connection(ConnectionId(42)).await,
        Err(StoreError::Unavailable(UnavailableReason::Fenced))
    );
    let after = cluster.cli(&["GET", &String::from_utf8_lossy(&new.aor_key(&alice))]);
    assert_eq!(before, after, "a stale epoch wrote nothing");
    // Not yet written by epoch 5: the token does not know it (the documented limit).
    let carol = req(&aor("carol"), "c3", 1, vec![contact("sip:c@h", None)]);
    assert!(old.register(carol, &policy, t0()).await.is_ok());
    // The newer epoch goes on writing.
    let r = req(&alice, "c1", 2, vec![contact("sip:a3@h", None)]);
    assert_eq!(
        new.register(r, &policy, t0())
            .await
            .map(|o| o.bindings.len()),
        Ok(2)
    );
    assert_eq!(new.remove_connection(ConnectionId(42)).await, Ok(1));

    let config = config(&cluster, "f:");
    let dialogs = |epoch| {
        RedisDialogStore::new(&config, "sipmesh:dlg:")
            .unwrap_or_else(|e| panic!("{e}"))
            .with_fence(fence_at(epoch))
    };
    let (new, old) = (dialogs(5), dialogs(3));
    let s = dialog_state("fenced@host");
    new.save(&s).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        old.save(&s).await,
        Err(DialogStoreError::Unavailable(UnavailableReason::Fenced))
    ));
    assert!(matches!(
        old.remove(&s.id).await,
        Err(DialogStoreError::Unavailable(UnavailableReason::Fenced))
    ));
    assert_eq!(new.load(&s.id).await.unwrap(), Some(s.clone()));
    assert!(new.remove(&s.id).await.unwrap());
}

/// One master of three is killed: REGISTERs for AORs in its slots get `Unavailable` within
/// 1 s (the default 500 ms store timeout), never a hang, and AORs on the other masters keep
/// registering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_fails_its_aors_fast_and_spares_the_others() {
    let mut cluster = RedisCluster::start("a_dead_master_fails_its_aors_fast", 3);
    let store = RedisLocationStore::connect(&RedisStoreConfig {
        key_prefix: "dead:".to_owned(),
        ..RedisStoreConfig::new(cluster.url())
    })
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"));
    let policy = RegistrarPolicy::default();
    let users: Vec<String> = (0..24).map(|i| format!("user{i}")).collect();
    for u in &users {
        let r = req(&aor(u), "c", 1, vec![contact(format!("sip:{u}@h"), None)]);
        store
            .register(r, &policy, t0())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    cluster.stop_node(0);
    let (mut ok, mut unavailable) = (0, 0);
    for u in &users {
        let r = req(&aor(u), "c", 2, vec![contact(format!("sip:{u}@h"), None)]);
        let started = std::time::Instant::now();
        match store.register(r, &policy, t0()).await {
            Ok(_) => ok += 1,
            Err(StoreError::Unavailable(_)) => unavailable += 1,
            Err(e) => panic!("{u}: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{u}: {:?}",
            started.elapsed()
        );
    }
    println!("one master down: {ok} REGISTERs ok, {unavailable} unavailable");
    assert!(
        ok > 0 && unavailable > 0,
        "ok {ok}, unavailable {unavailable}"
    );
}

/// A store writing with connection scope `scope` (a node's id).
async fn scoped(cluster: &RedisCluster, prefix: &str, scope: &str) -> RedisLocationStore {
    let config = RedisStoreConfig {
        connection_scope: scope.to_owned(),
        ..config(cluster, prefix)
    };
    RedisLocationStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// The dead-node flow sweep on a Cluster (`remove_scope_connections`): 60 AORs registered over
/// 6 connections of node `n1` (connection sets on every master), plus flows of `n10` (a scope
/// that starts with `n1`) and `n2`: the sweep of `n1`, run from another node's store, walks
/// every master, removes exactly `n1`'s flows except the kept connection, and marks the
/// emptied AORs as closed flows (480).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_flows_are_removed_from_every_master() {
    const AORS: u64 = 60;
    let cluster = RedisCluster::start("a_dead_nodes_flows_are_removed_from_every_master", 3);
    let n1 = scoped(&cluster, "scope:", "n1").await;
    let n10 = scoped(&cluster, "scope:", "n10").await;
    let n2 = scoped(&cluster, "scope:", "n2").await;
    let flow = |store: &RedisLocationStore, who: String, conn: u64| {
        let mut r = req(
            &aor(&who),
            "c",
            1,
            vec![contact(format!("sip:{who}@flow.invalid"), None)],
        );
        r.source = source(Some(conn));
        let store = store.clone();
        async move {
            store
                .register(r, &policy_default(), t0())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    };
    for i in 0..AORS {
        flow(&n1, format!("u{i}"), 1 + i % 6).await;
    }
    flow(&n10, "other10".to_owned(), 1).await;
    flow(&n2, "other2".to_owned(), 1).await;
    let slots: std::collections::BTreeSet<u16> = (1..=6)
        .map(|c| cluster.keyslot(&format!("scope:{{conn:n1:{c}}}")))
        .collect();
    assert!(slots.len() >= 3, "connection sets in few slots: {slots:?}");

    let kept = ConnectionId(6);
    let started = std::time::Instant::now();
    let removed = n2
        .remove_scope_connections("n1", |c| c == kept)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "measured: {removed} flow bindings of a dead node's scope removed on a 3-master Cluster in {:?}",
        started.elapsed()
    );
    assert_eq!(removed, (AORS - AORS / 6) as usize);
    for i in 0..AORS {
        let who = aor(&format!("u{i}"));
        let left = n2.lookup(&who, t0()).await.unwrap_or_default().len();
        let closed = n2.flows_closed(&who, t0()).await.unwrap_or(false);
        if 1 + i % 6 == 6 {
            assert_eq!((left, closed), (1, false), "u{i} over the kept connection");
        } else {
            assert_eq!((left, closed), (0, true), "u{i}");
        }
    }
    for other in ["other10", "other2"] {
        assert_eq!(
            n2.lookup(&aor(other), t0()).await.map(|b| b.len()),
            Ok(1),
            "{other} kept"
        );
    }
    // The swept sets are gone; the kept one stays.
    assert_eq!(cluster.cli(&["EXISTS", "scope:{conn:n1:1}"]).trim(), "0");
    assert_eq!(cluster.cli(&["EXISTS", "scope:{conn:n1:6}"]).trim(), "1");
    // A second sweep finds nothing more.
    assert_eq!(
        n2.remove_scope_connections("n1", |c| c == kept).await,
        Ok(0)
    );
}

fn policy_default() -> RegistrarPolicy {
    RegistrarPolicy::default()
}

/// The SCARD of `key` on the Cluster.
fn scard(cluster: &RedisCluster, key: &str) -> usize {
    let out = cluster.cli(&["SCARD", key]);
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("SCARD {key}: {e}: {out:?}"))
}

/// A dialog store of node `node` fenced at epoch 1 (on a Cluster the fence is the per-record
/// token, so the lease key need not exist).
fn fenced_dialogs(cluster: &RedisCluster, node: &str) -> RedisDialogStore {
    let lease = format!("{{sipmesh:}}node:{node}");
    RedisDialogStore::new(&config(cluster, "d:"), "sipmesh:dlg:")
        .unwrap_or_else(|e| panic!("{e}"))
        .with_fence(Some(Fence::new(lease, Arc::new(FixedEpoch(Some(1))))))
}

/// The dialog owner index on a Cluster (docs/REDIS.md "Dialog owner index on a Cluster"):
/// node a's fenced saves list its records in `P{by-owner:…a}`; node b's rebalance reads it on
/// its master, adopts every dialog, and b's saves move the records to b's index (a's is
/// emptied after the writes); a second rebalance adopts nothing; a remove unlists the record;
/// an entry whose record is gone is dropped when read; a record listed by two indexes (a
/// writer that died before its `SREM`) is adopted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dialog_owner_index_on_a_cluster_lets_a_survivor_adopt_every_dialog() {
    use sipmesh_actors::dialog::Dialogs;
    use sipmesh_actors::dialog::takeover::rebalance;
    const N: usize = 300;
    let cluster = RedisCluster::start(
        "the_dialog_owner_index_on_a_cluster_lets_a_survivor_adopt_every_dialog",
        3,
    );
    let a = fenced_dialogs(&cluster, "a");
    let b = fenced_dialogs(&cluster, "b");
    let index_a = a.own_index().expect("index of a");
    let index_b = b.own_index().expect("index of b");
    assert_eq!(index_a, "sipmesh:dlg:{by-owner:sipmesh:node:a}");
    assert_ne!(
        cluster.keyslot(&index_a),
        cluster.keyslot(&index_b),
        "each owner index in its own slot"
    );
    let mut dialogs = Vec::new();
    let saving = std::time::Instant::now();
    for i in 0..N {
        let mut d = dialog_state(&format!("own{i}@host"));
        // A lifetime the adopted actors will not reach during the test.
        d.timeout = Duration::from_secs(600);
        a.save(&d).await.unwrap_or_else(|e| panic!("{e}"));
        dialogs.push(d);
    }
    let saved = saving.elapsed();
    // The same records saved unfenced (one MULTI, no index), for comparison.
    let plain = RedisDialogStore::new(&config(&cluster, "d:"), "plain:dlg:")
        .unwrap_or_else(|e| panic!("{e}"));
    let plain_start = std::time::Instant::now();
    for d in &dialogs {
        plain.save(d).await.unwrap_or_else(|e| panic!("{e}"));
    }
    println!(
        "measured: {N} sequential fenced saves with the Cluster owner index {saved:?} ({:?} each); unfenced without index {:?} ({:?} each)",
        saved / N as u32,
        plain_start.elapsed(),
        plain_start.elapsed() / N as u32
    );
    assert_eq!(scard(&cluster, &index_a), N);
    assert_eq!(
        b.owner_indexes().await.unwrap_or_default(),
        vec![index_a.clone()]
    );
    // Stale entries: a record that is gone, and one whose record names b's index.
    cluster.cli(&["SADD", &index_a, "sipmesh:dlg:{gone;x;y}"]);
    let moved = dialog_state("moved@host");
    b.save(&moved).await.unwrap_or_else(|e| panic!("{e}"));
    cluster.cli(&["SADD", &index_a, &b.key(&moved.id)]);

    let on_b = Dialogs::start(Arc::new(b.clone()), DialogConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let start = std::time::Instant::now();
    let report = rebalance(&b, &on_b, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (report.scanned, report.adopted),
        (N + 1, N + 1),
        "every record once (the moved one through b's index)"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Left in a: the entry of the record that names b (a dead writer's leftover).
    while scard(&cluster, &index_b) < N + 1 || scard(&cluster, &index_a) > 1 {
        if std::time::Instant::now() > deadline {
            let listed = cluster.cli(&["SMEMBERS", &index_b]);
            let missing: Vec<String> = dialogs
                .iter()
                .chain([&moved])
                .map(|d| b.key(&d.id))
                .filter(|k| !listed.lines().any(|l| l.trim() == k))
                .map(|k| {
                    let owner = cluster.cli(&["HGET", &k, "owner"]);
                    let ttl = cluster.cli(&["PTTL", &k]);
                    format!("{k}: owner {owner:?} pttl {ttl:?}")
                })
                .collect();
            panic!(
                "records not moved: a {} b {}; not in b: {missing:?}",
                scard(&cluster, &index_a),
                scard(&cluster, &index_b)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "measured: {N} dialogs on a 3-master Cluster: index read {:?}, all moved to the adopter's index {:?}",
        report.took,
        start.elapsed()
    );
    for d in dialogs.iter().take(5) {
        assert_eq!(
            cluster.cli(&["HGET", &b.key(&d.id), "owner"]).trim(),
            index_b
        );
    }
    let again = rebalance(&b, &on_b, |_| true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((again.scanned, again.adopted), (N + 1, 0));
    let first = dialogs.first().expect("a dialog");
    assert!(b.remove(&first.id).await.unwrap_or(false));
    assert_eq!(scard(&cluster, &index_b), N);
    on_b.stop();
}

/// The repair scan of the bucket indexes (docs/REDIS.md "Repair scan"): 10,000 AORs, then
/// four buckets' expiry indexes deleted, one score raised past the true earliest expiry, two
/// counters wrong (one deleted, one off): the scan adds back every missing entry, lowers the
/// raised one, rewrites the two counters, and the stats agree again; a second scan changes
/// nothing. Prints its cost per 10,000 AORs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_scan_rebuilds_the_bucket_indexes_from_the_aors() {
    const AORS: usize = 10_000;
    const TASKS: usize = 32;
    let cluster = RedisCluster::start(
        "the_repair_scan_rebuilds_the_bucket_indexes_from_the_aors",
        3,
    );
    let store = Arc::new(store(&cluster, "rep:").await);
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let policy = RegistrarPolicy::default();
                for i in (t..AORS).step_by(TASKS) {
                    let who = aor(&format!("r{i}"));
                    let r = req(&who, "c", 1, vec![contact(format!("sip:r{i}@h"), Some(60))]);
                    store
                        .register(r, &policy, t0())
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    println!("{AORS} AORs registered in {:?}", started.elapsed());
    let zcard = |b: u32| -> usize {
        let out = cluster.cli(&["ZCARD", &format!("rep:{{b{b}}}exp")]);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {out:?}"))
    };
    let mut deleted = 0;
    for b in 0..4 {
        deleted += zcard(b);
        cluster.cli(&["DEL", &format!("rep:{{b{b}}}exp")]);
    }
    cluster.cli(&["DEL", "rep:{b4}bindings"]);
    cluster.cli(&["SET", "rep:{b5}bindings", "7"]);
    let late = cluster.cli(&["ZRANGE", "rep:{b6}exp", "0", "0"]);
    let late = late.trim().to_owned();
    let earliest = cluster
        .cli(&["ZSCORE", "rep:{b6}exp", &late])
        .trim()
        .to_owned();
    cluster.cli(&["ZADD", "rep:{b6}exp", "XX", "99999999999999", &late]);
    let stats = store.stats().await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!((stats.aors, stats.bindings), (AORS, AORS), "damaged");

    let report = store
        .repair_cluster_index()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "measured: repair scan of {} AORs on a 3-master Cluster (debug build, shared machine): {:?} ({:?} per 10,000 AORs); {report:?}",
        report.aors,
        report.took,
        report.took.mul_f64(10_000.0 / report.aors.max(1) as f64)
    );
    assert_eq!((report.aors, report.bindings), (AORS, AORS));
    assert_eq!(report.entries_fixed, deleted + 1);
    assert_eq!((report.counters_fixed, report.counters_skipped), (2, 0));
    assert_eq!(
        cluster.cli(&["ZSCORE", "rep:{b6}exp", &late]).trim(),
        earliest,
        "the raised score lowered to the earliest expiry"
    );
    let stats = store.stats().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((stats.aors, stats.bindings), (AORS, AORS));
    let again = store
        .repair_cluster_index()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((again.entries_fixed, again.counters_fixed), (0, 0));
}

/// The dead-node flow sweep with one master down (no replicas): the walk of the other masters
/// still removes the flows it can reach, and the sweep reports the failure (so the node
/// retries) within a few store timeouts instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_sweep_goes_on_past_a_dead_master_and_reports_it() {
    const AORS: u64 = 60;
    let mut cluster = RedisCluster::start("the_flow_sweep_goes_on_past_a_dead_master", 3);
    let config = |scope: &str| RedisStoreConfig {
        key_prefix: "sweepdead:".to_owned(),
        connection_scope: scope.to_owned(),
        ..RedisStoreConfig::new(cluster.url())
    };
    let n1 = RedisLocationStore::connect(&config("n1"))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let n2 = RedisLocationStore::connect(&config("n2"))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let policy = RegistrarPolicy::default();
    for i in 0..AORS {
        let who = format!("d{i}");
        let mut r = req(
            &aor(&who),
            "c",
            1,
            vec![contact(format!("sip:{who}@flow.invalid"), None)],
        );
        // One connection per AOR: a set whose AOR is on the dead master fails alone.
        r.source = source(Some(1 + i));
        n1.register(r, &policy, t0())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    cluster.stop_node(0);
    let started = std::time::Instant::now();
    let result = n2.remove_scope_connections("n1", |_| false).await;
    let took = started.elapsed();
    let mut emptied = 0;
    for i in 0..AORS {
        if n2
            .lookup(&aor(&format!("d{i}")), t0())
            .await
            .is_ok_and(|b| b.is_empty())
        {
            emptied += 1;
        }
    }
    println!("one master down: sweep {result:?} in {took:?}; {emptied} of {AORS} AORs emptied");
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(emptied > 0, "nothing removed on the live masters");
    assert!(took < Duration::from_secs(15), "{took:?}");
}

/// Ended dialogs stay ended on a Cluster too (docs/REDIS.md "Ended records are not
/// re-created"): after a BYE's removal at node b, node c's late adoption and node a's owner
/// write presenting its seen revision write nothing (`Ended`), and leave no index entry; a
/// fresh dialog's first save still creates its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_dialog_is_not_recreated_on_a_cluster() {
    use sipmesh_actors::dialog::{Revision, WriteRole};
    let cluster = RedisCluster::start("an_ended_dialog_is_not_recreated_on_a_cluster", 3);
    let a = fenced_dialogs(&cluster, "a");
    let b = fenced_dialogs(&cluster, "b");
    let c = fenced_dialogs(&cluster, "c");
    let d = dialog_state("ended-cluster@host");
    let key = a.key(&d.id);
    let first = a
        .save_checked(&d, WriteRole::Owner, None)
        .await
        .unwrap_or_else(|e| panic!("first save: {e}"));
    assert_eq!(first, Some(Revision(1)));
    assert_eq!(b.remove_as(&d.id, WriteRole::Visitor).await, Ok(true));
    assert_eq!(
        c.save_checked(&d, WriteRole::Take, None).await,
        Err(DialogStoreError::Ended)
    );
    assert_eq!(
        a.save_checked(&d, WriteRole::Owner, first).await,
        Err(DialogStoreError::Ended)
    );
    assert_eq!(
        b.save_checked(&d, WriteRole::Visitor, first).await,
        Ok(None)
    );
    assert_eq!(
        cluster.cli(&["EXISTS", &key]).trim(),
        "0",
        "nothing re-created"
    );
    for store in [&a, &b, &c] {
        let index = store.own_index().expect("index");
        assert_eq!(scard(&cluster, &index), 0, "{index} lists no ended dialog");
    }
    let fresh = dialog_state("fresh-cluster@host");
    assert_eq!(
        a.save_checked(&fresh, WriteRole::Owner, None).await,
        Ok(Some(Revision(1)))
    );
}
