//! The cluster keys against a real `redis-server`: lease acquisition and renewal, a lost lease,
//! the member registry, and the fenced write refusing a stale epoch.

use std::net::SocketAddr;
use std::time::Duration;

use sipmesh_cluster::id::{Epoch, NodeId};
use sipmesh_cluster::lease::{LeaseReply, LeaseRequest};
use sipmesh_cluster::store::{ClusterStore, StoreError};
use sipmesh_test_support::RedisServer;

const TTL: Duration = Duration::from_millis(3000);

fn store(redis: &RedisServer) -> ClusterStore {
    ClusterStore::new(&redis.url(), "sipmesh:", Duration::from_millis(500)).expect("store")
}

fn addr() -> SocketAddr {
    "127.0.0.11:7000".parse().expect("addr")
}

#[tokio::test]
async fn leases_grow_epochs_and_fence_stale_writes() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let a = NodeId::new("a").expect("id");

    let first = store
        .lease(&a, addr(), TTL, LeaseRequest::Acquire)
        .await
        .expect("acquire");
    assert_eq!(first, LeaseReply::Acquired(Epoch(1)));
    let renewed = store
        .lease(&a, addr(), TTL, LeaseRequest::Renew(Epoch(1)))
        .await
        .expect("renew");
    assert_eq!(renewed, LeaseReply::Renewed);

    // The owner writes with its epoch.
    store
        .fenced_set(&a, Epoch(1), "sipmesh:test:x", "v1")
        .await
        .expect("fenced write with the current epoch");

    // A new incarnation (restart) takes a higher epoch: the old one can neither renew nor write.
    let second = store
        .lease(&a, addr(), TTL, LeaseRequest::Acquire)
        .await
        .expect("re-acquire");
    assert_eq!(second, LeaseReply::Acquired(Epoch(2)));
    let stale = store
        .lease(&a, addr(), TTL, LeaseRequest::Renew(Epoch(1)))
        .await
        .expect("stale renew");
    assert_eq!(stale, LeaseReply::Lost);
    let refused = store.fenced_set(&a, Epoch(1), "sipmesh:test:x", "v0").await;
    assert!(
        matches!(refused, Err(StoreError::StaleEpoch)),
        "{refused:?}"
    );
    store
        .fenced_set(&a, Epoch(2), "sipmesh:test:x", "v2")
        .await
        .expect("fenced write with the new epoch");

    // The registry lists the member with its lease.
    let registry = store.registry().await.expect("registry");
    assert_eq!(registry.len(), 1);
    assert_eq!(registry[0].node, a);
    assert_eq!(registry[0].addr, addr());
    let (epoch, ttl) = registry[0].lease.expect("leased");
    assert_eq!(epoch, Epoch(2));
    assert!(ttl <= TTL && ttl > Duration::from_millis(2000), "{ttl:?}");
}

#[tokio::test]
async fn a_lapsed_lease_cannot_be_renewed_or_written_with() {
    let redis = RedisServer::start();
    let store = store(&redis);
    let b = NodeId::new("b").expect("id");
    let short = Duration::from_millis(100);
    let reply = store
        .lease(&b, addr(), short, LeaseRequest::Acquire)
        .await
        .expect("acquire");
    assert_eq!(reply, LeaseReply::Acquired(Epoch(1)));
    // Poll until Redis expired the key (bounded by 2 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let registry = store.registry().await.expect("registry");
        if registry.first().is_some_and(|e| e.lease.is_none()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "lease never lapsed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let renew = store
        .lease(&b, addr(), TTL, LeaseRequest::Renew(Epoch(1)))
        .await
        .expect("renew");
    assert_eq!(renew, LeaseReply::Lost);
    let refused = store.fenced_set(&b, Epoch(1), "sipmesh:test:y", "v").await;
    assert!(
        matches!(refused, Err(StoreError::StaleEpoch)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_within_the_timeout() {
    let mut redis = RedisServer::start();
    let store = store(&redis);
    redis.stop();
    let started = std::time::Instant::now();
    let result = store
        .lease(
            &NodeId::new("c").expect("id"),
            addr(),
            TTL,
            LeaseRequest::Acquire,
        )
        .await;
    assert!(result.is_err(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// The same keys on a real 3-master Redis Cluster (`redis+cluster://`): the prefix becomes the
/// hash tag `{sipmesh:}`, so lease, epoch and registry share one slot and the scripts run
/// unchanged; epochs grow, a stale renewal is lost, the registry reads the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_registry_on_a_redis_cluster() {
    let cluster = sipmesh_test_support::RedisCluster::start("cluster_store_leases", 3);
    let store =
        ClusterStore::new(&cluster.url(), "sipmesh:", Duration::from_secs(2)).expect("store");
    assert_eq!(store.prefix(), "{sipmesh:}");
    assert_eq!(
        store.lease_key(&NodeId::new("a").expect("id")),
        "{sipmesh:}node:a"
    );
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let node = NodeId::new(name).expect("id");
        let reply = store
            .lease(&node, addr(), TTL, LeaseRequest::Acquire)
            .await
            .expect("acquire");
        assert_eq!(reply, LeaseReply::Acquired(Epoch(1)), "node {i}");
    }
    let a = NodeId::new("a").expect("id");
    let second = store
        .lease(&a, addr(), TTL, LeaseRequest::Acquire)
        .await
        .expect("re-acquire");
    assert_eq!(second, LeaseReply::Acquired(Epoch(2)));
    let stale = store
        .lease(&a, addr(), TTL, LeaseRequest::Renew(Epoch(1)))
        .await
        .expect("stale renew");
    assert_eq!(stale, LeaseReply::Lost);
    let renewed = store
        .lease(&a, addr(), TTL, LeaseRequest::Renew(Epoch(2)))
        .await
        .expect("renew");
    assert_eq!(renewed, LeaseReply::Renewed);
    let registry = store.registry().await.expect("registry");
    assert_eq!(registry.len(), 3);
    assert!(registry.iter().all(|e| e.lease.is_some()), "{registry:?}");
    // A fenced write on a key of the same slot.
    store
        .fenced_set(&a, Epoch(2), "{sipmesh:}test:x", "v")
        .await
        .expect("fenced write");
    let refused = store
        .fenced_set(&a, Epoch(1), "{sipmesh:}test:x", "v0")
        .await;
    assert!(
        matches!(refused, Err(StoreError::StaleEpoch)),
        "{refused:?}"
    );
    assert_eq!(cluster.cli(&["GET", "{sipmesh:}test:x"]).trim(), "v");
}
