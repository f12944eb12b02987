//! The registrar actors over the memory store: real actors on a tokio runtime, paused time
//! where idle periods and expiry timers are involved.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorId;
use tokio::sync::oneshot;

use sipmesh_protocol::proxy::StoreFailure;
use sipmesh_protocol::registrar::{Aor, RegisterRequest, RegistrarPolicy};

use super::aor_actor::{AorMsg, Inspection};
use super::{Registrar, RegistrarConfig, WallClock};
use crate::engine::HookError;
use crate::location::{LocationStore, MemoryLocationStore};

#[path = "../../tests/support/requests.rs"]
#[allow(dead_code, unreachable_pub)] // shared with the integration tests, which use all of it
pub(super) mod requests;

use requests::{aor, contact, req};

async fn registrar(config: RegistrarConfig) -> Registrar<MemoryLocationStore> {
    match Registrar::start(Arc::new(MemoryLocationStore::new()), config).await {
        Ok(r) => r,
        Err(e) => panic!("starting the registrar: {e}"),
    }
}

fn test_config() -> RegistrarConfig {
    RegistrarConfig {
        clock: WallClock::tokio(),
        ..RegistrarConfig::default()
    }
}

fn one(aor: &Aor, call_id: &str, cseq: u32, uri: &str, expires: u32) -> RegisterRequest {
    req(aor, call_id, cseq, vec![contact(uri, Some(expires))])
}

async fn register_ok(r: &Registrar<MemoryLocationStore>, request: RegisterRequest) -> usize {
    match r.register(request, RegistrarPolicy::default()).await {
        Ok(outcome) => outcome.bindings.len(),
        Err(e) => panic!("REGISTER failed: {e:?}"),
    }
}

async fn contacts(r: &Registrar<MemoryLocationStore>, aor: &Aor) -> Vec<String> {
    match r.lookup(aor).await {
        Ok(bindings) => {
            let mut uris: Vec<String> = bindings
                .iter()
                .map(|b| String::from_utf8_lossy(&b.contact).into_owned())
                .collect();
            uris.sort();
            uris
        }
        Err(e) => panic!("lookup failed: {e:?}"),
    }
}

async fn inspect(r: &Registrar<MemoryLocationStore>, aor: &Aor) -> Inspection {
    let Some(actor) = r.directory.live_actor(aor) else {
        panic!("no actor for {aor}")
    };
    let (tx, rx) = oneshot::channel();
    if actor.send_message(AorMsg::Inspect(tx)).is_err() {
        panic!("actor of {aor} is gone");
    }
    match rx.await {
        Ok(i) => i,
        Err(_) => panic!("actor of {aor} did not answer"),
    }
}

