//! The dialog stores against the same test body: the memory store, and the Redis store on a
//! real `redis-server` started by the test (Debian package; a missing binary fails the test).
//! Save, load (either orientation), overwrite, remove, key expiry, and an outage.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sipmesh_actors::dialog::store::load_either;
use sipmesh_actors::dialog::{
    DialogStore, DialogStoreError, EXPIRY_MARGIN, MemoryDialogStore, RedisDialogStore,
};
use sipmesh_actors::location::RedisStoreConfig;
use sipmesh_protocol::dialog::{
    DialogConfig, DialogEvent, DialogId, DialogPhase, DialogSnapshot, DialogState, Leg,
};
use sipmesh_protocol::peer::{ConnectionId, Destination, Transport};
use sipmesh_test_support::RedisServer;

fn state(call: &str) -> DialogState {
    let leg = |tag: &str, route: Vec<String>, connection: Option<u64>| Leg {
        uri: format!("sip:{tag}@example.com"),
        tag: tag.to_owned(),
        target: Some(format!("sip:{tag}@192.0.2.1:5060;transport=tcp")),
        route_set: route,
        cseq: Some(7),
        flow: Some(Destination {
            transport: Transport::Tcp,
            addr: "192.0.2.1:5060".parse().unwrap(),
            local: Some("127.0.0.1:5060".parse().unwrap()),
            connection: connection.map(ConnectionId),
        }),
        allow: Some("INVITE, ACK, BYE".to_owned()),
    };
    let routes = vec![
        "<sip:p1.example.com;lr>".to_owned(),
        "\"Proxy, Two\" <sip:p2.example.com;lr>".to_owned(),
    ];
    let snapshot = DialogSnapshot {
        id: DialogId::new(call, "a1", "b1"),
        caller: leg("a1", routes.iter().rev().cloned().collect(), None),
        callee: leg("b1", routes, Some(42)),
        session_expires: Some(Duration::from_secs(1800)),
    };
    let mut s = DialogState::from_event(
        &DialogEvent::Confirmed(Box::new(snapshot)),
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_250),
        &DialogConfig::default(),
    )
    .unwrap();
    s.media_session = Some("rtpengine-a:xyz".to_owned());
    s
}

async fn roundtrip(store: &dyn DialogStore) {
    let s = state("rt@host");
    assert_eq!(store.load(&s.id).await.unwrap(), None);
    store.save(&s).await.unwrap();
    assert_eq!(store.load(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        load_either(store, &s.id.reversed()).await.unwrap(),
        Some(s.clone()),
        "found from the callee's orientation"
    );
    let mut refreshed = s.clone();
    refreshed.callee.target = None;
    refreshed.callee.cseq = Some(9);
    store.save(&refreshed).await.unwrap();
    assert_eq!(
        store.load(&s.id).await.unwrap(),
        Some(refreshed),
        "an overwrite drops fields that went away"
    );
    assert!(store.remove(&s.id).await.unwrap());
    assert!(!store.remove(&s.id).await.unwrap());
    assert_eq!(store.load(&s.id).await.unwrap(), None);
}

#[tokio::test]
async fn memory_roundtrip() {
    roundtrip(&MemoryDialogStore::new()).await;
}

fn redis_store(server: &RedisServer, timeout: Duration) -> RedisDialogStore {
    let config = RedisStoreConfig {
        timeout,
        ..RedisStoreConfig::new(server.url())
    };
    RedisDialogStore::new(&config, "test:dlg:").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn redis_roundtrip_and_expiry() {
    let server = RedisServer::start();
    let store = redis_store(&server, Duration::from_secs(5));
    roundtrip(&store).await;

    let s = state("ttl@host");
    store.save(&s).await.unwrap();
    assert_eq!(s.phase, DialogPhase::Confirmed);
    let key = store.key(&s.id);
    assert_eq!(key, "test:dlg:ttl@host;a1;b1");
    let out = std::process::Command::new("redis-cli")
        .args(["-u", &server.url(), "PTTL", &key])
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    let pttl: u128 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let want = (s.timeout + EXPIRY_MARGIN).as_millis();
    assert!(pttl <= want && pttl > want - 5_000, "PTTL {pttl} vs {want}");
}

#[tokio::test]
async fn redis_outage_fails_fast_and_recovers() {
    let mut server = RedisServer::start();
    let store = Arc::new(redis_store(&server, Duration::from_millis(500)));
    let s = state("down@host");
    store.save(&s).await.unwrap();
    server.stop();
    let started = std::time::Instant::now();
    assert!(matches!(
        store.save(&s).await,
        Err(DialogStoreError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while store.save(&s).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.load(&s.id).await.unwrap(), Some(s));
}
