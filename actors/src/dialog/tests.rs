//! Dialog actors over the memory store: lifecycle, supervision (a panicking actor is
//! restarted from the store, its siblings untouched), spawning from the store for a dialog
//! with no live actor, the timeout, and the Redis record layout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sipmesh_protocol::dialog::{
    DialogConfig, DialogEvent, DialogId, DialogPhase, DialogSnapshot, DialogState, EndReason,
    InDialogUpdate, Leg,
};
use sipmesh_protocol::message::Method;
use sipmesh_protocol::peer::{ConnectionId, Destination, Transport};

use super::store::{DialogStore, DialogStoreError, WriteRole};
use super::{Dialogs, MemoryDialogStore, record};

fn flow(addr: &str, connection: Option<u64>) -> Destination {
    Destination {
        transport: if connection.is_some() {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        addr: addr.parse().unwrap(),
        local: Some("127.0.0.1:5060".parse().unwrap()),
        connection: connection.map(ConnectionId),
    }
}

fn snapshot(call: &str) -> DialogSnapshot {
    DialogSnapshot {
        id: DialogId::new(call, "a1", "b1"),
        caller: Leg {
            uri: "sip:alice@example.com".to_owned(),
            tag: "a1".to_owned(),
            target: Some("sip:alice@10.0.0.1:5060".to_owned()),
            route_set: vec!["<sip:127.0.0.1:5060;lr>".to_owned()],
            cseq: Some(1),
            flow: Some(flow("10.0.0.1:5060", None)),
            allow: None,
        },
        callee: Leg {
            uri: "sip:bob@example.com".to_owned(),
            tag: "b1".to_owned(),
            target: Some("sip:bob@10.0.0.2:5070;transport=tcp".to_owned()),
            route_set: vec!["<sip:127.0.0.1:5060;lr>".to_owned()],
            cseq: None,
            flow: Some(flow("10.0.0.2:5070", Some(7))),
            allow: None,
        },
        session_expires: None,
    }
}

fn confirmed(call: &str) -> DialogEvent {
    DialogEvent::Confirmed(Box::new(snapshot(call)))
}

fn bye(id: DialogId) -> DialogEvent {
    DialogEvent::Terminated {
        id,
        reason: EndReason::Bye,
    }
}

/// Polls `cond` until it holds or two seconds pass.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stored(store: &MemoryDialogStore, id: &DialogId) -> Option<DialogState> {
    store.load(id).await.unwrap()
}

async fn start(cfg: DialogConfig) -> (Dialogs, Arc<MemoryDialogStore>) {
    let store = Arc::new(MemoryDialogStore::new());
    let dialogs = Dialogs::start(store.clone(), cfg).await.unwrap();
    (dialogs, store)
}

#[tokio::test]
async fn confirmed_dialog_is_stored_and_bye_from_the_callee_removes_it() {
    let (dialogs, store) = start(DialogConfig::default()).await;
    let id = DialogId::new("c1", "a1", "b1");
    dialogs.handle(DialogEvent::Early(Box::new(snapshot("c1"))));
    eventually("an actor", async || dialogs.is_live(&id)).await;
    assert!(
        stored(&store, &id).await.is_none(),
        "early dialogs are not stored"
    );
    dialogs.handle(confirmed("c1"));
    eventually("the record", async || stored(&store, &id).await.is_some()).await;
    let s = stored(&store, &id).await.unwrap();
    assert_eq!(s.phase, DialogPhase::Confirmed);
    assert_eq!(s.timeout, DialogConfig::default().default_timeout);

    dialogs.handle(bye(id.reversed()));
    eventually("removal", async || {
        stored(&store, &id).await.is_none() && !dialogs.is_live(&id)
    })
    .await;
    assert_eq!(dialogs.live(), 0);
}

#[tokio::test]
async fn refresh_updates_the_stored_record() {
    let (dialogs, store) = start(DialogConfig::default()).await;
    let id = DialogId::new("c2", "a1", "b1");
    dialogs.handle(confirmed("c2"));
    dialogs.handle(DialogEvent::Refreshed(Box::new(InDialogUpdate {
        id: id.reversed(),
        method: Method::Update,
        cseq: 3,
        requester_target: Some("sip:bob@10.9.9.9".to_owned()),
        responder_target: None,
        requester_flow: None,
        session_expires: Some(Duration::from_secs(90)),
    })));
    eventually("the refreshed record", async || {
        stored(&store, &id)
            .await
            .is_some_and(|s| s.callee.cseq == Some(3))
    })
    .await;
    let s = stored(&store, &id).await.unwrap();
    assert_eq!(s.callee.target.as_deref(), Some("sip:bob@10.9.9.9"));
    assert_eq!(s.session_expires, Some(Duration::from_secs(90)));
}

