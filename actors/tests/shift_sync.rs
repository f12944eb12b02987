//! The shared CSeq offsets of failed-over calls (issue 6, `sipmesh_actors::media::ShiftSync`)
//! against a real `redis-server`: a write keeps the larger offset and announces it on the
//! channel, a node whose lease does not hold its epoch (or that is fenced) writes nothing, and
//! a removal clears the call's fields and announces it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sipmesh_actors::fence::{Fence, FixedEpoch};
use sipmesh_actors::location::RedisStoreConfig;
use sipmesh_actors::media::{SHIFTS_CHANNEL, SHIFTS_KEY, ShiftNews, ShiftSync, ShiftSyncError};
use sipmesh_test_support::RedisServer;

const LEASE: &str = "sipmesh:node:n1";

fn sync(server: &RedisServer, epoch: Option<u64>) -> ShiftSync {
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(5),
        ..RedisStoreConfig::new(server.url())
    };
    let conn = config
        .open_endpoint()
        .unwrap_or_else(|e| panic!("endpoint: {e}"));
    let fence = Fence::new(LEASE, Arc::new(FixedEpoch(epoch)));
    ShiftSync::new(conn, Some(fence), Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_only_grow_are_announced_and_fenced() {
    let server = RedisServer::start();
    server.cli(&["SET", LEASE, "7"]);
    let client = redis::Client::open(server.url()).unwrap_or_else(|e| panic!("{e}"));
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pubsub
        .subscribe(SHIFTS_CHANNEL)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut news = pubsub.into_on_message();
    let mut next = async || {
        let m = tokio::time::timeout(Duration::from_secs(2), news.next())
            .await
            .unwrap_or_else(|_| panic!("no message on the channel"))
            .unwrap_or_else(|| panic!("channel closed"));
        ShiftNews::parse(&m.get_payload::<String>().unwrap_or_default())
    };

    let owner = sync(&server, Some(7));
    owner
        .raise("c1@x", "alice1", 200)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        next().await,
        Some(ShiftNews::Raised {
            call_id: "c1@x".into(),
            tag: "alice1".into(),
            offset: 200
        })
    );
    // A lower offset (a stale retry) changes nothing and announces nothing.
    owner
        .raise("c1@x", "alice1", 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        server.cli(&["HGET", SHIFTS_KEY, "c1@x\nalice1"]).trim(),
        "200"
    );
    // A node writing with an old epoch is refused; a fenced one does not try.
    let stale = sync(&server, Some(6));
    assert!(matches!(
        stale.raise("c1@x", "bob1", 100).await,
        Err(ShiftSyncError::Redis(_))
    ));
    let fenced = sync(&server, None);
    assert!(matches!(
        fenced.raise("c1@x", "bob1", 100).await,
        Err(ShiftSyncError::Fenced)
    ));
    assert_eq!(
        server.cli(&["HEXISTS", SHIFTS_KEY, "c1@x\nbob1"]).trim(),
        "0"
    );
    // Any node reads the whole set (a start, the periodic reload).
    let reader = sync(&server, None);
    let all = reader.load().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        all,
        vec![ShiftNews::Raised {
            call_id: "c1@x".into(),
            tag: "alice1".into(),
            offset: 200
        }]
    );
    // The call ended: its fields go and the others hear it.
    reader
        .remove("c1@x", &["alice1".to_owned()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next().await, Some(ShiftNews::Gone("c1@x".into())));
    assert!(
        reader
            .load()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
}
