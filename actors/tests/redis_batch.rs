//! Several REGISTERs in one call (`register_many.lua`, docs/REDIS.md "Script cost"): the
//! REGISTERs of one pipelined batch, for many AORs and with repeated AORs, go as one `FCALL`
//! and leave the same stored state (values, expiry index, counter, connection index) and give
//! the same outcomes as the same REGISTERs applied one by one; one REGISTER's error (CSeq order,
//! contact limit) leaves the others alone; the fence is checked once for the whole call; without
//! Redis Functions the batch goes as one `EVALSHA` of the same body.

#[path = "support/requests.rs"]
mod requests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use requests::{aor, contact, req, source, t0};
use sipmesh_actors::fence::{Fence, FixedEpoch};
use sipmesh_actors::location::{
    LocationStore, RedisLocationStore, RedisStoreConfig, StoreError, UnavailableReason,
};
use sipmesh_protocol::registrar::{RegisterRequest, RegistrarPolicy, RequestContacts};
use sipmesh_test_support::RedisServer;

const LEASE_KEY: &str = "sipmesh:test:node:a";

async fn store_on(server: &RedisServer, fence: Option<u64>) -> RedisLocationStore {
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(10),
        ..RedisStoreConfig::new(server.url())
    };
    let store = RedisLocationStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let fence = fence.map(|epoch| Fence::new(LEASE_KEY, Arc::new(FixedEpoch(Some(epoch)))));
    store.with_fence(fence)
}

/// A deterministic mix of REGISTERs over 30 AORs, each AOR several times: first
/// registrations, refreshes, a repeated CSeq (out of order), second and third Contacts (the
/// third over the limit of 2), flows over TCP connections, removals and wildcard removals.
fn requests() -> Vec<(RegisterRequest, SystemTime)> {
    let mut out = Vec::new();
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut cseq = [0u32; 30];
    for i in 0..120 {
        let user = usize::try_from(next(30)).unwrap_or(0);
        let who = aor(&format!("u{user}"));
        let at = t0() + Duration::from_millis(i * 10);
        let kind = next(8);
        let seq = cseq.get_mut(user).map_or(0, |c| {
            // kind 1 repeats the CSeq of the Call-ID's last REGISTER with another Contact: out
            // of order.
            if kind != 1 {
                *c += 1;
            }
            *c
        });
        let mut r = match kind {
            0 | 2 => req(
                &who,
                "main",
                seq,
                vec![contact(format!("sip:u{user}@a.invalid"), None)],
            ),
            // Another Contact than the REGISTER whose CSeq it repeats: a conflicting request,
            // not a copy of an applied one (which would succeed, `is_applied_repeat`).
            1 => req(
                &who,
                "main",
                seq,
                vec![contact(format!("sip:u{user}@r{i}.invalid"), None)],
            ),
            3 => req(
                &who,
                &format!("second{user}"),
                1 + seq,
                vec![contact(format!("sip:u{user}@b.invalid"), Some(600))],
            ),
            4 => req(
                &who,
                &format!("third{i}"),
                1,
                vec![contact(format!("sip:u{user}@c{i}.invalid"), None)],
            ),
            5 => {
                let mut r = req(
                    &who,
                    "main",
                    seq,
                    vec![contact(
                        format!("sip:u{user}@flow.invalid;transport=tcp"),
                        None,
                    )],
                );
                r.source = source(Some(u64::try_from(user).unwrap_or(0) % 4));
                r
            }
            6 => req(
                &who,
                "main",
                seq,
                vec![contact(format!("sip:u{user}@a.invalid"), Some(0))],
            ),
            _ => {
                let mut r = req(&who, "main", seq, Vec::new());
                r.contacts = RequestContacts::Star;
                r.expires_header = Some(0);
                r
            }
        };
        if kind == 4 && next(2) == 0 {
            // Two Contacts at once: over the limit when one is already bound.
            if let RequestContacts::List(list) = &mut r.contacts {
                list.push(contact(format!("sip:u{user}@d{i}.invalid"), None));
            }
        }
        out.push((r, at));
    }
    out
}

fn policy() -> RegistrarPolicy {
    RegistrarPolicy {
        max_contacts: 2,
        ..RegistrarPolicy::default()
    }
}

/// An outcome in comparable form.
fn outcome(r: &Result<sipmesh_protocol::registrar::RegisterOutcome, StoreError>) -> String {
    match r {
        Ok(o) => {
            let mut contacts: Vec<String> = o
                .bindings
                .iter()
                .map(|b| format!("{:?}@{:?}", b.contact, b.expires_at))
                .collect();
            contacts.sort();
            format!("ok changed={} {contacts:?}", o.changed)
        }
        Err(e) => format!("{e:?}"),
    }
}

/// Every key of the server with its content (values, expiry index with scores, counter,
/// connection sets).
fn dump(server: &RedisServer) -> Vec<String> {
    let listed = server.cli(&["KEYS", "sipmesh:loc:*"]);
    let mut keys: Vec<&str> = listed.lines().filter(|k| !k.is_empty()).collect();
    keys.sort_unstable();
    keys.iter()
        .map(|k| {
            let content = match server.cli(&["TYPE", k]).trim() {
                "string" => server.cli(&["GET", k]),
                "zset" => server.cli(&["ZRANGE", k, "0", "-1", "WITHSCORES"]),
                "set" => {
                    let members = server.cli(&["SMEMBERS", k]);
                    let mut m: Vec<&str> = members.lines().collect();
                    m.sort_unstable();
                    m.join("\n")
                }
                other => format!("type {other}"),
            };
            format!("{k} => {content}")
        })
        .collect()
}

