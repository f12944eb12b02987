//! Record revisions and ended records (issue 5, stale owner copies) against a real
//! `redis-server` (Debian package; a missing binary fails the test): every fenced write of a
//! dialog record bumps its `rev` field, a write presenting an older revision is refused
//! (`STALE_REV`, nothing written), and the owner's actor, whose copy a visitor at another node
//! made stale, reloads and re-applies its event instead of overwriting the visitor's change.
//! Ended dialogs stay ended (docs/REDIS.md "Ended records are not re-created"): once a BYE
//! through another node removed a record, a late adoption (`take`) or owner write presenting
//! the revision its writer had seen writes nothing and reports [`DialogStoreError::Ended`], and
//! the dialog's actor stops instead of living on; a dialog's first save still creates its
//! record.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sipmesh_actors::dialog::{
    DialogStore, DialogStoreError, Dialogs, RedisDialogStore, Revision, WriteRole,
};
use sipmesh_actors::fence::{Fence, FixedEpoch};
use sipmesh_actors::location::RedisStoreConfig;
use sipmesh_protocol::dialog::{
    DialogConfig, DialogEvent, DialogId, DialogSnapshot, DialogState, InDialogUpdate, Leg,
};
use sipmesh_protocol::message::Method;
use sipmesh_test_support::RedisServer;

fn snapshot(call: &str) -> DialogSnapshot {
    let leg = |tag: &str| Leg {
        uri: format!("sip:{tag}@example.com"),
        tag: tag.to_owned(),
        target: Some(format!("sip:{tag}@192.0.2.1")),
        route_set: Vec::new(),
        cseq: Some(1),
        flow: None,
        allow: None,
    };
    DialogSnapshot {
        id: DialogId::new(call, "a1", "b1"),
        caller: leg("a1"),
        callee: leg("b1"),
        session_expires: None,
    }
}

fn dialog(call: &str) -> DialogState {
    DialogState::from_event(
        &DialogEvent::Confirmed(Box::new(snapshot(call))),
        SystemTime::now(),
        &DialogConfig::default(),
    )
    .expect("dialog state")
}

/// A store fenced on `sipmesh:node:<node>` at epoch 1 (the lease key set to match).
fn store(server: &RedisServer, node: &str) -> RedisDialogStore {
    let lease = format!("sipmesh:node:{node}");
    server.cli(&["SET", &lease, "1"]);
    let config = RedisStoreConfig {
        timeout: Duration::from_secs(5),
        ..RedisStoreConfig::new(server.url())
    };
    RedisDialogStore::new(&config, "sipmesh:dlg:")
        .expect("store")
        .with_fence(Some(Fence::new(lease, Arc::new(FixedEpoch(Some(1))))))
}

/// A target refresh (re-INVITE) of `id` (oriented from its sender) with a new Contact.
fn refresh(id: DialogId, cseq: u32, target: &str) -> DialogEvent {
    DialogEvent::Refreshed(Box::new(InDialogUpdate {
        id,
        method: Method::Invite,
        cseq,
        requester_target: Some(target.to_owned()),
        responder_target: None,
        requester_flow: None,
        session_expires: None,
    }))
}

