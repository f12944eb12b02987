//! The pending media log (issue 6, `sipmesh_actors::media::PendingMedia`) against a real
//! `redis-server`: offered calls appear in the node's hash in order with their instance and
//! time, confirmed or ended ones go, another node reads and cleans it, and the cost on the
//! signalling path (the queue sends) is measured next to the writer's own time.

use std::time::{Duration, Instant, SystemTime};

use sipmesh_actors::location::RedisStoreConfig;
use sipmesh_actors::media::PendingMedia;
use sipmesh_test_support::RedisServer;

fn log(server: &RedisServer, lease: &str) -> PendingMedia {
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(5),
        ..RedisStoreConfig::new(server.url())
    };
    let conn = config
        .open_endpoint()
        .unwrap_or_else(|e| panic!("endpoint: {e}"));
    PendingMedia::start(conn, lease, Duration::from_secs(5))
}

fn hlen(server: &RedisServer, key: &str) -> usize {
    server
        .cli(&["HLEN", key])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("HLEN {key}: {e}"))
}

/// Polls `f` every 5 ms for at most 5 s.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offered_calls_are_logged_until_confirmed_and_a_survivor_cleans_the_rest() {
    let server = RedisServer::start();
    let node2 = log(&server, "sipmesh:node:node2");
    let key = node2.own_key().to_owned();
    assert_eq!(key, "sipmesh:media:pending:sipmesh:node:node2");
    let instance = "127.0.0.1:2223".parse().unwrap_or_else(|e| panic!("{e}"));
    let before = SystemTime::now() - Duration::from_millis(1);
    node2.add("call-a", instance);
    node2.add("call-b", instance);
    node2.add("call-c", instance);
    node2.remove("call-b");
    until("two pending calls", || hlen(&server, &key) == 2).await;
    let ttl: i64 = server
        .cli(&["PTTL", &key])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ttl > 0, "the hash has no expiry: {ttl}");

    // A survivor reads node2's hash and removes what it handled.
    let node1 = log(&server, "sipmesh:node:node1");
    let mut entries = node1.entries(&key).await.unwrap_or_else(|e| panic!("{e}"));
    entries.sort_by(|a, b| a.call_id.cmp(&b.call_id));
    let ids: Vec<&str> = entries.iter().map(|e| e.call_id.as_str()).collect();
    assert_eq!(ids, ["call-a", "call-c"]);
    assert!(
        entries
            .iter()
            .all(|e| e.instance == instance && e.created >= before)
    );
    node1
        .remove_from(&key, &["call-a".to_owned(), "call-c".to_owned()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hlen(&server, &key), 0);

    // Cost: 10,000 calls, each an add and a remove, as the signalling path sees them (two
    // queue sends), then until the writer has drained them into Redis.
    let calls = 10_000;
    let ids: Vec<String> = (0..calls).map(|i| format!("bench-{i}")).collect();
    let start = Instant::now();
    for id in &ids {
        node2.add(id, instance);
    }
    for id in &ids {
        node2.remove(id);
    }
    let queued = start.elapsed();
    node2.add("marker", instance);
    until("the writer to drain", || hlen(&server, &key) == 1).await;
    let drained = start.elapsed();
    eprintln!(
        "measured: pending media log, {calls} calls: {:.2} µs per call on the signalling \
         path (2 queue sends), writer drained after {:?} ({:.1} µs per call, debug build)",
        queued.as_secs_f64() * 1e6 / f64::from(calls),
        drained,
        drained.as_secs_f64() * 1e6 / f64::from(calls),
    );
}