/// Loads the library (the first call of a fresh server loads it and retries), so that the
/// batch under test is not split by a retry.
async fn warm_up(store: &RedisLocationStore) {
    let r = req(
        &aor("warm"),
        "w",
        1,
        vec![contact("sip:warm@w.invalid", None)],
    );
    let warm = store.register(r, &policy(), t0()).await;
    assert!(warm.is_ok(), "warm-up: {warm:?}");
}

fn fcalls(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn batched_equals_one_by_one(fence: Option<u64>) {
    let one = RedisServer::start();
    let many = RedisServer::start();
    for server in [&one, &many] {
        if let Some(epoch) = fence {
            server.cli(&["SET", LEASE_KEY, &epoch.to_string()]);
        }
    }
    let store_one = store_on(&one, fence).await;
    let store_many = store_on(&many, fence).await;
    warm_up(&store_one).await;
    warm_up(&store_many).await;
    let policy = policy();

    let mut sequential = Vec::new();
    for (r, at) in requests() {
        sequential.push(outcome(&store_one.register(r, &policy, at).await));
    }

    many.cli(&["CONFIG", "RESETSTAT"]);
    // One task per REGISTER, spawned in order: on this one-thread runtime they run in that
    // order, each queues its REGISTER at its first poll, and the collector (woken by the
    // first) runs after them all: one batch, in request order, one call.
    let tasks: Vec<_> = requests()
        .into_iter()
        .map(|(r, at)| {
            let store = store_many.clone();
            tokio::spawn(async move { outcome(&store.register(r, &policy, at).await) })
        })
        .collect();
    let together: Vec<String> = join_all(tasks)
        .await
        .into_iter()
        .map(|t| t.unwrap_or_else(|e| format!("task failed: {e}")))
        .collect();
    let calls = fcalls(&many);
    assert_eq!(calls, 1, "120 REGISTERs in one batch took {calls} FCALLs");
    for (i, (a, b)) in sequential.iter().zip(&together).enumerate() {
        assert_eq!(a, b, "REGISTER #{i}: one by one vs in one call");
    }
    assert!(
        sequential.iter().any(|o| o.contains("CSeqOutOfOrder")),
        "the mix has a CSeq error"
    );
    assert!(
        sequential.iter().any(|o| o.contains("TooManyContacts")),
        "the mix has a contact-limit error"
    );
    assert_eq!(dump(&one), dump(&many), "stored state");
    let stats_one = store_one.stats().await.map_err(|e| format!("{e}"));
    let stats_many = store_many.stats().await.map_err(|e| format!("{e}"));
    assert_eq!(stats_one, stats_many);
}

#[tokio::test]
async fn one_call_for_a_batch_gives_the_same_state_as_one_by_one() {
    batched_equals_one_by_one(None).await;
}

#[tokio::test]
async fn fenced_batch_gives_the_same_state_as_one_by_one() {
    batched_equals_one_by_one(Some(7)).await;
}

#[tokio::test]
async fn a_stale_fence_refuses_the_whole_call() {
    let server = RedisServer::start();
    server.cli(&["SET", LEASE_KEY, "8"]);
    let store = store_on(&server, Some(7)).await;
    let policy = policy();
    let results = join_all((0..20).map(|i| {
        let who = aor(&format!("s{i}"));
        let r = req(
            &who,
            "c",
            1,
            vec![contact(format!("sip:s{i}@x.invalid"), None)],
        );
        store.register(r, &policy, t0())
    }))
    .await;
    for r in &results {
        assert!(
            matches!(r, Err(StoreError::Unavailable(UnavailableReason::Fenced))),
            "{r:?}"
        );
    }
    let left = server.cli(&["KEYS", "sipmesh:loc:*"]);
    assert!(left.trim().is_empty(), "written while fenced: {left}");
}

#[tokio::test]
async fn without_functions_a_batch_goes_as_one_evalsha() {
    // A Redis < 7, played by a 7.0 server with both commands renamed away: the store falls back
    // to EVALSHA, and the several-AORs call loads its own script on NOSCRIPT.
    let server = RedisServer::start_with(&[
        "--rename-command",
        "FCALL",
        "",
        "--rename-command",
        "FUNCTION",
        "",
    ]);
    let store = store_on(&server, None).await;
    warm_up(&store).await;
    let policy = policy();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            let who = aor(&format!("e{}", i % 20));
            let r = req(
                &who,
                "c",
                1 + i / 20,
                vec![contact(format!("sip:e{i}@x.invalid"), None)],
            );
            tokio::spawn(async move { store.register(r, &policy, t0()).await })
        })
        .collect();
    for (i, done) in join_all(tasks).await.into_iter().enumerate() {
        assert!(matches!(done, Ok(Ok(_))), "REGISTER #{i}: {done:?}");
    }
    for i in 0..20 {
        let found = store
            .lookup(&aor(&format!("e{i}")), t0())
            .await
            .unwrap_or_else(|e| panic!("lookup: {e}"));
        assert_eq!(found.len(), 2, "bindings of e{i}");
    }
    let stats = server.cli(&["INFO", "commandstats"]);
    let calls: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // The warm-up (NOSCRIPT + retry), then the batch (NOSCRIPT for the second script + retry).
    assert!((3..=4).contains(&calls), "EVALSHA calls: {calls}\n{stats}");
}