#[tokio::test]
async fn rejected_early_dialog_leaves_nothing() {
    let (dialogs, store) = start(DialogConfig::default()).await;
    let id = DialogId::new("c3", "a1", "b1");
    dialogs.handle(DialogEvent::Early(Box::new(snapshot("c3"))));
    dialogs.handle(DialogEvent::Terminated {
        id: id.clone(),
        reason: EndReason::Rejected(486),
    });
    eventually("the actor to stop", async || {
        !dialogs.is_live(&id) && dialogs.live() == 0
    })
    .await;
    assert!(store.is_empty());
}

#[tokio::test]
async fn a_panicking_actor_is_restarted_from_the_store_and_siblings_are_untouched() {
    let (dialogs, store) = start(DialogConfig::default()).await;
    let a = DialogId::new("pa", "a1", "b1");
    let b = DialogId::new("pb", "a1", "b1");
    dialogs.handle(confirmed("pa"));
    dialogs.handle(confirmed("pb"));
    eventually("both stored", async || {
        stored(&store, &a).await.is_some() && stored(&store, &b).await.is_some()
    })
    .await;
    dialogs.inject_panic(&a).await.unwrap();
    // The supervisor replaces the actor; the record is still there and the sibling lives.
    eventually("a restarted actor", async || {
        dialogs.is_live(&a) && dialogs.live() == 2
    })
    .await;
    assert!(stored(&store, &a).await.is_some());
    // The restarted actor knows the dialog: a BYE removes its record.
    dialogs.handle(bye(a.clone()));
    eventually("a removed", async || stored(&store, &a).await.is_none()).await;
    eventually("a's actor gone", async || dialogs.live() == 1).await;
    assert!(dialogs.is_live(&b));
    assert!(stored(&store, &b).await.is_some());
    assert!(
        dialogs
            .inject_panic(&DialogId::new("nope", "x", "y"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_event_without_a_live_actor_is_served_from_the_store() {
    let store = Arc::new(MemoryDialogStore::new());
    let cfg = DialogConfig::default();
    // A record left by a previous process.
    let state = DialogState::from_event(&confirmed("r1"), SystemTime::now(), &cfg).unwrap();
    store.save(&state).await.unwrap();
    let dialogs = Dialogs::start(store.clone(), cfg).await.unwrap();
    dialogs.handle(bye(state.id.reversed()));
    eventually("removal", async || {
        stored(&store, &state.id).await.is_none() && dialogs.live() == 0
    })
    .await;
}

#[tokio::test]
async fn a_dialog_ends_at_its_timeout() {
    let cfg = DialogConfig {
        default_timeout: Duration::from_millis(100),
        early_timeout: Duration::from_millis(100),
        session_grace: Duration::ZERO,
    };
    let (dialogs, store) = start(cfg).await;
    let id = DialogId::new("t1", "a1", "b1");
    dialogs.handle(confirmed("t1"));
    eventually("stored", async || stored(&store, &id).await.is_some()).await;
    eventually("timed out", async || {
        stored(&store, &id).await.is_none() && dialogs.live() == 0
    })
    .await;
}

#[test]
fn record_fields_roundtrip() {
    let cfg = DialogConfig::default();
    let mut state = DialogState::from_event(
        &confirmed("c@h"),
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        &cfg,
    )
    .unwrap();
    state.media_session = Some("rtpengine-1:abc".to_owned());
    state.media_negotiation = Some(sipmesh_protocol::dialog::MediaNegotiation {
        offer: "d7:command5:offer3:sdp5:v=0\r\ne".to_owned(),
        answer: "d7:command6:answer3:sdp5:v=0\r\ne".to_owned(),
    });
    state.session_expires = Some(Duration::from_secs(1800));
    state
        .callee
        .route_set
        .push("<sip:p2.example.com;lr>".to_owned());
    let fields: HashMap<String, String> = record::encode(&state).into_iter().collect();
    assert_eq!(
        fields["callee_flow"],
        "tcp:10.0.0.2:5070;local=127.0.0.1:5060;conn=7"
    );
    assert_eq!(fields["state"], "confirmed");
    assert_eq!(record::decode(&fields), Ok(state));
    let mut broken = fields;
    broken.insert("caller_flow".to_owned(), "pigeon:1".to_owned());
    assert!(record::decode(&broken).is_err());
}

#[test]
fn flows_roundtrip() {
    for f in [
        flow("10.0.0.1:5060", None),
        flow("[::1]:5061", Some(3)),
        Destination {
            transport: Transport::Wss,
            addr: "192.0.2.1:443".parse().unwrap(),
            local: None,
            connection: Some(ConnectionId(u64::MAX)),
        },
    ] {
        assert_eq!(record::decode_flow(&record::encode_flow(&f)), Some(f));
    }
    assert_eq!(record::decode_flow("udp"), None);
}

#[tokio::test]
async fn the_ack_comes_after_the_record_is_stored() {
    let (dialogs, store) = start(DialogConfig::default()).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let check = store.clone();
    dialogs.handle_acked(confirmed("ack1"), move |stored| {
        let _ = tx.send(stored);
    });
    let stored = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .unwrap()
        .unwrap();
    assert!(stored);
    assert!(
        check
            .load(&DialogId::new("ack1", "a1", "b1"))
            .await
            .unwrap()
            .is_some()
    );
}

/// A store whose every call fails, like Redis while it is down.
struct DownStore;

impl DialogStore for DownStore {
    fn save<'a>(&'a self, _: &'a DialogState) -> super::store::StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Err(down())))
    }
    fn load<'a>(&'a self, _: &'a DialogId) -> super::store::StoreFuture<'a, Option<DialogState>> {
        Box::pin(std::future::ready(Err(down())))
    }
    fn remove<'a>(&'a self, _: &'a DialogId) -> super::store::StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Err(down())))
    }
    fn kind(&self) -> &'static str {
        "down"
    }
}

fn down() -> DialogStoreError {
    DialogStoreError::Unavailable(crate::location::UnavailableReason::Disconnected)
}

#[tokio::test]
async fn a_failing_store_acks_false_at_once_and_the_dialog_still_ends() {
    let dialogs = Dialogs::start(Arc::new(DownStore), DialogConfig::default())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    dialogs.handle_acked(confirmed("down1"), move |stored| {
        let _ = tx.send(stored);
    });
    let stored = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored);
    let id = DialogId::new("down1", "a1", "b1");
    assert!(dialogs.is_live(&id));
    dialogs.handle(bye(id));
    eventually("the actor to stop", async || dialogs.live() == 0).await;
}