/// Polls `ok` until it holds (at most 5 s).
async fn until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dialog_writes_bump_the_revision_and_an_outdated_one_writes_nothing() {
    let server = RedisServer::start();
    let a = store(&server, "a");
    let b = store(&server, "b");
    let d = dialog("rev@host");
    let key = a.key(&d.id);

    let first = a
        .save_checked(&d, WriteRole::Owner, None)
        .await
        .expect("A creates the record");
    assert_eq!(first, Some(Revision(1)));
    let (_, rev) = b.load_revised(&d.id).await.expect("load").expect("record");
    assert_eq!(rev, Some(Revision(1)));

    // A visitor at B rewrites it from what it read: revision 2, A's claim kept.
    let mut visited = d.clone();
    visited.caller.target = Some("sip:a1@198.51.100.7".to_owned());
    assert_eq!(
        b.save_checked(&visited, WriteRole::Visitor, rev).await,
        Ok(Some(Revision(2)))
    );
    assert_eq!(
        server.cli(&["HGET", &key, "claim"]).trim(),
        "sipmesh:node:a/1"
    );

    // A still presents revision 1: refused, the stored bytes unchanged.
    let stored = server.cli(&["HGETALL", &key]);
    let mut owners = d.clone();
    owners.callee.target = Some("sip:b1@203.0.113.9".to_owned());
    assert_eq!(
        a.save_checked(&owners, WriteRole::Owner, first).await,
        Err(DialogStoreError::Outdated)
    );
    assert_eq!(server.cli(&["HGETALL", &key]), stored, "nothing written");
    // A claim does not change the fields, so not the revision either.
    assert_eq!(
        a.save_checked(&owners, WriteRole::Take, None).await,
        Ok(Some(Revision(2)))
    );
    // An unchecked write (no revision known) still goes through, as before.
    assert_eq!(
        a.save_checked(&owners, WriteRole::Owner, None).await,
        Ok(Some(Revision(3)))
    );
    let (now, rev) = a.load_revised(&d.id).await.expect("load").expect("record");
    assert_eq!(now.callee.target, owners.callee.target);
    assert_eq!(rev, Some(Revision(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitors_dialog_change_survives_a_later_owner_event() {
    let server = RedisServer::start();
    let a = store(&server, "a");
    let b = store(&server, "b");
    let on_a = Dialogs::start(Arc::new(a.clone()), DialogConfig::default())
        .await
        .expect("dialogs at A");
    on_a.set_owner_check(Arc::new(|_: &DialogId| true));
    let on_b = Dialogs::start(Arc::new(b.clone()), DialogConfig::default())
        .await
        .expect("dialogs at B");
    on_b.set_owner_check(Arc::new(|_: &DialogId| false));

    // A confirms the dialog and runs it.
    let id = DialogId::new("visit@host", "a1", "b1");
    on_a.handle(DialogEvent::Confirmed(Box::new(snapshot("visit@host"))));
    until("A's record", async || {
        a.load(&id).await.ok().flatten().is_some()
    })
    .await;

    // The caller's re-INVITE passes through B (a visitor): a new caller Contact, CSeq 2.
    on_b.handle(refresh(id.clone(), 2, "sip:a1@198.51.100.7"));
    until("B's change stored", async || {
        a.load(&id)
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.caller.cseq == Some(2))
    })
    .await;
    assert_eq!(on_b.live(), 0, "B only visits the dialog");

    // Then the callee's re-INVITE passes through A, the owner, whose copy predates B's write.
    on_a.handle(refresh(id.reversed(), 5, "sip:b1@203.0.113.9"));
    until("A's change stored", async || {
        a.load(&id)
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.callee.cseq == Some(5))
    })
    .await;
    let (stored, rev) = a.load_revised(&id).await.expect("load").expect("record");
    assert_eq!(
        stored.caller.target.as_deref(),
        Some("sip:a1@198.51.100.7"),
        "the visitor's change survived the owner's write"
    );
    assert_eq!(stored.caller.cseq, Some(2));
    assert_eq!(stored.callee.target.as_deref(), Some("sip:b1@203.0.113.9"));
    assert_eq!(rev, Some(Revision(3)), "three writes");
    assert_eq!(
        server.cli(&["HGET", &a.key(&id), "claim"]).trim(),
        "sipmesh:node:a/1",
        "A still owns it"
    );
    assert!(on_a.runs_timer(&id));
    on_a.stop();
    on_b.stop();
}

#[tokio::test]
async fn a_late_claim_or_revised_write_does_not_recreate_an_ended_dialog() {
    let server = RedisServer::start();
    let a = store(&server, "a");
    let b = store(&server, "b");
    let c = store(&server, "c");
    let d = dialog("ended@host");
    let key = a.key(&d.id);

    // A's first save creates the record (no revision presented).
    let first = a
        .save_checked(&d, WriteRole::Owner, None)
        .await
        .expect("first save");
    assert_eq!(first, Some(Revision(1)));
    // C (an adopter) and A's actor hold copies; then a BYE through B removes the record.
    let (copy, seen) = c.load_revised(&d.id).await.expect("load").expect("record");
    assert_eq!(seen, first);
    assert_eq!(b.remove_as(&d.id, WriteRole::Visitor).await, Ok(true));
    assert_eq!(server.cli(&["EXISTS", &key]).trim(), "0");

    // The late claim (C's adoption) and A's owner write with its seen revision write nothing.
    assert_eq!(
        c.save_checked(&copy, WriteRole::Take, None).await,
        Err(DialogStoreError::Ended)
    );
    assert_eq!(
        c.save_checked(&copy, WriteRole::Take, seen).await,
        Err(DialogStoreError::Ended)
    );
    assert_eq!(
        a.save_checked(&d, WriteRole::Owner, first).await,
        Err(DialogStoreError::Ended)
    );
    // A visitor's refresh writes nothing either (as before), without an error.
    assert_eq!(b.save_checked(&d, WriteRole::Visitor, seen).await, Ok(None));
    assert_eq!(
        server.cli(&["EXISTS", &key]).trim(),
        "0",
        "nothing re-created"
    );
    for node in ["a", "b", "c"] {
        let index = format!("sipmesh:dlg:by-owner:sipmesh:node:{node}");
        assert_eq!(
            server.cli(&["SISMEMBER", &index, &key]).trim(),
            "0",
            "{node}'s index does not list the ended dialog"
        );
    }

    // A fresh dialog's first save (no revision) still creates its record.
    let fresh = dialog("fresh@host");
    assert_eq!(
        a.save_checked(&fresh, WriteRole::Owner, None).await,
        Ok(Some(Revision(1)))
    );
    assert_eq!(server.cli(&["EXISTS", &a.key(&fresh.id)]).trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_actor_stops_when_its_late_write_or_claim_finds_the_dialog_ended() {
    let server = RedisServer::start();
    let a = store(&server, "a");
    let b = store(&server, "b");
    let on_a = Dialogs::start(Arc::new(a.clone()), DialogConfig::default())
        .await
        .expect("dialogs at A");
    on_a.set_owner_check(Arc::new(|_: &DialogId| true));

    // Two dialogs confirmed and run at A (no "ended" notices here: no subscription).
    let refreshed = DialogId::new("late-refresh@host", "a1", "b1");
    let adopted = DialogId::new("late-claim@host", "a1", "b1");
    for id in [&refreshed, &adopted] {
        on_a.handle(DialogEvent::Confirmed(Box::new(snapshot(&id.call_id))));
        until("A's record", async || {
            a.load(id).await.ok().flatten().is_some()
        })
        .await;
        assert!(on_a.runs_timer(id));
    }
    let (adopted_copy, _) = a
        .load_revised(&adopted)
        .await
        .expect("load")
        .expect("record");

    // BYEs through B remove both records; A has not heard.
    for id in [&refreshed, &adopted] {
        assert_eq!(b.remove_as(id, WriteRole::Visitor).await, Ok(true));
    }

    // A re-INVITE through A (its write presents the revision it saw) and a late adoption.
    on_a.handle(refresh(refreshed.reversed(), 5, "sip:b1@203.0.113.9"));
    on_a.adopt(adopted_copy, Duration::from_secs(60));
    until("both actors stopped", async || {
        !on_a.is_live(&refreshed) && !on_a.is_live(&adopted)
    })
    .await;
    for id in [&refreshed, &adopted] {
        assert_eq!(a.load(id).await, Ok(None), "the ended dialog stays ended");
    }
    on_a.stop();
}
