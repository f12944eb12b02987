//! The register script as a Redis Functions library (docs/REDIS.md "Script cost"): loaded on
//! first use (on every master of a Cluster), reloaded when the server lost it, and `EVALSHA`
//! when the server has no `FCALL`/`FUNCTION` (a Redis < 7, played by a 7.0 server with both
//! commands renamed away).

#[path = "support/requests.rs"]
mod requests;

use std::time::Duration;

use requests::{aor, contact, req, t0};
use sipmesh_actors::location::{LocationStore, RedisLocationStore, RedisStoreConfig};
use sipmesh_protocol::registrar::RegistrarPolicy;
use sipmesh_test_support::RedisServer;

async fn store_on(server: &RedisServer) -> RedisLocationStore {
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(10),
        ..RedisStoreConfig::new(server.url())
    };
    RedisLocationStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Registers `user` with Call-ID `call_id` and checks the binding is there.
async fn register_ok(store: &RedisLocationStore, user: &str, call_id: &str) {
    let who = aor(user);
    let r = req(
        &who,
        call_id,
        1,
        vec![contact(format!("sip:{user}@h.invalid"), None)],
    );
    let outcome = store.register(r, &RegistrarPolicy::default(), t0()).await;
    assert!(outcome.is_ok(), "register {user}: {outcome:?}");
    let found = store
        .lookup(&who, t0())
        .await
        .unwrap_or_else(|e| panic!("lookup: {e}"));
    assert_eq!(found.len(), 1, "bindings of {user}");
}

#[tokio::test]
async fn register_runs_as_a_function_and_survives_a_flush() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    register_ok(&store, "alice", "a1").await;
    let listed = server.cli(&["FUNCTION", "LIST"]);
    assert!(
        listed.contains("sipmesh_register_"),
        "FUNCTION LIST: {listed}"
    );
    // The server loses the library (as after a restart without persistence or a failover to
    // a master that never had it): the store loads it again and retries.
    server.cli(&["FUNCTION", "FLUSH"]);
    register_ok(&store, "bob", "b1").await;
    let listed = server.cli(&["FUNCTION", "LIST"]);
    assert!(
        listed.contains("sipmesh_register_"),
        "FUNCTION LIST: {listed}"
    );
    let scripts = server.cli(&["INFO", "commandstats"]);
    assert!(
        !scripts.contains("cmdstat_evalsha:"),
        "EVALSHA used: {scripts}"
    );
}

#[tokio::test]
async fn register_falls_back_to_evalsha_without_functions() {
    let server = RedisServer::start_with(&[
        "--rename-command",
        "FCALL",
        "",
        "--rename-command",
        "FUNCTION",
        "",
    ]);
    let store = store_on(&server).await;
    register_ok(&store, "alice", "a1").await;
    register_ok(&store, "bob", "b1").await;
    let stats = server.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_evalsha:"), "no EVALSHA: {stats}");
}

#[tokio::test]
async fn a_cluster_gets_the_library_on_every_master() {
    let cluster = sipmesh_test_support::RedisCluster::start("functions_on_every_master", 3);
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(10),
        ..RedisStoreConfig::new(cluster.url())
    };
    let store = RedisLocationStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    register_ok(&store, "alice", "a1").await;
    for (i, node) in cluster.nodes().iter().enumerate() {
        let listed = node.cli(&["FUNCTION", "LIST"]);
        assert!(
            listed.contains("sipmesh_register_"),
            "master {i}: FUNCTION LIST: {listed}"
        );
    }
}