/// A memory store where another node holds every record's owner claim once `taken` is set:
/// owner writes are refused ([`DialogStoreError::StaleOwner`]), visitors' go through; a
/// hand-over always reaches the owner.
#[derive(Default)]
struct ClaimedStore {
    inner: MemoryDialogStore,
    taken: std::sync::atomic::AtomicBool,
    handed: std::sync::atomic::AtomicUsize,
}

impl ClaimedStore {
    fn refuses(&self, role: WriteRole) -> bool {
        role == WriteRole::Owner && self.taken.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl DialogStore for ClaimedStore {
    fn save<'a>(&'a self, s: &'a DialogState) -> super::store::StoreFuture<'a, ()> {
        self.save_as(s, WriteRole::Owner)
    }
    fn save_as<'a>(
        &'a self,
        s: &'a DialogState,
        role: WriteRole,
    ) -> super::store::StoreFuture<'a, ()> {
        if self.refuses(role) {
            return Box::pin(std::future::ready(Err(DialogStoreError::StaleOwner)));
        }
        self.inner.save(s)
    }
    fn load<'a>(&'a self, id: &'a DialogId) -> super::store::StoreFuture<'a, Option<DialogState>> {
        self.inner.load(id)
    }
    fn remove<'a>(&'a self, id: &'a DialogId) -> super::store::StoreFuture<'a, bool> {
        self.remove_as(id, WriteRole::Owner)
    }
    fn remove_as<'a>(
        &'a self,
        id: &'a DialogId,
        role: WriteRole,
    ) -> super::store::StoreFuture<'a, bool> {
        if self.refuses(role) {
            return Box::pin(std::future::ready(Err(DialogStoreError::StaleOwner)));
        }
        self.inner.remove(id)
    }
    fn hand_over<'a>(&'a self, _: &'a DialogId, _: &'a str) -> super::store::StoreFuture<'a, bool> {
        self.handed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(true)))
    }
    fn claimed_elsewhere<'a>(&'a self, _: &'a DialogId) -> super::store::StoreFuture<'a, bool> {
        let taken = self.handed.load(std::sync::atomic::Ordering::SeqCst) > 0;
        Box::pin(std::future::ready(Ok(taken)))
    }
    fn kind(&self) -> &'static str {
        "claimed"
    }
}