/// [`inspect`] of whichever actor the AOR has once one answers (the one listed may be dying).
async fn inspect_eventually(r: &Registrar<MemoryLocationStore>, aor: &Aor) -> Inspection {
    for _ in 0..100 {
        if let Some(actor) = r.directory.live_actor(aor) {
            let (tx, rx) = oneshot::channel();
            if actor.send_message(AorMsg::Inspect(tx)).is_ok()
                && let Ok(Ok(i)) = tokio::time::timeout(Duration::from_millis(50), rx).await
            {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no live actor of {aor} answered")
}

fn actor_id(r: &Registrar<MemoryLocationStore>, aor: &Aor) -> Option<ActorId> {
    r.directory.live_actor(aor).map(|a| a.get_id())
}

/// Polls (in paused time, so instantly) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

/// The two paths a request can take: inline on the caller's task (idle actor, memory store),
/// or through the actor's mailbox.
fn paths() -> [RegistrarConfig; 3] {
    [(true, false), (false, false), (true, true)].map(|(inline_when_idle, inline_without_actor)| {
        RegistrarConfig {
            inline_when_idle,
            inline_without_actor,
            ..RegistrarConfig::default()
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_requests_need_no_actor_until_a_hook_does() {
    let r = registrar(RegistrarConfig {
        inline_without_actor: true,
        ..RegistrarConfig::default()
    })
    .await;
    let alice = aor("alice");
    register_ok(&r, one(&alice, "a", 1, "sip:alice@192.0.2.1", 3600)).await;
    assert_eq!(contacts(&r, &alice).await, ["sip:alice@192.0.2.1"]);
    assert_eq!(r.lookup(&aor("nobody")).await, Ok(Vec::new()));
    assert_eq!(r.live_actors(), 0);
    assert!(matches!(
        r.inject_panic(&aor("nobody")).await,
        Err(HookError::NotFound(_))
    ));
    // The hook creates the actor (from the store) to make it panic; it is restarted.
    assert_eq!(r.inject_panic(&alice).await, Ok(()));
    assert_eq!(inspect_eventually(&r, &alice).await.cached, 1);
    assert_eq!(r.live_actors(), 1);
    assert_eq!(contacts(&r, &alice).await, ["sip:alice@192.0.2.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registers_for_one_aor_are_serialised() {
    for config in paths() {
        concurrent_registers(config).await;
    }
}

async fn concurrent_registers(config: RegistrarConfig) {
    let r = registrar(config).await;
    let alice = aor("alice");
    let n = 12;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (r, alice) = (r.clone(), alice.clone());
            tokio::spawn(async move {
                let uri = format!("sip:alice@192.0.2.{i}");
                register_ok(&r, one(&alice, &format!("call-{i}"), 1, &uri, 3600)).await
            })
        })
        .collect();
    let mut sizes = Vec::new();
    for t in tasks {
        match t.await {
            Ok(size) => sizes.push(size),
            Err(e) => panic!("task: {e}"),
        }
    }
    sizes.sort_unstable();
    // Each REGISTER saw every one applied before it: the outcomes are 1, 2, ..., n bindings.
    assert_eq!(sizes, (1..=n).collect::<Vec<_>>());
    assert_eq!(contacts(&r, &alice).await.len(), n);
    assert_eq!(r.live_actors(), usize::from(!config.inline_without_actor));
}

#[tokio::test(start_paused = true)]
async fn idle_actor_stops_and_is_recreated_from_the_store() {
    let r = registrar(RegistrarConfig {
        idle_after: Duration::from_secs(1),
        ..test_config()
    })
    .await;
    let alice = aor("alice");
    register_ok(&r, one(&alice, "c", 1, "sip:alice@192.0.2.1", 3600)).await;
    let first = actor_id(&r, &alice);
    assert!(first.is_some());

    // Activity keeps it alive past its idle period.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(contacts(&r, &alice).await, ["sip:alice@192.0.2.1"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(actor_id(&r, &alice), first, "stopped despite activity");

    // Idle: it stops, and its binding stays in the store.
    tokio::time::sleep(Duration::from_secs(2)).await;
    until("idle actor stopped", || r.live_actors() == 0).await;
    let stats = r.store().stats().await;
    assert_eq!(stats.map(|s| s.bindings), Ok(1));

    // The next request re-creates it from the store.
    assert_eq!(contacts(&r, &alice).await, ["sip:alice@192.0.2.1"]);
    let second = actor_id(&r, &alice);
    assert!(second.is_some() && second != first);
    assert_eq!(inspect(&r, &alice).await.cached, 1);
}

#[tokio::test(start_paused = true)]
async fn expiry_timer_rearms_to_the_earliest_binding_and_ignores_stale_generations() {
    expiry_timer(true).await;
}

#[tokio::test(start_paused = true)]
async fn expiry_timer_without_cached_bindings_rereads_the_store() {
    expiry_timer(false).await;
}

async fn expiry_timer(cache_lookups: bool) {
    let r = registrar(RegistrarConfig {
        idle_after: Duration::from_secs(3600),
        cache_lookups,
        ..test_config()
    })
    .await;
    let alice = aor("alice");
    register_ok(&r, one(&alice, "a", 1, "sip:alice@192.0.2.1", 600)).await;
    let g1 = inspect(&r, &alice).await.generation;
    // A refresh that moves the earliest expiry later keeps the armed timer.
    register_ok(&r, one(&alice, "a", 2, "sip:alice@192.0.2.1", 900)).await;
    assert_eq!(inspect(&r, &alice).await.generation, g1);
    // An earlier expiry re-arms: a new generation.
    register_ok(&r, one(&alice, "b", 1, "sip:alice@192.0.2.2", 60)).await;
    let after = inspect(&r, &alice).await;
    assert_eq!(after.cached, 2);
    assert!(after.generation > g1);

    // The 60 s binding expires: the timer prunes it and re-arms for the 900 s one.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let pruned = inspect(&r, &alice).await;
    assert_eq!(pruned.cached, 1);
    assert!(pruned.generation > after.generation);
    assert_eq!(contacts(&r, &alice).await, ["sip:alice@192.0.2.1"]);

    // A stale timer message (an old generation) changes nothing.
    let Some(actor) = r.directory.live_actor(&alice) else {
        panic!("actor gone")
    };
    assert!(
        actor
            .send_message(AorMsg::Expire { generation: g1 })
            .is_ok()
    );
    let unchanged = inspect(&r, &alice).await;
    assert_eq!(unchanged.generation, pruned.generation);
    assert_eq!(unchanged.cached, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicked_actor_restarts_from_the_store_and_siblings_are_untouched() {
    // Siblings need actors to be checked: the paths where every active AOR has one.
    for config in paths().into_iter().filter(|c| !c.inline_without_actor) {
        panic_restart(config).await;
    }
}

async fn panic_restart(config: RegistrarConfig) {
    let r = registrar(config).await;
    let (alice, bob) = (aor("alice"), aor("bob"));
    register_ok(&r, one(&alice, "a", 1, "sip:alice@192.0.2.1", 3600)).await;
    register_ok(&r, one(&alice, "a2", 1, "sip:alice@192.0.2.2", 3600)).await;
    register_ok(&r, one(&bob, "b", 1, "sip:bob@192.0.2.9", 3600)).await;
    let (alice_before, bob_before) = (actor_id(&r, &alice), actor_id(&r, &bob));
    let bob_state = inspect(&r, &bob).await;

    assert_eq!(r.inject_panic(&alice).await, Ok(()));
    until("alice's actor replaced", || {
        actor_id(&r, &alice).is_some_and(|id| Some(id) != alice_before)
    })
    .await;
    // The new actor loaded both bindings from the store.
    assert_eq!(inspect(&r, &alice).await.cached, 2);
    assert_eq!(
        contacts(&r, &alice).await,
        ["sip:alice@192.0.2.1", "sip:alice@192.0.2.2"]
    );
    // Bob's actor is the same one, with its state.
    assert_eq!(actor_id(&r, &bob), bob_before);
    let bob_after = inspect(&r, &bob).await;
    assert_eq!(bob_after.done, bob_state.done);
    assert_eq!(contacts(&r, &bob).await, ["sip:bob@192.0.2.9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_a_restart_are_answered_correctly() {
    for config in paths() {
        racing_restart(config).await;
    }
}

async fn racing_restart(config: RegistrarConfig) {
    let r = registrar(config).await;
    let alice = aor("alice");
    register_ok(&r, one(&alice, "a", 1, "sip:alice@192.0.2.1", 3600)).await;
    for round in 0..5u32 {
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let (r2, alice2) = (r.clone(), alice.clone());
            tasks.push(tokio::spawn(async move {
                let (r, alice) = (r2, alice2);
                if i % 4 == 0 {
                    // Refreshes over one Call-ID with growing CSeqs may be reordered by the
                    // race; fresh Call-IDs are order-free.
                    let call_id = format!("r{round}-{i}");
                    let request = one(&alice, &call_id, 1, "sip:alice@192.0.2.1", 3600);
                    r.register(request, RegistrarPolicy::default())
                        .await
                        .map(|o| o.bindings.len())
                } else {
                    r.lookup(&alice).await.map(|b| b.len())
                }
            }));
            if i == 20 {
                assert_eq!(r.inject_panic(&alice).await, Ok(()));
            }
        }
        for t in tasks {
            match t.await {
                Ok(result) => assert_eq!(result, Ok(1), "round {round}"),
                Err(e) => panic!("task: {e}"),
            }
        }
    }
}

/// A store whose REGISTERs never finish in time.
#[derive(Debug, Default)]
struct SlowStore(MemoryLocationStore);

impl LocationStore for SlowStore {
    fn register(
        &self,
        req: RegisterRequest,
        policy: &RegistrarPolicy,
        now: std::time::SystemTime,
    ) -> impl Future<
        Output = Result<sipmesh_protocol::registrar::RegisterOutcome, crate::location::StoreError>,
    > + Send {
        let _ = (req, policy, now);
        std::future::pending()
    }

    fn lookup(
        &self,
        aor: &Aor,
        now: std::time::SystemTime,
    ) -> impl Future<
        Output = Result<Vec<sipmesh_protocol::registrar::Binding>, crate::location::StoreError>,
    > + Send {
        self.0.lookup(aor, now)
    }

    fn remove_connection(
        &self,
        connection: sipmesh_protocol::peer::ConnectionId,
    ) -> impl Future<Output = Result<usize, crate::location::StoreError>> + Send {
        self.0.remove_connection(connection)
    }

    fn sweep_expired(
        &self,
        now: std::time::SystemTime,
    ) -> impl Future<Output = Result<usize, crate::location::StoreError>> + Send {
        self.0.sweep_expired(now)
    }

    fn stats(
        &self,
    ) -> impl Future<Output = Result<crate::location::StoreStats, crate::location::StoreError>> + Send
    {
        self.0.stats()
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_and_a_full_queue_answer_unavailable_in_time() {
    let config = RegistrarConfig {
        call_timeout: Duration::from_millis(300),
        max_queued: 3,
        ..test_config()
    };
    let r = match Registrar::start(Arc::new(SlowStore::default()), config).await {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let alice = aor("alice");
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..6u32)
        .map(|i| {
            let (r, alice) = (r.clone(), alice.clone());
            tokio::spawn(async move {
                let request = one(&alice, &format!("c{i}"), 1, "sip:alice@192.0.2.1", 3600);
                r.register(request, RegistrarPolicy::default()).await
            })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(result) => assert_eq!(result.map(|o| o.changed), Err(StoreFailure::Unavailable)),
            Err(e) => panic!("task: {e}"),
        }
    }
    // Every one was answered by its deadline, none waited for the 10 s store.
    assert!(started.elapsed() <= Duration::from_millis(300) + Duration::from_millis(50));
    // Lookups still work (this store reads fast).
    assert_eq!(r.lookup(&alice).await, Ok(Vec::new()));
    assert_eq!(r.live_actors(), 1);
}
