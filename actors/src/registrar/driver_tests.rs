//! Driven calls ([`Driver`]) over a store that does not answer at once, as Redis does not:
//! an idle actor's job runs on the caller's task, and the AOR's requests stay serialised with
//! the ones that queue at the actor meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use sipmesh_protocol::proxy::StoreFailure;
use sipmesh_protocol::registrar::{
    Aor, Binding, RegisterOutcome, RegisterRequest, RegistrarPolicy,
};

use super::{Driver, Registrar, RegistrarConfig};
use crate::location::{LocationStore, MemoryLocationStore, StoreError, StoreStats};

use super::tests::requests::{aor, contact, req};

/// The memory store behind one yield per call: answers later, like a networked store; counts
/// its lookups.
#[derive(Debug, Default)]
struct LaterStore(MemoryLocationStore, AtomicUsize);

impl LocationStore for LaterStore {
    async fn register(
        &self,
        req: RegisterRequest,
        policy: &RegistrarPolicy,
        now: std::time::SystemTime,
    ) -> Result<RegisterOutcome, StoreError> {
        tokio::task::yield_now().await;
        self.0.register(req, policy, now).await
    }

    async fn lookup(
        &self,
        aor: &Aor,
        now: std::time::SystemTime,
    ) -> Result<Vec<Binding>, StoreError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
        self.0.lookup(aor, now).await
    }

    async fn remove_connection(
        &self,
        connection: sipmesh_protocol::peer::ConnectionId,
    ) -> Result<usize, StoreError> {
        self.0.remove_connection(connection).await
    }

    async fn sweep_expired(&self, now: std::time::SystemTime) -> Result<usize, StoreError> {
        self.0.sweep_expired(now).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.0.stats().await
    }
}

async fn registrar() -> Registrar<LaterStore> {
    match Registrar::start(Arc::new(LaterStore::default()), RegistrarConfig::default()).await {
        Ok(r) => r,
        Err(e) => panic!("starting the registrar: {e}"),
    }
}

fn one(aor: &Aor, call_id: &str, uri: &str) -> RegisterRequest {
    req(aor, call_id, 1, vec![contact(uri, Some(3600))])
}

fn policy() -> RegistrarPolicy {
    RegistrarPolicy {
        max_contacts: 100,
        ..RegistrarPolicy::default()
    }
}