#[tokio::test]
async fn a_stale_owner_ends_nothing_at_its_timeout_and_sends_no_bye() {
    let cfg = DialogConfig {
        default_timeout: Duration::from_millis(150),
        early_timeout: Duration::from_millis(150),
        session_grace: Duration::ZERO,
    };
    let store = Arc::new(ClaimedStore::default());
    let dialogs = Dialogs::start(store.clone(), cfg).await.unwrap();
    let byes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&byes);
    dialogs.set_timeout_hook(Arc::new(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let id = DialogId::new("stale1", "a1", "b1");
    dialogs.handle(confirmed("stale1"));
    eventually("stored", async || {
        store.inner.load(&id).await.unwrap().is_some()
    })
    .await;
    // Another node adopts the dialog (takes the claim) before this node's timer fires.
    store.taken.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually("the actor stopped", async || dialogs.live() == 0).await;
    assert_eq!(byes.load(std::sync::atomic::Ordering::SeqCst), 0, "no BYE");
    assert!(
        store.inner.load(&id).await.unwrap().is_some(),
        "the record stays"
    );
}

#[tokio::test]
async fn a_refused_owner_refresh_is_stored_as_a_visitor_and_the_actor_stops_timing() {
    let store = Arc::new(ClaimedStore::default());
    let dialogs = Dialogs::start(store.clone(), DialogConfig::default())
        .await
        .unwrap();
    let id = DialogId::new("stale2", "a1", "b1");
    dialogs.handle(confirmed("stale2"));
    eventually("stored", async || {
        store.inner.load(&id).await.unwrap().is_some()
    })
    .await;
    store.taken.store(true, std::sync::atomic::Ordering::SeqCst);
    dialogs.handle(DialogEvent::Refreshed(Box::new(InDialogUpdate {
        id: id.clone(),
        method: Method::Update,
        cseq: 5,
        requester_target: Some("sip:alice@10.0.0.9:5060".to_owned()),
        responder_target: None,
        requester_flow: None,
        session_expires: None,
    })));
    eventually("a visitor now", async || {
        dialogs.live() == 0 && dialogs.live_with_visitors() == 1
    })
    .await;
    let d = store.inner.load(&id).await.unwrap().unwrap();
    assert_eq!(d.caller.target.as_deref(), Some("sip:alice@10.0.0.9:5060"));
}

#[tokio::test]
async fn a_dialog_confirmed_at_a_non_owner_is_handed_over_after_the_ack() {
    let store = Arc::new(ClaimedStore::default());
    let dialogs = Dialogs::start(store.clone(), DialogConfig::default())
        .await
        .unwrap();
    dialogs.set_owner_of(Arc::new(|_| Some("c:node:other".to_owned())));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handed = Arc::clone(&store);
    dialogs.handle_acked(confirmed("ho1"), move |stored| {
        // The 2xx is released before any hand-over.
        let _ = tx.send((
            stored,
            handed.handed.load(std::sync::atomic::Ordering::SeqCst),
        ));
    });
    let (stored, handed_at_ack) = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .unwrap()
        .unwrap();
    assert!(stored);
    assert_eq!(handed_at_ack, 0);
    eventually("handed over", async || {
        store.handed.load(std::sync::atomic::Ordering::SeqCst) == 1 && dialogs.live() == 0
    })
    .await;
    assert_eq!(dialogs.live_with_visitors(), 1, "a visitor until idle");
}