/// Waits until the AOR's actor has finished its jobs (it counts one done just after answering).
async fn until_idle(r: &Registrar<LaterStore>, aor: &Aor) {
    for _ in 0..10_000 {
        if r.directory.is_idle(aor) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the actor of {aor} never became idle");
}

/// Drives `driver` until `rx` got `n` answers.
async fn drive<T>(driver: &mut Driver, rx: &mut mpsc::UnboundedReceiver<T>, n: usize) -> Vec<T> {
    let mut got = Vec::new();
    while got.len() < n {
        tokio::select! {
            () = driver.advance(), if !driver.is_empty() => {}
            Some(answer) = rx.recv() => got.push(answer),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actors_register_is_driven_by_the_caller_and_serialised_with_its_queue() {
    let r = registrar().await;
    let alice = aor("alice");
    // The first REGISTER creates the actor, which loads the AOR: through its mailbox.
    assert!(
        r.register(one(&alice, "a0", "sip:a0@192.0.2.1"), policy())
            .await
            .is_ok()
    );
    assert!(r.has_actor(&alice));
    until_idle(&r, &alice).await;

    let mut driver = Driver::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let done = tx.clone();
    r.register_driven(
        one(&alice, "a1", "sip:a1@192.0.2.1"),
        policy(),
        &mut driver,
        move |res| {
            let _ = done.send(res.map(|o| o.bindings.len()));
        },
    );
    // The actor was idle: the job is the caller's to drive, nothing answered yet.
    assert_eq!(driver.len(), 1);
    // Meanwhile another REGISTER for the AOR queues at the actor, which waits for the driven
    // one (it holds the gate) before it runs: the store sees them in order.
    let (queued_tx, queued_rx) = oneshot::channel();
    r.register_with(
        one(&alice, "a2", "sip:a2@192.0.2.1"),
        policy(),
        move |res| {
            let _ = queued_tx.send(res.map(|o| o.bindings.len()));
        },
    );
    let mut other = Driver::new();
    let done = tx.clone();
    r.register_driven(
        one(&alice, "a3", "sip:a3@192.0.2.1"),
        policy(),
        &mut other,
        move |res| {
            let _ = done.send(res.map(|o| o.bindings.len()));
        },
    );
    // Not idle any more (a job is in progress): this one went to the actor's mailbox too.
    assert!(other.is_empty());
    assert_eq!(drive(&mut driver, &mut rx, 1).await, [Ok(2)]);
    assert_eq!(queued_rx.await.ok(), Some(Ok(3)));
    assert_eq!(drive(&mut other, &mut rx, 1).await, [Ok(4)]);

    until_idle(&r, &alice).await;
    // A lookup of an idle actor with a valid cache is answered at once, on the caller's task.
    let (lookup_tx, mut lookup_rx) = mpsc::unbounded_channel();
    r.lookup_driven(alice.clone(), &mut driver, move |res| {
        let _ = lookup_tx.send(res.map(|b| b.len()));
    });
    assert!(driver.is_empty());
    assert_eq!(lookup_rx.try_recv().ok(), Some(Ok(4)));
    assert_eq!(r.lookup(&alice).await.map(|b| b.len()), Ok(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_driven_and_queued_registers_keep_every_binding() {
    let r = registrar().await;
    let alice = aor("alice");
    let mut drivers = [Driver::new(), Driver::new()];
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<usize, StoreFailure>>();
    const N: usize = 40;
    for i in 0..N {
        let done = tx.clone();
        let request = one(&alice, &format!("c{i}"), &format!("sip:c{i}@192.0.2.1"));
        let reply = move |res: Result<RegisterOutcome, StoreFailure>| {
            let _ = done.send(res.map(|o| o.bindings.len()));
        };
        match i % 3 {
            0 => r.register_with(request, policy(), reply),
            n => r.register_driven(request, policy(), &mut drivers[n - 1], reply),
        }
    }
    let [first, second] = &mut drivers;
    let mut answers = Vec::new();
    while answers.len() < N {
        tokio::select! {
            () = first.advance(), if !first.is_empty() => {}
            () = second.advance(), if !second.is_empty() => {}
            Some(answer) = rx.recv() => answers.push(answer),
        }
    }
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    // Serialised: each REGISTER saw all the earlier ones, so the counts are 1..=N once each.
    let mut counts: Vec<usize> = answers.into_iter().flatten().collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=N).collect::<Vec<_>>());
    assert_eq!(r.lookup(&alice).await.map(|b| b.len()), Ok(N));
    assert_eq!(r.live_actors(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driven_call_dropped_unfinished_answers_503_and_frees_the_actor() {
    let r = registrar().await;
    let alice = aor("alice");
    assert!(
        r.register(one(&alice, "a0", "sip:a0@192.0.2.1"), policy())
            .await
            .is_ok()
    );
    until_idle(&r, &alice).await;
    let mut driver = Driver::new();
    let (tx, rx) = oneshot::channel();
    r.register_driven(
        one(&alice, "a1", "sip:a1@192.0.2.1"),
        policy(),
        &mut driver,
        move |res| {
            let _ = tx.send(res.map(|o| o.bindings.len()));
        },
    );
    assert_eq!(driver.len(), 1);
    assert!(!r.directory.is_idle(&alice));
    // The driving task stops without ever polling it.
    drop(driver);
    assert_eq!(rx.await.ok(), Some(Err(StoreFailure::Unavailable)));
    until_idle(&r, &alice).await;
    assert_eq!(
        r.register(one(&alice, "a2", "sip:a2@192.0.2.1"), policy())
            .await
            .map(|o| o.bindings.len()),
        Ok(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_started_by_a_register_reads_nothing_and_caches_the_outcome() {
    let r = registrar().await;
    let bob = aor("bob");
    // A binding the node has no actor for (another node wrote it, or an actor that stopped).
    let seeded = r
        .store()
        .0
        .register(
            one(&bob, "b0", "sip:b0@192.0.2.2"),
            &policy(),
            std::time::SystemTime::now(),
        )
        .await;
    assert!(seeded.is_ok());
    assert!(!r.has_actor(&bob));

    let mut driver = Driver::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    r.register_driven(
        one(&bob, "b1", "sip:b1@192.0.2.2"),
        policy(),
        &mut driver,
        move |res| {
            let _ = tx.send(res.map(|o| o.bindings.len()));
        },
    );
    // The new actor does not load the AOR first, so the caller drives the REGISTER at once.
    assert!(r.has_actor(&bob));
    assert_eq!(driver.len(), 1);
    assert_eq!(drive(&mut driver, &mut rx, 1).await, [Ok(2)]);
    assert_eq!(r.store().1.load(Ordering::Relaxed), 0, "no store read");

    // The outcome (the AOR's whole set, the seeded binding included) is the actor's cache.
    until_idle(&r, &bob).await;
    let (lookup_tx, mut lookup_rx) = mpsc::unbounded_channel();
    r.lookup_driven(bob.clone(), &mut driver, move |res| {
        let _ = lookup_tx.send(res.map(|b| b.len()));
    });
    assert!(driver.is_empty());
    assert_eq!(lookup_rx.try_recv().ok(), Some(Ok(2)));
    assert_eq!(
        r.store().1.load(Ordering::Relaxed),
        0,
        "served from the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_started_by_a_lookup_loads_the_aor() {
    let r = registrar().await;
    let carol = aor("carol");
    assert_eq!(r.lookup(&carol).await, Ok(Vec::new()));
    // The load at start, then (the cache empty) nothing more: the lookup is served from it.
    assert!(r.store().1.load(Ordering::Relaxed) >= 1);
}
